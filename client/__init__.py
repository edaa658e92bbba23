"""kubefuncs: functions as long-running consumers of a message bus.

A function is a plain handler; the runtime (``python -m kubefuncs module:function``) feeds
it messages from one topic and sends its return value to the caller when one waits.
"""

from .client import Client
from .errors import (
    CallTimeout,
    ConfigError,
    DecodeError,
    KubefuncsError,
    LifespanFailed,
    Reject,
    RemoteError,
    Retry,
    TransportError,
)
from .function import Context, Function, Service, function
from .settings import Settings
from .wire import Envelope, ErrorInfo, HttpRequest, HttpResponse

__all__ = [
    "CallTimeout",
    "Client",
    "ConfigError",
    "Context",
    "DecodeError",
    "Envelope",
    "ErrorInfo",
    "Function",
    "HttpRequest",
    "HttpResponse",
    "KubefuncsError",
    "LifespanFailed",
    "Reject",
    "RemoteError",
    "Retry",
    "Service",
    "Settings",
    "TransportError",
    "function",
]
