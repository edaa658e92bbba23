"""Pure failure decisions: retry after a backoff, dead-letter, or answer the caller."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import Enum

from .errors import EncodeError, Reject, Retry


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed messages are retried.

    ``backoff_s * 2**(attempt-1)``, capped at ``backoff_max_s``, with up to ``jitter`` of it
    taken off at random so that retries of a burst spread out.
    """

    max_attempts: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 300.0
    jitter: float = 0.5
    non_retryable: tuple[type[BaseException], ...] = field(default=())


def backoff_delay_s(policy: RetryPolicy, attempt: int, rand: random.Random | None = None) -> float:
    """Delay before the attempt after ``attempt`` (1-based)."""
    ceiling = min(policy.backoff_max_s, policy.backoff_s * 2.0 ** max(0, attempt - 1))
    spread = (rand or random).uniform(0, policy.jitter)
    return ceiling * (1 - spread)


class Action(Enum):
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    ERROR_REPLY = "error_reply"  # a caller waits: answer with the error, no more attempts


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay_s: float = 0.0
    reason: str = ""


def decide(
    policy: RetryPolicy,
    attempt: int,
    error: BaseException,
    *,
    caller_waits: bool,
    reply_errors_at_once: bool,
    rand: random.Random | None = None,
) -> Decision:
    """What to do with a message whose handler raised ``error`` on ``attempt``."""
    reason = f"{type(error).__name__}: {error}"
    # an EncodeError is the handler's result that no bus can carry: the same again
    final = isinstance(error, (Reject, EncodeError, *policy.non_retryable))
    final = final or attempt >= policy.max_attempts
    if final:
        # a waiting caller still gets the error; the message is kept as a dead letter
        return Decision(Action.DEAD_LETTER, reason=reason)
    if caller_waits and reply_errors_at_once:
        return Decision(Action.ERROR_REPLY, reason=reason)
    if isinstance(error, Retry) and error.delay_s is not None:
        return Decision(Action.RETRY, delay_s=error.delay_s, reason=reason)
    return Decision(Action.RETRY, delay_s=backoff_delay_s(policy, attempt, rand), reason=reason)
