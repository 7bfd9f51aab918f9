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
