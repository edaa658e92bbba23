"""NetworkPolicies of a function: egress only to DNS, the bus and ``network.egress``,
ingress only to the health/metrics port from ``network.metrics_from`` (pure).

The bus destination comes from the bus URL, host by host:

* a Service of the kubefuncs bus charts (``<instance>-valkey``, ``<instance>-nsqlookupd``
  or ``<instance>-nsqd``, optionally ``.<namespace>[.svc[.<domain>]]``): the chart's pods
  (``app.kubernetes.io/instance: <instance>``, ``app.kubernetes.io/component: bus``);
* an IP literal: that address (/32 or /128);
* any other host name: a NetworkPolicy cannot name hosts, so the bus ports are open to
  every destination, except those a ``network.egress`` rule lists; :func:`warnings` says so.

NSQ consumers also reach the nsqd nodes nsqlookupd reports (TCP 4150, HTTP 4151): they go
with the lookupd's destination when it is a chart Service, otherwise to any destination.

A cluster bus (``valkey+cluster://a:6379,b:6379``) gets a destination per node the URL
names. Clients use only the nodes' client port; the cluster bus port (client port +
10000) carries node-to-node traffic alone, so no function needs it. A client reaches
every node ``CLUSTER SHARDS`` reports, not just its seeds: with IP literals the URL must
name every node (replicas too, a failover promotes them); a chart Service selects them all.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from . import source
from .busurl import BusTarget
from .model import HEALTH_PORT, Function, Spec
from .naming import COMPONENT, INSTANCE, NAME, Obj, Target, metadata, object_name, selector

NSQD_PORTS = (4150, 4151)  # nsqd TCP and HTTP, as the bus charts run it
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
DNS_PEER: Obj = {
    "namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
CHART_SERVICE = re.compile(
    rf"^(?P<instance>{_LABEL})-(?P<service>valkey|nsqlookupd|nsqd)"
    rf"(?:\.(?P<namespace>{_LABEL})(?:\.svc(?:\.{_LABEL})*)?)?$"
)
_SERVICES = {"valkey": ("valkey",), "nsq": ("nsqlookupd", "nsqd")}

Dest = tuple[str, ...]  # ("any",), ("ip", cidr) or ("chart", instance, namespace, name)


def enabled(fn: Function, target: Target) -> bool:
    """The --network-policy flag when given, else the function's ``network.policy``."""
    return fn.network.policy if target.network_policy is None else target.network_policy


def policies(fn: Function, target: Target, bus: BusTarget) -> list[Obj]:
    """The function's NetworkPolicy, plus one for its schedule pods when it has schedules."""
    if not enabled(fn, target):
        return []
    egress = egress_rules(fn, bus)
    out = [policy(fn, target, "function", object_name(target, fn.name), ingress(fn), egress)]
    if fn.schedules:
        name = object_name(target, fn.name, "schedule")
        out.append(policy(fn, target, "schedule", name, [], egress))
    return out


