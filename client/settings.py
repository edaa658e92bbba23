"""Function runtime settings: a pure function of an environment mapping.

Every variable is listed in the README's "Function runtime" table. The decorator's
options are the defaults; the environment (set by functl or the chart) wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from . import envparse
from .errors import ConfigError
from .transport import check_name


@dataclass(frozen=True, slots=True)
class Settings:
    bus_url: str = "valkey://localhost:6379/0"
    bus_password: str | None = None
    function_name: str = ""
    topic: str = ""
    channel: str = ""
    concurrency: int = 16
    timeout_s: float = 30.0
    max_attempts: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 300.0
    grace_s: float = 25.0
    reply_errors_at_once: bool = True
    health_addr: str = "0.0.0.0:8081"
    log_level: str = "INFO"
    log_format: str = "json"
    startup_timeout_s: float = 60.0
    shutdown_timeout_s: float = 10.0
    batch: int = 0  # a batch handler's most messages per call (0: not a batch handler)
    batch_wait_s: float = 0.01  # how long a batch waits for more after its first message

    @classmethod
    def from_env(cls, env: Mapping[str, str], defaults: Settings | None = None) -> Settings:
        """Read ``KF_*`` variables over ``defaults``; ConfigError names the bad variable."""
        values = envparse.read(cls, env, ENV_NAMES, _PARSERS)
        settings = replace(defaults or cls(), **values)
        settings.check()
        return settings

    def check(self) -> None:
        if not self.topic:
            raise ConfigError("KF_TOPIC", "is not set and the function declares no topic")
        check_name("KF_TOPIC", self.topic)
        check_name("KF_CHANNEL", self.channel or self.function_name)
        if self.backoff_max_s < self.backoff_s:
            raise ConfigError("KF_BACKOFF_MAX_S", "must be at least KF_BACKOFF_S")

    @property
    def channel_name(self) -> str:
        return self.channel or self.function_name


ENV_NAMES = {
    "bus_url": "KF_BUS_URL",
    "bus_password": "KF_BUS_PASSWORD",
    "function_name": "KF_FUNCTION_NAME",
    "topic": "KF_TOPIC",
    "channel": "KF_CHANNEL",
    "concurrency": "KF_CONCURRENCY",
    "timeout_s": "KF_TIMEOUT_S",
    "max_attempts": "KF_MAX_ATTEMPTS",
    "backoff_s": "KF_BACKOFF_S",
    "backoff_max_s": "KF_BACKOFF_MAX_S",
    "grace_s": "KF_GRACE_S",
    "reply_errors_at_once": "KF_REPLY_ERRORS_AT_ONCE",
    "health_addr": "KF_HEALTH_ADDR",
    "log_level": "KF_LOG_LEVEL",
    "log_format": "KF_LOG_FORMAT",
    "startup_timeout_s": "KF_STARTUP_TIMEOUT_S",
    "shutdown_timeout_s": "KF_SHUTDOWN_TIMEOUT_S",
    "batch": "KF_BATCH",
    "batch_wait_s": "KF_BATCH_WAIT_S",
}


_PARSERS: dict[str, envparse.Parser] = {
    "bus_password": envparse.optional,
    "concurrency": envparse.number(int, 1, "an integer"),
    "max_attempts": envparse.number(int, 1, "an integer"),
    "timeout_s": envparse.number(float, 0.001, "a number of seconds"),
    "backoff_s": envparse.number(float, 0, "a number of seconds"),
    "backoff_max_s": envparse.number(float, 0, "a number of seconds"),
    "grace_s": envparse.number(float, 0, "a number of seconds"),
    "reply_errors_at_once": envparse.boolean,
    "health_addr": envparse.address(allow_empty=True),
    "log_level": envparse.LOG_LEVEL,
    "log_format": envparse.LOG_FORMAT,
    "startup_timeout_s": envparse.number(float, 0.001, "a number of seconds"),
    "shutdown_timeout_s": envparse.number(float, 0, "a number of seconds"),
    "batch": envparse.number(int, 1, "an integer"),
    "batch_wait_s": envparse.number(float, 0, "a number of seconds"),
}
