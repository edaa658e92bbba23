"""Function runtime settings: a pure function of an environment mapping.

Every variable is listed in the README's "Function runtime" table. The decorator's
options are the defaults; the environment (set by functl or the chart) wins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from .errors import ConfigError
from .transport import check_name

T = TypeVar("T")


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

    @classmethod
    def from_env(cls, env: Mapping[str, str], defaults: Settings | None = None) -> Settings:
        """Read ``KF_*`` variables over ``defaults``; ConfigError names the bad variable."""
        base = defaults or cls()
        values: dict[str, Any] = {}
        for f in fields(cls):
            var = ENV_NAMES[f.name]
            if var in env:
                values[f.name] = _PARSERS.get(f.name, _text)(var, env[var])
        settings = replace(base, **values)
        settings.check()
        return settings

    def check(self) -> None:
        if not self.topic:
            raise ConfigError("KF_TOPIC", "is not set and the function declares no topic")
        check_name("KF_TOPIC", self.topic)
        check_name("KF_CHANNEL", self.channel or self.function_name)
        if self.log_format not in ("json", "text"):
            raise ConfigError("KF_LOG_FORMAT", f"must be 'json' or 'text', got {self.log_format!r}")
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
}


def _text(var: str, raw: str) -> str:
    return raw.strip()


def _number(kind: Callable[[str], T], minimum: float, what: str) -> Callable[[str, str], T]:
    def parse(var: str, raw: str) -> T:
        try:
            value = kind(raw.strip())
        except ValueError:
            raise ConfigError(var, f"must be {what}, got {raw!r}") from None
        if value < minimum:  # type: ignore[operator]
            raise ConfigError(var, f"must be at least {minimum}, got {raw!r}")
        return value

    return parse


def _bool(var: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(var, f"must be true or false, got {raw!r}")


def _level(var: str, raw: str) -> str:
    value = raw.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(var, f"must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}")
    return value


def _addr(var: str, raw: str) -> str:
    value = raw.strip()
    if value and (":" not in value or not value.rsplit(":", 1)[1].isdigit()):
        raise ConfigError(var, f"must be HOST:PORT (or empty to turn it off), got {raw!r}")
    return value


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "concurrency": _number(int, 1, "an integer"),
    "max_attempts": _number(int, 1, "an integer"),
    "timeout_s": _number(float, 0.001, "a number of seconds"),
    "backoff_s": _number(float, 0, "a number of seconds"),
    "backoff_max_s": _number(float, 0, "a number of seconds"),
    "grace_s": _number(float, 0, "a number of seconds"),
    "reply_errors_at_once": _bool,
    "health_addr": _addr,
    "log_level": _level,
}
