"""Fixtures for the double's own tests; NSQD_TCP_ADDRESS/NSQD_HTTP_ADDRESS select a real nsqd."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .harness import running_nsqd
from .rawclient import ClientFactory, RawClient
from .support import (
    DOUBLE_SCAN_LATE_S,
    FAST_SCAN,
    Http,
    NsqTarget,
    real_target_from_env,
    unique_name,
)

FAST_MSG_TIMEOUT_S = 0.3


@pytest.fixture
async def target() -> AsyncIterator[NsqTarget]:
    """The nsqd under test: a real one from the environment, else a fresh double + lookupd."""
    real = real_target_from_env()
    if real is not None:
        yield real
        return
    async with running_nsqd(
        with_lookupd=True, msg_timeout_s=FAST_MSG_TIMEOUT_S, **FAST_SCAN
    ) as nsqd:
        assert nsqd.lookupd is not None
        yield NsqTarget(
            tcp_address=nsqd.tcp_address,
            http_address=nsqd.http_address,
            lookupd_http_address=nsqd.lookupd.http_address,
            msg_timeout_s=FAST_MSG_TIMEOUT_S,
            scan_late_s=DOUBLE_SCAN_LATE_S,
            double=nsqd,
        )


@pytest.fixture
async def connect(target: NsqTarget) -> AsyncIterator[ClientFactory]:
    """Open raw protocol clients to the target; all are closed after the test."""
    clients: list[RawClient] = []

    async def factory(*, auto_nop: bool = True, address: str | None = None) -> RawClient:
        client = await RawClient.connect(address or target.tcp_address, auto_nop=auto_nop)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def http() -> AsyncIterator[Http]:
    helper = Http()
    yield helper
    await helper.close()


@pytest.fixture
def topic() -> str:
    return unique_name("topic")
