"""docs/failures.md names a test for every fault it lists: each named test exists, and every fault-injection test is
named there, so the table and the suite cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "failures.md").read_text()
TESTS = ROOT / "tests"


def _defined(file: str, name: str) -> bool:
    return f"def {name}(" in (TESTS / file).read_text()


def test_every_test_the_failure_table_names_exists() -> None:
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)(?:\[[^\]]+\])?`", DOC)
    assert len(named) >= 25
    assert [(file, name) for file, name in named if not _defined(file, name)] == []
    # `::test_x` after a first reference names another test of the same file.
    for file, more in re.findall(r"`(test_\w+\.py)::test_\w+`((?:, `::test_\w+`)+)", DOC):
        for name in re.findall(r"::(test_\w+)", more):
            assert _defined(file, name), (file, name)


def test_every_fault_injection_test_is_in_the_failure_table() -> None:
    for path in sorted(TESTS.glob("test_faults_*.py")):
        for name in re.findall(r"^def (test_\w+)\(", path.read_text(), re.M):
            if name == "test_progress_is_published_while_the_run_goes":
                continue  # a record, not a fault: docs/records.md
            assert f"{path.name}::{name}" in DOC, f"{path.name}::{name} is not in docs/failures.md"


def test_the_measured_sigterm_path_is_within_the_spot_notice() -> None:
    seconds = float(re.search(r"`index.json` was written \*\*([\d.]+) s\*\*", DOC).group(1))  # type: ignore[union-attr]
    assert 0 < seconds <= 120
