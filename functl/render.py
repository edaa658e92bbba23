"""Render a :class:`Spec` into Kubernetes objects (pure, deterministic).

``render(spec, Target(namespace, release, image))`` returns plain dicts in apply order:
the release's TriggerAuthentication (when the bus has a password Secret), then for each
function in file order its NetworkPolicy (plus one for its schedule pods; unless
``network.policy`` or ``--no-network-policy`` turns them off), its Deployment, its
ScaledObject (or HorizontalPodAutoscaler when ``scaling.keda`` is false) and one CronJob
per schedule.

Every object carries the app.kubernetes.io labels; ``instance`` (the release) and
``managed-by: functl`` are what apply selects on to prune.
"""

from __future__ import annotations

import re

from . import busurl, cron, expiry, keda, netpol, source
from .errors import Issue, SpecError, UsageError
from .model import Spec
from .naming import Obj, Target
from .workload import deployment

__all__ = ["Target", "render"]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def render(spec: Spec, target: Target) -> list[Obj]:
    """Every object of the release, in the order they should be applied."""
    check_target(target)
    bus = deployable_bus(spec)
    image = release_image(spec, target)
    objects: list[Obj] = []
    auth = keda.trigger_authentication(spec, target, bus)
    if auth is not None:
        objects.append(auth)
    doomed: list[Obj] = []
    for fn in spec.functions:
        own: list[Obj] = []
        # the policy first, so the function's pods never run unisolated
        own.extend(netpol.policies(fn, target, bus))
        packed = source.pack(fn) if fn.source is not None else None
        if packed is not None:  # before the Deployment that mounts it
            own.append(source.configmap(target, fn, packed))
        own.append(deployment(spec, fn, target, image, packed))
        own.append(keda.scaler(spec, fn, target, bus))
        own.extend(cron.cronjobs(spec, fn, target, image))
        objects.extend(expiry.annotate(own, fn.expires_at))
        doomed.extend(own if fn.expires_at else [])
    objects.extend(expiry.janitor(spec, target, image, doomed))
    return objects


def warnings(spec: Spec, target: Target) -> list[str]:
    """What the user should know about the rendered objects (printed on stderr)."""
    return netpol.warnings(spec, target, deployable_bus(spec))


def check_target(target: Target) -> None:
    for flag, value in (("--namespace", target.namespace), ("--release", target.release)):
        if not _DNS_LABEL.match(value) or len(value) > 53:
            raise UsageError(
                f"{flag} {value!r} is not a DNS label: "
                "use at most 53 lowercase letters, digits and '-'"
            )


def deployable_bus(spec: Spec) -> busurl.BusTarget:
    """The parsed bus URL, or a SpecError when it cannot be used inside a cluster."""
    if spec.bus is None:
        raise _bus_issue(
            spec, "missing", "add bus: {url: valkey://valkey:6379/0} (or nsq://nsqlookupd:4161)"
        )
    try:
        bus = busurl.parse(spec.bus.url)
    except ValueError as e:
        raise _bus_issue(spec, str(e), _url_hint(spec.bus.url)) from e
    if bus.kind == "memory":
        raise _bus_issue(
            spec,
            "memory:// lives inside one process",
            "use it with `functl dev`; deploy with valkey:// or nsq://",
        )
    if bus.password_in_url:
        raise _bus_issue(
            spec,
            "the URL contains a password, which would end up in plain manifests",
            "remove it and set bus.password_secret: {name:, key:}",
        )
    if bus.kind == "nsq" and not bus.lookupd and any(fn.scaling.keda for fn in spec.functions):
        raise _bus_issue(
            spec,
            "KEDA's nsq scaler needs nsqlookupd HTTP addresses",
            "use nsq://nsqlookupd:4161, or scaling.keda: false",
        )
    return bus


def _url_hint(url: str) -> str:
    if url.partition("://")[0].lower().endswith("+cluster"):
        return f"write it as {busurl.CLUSTER_FORM}"
    return "use valkey://host:6379/0, nsq://lookupd:4161 or a cluster's valkey+cluster://"


def _bus_issue(spec: Spec, problem: str, hint: str) -> SpecError:
    return SpecError([Issue(spec.file, 0, "bus.url", problem, hint)])


def release_image(spec: Spec, target: Target) -> str | None:
    image = target.image or spec.image
    needs = [fn.name for fn in spec.functions if fn.image is None or fn.schedules]
    needs += (
        ["the janitor of expiring functions"] if any(f.expires_at for f in spec.functions) else []
    )
    # a source function runs in the stock image (or the Node image named after it)
    if image is None and needs:
        raise UsageError(
            f"no image for {', '.join(needs)}: pass --image IMAGE or set image: in {spec.file}"
        )
    return image
