"""Callbacks only to configured hosts, never to private addresses unless allowed (server-side
request forgery, issue 12): the allow-list, the address rule, the resolver that applies it
where connections are made, and the gateway app refusing or failing callbacks."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from kubefuncs.errors import ConfigError
from kubefuncs.gateway import GatewaySettings
from kubefuncs.gateway.callbacks import (
    BadCallback,
    CallbackPolicy,
    CallbackRefused,
    HostPattern,
    PublicResolver,
    is_public,
    parse_callback,
    parse_hosts,
)

from .test_app import SETTINGS, gateway
from .test_hostile import raw

HOSTS = "KF_GATEWAY_CALLBACK_HOSTS"

# -- the allow-list ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "host", "port", "allowed"),
    [
        ("*.example.com", "a.example.com", 443, True),
        ("*.example.com", "a.b.example.com", 80, True),
        ("*.example.com", "example.com", 443, False),
        ("*.example.com", "example.com.evil.org", 443, False),
        ("*.example.com", "evilexample.com", 443, False),
        ("*.example.com", "a.example.com.evil.org", 443, False),
        ("hooks.example.com", "hooks.example.com", 8443, True),
        ("hooks.example.com", "a.hooks.example.com", 443, False),
        ("hooks.example.com:8443", "hooks.example.com", 8443, True),
        ("hooks.example.com:8443", "hooks.example.com", 443, False),
        ("*.example.com:443", "a.example.com", 80, False),
        ("[fd00::1]:80", "fd00::1", 80, True),
        ("10.0.0.5", "10.0.0.5", 1234, True),
    ],
)
def test_a_host_matches_the_patterns_listed(
    pattern: str, host: str, port: int, allowed: bool
) -> None:
    (parsed,) = parse_hosts(HOSTS, pattern)
    assert parsed.matches(host, port) is allowed


def test_the_allow_list_is_read_from_the_environment() -> None:
    settings = GatewaySettings.from_env(
        {HOSTS: " A.Example.com., *.hooks.example.com:8443 ,,[FD00::0001]:80"}
    )
    assert settings.callback_hosts == (
        HostPattern("a.example.com"),
        HostPattern("*.hooks.example.com", 8443),
        HostPattern("fd00::1", 80),
    )
    assert settings.callback_allow_private is False
    assert GatewaySettings.from_env({}).callbacks == CallbackPolicy((), False)
    allowed = GatewaySettings.from_env({"KF_GATEWAY_CALLBACK_ALLOW_PRIVATE": "true"})
    assert allowed.callback_allow_private is True


@pytest.mark.parametrize(
    "raw_hosts", ["a.example.com:0", "a.example.com:x", "a b.example.com", "*", "a.*.com", "é.fr"]
)
def test_a_bad_allow_list_entry_names_the_variable(raw_hosts: str) -> None:
    with pytest.raises(ConfigError, match=HOSTS):
        GatewaySettings.from_env({HOSTS: raw_hosts})


# -- the address rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),  # loopback
        ("10.1.2.3", False),  # private
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # shared (carrier-grade NAT)
        ("169.254.169.254", False),  # link-local: cloud metadata
        ("0.0.0.0", False),  # unspecified
        ("224.0.0.1", False),  # multicast
        ("240.0.0.1", False),  # reserved
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fd00::1", False),  # unique local
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:169.254.169.254", False),
        ("not-an-address", False),
    ],
)
def test_only_public_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(address) is public


LISTED = CallbackPolicy(parse_hosts(HOSTS, "*.example.com,10.0.0.5,169.254.169.254,[::1]"))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://a.example.com/hook", None),
        ("https://a.example.com:8443/hook?token=x", None),
        ("http://example.com.evil.org/hook", f"not listed in {HOSTS}"),
        ("http://evil.org/a.example.com", f"not listed in {HOSTS}"),
        ("ftp://a.example.com/", "absolute http(s) URL"),
        ("/relative", "absolute http(s) URL"),
        ("http://user:pw@a.example.com/", "must not carry credentials"),
        ("http://a.example.com@evil.org/", "must not carry credentials"),
        ("http://a.example.com:99999/", "cannot be parsed"),
        ("http://[::1/", "cannot be parsed"),
        ("http://a.example.com/\r\nX-Injected: 1", "printable ASCII"),
        ("http://a.example.com/ x", "printable ASCII"),
        ("http://é.example.com/", "printable ASCII"),
        ("http://a.example.com/" + "x" * 3000, "longer than 2048"),
        ("", "is empty"),
        ("http://10.0.0.5/hook", "KF_GATEWAY_CALLBACK_ALLOW_PRIVATE=true"),
        ("http://169.254.169.254/latest/meta-data/", "is not public"),
        ("http://[::1]:8080/", "is not public"),
    ],
)
def test_a_callback_url_is_checked_against_the_policy(url: str, problem: str | None) -> None:
    if problem is None:
        assert str(parse_callback(url, LISTED)) == url
        return
    with pytest.raises(BadCallback, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_callback(url, LISTED)


def test_callbacks_are_off_until_hosts_are_listed_and_private_ones_can_be_allowed() -> None:
    with pytest.raises(BadCallback, match=f"callbacks are off: {HOSTS}"):
        parse_callback("https://a.example.com/", CallbackPolicy())
    private = CallbackPolicy(parse_hosts(HOSTS, "10.0.0.5"), allow_private=True)
    assert parse_callback("http://10.0.0.5/hook", private).host == "10.0.0.5"


class Answers(AbstractResolver):
    """A resolver that answers ``addresses`` for every name."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_the_resolver_keeps_only_public_addresses() -> None:
    # A name that resolves to a public and a private address connects to the public one only
    mixed = PublicResolver(Answers("10.0.0.1", "93.184.215.14", "::ffff:127.0.0.1"))
    assert [r["host"] for r in await mixed.resolve("a.example.com", 80)] == ["93.184.215.14"]
    # One that resolves to private addresses only (rebinding to 127.0.0.1, metadata) is refused
    private = PublicResolver(Answers("127.0.0.1", "169.254.169.254"))
    with pytest.raises(CallbackRefused, match=r"127\.0\.0\.1, 169\.254\.169\.254"):
        await private.resolve("a.example.com", 80)


