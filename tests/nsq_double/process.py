"""The doubles in a child process, for tests that SIGKILL or restart the server."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

# How often the child's queue scan loop refreshes its channel list. nsqd's is 5 s (and not a
# flag), so a retry or a timeout on a channel created less than 5 s ago waits up to 5 s; the
# product's tests run their child nsqd like nsqd's own tests run theirs, at 0.1 s.
TEST_SCAN_REFRESH_S = 0.1

_PACKAGE: str = (__spec__.parent if __spec__ is not None else "") or "tests.nsq_double"


def _import_root() -> Path:
    # the directory from which ``python -m <package>`` resolves, whatever the package is called
    return Path(__file__).resolve().parents[_PACKAGE.count(".") + 1]


class NsqdProcess:
    """``python -m tests.nsq_double`` as a subprocess. Restarts reuse the first bound ports.

    >>> with NsqdProcess(lookupd_http_port=0) as proc:
    ...     proc.tcp_address, proc.http_address, proc.lookupd_http_address
    """

    def __init__(
        self,
        *,
        tcp_port: int = 0,
        http_port: int = 0,
        lookupd_http_port: int | None = None,
        extra_args: Sequence[str] = (),
        queue_scan_refresh_interval_s: float = TEST_SCAN_REFRESH_S,
    ) -> None:
        self._ports: dict[str, int | None] = {
            "--tcp-port": tcp_port,
            "--http-port": http_port,
            "--lookupd-http-port": lookupd_http_port,
        }
        refresh = ["--queue-scan-refresh-interval", str(queue_scan_refresh_interval_s)]
        self._extra_args = [*refresh, *extra_args]
        self._proc: subprocess.Popen[bytes] | None = None
        self.addresses: dict[str, Any] = {}

    @property
    def tcp_address(self) -> str:
        return str(self.addresses["tcp_address"])

    @property
    def http_address(self) -> str:
        return str(self.addresses["http_address"])

    @property
    def lookupd_http_address(self) -> str | None:
        value = self.addresses.get("lookupd_http_address")
        return str(value) if value else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 10.0) -> None:
        if self._proc is not None:
            raise RuntimeError("already running")
        cmd = [sys.executable, "-m", _PACKAGE, *self._port_args(), *self._extra_args]
        self._proc = subprocess.Popen(cmd, cwd=_import_root(), stdout=subprocess.PIPE)
        assert self._proc.stdout is not None
        try:
            line = _read_line(self._proc.stdout, timeout)
        except Exception:
            self.kill()
            raise
        self.addresses = json.loads(line)
        self._remember_ports()

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, all in-memory state is lost."""
        if self._proc is not None:
            self._proc.kill()
            self._reap()

    def stop(self, timeout: float = 5.0) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._reap()

    def restart(self, timeout: float = 10.0) -> None:
        self.kill()
        self.start(timeout)

    def __enter__(self) -> NsqdProcess:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _port_args(self) -> list[str]:
        args = []
        for flag, port in self._ports.items():
            if port is not None:
                args += [flag, str(port)]
        return args

    def _remember_ports(self) -> None:
        for flag, key in (
            ("--tcp-port", "tcp_address"),
            ("--http-port", "http_address"),
            ("--lookupd-http-port", "lookupd_http_address"),
        ):
            address = self.addresses.get(key)
            if address:
                self._ports[flag] = int(str(address).rsplit(":", 1)[1])

    def _reap(self) -> None:
        assert self._proc is not None
        self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None


def _read_line(stream: IO[bytes], timeout: float) -> str:
    readable, _, _ = select.select([stream], [], [], timeout)
    if not readable:
        raise TimeoutError(f"nsqd double did not report its addresses within {timeout}s")
    line = stream.readline().decode()
    if not line:
        raise RuntimeError("nsqd double exited before reporting its addresses")
    return line
