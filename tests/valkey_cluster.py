"""A real Valkey Cluster on loopback for tests: masters with replicas, kill and fail over."""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers import require_binary, wait_pong


def cluster_ports(count: int) -> list[int]:
    """Ports for cluster nodes: each <= 55535 with port + 10000 (the cluster bus) free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 45000)
        if port not in ports and _free(port) and _free(port + 10000):
            ports.append(port)
    return ports


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class ValkeyCluster:
    """``masters`` masters with ``replicas`` replicas each (``valkey-cli --cluster create``),
    no persistence, a short node timeout, so a killed master's replica takes over in about a
    second (``cluster-replica-validity-factor 0``: a replica always may)."""

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 1,
        *,
        node_timeout_ms: int = 1000,
        server: str = "valkey-server",
    ) -> None:
        self.binary = require_binary(server)  # redis-server (7+) makes a Redis Cluster
        self.cli = require_binary("valkey-cli")
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.dir = Path(tempfile.mkdtemp(prefix="kf-cluster-"))
        self.ports = cluster_ports(masters * (1 + replicas))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def addresses(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    @property
    def url(self) -> str:
        """The bus URL of the whole cluster (every node a seed)."""
        return f"valkey+cluster://{self.addresses}"

    def start(self) -> None:
        for port in self.ports:
            self.start_node(port)
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        subprocess.run(
            [self.cli, "--cluster", "create", *nodes, "--cluster-replicas", str(self.replicas),
             "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
        )  # fmt: skip
        self.wait_ok()
        self.wait_synced()

    def start_node(self, port: int) -> None:
        """Start (or restart, empty) the node on ``port``; it keeps its nodes.conf."""
        node_dir = self.dir / str(port)
        node_dir.mkdir(exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir),
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(self.node_timeout_ms),
             "--cluster-replica-validity-factor", "0", "--appendonly", "no", "--save", "",
             "--protected-mode", "no", "--logfile", str(node_dir / "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_pong(port, self.binary)

    def live(self) -> list[int]:
        return [p for p, proc in self.procs.items() if proc.poll() is None]

    def cli_out(self, port: int, *args: str) -> str:
        return subprocess.run(
            [self.cli, "-p", str(port), *args], capture_output=True, text=True, timeout=5
        ).stdout

    def info(self, port: int, section: str = "cluster") -> dict[str, str]:
        args = ("cluster", "info") if section == "cluster" else ("info", section)
        lines = self.cli_out(port, *args).splitlines()
        pairs = (line.split(":", 1) for line in lines if ":" in line)
        return {key.strip(): value.strip() for key, value in pairs}

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every live node says cluster_state:ok with all 16384 slots served."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            states = [self.info(p) for p in self.live()]
            if all(s.get("cluster_state") == "ok" and s.get("cluster_slots_ok") == "16384"
                   for s in states):  # fmt: skip
                return
            time.sleep(0.1)
        raise RuntimeError("the Valkey cluster did not reach cluster_state:ok")

    def wait_synced(self, timeout_s: float = 30.0) -> None:
        """Until every live replica's link to its master is up (a failover needs one)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            roles = [self.info(p, "replication") for p in self.live()]
            if all(r.get("master_link_status") == "up" for r in roles if r.get("role") == "slave"):
                return
            time.sleep(0.1)
        raise RuntimeError("the Valkey cluster's replicas did not sync with their masters")

    def master_ports(self) -> list[int]:
        return [p for p in self.live() if self.info(p, "replication").get("role") == "master"]

    def master_of(self, key: str) -> int:
        """The port of the master that serves ``key``'s slot now."""
        seed = self.master_ports()[0]
        slot = int(self.cli_out(seed, "cluster", "keyslot", key).strip())
        for line in self.cli_out(seed, "cluster", "nodes").splitlines():
            fields = line.split()
            if len(fields) < 8 or "master" not in fields[2] or "fail" in fields[2]:
                continue
            for part in fields[8:]:
                low, _, high = part.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise RuntimeError(f"no master serves slot {slot} (key {key!r})")

    def node_id(self, port: int) -> str:
        return self.cli_out(port, "cluster", "myid").strip()

    def migrate_slot(self, slot: int, source: int, target: int, keys_per_step: int = 1) -> None:
        """Move ``slot`` from master ``source`` to master ``target`` as ``valkey-cli
        --cluster reshard`` does (IMPORTING/MIGRATING, MIGRATE a few keys at a time, then
        SETSLOT NODE everywhere): clients meanwhile get ASK, then MOVED."""
        cli = self.cli_out
        cli(target, "cluster", "setslot", str(slot), "importing", self.node_id(source))
        cli(source, "cluster", "setslot", str(slot), "migrating", self.node_id(target))
        step = str(keys_per_step)
        while keys := cli(source, "cluster", "getkeysinslot", str(slot), step).split():
            cli(source, "migrate", "127.0.0.1", str(target), "", "0", "5000", "keys", *keys)
            time.sleep(0.05)  # let clients meet the slot half moved (ASK, TRYAGAIN)
        for port in self.master_ports():
            cli(port, "cluster", "setslot", str(slot), "node", self.node_id(target))

    def replicas_of(self, port: int) -> list[int]:
        return [p for p in self.live()
                if self.info(p, "replication").get("master_port") == str(port)]  # fmt: skip

    def kill(self, port: int) -> None:
        """SIGKILL one node."""
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def failover(self, port: int, timeout_s: float = 30.0) -> int:
        """Kill the master on ``port``, wait until a replica took over and every slot is
        served again; the port of the promoted replica."""
        replicas = self.replicas_of(port)
        if not replicas:
            raise RuntimeError(f"node {port} has no replica to fail over to")
        self.kill(port)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            promoted = [p for p in replicas if self.info(p, "replication").get("role") == "master"]
            if promoted:
                self.wait_ok(max(1.0, deadline - time.monotonic()))
                return promoted[0]
            time.sleep(0.1)
        raise RuntimeError(f"no replica of {port} was promoted within {timeout_s} s")

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
