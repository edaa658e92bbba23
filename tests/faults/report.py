"""Turn the fault suite's ledger lines (``KF_FAULTS_REPORT=path``) into a Markdown table.

KF_FAULTS_REPORT=/tmp/faults.jsonl .venv/bin/pytest -q tests/faults
.venv/bin/python tests/faults/report.py /tmp/faults.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEAD = (
    "| scenario | bus | requests sent | ok | error | lost | events published | handled "
    "| dead | duplicates | lost with memory | lost | poison sent / dead "
    "| slow conns / closed (max s) | recovery s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def row(line: dict) -> str:  # type: ignore[type-arg]
    r, e = line["requests"], line["events"]
    poison = f"{line['poison_sent']} / {line['poison_dead']}" if "poison_sent" in line else "-"
    slow = (
        f"{line['slow_connections']} / {line['slow_closed']} ({line['slow_closed_max_s']})"
        if "slow_connections" in line
        else "-"
    )
    recovery = "-" if line["recovery_s"] is None else f"{line['recovery_s']:.2f}"
    cells = [line["scenario"], line["bus"], r["sent"], r["ok"], r["error"], r["lost"]]
    cells += [e["published"], e["handled"], e["dead"], e["duplicates"]]
    cells += [e["lost_with_memory"], e["lost"], poison, slow, recovery]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main(path: str) -> None:
    lines = [json.loads(t) for t in Path(path).read_text().splitlines() if t.strip()]
    print(HEAD)
    for line in lines:
        print(row(line))


if __name__ == "__main__":
    main(sys.argv[1])
