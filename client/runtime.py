"""The function runtime: consume one channel, run the handler, reply, then settle.

At-least-once: a message is acknowledged only after the handler finished and its reply
(if a caller waits) is on the bus. Failures go through :func:`kubefuncs.retry.decide`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from . import lifespan, tracing, wire
from ._batch import Batcher, handle_batch
from ._running import Running
from .client import Client
from .errors import (
    ConfigError,
    DecodeError,
    LifespanFailed,
    LoopFailed,
    Reject,
    Retry,
    TransportError,
    Undeliverable,
    UnsupportedKind,
)
from .function import Context, Function, Service, error_reply, reply_body
from .metrics import RuntimeMetrics
from .middleware import chain
from .retry import Action, backoff_delay_s, decide
from .tracing import CONSUMER, PRODUCER
from .transport import Delivery, Subscription, Transport, from_url
from .transport._flow import backoff_s

log = logging.getLogger("kubefuncs.runtime")

_QUIET_ERRORS = (Retry, Reject, TimeoutError, TransportError)  # their message says it all


class Runtime:
    """Runs one :class:`Function` until :meth:`stop`; see the module docstring."""

    def __init__(
        self,
        fn: Function,
        *,
        transport: Transport | None = None,
        metrics: RuntimeMetrics | None = None,
        started_at: float | None = None,
    ) -> None:
        self.fn = fn
        self.settings = s = fn.settings
        self.transport = transport or from_url(s.bus_url, password=s.bus_password)
        self._owns_transport = transport is None
        self.client = Client(transport=self.transport)
        self.metrics = metrics or RuntimeMetrics(fn.name)
        self.metrics.in_flight.set_function(lambda: len(self._tasks))
        self.policy = fn.retry_policy()
        self.started_at = started_at if started_at is not None else time.monotonic()
        self._handler = fn.handler
        self._is_async = fn.is_async
        self._wants_context = fn.wants_context
        self._chain = chain(fn.middleware, self._call_handler) if fn.middleware else None
        self._batcher = self._make_batcher(fn)
        self._tracer = tracing.current()
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = Running(self.settings.timeout_s)
        self._stopping = asyncio.Event()
        self._finished = False  # loops check it too: a swallowed cancel must not keep them
        self.consuming = False
        self.serving = asyncio.Event()  # set once consuming began (after the startup)
        self.failure: BaseException | None = None  # why the consume loop died, if it did
        self.service = Service(fn.name, s, self.client, logging.getLogger(f"kubefuncs.{fn.name}"))
        self.state = self.service.state  # what handlers see as ctx.state

    def _make_batcher(self, fn: Function) -> Batcher | None:
        s = fn.settings
        if not fn.batched:
            if s.batch:
                raise ConfigError(
                    "KF_BATCH", f"is set, but {fn.name} is not a batch handler: declare "
                    "@function(..., batch=N) with a handler of (payloads, ctxs)"
                )  # fmt: skip
            return None
        return Batcher(max(s.batch, 1), s.batch_wait_s, self._dispatch)

    @property
    def ready(self) -> bool:
        """Consuming, connected to the bus, and not shutting down."""
        return self.consuming and self.transport.connected and not self._stopping.is_set()

    def stop(self) -> None:
        """Stop taking messages; :meth:`run` drains in-flight work and returns."""
        self._stopping.set()

    async def run(self) -> None:
        """Connect, run the lifespan's startup, consume until :meth:`stop`, drain, run its
        shutdown. LifespanFailed when startup or shutdown failed, LoopFailed when the
        consume loop died (the process exits non-zero on either)."""
        if not await self._connect():  # stopped before the bus was ever reachable
            await self._close()
            return
        async with contextlib.AsyncExitStack() as stack:
            try:
                await self._start_lifespan(stack)
            except BaseException:
                await self._close()
                raise
            if not self._stopping.is_set():
                await self._serve(stack)  # runs the shutdown itself, after the drain
                return
            # SIGTERM while starting: shut down at once
            error = await self._shut_down(stack)
            await self._close()
            if error is not None:
                raise error

    async def _start_lifespan(self, stack: contextlib.AsyncExitStack) -> None:
        if self.fn.lifespan is not None:
            timeout_s = self.settings.startup_timeout_s
            await lifespan.start(self.fn.lifespan, self.service, stack, timeout_s)

    async def _serve(self, stack: contextlib.AsyncExitStack) -> None:
        s = self.settings
        in_flight = s.concurrency * (s.batch if self._batcher is not None else 1)
        sub = await self.transport.subscribe(s.topic, s.channel_name, max_in_flight=in_flight)
        self.consuming = True
        self.serving.set()
        self.metrics.cold_start.set(time.monotonic() - self.started_at)
        log.info(
            "consuming %s as channel %s",
            s.topic,
            s.channel_name,
            extra={"function": self.fn.name, "topic": s.topic},
        )
        consume = asyncio.create_task(self._consume(sub))
        consume.add_done_callback(self._consume_ended)
        background = [
            consume,
            asyncio.create_task(self._maintain()),
            asyncio.create_task(self._keep_alive()),
        ]
        try:
            await self._stopping.wait()
        finally:
            self.consuming = False
            await sub.close()
            background[0].cancel()
            if self._batcher is not None:  # what was gathered is handled with the rest
                self._batcher.flush()
            await self._drain()  # touching and housekeeping go on while in-flight work ends
            self._finished = True
            for task in background[1:]:
                task.cancel()
            self._running.close()
            shutdown_error = await self._shut_down(stack)
            await self._close()
            log.info("stopped", extra={"function": self.fn.name})
        if self.failure is not None:
            raise LoopFailed(f"the consume loop died: {self.failure!r}") from self.failure
        if shutdown_error is not None:
            raise shutdown_error

    async def _shut_down(self, stack: contextlib.AsyncExitStack) -> LifespanFailed | None:
        return await lifespan.stop(stack, self.settings.shutdown_timeout_s, self.fn.name)

    async def _close(self) -> None:
        await self.client.close()
        if self._owns_transport:
            await self.transport.close()

    def _consume_ended(self, task: asyncio.Task[None]) -> None:
        """The consume loop ends only when stopped; anything else is a bug to restart on:
        not ready at once, drain, and :meth:`run` raises (exit code 1)."""
        if task.cancelled() or self._stopping.is_set():
            return
        self.failure = task.exception() or RuntimeError("the consume loop ended by itself")
        log.critical("the consume loop died; stopping", exc_info=self.failure)
        self.consuming = False
        self.stop()

    async def _connect(self) -> bool:
        """Connect, retrying with backoff while the bus is away (no crash loop)."""
        failures = 0
        while not self._stopping.is_set():
            try:
                await self.transport.connect()
                return True
            except TransportError as e:
                failures += 1
                delay = backoff_s(failures, cap_s=10.0)
                log.warning("%s; retrying in %.1fs", e, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        return False

    async def _consume(self, sub: Subscription) -> None:
        if self._batcher is not None:
            async for delivery in sub:
                self._batcher.add(delivery)
            return
        async for delivery in sub:
            task = asyncio.create_task(self.handle(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _dispatch(self, deliveries: list[Delivery]) -> None:
        task = asyncio.create_task(handle_batch(self, deliveries))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _maintain(self) -> None:
        while not self._finished:
            await asyncio.sleep(1.0)
            try:
                await self.transport.maintain()
            except Exception as e:  # housekeeping must never stop the function
                log.debug("maintenance skipped: %s", e)

    async def _keep_alive(self) -> None:
        """Touch deliveries that have been in the handler for a touch interval, so the bus
        does not hand them to someone else. One loop for all of them (a task per message
        was the runtime's largest per-message cost): every half interval it touches what
        has run for one, so a delivery goes at most 1.5 intervals untouched."""
        every = self.transport.touch_interval_s
        if every is None or self.settings.timeout_s < every:
            return
        while not self._finished:
            await asyncio.sleep(every / 2)
            await asyncio.gather(*(self._touch(d) for d in self._running.older_than(every)))

    @staticmethod
    async def _touch(delivery: Delivery) -> None:
        with contextlib.suppress(TransportError):
            await delivery.touch()

    async def _drain(self) -> None:
        """Let in-flight work finish within the grace period, then hand the rest back."""
        if self._tasks:
            log.info("draining %d in-flight message(s)", len(self._tasks))
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.settings.grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    # -- one message -----------------------------------------------------------------------

    async def handle(self, delivery: Delivery) -> None:
        """Decode, run, reply, settle one delivery. Never raises (but for cancellation)."""
        try:
            await self._handle(delivery)
        except TransportError as e:  # could not settle: the bus redelivers it later
            log.warning("could not settle a message: %s", e)
        except Exception as e:
            await self._runtime_error(delivery, e)

    async def _runtime_error(self, delivery: Delivery, error: Exception) -> None:
        """A bug of ours (or a library's) on this message: counted as an attempt, so it
        is dead-lettered at KF_MAX_ATTEMPTS instead of coming back forever."""
        final = delivery.attempt >= self.policy.max_attempts
        log.exception(
            "runtime error; the message is %s",
            "dead-lettered" if final else "retried",
            extra={"attempt": delivery.attempt},
        )
        with contextlib.suppress(Exception):
            if final:
                await self._dead_letter(delivery, f"runtime error: {type(error).__name__}: {error}")
            else:
                await delivery.retry(backoff_delay_s(self.policy, delivery.attempt))

    async def _handle(self, delivery: Delivery) -> None:
        env = await self._admit(delivery)
        if env is None:
            return
        if self._tracer is None:
            await self._process(env, delivery)
            return
        attributes = {
            "messaging.system": self.transport.url.split(":", 1)[0],
            "messaging.destination.name": env.topic,
            "messaging.consumer.group.name": self.settings.channel_name,
            "messaging.message.id": env.id,
            "kubefuncs.attempt": delivery.attempt,
        }
        span = self._tracer.span(
            f"{env.topic} process", CONSUMER, parent=env.headers, attributes=attributes
        )
        with span:
            await self._process(env, delivery)

    async def _admit(self, delivery: Delivery) -> wire.Envelope | None:
        """The envelope of a delivery the handler should see; None when it was settled
        here instead (malformed: dead-lettered; past its deadline: skipped; a kind a
        function does not serve: failed)."""
        m = self.metrics
        try:
            if delivery.malformed:
                raise DecodeError(f"entry: {delivery.malformed}")
            env = wire.decode(delivery.body)
        except DecodeError as e:
            log.warning(
                "malformed message dead-lettered: %s", e, extra={"attempt": delivery.attempt}
            )
            m.handled("malformed")
            m.dead_letters.inc()
            await delivery.dead_letter(f"malformed: {e}")
            return None
        if env.expired():
            log.info("skipped: past its deadline", extra=self._extra(env, delivery))
            m.handled("expired")
            await delivery.ack()
            return None
        if env.kind not in wire.SERVED_KINDS:
            error = UnsupportedKind(f"a function does not serve {env.kind} messages")
            await self._failed(delivery, env, error)
            return None
        return env

    async def _process(self, env: wire.Envelope, delivery: Delivery) -> None:
        """Run a served message's handler, reply, settle."""
        m = self.metrics
        started = time.perf_counter()
        try:
            result = await self._invoke(env, delivery)
        except asyncio.CancelledError:
            await delivery.retry(0)  # shutting down past the grace period: hand it back
            raise
        except Exception as e:
            m.took(time.perf_counter() - started)
            await self._failed(delivery, env, e)
            return
        m.took(time.perf_counter() - started)
        await self._settle(env, delivery, result)

    async def _settle(self, env: wire.Envelope, delivery: Delivery, result: Any) -> None:
        """Reply with a handler's result (when a caller waits) and ack."""
        try:
            reply = reply_body(env, result) if env.reply_to else None
        except Exception as e:  # a result that cannot be encoded fails the message
            await self._failed(delivery, env, e)
            return
        if reply is None:
            await delivery.ack()
        else:  # the reply is on the bus before (or as) the message is acked
            # bus trouble (TransportError) leaves it unsettled: the bus hands it out again
            try:
                with self._span("reply", PRODUCER):
                    await self.transport.reply_and_ack(delivery, env.reply_to or "", reply)
            except Undeliverable as e:  # the bus is fine, the address is not: never retried
                log.warning("reply undeliverable, dead-lettered: %s", e,
                            extra=self._extra(env, delivery))  # fmt: skip
                # the reply may be what was refused (too big): a short error may still go
                await self._reply_error(env, e)
                await self._dead_letter(delivery, f"Undeliverable: {e}")
                return
        self.metrics.handled("ok")

    async def _invoke(self, env: wire.Envelope, delivery: Delivery) -> Any:
        args: tuple[Any, ...] = (env.payload,)
        if self._wants_context or self._chain is not None:
            ctx = Context(
                env,
                delivery.attempt,
                logging.LoggerAdapter(log, self._extra(env, delivery)),
                self.client,
                state=self.state,
                channel=self.settings.channel_name,
            )
            args = (env.payload, ctx)
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        self._running.start(task, delivery)
        try:  # as _limited, inline: one coroutine less per message (A/B 0.89x with it)
            if self._chain is not None:
                return await self._chain(env.payload, ctx)
            if self._is_async:
                return await self._handler(*args)
            return await asyncio.to_thread(self._handler, *args)
        except asyncio.CancelledError:
            # as asyncio.timeout: our own cancel becomes TimeoutError, anyone else's stays
            if self._running.finish(task) and task.uncancel() <= cancelling:
                raise TimeoutError from None
            raise
        finally:
            if self._running.finish(task):  # time ran out, but the handler ignored it
                task.uncancel()

    async def _limited(self, call: Awaitable[Any], held: Sequence[Delivery]) -> Any:
        """Await ``call`` under the per-handler time limit, ``held`` kept alive meanwhile
        (a batch's call; :meth:`_invoke` does the same inline for one message)."""
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        self._running.start(task, held)
        try:
            return await call
        except asyncio.CancelledError:
            # as asyncio.timeout: our own cancel becomes TimeoutError, anyone else's stays
            if self._running.finish(task) and task.uncancel() <= cancelling:
                raise TimeoutError from None
            raise
        finally:
            if self._running.finish(task):  # time ran out, but the handler ignored it
                task.uncancel()

    async def _call_handler(self, payload: Any, ctx: Context) -> Any:
        """The end of a middleware chain: the handler, with or without ``ctx``."""
        args = (payload, ctx) if self._wants_context else (payload,)
        if self._is_async:
            return await self._handler(*args)
        return await asyncio.to_thread(self._handler, *args)

    def _span(self, name: str, kind: str) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext() if self._tracer is None else self._tracer.span(name, kind)

    async def _failed(self, delivery: Delivery, env: wire.Envelope, error: Exception) -> None:
        if self._tracer is not None:
            self._tracer.failed(error)
        waits = bool(env.reply_to) and not env.expired()
        decision = decide(
            self.policy,
            delivery.attempt,
            error,
            caller_waits=waits,
            reply_errors_at_once=self.settings.reply_errors_at_once,
        )
        log.warning(
            "handler failed (%s): %s",
            decision.action.value,
            decision.reason,
            extra=self._extra(env, delivery),
            exc_info=not isinstance(error, _QUIET_ERRORS),
        )
        m = self.metrics
        if decision.action is Action.RETRY:
            m.retries.inc()
            m.handled("retry")
            await delivery.retry(decision.delay_s)
            return
        if waits:
            await self._reply_error(env, error)
        if decision.action is Action.ERROR_REPLY:
            m.handled("error_reply")
            await delivery.ack()
        else:
            await self._dead_letter(delivery, decision.reason)

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.metrics.handled("dead_letter")
        self.metrics.dead_letters.inc()
        await delivery.dead_letter(reason)

    async def _reply_error(self, env: wire.Envelope, error: Exception) -> None:
        try:
            await self.transport.send_reply(
                env.reply_to or "", wire.encode(error_reply(env, error))
            )
        except TransportError as e:
            log.warning("could not send the error reply: %s", e, extra={"message_id": env.id})

    def _extra(self, env: wire.Envelope, delivery: Delivery) -> dict[str, Any]:
        return {
            "message_id": env.id,
            "attempt": delivery.attempt,
            "function": self.fn.name,
            "topic": env.topic,
        }
