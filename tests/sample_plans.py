"""The sample stacks (dev, prod, the teams fixture, dev with its service on) planned in-process once per test process
and shared by every test file that reads them. A plan of an unchanged stack file is the same each time; a test must not
change what it is given (conftest.py checks, at the end of the session, that each is still what was planned)."""

from __future__ import annotations

import hashlib
import json
import tempfile
from functools import cache
from pathlib import Path

import yaml

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


def _keep(key: str, result: PlanResult) -> PlanResult:
    _planned[key] = (result, fingerprint(result))  # rendered now: the fingerprint covers it
    return result


@cache
def planned(stack: str) -> PlanResult:
    """The sample stack's plan, as `run_program(<its stack file>, stack)` returns it."""
    return _keep(stack, run_program(SAMPLES[stack], stack))


@cache
def planned_dev_with_service() -> PlanResult:
    """The dev sample with its radstream-triton service turned on (it ships off), planned like the sample."""
    raw = yaml.safe_load(SAMPLES["dev"].read_text())
    raw["config"]["simfleet:services"][0]["enabled"] = True
    path = Path(tempfile.mkdtemp(prefix="simfleet-plan-")) / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return _keep("dev with its service on", run_program(path, "dev"))


def changed() -> list[str]:
    """The shared plans a test changed since they were planned."""
    return [key for key, (result, digest) in _planned.items() if fingerprint(result) != digest]
