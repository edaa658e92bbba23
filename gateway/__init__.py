"""kubefuncs HTTP gateway: turns HTTP requests into topic messages and waits for replies.

``create_app(GatewaySettings.from_env(env), routes.load(path))`` builds the aiohttp app;
``kubefuncs-gateway`` (``python -m kubefuncs.gateway``) serves it. See docs/gateway.md.
"""

from .app import create_app
from .routes import Publish, Route, RouteTable, from_dicts, load, loads
from .settings import GatewaySettings

__all__ = [
    "GatewaySettings",
    "Publish",
    "Route",
    "RouteTable",
    "create_app",
    "from_dicts",
    "load",
    "loads",
]