def policy(
    fn: Function, target: Target, component: str, name: str, ingress: list[Obj], egress: list[Obj]
) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(target, name, fn, "network-policy"),
        "spec": {
            "podSelector": {"matchLabels": selector(target, fn.name, component)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def ingress(fn: Function) -> list[Obj]:
    """The health/metrics port from ``metrics_from``; none at all when it is empty."""
    if not fn.network.metrics_from:
        return []
    peers = [_peer(p) for p in fn.network.metrics_from]
    return [{"from": peers, "ports": [{"port": HEALTH_PORT, "protocol": "TCP"}]}]


def _peer(raw: Mapping[str, Mapping[str, str]]) -> Obj:
    return {
        key: {"matchLabels": dict(raw[key])} if raw[key] else {}
        for key in ("namespaceSelector", "podSelector")
        if key in raw
    }


def egress_rules(fn: Function, bus: BusTarget) -> list[Obj]:
    """DNS, the bus (see the module docstring) and the function's own ``egress``."""
    extra = [_extra(e) for e in fn.network.egress]
    covered = _covered_ports(fn.network.egress)
    return [dns_rule(), *bus_rules(bus, covered=covered), *index_rules(fn, covered), *extra]


def index_address(fn: Function) -> tuple[str, int] | None:
    """(host, port) of the package index the install init container reaches, if any."""
    if not source.has_dependencies(fn) or fn.source is None:
        return None
    python = fn.source.runtime == "python"
    url = urlsplit(fn.source.index_url or (source.PYPI if python else source.NPM))
    if url.scheme not in ("http", "https") or not url.hostname:
        return None  # file://: a folder of wheels in the install image, nothing to reach
    return url.hostname, url.port or (443 if url.scheme == "https" else 80)


def index_rules(fn: Function, covered: frozenset[int]) -> list[Obj]:
    """Egress to the package index for a function that installs dependencies: its IP, or
    (a host name) its port to any destination unless the function's own rules list it."""
    found = index_address(fn)
    if found is None:
        return []
    host, port = found
    dest = classify(host, "valkey")
    if dest[0] == "ip":
        return [{"to": [_dest_peer(dest)], "ports": [_port(port, "TCP")]}]
    return [] if port in covered else [{"ports": [_port(port, "TCP")]}]


def dns_rule() -> Obj:
    """Egress to the cluster DNS (kube-dns in kube-system), UDP and TCP 53."""
    return {"to": [DNS_PEER], "ports": [_port(53, "UDP"), _port(53, "TCP")]}


def bus_rules(bus: BusTarget, covered: frozenset[int]) -> list[Obj]:
    """One egress rule per bus destination; the open rule (any destination) keeps only the
    ports the function's own egress rules do not list (``covered``)."""
    rules = []
    for dest, ports in destinations(bus).items():
        if dest == ("any",):
            ports = [p for p in ports if p not in covered]
            if not ports:
                continue
        rule: Obj = {"ports": [_port(p, "TCP") for p in sorted(ports)]}
        if dest != ("any",):
            rule = {"to": [_dest_peer(dest)], **rule}
        rules.append(rule)
    return rules


def open_bus_ports(fn: Function, bus: BusTarget) -> list[int]:
    """Bus ports ``fn``'s policy opens to any destination (for :func:`warnings`)."""
    for rule in bus_rules(bus, _covered_ports(fn.network.egress)):
        if "to" not in rule:
            return [p["port"] for p in rule["ports"]]
    return []


def destinations(bus: BusTarget) -> dict[Dest, list[int]]:
    """Bus ports by destination, in URL order."""
    found: dict[Dest, list[int]] = {}
    if bus.kind == "valkey":
        for address in bus.nodes or (bus.address,):
            _add(found, address, "valkey")
    for address in bus.lookupd:
        dest = _add(found, address, "nsq")
        for port in NSQD_PORTS:
            _add_port(found, dest if dest[0] == "chart" else ("any",), port)
    for address in bus.nsqd:
        _add(found, address, "nsq")
    return found


def _add(found: dict[Dest, list[int]], address: str, kind: str) -> Dest:
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]")
    port = int(port_text) if port_text.isdigit() else 0
    dest = classify(host, kind)
    _add_port(found, dest, port)
    return dest


def _add_port(found: dict[Dest, list[int]], dest: Dest, port: int) -> None:
    ports = found.setdefault(dest, [])
    if port and port not in ports:
        ports.append(port)


def classify(host: str, kind: str) -> Dest:
    """Where a bus host is, as far as a NetworkPolicy can say."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return ("ip", f"{ip}/{ip.max_prefixlen}")
    m = CHART_SERVICE.match(host.lower())
    if m and m["service"] in _SERVICES[kind]:
        return ("chart", m["instance"], m["namespace"] or "", "valkey" if kind == "valkey" else "")
    return ("any",)


def _dest_peer(dest: Dest) -> Obj:
    if dest[0] == "ip":
        return {"ipBlock": {"cidr": dest[1]}}
    _, instance, namespace, name = dest
    match = {INSTANCE: instance, COMPONENT: "bus", **({NAME: name} if name else {})}
    peer: Obj = {"podSelector": {"matchLabels": match}}
    if namespace:
        peer = {"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: namespace}}, **peer}
    return peer


def _covered_ports(egress: Iterable[Mapping[str, Any]]) -> frozenset[int]:
    """TCP ports the function's own egress rules list. A rule without ports does not count:
    it is more likely an unrelated destination than the bus's range, and dropping the open
    bus rule for it would cut the function off its bus."""
    return frozenset(
        p["port"]
        for rule in egress
        for p in rule.get("ports") or ()
        if p.get("protocol", "TCP") == "TCP"
    )


def _extra(raw: Mapping[str, Any]) -> Obj:
    block: Obj = {"cidr": raw["cidr"]}
    if raw.get("except"):
        block["except"] = list(raw["except"])
    rule: Obj = {"to": [{"ipBlock": block}]}
    if raw.get("ports"):
        rule["ports"] = [_port(p["port"], p.get("protocol", "TCP")) for p in raw["ports"]]
    return rule


def _port(port: int, protocol: str) -> Obj:
    return {"port": port, "protocol": protocol}


def warnings(spec: Spec, target: Target, bus: BusTarget) -> list[str]:
    """One line per set of bus ports that policies open to every destination."""
    by_ports: dict[tuple[int, ...], list[str]] = {}
    for fn in spec.functions:
        ports = tuple(open_bus_ports(fn, bus)) if enabled(fn, target) else ()
        if ports:
            by_ports.setdefault(ports, []).append(fn.name)
    url = spec.bus.url if spec.bus else ""
    return [
        f"warning: {spec.file}: the NetworkPolicies of {', '.join(names)} let them reach any "
        f"address on TCP {', '.join(map(str, ports))}: the bus {url} is not a Service of the "
        "kubefuncs bus charts, and a NetworkPolicy cannot name hosts\n"
        "    fix: add network: {egress: [{cidr: <the bus's address range>, ports: ["
        + ", ".join(f"{{port: {p}}}" for p in ports)
        + "]}]} to defaults: (or to each function)"
        for ports, names in by_ports.items()
    ] + index_warnings(spec, target)


def index_warnings(spec: Spec, target: Target) -> list[str]:
    """One line per function whose policy opens the package index's port to any address."""
    out = []
    for fn in spec.functions:
        found = index_address(fn) if enabled(fn, target) else None
        rules = index_rules(fn, _covered_ports(fn.network.egress)) if found else []
        if found and rules and "to" not in rules[0]:
            host, port = found
            out.append(
                f"warning: {spec.file}: the NetworkPolicy of {fn.name} lets its install step "
                f"reach any address on TCP {port}: the package index {host} is a host name, "
                "and a NetworkPolicy cannot name hosts\n"
                "    fix: add network: {egress: [{cidr: <the index's address range>, ports: "
                f"[{{port: {port}}}]}}]}} to the function, or use a mirror inside the cluster"
            )
    return out


_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Problem = tuple[tuple[str | int, ...], str, str]  # (path inside network:, problem, hint)
_CIDR_HINT = "write an address and prefix length such as 10.0.0.0/8 or 2001:db8::/32"


def check(network: Mapping[str, Any]) -> list[Problem]:
    """What the schema cannot say about ``network.egress``: ranges that do not parse, and
    ``except`` ranges outside their ``cidr``."""
    found: list[Problem] = []
    for i, rule in enumerate(network.get("egress") or ()):
        base = _network(rule["cidr"])
        if base is None:
            found.append(
                (("egress", i, "cidr"), f"{rule['cidr']!r} is not an IP range", _CIDR_HINT)
            )
            continue
        for j, text in enumerate(rule.get("except") or ()):
            found.extend(_check_except(base, rule["cidr"], text, ("egress", i, "except", j)))
    return found


def _check_except(base: _Net, cidr: str, text: str, path: tuple[str | int, ...]) -> list[Problem]:
    inner = _network(text)
    if inner is None:
        return [(path, f"{text!r} is not an IP range", _CIDR_HINT)]
    if inner.version != base.version or not inner.subnet_of(base):  # type: ignore[arg-type]
        return [
            (
                path,
                f"{text} is not inside cidr {cidr}",
                "except: may only carve ranges out of cidr:",
            )
        ]
    return []


def _network(text: str) -> _Net | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
