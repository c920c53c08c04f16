"""The GitHub workflows: they parse, have the jobs and steps CI relies on, pin actions, and gate secrets."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from config.sources import load_yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
# A full commit SHA; a tag, even an exact one, can be moved to other code.
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
# In the file, each pinned `uses:` line names the release it is: `uses: owner/action@<sha> # v1.2.3`.
USES_LINE = re.compile(r"^\s*(?:- )?uses:\s*(?P<ref>\S+)(?:\s+#\s*(?P<tag>\S+))?\s*$")
GATE = "steps.gate.outputs.configured == 'true'"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = load_yaml((ROOT / ".github" / "workflows" / name).read_text())
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


def test_preview_is_skipped_with_a_notice_without_its_environment_or_from_a_fork() -> None:
    gate = next(s for s in steps(load("pull-request.yml")["jobs"]["preview"]) if s.get("id") == "gate")
    assert "configured=false" in gate["run"] and "::notice" in gate["run"] and "GITHUB_STEP_SUMMARY" in gate["run"]
    assert set(gate["env"]) >= {"AWS_ROLE_ARN", "PULUMI_BACKEND_URL", "PULUMI_ACCESS_TOKEN", "HEAD_REPOSITORY", "REPOSITORY"}
    assert '[ "$HEAD_REPOSITORY" = "$REPOSITORY" ]' in gate["run"]


def test_previews_use_a_read_only_environment_and_no_repository_level_secret() -> None:
    preview = load("pull-request.yml")["jobs"]["preview"]
    # Each stack's preview reads its own environment: a read-only preview role, never a deploy environment's.
    assert preview["environment"] == "preview-${{ matrix.stack }}"
    for job_name, job in load("pull-request.yml")["jobs"].items():
        text = str(job)
        if "secrets." in text or "vars.AWS_ROLE_ARN" in text:
            assert str(job.get("environment", "")).startswith("preview-"), f"{job_name} reads repository-level settings"
    credentials = next(s for s in steps(preview) if "configure-aws-credentials" in str(s.get("uses", "")))
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"


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


@pytest.mark.parametrize(("job", "stack"), [("up-dev", "dev"), ("up-prod", "prod")])
def test_preflight_runs_after_the_credentials_and_before_pulumi_up(job: str, stack: str) -> None:
    job_steps = steps(load("deploy.yml")["jobs"][job])
    position = {
        "credentials": next(i for i, s in enumerate(job_steps) if "configure-aws-credentials" in str(s.get("uses", ""))),
        "preflight": next(i for i, s in enumerate(job_steps) if f"make preflight STACK={stack} " in str(s.get("run", ""))),
        "up": next(i for i, s in enumerate(job_steps) if str(s.get("uses", "")).startswith("pulumi/actions@")),
    }
    assert position["credentials"] < position["preflight"] < position["up"], position
    preflight = job_steps[position["preflight"]]
    assert preflight["if"] == GATE
    # Its exit status is the step's (a failed check stops the job before `pulumi up`), after the summary is written.
    assert "exit $status" in preflight["run"] and "GITHUB_STEP_SUMMARY" in preflight["run"]
    assert "secrets." not in str(preflight) and "continue-on-error" not in preflight


@pytest.mark.parametrize(("workflow", "job", "step"), all_steps(), ids=lambda v: v if isinstance(v, str) else "")
def test_actions_are_pinned(workflow: str, job: str, step: dict[str, Any]) -> None:
    uses = step.get("uses")
    if uses is not None:
        assert PINNED.match(uses), f"{workflow} {job}: {uses} is not pinned to a full commit SHA"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_sha_pin_names_its_release_and_one_sha_per_release(path: Path) -> None:
    pins: dict[str, set[str]] = {}
    for line in path.read_text().splitlines():
        match = USES_LINE.match(line)
        if not match:
            continue
        tag = match["tag"]
        assert tag and re.match(r"^v\d+\.\d+\.\d+$", tag), f"{path.name}: {line.strip()!r} lacks its `# vX.Y.Z` comment"
        pins.setdefault(f"{match['ref'].split('@')[0]}@{tag}", set()).add(match["ref"].split("@")[1])
    assert pins
    assert all(len(shas) == 1 for shas in pins.values()), f"{path.name}: a release pinned to two SHAs: {pins}"


def test_checkout_never_persists_credentials() -> None:
    checkouts = [(w, j, s) for w, j, s in all_steps() if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert checkouts
    for workflow, job, step in checkouts:
        assert (step.get("with") or {}).get("persist-credentials") is False, f"{workflow} {job}: checkout persists the token"


def test_every_job_states_least_permissions() -> None:
    for path in WORKFLOWS:
        workflow = load(path.name)
        # Nothing by default; each job asks for what it uses.
        assert workflow["permissions"] == {}, path.name
        for job_name, job in workflow["jobs"].items():
            permissions = job.get("permissions")
            assert isinstance(permissions, dict) and permissions, f"{path.name}: job {job_name} states no permissions"
            assert "write-all" not in str(permissions) and permissions.get("contents") == "read", (path.name, job_name)
            writes = {k for k, v in permissions.items() if v == "write"}
            uses_oidc = any("configure-aws-credentials" in str(s.get("uses", "")) for s in steps(job))
            assert ("id-token" in writes) == uses_oidc, f"{path.name}: {job_name} id-token write without OIDC (or missing)"


def test_zizmor_offline_finds_nothing() -> None:
    zizmor = Path(sys.executable).parent / "zizmor"
    if not zizmor.exists():
        pytest.skip("zizmor is not installed in this environment (requirements-dev.txt pins it)")
    done = subprocess.run(
        [str(zizmor), "--offline", str(ROOT / ".github" / "workflows")], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout + done.stderr


def test_deploys_run_on_the_stacks_runner_group_and_a_first_deploy_bootstraps_the_network() -> None:
    workflow = load("deploy.yml")
    jobs = workflow["jobs"]
    inputs = triggers(workflow)["workflow_dispatch"]["inputs"]["bootstrap"]
    assert inputs["options"] == ["none", "dev", "prod"] and inputs["default"] == "none"
    bootstrap = jobs["bootstrap"]
    assert "inputs.bootstrap != 'none'" in bootstrap["if"] and bootstrap["environment"] == "${{ inputs.bootstrap }}"
    up = next(s for s in steps(bootstrap) if str(s.get("uses", "")).startswith("pulumi/actions@"))
    assert up["env"]["SIMFLEET_BOOTSTRAP"] == "network" and up["with"]["stack-name"] == "${{ inputs.bootstrap }}"
    for job, variable in (("up-dev", "DEV_RUNNER_GROUP"), ("up-prod", "PROD_RUNNER_GROUP")):
        # A runner group that only deploy.yml on main may use, never a label any workflow could name.
        assert jobs[job]["runs-on"] == {"group": f"${{{{ vars.{variable} }}}}"}
        # Without the group the job does not run (a job waiting for a runner that never comes would hang for a day).
        assert f"vars.{variable} != ''" in jobs[job]["if"]
        pulumi = next(s for s in steps(jobs[job]) if str(s.get("uses", "")).startswith("pulumi/actions@"))
        assert "SIMFLEET_BOOTSTRAP" not in (pulumi.get("env") or {})
    notice = next(s for s in steps(jobs["test"]) if "RUNNER_GROUP" in str(s.get("env", "")))
    assert set(notice["env"]) == {"DEV_RUNNER_GROUP", "PROD_RUNNER_GROUP"} and "::notice" in notice["run"]


def test_self_hosted_jobs_use_the_runners_python_not_setup_python() -> None:
    # actions/setup-python supports no Amazon Linux; the runner installs python3.11, which the Makefile picks by name.
    self_hosted = []
    for workflow in WORKFLOWS:
        for job_name, job in load(workflow.name)["jobs"].items():
            if isinstance(job["runs-on"], dict):
                self_hosted.append(job_name)
                assert not any("actions/setup-python" in str(s.get("uses", "")) for s in steps(job)), job_name
                assert any(s.get("run") == "make venv" for s in steps(job)), job_name
    assert sorted(self_hosted) == ["up-dev", "up-prod"]


def test_no_workflow_creates_a_stack_and_every_one_names_the_backend() -> None:
    # One path: each stack is made once by `pulumi stack init` (docs/operators.md); a workflow meeting a missing stack
    # fails instead of creating one half-way (without the secrets provider an S3 backend needs).
    for workflow, job, step in all_steps():
        if str(step.get("uses", "")).startswith("pulumi/actions@"):
            inputs = step["with"]
            assert "upsert" not in inputs, (workflow, job)
            assert inputs["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}", (workflow, job)
            assert step["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}", (workflow, job)


@pytest.mark.parametrize("job", ["bootstrap", "up-dev", "up-prod"])
def test_deploy_gates_accept_either_state_backend(job: str) -> None:
    gate = next(s for s in steps(load("deploy.yml")["jobs"][job]) if s.get("id") == "gate")
    assert gate["env"] == {
        "AWS_ROLE_ARN": "${{ vars.AWS_ROLE_ARN }}",
        "PULUMI_BACKEND_URL": "${{ vars.PULUMI_BACKEND_URL }}",
        "PULUMI_ACCESS_TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN }}",
    }
    assert '{ [ -n "$PULUMI_BACKEND_URL" ] || [ -n "$PULUMI_ACCESS_TOKEN" ]; }' in gate["run"]


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
    regions = {load_yaml(p.read_text())["config"]["aws:region"] for p in ROOT.glob("Pulumi.*.yaml")}
    for path in WORKFLOWS:
        assert {load(path.name)["env"]["AWS_REGION"]} == regions, path.name


def test_pulumi_cli_matches_the_pinned_sdk() -> None:
    sdk = re.search(r"^pulumi==([\d.]+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert sdk is not None
    for path in WORKFLOWS:
        assert str(load(path.name)["env"]["PULUMI_VERSION"]) == sdk[1], path.name
