"""A small client any Python program can use: publish events, call functions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from . import tracing, wire
from .errors import CallTimeout, RemoteError
from .once import DEDUPE_WINDOW_S
from .replies import ReplyRouter
from .transport import Transport, from_url

MAX_DEDUPE_KEY_CHARS = 1024


def check_dedupe(key: str, window_s: float) -> None:
    """ValueError naming the argument when a de-duplication key or window is unusable."""
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_DEDUPE_KEY_CHARS:
        raise ValueError(f"dedupe_key must be a string of 1-{MAX_DEDUPE_KEY_CHARS} characters")
    if isinstance(window_s, bool) or not isinstance(window_s, int | float) or window_s <= 0:
        raise ValueError(f"dedupe_window_s must be a number of seconds > 0, got {window_s!r}")


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
        dedupe_key: str | None = None,
        dedupe_window_s: float = DEDUPE_WINDOW_S,
    ) -> str:
        """Publish an event; returns its message id.

        With ``dedupe_key``, a publish to the same topic with the same key within
        ``dedupe_window_s`` is dropped and returns the first publish's id. On Valkey the key
        is kept on the bus, set with the message in one step (every process sees it); on
        NSQ and the memory bus only this process remembers it."""
        if dedupe_key is not None:
            check_dedupe(dedupe_key, dedupe_window_s)
        with _traced(f"{topic} publish", tracing.PRODUCER, topic, headers) as headers:
            env = wire.make(topic, payload, headers=headers, content_type=content_type)
            body = wire.encode(env)
            if dedupe_key is None:
                await self.transport.publish(topic, body, delay_s=delay_s)
                return env.id
            return await self.transport.publish_once(
                topic, body, key=dedupe_key, window_s=dedupe_window_s, id=env.id, delay_s=delay_s
            )

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
