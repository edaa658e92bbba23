"""Commands that render and manage the release's Kubernetes objects."""

from __future__ import annotations

from typing import Any

import click

from . import actions
from .apiclient import api_options
from .errors import UsageError
from .options import (
    apply_options,
    bus_options,
    cluster_options,
    flags,
    network_option,
    output_option,
    release_options,
)
from .output import manifests_json, manifests_yaml
from .output import render as show


def left(expires_at: str | None) -> str:
    """Time left before ``functl gc`` deletes the function."""
    from .expiry import now
    from .gc import time_left

    return time_left(expires_at, now())


def warn(message: str) -> None:
    click.echo(message, err=True)


code_argument = click.argument("code", required=False, metavar="[PATH]")
bus_url_option = click.option(
    "--bus-url",
    envvar="FUNCTL_BUS_URL",
    default=None,
    metavar="URL",
    help="with PATH and no bus: in the file: the bus the functions use in the cluster",
)


@click.command()
@code_argument
@release_options
@network_option
@bus_url_option
@output_option("yaml", ("yaml", "json"))
@click.pass_context
def render(ctx: click.Context, /, output: str, **given: Any) -> None:
    """Print the Kubernetes manifests of the release (multi-document YAML, or a JSON List).

    With PATH (a module or package), the functions its @function decorators declare,
    overridden field by field by the entries of the same name in FUNCTIONS (if it exists).
    Reading the declarations imports every module of PATH: its import-time code runs.
    """
    objects = actions.manifests(flags(ctx, **given), warn)
    click.echo(manifests_yaml(objects) if output == "yaml" else manifests_json(objects), nl=False)


@click.command()
@release_options
@network_option
@cluster_options
@bus_options
@apply_options
@click.pass_context
def apply(ctx: click.Context, /, **given: Any) -> None:
    """Prepare the bus, server-side apply the release and prune what left the file."""
    actions.apply_release(flags(ctx, **given), click.echo)


@click.command()
@release_options
@network_option
@cluster_options
@click.option("--prune/--no-prune", default=None, help="also show objects prune would delete")
@click.option(
    "--force-conflicts",
    is_flag=True,
    default=None,
    help="show the objects as apply --force-conflicts would leave them",
)
@click.pass_context
def diff(ctx: click.Context, /, **given: Any) -> None:
    """Show what apply would change, as a unified diff. Exit code 1 when there are changes."""
    text = actions.diff_release(flags(ctx, **given), warn=warn)
    click.echo(text, nl=False)
    ctx.exit(1 if text else 0)


@click.command()
@click.argument("function", required=False, metavar="[FUNCTION]")
@release_options
@cluster_options
@click.option("--dry-run", is_flag=True, default=None, help="show what would be deleted")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@api_options
@click.pass_context
def delete(
    ctx: click.Context,
    /,
    function: str | None,
    yes: bool,
    api_url: str | None,
    api_key: str | None,
    **given: Any,
) -> None:
    """Delete every object of the release, or of its FUNCTION only. Messages on the bus
    are kept. With --api URL: FUNCTION through the functions API of functl serve/dev."""
    if api_url:
        from . import apiclient

        if not function:
            raise UsageError("--api deletes one FUNCTION: name it")
        apiclient.delete(api_url, api_key, function, click.echo)
        return
    f = flags(ctx, **given)
    what = f"function {function} of release" if function else "release"
    if not (yes or f.dry_run):
        click.confirm(f"delete {what} {f.release} in namespace {f.namespace}?", abort=True)
    if function:
        from .cmd_deploy import delete_function

        delete_function(f, function, click.echo)
    else:
        actions.delete_release(f, click.echo)


@click.command("list")
@code_argument
@release_options
@bus_url_option
@cluster_options
@click.option(
    "--cluster",
    "in_cluster",
    is_flag=True,
    help="list what runs in the namespace instead of the file",
)
@click.option(
    "--all-releases", is_flag=True, help="with --cluster: every functl release in the namespace"
)
@output_option()
@click.pass_context
def list_functions(
    ctx: click.Context, /, in_cluster: bool, all_releases: bool, output: str, **given: Any
) -> None:
    """List the functions of the file (or declared in PATH, as render PATH does), or
    (--cluster) those deployed."""
    f = flags(ctx, **given)
    if in_cluster:
        rows = actions.cluster_functions(f, all_releases=all_releases)
        headers = ("NAME", "RELEASE", "TOPIC", "CHANNEL", "READY", "DEPLOYMENT", "EXPIRES")
        cells = [
            (
                r["name"],
                r["release"],
                r["topic"],
                r["channel"],
                f"{r['ready']}/{r['replicas']}",
                r["deployment"],
                left(r["expires_at"]),
            )
            for r in rows
        ]
    else:
        rows = actions.file_functions(f)
        headers = ("NAME", "TOPIC", "CHANNEL", "SCALING", "SCHEDULES", "ROUTES", "EXPIRES")
        cells = [
            (
                r["name"],
                r["topic"],
                r["channel"],
                r["scaling"],
                r["schedules"],
                r["routes"],
                left(r["expires_at"]),
            )
            for r in rows
        ]
    click.echo(show(rows, output, headers, cells), nl=False)


@click.command()
@release_options
@network_option
@click.pass_context
def validate(ctx: click.Context, /, **given: Any) -> None:
    """Check functions.yaml (schema, references, rendering). Exit code 2 when invalid."""
    click.echo(actions.validate(flags(ctx, **given), warn))
