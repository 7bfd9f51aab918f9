"""GET / and /status.json: who the node is, its plugins, links and counters."""

from __future__ import annotations

import copy
import json
import time
import xml.etree.ElementTree as ET
from typing import Any

from test_metrics import exchange, post

import co2
from co2._auth import basic_authorization, make_authentication
from co2.testing import write_package
from satellites import NodeParts, make_server
from satellites._status import StatusJSON, StatusPage, render_page, status_of

BROKEN = """
from co2 import Co2Plugin

class X_Broken(Co2Plugin):
    def __init__(self, var_dict):
        raise RuntimeError("<script>alert('x')</script>")
"""


def get(factory: Any, path: bytes, extra: bytes = b"") -> tuple[int, bytes]:
    return exchange(factory, b"GET %s HTTP/1.1\r\nHost: 10.0.0.1\r\n%s\r\n" % (path, extra))


def parse(page: bytes) -> ET.Element:
    """The page as XML: it is well-formed XHTML (an HTML doctype, then one element)."""
    assert page.startswith(b"<!DOCTYPE html>\n")
    return ET.fromstring(page)


def by_id(page: ET.Element, element_id: str) -> ET.Element:
    found = page.find(f".//*[@id='{element_id}']")
    assert found is not None, f"no element with id {element_id!r}"
    return found


def text(element: ET.Element) -> str:
    return "".join(element.itertext())


def clock(moment: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(moment))


def test_the_page_and_the_json_show_the_node(network, make_satellite, reactor, plugin_root) -> None:
    write_package(plugin_root, "broken", {"m": BROKEN})
    a = make_satellite("a", "rec", "calc", "broken")
    b = make_satellite("b", "rec")
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
    since = link.pop("since")
    # The role is known once the peer's profile (what it says of itself) has come.
    assert link.pop("peer_role") in (None, "satellite")
    assert link == {"link": "peer:b", "state": "up", "queued": 0, "in": 0, "out": 1, "reconnects": 0,
                    "peer_node": b.relay.node_id, "peer_host_id": b.host_id}
    assert isinstance(since, float) and since <= time.time()
    assert data["version"] == co2.__version__
    assert data["uptime"] >= 0 and data["last_message"] is not None
    assert data["counters"]["originated"] == 1

    status, page = get(factory, b"/")
    assert status == 200
    text = page.decode()
    assert a.host_id in text and "rec.m.X_Recorder" in text and "peer:b" in text
    assert parse(page).find("head/meta[@http-equiv='refresh']").get("content") == "5"
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


def test_the_page_is_well_formed_and_says_what_the_json_says(network, make_satellite, plugin_root) -> None:
    """The page parses as XML, and each section (plugins, failures, links, methods) has the node's facts."""
    write_package(plugin_root, "broken_too", {"m": BROKEN})
    a = make_satellite("a", "rec", "calc", "broken_too")
    b = make_satellite("b", "rec")
    network.link("a", "b")
    parts = NodeParts.of(a)
    page = parse(StatusPage(parts, "satellite").render())
    assert page.tag == "html" and page.get("lang") == "en"
    assert text(page.find("head/title")) == f"co2 satellite {a.host_id}" == text(by_id(page, "host_id"))
    assert text(by_id(page, "node_id")) == a.relay.node_id
    assert [text(row) for row in by_id(page, "plugins").iterfind("tbody/tr")] == ["rec.m.X_Recorder00"]
    assert text(by_id(page, "failed").find("tbody/tr/td")) == "broken_too"
    [row] = by_id(page, "links").iterfind("tbody/tr")
    short = b.relay.node_id[:8] + "\N{HORIZONTAL ELLIPSIS}"
    assert [text(td) for td in row][0:3:2] == ["peer:b", short]
    assert text(row[1]) in (b.host_id, b.host_id + " satellite")  # the role, once b's profile came
    assert row.find("td/code").get("title") == b.relay.node_id
    assert row.get("class") == "up"
    assert [text(li) for li in by_id(page, "methods")] == parts.dispatcher.names()


def test_what_the_node_and_its_peers_say_is_escaped(network, make_satellite) -> None:
    """Markup and ampersands in names, host_ids and problems come out as text, in content and attributes."""
    a = make_satellite("a", "rec")
    make_satellite("b", "rec")
    network.link("a", "b")
    hostile = "<script>alert('x')</script> & co"
    quoting = '"><script>alert(1)</script>'
    status = status_of(NodeParts.of(a), "satellite")
    status["host_id"] = hostile
    status["plugins"] = [{"name": hostile, "deliveries": 0, "errors": 0}]
    status["failed"] = [{"package": hostile, "problem": hostile}]
    status["links"][0].update(link=hostile, peer_host_id=hostile, peer_node=quoting, peer_role=hostile)
    status["methods"] = [hostile]
    status["counters"] = {hostile: 1}
    body = render_page(status, time.time())
    assert b"<script>" not in body and b"& co" not in body
    assert body.count(b"&lt;script&gt;alert('x')&lt;/script&gt; &amp; co") >= 8
    page = parse(body)  # an unescaped quote in an attribute would not parse
    assert text(by_id(page, "host_id")).endswith(hostile)
    [row] = by_id(page, "links").iterfind("tbody/tr")
    assert text(row[0]) == hostile and text(row[1]).startswith(hostile)
    assert row.find("td/code").get("title") == quoting


