"""
The status page in a real headless browser: Debian's chromium, driven by
selenium, loads a running satellite's page, finds what it must show, sees
it change by itself after a message, and saves a screenshot.

chromium and its driver come from Debian's packages: when they are
missing and this runs as root with apt-get, the test installs them (about
20 s); otherwise it is skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import co2

PACKAGES = ["chromium", "chromium-driver"]
INSTALL_TIMEOUT = 600


def _have_browser() -> bool:
    return shutil.which("chromium") is not None and shutil.which("chromedriver") is not None


def _install_browser() -> str | None:
    """Install chromium and its driver from Debian's packages; why not, if it cannot."""
    if _have_browser():
        return None
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return "chromium and chromedriver are missing, and apt-get as root is not available to install them"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    done = subprocess.run([apt, "install", "-y", "-q", *PACKAGES], env=env, capture_output=True, text=True,
                          timeout=INSTALL_TIMEOUT)
    if done.returncode != 0 or not _have_browser():
        return f"apt-get install {' '.join(PACKAGES)} failed: {done.stderr[-500:]}"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    why = _install_browser()
    if why is not None:
        pytest.skip(why)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def text_of(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def test_the_status_page_shows_the_node_and_follows_it(
    browser: Any, satellite: Any, make_config: Any, tmp_path: Path
) -> None:
    config = make_config(listen="tcp:0:interface=127.0.0.1", plugin_list=["ham", "example", "missing"])
    proc = satellite("--config", config, cwd=tmp_path)
    proc.wait_serving()
    host_id = proc.wait_output(r"co2 satellite (\S+) serving").group(1)

    browser.get(proc.url)
    assert host_id in browser.title
    assert host_id in text_of(browser, "host_id")
    plugins = text_of(browser, "plugins")
    assert "ham.spam.X_Spam" in plugins and "example.example.X_Example" in plugins
    assert "missing no package 'missing'" in text_of(browser, "failed")
    assert "ham.spam.call_me" in text_of(browser, "methods")
    assert "no links" in text_of(browser, "links")
    assert text_of(browser, "version") == co2.__version__
    assert text_of(browser, "uptime").endswith("s")

    with xmlrpc.client.ServerProxy(proc.url, allow_none=True) as node:
        assert node.notify({"data": "seen by the page", "host_id": "9@127.0.0.1:1"}) is True
    deadline = time.monotonic() + 15
    while "example.example.X_Example 1 0" not in text_of(browser, "plugins"):
        assert time.monotonic() < deadline, f"the page did not refresh: {text_of(browser, 'plugins')!r}"
        time.sleep(0.5)
    assert text_of(browser, "counter-notified").startswith("notified 1")
    assert "ago" in text_of(browser, "last_message")

    screenshot = tmp_path / "status-page.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert proc.stop() == 0


def test_a_relay_has_the_page_too(relay: Any, make_config: Any, tmp_path: Path) -> None:
    """co2-relay serves the same status page and JSON, naming its role (no browser needed)."""
    import json
    import urllib.request

    proc = relay("--config", make_config(listen="tcp:0:interface=127.0.0.1"), cwd=tmp_path)
    proc.wait_serving()
    with urllib.request.urlopen(proc.url, timeout=10) as answer:
        page = answer.read().decode()
    assert "<title>co2 relay " in page
    with urllib.request.urlopen(proc.url + "status.json", timeout=10) as answer:
        status = json.loads(answer.read())
    assert status["role"] == "relay" and status["plugins"] == []
    assert proc.stop() == 0
