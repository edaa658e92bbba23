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
            main = _text(self.main, "KF_GATEWAY_ROUTES", missing_ok=False)
        return main, _text(self.functions, "KF_GATEWAY_FUNCTION_ROUTES", missing_ok=True)

    def table(self, texts: tuple[str, str]) -> RouteTable:
        """The gateway's table from the two files' text; ConfigError names the file."""
        main = loads(texts[0], self.main or "routes", self.default_timeout_s)
        extra = loads(texts[1], self.functions or "function routes", self.default_timeout_s)
        return combine(main, extra)


def _text(path: str, variable: str, *, missing_ok: bool) -> str:
    """A routes file's text ("" for no path, or a missing optional file: the functions'
    ConfigMap before any function is deployed); ConfigError names ``variable``."""
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        if missing_ok:
            return ""
        raise ConfigError(variable, f"cannot read {path!r}: {e.strerror}") from e
    except OSError as e:
        raise ConfigError(variable, f"cannot read {path!r}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(variable, f"{path!r} is not UTF-8 text (byte {e.start})") from e


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
        except Exception:  # whatever a file holds, the watch goes on with the old routes
            log.exception("routes not reloaded, the previous ones stay in use")
            continue
        log.info("routes reloaded: %d route(s)", len(new.routes))