# -- the gateway -------------------------------------------------------------------------------


class Receiver:
    """A callback receiver on 127.0.0.1: ``/hook`` records what it gets, ``/moved``
    redirects to ``/hook``."""

    def __init__(self) -> None:
        self.got: list[str] = []
        self.app = web.Application()
        self.app.router.add_post("/hook", self._hook)
        self.app.router.add_post("/moved", self._moved)

    async def _hook(self, request: web.Request) -> web.Response:
        self.got.append(request.path_qs)
        return web.Response()

    async def _moved(self, request: web.Request) -> web.Response:
        self.got.append(request.path_qs)
        raise web.HTTPTemporaryRedirect("/hook")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, TestServer]]:
    hook = Receiver()
    async with TestServer(hook.app, host="127.0.0.1") as server:
        yield hook, server


def _allowing(hosts: str, *, allow_private: bool) -> GatewaySettings:
    return replace(
        SETTINGS, callback_hosts=parse_hosts(HOSTS, hosts), callback_allow_private=allow_private
    )


async def _callbacks(client: TestClient, outcome: str) -> float:  # type: ignore[type-arg]
    text = await (await client.get("/metrics")).text()
    line = f'kubefuncs_gateway_callbacks_total{{outcome="{outcome}"}} '
    values = [float(x.split()[-1]) for x in text.splitlines() if x.startswith(line)]
    return values[0] if values else 0.0


async def _wait_for_callbacks(client: TestClient, outcome: str) -> None:  # type: ignore[type-arg]
    async with asyncio.timeout(10):
        while await _callbacks(client, outcome) < 1:
            await asyncio.sleep(0.02)


async def test_a_callback_to_an_unlisted_host_is_a_400_naming_the_variable() -> None:
    for config in (SETTINGS, _allowing("hooks.example.com", allow_private=False)):
        async with gateway(config) as client:
            r = await client.post("/jobs/", headers={"X-Callback-Url": "http://evil.org/x"})
            assert r.status == 400
            body = await r.json()
            assert body["error"] == "bad_callback" and HOSTS in body["message"]


async def test_a_listed_name_that_resolves_to_loopback_gets_nothing_without_allow_private(
    receiver: tuple[Receiver, TestServer], caplog: pytest.LogCaptureFixture
) -> None:
    hook, server = receiver
    # Given "localhost" is listed, but private addresses are not allowed
    async with gateway(_allowing(f"localhost:{server.port}", allow_private=False)) as client:
        # When a call asks for a callback there
        url = f"http://localhost:{server.port}/hook?token=s3cret"
        with caplog.at_level(logging.INFO, logger="kubefuncs.gateway"):
            r = await client.post("/jobs/", headers={"X-Callback-Url": url})
            assert r.status == 202
            # Then the callback is counted failed, and the receiver got nothing
            await _wait_for_callbacks(client, "failed")
        assert hook.got == [] and await _callbacks(client, "ok") == 0
        # And the call's result is still there to fetch
        assert (await client.get(f"/calls/{r.headers['X-Call-Id']}")).status == 200
    # And the log says why, with the host and path but not the query string
    refused = [rec.getMessage() for rec in caplog.records if "refused" in rec.getMessage()]
    assert refused and "localhost" in refused[0] and "/hook" in refused[0]
    assert "s3cret" not in caplog.text


