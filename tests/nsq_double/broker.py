"""Topic and channel semantics of nsqd: fan-out, RDY-limited delivery, in-flight and deferral."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from .protocol import is_ephemeral


class Consumer(Protocol):
    """What a channel needs from a subscribed client connection."""

    client_id: int

    @property
    def msg_timeout_s(self) -> float: ...

    @property
    def sample_rate(self) -> int: ...

    def is_ready(self) -> bool: ...

    def deliver(self, msg: Message) -> None: ...

    def timed_out(self) -> None: ...

    def emptied(self) -> None: ...

    def close(self) -> None: ...


@dataclass(eq=False)
class Message:
    """One message as held by a topic or by one channel (each channel owns its own copy)."""

    id: bytes
    body: bytes
    timestamp_ns: int
    defer_s: float = 0.0
    attempts: int = 0
    owner: Consumer | None = None
    delivered_at: float = 0.0
    deadline: float = field(default=0.0, repr=False)  # nsqd's msg.pri: timeout or undefer time

    def copy(self) -> Message:
        return replace(self, owner=None)


class ChannelError(Exception):
    """FIN/REQ/TOUCH failures; the text matches nsqd's channel errors."""


class Channel:
    """Queue shared by the consumers of one topic channel.

    As in nsqd, in-flight timeouts and deferred messages are not timers: they are acted on
    only when nsqd's queue scan loop visits the channel (:meth:`scan`), so a message comes
    back no sooner than its deadline and possibly much later (channel.go
    processInFlightQueue / processDeferredQueue, nsqd.go queueScanLoop).
    """

    def __init__(
        self,
        topic_name: str,
        name: str,
        *,
        max_msg_timeout_s: float,
        on_last_consumer_gone: Callable[[Channel], None],
        mem_queue_size: int = 10000,
    ) -> None:
        self.topic_name = topic_name
        self.mem_queue_size = mem_queue_size
        self.name = name
        self.ephemeral = is_ephemeral(name)
        self.max_msg_timeout_s = max_msg_timeout_s
        self._on_last_consumer_gone = on_last_consumer_gone
        self._queue: deque[Message] = deque()
        self._in_flight: dict[bytes, Message] = {}
        self._deferred: dict[bytes, Message] = {}
        self.consumers: list[Consumer] = []
        self._next_consumer = 0
        self.message_count = 0
        self.requeue_count = 0
        self.timeout_count = 0
        self.dropped_count = 0
        self.deleted = False

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def backend_depth(self) -> int:
        """What nsqd would hold on disk: the queue beyond its in-memory part."""
        return max(0, len(self._queue) - self.mem_queue_size)

    @property
    def in_flight_count(self) -> int:
        return len(self._in_flight)

    @property
    def deferred_count(self) -> int:
        return len(self._deferred)

    def put(self, msg: Message) -> None:
        self.message_count += 1
        if msg.defer_s > 0:
            delay, msg.defer_s = msg.defer_s, 0.0
            self._start_deferred(msg, delay)
        else:
            self._enqueue(msg)

    def add_consumer(self, consumer: Consumer) -> None:
        if consumer not in self.consumers:
            self.consumers.append(consumer)
        self.pump()

    def remove_consumer(self, consumer: Consumer) -> None:
        # nsqd leaves the consumer's in-flight messages alone: they requeue on msg_timeout
        if self.deleted or consumer not in self.consumers:
            return
        self.consumers.remove(consumer)
        if not self.consumers and self.ephemeral:
            self._on_last_consumer_gone(self)

    def pump(self) -> None:
        """Hand queued messages to ready consumers, never exceeding anyone's RDY count."""
        while self._queue and not self.deleted:
            consumer = self._pick_ready_consumer()
            if consumer is None:
                return
            msg = self._queue.popleft()
            # nsqd's sampling drops the message for the whole channel, it is not requeued
            if consumer.sample_rate > 0 and random.randrange(100) > consumer.sample_rate:
                continue
            self._start_in_flight(msg, consumer)
            consumer.deliver(msg)

    def finish(self, consumer: Consumer, msg_id: bytes) -> None:
        self._pop_in_flight(consumer, msg_id)

    def requeue(self, consumer: Consumer, msg_id: bytes, delay_s: float) -> None:
        msg = self._pop_in_flight(consumer, msg_id)
        self.requeue_count += 1
        if delay_s > 0:
            self._start_deferred(msg, delay_s)
        else:
            self._enqueue(msg)

    def touch(self, consumer: Consumer, msg_id: bytes, timeout_s: float) -> None:
        msg = self._owned_in_flight(consumer, msg_id)
        now = asyncio.get_running_loop().time()
        msg.deadline = min(now + timeout_s, msg.delivered_at + self.max_msg_timeout_s)

    def scan(self, now: float) -> bool:
        """One visit of nsqd's queue scan worker: time out expired in-flight messages and
        release due deferred ones. True when there was work ("dirty")."""
        if self.deleted:
            return False
        expired = [m for m in self._in_flight.values() if m.deadline <= now]
        due = [m for m in self._deferred.values() if m.deadline <= now]
        for msg in sorted(expired, key=lambda m: m.deadline):
            self._expire(msg)
        for msg in sorted(due, key=lambda m: m.deadline):
            del self._deferred[msg.id]
            self._enqueue(msg)
        return bool(expired or due)

    def empty(self) -> None:
        """Drop queued, in-flight and deferred messages (nsqd's /channel/empty)."""
        self._queue.clear()
        self._in_flight.clear()
        self._deferred.clear()
        for consumer in self.consumers:
            consumer.emptied()

    def delete(self) -> None:
        """Discard every message and disconnect the consumers, as nsqd does on deletion."""
        self.deleted = True
        self.empty()
        consumers, self.consumers = self.consumers, []
        for consumer in consumers:
            consumer.close()

    def _enqueue(self, msg: Message) -> None:
        if self.deleted:
            return
        if self.ephemeral and len(self._queue) >= self.mem_queue_size:
            # channel.go put(): the memory queue is full and an ephemeral channel's backend
            # is a dummy queue, so the message is dropped
            self.dropped_count += 1
            return
        self._queue.append(msg)
        self.pump()

    def _pick_ready_consumer(self) -> Consumer | None:
        count = len(self.consumers)
        for offset in range(count):
            index = (self._next_consumer + offset) % count
            if self.consumers[index].is_ready():
                self._next_consumer = (index + 1) % count
                return self.consumers[index]
        return None

    def _start_in_flight(self, msg: Message, consumer: Consumer) -> None:
        loop = asyncio.get_running_loop()
        msg.attempts = (msg.attempts + 1) & 0xFFFF  # message.go: Attempts is a uint16
        msg.owner = consumer
        msg.delivered_at = loop.time()
        msg.deadline = msg.delivered_at + consumer.msg_timeout_s
        self._in_flight[msg.id] = msg

    def _expire(self, msg: Message) -> None:
        del self._in_flight[msg.id]
        self.timeout_count += 1
        owner, msg.owner = msg.owner, None
        if owner is not None:
            owner.timed_out()
        self._enqueue(msg)

    def _start_deferred(self, msg: Message, delay_s: float) -> None:
        msg.owner = None
        msg.deadline = asyncio.get_running_loop().time() + delay_s
        self._deferred[msg.id] = msg

    def _owned_in_flight(self, consumer: Consumer, msg_id: bytes) -> Message:
        msg = self._in_flight.get(msg_id)
        if msg is None:
            raise ChannelError("ID not in flight")
        if msg.owner is not consumer:
            raise ChannelError("client does not own message")
        return msg

    def _pop_in_flight(self, consumer: Consumer, msg_id: bytes) -> Message:
        msg = self._owned_in_flight(consumer, msg_id)
        del self._in_flight[msg_id]
        msg.owner = None
        return msg


