"""Click options shared by the top-level command and the subcommands.

Options given to a subcommand win over the same options given before it
(``functl -n prod apply -n staging`` applies to staging); both fall back to the
``FUNCTL_*`` environment variables and then to the defaults of :class:`Flags`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .actions import Flags
from .output import FORMATS

F = TypeVar("F", bound=Callable[..., Any])


def _stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(f: F) -> F:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


release_options = _stack(
    click.option(
        "-f",
        "--functions",
        envvar="FUNCTL_FUNCTIONS",
        default=None,
        metavar="PATH",
        help="functions.yaml to use [default: functions.yaml]",
    ),
    click.option(
        "-n",
        "--namespace",
        envvar="FUNCTL_NAMESPACE",
        default=None,
        help="Kubernetes namespace [default: default]",
    ),
    click.option(
        "-r",
        "--release",
        envvar="FUNCTL_RELEASE",
        default=None,
        help="release name: prefixes object names, selects what prune and delete touch "
        "[default: kubefuncs]",
    ),
    click.option(
        "--image",
        envvar="FUNCTL_IMAGE",
        default=None,
        help="kubefuncs image for functions without their own image: and for schedules "
        "(overrides image: of the file)",
    ),
)

network_option = click.option(
    "--network-policy/--no-network-policy",
    default=None,
    help="render a NetworkPolicy for every function, or for none "
    "[default: network.policy of the file, true unless set]",
)

cluster_options = _stack(
    click.option(
        "--kubeconfig",
        envvar="FUNCTL_KUBECONFIG",
        default=None,
        metavar="PATH",
        help="kubeconfig file [default: in-cluster config, $KUBECONFIG, ~/.kube/config]",
    ),
    click.option("--context", default=None, help="kubeconfig context [default: current context]"),
)

bus_options = _stack(
    click.option(
        "--bus",
        envvar="KF_BUS_URL",
        default=None,
        metavar="URL",
        help="bus URL reachable from here [default: bus.url of the file]",
    ),
    click.option(
        "--bus-password",
        envvar="KF_BUS_PASSWORD",
        default=None,
        metavar="SECRET",
        help="bus password [env: KF_BUS_PASSWORD]",
    ),
)

apply_options = _stack(
    click.option(
        "--dry-run",
        is_flag=True,
        default=None,
        help="server-side dry run: show what would change, change nothing",
    ),
    click.option(
        "--prune/--no-prune",
        default=None,
        help="delete objects of this release that left the file [default: prune]",
    ),
    click.option(
        "--force-conflicts",
        is_flag=True,
        default=None,
        help="take over fields another field manager owns",
    ),
    click.option(
        "--skip-bus",
        is_flag=True,
        default=None,
        help="do not create topics and channels on the bus before applying",
    ),
    click.option(
        "--prepare-timeout-s",
        type=click.FloatRange(min=0, min_open=True),
        envvar="FUNCTL_PREPARE_TIMEOUT_S",
        default=None,
        metavar="SECONDS",
        help="how long the in-cluster bus preparation Job may take, when the bus is not "
        "reachable from here [default: 120]",
    ),
)


# Why a subcommand that has no use for a shared flag refuses it (see :func:`unused_flag`).
FLAG_FAMILIES: dict[str, tuple[frozenset[str], str]] = {
    "cluster": (frozenset({"kubeconfig", "context"}), "it does not talk to the Kubernetes cluster"),
    "bus": (frozenset({"bus", "bus_password"}), "it does not talk to the bus"),
    "network": (frozenset({"network_policy"}), "it renders no NetworkPolicy"),
    "release": (
        frozenset({"functions", "namespace", "release", "image"}),
        "it does not work on a release",
    ),
    "apply": (
        frozenset({"dry_run", "prune", "force_conflicts", "skip_bus", "prepare_timeout_s"}),
        "the flag changes only what `functl apply` does",
    ),
}


def unused_flag(command_path: str, option: str, param: str) -> str:
    """Why ``command_path`` refuses the shared flag ``option`` (the parameter ``param``)."""
    why = next((text for names, text in FLAG_FAMILIES.values() if param in names), "")
    command = command_path.split(" ", 1)[-1]
    return (
        f"{command_path} does not take {option}: {why}. Drop it, or put it before the "
        f"subcommand (functl {option} ... {command}), where every shared flag is accepted "
        "and a command that has no use for one ignores it"
    )


def output_option(default: str = "table", choices: tuple[str, ...] = FORMATS) -> Callable[[F], F]:
    return click.option(
        "-o",
        "--output",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="table for people, yaml or json for machines",
    )


def flags(ctx: click.Context, **given: Any) -> Flags:
    """The effective flags: ``given`` (non-None) over the parent command's, over defaults."""
    base = ctx.find_object(Flags) or Flags()
    known = {f.name for f in dataclasses.fields(Flags)}
    return dataclasses.replace(
        base, **{k: v for k, v in given.items() if v is not None and k in known}
    )
