"""``/stats`` documents shaped like nsqd's (JSON and the plain-text rendering)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .broker import Channel, Topic
from .tcp import V2Connection


def _latency() -> dict[str, Any]:
    # the double never computes e2e percentiles: nsqd's quantile.Result of a nil stream
    return {"count": 0, "percentiles": None}


def client_stats(conn: V2Connection, topic_filter: str = "") -> dict[str, Any]:
    settings = conn.settings
    stats: dict[str, Any] = {
        "client_id": settings.client_id,
        "hostname": settings.hostname,
        "version": "V2",
        "remote_address": conn.remote_address,
        "state": conn.state,
        "ready_count": conn.ready_count,
        "in_flight_count": conn.in_flight,
        "message_count": conn.message_count,
        "finish_count": conn.finish_count,
        "requeue_count": conn.requeue_count,
        "connect_ts": conn.connect_ts,
        "sample_rate": settings.sample_rate,
        "deflate": False,
        "snappy": False,
        "user_agent": settings.user_agent,
        "tls": False,
        "tls_cipher_suite": "",
        "tls_version": "",
        "tls_negotiated_protocol": "",
        "tls_negotiated_protocol_is_mutual": False,
    }
    counts = [
        {"topic": t, "count": n}
        for t, n in conn.pub_counts.items()
        if not topic_filter or t == topic_filter
    ]
    if counts:  # `json:"pub_counts,omitempty"`
        stats["pub_counts"] = counts
    return stats


def channel_stats(channel: Channel, include_clients: bool, topic_filter: str) -> dict[str, Any]:
    consumers = [c for c in channel.consumers if isinstance(c, V2Connection)]
    # Go marshals a nil slice as null: nsqd leaves "clients" nil without include_clients
    clients = [client_stats(c, topic_filter) for c in consumers] if include_clients else None
    return {
        "channel_name": channel.name,
        "depth": channel.depth,
        "backend_depth": channel.backend_depth,
        "in_flight_count": channel.in_flight_count,
        "deferred_count": channel.deferred_count,
        "message_count": channel.message_count,
        "requeue_count": channel.requeue_count,
        "timeout_count": channel.timeout_count,
        "client_count": len(consumers),
        "clients": clients,
        "paused": False,
        "e2e_processing_latency": _latency(),
    }


def topic_stats(
    topic: Topic, channel_filter: str, include_clients: bool, topic_filter: str
) -> dict[str, Any]:
    channels = [
        channel_stats(ch, include_clients, topic_filter)
        for name, ch in sorted(topic.channels.items())
        if not channel_filter or name == channel_filter
    ]
    return {
        "topic_name": topic.name,
        "channels": channels,
        "depth": topic.depth,
        "backend_depth": topic.backend_depth,
        "message_count": topic.message_count,
        "message_bytes": topic.message_bytes,
        "paused": False,
        "e2e_processing_latency": _latency(),
    }


def stats_document(
    *,
    version: str,
    start_time: int,
    topics: Iterable[Topic],
    clients: Iterable[V2Connection],
    topic_filter: str = "",
    channel_filter: str = "",
    include_clients: bool = True,
) -> dict[str, Any]:
    """nsqd's GetStats as doStats marshals it (stats.go, http.go). Go writes nil slices as
    null: an unknown ``topic_filter`` gives ``topics`` and ``producers`` null, no producer (or
    no include_clients) gives ``producers`` null; a topic without ``channel_filter`` is left
    out; every producer is listed, with only its pub_counts of ``topic_filter``."""
    head = {"version": version, "health": "OK", "start_time": start_time}
    by_name = {t.name: t for t in topics}
    if topic_filter and topic_filter not in by_name:
        return {**head, "topics": None, "producers": None}
    names = [topic_filter] if topic_filter else sorted(by_name)
    selected = [by_name[name] for name in names]
    docs = [
        topic_stats(t, channel_filter, include_clients, topic_filter)
        for t in selected
        if not channel_filter or channel_filter in t.channels
    ]
    producers = None
    if include_clients:
        producers = [client_stats(c, topic_filter) for c in clients if c.pub_counts] or None
    return {**head, "topics": docs, "producers": producers}


def stats_text(doc: dict[str, Any]) -> str:
    lines = [
        f"nsqd v{doc['version']} (double)",
        f"start_time {doc['start_time']}",
        "",
        f"Health: {doc['health']}",
        "",
    ]
    if not doc["topics"]:
        lines.append("Topics: None")
    for topic in doc["topics"] or []:
        lines.append(
            f"   [{topic['topic_name']:<15}] depth: {topic['depth']:<5} be-depth: 0     "
            f"msgs: {topic['message_count']:<8} e2e%: "
        )
        for ch in topic["channels"]:
            lines.append(
                f"      [{ch['channel_name']:<25}] depth: {ch['depth']:<5} be-depth: 0     "
                f"inflt: {ch['in_flight_count']:<4} def: {ch['deferred_count']:<4} "
                f"re-q: {ch['requeue_count']:<5} timeout: {ch['timeout_count']:<5} "
                f"msgs: {ch['message_count']:<8} e2e%: "
            )
    return "\n".join(lines) + "\n"
