"""A batch handler in a real process on real Valkey: KF_BATCH from the environment bounds
the batch, SIGTERM lets the batch in flight finish, KF_BATCH on a per-message handler stops
the process with a message."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from kubefuncs import Client

from tests.procs import Proc
from tests.runtime.test_process import FAST, ready, start_fn


async def test_kf_batch_bounds_the_batches_and_sigterm_finishes_the_one_in_flight(
    valkey_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    url = f"{valkey_url}&{FAST}"
    proc, port = start_fn(url, tmp_path / "r", name="tests.runtime.fns:batched", KF_BATCH="4")
    procs.append(proc)
    ready(proc, port)
    async with Client(url) as c:
        replies = await asyncio.gather(
            *(c.call("rt-batch", {"id": n}, timeout_s=10) for n in range(10))
        )
        assert sorted(r["id"] for r in replies) == list(range(10))
        assert max(r["size"] for r in replies) == 4  # env over the decorator's 100
        slow = asyncio.create_task(c.call("rt-batch", {"id": 99, "sleep_s": 1}, timeout_s=10))
        await asyncio.sleep(0.5)  # in the handler by now (batch_wait_s 0.2)
        proc.proc.send_signal(signal.SIGTERM)
        assert (await slow)["id"] == 99
    assert await asyncio.to_thread(proc.proc.wait, 10) == 0


def test_kf_batch_on_a_per_message_handler_exits_2(tmp_path: Path, procs: list[Proc]) -> None:
    proc, _ = start_fn("valkey://127.0.0.1:1/0", tmp_path / "r", KF_BATCH="10")
    procs.append(proc)
    assert proc.proc.wait(15) == 2
    assert "KF_BATCH is set, but record is not a batch handler" in proc.output()
