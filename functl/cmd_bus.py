"""Commands that talk to the functions over the bus: publish, call, status, dlq."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from . import actions, busops
from .actions import Flags
from .errors import UsageError
from .options import bus_options, cluster_options, flags, output_option, release_options
from .output import render as show
from .output import to_json, to_yaml


def payload(data: str | None, data_file: str | None, text: str | None) -> Any:
    """The payload from exactly one of --data (JSON), --data-file (JSON, '-' = stdin), --text."""
    given = [x for x in (data, data_file, text) if x is not None]
    if len(given) > 1:
        raise UsageError("pass only one of --data, --data-file and --text")
    if text is not None:
        return text
    if data_file is not None:
        data = sys.stdin.read() if data_file == "-" else _read(data_file)
    if data is None:
        return None
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        raise UsageError(
            f"--data is not valid JSON ({e.msg} at character {e.pos}): {data[:60]!r}"
        ) from e


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"--data-file {path}: {e.strerror}") from e


def headers(items: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--header {item!r}: expected NAME=VALUE")
        out[name] = value
    return out


def bus_of(f: Flags) -> str:
    """--bus, else bus.url of the functions file."""
    return f.bus or actions.bus_url(f, actions.load(f))


payload_options = [
    click.option("--data", default=None, metavar="JSON", help="payload as JSON"),
    click.option(
        "--data-file", default=None, metavar="PATH", help="payload as JSON from a file ('-': stdin)"
    ),
    click.option("--text", default=None, help="payload as a plain string"),
]


def _payload_options(f: Any) -> Any:
    for option in reversed(payload_options):
        f = option(f)
    return f


@click.command()
@click.argument("topic")
@_payload_options
@click.option(
    "-H",
    "--header",
    "header",
    multiple=True,
    metavar="NAME=VALUE",
    help="message header (repeatable)",
)
@click.option(
    "--delay-s", type=click.FloatRange(min=0), default=0.0, help="deliver after this many seconds"
)
@release_options
@bus_options
@click.pass_context
def publish(
    ctx: click.Context,
    /,
    topic: str,
    data: str | None,
    data_file: str | None,
    text: str | None,
    header: tuple[str, ...],
    delay_s: float,
    **given: Any,
) -> None:
    """Publish one event to TOPIC; prints the message id."""
    f = flags(ctx, **given)
    body = payload(data, data_file, text)
    msg_id = asyncio.run(
        busops.publish(
            bus_of(f), f.bus_password, topic, body, headers=headers(header), delay_s=delay_s
        )
    )
    click.echo(msg_id)


@click.command()
@click.argument("topic")
@_payload_options
@click.option(
    "--timeout-s", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True
)
@release_options
@bus_options
@output_option("json", ("json", "yaml"))
@click.pass_context
def call(
    ctx: click.Context,
    /,
    topic: str,
    data: str | None,
    data_file: str | None,
    text: str | None,
    timeout_s: float,
    output: str,
    **given: Any,
) -> None:
    """Send a request to TOPIC and print the reply. Exit code 1 on an error reply or timeout."""
    f = flags(ctx, **given)
    reply = asyncio.run(
        busops.call(
            bus_of(f), f.bus_password, topic, payload(data, data_file, text), timeout_s=timeout_s
        )
    )
    value = busops.plain(reply)
    click.echo(to_json(value) if output == "json" else to_yaml(value), nl=False)


def channel_pair(text: str) -> tuple[str, str]:
    """``topic/channel`` (or ``topic``: the channel is the topic) as a pair."""
    topic, _, channel = text.partition("/")
    if not topic or "/" in channel:
        raise UsageError(f"{text!r}: expected TOPIC/CHANNEL, e.g. orders/store")
    return topic, channel or topic


@click.command("prepare-bus")
@click.argument("pairs", nargs=-1, metavar="[TOPIC/CHANNEL]...")
@release_options
@bus_options
@click.pass_context
def prepare_bus(ctx: click.Context, /, pairs: tuple[str, ...], **given: Any) -> None:
    """Create topics and channels on the bus (what apply does first): those given, else
    every function's of the file. The in-cluster bus preparation Job runs this."""
    actions.prepare_channels(flags(ctx, **given), [channel_pair(p) for p in pairs], click.echo)


@click.command()
@release_options
@cluster_options
@bus_options
@output_option()
@click.pass_context
def status(ctx: click.Context, /, output: str, **given: Any) -> None:
    """Replicas and queue figures (depth or lag, in flight, delayed, dead) per function."""
    rows = actions.status(flags(ctx, **given), lambda m: click.echo(m, err=True))
    headers_ = ("NAME", "TOPIC", "CHANNEL", "READY", "DEPTH", "IN-FLIGHT", "DELAYED", "DEAD")
    cells = [
        (
            r["name"],
            r["topic"],
            r["channel"],
            "-" if r["replicas"] is None else f"{r['ready']}/{r['replicas']}",
            r["depth"],
            r["in_flight"],
            r["delayed"],
            r["dead"],
        )
        for r in rows
    ]
    click.echo(show(rows, output, headers_, cells), nl=False)


