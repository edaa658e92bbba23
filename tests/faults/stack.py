"""A bus of the scenario's own and the processes on it, as deployed: the gateway
(``python -m kubefuncs.gateway``) and function replicas (``python -m kubefuncs
tests.faults.fns:ledger``), each a real process a scenario can SIGKILL.

Buses: ``valkey`` (valkey-server with AOF, ``appendfsync always``), ``valkey-empty`` (the
same server, but each restart starts from an empty data directory: a cache-style Valkey,
or a pod that lost its volume), ``nsq`` (the nsqd + nsqlookupd double as a process,
which like nsqd keeps only memory queues, so a SIGKILL loses what it held) and ``cluster``
(a Valkey Cluster of 3 masters and 3 replicas: kill() SIGKILLs the master of the topic's
slot and returns once its replica took over).
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from kubefuncs import wire

from tests.nsq.support import OPTIONS as NSQ_OPTIONS
from tests.nsq_double import NsqdProcess
from tests.procs import Proc
from tests.servers import ServerProcess, free_port
from tests.valkey_cluster import ValkeyCluster

TOPIC = "faults"
CHANNEL = "ledger"
ROUTE = "/f/"


class FaultBus:
    """A bus one scenario owns: killed, started again, closed at the end."""

    def __init__(self, kind: str, *, visibility_timeout_s: float = 3.0) -> None:
        self.kind = kind
        self.prefix = f"f{wire.new_id()[:6]}"
        self.crash_at: float | None = None  # set by kill() when the bus keeps nothing
        self.valkey: ServerProcess | None = None
        self.nsq: NsqdProcess | None = None
        self.cluster: ValkeyCluster | None = None
        self.killed: int | None = None  # the cluster node kill() took down
        self.victim: int | None = None  # the master kill() takes down (default: the topic's)
        options = f"block_ms=200&visibility_timeout_s={visibility_timeout_s}"
        if kind == "cluster":
            self.cluster = ValkeyCluster()
            self.cluster.start()
            self.url = f"{self.cluster.url}/?prefix={self.prefix}&{options}"
            return
        if kind == "nsq":
            self.nsq = NsqdProcess(lookupd_http_port=0)
            self.nsq.start()
            options = f"prefix={self.prefix}.&{NSQ_OPTIONS}&msg_timeout_s={visibility_timeout_s}"
            self.url = f"nsq://{self.nsq.lookupd_http_address}?{options}"
            return
        self.valkey = ServerProcess("valkey-server")
        self.valkey.start()
        self.url = f"valkey://127.0.0.1:{self.valkey.port}/0?prefix={self.prefix}&{options}"

    @property
    def persistent(self) -> bool:  # (a cluster: the promoted replica has the data)
        return self.kind in ("valkey", "cluster")

    @property
    def redis_url(self) -> str:
        assert self.valkey is not None, "only a Valkey bus has keys"
        return self.valkey.url

    def key(self, *parts: str) -> str:
        """A Valkey key of this bus: ``key("topic", T)`` is ``<prefix>:topic:T`` (on a
        cluster ``<prefix>:topic:{T}``: the topic is the hash tag)."""
        if self.cluster is not None and len(parts) > 1:
            parts = (parts[0], f"{{{parts[1]}}}", *parts[2:])
        return ":".join((self.prefix, *parts))

    def topic_master(self) -> int:
        assert self.cluster is not None
        return self.cluster.master_of(self.key("topic", TOPIC))

    def inbox_master(self) -> int:
        """The cluster master a caller's reply inbox is on: where a BLMPOP waits."""
        assert self.cluster is not None
        for port in self.cluster.master_ports():
            if "cmd=blmpop" in self.cluster.cli_out(port, "client", "list"):
                return port
        raise RuntimeError("no reply inbox is being read on any master")

    def kill(self) -> None:
        """SIGKILL the server; remembers when, if it takes its memory with it."""
        if not self.persistent:
            self.crash_at = time.monotonic()
        if self.nsq is not None:
            self.nsq.kill()
            return
        if self.cluster is not None:
            self.killed = self.victim or self.topic_master()
            self.cluster.failover(self.killed)
            return
        assert self.valkey is not None
        self.valkey.stop(signal.SIGKILL)
        if self.kind == "valkey-empty":
            for path in self.valkey.dir.iterdir():  # the AOF: as if the volume were lost
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def start(self) -> None:
        """Start it again on the same address."""
        if self.nsq is not None:
            self.nsq.start()
        elif self.cluster is not None:  # back as a replica of the promoted one
            assert self.killed is not None
            self.cluster.start_node(self.killed)
        else:
            assert self.valkey is not None
            self.valkey.start()

    def close(self) -> None:
        if self.nsq is not None:
            self.nsq.stop()
        if self.valkey is not None:
            self.valkey.close()
        if self.cluster is not None:
            self.cluster.close()


COMMON = {"KF_LOG_LEVEL": "WARNING"}


def function(bus: FaultBus, record: Path, **env: str) -> tuple[Proc, str]:
    """A replica of the ledger function; returns it with its /readyz URL."""
    port = free_port()
    settings = {
        **COMMON,
        "KF_BUS_URL": bus.url,
        "KF_CHANNEL": CHANNEL,
        "KF_HEALTH_ADDR": f"127.0.0.1:{port}",
        "KF_FAULTS_RECORD": str(record),
        "KF_CONCURRENCY": "16",
        "KF_MAX_ATTEMPTS": "3",
        "KF_BACKOFF_S": "0.2",
        "KF_BACKOFF_MAX_S": "1",
        **env,
    }
    return Proc(["kubefuncs", "tests.faults.fns:ledger"], settings), f"http://127.0.0.1:{port}"


def gateway(
    bus: FaultBus, tmp: Path, *, timeout_s: float = 3.0, env: Mapping[str, str] | None = None
) -> tuple[Proc, str]:
    """A gateway with one route, ``/f/`` to the ledger function; returns it with its URL."""
    routes = tmp / "routes.yaml"
    routes.write_text(f"{ROUTE}: {{topic: {TOPIC}, timeout_s: {timeout_s}}}\n")
    port = free_port()
    settings = {
        **COMMON,
        "KF_BUS_URL": bus.url,
        "KF_GATEWAY_ADDR": f"127.0.0.1:{port}",
        "KF_GATEWAY_MAX_IN_FLIGHT": "1000",
        **(env or {}),
    }
    return Proc(["kubefuncs.gateway", str(routes)], settings), f"http://127.0.0.1:{port}"


def stop_all(procs: list[Proc]) -> list[str]:
    """Stop every process (SIGTERM); the complaints of those that did not exit 0."""
    codes = [proc.stop() for proc in procs]
    return [
        f"{proc.args} exited {code}:\n{proc.output()}"
        for proc, code in zip(procs, codes, strict=True)
        if code != 0
    ]


def tracebacks(procs: list[Proc]) -> list[str]:
    return [line for proc in procs for line in proc.output().splitlines() if "Traceback" in line]
