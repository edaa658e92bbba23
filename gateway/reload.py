"""Routes that change while the gateway runs: the routes file plus the functions' routes
file (``KF_GATEWAY_FUNCTION_ROUTES``, the ``<release>-routes`` ConfigMap functl keeps up to
date), re-read every ``KF_GATEWAY_ROUTES_RELOAD_S`` when their contents change.

A changed file that does not parse (or asks for authentication the gateway has no
credentials for) is logged and the table in use stays: a bad edit never takes routes
away. A function route whose prefix the routes file already has is skipped with a warning:
the operator's file wins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kubefuncs.errors import ConfigError

from .routes import RouteTable, loads, table

log = logging.getLogger("kubefuncs.gateway.reload")


@dataclass(frozen=True, slots=True)
class RouteFiles:
    main: str  # the routes file ("" for none)
    functions: str  # the functions' routes file ("" for none; missing: no routes yet)
    default_timeout_s: float = 30.0

    def read(self) -> tuple[str, str]:
        """Both files' text; ConfigError when the routes file cannot be read."""
        main = ""
        if self.main:
            try:
                main = Path(self.main).read_text(encoding="utf-8")
            except OSError as e:
                raise ConfigError(
                    "KF_GATEWAY_ROUTES", f"cannot read {self.main!r}: {e.strerror}"
                ) from e
        return main, _optional(self.functions)

    def table(self, texts: tuple[str, str]) -> RouteTable:
        """The gateway's table from the two files' text; ConfigError names the file."""
        main = loads(texts[0], self.main or "routes", self.default_timeout_s)
        extra = loads(texts[1], self.functions or "function routes", self.default_timeout_s)
        return combine(main, extra)


def _optional(path: str) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:  # the ConfigMap is optional: no function deployed yet
        return ""
    except OSError as e:
        what = f"cannot read {path!r}: {e.strerror}"
        raise ConfigError("KF_GATEWAY_FUNCTION_ROUTES", what) from e


def combine(main: RouteTable, extra: RouteTable) -> RouteTable:
    """``main``'s routes and publish rules plus ``extra``'s routes on prefixes still free."""
    taken = {r.base for r in main.routes}
    added = []
    for r in extra.routes:
        if r.base in taken:
            log.warning("function route %s skipped: the routes file already routes it", r.prefix)
        else:
            added.append(r)
    return table([*main.routes, *added], main.publish)


async def watch(
    files: RouteFiles,
    interval_s: float,
    install: Callable[[RouteTable], None],
    seen: tuple[str, str],
) -> None:
    """Until cancelled: every ``interval_s``, when a file's text differs from what was
    last seen, build the table and ``install`` it (which may refuse with ConfigError)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            texts = files.read()
            if texts == seen:
                continue
            seen = texts
            new = files.table(texts)
            install(new)
        except ConfigError as e:
            log.error("routes not reloaded, the previous ones stay in use: %s", e)
            continue
        log.info("routes reloaded: %d route(s)", len(new.routes))
