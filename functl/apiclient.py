"""``functl deploy PATH --api URL`` and ``functl delete NAME --api URL``: the same one
function through the functions API of ``functl serve`` or of a ``functl dev`` session
(its dashboard address) instead of a cluster connection.

The API reads a ``source:`` path on its own machine: with ``functl dev`` that is this one;
a remote ``functl serve`` needs the path to exist where it runs.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

import click

from .errors import FunctlError, UsageError

TIMEOUT_S = 60.0
Echo = Callable[[str], None]


class Refused(UsageError):
    """The API answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def call(url: str, method: str, path: str, key: str | None, body: Any = None) -> Any:
    """One request to the API; UsageError with the API's reason when it refuses."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"} if data else {}
    if key:
        headers["X-Api-Key"] = key
    request = urllib.request.Request(url.rstrip("/") + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raise Refused(e.code, f"{method} {url}{path}: {e.code} {refusal(e.read())}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise FunctlError(
            f"cannot reach the functions API at {url}: {reason}\n"
            "    fix: start `functl dev` (its dashboard port, 8090 by default) or `functl serve`"
        ) from e


def refusal(raw: bytes) -> str:
    """The API's message and per-field issues, or the raw body."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:500]
    if not isinstance(doc, Mapping):
        return str(doc)[:500]
    lines = [str(doc.get("message") or doc.get("error") or doc)]
    for issue in doc.get("issues") or []:
        if isinstance(issue, Mapping):
            hint = f" ({issue['hint']})" if issue.get("hint") else ""
            lines.append(f"  {issue.get('path')}: {issue.get('problem')}{hint}")
    return "\n".join(lines)


def deploy(url: str, key: str | None, entry: Mapping[str, Any], echo: Echo) -> None:
    """Create the function, or update it when the API already has one of that name."""
    name = urllib.parse.quote(str(entry["name"]), safe="")
    try:
        out = call(url, "POST", "/api/v1/functions", key, dict(entry))
    except Refused as e:
        if e.status != 409 or "PUT" not in str(e):  # not "already deployed: update it"
            raise
        out = call(url, "PUT", f"/api/v1/functions/{name}", key, dict(entry))
    for line in out.get("changes") or []:
        echo(f"  {line}")
    echo(f"function {entry['name']} deployed through {url}")
    echo(f"  remove it: functl delete {entry['name']} --api {url}")


def delete(url: str, key: str | None, name: str, echo: Echo) -> None:
    quoted = urllib.parse.quote(name, safe="")
    out = call(url, "DELETE", f"/api/v1/functions/{quoted}", key)
    for line in (out or {}).get("changes") or []:
        echo(f"  {line}")
    echo(f"function {name} deleted through {url}")


def api_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--api-key",
        envvar="FUNCTL_API_KEY",
        default=None,
        metavar="KEY",
        help="API key of a write role for --api [env: FUNCTL_API_KEY]",
    )(f)
    return click.option(
        "--api",
        "api_url",
        envvar="FUNCTL_API_URL",
        default=None,
        metavar="URL",
        help="through the functions API of functl serve / functl dev (e.g. "
        "http://127.0.0.1:8090) instead of the cluster [env: FUNCTL_API_URL]",
    )(f)