def test_a_cut_link_names_its_peer_and_since_when_it_is_down(network, make_satellite) -> None:
    """A down link's row is marked down and says since when; an up link says since when it is up."""
    a = make_satellite("a", "rec")
    b = make_satellite("b", "rec")
    network.link("a", "b")
    [link] = a.relay.snapshot().links
    assert link.since is not None
    page = parse(StatusPage(NodeParts.of(a), "satellite", wall=lambda: link.since + 3725).render())
    [row] = by_id(page, "links").iterfind("tbody/tr")
    assert row.get("class") == "up"
    assert text(row.find("td[@class='state']")) == f"up since {clock(link.since)} (1h 2m ago)"

    network.cut("a", "b")
    [link] = a.relay.snapshot().links
    assert link.since is not None
    now = link.since + 42
    page = parse(StatusPage(NodeParts.of(a), "satellite", wall=lambda: now).render())
    [row] = by_id(page, "links").iterfind("tbody/tr")
    assert row.get("class") == "down"
    assert text(row[1]).startswith(b.host_id)
    assert text(row.find("td[@class='state']")) == f"down since {clock(link.since)} (42s ago)"
    [link_status] = json.loads(StatusJSON(NodeParts.of(a), "satellite").render())["links"]
    assert link_status["state"] == "down" and link_status["since"] == link.since
    assert link_status["peer_host_id"] == b.host_id and link_status["peer_node"] == b.relay.node_id


def test_the_peer_role_shows_only_when_its_profile_says_it(network, make_satellite, monkeypatch) -> None:
    """A peer's role is what a profile dict in the directory says ("satellite" or "relay"), else nothing."""
    a = make_satellite("a", "rec")
    b = make_satellite("b", "rec")
    network.link("a", "b")
    parts = NodeParts.of(a)
    known = a.relay.directory.known
    entry = known[b.relay.node_id]

    def told(profile: object) -> None:
        said = copy.copy(entry)
        said.profile = profile
        monkeypatch.setitem(known, b.relay.node_id, said)

    def peer_cell() -> str:
        [row] = by_id(parse(StatusPage(parts, "satellite").render()), "links").iterfind("tbody/tr")
        return text(row[1])

    for profile in (None, b"\x81\xa4role\xa5relay", {"role": "king"}, {}):
        told(profile)
        assert peer_cell() == b.host_id
        assert status_of(parts, "satellite")["links"][0]["peer_role"] is None
    told({"role": "relay"})
    assert peer_cell() == b.host_id + " relay"
    assert status_of(parts, "satellite")["links"][0]["peer_role"] == "relay"


def test_the_page_shows_the_version_the_uptime_and_the_last_message(make_satellite) -> None:
    """Version, uptime from the relay's start, and the last message's time (or "none yet")."""
    a = make_satellite("a", "rec")
    parts = NodeParts.of(a)
    started = a.relay.snapshot().started
    page = parse(StatusPage(parts, "satellite", wall=lambda: started + 90).render())
    assert text(by_id(page, "version")) == co2.__version__
    assert text(by_id(page, "uptime")) == "1m 30s"
    assert text(by_id(page, "last_message")) == "none yet"
    assert json.loads(StatusJSON(parts, "satellite", wall=lambda: started + 90).render())["uptime"] == 90

    a.plugins[0].send("hello")
    a.relay.flush()
    last = a.relay.snapshot().last_message
    assert last is not None
    page = parse(StatusPage(parts, "satellite", wall=lambda: last + 2 * 86400 + 7200).render())
    assert text(by_id(page, "last_message")) == f"{clock(last)} (2d 2h ago)"
    status = json.loads(StatusJSON(parts, "satellite").render())
    assert status["last_message"] == last


def test_messages_accepted_by_notify_are_counted_on_the_page(make_satellite, reactor) -> None:
    """A notify shows in the Messages table as notified, apart from what the plugins sent."""
    a = make_satellite("a", "rec")
    factory = make_server(a.dispatcher, 1 << 20, reactor, node=NodeParts.of(a))
    assert post(factory, "notify", {"data": 1, "host_id": "1@10.0.0.1:2004"}) == 200
    reactor.advance(0)
    page = parse(get(factory, b"/")[1])
    assert [text(td) for td in by_id(page, "counter-notified")][:2] == ["notified", "1"]
    assert [text(td) for td in by_id(page, "counter-originated")][:2] == ["originated", "0"]
    assert text(by_id(page, "last_message")) != "none yet"
    assert json.loads(get(factory, b"/status.json")[1])["counters"]["notified"] == 1
