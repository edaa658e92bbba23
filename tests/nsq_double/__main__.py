"""Run the nsqd (and optionally nsqlookupd) double as a process.

    python -m tests.nsq_double --tcp-port 4150 --http-port 4151 --lookupd-http-port 4161

Once listening it prints one JSON line with ``tcp_address``, ``http_address`` and
``lookupd_http_address`` (null without a lookupd), then serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

from .harness import running_nsqd


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.nsq_double", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tcp-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--http-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--lookupd-http-port",
        type=int,
        default=None,
        help="also run an nsqlookupd double on this port (0 picks one); omitted: no lookupd",
    )
    parser.add_argument("--msg-timeout", type=float, default=60.0, help="seconds")
    parser.add_argument("--max-msg-timeout", type=float, default=900.0, help="seconds")
    parser.add_argument("--max-req-timeout", type=float, default=3600.0, help="seconds")
    parser.add_argument("--heartbeat-interval", type=float, default=30.0, help="seconds")
    parser.add_argument("--max-rdy-count", type=int, default=2500)
    parser.add_argument(
        "--queue-scan-refresh-interval",
        type=float,
        default=5.0,
        help="seconds; nsqd's Options.QueueScanRefreshInterval (not a flag of nsqd's)",
    )
    parser.add_argument("--broadcast-address", default=None)
    return parser


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "msg_timeout_s": args.msg_timeout,
        "max_msg_timeout_s": args.max_msg_timeout,
        "max_req_timeout_s": args.max_req_timeout,
        "heartbeat_interval_s": args.heartbeat_interval,
        "max_rdy_count": args.max_rdy_count,
        "queue_scan_refresh_interval_s": args.queue_scan_refresh_interval,
        "broadcast_address": args.broadcast_address,
    }


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    with_lookupd = args.lookupd_http_port is not None
    async with running_nsqd(
        with_lookupd=with_lookupd,
        host=args.host,
        tcp_port=args.tcp_port,
        http_port=args.http_port,
        lookupd_http_port=args.lookupd_http_port or 0,
        **_options(args),
    ) as nsqd:
        ready = {
            "tcp_address": nsqd.tcp_address,
            "http_address": nsqd.http_address,
            "lookupd_http_address": nsqd.lookupd.http_address if nsqd.lookupd else None,
        }
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(_serve(_parser().parse_args(argv)))


if __name__ == "__main__":
    main()
