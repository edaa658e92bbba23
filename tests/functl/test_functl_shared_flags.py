"""Every shared flag after every subcommand: accepted where the command uses it, refused
with the reason (and where the flag is accepted instead) where it does not."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from kubefuncs.functl.cli import SHARED, main

RELEASE = {"functions", "namespace", "release", "image"}
CLUSTER = {"kubeconfig", "context"}
BUS = {"bus", "bus_password"}
NETWORK = {"network_policy"}
APPLY = {"dry_run", "prune", "force_conflicts", "skip_bus", "prepare_timeout_s"}

# the shared flags (parameter names) each subcommand uses
USES: dict[str, set[str]] = {
    "render": RELEASE | NETWORK,
    "apply": RELEASE | NETWORK | CLUSTER | BUS | APPLY,
    "diff": RELEASE | NETWORK | CLUSTER | {"prune", "force_conflicts"},
    "delete": RELEASE | CLUSTER | {"dry_run"},
    "list": RELEASE | CLUSTER,
    "validate": RELEASE | NETWORK,
    "publish": RELEASE | BUS,
    "call": RELEASE | BUS,
    "status": RELEASE | CLUSTER | BUS,
    "prepare-bus": RELEASE | BUS,
    "dlq list": RELEASE | BUS,
    "dlq show": RELEASE | BUS,
    "dlq replay": RELEASE | BUS,
    "dlq purge": RELEASE | BUS,
    "dev": {"functions", "bus"},
    "conformance": BUS,
    "serve": RELEASE | CLUSTER | BUS,
    "deploy": RELEASE | NETWORK | CLUSTER | BUS | APPLY,
    "gc": RELEASE | CLUSTER | BUS | {"dry_run"},
}
REASONS = {
    **dict.fromkeys(CLUSTER, "it does not talk to the Kubernetes cluster"),
    **dict.fromkeys(BUS, "it does not talk to the bus"),
    **dict.fromkeys(NETWORK, "it renders no NetworkPolicy"),
    **dict.fromkeys(RELEASE, "it does not work on a release"),
    **dict.fromkeys(APPLY, "the flag changes only what `functl apply` does"),
}


def leaf_commands(group: click.Group, prefix: str = "") -> list[str]:
    out = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            out.extend(leaf_commands(command, f"{prefix}{name} "))
        else:
            out.append(prefix + name)
    return out


def shared_options() -> list[tuple[str, str, bool]]:
    """(option string, parameter name, takes a value) of every shared flag of `functl`."""
    return [
        (opt, param.name, not param.is_flag)
        for param in main.params
        if isinstance(param, click.Option) and param.name in SHARED
        for opt in (*param.opts, *param.secondary_opts)
    ]


def test_the_table_covers_every_subcommand_and_shared_flag() -> None:
    assert set(leaf_commands(main)) == set(USES)
    assert {name for _, name, _ in shared_options()} == SHARED == set(REASONS)


@pytest.mark.parametrize("command", sorted(USES))
def test_every_shared_flag_after_every_subcommand(command: str) -> None:
    runner = CliRunner()
    for option, param, takes_value in shared_options():
        # Given the flag after the subcommand (--help: parse only, run nothing)
        args = [*command.split(), option, *(["1"] if takes_value else []), "--help"]
        result = runner.invoke(main, args, prog_name="functl")
        if param in USES[command]:
            # Then a command that uses it accepts it
            assert result.exit_code == 0, (args, result.output)
        else:
            # Then the others refuse it saying why, and where it is accepted instead
            assert result.exit_code == 2, (args, result.output)
            text = " ".join(result.output.split())
            assert f"functl {command} does not take {option}: {REASONS[param]}" in text, text
            assert f"(functl {option} ... {command})" in text, text


def test_shared_flags_before_any_subcommand_are_accepted() -> None:
    result = CliRunner().invoke(
        main, ["--bus", "memory://x", "--kubeconfig", "k", "--no-prune", "delete", "--help"]
    )
    assert result.exit_code == 0, result.output


def test_an_unknown_option_keeps_clicks_error() -> None:
    result = CliRunner().invoke(main, ["delete", "--bogus"])
    assert result.exit_code == 2 and "No such option '--bogus'" in result.output
