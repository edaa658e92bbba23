"""What a function process imports before it is ready: only what its bus and settings need.

A fresh interpreter does what ``python -m kubefuncs`` does up to connecting (load the
function, build the runtime and its health app) for a function on Valkey, then reports
the packages it loaded. The heavy ones a Valkey function does not use must stay out, so
a new top-level import cannot bring them back silently.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.procs import ROOT

PROBE = """
import json, sys
from kubefuncs.__main__ import prepare
from kubefuncs.health import health_app
from kubefuncs.runtime import Runtime

env = {"KF_BUS_URL": "valkey://127.0.0.1:1/0", "KF_TOPIC": "footprint"}
runtime = Runtime(prepare(["tests.runtime.fns:record"], env))
app = health_app(lambda: runtime.ready, runtime.metrics)
before = sorted({name.split(".")[0] for name in sys.modules})
status, ctype, body = app.respond("GET", "/metrics")  # the first scrape imports prometheus
try:  # hidden from redis-py only while it was imported: a handler can still use it
    import opentelemetry.sdk.metrics
    otel = "importable"
except ImportError as e:
    otel = "not installed" if "No module named 'opentelemetry" in str(e) else repr(e)
print(json.dumps({"before": before, "status": status, "metrics": body.decode(), "otel": otel}))
"""

# not used by a Valkey function: the NSQ client and its IO loop, the gateway's HTTP stack,
# tracing (off unless OTEL_* ask for it), and the rest only a scrape or functl needs
ABSENT = ("nsq", "tornado", "aiohttp", "opentelemetry", "prometheus_client", "yaml",
          "jsonschema", "lightkube", "click")  # fmt: skip


def probe() -> dict[str, object]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}  # no OTEL_* from the caller
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_valkey_function_loads_only_what_it_uses() -> None:
    result = probe()
    loaded = set(result["before"])  # type: ignore[call-overload]
    assert {"kubefuncs", "redis", "msgpack"} <= loaded  # the probe did start a function
    assert sorted(loaded.intersection(ABSENT)) == []
    assert result["otel"] in ("importable", "not installed")


def test_the_first_scrape_still_serves_every_metric() -> None:
    result = probe()
    assert result["status"] == 200
    metrics = str(result["metrics"])
    assert 'kubefuncs_invocations_total{function="record",outcome="ok"} 0.0' in metrics
    assert 'kubefuncs_in_flight{function="record"} 0.0' in metrics
    assert "kubefuncs_cold_start_seconds" in metrics
