"""``python -m kubefuncs module:function``: run one function until SIGTERM."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping

from . import tracing
from .errors import ConfigError, LifespanFailed, LoopFailed
from .function import Function, as_function
from .health import health_app, serve
from .logs import configure
from .runtime import Runtime
from .settings import Settings

USAGE = "usage: python -m kubefuncs MODULE:FUNCTION   (or set KF_FUNCTION)"
INSTALL_TIME_FILE = ".kf-install-s"  # written into KF_DEPS_DIR by functl's install step


def import_path(env: Mapping[str, str]) -> list[str]:
    """Folders to import from, first first: a source function's code (``KF_SOURCE_DIR``,
    the ConfigMap functl mounts), its installed dependencies (``KF_DEPS_DIR``), the
    working directory."""
    return [d for d in (env.get("KF_SOURCE_DIR"), env.get("KF_DEPS_DIR")) if d] + [os.getcwd()]


def install_s(env: Mapping[str, str]) -> float:
    """Seconds the init container spent installing the dependencies (0: none, or unknown)."""
    deps = env.get("KF_DEPS_DIR")
    if not deps:
        return 0.0
    try:
        with open(os.path.join(deps, INSTALL_TIME_FILE), encoding="utf-8") as f:
            value = float(f.read().strip())
    except (OSError, ValueError):
        return 0.0
    return value if 0 <= value < 86400 else 0.0


def load(target: str) -> Function:
    """Import ``module:attr`` and return it as a Function."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError("function", f"must look like module:function, got {target!r}")
    for folder in reversed(import_path(os.environ)):
        if folder not in sys.path[:3]:
            sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError("function", f"cannot import module {module_name!r}: {e}") from e
    try:
        return as_function(getattr(module, attr), attr)
    except AttributeError:
        raise ConfigError("function", f"module {module_name!r} has no {attr!r}") from None
    except TypeError as e:
        raise ConfigError("function", str(e)) from e


def prepare(argv: list[str], env: Mapping[str, str]) -> Function:
    target = argv[0] if argv else env.get("KF_FUNCTION", "")
    if not target:
        raise ConfigError("function", f"is missing. {USAGE}")
    fn = load(target)
    return fn.with_settings(Settings.from_env(env, fn.settings))


async def serve_function(fn: Function, started_at: float) -> None:
    tracer = tracing.configure(fn.name)  # None unless OTEL_* ask for traces
    try:
        await _serve(fn, started_at)
    finally:
        if tracer is not None:
            tracer.shutdown()  # export what is buffered


async def _serve(fn: Function, started_at: float) -> None:
    installed_s = install_s(os.environ)
    # the cold start of a source function includes installing its dependencies
    runtime = Runtime(fn, started_at=started_at - installed_s)
    runtime.metrics.install.set(installed_s)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.stop)
    app = health_app(lambda: runtime.ready, runtime.metrics)  # no registry: made by a scrape
    async with serve(app, fn.settings.health_addr):
        await runtime.run()


def main(argv: list[str] | None = None) -> int:
    started_at = time.monotonic()
    try:
        fn = prepare(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as e:
        print(f"kubefuncs: {e}", file=sys.stderr)
        return 2
    configure(fn.settings.log_level, fn.settings.log_format)
    logging.getLogger("kubefuncs").info(
        "starting %s on %s", fn.name, fn.settings.bus_url.split("@")[-1]
    )
    try:
        asyncio.run(serve_function(fn, started_at))
    except ConfigError as e:  # found while starting: a bus URL option, say
        print(f"kubefuncs: {e}", file=sys.stderr)
        return 2
    except (LoopFailed, LifespanFailed) as e:  # logged with its cause when it happened
        print(f"kubefuncs: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
