"""What each CLI command does, as one library call each (the commands only parse and print).

Each action takes :class:`Flags` (the resolved command-line flags) and, where it talks to
a cluster, an optional :class:`~kubefuncs.functl.deploy.ClusterLike` so tests can pass a
stand-in; by default it connects with the kubeconfig.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import busjob, busops, deploy, render, spec
from .errors import BusUnreachable, ClusterUnreachable, UsageError
from .kube import Cluster
from .model import Spec
from .naming import Obj, Target

Echo = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Flags:
    """Command-line flags shared by the commands (see docs/functl.md)."""

    functions: str = "functions.yaml"
    namespace: str = "default"
    release: str = "kubefuncs"
    image: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    bus: str | None = None  # bus URL reachable from here; default: bus.url of the file
    bus_password: str | None = None
    skip_bus: bool = False
    prepare_timeout_s: float = 120.0  # the in-cluster bus preparation Job's time limit
    dry_run: bool = False
    prune: bool = True
    force_conflicts: bool = False
    network_policy: bool | None = None  # None: network.policy of the file decides
    code: str | None = None  # render/list PATH: a module or package with @function declarations
    bus_url: str | None = None  # with code and no bus: in the file: the bus the functions use


def load(flags: Flags) -> Spec:
    if flags.code:
        from . import quick

        return quick.spec_for_code(flags.code, flags.functions, flags.bus_url, flags.image)
    return spec.load(flags.functions)


def target(flags: Flags) -> Target:
    return Target(flags.namespace, flags.release, flags.image, flags.network_policy)


def _quiet(message: str) -> None:
    del message


def manifests(flags: Flags, warn: Echo = _quiet) -> list[Obj]:
    """Every object of the release (``functl render``); ``warn`` gets the warnings."""
    s = load(flags)
    objects = render.render(s, target(flags))
    for line in render.warnings(s, target(flags)):
        warn(line)
    return objects


def connect(flags: Flags) -> deploy.ClusterLike:
    return Cluster.connect(flags.namespace, kubeconfig=flags.kubeconfig, context=flags.context)


def bus_url(flags: Flags, s: Spec | None) -> str:
    if flags.bus:
        return flags.bus
    if s is not None and s.bus is not None:
        return s.bus.url
    raise UsageError("no bus URL: pass --bus URL (or set KF_BUS_URL), or bus.url in functions.yaml")


def channels(s: Spec) -> list[tuple[str, str]]:
    return sorted({(fn.topic, fn.channel) for fn in s.functions})


def apply_release(
    flags: Flags, echo: Echo, cluster: deploy.ClusterLike | None = None
) -> list[deploy.Change]:
    """Render, prepare the bus, server-side apply, prune (``functl apply``)."""
    s = load(flags)
    objects = render.render(s, target(flags))
    for line in render.warnings(s, target(flags)):
        echo(line)
    cluster = cluster or connect(flags)
    if not flags.dry_run and not flags.skip_bus:
        prepare_bus(flags, s, cluster, echo)
    changes = deploy.apply_all(
        cluster,
        objects,
        release=flags.release,
        prune=flags.prune,
        dry_run=flags.dry_run,
        force=flags.force_conflicts,
        progress=lambda c: echo(str(c)),
    )
    echo(f"release {flags.release} in namespace {flags.namespace}: {deploy.summary(changes)}")
    return changes


def prepare_bus(flags: Flags, s: Spec, cluster: deploy.ClusterLike, echo: Echo) -> None:
    """Create the release's topics and channels from here, or, when the bus is not
    reachable from here, with a Job inside the cluster (busjob.py)."""
    pairs = channels(s)
    try:
        asyncio.run(busops.prepare(bus_url(flags, s), flags.bus_password, pairs, echo))
        return
    except BusUnreachable as e:
        reason = str(e).splitlines()[0]
    job = busjob.prepare_job(s, target(flags), pairs, flags.prepare_timeout_s)
    echo(
        f"bus not reachable from here ({reason}); "
        f"preparing it from inside the cluster with Job {job.name}"
    )
    busjob.run(cluster, job, timeout_s=flags.prepare_timeout_s, echo=echo)


def prepare_channels(flags: Flags, pairs: list[tuple[str, str]], echo: Echo) -> None:
    """``functl prepare-bus``: create the ``pairs`` given, else every function's of the file."""
    s = None if pairs and flags.bus else load(flags)
    if not pairs and s is not None:
        pairs = channels(s)
    asyncio.run(busops.prepare(bus_url(flags, s), flags.bus_password, pairs, echo))


