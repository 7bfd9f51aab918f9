"""
The network map in a real headless browser: a four-node network (a relay
and three satellites, real processes), its map at ``/network`` drawn by
the page from ``/network.json``, a link going down shown as such, and a
screenshot saved.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from test_network import (  # noqa: F401  (the network fixture)
    LINK_UP,
    free_port,
    listen_at,
    network,
    peer_at,
    wait_until,
)
from test_status_browser import browser  # noqa: F401  (the headless Chromium fixture)


def network_json(proc: Any) -> dict[str, Any]:
    with urllib.request.urlopen(proc.url.rstrip("/") + "/network.json", timeout=10) as answer:
        return dict(json.load(answer))


def drawn(driver: Any) -> tuple[list[str], list[tuple[str, str]]]:
    """The node labels and the (ends, class) of the links the page drew (read at once: it redraws)."""
    labels, links = driver.execute_script(
        "return [Array.from(document.querySelectorAll('#map g.node text'), e => e.textContent),"
        " Array.from(document.querySelectorAll('#map line'),"
        " e => [e.getAttribute('data-ends'), e.getAttribute('class')])];"
    )
    return list(labels), [tuple(link) for link in links]


def test_the_map_draws_a_four_node_network_and_a_link_that_goes_down(
    browser: Any, network: Any, tmp_path: Path  # noqa: F811
) -> None:
    port = free_port()
    hub = network.relay("hub", amp_listen=listen_at(port))
    satellites = [network.satellite(f"s{i}", f"pkg{i}", peers=[peer_at(port)]) for i in range(3)]
    nodes = [hub, *satellites]
    for proc in nodes:
        proc.wait_serving()
    wait_until(lambda: hub.count(LINK_UP) >= 3, "three links up", *nodes)
    def whole() -> bool:
        nodes_known = network_json(hub)["nodes"]
        return len(nodes_known) == 4 and all(node["links"] for node in nodes_known)

    wait_until(whole, "the map whole", *nodes)
    host_ids = sorted(node["host_id"] for node in network_json(hub)["nodes"])

    browser.get(hub.url.rstrip("/") + "/network")
    wait_until(lambda: sorted(drawn(browser)[0]) == host_ids, "four nodes drawn with their host_ids", *nodes)
    links = drawn(browser)[1]
    assert len(links) == 3 and all(kind == "link" for _, kind in links)
    up = tmp_path / "network-map.png"
    assert browser.save_screenshot(str(up)) and up.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    satellites[2].kill()  # the hub's link to it goes down; the hub announces it at once
    wait_until(lambda: any("down" in kind for _, kind in drawn(browser)[1]), "the link drawn down", *nodes,
               timeout=30)
    time.sleep(0.1)
    down = tmp_path / "network-map-down.png"
    assert browser.save_screenshot(str(down))


def test_the_method_console_lists_methods_and_calls_a_routed_one(
    browser: Any, network: Any, start: Any, tmp_path: Path  # noqa: F811
) -> None:
    """/methods on satellite A lists ham's methods hosted on B, with their help, and calls one through A."""
    from selenium.webdriver.common.by import By

    port = free_port()
    a = network.satellite("a", "rec_a", amp_listen=listen_at(port))
    b = network._satellite("--config", network.config("b", plugin_list=["ham"], peers=[peer_at(port)]),
                           cwd=tmp_path)
    for proc in (a, b):
        proc.wait_serving()
    wait_until(lambda: a.count(LINK_UP) >= 1, "the link up", a, b)
    wait_until(lambda: "ham.spam.call_me" in call_names(a), "ham's methods known at A", a, b)

    browser.get(a.url.rstrip("/") + "/methods")
    form = '[data-method="ham.spam.call_me"]'
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, form), "the console listing call_me", a, b)
    box = browser.find_element(By.CSS_SELECTOR, form)
    help_text = box.find_element(By.CSS_SELECTOR, ".help").text
    assert "Return a greeting for" in help_text and "is hosted on" in help_text  # asked of its own node
    arguments = box.find_element(By.TAG_NAME, "textarea")
    arguments.clear()
    arguments.send_keys('["browser"]')
    box.find_element(By.TAG_NAME, "button").click()
    answer = box.find_element(By.CSS_SELECTOR, ".answer")
    wait_until(lambda: "hello, browser" in answer.text, "the routed call answered", a, b)
    arguments.clear()
    arguments.send_keys("[1, 2, 3, 4]")
    box.find_element(By.TAG_NAME, "button").click()
    wait_until(lambda: "fault -32602" in answer.text, "a fault shown", a, b)
    assert "fault" in (answer.get_attribute("class") or "")
    shot = tmp_path / "method-console.png"
    assert browser.save_screenshot(str(shot))


def call_names(proc: Any) -> list[str]:
    import xmlrpc.client

    with xmlrpc.client.ServerProxy(proc.url) as proxy:
        return list(proxy.co2.get_method_names())
