"""One client connection speaking nsqd's TCP protocol V2."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from . import protocol as p
from .broker import Channel, ChannelError, Message, Topic
from .identify import (
    ClientSettings,
    apply_identify,
    decode_identify_body,
    identify_response,
    wants_features,
)
from .options import NsqdOptions, ms

# nsqd's client states (stateDisconnected/stateConnected are unused by V2)
STATE_INIT = 0
STATE_SUBSCRIBED = 3
STATE_CLOSING = 4


class Broker(Protocol):
    """The parts of the nsqd double a connection uses."""

    options: NsqdOptions

    def get_topic(self, name: str) -> Topic: ...

    def publish(self, topic_name: str, bodies: list[bytes], defer_s: float = 0.0) -> None: ...

    def client_gone(self, conn: V2Connection) -> None: ...


Handler = Callable[[list[bytes]], Awaitable[bytes | None]]


class V2Connection:
    """Server side of one TCP client: command handling, heartbeats and message delivery."""

    def __init__(
        self,
        broker: Broker,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client_id: int,
    ) -> None:
        self._broker = broker
        self._options = broker.options
        self._reader = reader
        self._writer = writer
        self.client_id = client_id
        peer = writer.get_extra_info("peername") or ("", 0)
        self.remote_address = f"{peer[0]}:{peer[1]}"
        self.settings = ClientSettings.defaults(self._options, str(peer[0]))
        self.connect_ts = int(time.time())
        self.state = STATE_INIT
        self.channel: Channel | None = None
        self.ready_count = 0
        self.in_flight = 0
        self.message_count = 0
        self.finish_count = 0
        self.requeue_count = 0
        self.pub_counts: dict[str, int] = {}
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._handlers: dict[bytes, Handler] = {
            b"IDENTIFY": self._identify,
            b"AUTH": self._auth,
            b"SUB": self._sub,
            b"RDY": self._rdy,
            b"FIN": self._fin,
            b"REQ": self._req,
            b"TOUCH": self._touch,
            b"CLS": self._cls,
            b"NOP": self._nop,
            b"PUB": self._pub,
            b"MPUB": self._mpub,
            b"DPUB": self._dpub,
        }

    # --- what a Channel sees (broker.Consumer) ---

    @property
    def msg_timeout_s(self) -> float:
        return self.settings.msg_timeout_s

    @property
    def sample_rate(self) -> int:
        return self.settings.sample_rate

    def is_ready(self) -> bool:
        if self.state != STATE_SUBSCRIBED or self.ready_count <= 0:
            return False
        return self.in_flight < self.ready_count

    def deliver(self, msg: Message) -> None:
        self.in_flight += 1
        self.message_count += 1
        frame = p.encode_message(msg.timestamp_ns, msg.attempts, msg.id, msg.body)
        self._send(p.FRAME_MESSAGE, frame)

    def timed_out(self) -> None:
        self.in_flight -= 1

    def emptied(self) -> None:
        self.in_flight = 0

    def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()

    # --- connection lifecycle ---

    async def serve(self) -> None:
        try:
            magic = await self._reader.readexactly(4)
            if magic != p.MAGIC_V2:
                self._send(p.FRAME_ERROR, b"E_BAD_PROTOCOL")
                return
            self._restart_heartbeat()
            await self._command_loop()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        self.close()
        if self.channel is not None:
            self.channel.remove_consumer(self)
        self._broker.client_gone(self)
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    async def _command_loop(self) -> None:
        loop = asyncio.get_running_loop()
        keep_going = True
        while keep_going:
            interval = self.settings.heartbeat_interval_s
            # nsqd's read deadline: a client silent for two heartbeats is dropped without a word
            deadline = loop.time() + 2 * interval if interval > 0 else None
            try:
                async with asyncio.timeout_at(deadline):
                    line = await self._reader.readuntil(b"\n")
                    keep_going = await self._execute(line)
            except TimeoutError:
                return

    async def _execute(self, line: bytes) -> bool:
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        params = line.split(b" ")
        try:
            handler = self._handlers.get(params[0])
            if handler is None:
                raise p.fatal("E_INVALID", f"invalid command {_text(params[0])}")
            response = await handler(params)
        except p.ClientError as err:
            self._send(p.FRAME_ERROR, err.wire)
            return not err.fatal
        if response is not None:
            self._send(p.FRAME_RESPONSE, response)
        return True

    def _send(self, frame_type: int, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(p.encode_frame(frame_type, data))

    def _restart_heartbeat(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None
        if self.settings.heartbeat_interval_s > 0:
            coro = self._heartbeats(self.settings.heartbeat_interval_s)
            self._heartbeat_task = asyncio.create_task(coro)

    async def _heartbeats(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._send(p.FRAME_RESPONSE, p.HEARTBEAT)

    # --- body reading with nsqd's error codes ---

    async def _read_len(self, code: str, description: str) -> int:
        try:
            return p.unpack_int32(await self._reader.readexactly(4))
        except asyncio.IncompleteReadError:
            raise p.fatal(code, description) from None

    async def _read_exact(self, size: int, code: str, description: str) -> bytes:
        try:
            return await self._reader.readexactly(size)
        except asyncio.IncompleteReadError:
            raise p.fatal(code, description) from None

    async def _read_body(self, cmd: str, limit: int) -> bytes:
        """IDENTIFY/AUTH framing: too-big is checked before non-positive sizes."""
        size = await self._read_len("E_BAD_BODY", f"{cmd} failed to read body size")
        if size > limit:
            raise p.fatal("E_BAD_BODY", f"{cmd} body too big {size} > {limit}")
        if size <= 0:
            raise p.fatal("E_BAD_BODY", f"{cmd} invalid body size {size}")
        return await self._read_exact(size, "E_BAD_BODY", f"{cmd} failed to read body")

    async def _read_message(self, cmd: str) -> bytes:
        """PUB/DPUB framing: a single message body, checked against max_msg_size."""
        size = await self._read_len("E_BAD_MESSAGE", f"{cmd} failed to read message body size")
        if size <= 0:
            raise p.fatal("E_BAD_MESSAGE", f"{cmd} invalid message body size {size}")
        limit = self._options.max_msg_size
        if size > limit:
            raise p.fatal("E_BAD_MESSAGE", f"{cmd} message too big {size} > {limit}")
        return await self._read_exact(size, "E_BAD_MESSAGE", f"{cmd} failed to read message body")

    # --- commands ---

    async def _identify(self, params: list[bytes]) -> bytes | None:
        if self.state != STATE_INIT:
            raise p.fatal("E_INVALID", "cannot IDENTIFY in current state")
        data = decode_identify_body(await self._read_body("IDENTIFY", self._options.max_body_size))
        apply_identify(self.settings, data, self._options)
        self._restart_heartbeat()
        if not wants_features(data):
            return p.OK
        return json.dumps(identify_response(self.settings, self._options)).encode()

    async def _auth(self, params: list[bytes]) -> bytes | None:
        if self.state != STATE_INIT:
            raise p.fatal("E_INVALID", "cannot AUTH in current state")
        if len(params) != 1:
            raise p.fatal("E_INVALID", "AUTH invalid number of parameters")
        await self._read_body("AUTH", self._options.max_body_size)
        raise p.fatal("E_AUTH_DISABLED", "AUTH disabled")

    async def _sub(self, params: list[bytes]) -> bytes | None:
        if self.state != STATE_INIT:
            raise p.fatal("E_INVALID", "cannot SUB in current state")
        if self.settings.heartbeat_interval_s <= 0:
            raise p.fatal("E_INVALID", "cannot SUB with heartbeats disabled")
        if len(params) < 3:
            raise p.fatal("E_INVALID", "SUB insufficient number of parameters")
        topic_name, channel_name = _text(params[1]), _text(params[2])
        if not p.is_valid_name(topic_name):
            raise p.fatal("E_BAD_TOPIC", f"SUB topic name {p.go_quote(topic_name)} is not valid")
        if not p.is_valid_name(channel_name):
            desc = f"SUB channel name {p.go_quote(channel_name)} is not valid"
            raise p.fatal("E_BAD_CHANNEL", desc)
        self.channel = self._broker.get_topic(topic_name).get_channel(channel_name)
        self.state = STATE_SUBSCRIBED
        self.channel.add_consumer(self)
        return p.OK

    async def _rdy(self, params: list[bytes]) -> bytes | None:
        if self.state == STATE_CLOSING:
            return None  # nsqd ignores RDY after CLS
        if self.state != STATE_SUBSCRIBED:
            raise p.fatal("E_INVALID", "cannot RDY in current state")
        count = 1
        if len(params) > 1:
            try:
                count = p.parse_base10(params[1])
            except ValueError:
                desc = f"RDY could not parse count {_text(params[1])}"
                raise p.fatal("E_INVALID", desc) from None
        count = p.go_int64(count)
        limit = self._options.max_rdy_count
        if count < 0 or count > limit:
            raise p.fatal("E_INVALID", f"RDY count {count} out of range 0-{limit}")
        self.ready_count = count
        self._subscribed_channel().pump()
        return None

    async def _fin(self, params: list[bytes]) -> bytes | None:
        msg_id = self._in_flight_command("FIN", params, 2)
        try:
            self._subscribed_channel().finish(self, msg_id)
        except ChannelError as err:
            raise p.non_fatal("E_FIN_FAILED", f"FIN {_text(msg_id)} failed {err}") from None
        self.in_flight -= 1
        self.finish_count += 1
        self._subscribed_channel().pump()
        return None

    async def _req(self, params: list[bytes]) -> bytes | None:
        msg_id = self._in_flight_command("REQ", params, 3)
        try:
            timeout_ms = p.parse_base10(params[2])
        except ValueError:
            desc = f"REQ could not parse timeout {_text(params[2])}"
            raise p.fatal("E_INVALID", desc) from None
        # out-of-range REQ timeouts are clamped (and only logged) by nsqd
        delay_ns = p.millis_duration_ns(timeout_ms)
        delay_s = min(max(0, delay_ns) / 1e9, self._options.max_req_timeout_s)
        try:
            self._subscribed_channel().requeue(self, msg_id, delay_s)
        except ChannelError as err:
            raise p.non_fatal("E_REQ_FAILED", f"REQ {_text(msg_id)} failed {err}") from None
        self.in_flight -= 1
        self.requeue_count += 1
        self._subscribed_channel().pump()
        return None

    async def _touch(self, params: list[bytes]) -> bytes | None:
        msg_id = self._in_flight_command("TOUCH", params, 2)
        try:
            self._subscribed_channel().touch(self, msg_id, self.settings.msg_timeout_s)
        except ChannelError as err:
            raise p.non_fatal("E_TOUCH_FAILED", f"TOUCH {_text(msg_id)} failed {err}") from None
        return None

    async def _cls(self, params: list[bytes]) -> bytes | None:
        if self.state != STATE_SUBSCRIBED:
            raise p.fatal("E_INVALID", "cannot CLS in current state")
        self.ready_count = 0
        self.state = STATE_CLOSING
        # nsqd only acknowledges; closing the socket is left to the client
        return p.CLOSE_WAIT

    async def _nop(self, params: list[bytes]) -> bytes | None:
        return None

    async def _pub(self, params: list[bytes]) -> bytes | None:
        topic_name = self._publish_topic("PUB", params, 2)
        body = await self._read_message("PUB")
        self._publish(topic_name, [body])
        return p.OK

    async def _mpub(self, params: list[bytes]) -> bytes | None:
        if len(params) < 2:
            raise p.fatal("E_INVALID", "MPUB insufficient number of parameters")
        topic_name = _text(params[1])
        if not p.is_valid_name(topic_name):
            # nsqd really repeats the code inside the description for MPUB
            desc = f"E_BAD_TOPIC MPUB topic name {p.go_quote(topic_name)} is not valid"
            raise p.fatal("E_BAD_TOPIC", desc)
        self._broker.get_topic(topic_name)  # nsqd creates the topic before reading the body
        opts = self._options
        size = await self._read_len("E_BAD_BODY", "MPUB failed to read body size")
        if size <= 0:
            raise p.fatal("E_BAD_BODY", f"MPUB invalid body size {size}")
        if size > opts.max_body_size:
            raise p.fatal("E_BAD_BODY", f"MPUB body too big {size} > {opts.max_body_size}")
        messages = await p.read_mpub(self._take, opts.max_msg_size, opts.max_body_size)
        self._publish(topic_name, messages)
        return p.OK

    async def _take(self, size: int) -> bytes:
        try:
            return await self._reader.readexactly(size)
        except asyncio.IncompleteReadError:
            raise p.Exhausted from None

    async def _dpub(self, params: list[bytes]) -> bytes | None:
        topic_name = self._publish_topic("DPUB", params, 3)
        try:
            defer_ms = p.parse_base10(params[2])
        except ValueError:
            desc = f"DPUB could not parse timeout {_text(params[2])}"
            raise p.fatal("E_INVALID", desc) from None
        max_ms = ms(self._options.max_req_timeout_s)
        defer_ns = p.millis_duration_ns(defer_ms)
        if defer_ns < 0 or defer_ns > max_ms * 1_000_000:
            raise p.fatal("E_INVALID", f"DPUB timeout {defer_ms} out of range 0-{max_ms}")
        body = await self._read_message("DPUB")
        self._publish(topic_name, [body], defer_ns / 1e9)
        return p.OK

    # --- helpers ---

    def _in_flight_command(self, cmd: str, params: list[bytes], arity: int) -> bytes:
        if self.state not in (STATE_SUBSCRIBED, STATE_CLOSING):
            raise p.fatal("E_INVALID", f"cannot {cmd} in current state")
        if len(params) < arity:
            raise p.fatal("E_INVALID", f"{cmd} insufficient number of params")
        if len(params[1]) != p.MSG_ID_LENGTH:
            raise p.fatal("E_INVALID", "invalid message ID")  # protocol_v2.go getMessageID
        return params[1]

    def _publish_topic(self, cmd: str, params: list[bytes], arity: int) -> str:
        if len(params) < arity:
            raise p.fatal("E_INVALID", f"{cmd} insufficient number of parameters")
        topic_name = _text(params[1])
        if not p.is_valid_name(topic_name):
            raise p.fatal("E_BAD_TOPIC", f"{cmd} topic name {p.go_quote(topic_name)} is not valid")
        return topic_name

    def _publish(self, topic_name: str, bodies: list[bytes], defer_s: float = 0.0) -> None:
        self._broker.publish(topic_name, bodies, defer_s)
        self.pub_counts[topic_name] = self.pub_counts.get(topic_name, 0) + len(bodies)

    def _subscribed_channel(self) -> Channel:
        assert self.channel is not None, "state machine guarantees a channel after SUB"
        return self.channel


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")
