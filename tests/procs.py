"""Separate processes for end-to-end tests: the gateway and functions, as deployed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]


def _forgotten(proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
    log.close()


class Proc:
    """``python -m ARGS`` from the repository root, output kept in a file for failures."""

    def __init__(self, args: list[str], env: Mapping[str, str]) -> None:
        # outlives this call: the process writes to it until stop()
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="kf-proc-", suffix=".log", delete=False
        )
        self.args = args
        self._final: str | None = None  # the whole output, once stopped
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        # a Proc a test forgot to stop: killed, its log closed when it is collected (an
        # unclosed file's warning would otherwise fail whichever test the GC ran in)
        weakref.finalize(self, _forgotten, self.proc, self.log)

    def output(self) -> str:
        """The last KF_TEST_OUTPUT_CHARS (4000) characters of the output (all of it is kept
        after stop())."""
        keep = int(os.environ.get("KF_TEST_OUTPUT_CHARS", "4000"))
        if self._final is not None:
            return self._final[-keep:]
        return Path(self.log.name).read_text(errors="replace")[-keep:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, then wait; returns the exit code (SIGKILL after ``timeout_s``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()
        self._final = Path(self.log.name).read_text(errors="replace")
        os.unlink(self.log.name)
        return self.proc.returncode

    def wait_http(self, url: str, *, expect: bytes | None = None, timeout_s: float = 15.0) -> None:
        """Poll ``url`` until it answers 200 (with ``expect`` in the body)."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args} exited {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    body = r.read()
                    if expect is None or expect in body:
                        return
                    last = repr(body[:200])
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.05)
        raise RuntimeError(f"{url} not ready ({last}):\n{self.output()}")
