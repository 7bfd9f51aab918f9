"""
``co2``: a command-line client for any co2 node (or any XML-RPC server).

Four commands, each a small step: :func:`parse_args` reads the command line
(``twisted.python.usage``, as ``co2-satellite`` does), :class:`Client` speaks
XML-RPC (the standard ``xmlrpc.client``, with timeouts, ``nil`` and ``i8``),
:func:`render` writes answers as JSON, and :func:`main` turns every failure
into one line on stderr and an exit status: 0 done, 1 a fault or a node that
cannot be reached, 2 bad usage.

JSON stands in for XML-RPC values both ways; ``{"$base64": "..."}`` stands for
binary data and ``{"$datetime": "YYYY-MM-DDTHH:MM:SS"}`` for a dateTime in
arguments.  In answers, binary data is written ``{"$base64": "..."}`` and a
dateTime as its ISO 8601 string.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.client
import json
import math
import ssl
import sys
import time
import xmlrpc.client
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, NoReturn
from urllib.parse import SplitResult, urlsplit
from xml.parsers.expat import ExpatError

from twisted.python import usage

from co2._errors import CommandError
from co2._message import make_host_id
from co2._options import OptionsAnywhere, silence_stdout

__all__ = [
    "Client", "ClientError", "CommandOptions", "Options", "TimedSafeTransport", "TimedTransport",
    "UsageError", "json_argument", "main", "parse_args", "render",
]

DEFAULT_TIMEOUT = 30.0
"""Seconds a call may take before the client gives up."""

WATCH_POLL = 25.0
"""Seconds each ``co2.watch`` long poll may wait on the node."""

WATCH_BACKOFF = 1.0
"""Seconds to pause after an empty answer that came back early, before polling again."""

WATCH_MARGIN = 10.0
"""Seconds the answer to a long poll may take beyond the wait it asked for."""

BASE64 = "$base64"
DATETIME = "$datetime"


class ClientError(CommandError):
    """A failure to report in one line, with exit status 1."""


class UsageError(CommandError):
    """A command line that cannot be carried out, with exit status 2."""


# Command line

_SECONDS = "a number of seconds >= 0"
_URL = "URL is the node's XML-RPC URL, e.g. http://127.0.0.1:2004/ (user:password@ for HTTP Basic)."


def _checked(option: str, convert: Callable[[str], float], least: float, what: str) -> Callable[[str], float]:
    """The check of ``option``: its value as a finite number >= ``least``, or a usage error."""

    def check(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            value = math.nan
        if not least <= value < math.inf:
            raise usage.UsageError(f"{option}: {text!r} is not {what}")
        return value

    return check


class CommandOptions(OptionsAnywhere):
    """The options of the ``co2`` command ``command``: ``timeout``, ``ca``, ``arguments`` and any ``more``."""

    command = summary = ""
    arguments: tuple[tuple[str, str], ...] = (("url", "URL"),)  # (key, name) each
    more: tuple[str, str] | None = None
    optParameters: list[list[Any]] = [
        ["timeout", None, DEFAULT_TIMEOUT, "give up on a call after this many seconds",
         _checked("--timeout", float, 0, _SECONDS)],
        ["ca", None, None, "trust the CA certificates in this file for https:// (default: the system's)"],
    ]
    opt_h = usage.Options.opt_help

    def parseArgs(self, *args: str) -> None:
        given = len(self.arguments)
        if len(args) < given:
            missing = ", ".join(name for _, name in self.arguments[len(args):])
            raise usage.UsageError(f"the following arguments are required: {missing}")
        if len(args) > given and self.more is None:
            raise usage.UsageError(f"unrecognized arguments: {' '.join(args[given:])}")
        self.update((key, arg) for (key, _), arg in zip(self.arguments, args, strict=False))
        if self.more is not None:
            self[self.more[0]] = args[given:]

    def postOptions(self) -> None:
        self["url"] = check_url(self["url"])

    def getSynopsis(self) -> str:
        names = [name for _, name in self.arguments] + ([f"[{self.more[1]} ...]"] if self.more else [])
        return f"usage: co2 {self.command} [options] {' '.join(names)}"


class MethodsOptions(CommandOptions):
    """``co2 methods URL``."""

    command, summary = "methods", "list the methods callable at URL, one per line"
    longdesc = f"List the methods callable at URL (co2.get_method_names, else system.listMethods).  {_URL}"


class CallOptions(CommandOptions):
    """``co2 call URL METHOD [ARG ...]``: ``method``, ``raw``, and as ``params`` each ARG read as JSON."""

    command, summary = "call", "call METHOD with JSON arguments; print the result as JSON"
    longdesc = (
        "Call METHOD (e.g. ham.spam.call_me) at URL with each ARG read as JSON (42, true, null, '\"text\"', "
        "'[1, 2]', '{\"a\": 1}', '{\"$base64\": \"aGk=\"}', '{\"$datetime\": \"2024-01-02T03:04:05\"}'), "
        f'and print the result as JSON (binary data as {{"$base64": ...}}, a dateTime as ISO text).  {_URL}'
    )
    arguments, more = (("url", "URL"), ("method", "METHOD")), ("args", "ARG")
    optFlags = [["raw", None, "print a string result as it is, anything else as JSON on one line"]]

    def postOptions(self) -> None:
        super().postOptions()
        what = f"argument {{}} of {self['method']}"
        self["params"] = tuple(json_argument(arg, what.format(i)) for i, arg in enumerate(self["args"], 1))


class NotifyOptions(CommandOptions):
    """``co2 notify URL JSON``: as ``value`` the data read as JSON."""

    command, summary = "notify", "send a message with JSON data to every plugin of the network"
    longdesc = "Send {'data': JSON, 'host_id': ...} to URL's notify, for all plugins of the network.  " + _URL
    arguments = (("url", "URL"), ("data", "JSON"))

    def postOptions(self) -> None:
        super().postOptions()
        self["value"] = json_argument(self["data"], "the message's data")


class WatchOptions(CommandOptions):
    """``co2 watch URL``: ``count`` and ``seconds`` (None when not given), and ``backlog``."""

    command, summary = "watch", "print the messages passing through URL, one JSON line each"
    longdesc = f"Print each message the node at URL takes (co2.watch) as a JSON line, until Ctrl-C. {_URL}"
    optParameters = [
        ["count", None, None, "stop after this many messages",
         _checked("--count", int, 1, "a whole number >= 1")],
        ["seconds", None, None, "stop after this many seconds", _checked("--seconds", float, 0, _SECONDS)],
    ]
    optFlags = [["backlog", None, "first print the messages the node still holds (its last 1000 or so)"]]


class Options(usage.Options):
    """The ``co2`` command line: a command, whose :class:`CommandOptions` are ``subOptions``."""

    opt_h, opt_version = usage.Options.opt_help, CommandOptions.opt_version
    commands = (MethodsOptions, CallOptions, NotifyOptions, WatchOptions)
    subCommands = [[c.command, None, c, c.summary] for c in commands]
    synopsis = "usage: co2 [--help] [--version] {{{}}} ...".format(",".join(c.command for c in commands))
    longdesc = "Call a co2 node or any XML-RPC server.  Exit status: 0 done, 1 fault or failure, 2 bad usage."

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("the following arguments are required: COMMAND")


def parse_args(argv: Sequence[str] | None = None) -> CommandOptions:
    """
    Read a ``co2`` command line: the options of the command it names, its URL checked and its JSON
    arguments read.  Exits 0 after ``--help`` or ``--version``; for bad usage, writes the usage line
    and one line saying what is wrong to stderr, and exits 2.
    """
    options = Options()
    try:
        options.parseOptions(list(sys.argv[1:] if argv is None else argv))
    except (usage.UsageError, UsageError) as e:
        shown: Any = getattr(options, "subOptions", options)
        print(shown.getSynopsis(), f"co2: {e}", sep="\n", file=sys.stderr)
        sys.exit(2)
    return options.subOptions


def check_url(url: str) -> str:
    """``url`` as an XML-RPC URL (``http://`` added when no scheme is given); raises :class:`UsageError`."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"URL {shown_url(url)} must start with http:// or https://")
    try:
        parts.port  # noqa: B018 (reading it checks it)
    except ValueError:
        raise UsageError(f"URL {shown_url(url)} has a port that is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise UsageError(f"URL {shown_url(url)} names no host")
    return url


def json_argument(text: str, what: str) -> Any:
    """
    ``text`` read as JSON, as an XML-RPC value.  Raises :class:`UsageError`
    naming ``what`` and how to quote a string when ``text`` is not JSON.
    """
    try:
        value = json.loads(text)
    except ValueError as e:
        raise UsageError(f"{what} is not JSON: {text!r} ({e}); a string is written in double quotes, "
                         f"quoted again for the shell: '{json.dumps(text)}'") from None
    try:
        return from_json(value)
    except ValueError as e:
        raise UsageError(f"{what}: {e}") from None


def from_json(value: Any) -> Any:
    """A JSON value as the XML-RPC value it stands for (see the module's docstring)."""
    if isinstance(value, dict):
        if len(value) == 1 and BASE64 in value:
            try:
                return base64.b64decode(value[BASE64], validate=True)
            except (TypeError, ValueError):
                raise ValueError(f"{{{BASE64!r}: ...}} must hold base64 text") from None
        if len(value) == 1 and DATETIME in value:
            try:
                return datetime.datetime.fromisoformat(value[DATETIME])
            except (TypeError, ValueError):
                raise ValueError(f"{{{DATETIME!r}: ...}} must hold an ISO 8601 date and time") from None
        return {key: from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_json(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and infinities are not XML-RPC values")
    return value


# Output


def to_json(value: Any) -> Any:
    """An XML-RPC value as JSON can hold it: bytes as ``{"$base64": ...}``, a dateTime as ISO text."""
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return {BASE64: base64.b64encode(value).decode("ascii")}
    if isinstance(value, xmlrpc.client.Binary):
        return {BASE64: base64.b64encode(value.data).decode("ascii")}
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, xmlrpc.client.DateTime):
        return _datetime_text(value.value)
    return value


def _datetime_text(text: str) -> str:
    try:
        return datetime.datetime.strptime(text, "%Y%m%dT%H:%M:%S").isoformat()
    except ValueError:
        return text


def render(value: Any, pretty: bool = True) -> str:
    """``value`` as JSON text: indented with sorted keys, or on one line (also sorted)."""
    if pretty:
        return json.dumps(to_json(value), indent=2, sort_keys=True, ensure_ascii=False)
    return json.dumps(to_json(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def shown_url(url: str) -> str:
    """``url`` with its password, if any, hidden."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"
    return SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment).geturl()


# Calls


def _dump_int(marshaller: xmlrpc.client.Marshaller, value: Any, write: Callable[[str], object]) -> None:
    if -(2**31) <= value < 2**31:
        write(f"<value><int>{value}</int></value>\n")
    elif -(2**63) <= value < 2**63:
        write(f"<value><i8>{value}</i8></value>\n")
    else:
        raise OverflowError(f"{value} does not fit in 64 bits")


class _Marshaller(xmlrpc.client.Marshaller):
    """``xmlrpc.client``'s writer, with ints beyond 32 bits as ``i8`` (as co2 reads them)."""

    dispatch = dict(xmlrpc.client.Marshaller.dispatch)
    dispatch[int] = _dump_int


def _request_body(method: str, params: tuple[Any, ...]) -> bytes:
    marshaller = _Marshaller("utf-8", allow_none=True)
    name = xmlrpc.client.escape(method)
    body = f"<methodName>{name}</methodName>\n{marshaller.dumps(params)}"
    return f"<?xml version='1.0'?>\n<methodCall>\n{body}</methodCall>\n".encode()


class _Timed:
    """A transport whose connections give up after ``timeout`` seconds, reused ones too."""

    timeout: float = DEFAULT_TIMEOUT

    def make_connection(self, host: Any) -> Any:
        connection: http.client.HTTPConnection = super().make_connection(host)  # type: ignore[misc]
        connection.timeout = self.timeout
        if connection.sock is not None:
            connection.sock.settimeout(self.timeout)
        return connection


class TimedTransport(_Timed, xmlrpc.client.Transport):
    """An http transport whose connections give up after ``timeout`` seconds."""


class TimedSafeTransport(_Timed, xmlrpc.client.SafeTransport):
    """An https transport whose connections give up after ``timeout`` seconds."""


class Client:
    """
    Calls the node at ``url`` (``http://`` or ``https://``, with ``user:password@`` for HTTP
    Basic); ``ca`` is a file of CA certificates to trust for https.  Each call gives up after
    ``timeout`` seconds.  Raises :class:`ClientError` for every failure but a fault, which is
    raised as ``xmlrpc.client.Fault``.
    """

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT, ca: str | None = None) -> None:
        self.url = url
        parts = urlsplit(url)
        self.host = parts.netloc
        self.handler = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.transport: TimedTransport | TimedSafeTransport
        if parts.scheme == "https":
            try:
                context = ssl.create_default_context(cafile=ca)
            except (OSError, ssl.SSLError) as e:
                raise UsageError(f"--ca {ca}: cannot read CA certificates: {_reason(e)}") from None
            self.transport = TimedSafeTransport(use_builtin_types=True, context=context)
        else:
            self.transport = TimedTransport(use_builtin_types=True)
        self.transport.timeout = timeout

    def set_timeout(self, timeout: float) -> None:
        """Give up on the next calls after ``timeout`` seconds."""
        self.transport.timeout = timeout  # the connection takes it at the next call

    def call(self, method: str, *params: Any) -> Any:
        """Call ``method`` with ``params``; its result."""
        try:
            body = _request_body(method, params)
        except (OverflowError, TypeError) as e:
            raise UsageError(f"{method}: an argument XML-RPC cannot carry: {e}") from None
        with self._errors():
            (result,) = self.transport.request(self.host, self.handler, body)
        return result

    def local_address(self) -> str:
        """The address of this machine that the connection to the node comes from."""
        with self._errors():
            connection = self.transport.make_connection(self.host)
            if connection.sock is None:
                connection.connect()
            assert connection.sock is not None
            return str(connection.sock.getsockname()[0])

    def close(self) -> None:
        """Close the connection, if open."""
        self.transport.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turns what a call can raise, but a fault, into :class:`ClientError`."""
        try:
            yield
        except (xmlrpc.client.Fault, UsageError):
            raise
        except Exception as error:
            self.close()
            raise _translated(error, self.url, self.transport.timeout) from None


def _translated(error: Exception, url: str, timeout: float) -> Exception:
    """The :class:`ClientError` telling of ``error`` in a call to ``url`` (an unknown kind: ``error``)."""
    shown = shown_url(url)
    if isinstance(error, xmlrpc.client.ProtocolError):
        if error.errcode != 401:
            return ClientError(f"{shown} answered HTTP {error.errcode} {error.errmsg}")
        if urlsplit(url).password is None:
            return ClientError(
                f"{shown} needs credentials (HTTP 401): give them in the URL, as {_with_credentials(url)}"
            )
        return ClientError(f"{shown} refused the credentials given (HTTP 401)")
    if isinstance(error, TimeoutError):
        return ClientError(f"no answer from {shown} within {timeout:g}s")
    if isinstance(error, ssl.SSLError):
        return ClientError(f"TLS with {shown} failed: {_reason(error)}")
    unreachable = isinstance(error, OSError) and not isinstance(error, ConnectionError)
    if unreachable or isinstance(error, ConnectionRefusedError):
        return ClientError(f"cannot reach {shown}: {_reason(error)}")
    if isinstance(error, (OSError, http.client.HTTPException)):
        return ClientError(f"the connection to {shown} failed: {_reason(error)}")
    if isinstance(error, (xmlrpc.client.ResponseError, ExpatError, ValueError)):
        return ClientError(f"{shown} did not answer in XML-RPC: {_reason(error)}")
    return error


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return str(error.verify_message)
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if isinstance(error, xmlrpc.client.Error) and error.args:
        return str(error.args[0])  # its str() is its repr()
    return str(error) or type(error).__name__


def _with_credentials(url: str) -> str:
    parts = urlsplit(url)
    netloc = f"USER:PASSWORD@{parts.netloc}"
    return SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment).geturl()


# The commands


def list_methods(client: Client, out: IO[str]) -> None:
    """Print the method names, one per line."""
    try:
        names = client.call("co2.get_method_names")
    except xmlrpc.client.Fault:
        names = client.call("system.listMethods")
    if not isinstance(names, list):
        raise ClientError(f"{shown_url(client.url)} gave no list of method names: {render(names, False)}")
    for name in names:
        print(name, file=out)


def call_method(client: Client, method: str, params: tuple[Any, ...], raw: bool, out: IO[str]) -> None:
    """Print the result of ``method`` as JSON (or, with ``raw``, a string as it is)."""
    result = client.call(method, *params)
    if raw and isinstance(result, str):
        print(result, file=out)
    else:
        print(render(result, pretty=not raw), file=out)


def notify(client: Client, value: Any, out: IO[str]) -> None:
    """
    Send ``{'data': value, 'host_id': ...}``: the host_id names the
    address the node sees this client at (port 0, as the client serves
    nothing), which the node checks.
    """
    host = client.local_address()
    host_id = make_host_id(f"[{host}]" if ":" in host else host, 0)
    print(render(client.call("notify", {"data": value, "host_id": host_id})), file=out)


def watch(
    client: Client, out: IO[str], err: IO[str], count: int | None = None, seconds: float | None = None,
    backlog: bool = False, timer: Callable[[], float] = time.monotonic, poll: float = WATCH_POLL,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """
    Print each message the node takes as one JSON line, from now on (or,
    with ``backlog``, from the oldest it holds), until ``count`` messages
    or ``seconds`` have passed, or for ever.  A note on ``err`` tells of
    messages the node no longer held when asked.  An empty answer that
    came back early (the node had too many watchers waiting to hold one
    more) is followed by a pause before the next poll, not by a tight loop.
    """
    deadline = None if seconds is None else timer() + seconds
    cursor: int = 0 if backlog else -1
    printed = 0
    while True:
        wait = poll if deadline is None else max(0.0, min(poll, deadline - timer()))
        client.set_timeout(wait + WATCH_MARGIN)
        asked = timer()
        answer = client.call("co2.watch", cursor if -(2**31) <= cursor < 2**31 else str(cursor), wait)
        if not isinstance(answer, dict) or not isinstance(answer.get("messages"), list):
            raise ClientError(f"{shown_url(client.url)}: co2.watch gave {render(answer, False)}")
        if answer.get("missed"):
            print(f"co2: note: missed {answer['missed']} message(s): "
                  f"the node no longer held them when asked", file=err, flush=True)
        for message in answer["messages"]:
            print(render(message, pretty=False), file=out, flush=True)
            printed += 1
            if count is not None and printed >= count:
                return
        cursor = int(answer["next"])
        if deadline is not None and timer() >= deadline:
            return
        if not answer["messages"] and timer() - asked < wait / 2:
            left = wait if deadline is None else deadline - timer()
            sleep(max(0.0, min(WATCH_BACKOFF, left)))
            if deadline is not None and timer() >= deadline:
                return


def run(options: CommandOptions, out: IO[str], err: IO[str]) -> None:
    """Carry out a parsed command line."""
    client = Client(options["url"], options["timeout"], options["ca"])
    try:
        if options.command == "methods":
            list_methods(client, out)
        elif options.command == "call":
            call_method(client, options["method"], options["params"], bool(options["raw"]), out)
        elif options.command == "notify":
            notify(client, options["value"], out)
        else:
            watch(client, out, err, options["count"], options["seconds"], bool(options["backlog"]))
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``co2`` command."""
    try:
        args = parse_args(argv)
    except BrokenPipeError:  # --help into a pipe closed early
        silence_stdout()
        sys.exit(1)
    status = 0
    try:
        run(args, sys.stdout, sys.stderr)
    except xmlrpc.client.Fault as fault:
        print(f"co2: fault {fault.faultCode}: {fault.faultString}", file=sys.stderr)
        status = 1
    except (ClientError, UsageError) as e:
        print(f"co2: {e}", file=sys.stderr)
        status = 2 if isinstance(e, UsageError) else 1
    except KeyboardInterrupt:
        status = 0  # Ctrl-C is how watch is meant to end
    except BrokenPipeError:
        status = 0  # the reader (head, grep -m) has had enough
        silence_stdout()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()  # else Python complains, at exit, of flushing a closed pipe
    sys.exit(status)

