"""The ledger of one fault scenario: what was sent and what became of each of them.

HTTP requests end in exactly one of: ``ok`` (200 with the body the function computes from
that very request), ``error`` (a 4xx/5xx with a JSON reason), ``wrong`` (200 with another
request's body), ``unexplained`` (an error status without a reason) or ``lost`` (no answer:
connection dropped, or hung past the client's time-out). Events are published, then
handled (recorded by the function), dead-lettered, or lost; at-least-once allows
duplicates, counted apart. With ``KF_FAULTS_REPORT=path`` each scenario appends its ledger
as one JSON line (tests/faults/report.py turns the file into a Markdown table).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Requests:
    """HTTP outcomes, with the time each request was sent (monotonic seconds)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    samples: dict[str, list[str]] = field(default_factory=dict)
    ok_sent_at: list[float] = field(default_factory=list)
    bad_sent_at: list[float] = field(default_factory=list)  # anything but ok

    def note(self, outcome: str, sent_at: float, status: int = 0, detail: str = "") -> None:
        self.outcomes[outcome] += 1
        if status:
            self.statuses[status] += 1
        (self.ok_sent_at if outcome == "ok" else self.bad_sent_at).append(sent_at)
        if outcome != "ok":
            kept = self.samples.setdefault(outcome, [])
            if len(kept) < 5:
                kept.append(detail)

    @property
    def sent(self) -> int:
        return sum(self.outcomes.values())

    def recovery_s(self, fault_over_at: float) -> float | None:
        """From the end of the fault to the first request sent after it that got its answer."""
        after = [t for t in self.ok_sent_at if t >= fault_over_at]
        return min(after) - fault_over_at if after else None

    def failed_after(self, at: float) -> int:
        return sum(1 for t in self.bad_sent_at if t >= at)


@dataclass
class Events:
    """Event ids published (with when the bus took them) and what the function did."""

    published: dict[str, float] = field(default_factory=dict)  # id -> monotonic ack time
    publish_refused: int = 0  # publish raised: the publisher knows, nothing to account
    handled: Counter[str] = field(default_factory=Counter)  # id -> times handled
    dead: dict[str, str] = field(default_factory=dict)  # id -> reason

    def lost_ids(self) -> set[str]:
        return set(self.published) - set(self.handled) - set(self.dead)

    def lost_with_memory(self, crash_at: float | None) -> set[str]:
        """Lost ids the bus took before ``crash_at``: gone with a server that kept nothing."""
        if crash_at is None:
            return set()
        return {i for i in self.lost_ids() if self.published[i] < crash_at}

    def duplicates(self) -> int:
        return sum(n - 1 for n in self.handled.values())


@dataclass
class Ledger:
    scenario: str
    bus: str
    requests: Requests = field(default_factory=Requests)
    events: Events = field(default_factory=Events)
    crash_at: float | None = None  # when a bus without persistence lost its memory
    recovery_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # scenario-specific figures
    started: float = field(default_factory=time.monotonic)

    def lost_events(self) -> set[str]:
        """Lost events that no documented loss explains: must be empty."""
        return self.events.lost_ids() - self.events.lost_with_memory(self.crash_at)

    def summary(self) -> dict[str, Any]:
        r, e = self.requests.outcomes, self.events
        return {
            "scenario": self.scenario,
            "bus": self.bus,
            "requests": {
                "sent": self.requests.sent,
                "ok": r["ok"],
                "error": r["error"],
                "wrong": r["wrong"],
                "unexplained": r["unexplained"],
                "lost": r["lost"],
                "statuses": {str(k): v for k, v in sorted(self.requests.statuses.items())},
            },
            "events": {
                "published": len(e.published),
                "publish_refused": e.publish_refused,
                "handled": len(set(e.handled) & set(e.published)),
                "dead": len(set(e.dead) & set(e.published)),
                "duplicates": e.duplicates(),
                "lost_with_memory": len(e.lost_with_memory(self.crash_at)),
                "lost": len(self.lost_events()),
            },
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 2),
            "duration_s": round(time.monotonic() - self.started, 1),
            **self.extra,
        }

    def check(self, *, recovery_within_s: float | None = None) -> None:
        """Report, then: every request answered (its own body or a reason), no event lost,
        and, when asked, requests answered again within ``recovery_within_s`` of the fault."""
        self.report()
        s = self.summary()
        r = self.requests
        if recovery_within_s is not None:
            assert self.recovery_s is not None, ("never answered again", s, r.samples)
            assert self.recovery_s <= recovery_within_s, (s, r.samples)
        assert r.outcomes["lost"] == 0, (s, r.samples)
        assert r.outcomes["wrong"] == 0, (s, r.samples)
        assert r.outcomes["unexplained"] == 0, (s, r.samples)
        assert not self.lost_events(), (s, sorted(self.lost_events())[:5])

    def report(self) -> None:
        path = os.environ.get("KF_FAULTS_REPORT")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps(self.summary()) + "\n")
