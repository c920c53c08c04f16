"""The sample stacks (dev, prod, the teams fixture, dev with its service on) planned once per test session and shared by
every test file and pytest-xdist worker that reads them: the first process to ask plans it in-process and stores it
(pickled, in the session's directory, under a lock); the others load it. A plan of an unchanged stack file is the same
each time (tests/test_test_support.py compares one with a fresh plan), and a test must not change what it is given
(conftest.py checks, at the end of each process, that each is still what was planned)."""

from __future__ import annotations

import hashlib
import json
import pickle
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

import project_commands
import yaml

from config.sources import load_yaml
from tools.plan import PlanResult, run_program

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = {
    "dev": ROOT / "Pulumi.dev.yaml",
    "prod": ROOT / "Pulumi.prod.yaml",
    "teams": ROOT / "tests" / "fixtures" / "teams" / "Pulumi.teams.yaml",
}
_planned: dict[str, tuple[PlanResult, str]] = {}


def fingerprint(result: PlanResult) -> str:
    """A digest of everything a test reads from a plan (not the time it took)."""
    data = {
        "registrations": [r.as_json() for r in result.registrations],
        "rendered": result.rendered,
        "outputs": result.outputs,
        "warnings": result.warnings,
        "secret_outputs": sorted(result.secret_outputs),
        "config": result.config,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=repr).encode()).hexdigest()


def _shared(key: str, plan: Callable[[], PlanResult]) -> PlanResult:
    if project_commands.session_root is None:  # outside a pytest session: planned here
        result = plan()
    else:
        shared = project_commands.session_root / "sample-plans"
        stored = shared / f"{key}.pickle"
        with project_commands.locked(shared / f"{key}.lock"):
            if stored.exists():
                result = pickle.loads(stored.read_bytes())
            else:
                result = plan()
                result.rendered  # noqa: B018 -- rendered now, so that every process loads it rendered
                project_commands.write_whole(stored, pickle.dumps(result))
    _planned[key] = (result, fingerprint(result))
    return result


@cache
def planned(stack: str) -> PlanResult:
    """The sample stack's plan, as `run_program(<its stack file>, stack)` returns it."""
    return _shared(stack, lambda: run_program(SAMPLES[stack], stack))


@cache
def planned_dev_with_service() -> PlanResult:
    """The dev sample with its radstream-triton service turned on (it ships off), planned like the sample."""

    def plan() -> PlanResult:
        raw = load_yaml(SAMPLES["dev"].read_text())
        raw["config"]["simfleet:services"][0]["enabled"] = True
        path = Path(tempfile.mkdtemp(prefix="simfleet-plan-")) / "Pulumi.dev.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return run_program(path, "dev")

    return _shared("dev-with-service", plan)


def changed() -> list[str]:
    """The shared plans a test changed since they were planned or loaded."""
    return [key for key, (result, digest) in _planned.items() if fingerprint(result) != digest]
