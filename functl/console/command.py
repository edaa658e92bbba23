"""``functl serve``: parse the flags, build the catalog, run the server (a thin shell)."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import click
from aiohttp import web

from ..actions import Flags, bus_url, load, target
from ..kube import Cluster
from ..options import bus_options, cluster_options, flags, release_options
from .app import create_app
from .catalog import Catalog, ClusterCatalog, FileCatalog
from .settings import ServeSettings


def catalog_for(f: Flags, use_cluster: bool) -> Catalog:
    """The release in the cluster, or the file read-only."""
    if not use_cluster:
        return FileCatalog(f.functions)
    with open(f.functions, encoding="utf-8") as file:
        text = file.read()
    cluster = Cluster.connect(f.namespace, kubeconfig=f.kubeconfig, context=f.context)
    return ClusterCatalog(cluster, target(f), text, f.functions)


def build(f: Flags, settings: ServeSettings, use_cluster: bool) -> web.Application:
    settings.check()
    s = load(f)  # the file is checked before serving (bus URL, defaults)
    return create_app(
        settings, catalog_for(f, use_cluster), bus_url=bus_url(f, s), password=f.bus_password
    )


@click.command("serve")
@click.option(
    "--cluster/--no-cluster",
    "use_cluster",
    default=False,
    help="serve the release in the cluster (kubeconfig), with deploy; without: the file, "
    "read-only [default: --no-cluster]",
)
@click.option("--addr", default=None, metavar="HOST:PORT", help="[default: 127.0.0.1:8090]")
@click.option("--no-auth", is_flag=True, default=False, help="no credentials (local use only)")
@release_options
@cluster_options
@bus_options
@click.pass_context
def serve(
    ctx: click.Context,
    /,
    use_cluster: bool,
    addr: str | None,
    no_auth: bool,
    **given: Any,
) -> None:
    """Serve the control-plane API (/api/v1) and the dashboard (/) of the functions."""
    settings = ServeSettings.from_env(os.environ)
    settings = replace(settings, addr=addr or settings.addr, no_auth=no_auth or settings.no_auth)
    app = build(flags(ctx, **given), settings, use_cluster)
    host, _, port = settings.addr.rpartition(":")
    click.echo(f"functl serve: dashboard and API on http://{settings.addr}/")
    web.run_app(app, host=host or None, port=int(port), print=None)
