"""The front door of a real gateway process: bytes that are not a routable HTTP request get
a JSON 4xx with a reason, one at a time or fuzzed by hypothesis, and the process serves on
with no traceback in its log (issue 12: aiohttp's text pages echoed the bytes and logged a
traceback each; ``..%2f`` and ``%00`` reached functions)."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubefuncs.gateway.frontdoor import bad_path, parser_refusal

from tests.procs import Proc
from tests.servers import ServerProcess, free_port

pytestmark = pytest.mark.real

ROUTES = (
    "routes:\n  /e/: {topic: frontdoor, timeout_s: 5}\n  /key/: {topic: frontdoor, auth: api_key}\n"
)


@dataclass(frozen=True)
class Door:
    addr: tuple[str, int]
    gateway: Proc

    def send(self, request: bytes) -> tuple[int, bytes, bytes]:
        """(status, head, body) of the answer to ``request`` on a new connection."""
        with socket.create_connection(self.addr, timeout=10) as s:
            s.sendall(request)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1."), f"no HTTP answer to {request[:200]!r}: {got[:200]!r}"
        return int(head.split(b" ", 2)[1]), head, body


@pytest.fixture(scope="module")
def door(valkey_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    routes = Path(tmp_path_factory.mktemp("frontdoor")) / "routes.yaml"
    routes.write_text(ROUTES)
    bus = f"valkey://127.0.0.1:{valkey_server.port}/0?prefix=frontdoor"
    port = free_port()
    function = Proc(
        ["kubefuncs", "tests.gateway.fns:behave"],
        {"KF_BUS_URL": bus, "KF_TOPIC": "frontdoor", "KF_HEALTH_ADDR": "", "KF_LOG_LEVEL": "INFO"},
    )
    gateway = Proc(
        ["kubefuncs.gateway", str(routes)],
        {
            "KF_BUS_URL": bus,
            "KF_GATEWAY_ADDR": f"127.0.0.1:{port}",
            "KF_GATEWAY_API_KEYS": "tests=frontdoor-key-0123",
            "KF_GATEWAY_BODY_TIMEOUT_S": "2",
            "KF_LOG_LEVEL": "INFO",
        },
    )
    try:
        gateway.wait_http(f"http://127.0.0.1:{port}/readyz")
        yield Door(("127.0.0.1", port), gateway)
        # Then after everything below the gateway still answers, and logged no traceback
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b'kubefuncs_gateway_malformed_requests_total{status="400"}' in metrics
    finally:
        code = gateway.stop()
        function.stop()
        assert code == 0, gateway.output()
        assert "Traceback" not in gateway.output(), gateway.output()
        assert "Traceback" not in function.output(), function.output()


def get(path: bytes, extra: bytes = b"") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"Connection: close\r\n\r\n"


HOSTILE = {
    "not-http": (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    "tls-hello": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40, 400, "bad_request"),
    "http2-preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "bad_request"),
    "bad-version": (b"GET /e/a HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_request"),
    "lf-only": (b"GET /e/a HTTP/1.1\nHost: x\n\n", 400, "bad_request"),
    "control-in-target": (b"GET /e/\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    "non-utf8-target": (b"GET /e/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    "long-target": (get(b"/e/" + b"a" * 10_000), 431, "header_too_large"),
    "long-header": (get(b"/e/a", b"X-A: " + b"a" * 10_000 + b"\r\n"), 431, "header_too_large"),
    "many-headers": (
        get(b"/e/a", b"".join(b"X-%d: a\r\n" % i for i in range(200))),
        431,
        "header_too_large",
    ),
    "bad-content-length": (
        b"POST /e/a HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        400,
        "bad_request",
    ),
    "two-content-lengths": (
        b"POST /e/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        400,
        "bad_request",
    ),
    "length-and-chunked": (
        b"POST /e/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "bad_request",
    ),
    "bad-chunk-size": (
        b"POST /e/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        "bad_request",
    ),
    "folded-header": (get(b"/e/a", b"X-A: a\r\n b\r\n"), 400, "bad_request"),
    "space-in-name": (get(b"/e/a", b"X A: a\r\n"), 400, "bad_request"),
    "non-utf8-header": (get(b"/e/a", b"X-A: \x80\xff\r\n"), 400, "bad_header"),
    "nul-in-path": (get(b"/e/a%00b"), 400, "bad_path"),
    "crlf-in-path": (get(b"/e/a%0d%0aSet-Cookie:%20x"), 400, "bad_path"),
    "dot-dot-slash": (get(b"/e/..%2fkey/a"), 400, "bad_path"),
    "encoded-dots": (get(b"/e/%2e%2e/key/a"), 400, "bad_path"),
    "literal-dots": (get(b"/e/../key/a"), 400, "bad_path"),
    "dot-segment": (get(b"/e/./a"), 400, "bad_path"),
    "dots-in-calls": (get(b"/calls/..%2f..%2fe"), 400, "bad_path"),
    "asterisk-form": (
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        404,
        "not_found",
    ),
    "connect": (
        b"CONNECT evil:443 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        404,
        "not_found",
    ),
}


@pytest.mark.parametrize(("request_bytes", "status", "code"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_request_that_cannot_be_routed_gets_a_json_4xx(
    door: Door, request_bytes: bytes, status: int, code: str
) -> None:
    # When the bytes are sent on a connection of their own
    got, _, body = door.send(request_bytes)
    # Then the answer is the status with a JSON reason that does not echo the bytes
    assert got == status, body[:300]
    refusal = json.loads(body)
    assert refusal["error"] == code
    assert refusal["message"]
    assert b"aaaaaaaa" not in body and b"GARBAGE" not in body


def test_names_and_dots_that_are_not_segments_still_route(door: Door) -> None:
    # A dot inside a segment, a percent-encoded slash and %ff are not dot segments
    for path in (b"/e/a.b/..c/...", b"/e/a%2fb", b"/e/%ff%fe"):
        status, _, body = door.send(get(path))
        assert status == 200, (path, body[:300])


@pytest.mark.parametrize(
    ("path", "refused"),
    [
        ("/e/a", False),
        ("/e/a.b", False),
        ("/e/..a", False),
        ("/", False),
        ("/e/..", True),
        ("/e/./", True),
        ("/..", True),
        ("/e/a\x00", True),
        ("/e/\r\n", True),
        ("/e/\x7f", True),
    ],
)
def test_bad_path_refuses_dot_segments_and_control_characters(path: str, refused: bool) -> None:
    assert (bad_path(path) is not None) is refused


def test_parser_refusals_never_repeat_the_request() -> None:
    from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

    assert parser_refusal(LineTooLong(b"secret" * 100, 8190))[0] == 431
    status, code, reason = parser_refusal(BadHttpMessage("Invalid header value:\n\n  b'secret'"))
    assert (status, code) == (400, "bad_request")
    assert "secret" not in reason and "Invalid header value" in reason


# -- fuzzing ---------------------------------------------------------------------------------

TOKEN = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~", min_size=1)
PATH_BYTES = st.lists(
    st.one_of(
        st.sampled_from([b"/", b".", b"..", b"%2f", b"%2e", b"%00", b"%0d%0a", b"%ff", b"%", b"?"]),
        st.sampled_from([b"/e/", b"/key/", b"/calls/", b"/topics/", b"/healthz"]),
        st.binary(min_size=1, max_size=8),
        TOKEN.map(str.encode),
    ),
    max_size=12,
).map(b"".join)
HEADER = st.tuples(
    st.one_of(TOKEN.map(str.encode), st.binary(min_size=1, max_size=12)),
    st.binary(max_size=40),
).filter(lambda h: b"\r" not in h[0] + h[1] and b"\n" not in h[0] + h[1])
FRAMED = {b"content-length", b"transfer-encoding", b"connection", b"expect"}


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """A complete request (framed by its own Content-Length, so the server never waits for
    more): any method token, any target bytes, any headers but the framing ones."""
    method = draw(st.one_of(st.sampled_from(["GET", "POST", "PUT", "OPTIONS", "HEAD"]), TOKEN))
    target = draw(PATH_BYTES).replace(b" ", b"%20").replace(b"\r", b"").replace(b"\n", b"")
    headers = [h for h in draw(st.lists(HEADER, max_size=6)) if h[0].lower() not in FRAMED]
    body = draw(st.binary(max_size=64))
    lines = [method.encode() + b" /" + target.lstrip(b"/") + b" HTTP/1.1", b"Host: x"]
    lines += [name + b": " + value for name, value in headers]
    lines += [b"Content-Length: %d" % len(body), b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request_bytes=requests())
def test_no_request_makes_the_gateway_fail(door: Door, request_bytes: bytes) -> None:
    # Whatever arrives, the answer is an HTTP response that is not a 5xx
    status, _, body = door.send(request_bytes)
    assert status < 500, (request_bytes[:300], body[:300])
    if status >= 400 and not request_bytes.startswith(b"HEAD "):  # every refusal says why
        assert json.loads(body)["message"], body[:300]
