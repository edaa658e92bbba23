"""IDENTIFY body validation with nsqd's accepted ranges and error texts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .options import NsqdOptions, ms
from .protocol import fatal


@dataclass
class ClientSettings:
    """Per-connection settings a client may negotiate with IDENTIFY."""

    client_id: str
    hostname: str
    user_agent: str = ""
    heartbeat_interval_s: float = 30.0
    msg_timeout_s: float = 60.0
    sample_rate: int = 0
    output_buffer_size: int = 16 * 1024
    output_buffer_timeout_s: float = 0.25
    deflate_level: int = 6

    @classmethod
    def defaults(cls, options: NsqdOptions, remote_host: str) -> ClientSettings:
        return cls(
            client_id=remote_host,
            hostname=remote_host,
            heartbeat_interval_s=options.heartbeat_interval_s,
            msg_timeout_s=options.msg_timeout_s,
            output_buffer_timeout_s=options.output_buffer_timeout_s,
        )


class _DecodeError(Exception):
    pass


def decode_identify_body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body")
    return data


def wants_features(data: dict[str, Any]) -> bool:
    """The body's ``feature_negotiation`` as nsqd reads it (keys case-insensitive)."""
    return _go_fields(data).get("feature_negotiation") is True


def apply_identify(settings: ClientSettings, data: dict[str, Any], options: NsqdOptions) -> None:
    """Update ``settings`` from an IDENTIFY body, raising nsqd's E_BAD_BODY errors."""
    try:
        fields = _typed_fields(data)
    except _DecodeError:
        raise fatal("E_BAD_BODY", "IDENTIFY failed to decode JSON body") from None
    try:
        _apply(settings, fields, options)
    except ValueError as err:
        raise fatal("E_BAD_BODY", f"IDENTIFY {err}") from None


def identify_response(settings: ClientSettings, options: NsqdOptions) -> dict[str, Any]:
    """The feature-negotiation reply; TLS, deflate and snappy are never offered."""
    return {
        "max_rdy_count": options.max_rdy_count,
        "version": options.version,
        "max_msg_timeout": ms(options.max_msg_timeout_s),
        "msg_timeout": ms(settings.msg_timeout_s),
        "tls_v1": False,
        "deflate": False,
        # deflate is never on, so nsqd answers its default level (6) capped by the maximum
        "deflate_level": min(6, options.max_deflate_level),
        "max_deflate_level": options.max_deflate_level,
        "snappy": False,
        "sample_rate": settings.sample_rate,
        "auth_required": False,
        "output_buffer_size": settings.output_buffer_size,
        "output_buffer_timeout": ms(settings.output_buffer_timeout_s),
    }


_INT_FIELDS = (
    "heartbeat_interval",
    "output_buffer_size",
    "output_buffer_timeout",
    "deflate_level",
    "sample_rate",
    "msg_timeout",
)
_STR_FIELDS = ("client_id", "hostname", "user_agent", "topology_region", "topology_zone")
_BOOL_FIELDS = ("feature_negotiation", "tls_v1", "deflate", "snappy")
# identifyDataV2's Go types: sample_rate is an int32, the other numbers are int (int64)
_INT_BITS = {"sample_rate": 32}


def _go_fields(data: dict[str, Any]) -> dict[str, Any]:
    # encoding/json matches keys case-insensitively, an exact match winning
    folded: dict[str, Any] = {}
    for key, value in data.items():
        folded.setdefault(key.lower(), value)
    for key, value in data.items():
        if key == key.lower():
            folded[key] = value
    return folded


def _typed_fields(data: dict[str, Any]) -> dict[str, Any]:
    # Go's json.Unmarshal into typed struct fields: wrong types or out-of-range numbers fail,
    # null means the zero value
    data = _go_fields(data)
    fields: dict[str, Any] = {}
    for key in _INT_FIELDS:
        value = data.get(key)
        bits = _INT_BITS.get(key, 64)
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1)
        ):
            raise _DecodeError(key)
        fields[key] = value or 0
    for key in _STR_FIELDS:
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise _DecodeError(key)
        fields[key] = value or ""
    for key in _BOOL_FIELDS:
        if data.get(key) is not None and not isinstance(data[key], bool):
            raise _DecodeError(key)
    return fields


def _apply(settings: ClientSettings, fields: dict[str, Any], options: NsqdOptions) -> None:
    settings.client_id = fields["client_id"]
    settings.hostname = fields["hostname"]
    settings.user_agent = fields["user_agent"]
    _set_heartbeat(settings, fields["heartbeat_interval"], options)
    _set_output_buffer(
        settings, fields["output_buffer_size"], fields["output_buffer_timeout"], options
    )
    if not 0 <= fields["sample_rate"] <= 99:
        raise ValueError(f"sample rate ({fields['sample_rate']}) is invalid")
    settings.sample_rate = fields["sample_rate"]
    _set_msg_timeout(settings, fields["msg_timeout"], options)
    if fields["deflate_level"] > 0:
        settings.deflate_level = fields["deflate_level"]


def _set_heartbeat(settings: ClientSettings, value: int, options: NsqdOptions) -> None:
    if value == -1:
        settings.heartbeat_interval_s = 0.0
    elif 1000 <= value <= ms(options.max_heartbeat_interval_s):
        settings.heartbeat_interval_s = value / 1000
    elif value != 0:
        raise ValueError(f"heartbeat interval ({value}) is invalid")


def _set_output_buffer(
    settings: ClientSettings, size: int, timeout: int, options: NsqdOptions
) -> None:
    low, high = ms(options.min_output_buffer_timeout_s), ms(options.max_output_buffer_timeout_s)
    if timeout == -1:
        settings.output_buffer_timeout_s = 0.0
    elif low <= timeout <= high:
        settings.output_buffer_timeout_s = timeout / 1000
    elif timeout != 0:
        raise ValueError(f"output buffer timeout ({timeout}) is invalid")
    if size == -1:
        settings.output_buffer_size = 1
        settings.output_buffer_timeout_s = 0.0
    elif 64 <= size <= options.max_output_buffer_size:
        settings.output_buffer_size = size
    elif size != 0:
        raise ValueError(f"output buffer size ({size}) is invalid")


def _set_msg_timeout(settings: ClientSettings, value: int, options: NsqdOptions) -> None:
    if 1000 <= value <= ms(options.max_msg_timeout_s):
        settings.msg_timeout_s = value / 1000
    elif value != 0:
        raise ValueError(f"msg timeout ({value}) is invalid")
