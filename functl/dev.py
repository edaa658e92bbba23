"""``functl dev [functions.yaml]``: the gateway plus every function of the file, on this
machine, in one command.

Python functions (``handler:``) run in this process as :class:`~kubefuncs.runtime.Runtime`
objects on one event loop with the gateway app; by default they all share an embedded
in-process memory bus. Functions that run a ``command:`` (another language) and Node
``source:`` functions (the stock Node runtime on the source path: devnode.py) are separate
processes and need a real bus, so they start only with ``--bus valkey://...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import click
from aiohttp import web
from kubefuncs.__main__ import load as load_handler
from kubefuncs.errors import ConfigError
from kubefuncs.function import Function as Handler
from kubefuncs.function import function as declare
from kubefuncs.logs import configure
from kubefuncs.runtime import Runtime
from kubefuncs.settings import Settings
from kubefuncs.transport import Transport, from_url
from kubefuncs.wire import HttpResponse

from . import devdeps, devnode, quick, source
from . import spec as specs
from .actions import Flags
from .errors import UsageError
from .model import Function, Spec
from .workload import runtime_env

Echo = Callable[[str], None]
STOP_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class Command:
    """A function run as a subprocess: its argv and complete environment."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Plan:
    """What ``functl dev`` runs: a pure function of the spec and the flags."""

    bus_url: str
    addr: str
    handlers: tuple[tuple[Function, dict[str, str]], ...] = ()  # (function, KF_* env)
    commands: tuple[Command, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # (function name, why)
    topics: frozenset[str] = field(default_factory=frozenset)
    console_addr: str = ""  # the dashboard (functl/console); "" for none


def function_env(spec: Spec, fn: Function, bus_url: str) -> dict[str, str]:
    """The KF_* variables the runtime reads, as functl renders them, for a local bus;
    plus the function's own literal ``env:`` values. No health server: ports would clash."""
    env = {e["name"]: str(e["value"]) for e in runtime_env(spec, fn) if "value" in e}
    env.update({e["name"]: str(e["value"]) for e in fn.env if "value" in e})
    env.update({"KF_BUS_URL": bus_url, "KF_HEALTH_ADDR": "", "KF_LOG_FORMAT": "text"})
    return env


def plan(
    spec: Spec,
    bus_url: str,
    addr: str,
    base_env: Mapping[str, str],
    node_deps: Mapping[str, Path] | None = None,
) -> Plan:
    """Sort the functions into in-process handlers, subprocesses and ones that cannot run.
    ``node_deps``: the installed dependencies of Node source functions, by name."""
    memory = bus_url.startswith("memory:")
    handlers, commands, skipped = [], [], []
    for fn in spec.functions:
        env = function_env(spec, fn, bus_url)
        if fn.source is not None and fn.source.runtime == "node":
            why = devnode.why_not(fn, base_env, memory)
            if why is not None:
                skipped.append((fn.name, why))
                continue
            env.update(devnode.runtime_env(fn, base_env, (node_deps or {}).get(fn.name)))
            node_argv = ("node", str(devnode.runtime(base_env)))
            commands.append(Command(fn.name, node_argv, {**base_env, **env}))
        elif fn.handler is not None:
            handlers.append((fn, env))
        elif fn.command is None:
            skipped.append((fn.name, "has neither handler: nor command: to run locally"))
        elif memory:
            skipped.append(
                (
                    fn.name,
                    f"runs a command ({' '.join(fn.command)}) and needs a real bus: "
                    "start functl dev with --bus valkey://localhost:6379/0",
                )
            )
        else:
            argv = (*fn.command, *fn.args)
            commands.append(Command(fn.name, argv, {**base_env, **env}))
    topics = frozenset(fn.topic for fn in spec.functions)
    return Plan(bus_url, addr, tuple(handlers), tuple(commands), tuple(skipped), topics)


def stand_in(fn: Function, why: str) -> Handler:
    """What serves a function that cannot run here, on the private memory bus: callers get
    503 with the reason at once instead of waiting for the route's timeout."""
    message = f"{fn.name} is not running in this functl dev session: it {why}"
    body = json.dumps({"error": "not_running", "message": message}).encode() + b"\n"

    async def not_running(request: object) -> HttpResponse:
        return HttpResponse(503, {"content-type": "application/json"}, body)

    return declare(fn.topic, name=fn.name, channel=fn.channel, max_attempts=1)(not_running)


def load_function(fn: Function, env: Mapping[str, str]) -> Handler:
    """Import a handler and give it the settings functl would deploy it with."""
    assert fn.handler is not None
    loaded = load_handler(fn.handler)
    return loaded.with_settings(Settings.from_env(env, loaded.settings))


async def run(spec: Spec, dev_plan: Plan, echo: Echo, stop: asyncio.Event) -> None:
    """Run the plan until ``stop`` is set."""
    from kubefuncs.gateway import GatewaySettings, Publish, create_app, from_dicts

    transport = from_url(dev_plan.bus_url)
    await transport.connect()
    settings = replace(
        GatewaySettings.from_env(os.environ),
        bus_url=dev_plan.bus_url,
        addr=dev_plan.addr,
        access_log=True,
        routes_file="",  # the routes are the spec's (and the API's: console/devcatalog.py)
        function_routes_file="",
    )
    table = from_dicts(
        spec.routes(), settings.timeout_s, Publish(dev_plan.topics, "none"), file=spec.file
    )
    runtimes = [
        Runtime(load_function(fn, env), transport=transport) for fn, env in dev_plan.handlers
    ]
    if dev_plan.bus_url.startswith("memory:"):  # a private bus: nobody else serves these
        by_name = {fn.name: fn for fn in spec.functions}
        runtimes += [
            Runtime(stand_in(by_name[name], why), transport=transport)
            for name, why in dev_plan.skipped
        ]
    app = create_app(settings, table, transport=transport)
    async with (
        _console(spec, dev_plan, transport, runtimes, echo, app),
        _processes(dev_plan.commands, echo) as procs,
    ):
        tasks = [asyncio.create_task(r.run()) for r in runtimes]
        try:
            await _serve(app, dev_plan.addr, stop, procs)
            for c, p in zip(dev_plan.commands, procs, strict=True):
                if p.returncode is not None:
                    echo(f"functl dev: {c.name} exited with code {p.returncode}; stopping")
        finally:
            for r in runtimes:
                r.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            await transport.close()


async def _serve(
    app: web.Application, addr: str, stop: asyncio.Event, procs: list[asyncio.subprocess.Process]
) -> None:
    """Serve until ``stop`` is set or a function subprocess exits."""
    from kubefuncs.gateway.app import GATEWAY
    from kubefuncs.gateway.frontdoor import FrontDoorRunner

    runner = FrontDoorRunner(
        app,
        on_refused=app[GATEWAY].metrics.refused,
        access_log=None,
        shutdown_timeout=STOP_GRACE_S,
    )
    await runner.setup()
    host, port = addr.rsplit(":", 1)
    try:
        await web.TCPSite(runner, host or None, int(port)).start()
        waiters: list[asyncio.Task[object]] = [asyncio.create_task(stop.wait())]
        waiters += [asyncio.create_task(p.wait()) for p in procs]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _console(
    spec: Spec,
    dev_plan: Plan,
    transport: Transport,
    runtimes: list[Runtime],
    echo: Echo,
    app: web.Application,
) -> AsyncIterator[None]:
    """The dashboard (functl/console) over the local functions, unless its port is taken;
    functions deployed through it get routes on the gateway ``app``."""
    from kubefuncs.gateway.app import GATEWAY

    from .console.local import serving

    registries = {r.fn.name: r.metrics.registry for r in runtimes}
    addr, bus = dev_plan.console_addr, dev_plan.bus_url
    async with serving(spec.file, transport, registries, addr, bus, echo, app[GATEWAY]):
        yield


@contextlib.asynccontextmanager
async def _processes(
    commands: tuple[Command, ...], echo: Echo
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    procs: list[asyncio.subprocess.Process] = []
    try:
        for c in commands:
            procs.append(await asyncio.create_subprocess_exec(*c.argv, env=dict(c.env)))
            echo(f"  started {c.name}: {' '.join(c.argv)} (pid {procs[-1].pid})")
        yield procs
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                await asyncio.wait_for(p.wait(), STOP_GRACE_S)
            except TimeoutError:
                p.kill()
                await p.wait()


def banner(spec: Spec, dev_plan: Plan) -> list[str]:
    lines = [f"functl dev: gateway on http://{dev_plan.addr} (bus {dev_plan.bus_url})"]
    if dev_plan.console_addr:
        lines.append(f"functl dev: dashboard on http://{dev_plan.console_addr}/")
    for r in spec.routes():
        methods = ",".join(r["methods"] or ["*"])
        lines.append(f"  route {methods} {r['prefix']} -> {r['topic']}")
    lines += [f"  function {fn.name} ({fn.handler}) on {fn.topic}" for fn, _ in dev_plan.handlers]
    lines += [f"  skipped {name}: {why}" for name, why in dev_plan.skipped]
    return lines


def load_spec(path: str, bus_url: str, given: quick.Given | None = None) -> Spec:
    """A functions.yaml, or one source file or directory (as ``functl deploy PATH``)."""
    if quick.is_source_path(path):
        return quick.spec_for(path, replace(given or quick.Given(), bus_url=bus_url or "memory://"))
    return specs.load(path)


def import_folders(spec: Spec, path: str) -> list[str]:
    """Where handlers are imported from: source functions' own folders (used directly,
    no ConfigMap), the file's folder, the working directory."""
    sources = [
        str(source.import_root(Path(fn.source.path)))
        for fn in spec.functions
        if fn.source is not None
    ]
    return [*sources, str(Path(path).resolve().parent), os.getcwd()]


def dev_main(
    path: str,
    bus_url: str,
    host: str,
    port: int,
    echo: Echo,
    console_port: int = 0,
    given: quick.Given | None = None,
) -> None:
    """Load, plan and run until Ctrl-C / SIGTERM."""
    spec = load_spec(path, bus_url, given)
    for folder in reversed(import_folders(spec, path)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    node_deps = {}
    for fn in spec.functions:
        deps = devdeps.install(fn, os.environ)
        if deps is not None:
            echo(f"functl dev: {fn.name}: requirements from {deps}")
            sys.path.insert(1, str(deps))
        if not bus_url.startswith("memory:") and (found := devnode.install(fn, os.environ)):
            echo(f"functl dev: {fn.name}: package.json dependencies from {found}")
            node_deps[fn.name] = found
    dev_plan = plan(spec, bus_url, f"{host}:{port}", os.environ, node_deps)
    if console_port:
        dev_plan = replace(dev_plan, console_addr=f"{host}:{console_port}")
    for line in banner(spec, dev_plan):
        echo(line)
    try:
        asyncio.run(_main(spec, dev_plan, echo))
    except ConfigError as e:
        hint = (
            " (run functl dev where the handler modules are importable)"
            if "import" in str(e)
            else ""
        )
        raise UsageError(f"{e}{hint}") from e


async def _main(spec: Spec, dev_plan: Plan, echo: Echo) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run(spec, dev_plan, echo, stop)


@click.command("dev")
@click.argument("functions_file", required=False, metavar="[FUNCTIONS.yaml | PATH]")
@click.option(
    "-f", "--functions", default=None, metavar="PATH", help="functions.yaml, as the argument"
)
@click.option(
    "--bus",
    default="memory://",
    show_default=True,
    metavar="URL",
    help="bus to run on: the embedded in-process bus, or valkey://host:6379/0",
)
@click.option("--port", default=8080, show_default=True, type=int, help="gateway port")
@click.option("--host", default="127.0.0.1", show_default=True, help="gateway address")
@click.option(
    "--console-port",
    default=8090,
    show_default=True,
    type=int,
    help="dashboard port (functl serve over the local functions); 0: none",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
)
@click.option("--topic", default=None, help="with a source PATH: the topic to consume")
@click.option("--route", "routes", multiple=True, help="with a source PATH: HTTP route")
@click.pass_context
def dev(
    ctx: click.Context,
    functions_file: str | None,
    functions: str | None,
    bus: str,
    port: int,
    host: str,
    console_port: int,
    log_level: str,
    topic: str | None,
    routes: tuple[str, ...],
) -> None:
    """Run the gateway and every function of FUNCTIONS.yaml on this machine, or the one
    function of a source PATH (a .py file or a directory, as `functl deploy PATH`)."""
    configure(log_level, "text")
    flags = ctx.find_object(Flags) or Flags()
    given = quick.Given(topic=topic, routes=quick.split_list(routes))
    path = functions_file or functions or flags.functions
    dev_main(path, bus, host, port, click.echo, console_port, given)
