"""``functl dev``: what it plans to run, and the example served by one command."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import pytest
from kubefuncs.functl import spec as specs
from kubefuncs.functl.dev import plan

from tests.conformance.functions import go_binary
from tests.procs import ROOT, Proc
from tests.servers import ServerProcess, free_port

MIXED = """
version: 1
functions:
  - name: ping
    handler: example.ping:pong
    topic: test
    routes: /test/
  - name: node
    topic: orders
    command: [node, function.js]
    args: [--fast]
    env: {GREETING: hi}
  - name: prebuilt
    topic: other
    image: ghcr.io/acme/fn:1
"""


def test_python_functions_run_in_process_and_commands_need_a_real_bus() -> None:
    # Given a file with a Python handler, a command and an image-only function
    spec = specs.loads(MIXED)
    # When dev plans for the embedded memory bus
    p = plan(spec, "memory://", "127.0.0.1:8080", {})
    # Then the handler runs in-process and the others say why they cannot
    assert [fn.name for fn, _ in p.handlers] == ["ping"]
    assert p.commands == ()
    skipped = dict(p.skipped)
    assert "needs a real bus" in skipped["node"] and "--bus valkey://" in skipped["node"]
    assert "neither handler: nor command:" in skipped["prebuilt"]
    assert p.topics == frozenset({"test", "orders", "other"})


def test_on_a_real_bus_commands_start_with_the_runtime_environment() -> None:
    spec = specs.loads(MIXED)
    p = plan(spec, "valkey://localhost:6379/0", "127.0.0.1:8080", {"PATH": "/bin"})
    (command,) = p.commands
    assert command.argv == ("node", "function.js", "--fast")
    env = command.env
    assert (env["KF_BUS_URL"], env["KF_TOPIC"], env["KF_CHANNEL"]) == (
        "valkey://localhost:6379/0",
        "orders",
        "node",
    )
    assert (env["GREETING"], env["PATH"], env["KF_HEALTH_ADDR"]) == ("hi", "/bin", "")


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status, await r.text()


def test_functl_dev_serves_the_example_with_one_command() -> None:
    # Given `functl dev example/functions.yaml` running (embedded bus)
    port = free_port()
    dev = Proc(
        ["kubefuncs.functl", "dev", "example/functions.yaml", "--port", str(port)],
        {"KF_BUS_URL": ""},
    )
    try:
        dev.wait_http(f"http://127.0.0.1:{port}/readyz")
        # When the classic example is called / Then it answers pong
        assert asyncio.run(_get(f"http://127.0.0.1:{port}/test/hello")) == (200, "pong")
        status, body = asyncio.run(_get(f"http://127.0.0.1:{port}/hello/?name=Ada"))
        assert status == 200 and "Hello, Ada!" in body
        # And the Node function, which needs a real bus, is answered for at once with why
        status, body = asyncio.run(_get(f"http://127.0.0.1:{port}/upper/"))
        assert status == 503 and "upper is not running" in body and "--bus" in body
    finally:
        # And it stops cleanly on SIGTERM
        assert dev.stop() == 0, dev.output()


@pytest.mark.real
def test_functl_dev_on_valkey_starts_command_functions(
    valkey_server: ServerProcess, tmp_path: pytest.TempPathFactory
) -> None:
    # Given a functions.yaml whose function is a command (here the Python runtime itself)
    functions = tmp_path / "functions.yaml"  # type: ignore[operator]
    functions.write_text(
        "version: 1\nfunctions:\n  - name: behave\n    topic: e2e\n"
        f"    command: [{sys.executable}, -m, kubefuncs, tests.gateway.fns:behave]\n"
        "    routes: /b/\n"
    )
    port = free_port()
    bus = f"valkey://127.0.0.1:{valkey_server.port}/0?prefix=dev{port}"
    dev = Proc(["kubefuncs.functl", "dev", str(functions), "--port", str(port), "--bus", bus], {})
    try:
        # When a request comes / Then the subprocess answers it through Valkey
        dev.wait_http(f"http://127.0.0.1:{port}/b/status/202", timeout_s=20)
        assert asyncio.run(_get(f"http://127.0.0.1:{port}/b/status/202"))[0] == 202
        assert "started behave" in dev.output()
    finally:
        assert dev.stop() == 0, dev.output()


def test_the_repository_root_is_where_dev_runs() -> None:
    assert (ROOT / "example" / "functions.yaml").exists()


@pytest.mark.real
def test_functl_dev_on_valkey_serves_the_node_function_through_the_gateway(
    valkey_server: ServerProcess,
) -> None:
    # Given the example (Python functions in process, the Node function as a subprocess)
    if not (ROOT / "example" / "node" / "node_modules").is_dir():
        message = "example/node/node_modules missing: run `npm ci --prefix example/node`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    go_binary()  # the example's Go function too (example/go/run), built before it starts
    port = free_port()
    bus = f"valkey://127.0.0.1:{valkey_server.port}/0?prefix=devnode{port}"
    dev = Proc(
        ["kubefuncs.functl", "dev", "example/functions.yaml", "--port", str(port), "--bus", bus],
        {},
    )
    try:
        # When both kinds of function are called through the gateway
        dev.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=30)
        # Then the Node function (upper-cases the body) and the Python one both answer
        assert asyncio.run(_post_until(f"http://127.0.0.1:{port}/upper/", b"hello")) == "HELLO"
        assert asyncio.run(_post_until(f"http://127.0.0.1:{port}/upper-go/", b"go")) == "GO"
        assert asyncio.run(_get(f"http://127.0.0.1:{port}/test/x")) == (200, "pong")
        assert "started upper" in dev.output()
    finally:
        assert dev.stop() == 0, dev.output()


async def _post_until(url: str, body: bytes, timeout_s: float = 20.0) -> str:
    """POST until a 200 comes back (the subprocess may still be starting)."""
    async with asyncio.timeout(timeout_s), aiohttp.ClientSession() as http:
        while True:
            async with http.post(url, data=body) as r:
                if r.status == 200:
                    return await r.text()
            await asyncio.sleep(0.2)


SHOUT_FILES = {
    "shout/package.json": '{"name": "shout", "version": "1.0.0", "dependencies": '
    '{"kf-tiny-shout": "file:TARBALL"}}\n',
    "shout/index.js": "const shout = require('kf-tiny-shout');\n"
    "exports.handle = async (request) => ({\n"
    "  status: 200,\n"
    "  headers: { 'content-type': 'text/plain' },\n"
    "  body: Buffer.from(shout(Buffer.from(request.body).toString('utf8'))),\n"
    "});\n",
}


def tiny_npm_package(folder: Path) -> Path:
    """A one-file npm package as a tarball (what `npm pack` makes): no registry needed."""
    import io
    import tarfile

    tarball = folder / "kf-tiny-shout-1.0.0.tgz"
    files = {
        "package/package.json": b'{"name": "kf-tiny-shout", "version": "1.0.0"}',
        "package/index.js": b"module.exports = (s) => s.toUpperCase() + '!';\n",
    }
    with tarfile.open(tarball, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return tarball


@pytest.mark.real
def test_functl_dev_runs_a_node_source_function_with_its_dependencies(
    valkey_server: ServerProcess, tmp_path: Path
) -> None:
    # Given a Node source folder whose package.json needs a package (a local tarball)
    tarball = tiny_npm_package(tmp_path)
    for name, text in SHOUT_FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text.replace("TARBALL", str(tarball)))
    (tmp_path / "functions.yaml").write_text(
        "version: 1\nbus: {url: 'valkey://valkey:6379/0'}\nfunctions:\n"
        "  - {name: shout, source: shout, handler: 'index:handle', topic: shout, routes: /shout/}\n"
    )
    port = free_port()
    bus = f"valkey://127.0.0.1:{valkey_server.port}/0?prefix=devnodesrc{port}"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "npm_config_cache": str(tmp_path / "npm")}
    args = ["kubefuncs.functl", "dev", str(tmp_path / "functions.yaml"), "--console-port", "0"]
    dev = Proc([*args, "--port", str(port), "--bus", bus], env)
    try:
        # When functl dev starts it (dependencies installed first) and its route is called
        dev.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
        # Then the stock Node runtime, a real node process, answers through the gateway
        assert asyncio.run(_post_until(f"http://127.0.0.1:{port}/shout/", b"hey")) == "HEY!"
        assert "started shout: node " in dev.output()
        assert "package.json dependencies from" in dev.output()
        assert list((tmp_path / "cache").rglob("node_modules/kf-tiny-shout/index.js"))
    finally:
        assert dev.stop() == 0, dev.output()
