"""The suite itself, in-process on the memory bus: it passes a conforming function and
catches one that breaks the conventions (fast; the real-Valkey runs are in
test_conformance.py)."""

from __future__ import annotations

from typing import Any

from kubefuncs import conformance, testing

from tests.conformance.conformance_fn import serve


def options(h: testing.Harness, **kw: Any) -> conformance.Options:
    url = h.client.transport.url
    return conformance.Options(url, h.topic, h.channel, timeout_s=2, **kw)


async def test_a_conforming_function_passes_on_the_memory_bus() -> None:
    async with testing.run(serve, topic="conf", max_attempts=2, backoff_s=0.05) as h:
        results = await conformance.run(options(h, dead_letter_timeout_s=5))
    by_name = {r.name: r for r in results}
    assert by_name.pop("redelivery-after-crash").ok is None  # Valkey only, for now
    assert by_name.pop("poison-entry").ok is None  # stream entries: Valkey only
    assert all(r.ok for r in by_name.values()), [r.line() for r in results]


async def test_a_function_ignoring_the_conventions_fails() -> None:
    # Given a function that answers everything with its payload
    async def parrot(payload: Any) -> Any:
        return payload

    async with testing.run(parrot, topic="parrot") as h:
        # When the suite checks request/reply and error replies
        results = await conformance.run(
            options(h, dead_letter_timeout_s=0.5),
            only=["request-reply", "error-reply", "retry-then-dead-letter", "expired-deadline"],
        )
    # Then those fail with a reason, and a deadline it keeps still passes
    outcome = {r.name: r.ok for r in results}
    assert outcome == {
        "request-reply": False,
        "error-reply": False,
        "retry-then-dead-letter": False,
        "expired-deadline": True,
    }
    assert "expected 'error'" in results[1].detail
    assert not conformance.passed(results)


def test_result_lines_name_the_status() -> None:
    assert conformance.Result("x", True, "d").line().startswith("PASS x ")
    assert conformance.Result("x", False, "d").line().startswith("FAIL x ")
    assert conformance.Result("x", None, "d").line().startswith("SKIP x ")
    assert conformance.passed([conformance.Result("x", None, "")])


def test_options_default_channel_and_visibility_from_the_url() -> None:
    opts = conformance.Options("valkey://h:6379/0?visibility_timeout_s=7", "t").resolved()
    assert (opts.channel, opts.visibility_timeout_s) == ("t", 7.0)
    assert conformance.Options("valkey://h/0", "t").resolved().visibility_timeout_s == 30.0
