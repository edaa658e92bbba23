"""Parsing ``KF_*`` variables into settings dataclasses: one parser per field, each error
naming its variable. Shared by the runtime's and the gateway's settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from .errors import ConfigError

Parser = Callable[[str, str], Any]


def read(
    cls: type, env: Mapping[str, str], names: Mapping[str, str], parsers: Mapping[str, Parser]
) -> dict[str, Any]:
    """The fields of dataclass ``cls`` whose variable (``names[field]``) is set in ``env``."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        var = names[f.name]
        if var in env:
            values[f.name] = parsers.get(f.name, text)(var, env[var])
    return values


def text(var: str, raw: str) -> str:
    return raw.strip()


def optional(var: str, raw: str) -> str | None:
    return raw.strip() or None


def number(kind: Callable[[str], Any], minimum: float, what: str) -> Parser:
    def parse(var: str, raw: str) -> Any:
        try:
            value = kind(raw.strip())
        except ValueError:
            raise ConfigError(var, f"must be {what}, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(var, f"must be at least {minimum:g}, got {raw!r}")
        return value

    return parse


def boolean(var: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(var, f"must be true or false, got {raw!r}")


def address(*, allow_empty: bool) -> Parser:
    def parse(var: str, raw: str) -> str:
        value = raw.strip()
        if allow_empty and not value:
            return value
        if ":" not in value or not value.rsplit(":", 1)[1].isdigit():
            off = " (or empty to turn it off)" if allow_empty else ""
            raise ConfigError(var, f"must be HOST:PORT such as 0.0.0.0:8080{off}, got {raw!r}")
        return value

    return parse


def choice(*allowed: str, upper: bool = False) -> Parser:
    def parse(var: str, raw: str) -> str:
        value = raw.strip().upper() if upper else raw.strip().lower()
        if value not in allowed:
            raise ConfigError(var, f"must be one of {', '.join(allowed)}, got {raw!r}")
        return value

    return parse


LOG_LEVEL = choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", upper=True)
LOG_FORMAT = choice("json", "text")
