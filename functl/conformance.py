"""``functl conformance``: drive a running function through the wire contract.

A thin shell over :mod:`kubefuncs.conformance`: one line per check, exit code 1 when a
check failed, 3 when the bus cannot be reached.
"""

from __future__ import annotations

import asyncio

import click
from kubefuncs.conformance import CHECKS, Options, Result, passed, run

from .errors import BusUnreachable

_NAMES = [name for name, _ in CHECKS]


@click.command()
@click.option("--bus", envvar="KF_BUS_URL", required=True, metavar="URL", help="bus URL")
@click.option(
    "--password", "--bus-password", envvar="KF_BUS_PASSWORD", default=None, help="bus password"
)
@click.option("--topic", required=True, help="the topic the function consumes")
@click.option("--channel", default=None, help="the function's channel [default: the topic]")
@click.option(
    "--visibility-timeout-s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="the function's visibility timeout [default: from the bus URL, else 30]",
)
@click.option(
    "--timeout-s", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True
)
@click.option("--calls", type=click.IntRange(min=1), default=20, show_default=True)
@click.option(
    "--dead-letter-timeout-s",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="how long a failing event may take through its retries",
)
@click.option("--check", "only", multiple=True, type=click.Choice(_NAMES), help="run only these")
def conformance(
    bus: str,
    password: str | None,
    topic: str,
    channel: str | None,
    visibility_timeout_s: float | None,
    timeout_s: float,
    calls: int,
    dead_letter_timeout_s: float,
    only: tuple[str, ...],
) -> None:
    """Check that the function serving TOPIC keeps the wire contract (docs/protocol.md).

    The function must follow the conformance conventions: {"conformance": "echo", "value": V}
    is answered with {"value": V, "attempt": N}; {"conformance": "fail"} fails.
    """
    opts = Options(
        bus, topic, channel or "", password, visibility_timeout_s, timeout_s, calls,
        dead_letter_timeout_s,
    )  # fmt: skip
    results = asyncio.run(run(opts, report=_echo, only=list(only) or None))
    if results and results[0].name == "bus":
        raise BusUnreachable(results[0].detail)
    if not passed(results):
        raise click.exceptions.Exit(1)


def _echo(result: Result) -> None:
    click.echo(result.line())
