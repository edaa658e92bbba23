"""Load and validate a functions.yaml.

Public, stable API (the gateway reads routes through it)::

    from kubefuncs.functl import spec
    s = spec.load("functions.yaml")          # -> Spec; raises SpecError (exit code 2)
    for route in s.routes():
        ...

``Spec.routes()`` returns a list of plain dicts, one per HTTP route in file order, with
exactly these keys:

===============  ================================================================
``prefix``       str, URL path prefix starting with ``/`` (unique across the file)
``topic``        str, the topic of the function the route leads to
``methods``      list[str] of upper-case methods, or None for any method
``timeout_s``    float, how long the gateway waits for the reply (default: the
                 function's ``timeout_s``)
``async``        bool, True: answer 202 with a call id instead of waiting
``auth``         None or the route's ``auth:`` value as written (str/bool/dict)
``cors``         None or the route's ``cors:`` value as written (bool/dict)
``rate_limit``   None or the route's ``rate_limit:`` value as written (number/dict)
``idempotency``  None or the route's ``idempotency:`` value as written (bool/dict)
``middleware``   None or list[str] of ``module:function`` gateway middleware names
``cold_start_timeout_s``
                 None or float: how long the gateway waits when the function
                 runs no replica (docs/scaling.md)
===============  ================================================================

``SpecError.issues`` lists every problem found as ``Issue(file, line, path, problem, hint)``;
``str(SpecError)`` prints them one per line as ``file:line: field.path: problem``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import resolve, schema, yamlmarks
from .errors import Issue, SpecError
from .model import Bus, Function, Retry, Route, Scaling, Schedule, Spec

__all__ = [
    "Bus",
    "Function",
    "Issue",
    "Retry",
    "Route",
    "Scaling",
    "Schedule",
    "Spec",
    "SpecError",
    "load",
    "loads",
]


def load(path: str | Path) -> Spec:
    """Read, validate and resolve the functions.yaml at ``path``."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise SpecError([Issue(name, 0, "", "file not found", "pass --functions PATH")]) from e
    except OSError as e:
        raise SpecError([Issue(name, 0, "", f"cannot read the file: {e.strerror}")]) from e
    return loads(text, name)


def loads(text: str, file: str = "functions.yaml") -> Spec:
    """Validate and resolve functions.yaml text; ``file`` is used in error messages."""
    try:
        marked = yamlmarks.load(text)
    except yamlmarks.YamlProblem as e:
        raise SpecError(
            [Issue(file, e.line, "", e.problem, "check indentation and quoting")]
        ) from e
    if not isinstance(marked.data, dict):
        raise SpecError(
            [Issue(file, 1, "", f"expected a mapping with functions:, got {_kind(marked.data)}")]
        )
    issues = schema.check(marked, file)
    if issues:
        raise SpecError(issues)
    resolver = resolve.Resolver(marked, file)
    result = resolver.spec()
    if resolver.issues:
        raise SpecError(resolver.issues)
    return result


def _kind(value: Any) -> str:
    return "an empty document" if value is None else type(value).__name__