@click.group()
def dlq() -> None:
    """Dead letters: list, show, replay, purge."""


consumer_options = [
    click.argument("function", required=False),
    click.option("--topic", default=None, help="use this topic instead of a FUNCTION of the file"),
    click.option("--channel", default=None, help="with --topic: the channel [default: the topic]"),
]


def _consumer_options(f: Any) -> Any:
    for option in reversed(consumer_options):
        f = option(f)
    return f


def _selection_options(f: Any) -> Any:
    """FUNCTION (or --topic/--channel), then --id (repeatable) or --all."""
    f = click.option("--all", "all_", is_flag=True, help="every dead letter of the channel")(f)
    f = click.option("--id", "ids", multiple=True, help="dead letter id (repeatable)")(f)
    return _consumer_options(f)


def _dead_letters_of(
    f: Flags, function: str | None, topic: str | None, channel: str | None
) -> tuple[str, str, str]:
    """(bus URL, topic, channel) of the dead letters a dlq command works on."""
    t, c, s = actions.consumer(f, function, topic, channel)
    return f.bus or actions.bus_url(f, s), t, c


@dlq.command("list")
@release_options
@bus_options
@output_option()
@click.pass_context
def dlq_list(ctx: click.Context, /, output: str, **given: Any) -> None:
    """Dead-letter counts of every function of the file."""
    rows = [
        {"name": r["name"], "topic": r["topic"], "channel": r["channel"], "dead": r["dead"]}
        for r in _bus_status(flags(ctx, **given))
    ]
    cells = [(r["name"], r["topic"], r["channel"], r["dead"]) for r in rows]
    click.echo(show(rows, output, ("NAME", "TOPIC", "CHANNEL", "DEAD"), cells), nl=False)


def _bus_status(f: Flags) -> list[dict[str, Any]]:
    s = actions.load(f)
    pairs = [(fn.topic, fn.channel) for fn in s.functions]
    stats = asyncio.run(busops.stats(actions.bus_url(f, s), f.bus_password, pairs))
    return [
        {"name": fn.name, "topic": fn.topic, "channel": fn.channel, "dead": st.dead}
        for fn, st in zip(s.functions, stats, strict=True)
    ]


@dlq.command("show")
@_consumer_options
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@release_options
@bus_options
@output_option()
@click.pass_context
def dlq_show(
    ctx: click.Context,
    /,
    function: str | None,
    topic: str | None,
    channel: str | None,
    limit: int,
    output: str,
    **given: Any,
) -> None:
    """The oldest dead letters of FUNCTION, with the reason and the decoded payload."""
    f = flags(ctx, **given)
    bus, t, c = _dead_letters_of(f, function, topic, channel)
    letters = asyncio.run(busops.dead_letters(bus, f.bus_password, t, c, limit))
    rows = [busops.describe_dead(x) for x in letters]
    cells = [
        (r["id"], r["time"], r["attempt"], r["reason"], json.dumps(r.get("payload"))[:60])
        for r in rows
    ]
    click.echo(show(rows, output, ("ID", "TIME", "ATTEMPT", "REASON", "PAYLOAD"), cells), nl=False)


def _ids(ids: tuple[str, ...], all_: bool, verb: str) -> list[str] | None:
    if bool(ids) == all_:
        raise UsageError(f"{verb}: pass --id ID (repeatable) or --all")
    return None if all_ else list(ids)


@dlq.command("replay")
@_selection_options
@release_options
@bus_options
@click.pass_context
def dlq_replay(
    ctx: click.Context,
    /,
    function: str | None,
    topic: str | None,
    channel: str | None,
    ids: tuple[str, ...],
    all_: bool,
    **given: Any,
) -> None:
    """Put dead letters back on the channel with their attempts reset."""
    f = flags(ctx, **given)
    selected = _ids(ids, all_, "replay")
    bus, t, c = _dead_letters_of(f, function, topic, channel)
    n = asyncio.run(busops.replay(bus, f.bus_password, t, c, selected))
    click.echo(f"replayed {n} dead letter(s) to {t}/{c}")


@dlq.command("purge")
@_selection_options
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@release_options
@bus_options
@click.pass_context
def dlq_purge(
    ctx: click.Context,
    /,
    function: str | None,
    topic: str | None,
    channel: str | None,
    ids: tuple[str, ...],
    all_: bool,
    yes: bool,
    **given: Any,
) -> None:
    """Delete dead letters for good."""
    f = flags(ctx, **given)
    selected = _ids(ids, all_, "purge")
    bus, t, c = _dead_letters_of(f, function, topic, channel)
    if not yes:
        click.confirm(
            f"delete {'all' if all_ else len(ids)} dead letter(s) of {t}/{c}?", abort=True
        )
    n = asyncio.run(busops.purge(bus, f.bus_password, t, c, selected))
    click.echo(f"purged {n} dead letter(s) of {t}/{c}")
