"""Error types of the kubefuncs client library.

Every error raised on purpose derives from :class:`KubefuncsError`.
"""

from __future__ import annotations


class KubefuncsError(Exception):
    """Root of every error kubefuncs raises on purpose."""


class ConfigError(KubefuncsError):
    """A setting is missing or has a wrong value; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable} {problem}")
        self.variable = variable
        self.problem = problem


class DecodeError(KubefuncsError):
    """A message body is not a valid kubefuncs v1 envelope."""


class TransportError(KubefuncsError):
    """The bus could not be reached or refused an operation."""


class Undeliverable(TransportError):
    """The bus is there but will not take this message where it is addressed: a reply
    address that is not an inbox of this bus, or a message the broker refuses. Trying the
    same again cannot help (unlike a bus that is away)."""


class CallTimeout(KubefuncsError):
    """Nobody replied to a call before its deadline."""


class RemoteError(KubefuncsError):
    """A called function answered with an error reply."""

    def __init__(self, type_: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"{type_}: {message}")
        self.type = type_
        self.message = message
        self.retryable = retryable


class Retry(KubefuncsError):
    """Raise from a handler to ask for another attempt, optionally after ``delay_s``."""

    def __init__(self, message: str = "retry requested", *, delay_s: float | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class Reject(KubefuncsError):
    """Raise from a handler to fail the message without further attempts."""


class UnsupportedKind(Reject):
    """A message of a kind functions do not serve (a reply, say): never run, dead-lettered."""


class LoopFailed(KubefuncsError):
    """A loop that must run for the life of the process (consuming, reading replies) died:
    the process stops and exits non-zero so that its supervisor restarts it."""


class LifespanFailed(KubefuncsError):
    """A function's lifespan (its startup or shutdown work) raised or ran out of time: the
    process exits non-zero with the cause logged, never ready when startup failed."""


class EncodeError(KubefuncsError, ValueError):
    """An envelope cannot be written: a value msgpack has no form for (an integer beyond
    64 bits, a lone surrogate, a set), or one every consumer would refuse (see the limits in
    docs/protocol.md). The message names the field. A ValueError too: msgpack's own error
    for these was one."""
