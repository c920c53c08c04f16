"""What a preflight found and how it is shown: one check, the report of a run, the table and the JSON file."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Status = Literal["ok", "warn", "fail"]
STATUS_LABEL: dict[str, str] = {"ok": "ok", "warn": "warn", "fail": "FAIL"}


@dataclass(frozen=True)
class Check:
    check: str
    wanted: str
    found: str
    status: Status

    def as_json(self) -> dict[str, str]:
        return {"check": self.check, "wanted": self.wanted, "found": self.found, "status": self.status}


@dataclass
class Report:
    stack: str
    source: str
    region: str
    identity: dict[str, str]
    checks: list[Check]
    warnings: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def as_json(self, checked_at: str) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "source": self.source,
            "region": self.region,
            **self.identity,
            "checkedAt": checked_at,
            "ok": not self.failed,
            "exitCode": self.exit_code,
            "checks": [c.as_json() for c in self.checks],
            "configWarnings": list(self.warnings),
        }


# Column widths of the table; longer cells wrap onto the next lines of their row.
WIDTHS = (46, 40, 64)


def format_table(checks: Sequence[Check]) -> str:
    header = ("check", "wanted", "found", "ok")
    rows = [header] + [(c.check, c.wanted, c.found, STATUS_LABEL[c.status]) for c in checks]
    widths = [min(limit, max(len(row[i]) for row in rows)) for i, limit in enumerate(WIDTHS)]
    lines: list[str] = []
    for number, row in enumerate(rows):
        cells = [textwrap.wrap(cell, width, break_on_hyphens=False) or [""] for cell, width in zip(row[:3], widths, strict=True)]
        height = max(len(cell) for cell in cells)
        for i in range(height):
            parts = [(cell[i] if i < len(cell) else "").ljust(width) for cell, width in zip(cells, widths, strict=True)]
            lines.append("  ".join([*parts, row[3] if i == 0 else ""]).rstrip())
        if number == 0:
            lines.append("  ".join("-" * w for w in [*widths, 4]))
    return "\n".join(lines)


def summary(report: Report) -> str:
    counts = {status: sum(1 for c in report.checks if c.status == status) for status in ("ok", "warn", "fail")}
    who = f", account {report.identity['account']}" if report.identity else ""
    return (
        f"preflight {report.stack} ({report.region}{who}): {len(report.checks)} checks, {counts['ok']} ok, "
        f"{counts['warn']} warnings, {counts['fail']} failed"
    )


def write_report(report: Report, out_dir: Path, checked_at: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{report.stack}.json"
    path.write_text(json.dumps(report.as_json(checked_at), indent=2) + "\n")
    return path
