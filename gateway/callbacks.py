"""Callbacks: where the gateway may POST an async call's result, and the POST itself.

A callback is a request the gateway makes from inside the cluster to a URL a caller chose:
server-side request forgery unless it is fenced in. So:

- only hosts listed in ``KF_GATEWAY_CALLBACK_HOSTS`` (none by default: callbacks are off);
- even for those, only public addresses: the resolver of the callback session drops the
  others, so the check is made on the very addresses the connection goes to and a name that
  resolves elsewhere between a check and the connect (DNS rebinding) gains nothing.
  ``KF_GATEWAY_CALLBACK_ALLOW_PRIVATE=true`` lifts this for in-cluster receivers;
- no redirects followed, no cookies kept, nothing of the caller's request forwarded, and
  logs name the host and path only (a query string may carry a receiver's secret).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from kubefuncs.errors import ConfigError
from yarl import URL

from .calls import CallResult

log = logging.getLogger(__name__)

CALLBACK_HEADER = "X-Callback-Url"
HOSTS_VAR = "KF_GATEWAY_CALLBACK_HOSTS"
PRIVATE_VAR = "KF_GATEWAY_CALLBACK_ALLOW_PRIVATE"
CALLBACK_ATTEMPTS = 3
MAX_URL_CHARS = 2048
_LABELS = re.compile(
    r"(\*\.)?([a-z0-9_]([a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?"
)
_PRINTABLE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class HostPattern:
    """One entry of the allow-list: a host name or address, or ``*.suffix`` for every name
    below ``suffix`` (not ``suffix`` itself); any port unless one is given."""

    host: str
    port: int | None = None

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.host.startswith("*."):
            suffix = self.host[1:]
            return host.endswith(suffix) and len(host) > len(suffix)
        return host == self.host


def parse_hosts(var: str, raw: str) -> tuple[HostPattern, ...]:
    """``a.example.com,*.hooks.example.com:8443,[fd00::1]:80`` -> the allow-list."""
    return tuple(_pattern(var, item) for item in (p.strip() for p in raw.split(",")) if item)


def _pattern(var: str, item: str) -> HostPattern:
    host, port_text = _split_port(item)
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(var, f"entry {item!r} has an invalid port")
        port = int(port_text)
    normal = normal_host(host)
    if _ip(normal) is None and not _LABELS.fullmatch(normal):
        raise ConfigError(
            var, f"entry {item!r} must be HOST, HOST:PORT, *.DOMAIN or [IPv6]:PORT (ASCII)"
        )
    return HostPattern(normal, port)


def _split_port(item: str) -> tuple[str, str | None]:
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else (rest or None)
    if item.count(":") == 1:
        host, port = item.split(":")
        return host, port
    return item, None  # a name, or a bare IPv6 address


def normal_host(host: str) -> str:
    """Lower case, without a final dot; addresses in their canonical form."""
    host = host.lower().rstrip(".")
    address = _ip(host)
    return host if address is None else str(address)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_public(address: str) -> bool:
    """Whether ``address`` is a public unicast address: not loopback, private, shared,
    link-local (169.254.0.0/16, where cloud metadata lives), multicast, unspecified or
    reserved, IPv4 or IPv6 (an IPv4-mapped IPv6 address is judged as its IPv4)."""
    ip = _ip(address)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True, slots=True)
class CallbackPolicy:
    hosts: tuple[HostPattern, ...] = ()
    allow_private: bool = False


class BadCallback(ValueError):
    """An ``X-Callback-Url`` refused; ``reason`` is safe to show to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def callback_url(values: list[str], policy: CallbackPolicy) -> URL | None:
    """The callback URL of a request whose X-Callback-Url headers are ``values``, None
    without one; BadCallback when ``policy`` refuses it (or there are several)."""
    if not values:
        return None
    if len(values) > 1:
        raise BadCallback(f"send one {CALLBACK_HEADER} header, got {len(values)}")
    return parse_callback(values[0], policy)


