"""Server-side settings of the nsqd double, named after nsqd's command-line options."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

NSQD_VERSION = "1.3.0"


@dataclass(frozen=True)
class NsqdOptions:
    """nsqd settings a client can observe. Durations are in seconds, sizes in bytes.

    Defaults match nsqd's 1.3.0. ``heartbeat_interval_s`` is nsqd's default client heartbeat
    (``client-timeout / 2``); lowering it (or ``msg_timeout_s``) below what IDENTIFY would
    accept is allowed here so tests can run fast.
    """

    msg_timeout_s: float = 60.0
    max_msg_timeout_s: float = 15 * 60.0
    max_req_timeout_s: float = 60 * 60.0
    heartbeat_interval_s: float = 30.0
    max_heartbeat_interval_s: float = 60.0
    max_rdy_count: int = 2500
    max_msg_size: int = 1024 * 1024
    max_body_size: int = 5 * 1024 * 1024
    output_buffer_timeout_s: float = 0.25
    min_output_buffer_timeout_s: float = 0.025
    max_output_buffer_timeout_s: float = 30.0
    max_output_buffer_size: int = 64 * 1024
    max_deflate_level: int = 6
    mem_queue_size: int = 10000  # beyond it nsqd writes to disk; ephemeral ones drop
    # nsqd's Options (not command-line flags there: nsqd's own tests lower the refresh)
    queue_scan_interval_s: float = 0.1
    queue_scan_refresh_interval_s: float = 5.0
    queue_scan_selection_count: int = 20
    queue_scan_dirty_percent: float = 0.25
    version: str = NSQD_VERSION
    broadcast_address: str | None = None
    hostname: str = field(default_factory=socket.gethostname)

    def __post_init__(self) -> None:
        if self.msg_timeout_s <= 0 or self.heartbeat_interval_s < 0:
            raise ValueError("msg_timeout_s must be > 0 and heartbeat_interval_s >= 0")
        if self.max_rdy_count < 1:
            raise ValueError("max_rdy_count must be >= 1")
        if min(self.queue_scan_interval_s, self.queue_scan_refresh_interval_s) <= 0:
            raise ValueError("queue_scan_interval_s and queue_scan_refresh_interval_s must be > 0")


def ms(seconds: float) -> int:
    return round(seconds * 1000)
