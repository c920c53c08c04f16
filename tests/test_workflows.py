"""The GitHub workflows: they parse, have the jobs and steps CI relies on, pin actions, and gate secrets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
# An exact release tag (v1.2.3) or a full commit SHA; a moving major (@v6) is not a pin.
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")
GATE = "steps.gate.outputs.configured == 'true'"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    return document


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    on = workflow.get("on", workflow.get(True))
    assert isinstance(on, dict)
    return on


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps") or [])


def all_steps() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path.name, job_name, step)
        for path in WORKFLOWS
        for job_name, job in load(path.name)["jobs"].items()
        for step in steps(job)
    ]


def test_workflows_exist_and_parse() -> None:
    assert {p.name for p in WORKFLOWS} == {"pull-request.yml", "deploy.yml"}
    for path in WORKFLOWS:
        workflow = load(path.name)
        assert workflow["name"] and workflow["jobs"], path.name
        for job_name, job in workflow["jobs"].items():
            assert steps(job), f"{path.name}: job {job_name} has no steps"
            assert job.get("timeout-minutes"), f"{path.name}: job {job_name} has no timeout"


def test_pull_request_runs_tests_then_plan_then_preview() -> None:
    workflow = load("pull-request.yml")
    assert "pull_request" in triggers(workflow)
    jobs = workflow["jobs"]
    assert [s.get("run") for s in steps(jobs["test"]) if s.get("run")] == ["make test"]
    assert jobs["plan"]["needs"] == "test"
    assert jobs["plan"]["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    plan_run = next(s["run"] for s in steps(jobs["plan"]) if "make plan" in s.get("run", ""))
    assert "GITHUB_STEP_SUMMARY" in plan_run and "exit $status" in plan_run
    assert not any("secrets." in str(s) for s in steps(jobs["plan"])), "the offline plan needs no credentials"
    preview = jobs["preview"]
    assert preview["needs"] == "plan" and preview["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    pulumi = next(s for s in steps(preview) if str(s.get("uses", "")).startswith("pulumi/actions@"))
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["policyPacks"] == "policies"
    assert pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
    assert preview["permissions"]["id-token"] == "write"


def test_preview_is_skipped_with_a_notice_without_secrets() -> None:
    gate = next(s for s in steps(load("pull-request.yml")["jobs"]["preview"]) if s.get("id") == "gate")
    assert "configured=false" in gate["run"] and "::notice" in gate["run"] and "GITHUB_STEP_SUMMARY" in gate["run"]
    assert set(gate["env"]) >= {"AWS_ROLE_ARN", "PULUMI_ACCESS_TOKEN"}


def test_main_deploys_dev_then_prod_behind_a_protected_environment() -> None:
    workflow = load("deploy.yml")
    assert triggers(workflow)["push"]["branches"] == ["main"]
    assert workflow["concurrency"]["cancel-in-progress"] is False
    jobs = workflow["jobs"]
    assert jobs["up-dev"]["needs"] == "test" and jobs["up-dev"]["environment"] == "dev"
    assert jobs["up-prod"]["needs"] == "up-dev" and jobs["up-prod"]["environment"] == "prod"
    for job, stack in (("up-dev", "dev"), ("up-prod", "prod")):
        pulumi = next(s for s in steps(jobs[job]) if str(s.get("uses", "")).startswith("pulumi/actions@"))
        assert pulumi["with"]["command"] == "up" and pulumi["with"]["stack-name"] == stack
        assert pulumi["with"]["policyPacks"] == "policies"


@pytest.mark.parametrize(("workflow", "job", "step"), all_steps(), ids=lambda v: v if isinstance(v, str) else "")
def test_actions_are_pinned(workflow: str, job: str, step: dict[str, Any]) -> None:
    uses = step.get("uses")
    if uses is not None:
        assert PINNED.match(uses), f"{workflow} {job}: {uses} is not pinned to an exact tag or commit SHA"


def test_secrets_only_in_gated_steps() -> None:
    for path in WORKFLOWS:
        workflow = load(path.name)
        assert "secrets." not in str(workflow.get("env", "")), f"{path.name}: secrets in workflow-level env"
        for job_name, job in workflow["jobs"].items():
            outside_steps = {k: v for k, v in job.items() if k != "steps"}
            assert "secrets." not in str(outside_steps), f"{path.name}: job {job_name} references secrets outside its steps"
            for step in steps(job):
                if "secrets." not in str(step):
                    continue
                gated = step.get("id") == "gate" or step.get("if") == GATE
                assert gated, (
                    f"{path.name}: job {job_name} step {step.get('name') or step.get('uses')} uses secrets without the gate"
                )
                if step.get("id") == "gate":
                    assert "if" not in step and "uses" not in step, "the gate only tests whether the secrets are set"
                    assert "secrets." not in step["run"], "the gate reads secrets through env, never inlined in the script"


def test_steps_after_the_gate_are_all_gated() -> None:
    for path in WORKFLOWS:
        for job_name, job in load(path.name)["jobs"].items():
            ids = [s.get("id") for s in steps(job)]
            if "gate" not in ids:
                continue
            assert ids[0] == "gate", f"{path.name}: {job_name} must check the secrets first"
            assert all(s.get("if") == GATE for s in steps(job)[1:]), f"{path.name}: {job_name} has an ungated step"


def test_workflow_region_matches_the_stack_files() -> None:
    regions = {yaml.safe_load(p.read_text())["config"]["aws:region"] for p in ROOT.glob("Pulumi.*.yaml")}
    for path in WORKFLOWS:
        assert {load(path.name)["env"]["AWS_REGION"]} == regions, path.name


def test_pulumi_cli_matches_the_pinned_sdk() -> None:
    sdk = re.search(r"^pulumi==([\d.]+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert sdk is not None
    for path in WORKFLOWS:
        assert str(load(path.name)["env"]["PULUMI_VERSION"]) == sdk[1], path.name
