"""Run a handler against an in-process bus in tests:

async with run(pong) as fn:
    assert await fn.call("ping") == "pong"
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

from .client import Client
from .function import Function, as_function
from .runtime import Runtime
from .transport import DeadLetter
from .transport.memory import MemoryTransport
from .wire import new_id


class Harness:
    """A running function on a private memory bus, with a client to drive it."""

    def __init__(self, runtime: Runtime, client: Client) -> None:
        self.runtime = runtime
        self.client = client
        self.topic = runtime.settings.topic
        self.channel = runtime.settings.channel_name

    async def call(
        self, payload: Any, *, timeout_s: float = 5.0, headers: Mapping[str, str] | None = None
    ) -> Any:
        return await self.client.call(self.topic, payload, timeout_s=timeout_s, headers=headers)

    async def publish(self, payload: Any, **kw: Any) -> str:
        return await self.client.publish(self.topic, payload, **kw)

    async def publish_raw(self, body: bytes) -> None:
        await self.client.transport.publish(self.topic, body)

    async def dead_letters(self) -> list[DeadLetter]:
        return await self.client.transport.dead_letters(self.topic, self.channel)

    async def settle(self, timeout_s: float = 5.0) -> None:
        """Wait until the channel is empty and nothing is in flight."""
        async with asyncio.timeout(timeout_s):
            while True:
                stats = await self.client.transport.stats(self.topic, self.channel)
                if stats.depth == 0 and stats.in_flight == 0 and stats.delayed == 0:
                    return
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def run(
    fn: Function | Any, *, topic: str | None = None, **settings: Any
) -> AsyncIterator[Harness]:
    """Run ``fn`` (decorated or plain) on a fresh memory bus for the block."""
    fn = as_function(fn, getattr(fn, "__name__", "fn"))
    overrides = {"topic": topic or fn.settings.topic or "test", **settings}
    fn = fn.with_settings(replace(fn.settings, **overrides))
    transport = MemoryTransport(f"memory://testing-{new_id()}")
    await transport.connect()
    runtime = Runtime(fn, transport=transport)
    await transport.ensure_channel(fn.settings.topic, fn.settings.channel_name)
    task = asyncio.create_task(runtime.run())
    client = Client(transport=transport)
    # a function's lifespan runs first: a startup that fails raises here, not at the end
    serving = asyncio.create_task(runtime.serving.wait())
    await asyncio.wait({task, serving}, return_when=asyncio.FIRST_COMPLETED)
    serving.cancel()
    if task.done():
        await client.close()
        await transport.close()
        task.result()
    try:
        yield Harness(runtime, client)
    finally:
        runtime.stop()
        await task
        await client.close()
        await transport.close()
