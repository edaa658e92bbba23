"""``functl dev example/functions.yaml --bus nsq://...`` runs the whole example on NSQ,
the Node function ``upper`` and the Go function ``upper-go`` included (each runs as a
process of its own)."""

from __future__ import annotations

import urllib.request

import pytest

from tests.conformance.functions import go_binary, require_node_modules
from tests.procs import Proc
from tests.servers import free_port, require_binary

pytestmark = [pytest.mark.real, pytest.mark.slow]


def test_functl_dev_serves_the_node_go_and_python_functions_on_nsq(nsq_url: str) -> None:
    # Given `functl dev` on NSQ (the double as a process, or a real nsqd)
    require_binary("node")
    require_node_modules()
    go_binary()  # built before functl dev starts it (example/go/run)
    port = free_port()
    args = ["kubefuncs.functl", "dev", "example/functions.yaml", "--port", str(port)]
    dev = Proc([*args, "--bus", nsq_url], {"KF_BUS_URL": ""})
    base = f"http://127.0.0.1:{port}"
    try:
        dev.wait_http(f"{base}/readyz", timeout_s=20)
        # When the Node function and a Python one are called through the gateway
        upper = _call(f"{base}/upper/", b"shout")
        upper_go = _call(f"{base}/upper-go/", b"go")
        ping = _call(f"{base}/test/hello")
    finally:
        code = dev.stop()
    # Then all answer, and every process stops cleanly
    assert (upper, upper_go, ping) == ((200, "SHOUT"), (200, "GO"), (200, "pong")), dev.output()
    assert code == 0, dev.output()
    # the last word of the Node function and of the Go one
    assert dev.output().count('"message":"stopped"') == 2, dev.output()
    assert "Traceback" not in dev.output()


def _call(url: str, body: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    with urllib.request.urlopen(request, timeout=20) as r:
        return r.status, r.read().decode()
