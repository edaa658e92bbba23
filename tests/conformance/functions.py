"""Start a function (Python runtime or the Node example) as a subprocess on a real Valkey."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from kubefuncs.transport import options

from tests.servers import require_binary

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "example" / "node"
VISIBILITY_S = 2


def command(language: str) -> list[str]:
    if language == "python":
        return [sys.executable, "-m", "kubefuncs", "tests.conformance.conformance_fn:serve"]
    node = require_binary("node")
    require_node_modules()
    return [node, str(NODE_DIR / "function.js")]


def require_node_modules() -> None:
    if not (NODE_DIR / "node_modules").is_dir():
        message = "example/node/node_modules is missing (CI runs npm ci --prefix example/node)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


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
    """Until the function's consumer group has a consumer that has read at least once."""
    prefix = options(served.bus_url).get("prefix", "kf")
    stream = f"{prefix}:topic:{served.topic}"
    host, port = served.bus_url.split("//")[1].split("/")[0].split(":")
    client = redis.Redis(host=host, port=int(port))
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if served.proc.poll() is not None:
                pytest.fail(f"{served.language} function exited:\n{served.log()}")
            if _has_consumer(client, stream, served.channel):
                return
            time.sleep(0.05)
    finally:
        client.close()
    pytest.fail(f"{served.language} function did not start consuming:\n{served.log()}")


def _has_consumer(client: redis.Redis, stream: str, group: str) -> bool:
    try:
        return bool(client.xinfo_consumers(stream, group))
    except redis.ResponseError:  # no stream or group yet
        return False
