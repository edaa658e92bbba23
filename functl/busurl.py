"""What the renderer needs to know about a bus URL (pure).

``valkey://host:6379/0`` (also ``redis://``; ``valkeys://``/``rediss://`` for TLS),
``valkey+cluster://node-a:6379,node-b:6379`` (a Valkey / Redis Cluster: seed nodes, no
database index; ``valkeys+cluster://``, ``redis+cluster://``, ``rediss+cluster://``),
``nsq://lookupd-a:4161,lookupd-b:4161`` (nsqlookupd HTTP addresses) or
``nsq://?nsqd=host:4150`` (direct nsqd, no lookupd), ``memory://`` (in-process).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

VALKEY_SCHEMES = {"valkey": False, "redis": False, "valkeys": True, "rediss": True}
CLUSTER_SCHEMES = {f"{scheme}+cluster": tls for scheme, tls in VALKEY_SCHEMES.items()}
DEFAULT_PORT = 6379
CLUSTER_FORM = "valkey+cluster://host:6379,host:6379[/?prefix=kf]"


@dataclass(frozen=True, slots=True)
class BusTarget:
    kind: str  # "valkey", "nsq" or "memory"
    address: str = ""  # valkey host:port (a cluster: its first seed node)
    db: int = 0
    tls: bool = False
    lookupd: tuple[str, ...] = ()  # nsqlookupd HTTP host:port
    nsqd: tuple[str, ...] = ()  # direct nsqd TCP and HTTP host:port (nsq://?nsqd=...)
    password_in_url: bool = False
    prefix: str = ""  # key prefix (Valkey, default "kf") / topic name prefix (NSQ)
    cluster: bool = False  # a Valkey / Redis Cluster (valkey+cluster://)
    nodes: tuple[str, ...] = ()  # valkey host:port of every node the URL names


def parse(url: str) -> BusTarget:
    """Parse a bus URL; ValueError with a readable message when it is unusable."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in VALKEY_SCHEMES:
        return _valkey(url, scheme)
    if scheme in CLUSTER_SCHEMES:
        return _cluster(url, scheme)
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
        host, port = parts.hostname, parts.port or DEFAULT_PORT
    except ValueError as e:
        raise ValueError(f"bad port in bus URL {url!r}") from e
    if not host:
        raise ValueError(f"bus URL {url!r} has no host")
    db_text = parts.path.strip("/") or parse_qs(parts.query).get("db", ["0"])[0]
    if not db_text.isdigit():
        raise ValueError(f"bus URL {url!r}: database must be a number, got {db_text!r}")
    address = _address(host, port)
    return BusTarget(
        "valkey",
        address=address,
        db=int(db_text),
        tls=VALKEY_SCHEMES[scheme],
        password_in_url=parts.password is not None,
        prefix=parse_qs(parts.query).get("prefix", ["kf"])[0],
        nodes=(address,),
    )


def _address(host: str, port: int) -> str:
    # brackets keep an IPv6 host apart from the port, as KEDA's address parser needs
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _cluster(url: str, scheme: str) -> BusTarget:
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    nodes = tuple(_node(url, n.strip()) for n in hosts.split(",") if n.strip())
    if not nodes:
        raise ValueError(f"bus URL {url!r} names no cluster node")
    query = parse_qs(parts.query)
    if parts.path.strip("/") or "db" in query:
        raise ValueError(
            f"bus URL {url!r}: a cluster has no database index (every node serves "
            "database 0 only): remove it"
        )
    return BusTarget(
        "valkey",
        address=nodes[0],
        tls=CLUSTER_SCHEMES[scheme],
        password_in_url=":" in userinfo,
        prefix=query.get("prefix", ["kf"])[0],
        cluster=True,
        nodes=tuple(dict.fromkeys(nodes)),
    )


def _node(url: str, text: str) -> str:
    """``host``, ``host:port`` or ``[v6]:port`` of one cluster node, as ``host:port``."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if rest.startswith(":") else rest
    else:
        host, _, port_text = text.partition(":") if text.count(":") <= 1 else (text, "", "")
    if not host:
        raise ValueError(f"bus URL {url!r}: cluster node {text!r} has no host")
    if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        raise ValueError(
            f"bus URL {url!r}: cluster node {text!r} has a bad port {port_text!r}: "
            "write host:port with a port from 1 to 65535"
        )
    return _address(host, int(port_text) if port_text else DEFAULT_PORT)
