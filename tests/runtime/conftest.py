"""Fixtures of the runtime's process tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.procs import Proc


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test started; killed at the end whatever happened."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()