def diff_release(
    flags: Flags, cluster: deploy.ClusterLike | None = None, warn: Echo = _quiet
) -> str:
    objects = manifests(flags, warn)
    return deploy.diff_all(
        cluster or connect(flags),
        objects,
        release=flags.release,
        prune=flags.prune,
        force=flags.force_conflicts,
    )


def delete_release(
    flags: Flags, echo: Echo, cluster: deploy.ClusterLike | None = None
) -> list[deploy.Change]:
    changes = deploy.delete_all(
        cluster or connect(flags),
        release=flags.release,
        dry_run=flags.dry_run,
        progress=lambda c: echo(str(c)),
    )
    echo(f"release {flags.release} in namespace {flags.namespace}: {deploy.summary(changes)}")
    return changes


def file_functions(flags: Flags) -> list[dict[str, Any]]:
    """The functions of the file as plain rows (``functl list``)."""
    return [
        {
            "name": fn.name,
            "topic": fn.topic,
            "channel": fn.channel,
            "scaling": f"keda {fn.scaling.min}-{fn.scaling.max}"
            if fn.scaling.keda
            else f"hpa {fn.scaling.min}-{fn.scaling.max}",
            "schedules": [s.cron for s in fn.schedules],
            "routes": [r.prefix for r in fn.routes],
            "expires_at": fn.expires_at,
        }
        for fn in load(flags).functions
    ]


def cluster_functions(
    flags: Flags, cluster: deploy.ClusterLike | None = None, *, all_releases: bool = False
) -> list[dict[str, Any]]:
    return deploy.deployed_functions(
        cluster or connect(flags), None if all_releases else flags.release
    )


def validate(flags: Flags, warn: Echo = _quiet) -> str:
    """Check the file and that it renders; a one-line summary. The image is a deploy-time
    flag, so a missing one is only mentioned."""
    s = load(flags)
    placeholder = flags.image is None and s.image is None
    t = Target(
        flags.namespace,
        flags.release,
        "IMAGE" if placeholder else flags.image,
        flags.network_policy,
    )
    objects = render.render(s, t)
    for line in render.warnings(s, t):
        warn(line)
    schedules = sum(len(fn.schedules) for fn in s.functions)
    note = " (no image: pass --image when applying)" if placeholder else ""
    return (
        f"{flags.functions}: valid: {len(s.functions)} function(s), {schedules} schedule(s), "
        f"{len(s.routes())} route(s), {len(objects)} object(s){note}"
    )


def status(
    flags: Flags, echo: Echo, cluster: deploy.ClusterLike | None = None
) -> list[dict[str, Any]]:
    """Replicas (from the cluster, when reachable) and queue figures per function."""
    s = load(flags)
    replicas: dict[str, dict[str, Any]] = {}
    try:
        replicas = {r["name"]: r for r in cluster_functions(flags, cluster)}
    except ClusterUnreachable as e:
        echo(f"warning: replicas unknown: {str(e).splitlines()[0]}")
    pairs = [(fn.topic, fn.channel) for fn in s.functions]
    figures = asyncio.run(busops.stats(bus_url(flags, s), flags.bus_password, pairs))
    return [
        {
            "name": fn.name,
            "topic": fn.topic,
            "channel": fn.channel,
            "ready": replicas.get(fn.name, {}).get("ready"),
            "replicas": replicas.get(fn.name, {}).get("replicas"),
            "depth": st.depth,
            "in_flight": st.in_flight,
            "delayed": st.delayed,
            "dead": st.dead,
        }
        for fn, st in zip(s.functions, figures, strict=True)
    ]


def consumer(
    flags: Flags, function: str | None, topic: str | None, channel: str | None
) -> tuple[str, str, Spec | None]:
    """(topic, channel) of a function of the file, or as given with --topic/--channel."""
    if topic:
        return topic, channel or topic, None
    if not function:
        raise UsageError("name a FUNCTION of the file, or pass --topic (and --channel)")
    s = load(flags)
    try:
        fn = s.function(function)
    except KeyError:
        known = ", ".join(f.name for f in s.functions)
        raise UsageError(
            f"no function {function!r} in {flags.functions} (there are: {known})"
        ) from None
    return fn.topic, fn.channel, s
