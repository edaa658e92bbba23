"""The routes of functions deployed into ``functl dev`` through the API: checked against
the dev gateway's table, added to it when the function starts, removed on delete (the
table is swapped whole: a request matches the old or the new one, never half of each)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .. import devdeps, source
from ..model import Function
from ..spec import Spec
from .catalog import Conflict

if TYPE_CHECKING:
    from kubefuncs.gateway.proxy import Gateway
    from kubefuncs.gateway.routes import Route


def of(
    s: Spec, gateway: Gateway | None, name: str, routed: Mapping[str, frozenset[str]]
) -> list[Route]:
    """The routes of the one function of ``s``; Conflict when another function of the
    session (or of the file) routes one of their paths."""
    from kubefuncs.gateway.routes import from_dicts

    if gateway is None:
        return []
    new = from_dicts(s.routes(), gateway.settings.timeout_s, file="request").routes
    own = routed.get(name, frozenset())
    taken = {r.base: r.topic for r in gateway.table.routes if r.base not in own}
    for r in new:
        if r.base in taken:
            raise Conflict(
                f"route {r.prefix} already leads to topic {taken[r.base]} in this functl dev "
                "session: pick another path, or delete that function first"
            )
    return list(new)


def add(gateway: Gateway, routes: list[Route], topic: str) -> frozenset[str]:
    """Serve ``routes`` (and let ``POST /topics/{topic}`` reach the function); their bases."""
    from kubefuncs.gateway.routes import table

    current = gateway.table
    publish = replace(current.publish, topics=current.publish.topics | {topic})
    gateway.table = table([*current.routes, *routes], publish)
    return frozenset(r.base for r in routes)


def remove(gateway: Gateway, bases: frozenset[str]) -> None:
    from kubefuncs.gateway.routes import table

    current = gateway.table
    gateway.table = table([r for r in current.routes if r.base not in bases], current.publish)


def how_to_call(gateway: Gateway | None, routes: list[Route]) -> list[str]:
    if gateway is None:
        return []
    addr = gateway.settings.addr
    return [
        f"route {r.allow_header() if r.methods else '*'} {r.prefix} -> topic {r.topic}: "
        f"curl -X {sorted(r.methods or {'POST'})[0]} http://{addr}{r.prefix} -d 'hello'"
        for r in routes
    ]


def prepare_source(fn: Function) -> None:
    """Make a source function importable here: its folder on the import path and its
    requirements installed into the dev cache (as functl dev does at start)."""
    if fn.source is None:
        return
    folder = str(source.import_root(Path(fn.source.path)))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    deps = devdeps.install(fn, os.environ)
    if deps is not None and str(deps) not in sys.path:
        sys.path.insert(1, str(deps))
