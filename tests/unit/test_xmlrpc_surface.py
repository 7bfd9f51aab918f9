"""The XML-RPC endpoint: methods, introspection, multicall, faults and limits."""

from __future__ import annotations

import datetime
from xmlrpc.client import Fault

import pytest

from co2 import faults
from co2.testing import write_package

METHODS = '''
from twisted.internet import defer, task
from co2 import Co2Plugin

class X_Api(Co2Plugin):
    secret = "hidden"

    def x_echo(self, value):
        """Return value unchanged."""
        return value

    def x_typed(self, a: int, b: str) -> list:
        """Typed."""
        return [a, b]

    def x_fail(self):
        raise KeyError("no such thing")

    def x_fault(self):
        from xmlrpc.client import Fault
        raise Fault(4242, "my own fault")

    def x_later(self, seconds):
        from twisted.internet import reactor
        return task.deferLater(self.var_dict["clock"], seconds, lambda: "late")

    async def x_coro(self, n):
        return n + 1

    def x_unencodable(self):
        return object()

    def x_huge(self):
        return 2**70

    def _private(self):
        return "private"

    def helper(self):
        return "unexposed"

def x_module_level(a, b=2):
    return a * b
'''


@pytest.fixture
def api(make_node, plugin_dir, reactor):
    """A satellite with one plugin exposing many kinds of methods."""
    write_package(plugin_dir, "ham", {"api": METHODS})
    return make_node("ham", plugin_config={"ham": {"clock": reactor}})


