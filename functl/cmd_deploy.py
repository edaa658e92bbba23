"""``functl deploy PATH``: a source file or directory to a running function in one command,
and what ``functl delete NAME`` does for one function."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from . import actions, apiclient, deploy, quick, render
from .actions import Echo, Flags
from .apiclient import api_options
from .options import (
    apply_options,
    bus_options,
    cluster_options,
    flags,
    network_option,
    release_options,
)


def deploy_source(
    f: Flags, given: quick.Given, echo: Echo, cluster: deploy.ClusterLike | None = None
) -> list[deploy.Change]:
    """Render the one function of ``PATH``, prepare the bus, apply it, prune only its own
    leftovers (an old source ConfigMap): the release's other functions stay."""
    s = quick.spec_for(f.code or "", given, f.functions)
    t = actions.target(f)
    objects = render.render(s, t)
    for line in render.warnings(s, t):
        echo(line)
    cluster = cluster or actions.connect(f)
    if not f.dry_run and not f.skip_bus:
        actions.prepare_bus(f, s, cluster, echo)
    changes = deploy.apply_all(
        cluster,
        objects,
        release=f.release,
        prune=f.prune,
        dry_run=f.dry_run,
        force=f.force_conflicts,
        progress=lambda c: echo(str(c)),
        function=s.functions[0].name,
    )
    for line in quick.how_to_call(s, f.namespace, f.release):
        echo(line)
    return changes


def delete_function(
    f: Flags, name: str, echo: Echo, cluster: deploy.ClusterLike | None = None
) -> list[deploy.Change]:
    """Delete the objects of one function of the release (the bus keeps its data)."""
    changes = deploy.delete_all(
        cluster or actions.connect(f),
        release=f.release,
        dry_run=f.dry_run,
        progress=lambda c: echo(str(c)),
        function=name,
    )
    what = f"function {name} of release {f.release} in namespace {f.namespace}"
    echo(f"{what}: {deploy.summary(changes) if changes else 'not found'}")
    return changes


@click.command("deploy")
@click.argument("path", metavar="PATH")
@click.option("--name", default=None, help="function name [default: declared, else file name]")
@click.option("--topic", default=None, help="topic to consume [default: declared, else name]")
@click.option("--route", "routes", multiple=True, metavar="PATH", help="HTTP route (repeatable)")
@click.option(
    "--requirement",
    "requirements",
    multiple=True,
    metavar="SPEC",
    help="Python dependency installed before start (repeatable)",
)
@click.option("--handler", default=None, help="attribute (or module:function) to run")
@click.option(
    "--bus-url",
    envvar="FUNCTL_BUS_URL",
    default=None,
    metavar="URL",
    help="the bus as the function reaches it in the cluster, such as "
    "valkey://kubefuncs-valkey:6379/0 [env: FUNCTL_BUS_URL; default: bus.url of -f FILE]",
)
@api_options
@release_options
@network_option
@cluster_options
@bus_options
@apply_options
@click.pass_context
def deploy_command(
    ctx: click.Context,
    /,
    path: str,
    name: str | None,
    topic: str | None,
    routes: tuple[str, ...],
    requirements: tuple[str, ...],
    handler: str | None,
    bus_url: str | None,
    api_url: str | None,
    api_key: str | None,
    **given: Any,
) -> None:
    """Deploy PATH (a .py/.js file or a directory) as one function, without a functions.yaml.

    The handler is the module's one @function (its declarations apply), else handle();
    for Node, the one export with a kubefuncs declaration, else handle. Finding it imports
    the module (Node: with node): its import-time code runs here. The entry of the same
    name in FUNCTIONS (-f, when the file exists) overrides the declarations field by
    field and gives the bus, image and defaults.
    """
    f = dataclasses.replace(flags(ctx, **given), code=path)
    wanted = quick.Given(
        name=name,
        topic=topic,
        routes=quick.split_list(routes),
        requirements=requirements,
        handler=handler,
        bus_url=bus_url,
        image=f.image,
    )
    if api_url:
        apiclient.deploy(api_url, api_key, quick.api_entry(path, wanted), click.echo)
        return
    deploy_source(f, wanted, click.echo)


@click.command("gc")
@release_options
@cluster_options
@bus_options
@click.option("--dry-run", is_flag=True, default=None, help="show what would be deleted")
@click.option(
    "--now",
    "at",
    default=None,
    metavar="TIME",
    help="collect as if it were TIME (RFC 3339) [default: now]",
)
@click.pass_context
def gc_command(ctx: click.Context, /, at: str | None, **given: Any) -> None:
    """Delete the release's expired functions (ttl:/expires_at:) with their ConfigMaps,
    and remove their consumer groups, retry and dead-letter streams from the bus.

    The release's janitor CronJob runs this every 5 minutes in the cluster.
    """
    from . import expiry, gc
    from .errors import UsageError

    f = flags(ctx, **given)
    moment = expiry.parse(at) if at else expiry.now()
    if moment is None:
        raise UsageError(f"--now {at!r} is not an RFC 3339 time such as 2026-12-31T18:00:00Z")
    bus = (f.bus, f.bus_password) if f.bus else None
    if bus is None:
        click.echo("warning: no --bus: the expired functions' channels stay on the bus", err=True)
    gc.run(actions.connect(f), f.release, moment, bus, dry_run=f.dry_run, echo=click.echo)