async def test_with_allow_private_a_listed_local_receiver_gets_the_result(
    receiver: tuple[Receiver, TestServer],
) -> None:
    hook, server = receiver
    async with gateway(_allowing(f"localhost:{server.port}", allow_private=True)) as client:
        url = f"http://localhost:{server.port}/hook?token=s3cret"
        r = await client.post("/jobs/", headers={"X-Callback-Url": url})
        assert r.status == 202
        await _wait_for_callbacks(client, "ok")
        assert hook.got == ["/hook?token=s3cret"]


async def test_a_redirect_is_a_failed_callback_and_not_followed(
    receiver: tuple[Receiver, TestServer],
) -> None:
    hook, server = receiver
    async with gateway(_allowing("127.0.0.1", allow_private=True)) as client:
        # When the callback receiver answers 307 to another path
        url = str(server.make_url("/moved"))
        r = await client.post("/jobs/", headers={"X-Callback-Url": url})
        assert r.status == 202
        # Then the callback failed, and the redirect target got nothing
        await _wait_for_callbacks(client, "failed")
        assert hook.got == ["/moved"]


@pytest.mark.parametrize(
    "value",
    [
        b"http://127.0.0.1/\x80\xff",  # not UTF-8
        b"http://127.0.0.1/\xc3\xa9",  # UTF-8, not ASCII
        b"http://127.0.0.1/" + b"x" * 4000,  # huge
        b"http://127.0.0.1/a\rX-Injected: 1",  # a bare CR in the value
        b"http://127.0.0.1/%0d%0aX-Injected:%201",  # encoded CRLF: fine, stays encoded
        b"http://127.0.0.1:99999/",
        b"http://[::1/",
        b"",
    ],
    ids=["non-utf8", "non-ascii", "huge", "cr", "encoded-crlf", "bad-port", "bad-ipv6", "empty"],
)
async def test_a_hostile_callback_header_is_a_400_not_a_500(
    value: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with gateway(_allowing("127.0.0.1", allow_private=True)) as client:
        request = (
            b"POST /jobs/ HTTP/1.1\r\nHost: x\r\nX-Callback-Url: "
            + value
            + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        data = await raw(client, request)
        # Then a 400 (a bare CR: refused by aiohttp's parser, before the app; in the gateway
        # process frontdoor.py answers it as JSON without a traceback), or for
        # the percent-encoded CRLF a call whose callback URL stays encoded
        status = data.partition(b"\r\n")[0].split(b" ")[1]
        assert status == (b"202" if b"%0d%0a" in value else b"400"), data[:300]
        assert not [r for r in caplog.records if r.exc_info and r.name.startswith("kubefuncs")]


async def test_two_callback_headers_are_a_400() -> None:
    async with gateway(_allowing("127.0.0.1", allow_private=True)) as client:
        request = (
            b"POST /jobs/ HTTP/1.1\r\nHost: x\r\nX-Callback-Url: http://127.0.0.1/a\r\n"
            b"X-Callback-Url: http://127.0.0.1/b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        head = (await raw(client, request)).partition(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 400"), head


# -- fuzzing -----------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, database=None)
URL_PARTS = st.sampled_from(
    [
        "http://",
        "https://",
        "a.example.com",
        "example.com",
        ".",
        "@",
        ":",
        "80",
        "[::1]",
        "127.0.0.1",
        "/",
        "?",
        "#",
        "%0d%0a",
        "\\",
        "\r\n",
        " ",
        "é",
        "evil.org",
        "*",
        "%2e",
    ]
)


@FUZZ
@given(st.one_of(st.text(max_size=80), st.lists(URL_PARTS, max_size=10).map("".join)))
def test_any_callback_header_is_a_url_the_policy_allows_or_a_reason(raw: str) -> None:
    # Whatever the header holds: BadCallback with a reason, or a URL whose host (the one
    # the client connects to) is listed and not a private address literal
    try:
        url = parse_callback(raw, LISTED)
    except BadCallback as e:
        assert e.reason
        return
    host = url.raw_host or ""
    assert any(p.matches(host.lower().rstrip("."), url.port or 0) for p in LISTED.hosts)
    assert host.lower().rstrip(".").endswith(".example.com"), raw
