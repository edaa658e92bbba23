"""``functl gc``: delete the functions of a release whose ``kubefuncs.io/expires-at`` has
passed (every object of each, its source ConfigMaps included), then remove their consumer
groups and their retry, delayed-retry and dead-letter streams from the bus. Messages
published to the topic after that stay in the topic for the channels that remain (a
topic nobody consumes any more keeps them until its own trimming)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from . import busops, deploy
from .expiry import EXPIRES_ANNOTATION, JANITOR, JANITOR_KINDS, parse
from .kube import DELETE_ORDER, Obj, ref
from .naming import CHANNEL_ANNOTATION, COMPONENT, NAME, TOPIC_ANNOTATION, release_selector

Echo = Callable[[str], None]


def expired(live: Sequence[Mapping[str, Any]], moment: datetime) -> dict[str, tuple[str, str]]:
    """Function name -> (topic, channel) of every function an object of which expired."""
    out: dict[str, tuple[str, str]] = {}
    for obj in live:
        meta = obj.get("metadata") or {}
        notes, labels = meta.get("annotations") or {}, meta.get("labels") or {}
        when = parse(str(notes.get(EXPIRES_ANNOTATION) or ""))
        if when is None or when > moment or labels.get(COMPONENT) == JANITOR:
            continue
        name = labels.get(NAME)
        if name and notes.get(TOPIC_ANNOTATION):
            out[name] = (notes[TOPIC_ANNOTATION], notes.get(CHANNEL_ANNOTATION) or name)
        elif name:
            out.setdefault(name, ("", ""))
    return out


def function_objects(cluster: deploy.ClusterLike, release: str) -> list[Obj]:
    """The release's objects of the kinds a function has: what the janitor's Role lets it
    list (expiry.JANITOR_KINDS), in deletion order."""
    selector = release_selector(release)
    kinds = [k for k in DELETE_ORDER if k in JANITOR_KINDS]
    return [o for kind in kinds for o in cluster.list(kind, selector) if deploy.ours(o)]


def collect(
    cluster: deploy.ClusterLike,
    release: str,
    moment: datetime,
    *,
    dry_run: bool = False,
    progress: Echo = lambda line: None,
) -> tuple[list[deploy.Change], dict[str, tuple[str, str]]]:
    """Delete the expired functions' objects; what was deleted and their (topic, channel)."""
    live = function_objects(cluster, release)
    doomed = expired(live, moment)
    changes: list[deploy.Change] = []
    for obj in live:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if labels.get(NAME) not in doomed or labels.get(COMPONENT) == JANITOR:
            continue
        gone = cluster.delete(*deploy.key(obj), dry_run=dry_run)
        changes.append(deploy.Change(ref(obj), "deleted" if gone else "gone", dry_run))
        progress(str(changes[-1]))
    if changes:
        refs = {c.ref for c in changes}
        changes += deploy.sync_routes(
            cluster, release, [], refs, dry_run, lambda c: progress(str(c))
        )
    return changes, doomed


async def forget_channels(
    url: str, password: str | None, pairs: Sequence[tuple[str, str]], echo: Echo
) -> None:
    """Remove each (topic, channel)'s consumer group and side streams from the bus."""
    from kubefuncs.transport.valkey import ValkeyTransport

    async with busops.connected(url, password) as transport:
        if not isinstance(transport, ValkeyTransport):
            for topic, channel in pairs:
                echo(
                    f"warning: bus topic {topic} channel {channel} kept: functl gc removes "
                    "channels on Valkey only; delete it on NSQ with nsqadmin or "
                    f"curl -X POST 'http://<nsqd>:4151/channel/delete?topic={topic}&channel={channel}'"
                )
            return
        keys = transport.keys
        for topic, channel in pairs:
            retry = keys.retry(topic, channel)
            for stream in (keys.topic(topic), retry):
                with contextlib.suppress(Exception):  # no such stream or group: nothing to do
                    await transport.call("XGROUP", "DESTROY", stream, channel)
            await transport.call("DEL", retry, keys.dead(topic, channel), keys.delayed(retry))
            await transport.call("SREM", keys.streams, retry)
            await transport.call("SREM", keys.delayed_index, keys.delayed(retry))
            echo(f"bus topic {topic} channel {channel} removed (group, retry and dead letters)")


def run(
    cluster: deploy.ClusterLike,
    release: str,
    moment: datetime,
    bus: tuple[str, str | None] | None,
    *,
    dry_run: bool = False,
    echo: Echo = lambda line: None,
) -> list[deploy.Change]:
    """``functl gc``: delete what expired, then forget its channels on ``bus`` (url,
    password), unless a dry run or no bus was given."""
    import asyncio

    changes, doomed = collect(cluster, release, moment, dry_run=dry_run, progress=echo)
    pairs = sorted(p for p in doomed.values() if p[0])
    if pairs and bus is not None and not dry_run:
        asyncio.run(forget_channels(bus[0], bus[1], pairs, echo))
    names = ", ".join(sorted(doomed)) or "none"
    echo(f"release {release}: expired functions: {names}; {deploy.summary(changes)}")
    return changes


def time_left(expires_at: str | None, moment: datetime) -> str:
    """``1h05m`` left, ``expired``, or ``-`` for a function that does not expire."""
    when = parse(expires_at or "")
    if when is None:
        return "-"
    seconds = int((when - moment).total_seconds())
    if seconds <= 0:
        return "expired"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d{hours:02d}h"
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{rest % 60:02d}s"