VALUES = [
    0, -1, 2**31 - 1, -(2**31), 2**31, -(2**63), 2**63 - 1, True, False, "", "text é ☃", 1.5,
    -0.25, None, b"\x00\xffbytes", datetime.datetime(2026, 1, 2, 3, 4, 5), [], {},
    [1, [2, [3, {"k": None}]]], {"nested": {"list": [1.0, "a", b"b"]}},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_every_xmlrpc_type_round_trips(api, value):
    """Each XML-RPC type, i8 and nil included, goes to a method and back unchanged."""
    assert api.call("ham.api.echo", value) == value


def test_only_registered_names_are_reachable(api):
    """Private, dunder, unexposed and attribute paths are unknown methods."""
    for name in [
        "ham.api._private", "ham.api.helper", "ham.api.secret", "ham.api.__init__",
        "ham.api.echo.__class__", "ham.api.X_Api", "ham.api.__class__", "ham", "ham.api",
        "__import__", "system", "system.__dict__", "ham.api.x_echo",
    ]:
        with pytest.raises(Fault) as e:
            api.call(name)
        assert e.value.faultCode == faults.METHOD_NOT_FOUND, name
    with pytest.raises(Fault) as e:
        api.call("")
    assert e.value.faultCode == faults.INVALID_REQUEST


def test_wrong_parameter_count_is_invalid_params(api):
    """Too few or too many parameters give -32602 naming the method."""
    for params in [(), (1, 2)]:
        with pytest.raises(Fault) as e:
            api.call("ham.api.echo", *params)
        assert e.value.faultCode == faults.INVALID_PARAMS
        assert "ham.api.echo" in e.value.faultString
    assert api.call("ham.api.module_level", 3) == 6


def test_plugin_exception_is_an_application_fault_without_traceback(api):
    """An exception in a plugin reaches the client as -32500 with its type and message only."""
    with pytest.raises(Fault) as e:
        api.call("ham.api.fail")
    assert e.value.faultCode == faults.APPLICATION_ERROR
    assert e.value.faultString == "KeyError: 'no such thing'"
    assert "Traceback" not in e.value.faultString


def test_a_fault_raised_by_a_plugin_keeps_its_code(api):
    """A plugin raising xmlrpc.client.Fault chooses its own code and string."""
    with pytest.raises(Fault) as e:
        api.call("ham.api.fault")
    assert (e.value.faultCode, e.value.faultString) == (4242, "my own fault")


def test_unencodable_results_are_internal_errors(api):
    """A result XML-RPC cannot carry gives -32603, and the server answers the next call."""
    for name in ["ham.api.unencodable", "ham.api.huge"]:
        with pytest.raises(Fault) as e:
            api.call(name)
        assert e.value.faultCode == faults.INTERNAL_ERROR
    assert api.call("ham.api.echo", 1) == 1


def test_slow_deferred_holds_up_no_other_call(api):
    """A method whose Deferred takes seconds does not delay other calls."""
    slow = api.client.call("ham.api.later", 5)
    results: list[object] = []
    slow.addCallback(results.append)
    assert api.call("ham.api.echo", "quick") == "quick"
    assert results == []
    api.reactor.advance(5)
    assert results == ["late"]


def test_coroutine_methods_are_awaited(api):
    """An async def x_ method answers with its return value."""
    assert api.call("ham.api.coro", 41) == 42


def test_client_gone_before_the_answer_is_harmless(api):
    """A client that disconnects while a slow method runs leaves the server answering."""
    from twisted.internet.address import IPv4Address

    from co2._xmlrpc import dump_call

    protocol = api.client.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    from twisted.internet.error import ConnectionLost
    from twisted.internet.testing import StringTransport
    from twisted.python.failure import Failure

    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1))
    protocol.makeConnection(transport)
    body = dump_call("ham.api.later", (1,))
    protocol.dataReceived(
        b"POST / HTTP/1.1\r\nHost: 10.0.0.1\r\nContent-Type: text/xml\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    protocol.connectionLost(Failure(ConnectionLost()))
    api.reactor.advance(1)
    assert api.call("ham.api.echo", 2) == 2


def test_list_methods_and_get_method_names(api):
    """system.listMethods and co2.get_method_names list every callable name, sorted."""
    names = api.call("system.listMethods")
    assert names == sorted(names)
    assert names == api.call("co2.get_method_names")
    for name in [
        "notify", "co2.get_method_names", "system.listMethods", "system.methodHelp",
        "system.methodSignature", "system.multicall", "system.getCapabilities",
        "ham.api.echo", "ham.api.module_level",
    ]:
        assert name in names


def test_method_help_and_signature(api):
    """methodHelp gives the docstring; methodSignature follows annotations or says undef."""
    assert api.call("system.methodHelp", "ham.api.echo") == "Return value unchanged."
    assert api.call("system.methodSignature", "ham.api.typed") == [["array", "int", "string"]]
    assert api.call("system.methodSignature", "ham.api.echo") == "undef"
    assert api.call("system.methodHelp", "system.multicall").startswith("Make many calls")
    with pytest.raises(Fault) as e:
        api.call("system.methodHelp", "no.such.method")
    assert e.value.faultCode == faults.INVALID_PARAMS


def test_get_capabilities(api):
    """getCapabilities advertises faults_interop, introspection, multicall and nil."""
    capabilities = api.call("system.getCapabilities")
    assert set(capabilities) == {"faults_interop", "introspection", "multicall", "nil"}
    assert capabilities["faults_interop"]["specVersion"] == 20010516
    assert all("specUrl" in c for c in capabilities.values())


def test_multicall_answers_each_call_in_order(api):
    """multicall returns [result] or a fault struct for each call, in order, async ones too."""
    results = api.client.call("system.multicall", [
        {"methodName": "ham.api.echo", "params": [1]},
        {"methodName": "ham.api.later", "params": [1]},
        {"methodName": "ham.api.fail", "params": []},
        {"methodName": "nope", "params": []},
        {"methodName": "system.multicall", "params": [[]]},
        {"methodName": "ham.api.unencodable", "params": []},
        "not a struct",
        {"params": []},
        {"methodName": "ham.api.coro"},
    ])
    got: list[object] = []
    results.addCallback(got.append)
    api.reactor.advance(1)
    (answer,) = got
    assert answer[0] == [1]
    assert answer[1] == ["late"]
    codes = [entry.get("faultCode") if isinstance(entry, dict) else None for entry in answer]
    assert codes == [
        None, None, faults.APPLICATION_ERROR, faults.METHOD_NOT_FOUND, faults.INVALID_REQUEST,
        faults.INTERNAL_ERROR, faults.INVALID_REQUEST, faults.INVALID_REQUEST,
        faults.INVALID_PARAMS,
    ]
    assert "nested" in answer[4]["faultString"]


def test_multicall_needs_an_array(api):
    """multicall given something other than an array is invalid params."""
    with pytest.raises(Fault) as e:
        api.call("system.multicall", "x")
    assert e.value.faultCode == faults.INVALID_PARAMS


def post(api, body, path=b"/RPC2"):
    """POST raw bytes; the HTTP response."""
    got: list[object] = []
    api.client.post(body, path).addCallback(got.append)
    return got[0]


def fault_of(response):
    """The fault a raw response carries."""
    from co2._xmlrpc import parse_response

    assert response.status == 200
    with pytest.raises(Fault) as e:
        parse_response(response.body)
    return e.value


BAD_BODIES = {
    "empty": (b"", faults.PARSE_ERROR),
    "garbage": (b"\x00\x01garbage", faults.PARSE_ERROR),
    "truncated": (b"<?xml version='1.0'?><methodCall><methodName>x</method", faults.PARSE_ERROR),
    "bad utf-8": (b"<methodCall><methodName>\xff\xfe</methodName></methodCall>",
                  faults.PARSE_ERROR),
    "entity bomb": (
        b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<methodCall><methodName>&b;</methodName></methodCall>",
        faults.PARSE_ERROR,
    ),
    "external entity": (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<methodCall><methodName>x</methodName><params><param><value>&e;</value>"
        b"</param></params></methodCall>",
        faults.PARSE_ERROR,
    ),
    "deep nesting": (
        b"<methodCall><methodName>ham.api.echo</methodName><params><param>"
        + b"<value><array><data>" * 10000 + b"</data></array></value>" * 10000
        + b"</param></params></methodCall>",
        faults.PARSE_ERROR,
    ),
    "response not call": (
        b"<methodResponse><params><param><value>1</value></param></params></methodResponse>",
        faults.INVALID_REQUEST,
    ),
    "bad int": (
        b"<methodCall><methodName>ham.api.echo</methodName><params><param>"
        b"<value><int>twelve</int></value></param></params></methodCall>",
        faults.PARSE_ERROR,
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_bodies_get_a_fault_and_the_server_goes_on(api, name):
    """Malformed requests get the documented fault, no traceback, and the next call works."""
    body, code = BAD_BODIES[name]
    fault = fault_of(post(api, body))
    assert fault.faultCode == code
    assert "Traceback" not in fault.faultString
    assert api.call("ham.api.echo", "still here") == "still here"


def test_a_body_over_the_limit_is_refused_before_parsing(make_node, plugin_dir):
    """A body over max_request_size gets 413 from its declared length, and the server goes on."""
    write_package(plugin_dir, "ham", {"api": METHODS})
    node = make_node("ham", max_request_size=2000)
    response = post(node, b"<" * 2001)
    assert response.status == 413
    assert node.call("ham.api.echo", "x" * 100) == "x" * 100


def test_a_chunked_body_over_the_limit_is_refused(make_node, plugin_dir):
    """A chunked body that grows over the limit is cut off with 413."""
    write_package(plugin_dir, "ham", {"api": METHODS})
    node = make_node("ham", max_request_size=1000)
    chunk = b"x" * 600
    body = b"%x\r\n%s\r\n" % (len(chunk), chunk) * 3 + b"0\r\n\r\n"
    got: list[object] = []
    node.client.request(
        b"POST", b"/", body, [(b"Transfer-Encoding", b"chunked")],
    ).addCallback(got.append)
    assert got[0].status == 413
    assert node.call("ham.api.echo", 1) == 1


def test_get_and_unknown_paths(api):
    """GET is answered 405 with Allow: POST; a POST to another path is 404."""
    got: list[object] = []
    api.client.request(b"GET", b"/").addCallback(got.append)
    assert got[0].status == 405 and got[0].headers[b"allow"] == b"POST"
    assert post(api, b"<x/>", path=b"/elsewhere").status == 404
    assert api.call("ham.api.echo", 1) == 1


def test_nil_and_i8_are_understood_in_requests(api):
    """Requests may carry <nil/> and <i8>."""
    body = (
        b"<?xml version='1.0'?><methodCall><methodName>ham.api.echo</methodName><params>"
        b"<param><value><array><data><value><nil/></value><value><i8>8589934592</i8></value>"
        b"</data></array></value></param></params></methodCall>"
    )
    from co2._xmlrpc import parse_response

    assert parse_response(post(api, body).body) == [None, 8589934592]


HAND_WRITTEN = {
    "i4 and untyped string": (
        b"<?xml version='1.0'?><methodCall><methodName>ham.api.echo</methodName><params>"
        b"<param><value><array><data><value><i4>7</i4></value><value>plain</value>"
        b"</data></array></value></param></params></methodCall>",
        [7, "plain"],
    ),
    "whitespace everywhere": (
        b'<?xml version="1.0" encoding="UTF-8"?>\r\n<methodCall>\n  <methodName>ham.api.echo'
        b"</methodName>\n  <params>\n    <param>\n      <value>\n        <struct>\n"
        b"          <member>\n            <name>k</name>\n            <value><int> 3 </int>"
        b"</value>\n          </member>\n        </struct>\n      </value>\n    </param>\n"
        b"  </params>\n</methodCall>\n",
        {"k": 3},
    ),
    "latin-1 body": (
        b'<?xml version="1.0" encoding="ISO-8859-1"?><methodCall><methodName>ham.api.echo'
        b"</methodName><params><param><value><string>caf\xe9</string></value></param>"
        b"</params></methodCall>",
        "caf\xe9",
    ),
    "no params element": (
        b"<methodCall><methodName>system.listMethods</methodName></methodCall>",
        None,
    ),
    "empty string and base64": (
        b"<methodCall><methodName>ham.api.echo</methodName><params><param><value><array><data>"
        b"<value><string/></value><value><base64>aGk=</base64></value>"
        b"<value><dateTime.iso8601>20260102T03:04:05</dateTime.iso8601></value>"
        b"<value><boolean>1</boolean></value><value><double>-1.5e3</double></value>"
        b"</data></array></value></param></params></methodCall>",
        ["", b"hi", datetime.datetime(2026, 1, 2, 3, 4, 5), True, -1500.0],
    ),
}


@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
def test_requests_as_other_clients_write_them(api, name):
    """Requests written the ways other languages' clients write them are understood."""
    from co2._xmlrpc import parse_response

    body, expected = HAND_WRITTEN[name]
    response = post(api, body, path=b"/")
    assert response.status == 200
    assert response.headers[b"content-type"].startswith(b"text/xml")
    value = parse_response(response.body)
    if expected is None:
        assert "ham.api.echo" in value
    else:
        assert value == expected


def test_persistent_connection_answers_many_calls(api):
    """An HTTP/1.1 keep-alive connection carries several calls in turn."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    from co2._xmlrpc import dump_call

    protocol = api.client.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5))
    protocol.makeConnection(transport)
    for n in range(3):
        body = dump_call("ham.api.echo", (n,))
        protocol.dataReceived(
            b"POST /RPC2 HTTP/1.1\r\nHost: 10.0.0.1\r\nContent-Type: text/xml\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
    answers = transport.value().count(b"HTTP/1.1 200 OK")
    assert answers == 3 and not transport.disconnecting
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    protocol.connectionLost(Failure(ConnectionDone()))


def test_text_xml_cannot_carry_is_refused_not_garbled(make_node, plugin_dir):
    """A result holding a NUL is a -32603 fault, never a broken response; a CR survives."""
    write_package(plugin_dir, "ham", {"m": "def x_nul():\n    return 'a\\x00b'\n"
                                           "def x_echo(v):\n    return v\n"})
    node = make_node("ham")
    with pytest.raises(Fault) as e:
        node.call("ham.m.nul")
    assert e.value.faultCode == faults.INTERNAL_ERROR and "XML cannot carry" in e.value.faultString
    assert node.call("ham.m.echo", "a\rb\r\n") == "a\rb\r\n"
