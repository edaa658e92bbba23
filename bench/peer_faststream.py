"""FastStream's Redis streams subscriber, the peer of ``bench/runtime.py`` (not a test).

Runs in the bench-only environment ``bench/runtime.py --peers`` creates (FastStream and
its redis client from PyPI, never the project's lock):

    python bench/peer_faststream.py encode                    # one message body, hex
    python bench/peer_faststream.py consume URL STREAM GROUP [BATCH]

``consume`` subscribes as consumer group GROUP (created at 0) with a no-op handler: per
message (``max_records=100`` per read, as the raw loop reads) or, given BATCH, the batch
subscriber (``batch=True, max_records=BATCH``). FastStream acks after the handler returns.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

PAYLOAD = {"n": 1, "data": "x" * 100}


async def encode() -> None:
    from faststream.redis.parser.binary import BinaryMessageFormatV1

    body = await BinaryMessageFormatV1.encode(
        message=PAYLOAD, reply_to=None, headers=None, correlation_id="bench"
    )
    print(body.hex())


def consume(url: str, stream: str, group: str, batch: int) -> None:
    from faststream import FastStream
    from faststream.redis import RedisBroker, StreamSub

    broker = RedisBroker(url)
    records = batch or 100
    sub = StreamSub(
        stream, group=group, consumer="c1", last_id="0", batch=bool(batch), max_records=records
    )

    @broker.subscriber(stream=sub)
    async def handle(body: Any) -> None:
        """Does nothing, as runtime:noop."""

    asyncio.run(FastStream(broker).run())


if __name__ == "__main__":
    if sys.argv[1] == "encode":
        asyncio.run(encode())
    else:
        url, stream, group, *rest = sys.argv[2:]
        consume(url, stream, group, int(rest[0]) if rest else 0)
