"""The language x bus x check table of docs/other-languages.md is rendered from a test
report (tests/conformance/report.py), and the page's table covers every check and language
the tests have now."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conformance import report
from tests.conformance.functions import LANGUAGES


def test_outcomes_are_merged_into_the_report_file(tmp_path: Path) -> None:
    # Given a report file from an earlier run, and a session that re-ran one check
    path = tmp_path / "conformance.json"
    earlier = report.Report()
    earlier.record("go", "valkey", "a", False, "broken")
    earlier.record("go", "nsq", "a", True, "")
    earlier.write(path)
    now = report.Report()
    now.record("go", "valkey", "a", True, "")
    # When it is written
    now.write(path)
    # Then this session's outcome wins and the other one is kept
    rows = {(r["bus"], r["check"]): r["status"] for r in report.load(path)["rows"]}
    assert rows == {("valkey", "a"): "PASS", ("nsq", "a"): "PASS"}


def test_checking_records_pass_fail_and_skip_with_the_reason() -> None:
    r = report.Report()
    with r.checking("go", "nsq", "ok"):
        pass
    with pytest.raises(AssertionError), r.checking("go", "nsq", "bad"):
        raise AssertionError("no reply\nmore")
    with pytest.raises(pytest.skip.Exception), r.checking("go", "nsq", "n/a"):
        pytest.skip("go is not installed")
    got = {k[2]: (v["status"], v["detail"]) for k, v in r.rows.items()}
    assert got == {
        "ok": ("PASS", ""),
        "bad": ("FAIL", "AssertionError: no reply"),
        "n/a": ("SKIP", "go is not installed"),
    }


def test_the_table_has_a_row_per_check_and_numbered_reasons() -> None:
    doc = {
        "generated": "today",
        "rows": [
            {"language": "go", "bus": "valkey", "check": "a", "status": "PASS", "detail": ""},
            {"language": "go", "bus": "nsq", "check": "a", "status": "SKIP", "detail": "why"},
        ],
    }
    table = report.render(doc, ["a", "b"], ["go"])
    assert "| check | go / valkey | go / nsq |" in table
    assert "| `a` | PASS | SKIP (1) |" in table
    assert "| `b` | not run | not run |" in table
    assert "1. why" in table


def test_splice_replaces_only_between_the_markers() -> None:
    page = f"before\n{report.START}\nold\n{report.END}\nafter\n"
    assert report.splice(page, "new") == f"before\n{report.START}\nnew\n{report.END}\nafter\n"


def test_the_page_table_covers_every_check_and_language() -> None:
    # the table is regenerated (python -m tests.conformance.report) when checks or
    # languages change; here only its shape is compared, not the run's outcomes
    page = report.DOC.read_text()
    table = page.split(report.START)[1].split(report.END)[0]
    checks = re.findall(r"^\| `([a-z0-9-]+)` \|", table, re.M)
    assert checks == report.table_checks()
    header = next(line for line in table.splitlines() if line.startswith("| check |"))
    assert (
        header
        == "| check | "
        + " | ".join(f"{lang} / {bus}" for lang in LANGUAGES for bus in ("valkey", "nsq"))
        + " |"
    )
    assert "not run" not in table and "FAIL" not in table
