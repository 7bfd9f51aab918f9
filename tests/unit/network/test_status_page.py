"""GET / and /status.json: who the node is, its plugins, links and counters."""

from __future__ import annotations

import json
from typing import Any

from test_metrics import exchange, post

from co2._auth import basic_authorization, make_authentication
from co2.testing import write_package
from satellites import NodeParts, make_server

BROKEN = """
from co2 import Co2Plugin

class X_Broken(Co2Plugin):
    def __init__(self, var_dict):
        raise RuntimeError("<script>alert('x')</script>")
"""


def get(factory: Any, path: bytes, extra: bytes = b"") -> tuple[int, bytes]:
    return exchange(factory, b"GET %s HTTP/1.1\r\nHost: 10.0.0.1\r\n%s\r\n" % (path, extra))


def test_the_page_and_the_json_show_the_node(network, make_satellite, reactor, plugin_root) -> None:
    write_package(plugin_root, "broken", {"m": BROKEN})
    a = make_satellite("a", "rec", "calc", "broken")
    make_satellite("b", "rec")
    network.link("a", "b")
    a.plugins[0].send("hello")
    network.settle()
    factory = make_server(a.dispatcher, 1 << 20, reactor, node=NodeParts.of(a))

    status, body = get(factory, b"/status.json")
    assert status == 200
    data = json.loads(body)
    assert data["host_id"] == a.host_id and data["role"] == "satellite"
    assert [p["name"] for p in data["plugins"]] == ["rec.m.X_Recorder"]
    assert data["failed"][0]["package"] == "broken" and "RuntimeError" in data["failed"][0]["problem"]
    assert "calc.ops.add" in data["methods"]
    (link,) = data["links"]
    assert link == {"link": "peer:b", "state": "up", "queued": 0, "in": 0, "out": 1, "reconnects": 0}
    assert data["counters"]["originated"] == 1

    status, page = get(factory, b"/")
    assert status == 200
    text = page.decode()
    assert a.host_id in text and "rec.m.X_Recorder" in text and "peer:b" in text
    assert '<meta http-equiv="refresh" content="5">' in text
    assert "<script>" not in text and "&lt;script&gt;" in text

    network.cut("a", "b")
    a.plugins[0].send("waits")
    network.settle()
    (link,) = json.loads(get(factory, b"/status.json")[1])["links"]
    assert link["state"] == "down" and link["queued"] == 1


def test_post_to_the_root_is_still_xml_rpc(make_satellite, reactor) -> None:
    a = make_satellite("a", "calc")
    factory = make_server(a.dispatcher, 1 << 20, reactor, node=NodeParts.of(a))
    assert post(factory, "calc.ops.add", 2, 3) == 200
    assert get(factory, b"/RPC2")[0] == 405


def test_the_status_needs_credentials_when_auth_protects_it(make_satellite, reactor) -> None:
    a = make_satellite("a", "rec")
    auth = make_authentication(["memory:ops:pw"], ["*"], reactor)
    factory = make_server(a.dispatcher, 1 << 20, reactor, authentication=auth, node=NodeParts.of(a))
    assert get(factory, b"/")[0] == 401
    assert get(factory, b"/status.json")[0] == 401
    credentials = b"Authorization: " + basic_authorization("ops", "pw") + b"\r\n"
    assert get(factory, b"/", credentials)[0] == 200
    open_status = make_authentication(["memory:ops:pw"], ["calc.*"], reactor)
    factory = make_server(a.dispatcher, 1 << 20, reactor, authentication=open_status, node=NodeParts.of(a))
    assert get(factory, b"/")[0] == 200
