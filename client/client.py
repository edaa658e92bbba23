"""A small client any Python program can use: publish events, call functions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from . import tracing, wire
from .errors import CallTimeout, RemoteError
from .replies import ReplyRouter
from .transport import Transport, from_url


class Client:
    """Publish to topics and call functions on a bus.

    ``async with Client("valkey://localhost:6379/0") as c: await c.call("ping", "hi")``
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        transport: Transport | None = None,
        password: str | None = None,
    ) -> None:
        self.transport = transport or from_url(url, password=password)
        self._owns_transport = transport is None
        self.replies = ReplyRouter(self.transport)

    async def __aenter__(self) -> Client:
        await self.transport.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.replies.close()
        if self._owns_transport:
            await self.transport.close()

    async def publish(
        self,
        topic: str,
        payload: Any,
        *,
        headers: Mapping[str, str] | None = None,
        delay_s: float = 0.0,
        content_type: str = wire.MSGPACK,
    ) -> str:
        """Publish an event; returns its message id."""
        with _traced(f"{topic} publish", tracing.PRODUCER, topic, headers) as headers:
            env = wire.make(topic, payload, headers=headers, content_type=content_type)
            await self.transport.publish(topic, wire.encode(env), delay_s=delay_s)
        return env.id

    async def call(
        self,
        topic: str,
        payload: Any,
        *,
        timeout_s: float = 30.0,
        headers: Mapping[str, str] | None = None,
        kind: str = wire.REQUEST,
    ) -> Any:
        """Send a request and return the reply's payload.

        Raises :class:`RemoteError` for an error reply and :class:`CallTimeout` when no reply
        came within ``timeout_s`` (the request carries that deadline, so the function skips
        it once nobody waits)."""
        with _traced(f"{topic} call", tracing.CLIENT, topic, headers) as headers:
            reply = await self.request(
                wire.make(
                    topic,
                    payload,
                    kind=kind,
                    headers=headers,
                    reply_to=await self.replies.address(),
                    deadline_ms=wire.now_ms() + int(timeout_s * 1000),
                ),
                timeout_s,
            )
        if reply.kind == wire.ERROR:
            err = reply.payload
            raise RemoteError(err.type, err.message, retryable=err.retryable)
        return reply.payload

    async def request(self, env: wire.Envelope, timeout_s: float) -> wire.Envelope:
        """Publish a prepared request envelope (``reply_to`` set) and await its reply."""
        future = self.replies.expect(env.id)
        try:
            await self.transport.publish(env.topic, wire.encode(env))
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise CallTimeout(f"no reply from {env.topic!r} within {timeout_s:g}s") from None
        finally:
            self.replies.forget(env.id)


@contextlib.contextmanager
def _traced(
    name: str, kind: str, topic: str, headers: Mapping[str, str] | None
) -> Iterator[Mapping[str, str] | None]:
    """``headers``, with the trace context of a span of its own around the block when the
    process traces (it then replaces a ``traceparent`` copied from an incoming message)."""
    tracer = tracing.current()
    if tracer is None:
        yield headers
        return
    # the current span (a handler's) is the parent; else a traceparent the caller passed
    parent = headers if headers and "traceparent" in headers and not tracer.in_span() else None
    attributes = {"messaging.destination.name": topic}
    with tracer.span(name, kind, parent=parent, attributes=attributes) as span:
        yield {**(headers or {}), **tracer.headers(span)}