class TopicHooks(Protocol):
    """Callbacks from a topic to its nsqd (lookupd registration, ephemeral cleanup)."""

    def channel_created(self, topic: Topic, channel: Channel) -> None: ...

    def channel_deleted(self, topic: Topic, channel: Channel) -> None: ...

    def topic_emptied(self, topic: Topic) -> None: ...


class Topic:
    """A topic: buffers messages until it has a channel, then copies each one to every channel."""

    def __init__(
        self,
        name: str,
        hooks: TopicHooks,
        *,
        max_msg_timeout_s: float,
        mem_queue_size: int = 10000,
    ) -> None:
        self.name = name
        self.mem_queue_size = mem_queue_size
        self.ephemeral = is_ephemeral(name)
        self._hooks = hooks
        self._max_msg_timeout_s = max_msg_timeout_s
        self.channels: dict[str, Channel] = {}
        self._backlog: deque[Message] = deque()
        self.message_count = 0
        self.message_bytes = 0

    @property
    def depth(self) -> int:
        return len(self._backlog)

    @property
    def backend_depth(self) -> int:
        return max(0, len(self._backlog) - self.mem_queue_size)

    def put(self, msg: Message) -> None:
        self.message_count += 1
        self.message_bytes += len(msg.body)
        if self.channels:
            self._fan_out(msg)
        elif not (self.ephemeral and len(self._backlog) >= self.mem_queue_size):
            self._backlog.append(msg)  # else topic.go put(): dropped, like a channel's

    def get_channel(self, name: str) -> Channel:
        channel = self.channels.get(name)
        if channel is not None:
            return channel
        channel = Channel(
            self.name,
            name,
            max_msg_timeout_s=self._max_msg_timeout_s,
            on_last_consumer_gone=self._ephemeral_channel_abandoned,
            mem_queue_size=self.mem_queue_size,
        )
        self.channels[name] = channel
        self._hooks.channel_created(self, channel)
        # the topic pump only starts draining once a channel exists: the backlog goes to it
        while self._backlog:
            self._fan_out(self._backlog.popleft())
        return channel

    def delete_channel(self, name: str) -> bool:
        channel = self.channels.pop(name, None)
        if channel is None:
            return False
        channel.delete()
        self._hooks.channel_deleted(self, channel)
        if not self.channels and self.ephemeral:
            self._hooks.topic_emptied(self)
        return True

    def empty(self) -> None:
        self._backlog.clear()

    def delete(self) -> None:
        """Drop the backlog and delete every channel (each one is unregistered, as in nsqd)."""
        self._backlog.clear()
        while self.channels:
            channel = self.channels.pop(next(iter(self.channels)))
            channel.delete()
            self._hooks.channel_deleted(self, channel)

    def _fan_out(self, msg: Message) -> None:
        channels = list(self.channels.values())
        copies = [msg] + [msg.copy() for _ in channels[1:]]
        for channel, copy in zip(channels, copies, strict=True):
            channel.put(copy)

    def _ephemeral_channel_abandoned(self, channel: Channel) -> None:
        if self.channels.get(channel.name) is channel:
            self.delete_channel(channel.name)