def parse_callback(raw: str, policy: CallbackPolicy) -> URL:
    """The callback URL in ``raw`` if ``policy`` lets the gateway POST there, else
    BadCallback. It is parsed once, here, with the parser the HTTP client uses."""
    if not raw:
        raise BadCallback("X-Callback-Url is empty")
    if len(raw) > MAX_URL_CHARS:
        raise BadCallback(f"callback URL is longer than {MAX_URL_CHARS} characters")
    if not _PRINTABLE.fullmatch(raw):
        raise BadCallback(
            "callback URL must be printable ASCII without spaces "
            "(percent-encode the rest, punycode for international host names)"
        )
    url = _absolute(raw)
    host = normal_host(url.raw_host or "")
    port = url.port or 0
    if not policy.hosts:
        raise BadCallback(f"callbacks are off: {HOSTS_VAR} lists the hosts that may get them")
    if not any(pattern.matches(host, port) for pattern in policy.hosts):
        raise BadCallback(f"callback host {host}:{port} is not listed in {HOSTS_VAR}")
    if _ip(host) is not None and not policy.allow_private and not is_public(host):
        raise BadCallback(f"callback address {host} is not public; {PRIVATE_VAR}=true allows it")
    return url


def _absolute(raw: str) -> URL:
    try:
        url = URL(raw)
        port = url.port
    except (ValueError, TypeError) as e:
        raise BadCallback(f"callback URL cannot be parsed: {e}") from None
    if url.scheme not in ("http", "https") or not url.raw_host or port is None:
        raise BadCallback(f"callback URL must be an absolute http(s) URL, got {raw!r}")
    if url.raw_user is not None or url.raw_password is not None:
        raise BadCallback("callback URL must not carry credentials (user:password@)")
    return url


class CallbackRefused(OSError):
    """A callback host whose every address is not public (raised while connecting)."""


class PublicResolver(AbstractResolver):
    """aiohttp's resolver, keeping only public addresses (``is_public``). The connector
    connects to what this returns, so no other address can be reached by name."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept = [r for r in found if is_public(r["host"])]
        if not kept:
            addresses = ", ".join(sorted({r["host"] for r in found}))
            raise CallbackRefused(
                f"{host} resolves to no public address ({addresses}); {PRIVATE_VAR}=true "
                "allows private ones"
            )
        return kept

    async def close(self) -> None:
        await self._inner.close()


def callback_session(policy: CallbackPolicy) -> aiohttp.ClientSession:
    """The HTTP client for callbacks: public addresses only unless the policy allows
    private ones, no cookies (one receiver's never reach another), no proxy from the
    environment."""
    resolver = None if policy.allow_private else PublicResolver()
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=resolver),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


async def post_callback(
    session: aiohttp.ClientSession, url: URL, call_id: str, result: CallResult, timeout_s: float
) -> bool:
    """POST a finished call's response to ``url``: its body, its content type, and
    X-Call-Id / X-Call-Status headers. A few attempts on connection errors and 5xx; a
    redirect is a failure (not followed), a refused address is not tried again."""
    headers = {
        "X-Call-Id": call_id,
        "X-Call-Status": str(result.status),
        "Content-Type": _content_type(result.headers),
    }
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    target = f"{url.host}:{url.port}{url.raw_path}"  # not the query: it may hold a secret
    for attempt in range(1, CALLBACK_ATTEMPTS + 1):
        try:
            async with session.post(
                url, data=result.body, headers=headers, timeout=timeout, allow_redirects=False
            ) as r:
                if r.status < 500:
                    if r.status >= 300:  # a redirect too: following it could lead anywhere
                        log.info(
                            "callback to %s answered HTTP %d", target, r.status, extra=_id(call_id)
                        )
                    return r.status < 300
                problem = f"HTTP {r.status}"
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, CallbackRefused):
                log.warning("callback to %s refused: %s", target, e.os_error, extra=_id(call_id))
                return False
            problem = _describe(e, url, target)
        except (aiohttp.ClientError, TimeoutError) as e:
            problem = _describe(e, url, target)
        log.info(
            "callback to %s attempt %d failed: %s", target, attempt, problem, extra=_id(call_id)
        )
        if attempt < CALLBACK_ATTEMPTS:
            await asyncio.sleep(0.2 * 2**attempt)
    return False


def _describe(error: BaseException, url: URL, target: str) -> str:
    return (str(error) or type(error).__name__).replace(str(url), target)


def _id(call_id: str) -> dict[str, str]:
    return {"call_id": call_id}


def _content_type(headers: Mapping[str, str]) -> str:
    for name, value in headers.items():
        if name.lower() == "content-type":
            return value
    return "application/octet-stream"
