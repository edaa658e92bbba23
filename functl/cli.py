"""The ``functl`` command line: a thin shell over :mod:`kubefuncs.functl.actions`.

``functl --apply --image IMG --namespace NS --release REL --functions FILE`` applies a
functions.yaml (the kubefunctl interface); without ``--apply`` it prints the manifests.
Subcommands live in ``cmd_*.py`` modules and are registered in :data:`COMMANDS` below,
the one place to add a new one.
"""

from __future__ import annotations

from typing import Any

import click

from . import actions, cmd_bus, cmd_deploy, cmd_manifests, conformance, dev
from .console.command import serve
from .errors import FunctlError
from .options import (
    FLAG_FAMILIES,
    apply_options,
    bus_options,
    cluster_options,
    flags,
    network_option,
    release_options,
    unused_flag,
)
from .output import manifests_yaml

SHARED = frozenset().union(*(names for names, _ in FLAG_FAMILIES.values()))
COMMANDS: list[click.Command] = [
    cmd_manifests.render,
    cmd_manifests.apply,
    cmd_manifests.diff,
    cmd_manifests.delete,
    cmd_manifests.list_functions,
    cmd_manifests.validate,
    cmd_bus.publish,
    cmd_bus.call,
    cmd_bus.prepare_bus,
    cmd_bus.status,
    cmd_bus.dlq,
    dev.dev,
    conformance.conformance,
    serve,
    cmd_deploy.deploy_command,
    cmd_deploy.gc_command,
]


class FunctlGroup(click.Group):
    """Turns a FunctlError into its message on stderr and its exit code, without traceback,
    and a shared flag a subcommand has no use for into an error that says so."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FunctlError as e:
            click.echo(f"functl: {e}", err=True)
            ctx.exit(e.exit_code)
        except click.NoSuchOption as e:
            param = shared_flags(self).get(e.option_name)
            if param is None or e.ctx is None:
                raise
            raise click.UsageError(
                unused_flag(e.ctx.command_path, e.option_name, param), e.ctx
            ) from e


def shared_flags(group: click.Command) -> dict[str, str]:
    """Every option string of the top-level command's shared flags -> its parameter name."""
    return {
        opt: param.name
        for param in group.params
        if isinstance(param, click.Option) and param.name in SHARED
        for opt in (*param.opts, *param.secondary_opts)
    }


@click.group(
    cls=FunctlGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--apply", "do_apply", is_flag=True, help="apply the release instead of printing its manifests"
)
@release_options
@network_option
@cluster_options
@bus_options
@apply_options
@click.version_option(package_name="kubefuncs", prog_name="functl")
@click.pass_context
def main(ctx: click.Context, /, do_apply: bool, **given: Any) -> None:
    """Deploy kubefuncs functions to Kubernetes and talk to them on the bus.

    With no command, prints the manifests of FUNCTIONS (as `functl render`), or with
    --apply applies them (as `functl apply`).
    """
    ctx.obj = flags(ctx, **given)
    if ctx.invoked_subcommand is not None:
        return
    if do_apply:
        actions.apply_release(ctx.obj, click.echo)
    else:
        objects = actions.manifests(ctx.obj, lambda m: click.echo(m, err=True))
        click.echo(manifests_yaml(objects), nl=False)


def register(group: click.Group) -> None:
    for command in COMMANDS:
        group.add_command(command)


register(main)
