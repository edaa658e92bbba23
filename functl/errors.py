"""Errors functl raises on purpose, each with the exit code the CLI maps it to.

Exit codes (also in docs/functl.md):

====  ===============================================================
0     success
1     ``diff`` found differences; ``call`` got an error reply or timed out
2     usage error or invalid functions.yaml (file:line: field: problem)
3     no cluster / bus: configuration missing or the server is unreachable
4     forbidden: the cluster refused the credentials (HTTP 401/403)
5     the cluster rejected an object (HTTP 4xx/5xx; the server's message is shown)
====  ===============================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class FunctlError(Exception):
    """Root of every error functl raises on purpose; ``exit_code`` is what the CLI returns."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem in a functions.yaml: where it is, what is wrong, how to fix it."""

    file: str
    line: int  # 1-based; 0 when unknown
    path: str  # field path, e.g. ``functions[0].scaling.min``
    problem: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.path}:" if self.path else ""
        fix = f"\n    fix: {self.hint}" if self.hint else ""
        return f"{where}:{field} {self.problem}{fix}"


class SpecError(FunctlError):
    """functions.yaml is invalid; carries every issue found, sorted by line."""

    exit_code = 2

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.file, i.line, i.path))
        super().__init__("\n".join(str(i) for i in self.issues))


class UsageError(FunctlError):
    """A flag or argument has a wrong value; the message names it."""

    exit_code = 2


class ClusterUnreachable(FunctlError):
    """No Kubernetes configuration, or the API server cannot be reached."""

    exit_code = 3


class BusUnreachable(FunctlError):
    """The message bus cannot be reached or refused an operation."""

    exit_code = 3


class Forbidden(FunctlError):
    """The API server refused the request (401/403)."""

    exit_code = 4


class Rejected(FunctlError):
    """The API server rejected an object; the message carries the server's own words."""

    exit_code = 5


class CallFailed(FunctlError):
    """A ``functl call`` got an error reply or no reply in time."""

    exit_code = 1
