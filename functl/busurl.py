"""What the renderer needs to know about a bus URL (pure).

``valkey://host:6379/0`` (also ``redis://``; ``valkeys://``/``rediss://`` for TLS),
``nsq://lookupd-a:4161,lookupd-b:4161`` (nsqlookupd HTTP addresses) or
``nsq://?nsqd=host:4150`` (direct nsqd, no lookupd), ``memory://`` (in-process).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

VALKEY_SCHEMES = {"valkey": False, "redis": False, "valkeys": True, "rediss": True}


@dataclass(frozen=True, slots=True)
class BusTarget:
    kind: str  # "valkey", "nsq" or "memory"
    address: str = ""  # valkey host:port
    db: int = 0
    tls: bool = False
    lookupd: tuple[str, ...] = ()  # nsqlookupd HTTP host:port
    nsqd: tuple[str, ...] = ()  # direct nsqd TCP and HTTP host:port (nsq://?nsqd=...)
    password_in_url: bool = False
    prefix: str = ""  # key prefix (Valkey, default "kf") / topic name prefix (NSQ)


def parse(url: str) -> BusTarget:
    """Parse a bus URL; ValueError with a readable message when it is unusable."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in VALKEY_SCHEMES:
        return _valkey(url, scheme)
    if scheme == "nsq":
        hosts = tuple(h for h in parts.netloc.split(",") if h)
        query = parse_qs(parts.query)
        return BusTarget(
            "nsq", lookupd=hosts, nsqd=_nsqd(query), prefix=query.get("prefix", [""])[0]
        )
    if scheme == "memory":
        return BusTarget("memory")
    raise ValueError(f"unknown bus URL scheme {scheme!r} in {url!r}")


def _nsqd(query: dict[str, list[str]]) -> tuple[str, ...]:
    """Direct nsqd addresses, TCP then HTTP (TCP port + 1 when nsqd_http is not given)."""
    tcp = [a for v in query.get("nsqd", []) for a in v.split(",") if a.strip()]
    http = [a for v in query.get("nsqd_http", []) for a in v.split(",") if a.strip()]
    if not http:
        http = [f"{h}:{int(p) + 1}" for h, _, p in (a.rpartition(":") for a in tcp) if p.isdigit()]
    return tuple(a.strip() for a in tcp + http)


def _valkey(url: str, scheme: str) -> BusTarget:
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port or 6379
    except ValueError as e:
        raise ValueError(f"bad port in bus URL {url!r}") from e
    if not host:
        raise ValueError(f"bus URL {url!r} has no host")
    db_text = parts.path.strip("/") or parse_qs(parts.query).get("db", ["0"])[0]
    if not db_text.isdigit():
        raise ValueError(f"bus URL {url!r}: database must be a number, got {db_text!r}")
    return BusTarget(
        "valkey",
        # brackets keep an IPv6 host apart from the port, as KEDA's address parser needs
        address=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        db=int(db_text),
        tls=VALKEY_SCHEMES[scheme],
        password_in_url=parts.password is not None,
        prefix=parse_qs(parts.query).get("prefix", ["kf"])[0],
    )
