"""Start a function (Python runtime, the Node example or the Go example) as a subprocess on
a real Valkey or on NSQ (the nsqd double as a process, or a real nsqd from the
environment)."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
from kubefuncs.transport import options
from kubefuncs.transport._nsq_config import NsqConfig

from tests.servers import require_binary

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "example" / "node"
GO_DIR = ROOT / "example" / "go"
VISIBILITY_S = 2
LANGUAGES = ("python", "node", "go")


def command(language: str) -> list[str]:
    if language == "python":
        return [sys.executable, "-m", "kubefuncs", "tests.conformance.conformance_fn:serve"]
    if language == "go":
        return [str(go_binary())]
    node = require_binary("node")
    require_node_modules()
    return [node, str(NODE_DIR / "function.js")]


def require_node_modules() -> None:
    if not (NODE_DIR / "node_modules").is_dir():
        message = "example/node/node_modules is missing (CI runs npm ci --prefix example/node)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def go_binary() -> Path:
    """The Go example, built once per source hash (example/go/build caches it under
    .ci/tools/go). Locally a missing go skips; under CI=true it fails (.ci/setup installs
    Debian's golang-go)."""
    require_binary("go")
    return _built_go()


@functools.cache
def _built_go() -> Path:
    run = subprocess.run(
        [str(GO_DIR / "build")], capture_output=True, text=True, timeout=600, check=False
    )
    if run.returncode != 0:
        pytest.fail(f"example/go/build failed:\n{run.stdout}{run.stderr}")
    return Path(run.stdout.strip().splitlines()[-1])


@dataclass
class Served:
    """A running function and where it listens."""

    language: str
    bus_url: str
    topic: str
    channel: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout_s: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)


@contextmanager
def serve(language: str, bus_url: str, topic: str = "conf", **env: str) -> Iterator[Served]:
    """Run the conformance function in ``language`` on ``topic`` until the block ends."""
    url = f"{bus_url}&visibility_timeout_s={VISIBILITY_S}"
    settings = {
        "KF_BUS_URL": url,
        "KF_TOPIC": topic,
        "KF_CHANNEL": topic,
        "KF_HEALTH_ADDR": "",
        "KF_MAX_ATTEMPTS": "3",
        "KF_BACKOFF_S": "0.1",
        "KF_GRACE_S": "5",
        "KF_LOG_FORMAT": "text",
        **env,
    }
    log_path = Path(tempfile.mkstemp(prefix=f"kf-{language}-", suffix=".log")[1])
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command(language), cwd=ROOT, env={**os.environ, **settings}, stdout=log, stderr=log
        )
    served = Served(language, url, topic, topic, proc, log_path)
    try:
        wait_consuming(served)
        yield served
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log_path.unlink(missing_ok=True)


def wait_consuming(served: Served, timeout_s: float = 20.0) -> None:
    """Until the bus shows the function as a consumer of its channel."""
    deadline = time.monotonic() + timeout_s
    with _consumer_check(served) as consuming:
        while time.monotonic() < deadline:
            if served.proc.poll() is not None:
                pytest.fail(f"{served.language} function exited:\n{served.log()}")
            if consuming():
                return
            time.sleep(0.05)
    pytest.fail(f"{served.language} function did not start consuming:\n{served.log()}")


@contextmanager
def _consumer_check(served: Served) -> Iterator[Callable[[], bool]]:
    if served.bus_url.startswith("nsq://"):
        yield lambda: _nsq_subscribed(served.bus_url, served.topic, served.channel)
        return
    prefix = options(served.bus_url).get("prefix", "kf")
    stream = f"{prefix}:topic:{served.topic}"
    host, port = served.bus_url.split("//")[1].split("/")[0].split(":")
    client = redis.Redis(host=host, port=int(port))
    try:
        yield lambda: _has_consumer(client, stream, served.channel)
    finally:
        client.close()


def _nsq_subscribed(bus_url: str, topic: str, channel: str) -> bool:
    """Every nsqd of the bus has a client on ``channel`` of ``topic`` (from its /stats)."""
    config = NsqConfig.from_url(bus_url)
    nodes = _nsqd_http(config)
    wire = config.wire(topic)
    return bool(nodes) and all(
        any(ch.get("clients") for ch in _channels(node, wire, channel)) for node in nodes
    )


def nsq_channels(bus_url: str, topics: list[str], channel: str) -> list[dict[str, Any]]:
    """nsqd's /stats of ``channel`` on the NSQ topics ``topics``, from every nsqd."""
    config = NsqConfig.from_url(bus_url)
    return [ch for node in _nsqd_http(config) for t in topics for ch in _channels(node, t, channel)]


def nsq_clients(bus_url: str, topics: list[str], channel: str) -> list[dict[str, Any]]:
    """nsqd's /stats of every client of ``channel`` on the NSQ topics ``topics``."""
    return [c for ch in nsq_channels(bus_url, topics, channel) for c in ch.get("clients") or []]


def _nsqd_http(config: NsqConfig) -> list[str]:
    nodes = [node.http for node in config.nsqd]
    for lookupd in config.lookupd_http:
        producers = (_get_json(lookupd, "/nodes") or {}).get("producers", [])
        nodes += [f"{p['broadcast_address']}:{p['http_port']}" for p in producers]
    return list(dict.fromkeys(nodes))


def _channels(nsqd_http: str, topic: str, channel: str) -> list[dict[str, Any]]:
    doc = _get_json(nsqd_http, "/stats", format="json", topic=topic) or {}
    return [
        ch
        for t in doc.get("topics") or []
        if t.get("topic_name") == topic
        for ch in t.get("channels") or []
        if ch.get("channel_name") == channel
    ]


def _get_json(address: str, path: str, **params: str) -> Any:
    url = f"http://{address}{path}?{urlencode(params)}"
    request = urllib.request.Request(url, headers={"Accept": "application/vnd.nsq; version=1.0"})
    try:
        with urllib.request.urlopen(request, timeout=2) as r:
            return json.load(r)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _has_consumer(client: redis.Redis, stream: str, group: str) -> bool:
    try:
        return bool(client.xinfo_consumers(stream, group))
    except redis.ResponseError:  # no stream or group yet
        return False
