"""The catalog of ``functl dev``: the functions of the file (read-only: edit the file and
restart), plus functions deployed through the API (``functl deploy PATH --api URL``), each
started as an in-process runtime on the dev bus (a ``handler:`` function, a Python
``source:`` one included) and stopped again by delete. A deployed function's routes join
the dev gateway's table at once and leave it on delete.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import yaml

from .. import spec
from ..errors import UsageError
from . import devroutes
from .catalog import Conflict, FileCatalog, FunctionView, NotFound, ReadOnly, summary
from .devroutes import prepare_source

if TYPE_CHECKING:
    from kubefuncs.gateway.proxy import Gateway
    from kubefuncs.runtime import Runtime
    from kubefuncs.transport import Transport

START_TIMEOUT_S = 10.0


class DevCatalog(FileCatalog):
    writable = True
    mode = "dev"

    def __init__(
        self,
        path: str,
        transport: Transport,
        bus_url: str,
        metrics: MutableMapping[str, Callable[[], str]],
        loop: asyncio.AbstractEventLoop,
        gateway: Gateway | None = None,
    ) -> None:
        super().__init__(path)
        self.transport, self.bus_url, self.metrics, self.loop = transport, bus_url, metrics, loop
        self.gateway = gateway  # the dev gateway, whose routes deploys add to
        self.added: dict[str, tuple[FunctionView, Runtime, asyncio.Task[None]]] = {}
        self.routed: dict[str, frozenset[str]] = {}  # function -> its route bases

    def functions(self) -> list[FunctionView]:
        return super().functions() + [v for v, _, _ in self.added.values()]

    def deploy(self, body: Mapping[str, Any], *, update: bool) -> tuple[FunctionView, list[str]]:
        base = self._base()
        document = {**base, "functions": [dict(body)]}
        s = spec.loads(yaml.safe_dump(document, sort_keys=False), "request")
        fn = s.functions[0]
        if fn.name in {v.name for v in super().functions()}:
            raise ReadOnly(f"{fn.name} is in {self.path}: edit the file and restart functl dev")
        if update != (fn.name in self.added):
            if update:
                raise NotFound(f"no function {fn.name!r} was deployed in this functl dev session")
            raise Conflict(f"{fn.name!r} is already running: update it with PUT")
        if fn.handler is None or (fn.source is not None and fn.source.runtime == "node"):
            raise UsageError(
                f"functions.{fn.name}: functl dev runs only Python handler: functions deployed "
                "through the API; put a Node function in the file and restart functl dev"
            )
        routes = devroutes.of(s, self.gateway, fn.name, self.routed)  # Conflict before a change
        prepare_source(fn)
        changes = self._run(self._stop(fn.name)) if update else []
        view = FunctionView(fn.name, fn.topic, fn.channel, summary(fn), dict(body), origin="dev")
        self._run(self._start(view, s, fn))
        if self.gateway is not None:
            self.routed[fn.name] = devroutes.add(self.gateway, routes, fn.topic)
        lines = devroutes.how_to_call(self.gateway, routes)
        return view, [*changes, f"{fn.name} started in this process", *lines]

    def _base(self) -> dict[str, Any]:
        """The file's bus, image and defaults (a session on one source file has none)."""
        if not os.path.isfile(self.path):
            return {"version": 1, "bus": {"url": self.bus_url}}
        with open(self.path, encoding="utf-8") as f:
            return {k: v for k, v in (yaml.safe_load(f) or {}).items() if k != "functions"}

    def delete(self, name: str) -> list[str]:
        if name not in self.added:
            if name in {v.name for v in super().functions()}:
                raise ReadOnly(f"{name} is in {self.path}: edit the file and restart functl dev")
            raise NotFound(f"no function {name!r} was deployed in this functl dev session")
        stopped: list[str] = self._run(self._stop(name))
        return stopped

    def _run(self, coro: Any) -> Any:
        """Run on the dev loop (the API calls the catalog from a worker thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(START_TIMEOUT_S)

    async def _start(self, view: FunctionView, s: spec.Spec, fn: Any) -> None:
        from kubefuncs.runtime import Runtime
        from prometheus_client import generate_latest

        from ..dev import function_env, load_function

        runtime = Runtime(
            load_function(fn, function_env(s, fn, self.bus_url)), transport=self.transport
        )
        task = asyncio.create_task(runtime.run())
        self.added[fn.name] = (view, runtime, task)
        self.metrics[fn.name] = lambda: generate_latest(runtime.metrics.registry).decode()

    async def _stop(self, name: str) -> list[str]:
        if self.gateway is not None:
            devroutes.remove(self.gateway, self.routed.pop(name, frozenset()))
        _, runtime, task = self.added.pop(name)
        self.metrics.pop(name, None)
        runtime.stop()
        await asyncio.gather(task, return_exceptions=True)
        return [f"{name} stopped"]

    async def close(self) -> None:
        for name in list(self.added):
            await self._stop(name)
