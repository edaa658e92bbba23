"""Settings come from the environment over the decorator's defaults; a wrong value names
its variable."""

from __future__ import annotations

import pytest
from kubefuncs import ConfigError, function
from kubefuncs.errors import Reject, Retry
from kubefuncs.retry import Action, RetryPolicy, backoff_delay_s, decide
from kubefuncs.settings import ENV_NAMES, Settings


@function("orders", concurrency=4, timeout_s=2.5, max_attempts=3)
def handler(payload: object) -> None:
    return None


def test_decorator_options_are_defaults_and_env_wins() -> None:
    s = Settings.from_env({"KF_CONCURRENCY": "8"}, handler.settings)
    assert (s.topic, s.concurrency, s.timeout_s, s.max_attempts) == ("orders", 8, 2.5, 3)
    assert s.channel_name == "handler"


def test_every_setting_has_an_environment_variable() -> None:
    env = {
        "KF_BUS_URL": "redis://h:1/2",
        "KF_BUS_PASSWORD": "pw",
        "KF_FUNCTION_NAME": "f",
        "KF_TOPIC": "t",
        "KF_CHANNEL": "c",
        "KF_CONCURRENCY": "3",
        "KF_TIMEOUT_S": "1.5",
        "KF_MAX_ATTEMPTS": "2",
        "KF_BACKOFF_S": "0.5",
        "KF_BACKOFF_MAX_S": "9",
        "KF_GRACE_S": "4",
        "KF_REPLY_ERRORS_AT_ONCE": "false",
        "KF_HEALTH_ADDR": "",
        "KF_LOG_LEVEL": "debug",
        "KF_LOG_FORMAT": "text",
        "KF_STARTUP_TIMEOUT_S": "7",
        "KF_SHUTDOWN_TIMEOUT_S": "0",
        "KF_BATCH": "50",
        "KF_BATCH_WAIT_S": "0.2",
    }
    assert set(env) == set(ENV_NAMES.values())
    s = Settings.from_env(env)
    assert s == Settings(
        "redis://h:1/2",
        "pw",
        "f",
        "t",
        "c",
        3,
        1.5,
        2,
        0.5,
        9.0,
        4.0,
        False,
        "",
        "DEBUG",
        "text",
        7.0,
        0.0,
        50,
        0.2,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KF_CONCURRENCY": "eight"}, "KF_CONCURRENCY must be an integer, got 'eight'"),
        ({"KF_CONCURRENCY": "0"}, "KF_CONCURRENCY must be at least 1"),
        ({"KF_BATCH": "0"}, "KF_BATCH must be at least 1"),
        ({"KF_BATCH_WAIT_S": "-1"}, "KF_BATCH_WAIT_S must be at least 0"),
        ({"KF_TIMEOUT_S": "soon"}, "KF_TIMEOUT_S must be a number of seconds, got 'soon'"),
        ({"KF_REPLY_ERRORS_AT_ONCE": "maybe"}, "KF_REPLY_ERRORS_AT_ONCE must be true or false"),
        ({"KF_HEALTH_ADDR": "8081"}, "KF_HEALTH_ADDR must be HOST:PORT"),
        ({"KF_LOG_LEVEL": "loud"}, "KF_LOG_LEVEL must be one of DEBUG, INFO"),
        ({"KF_LOG_FORMAT": "xml"}, "KF_LOG_FORMAT must be one of json, text, got 'xml'"),
        ({"KF_TOPIC": "has space"}, "KF_TOPIC must be 1-64 characters"),
        ({"KF_BACKOFF_S": "10", "KF_BACKOFF_MAX_S": "1"}, "KF_BACKOFF_MAX_S must be at least"),
    ],
)
def test_a_wrong_value_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Settings.from_env(env, handler.settings)


def test_a_topic_is_required() -> None:
    with pytest.raises(ConfigError, match="KF_TOPIC is not set"):
        Settings.from_env({})


# -- retry decisions (pure) -------------------------------------------------------------

POLICY = RetryPolicy(
    max_attempts=3, backoff_s=1.0, backoff_max_s=5.0, jitter=0.5, non_retryable=(KeyError,)
)


@pytest.mark.parametrize(
    ("attempt", "error", "waits", "at_once", "action"),
    [
        (1, ValueError("x"), False, True, Action.RETRY),
        (2, ValueError("x"), False, True, Action.RETRY),
        (3, ValueError("x"), False, True, Action.DEAD_LETTER),  # attempts used up
        (1, KeyError("x"), False, True, Action.DEAD_LETTER),  # non-retryable type
        (1, Reject("no"), False, True, Action.DEAD_LETTER),
        (1, ValueError("x"), True, True, Action.ERROR_REPLY),  # a caller waits
        (1, ValueError("x"), True, False, Action.RETRY),  # ... unless configured to retry
        (3, ValueError("x"), True, True, Action.DEAD_LETTER),
    ],
)
def test_decide(attempt: int, error: Exception, waits: bool, at_once: bool, action: Action) -> None:
    decision = decide(POLICY, attempt, error, caller_waits=waits, reply_errors_at_once=at_once)
    assert decision.action is action
    assert type(error).__name__ in decision.reason


def test_retry_exception_sets_its_own_delay() -> None:
    decision = decide(POLICY, 1, Retry(delay_s=7.0), caller_waits=False, reply_errors_at_once=True)
    assert (decision.action, decision.delay_s) == (Action.RETRY, 7.0)


def test_backoff_doubles_is_capped_and_jittered_down() -> None:
    import random

    rand = random.Random(1)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10, 5.0)]:
        delays = [backoff_delay_s(POLICY, attempt, rand) for _ in range(200)]
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling * 0.3  # really spread
