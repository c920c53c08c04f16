"""Deleting runs is loud (issue #16 item 10): a misspelt simfleet: key is an error, and a change that deletes deployed
runs lists them with what each loses, and stops unless the stack file acknowledges a running one or more than the
limit. The program does this before anything is registered, from its own stack's outputs, so `pulumi preview`,
`pulumi up` and the offline plan (against a stack export) say the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc
import pulumi
import pytest
import yaml

from config import DeletionsConfig, load_stack_config
from config.errors import ConfigError
from config.sources import load_yaml
from tools import plan
from tools.mocks import SimfleetMocks
from workloads import deletions
from workloads.deletions import Deletion, problems

ROOT = Path(__file__).resolve().parent.parent


def stack_file(tmp_path: Path, edit: Any = None, name: str = "Pulumi.dev.yaml") -> Path:
    document = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())
    if edit is not None:
        edit(document["config"])
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    return path


def deployed_outputs(**statuses: str) -> dict[str, Any]:
    """The `runs` and `jobs` outputs of a deployed dev stack (workloads/runs.py _summary, workloads/jobs.py)."""
    runs = {
        name: {"jobName": name, "specHash": "0123456789ab", "artifactsUri": f"s3://art/runs/{name}/0123456789ab/", "status": st}
        for name, st in statuses.items()
        if name != "robocache-resample"
    }
    jobs = {
        name: {"jobName": name, "specHash": "ba9876543210", "outputsUri": f"s3://art/jobs/{name}/ba9876543210/", "status": st}
        for name, st in statuses.items()
        if name == "robocache-resample"
    }
    return {"runs": runs, "jobs": jobs, "clusterName": "simfleet-dev"}


def export(tmp_path: Path, outputs: dict[str, Any]) -> Path:
    """A `pulumi stack export` holding the stack resource with these outputs (and no SimRuns: not needed here)."""
    stack = {
        "urn": "urn:pulumi:dev::simfleet::pulumi:pulumi:Stack::simfleet-dev",
        "type": "pulumi:pulumi:Stack",
        "outputs": outputs,
    }
    path = tmp_path / "dev-export.json"
    path.write_text(json.dumps({"version": 3, "deployment": {"resources": [stack]}}))
    return path


def plan_against(tmp_path: Path, config: Path, against: Path) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = plan.main(["--config", str(config), "--out", str(tmp_path / "out"), "--against", str(against)])
    return code, out.getvalue(), err.getvalue()


# -- a misspelt simfleet: key ------------------------------------------------------------------------------------


def test_a_misspelt_runs_key_fails_the_plan_with_a_suggestion(tmp_path: Path) -> None:
    """`simfleet:run:` used to plan cleanly with `runs: 0` (and a `pulumi up` then deleted every run)."""
    path = stack_file(tmp_path, lambda config: config.update({"simfleet:run": config.pop("simfleet:runs")}))
    with pytest.raises(plan.PlanConfigError) as err:
        plan.run_program(path, "dev")
    assert "simfleet:run: unknown key; did you mean simfleet:runs?" in str(err.value)
    assert plan.main(["--config", str(path), "--out", str(tmp_path / "out")]) == 2


@pytest.mark.parametrize("key, suggestion", [("simfleet:job", "simfleet:jobs"), ("simfleet:Services", "simfleet:services")])
def test_every_unknown_simfleet_key_is_named(key: str, suggestion: str) -> None:
    platform = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"]["simfleet:platform"]
    with pytest.raises(ConfigError) as err:
        load_stack_config(platform, [], stack="dev", source="Pulumi.dev.yaml", config_keys=["aws:region", key], offline=True)
    assert f"{key}: unknown key; did you mean {suggestion}?" in str(err.value)


def test_keys_of_other_namespaces_are_not_ours() -> None:
    platform = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"]["simfleet:platform"]
    keys = ["aws:region", "aws:profile", "pulumi:disable-default-providers", "simfleet:runs", "simfleet:deletions"]
    cfg = load_stack_config(platform, [], stack="dev", source="x", config_keys=keys, offline=True)
    assert cfg.deletions == DeletionsConfig()


# -- the rule, pure ----------------------------------------------------------------------------------------------


def d(name: str, status: str | None) -> Deletion:
    return Deletion(name, "run", status, f"s3://art/runs/{name}/h/")


def test_what_each_deletion_loses() -> None:
    assert "its pod is stopped" in d("a", "Running").what_is_lost()
    assert "status unknown" in d("a", None).what_is_lost()
    finished = d("a", "Succeeded").what_is_lost()
    assert finished.startswith("finished (Succeeded): only its Job goes") and "stay in S3 (s3://art/runs/a/h/)" in finished


@pytest.mark.parametrize("seen", ["Queued", "Waiting"])
def test_a_run_not_started_at_the_last_up_may_be_running_now(seen: str) -> None:
    """Every run is created suspended, so the stack's outputs say Queued after the `up` that created it, and keep
    saying so (a SimRun's outputs change only when it is updated or refreshed) while Kueue runs it for days. A
    released continuation (Waiting) starts the same way. Deleting one is deleting a run that may be running."""
    [problem] = problems([d("a", seen)], DeletionsConfig())
    assert problem.startswith(f"run a may be running ({seen} at the last `pulumi up`")
    assert "its pod is stopped" in problem
    assert problems([d("a", seen)], DeletionsConfig(acknowledge=["a"])) == []


def test_a_blocked_continuation_never_starts() -> None:
    assert d("a", "Blocked").what_is_lost().startswith("Blocked, never started: it will not run")
    assert problems([d("a", "Blocked")], DeletionsConfig()) == []


def test_a_few_finished_runs_go_without_acknowledgement() -> None:
    assert problems([d("a", "Succeeded"), d("b", "Failed"), d("c", "Cancelled")], DeletionsConfig()) == []


def test_a_running_run_needs_acknowledgement() -> None:
    [problem] = problems([d("a", "Running")], DeletionsConfig())
    assert problem.startswith("run a may be running (Running at the last `pulumi up`)")
    assert problems([d("a", "Running")], DeletionsConfig(acknowledge=["a"])) == []
    assert problems([d("a", "Pending")], DeletionsConfig(acknowledge=["a*"])) == []


def test_more_than_the_limit_needs_acknowledgement() -> None:
    many = [d(f"sweep-{i}", "Succeeded") for i in range(5)]
    [problem] = problems(many, DeletionsConfig(limit=3))
    assert problem.startswith("5 unacknowledged deletions, more than simfleet:deletions.limit (3)")
    assert problems(many, DeletionsConfig(limit=3, acknowledge=["sweep-0", "sweep-1"])) == []
    assert problems(many, DeletionsConfig(limit=0, acknowledge=["sweep-*"])) == []


def test_acknowledgements_are_names_or_patterns() -> None:
    with pytest.raises(ValueError, match="are not run or job names"):
        DeletionsConfig(acknowledge=["Trot Baseline"])


# -- under the program: before anything is registered -----------------------------------------------------------


def test_deleting_a_running_run_stops_the_plan_against_a_stack_export(tmp_path: Path) -> None:
    deployed = export(tmp_path, deployed_outputs(**{"trot-baseline": "Succeeded", "trot-sweep": "Running"}))
    config = stack_file(
        tmp_path, lambda c: c.update({"simfleet:runs": [r for r in c["simfleet:runs"] if r["name"] != "trot-sweep"]})
    )
    code, out, err = plan_against(tmp_path, config, deployed)
    assert code == 2, out + err
    assert "this change deletes 1 deployed run(s) and job(s) (trot-sweep); nothing was registered" in err
    assert "run trot-sweep may be running (Running at the last `pulumi up`): its pod is stopped" in err
    assert "acknowledge: [trot-sweep]" in err and "simfleet cancel" in err
    assert not (tmp_path / "out" / "dev" / "resources.json").exists(), "nothing planned, nothing written"


def test_an_acknowledged_deletion_plans_and_is_listed_with_what_it_loses(tmp_path: Path) -> None:
    deployed = export(tmp_path, deployed_outputs(**{"trot-baseline": "Succeeded", "trot-sweep": "Running"}))

    def edit(config: dict[str, Any]) -> None:
        config["simfleet:runs"] = [r for r in config["simfleet:runs"] if r["name"] != "trot-sweep"]
        config["simfleet:deletions"] = {"acknowledge": ["trot-sweep", "old-*"]}

    code, out, err = plan_against(tmp_path, stack_file(tmp_path, edit), deployed)
    assert code == 0, out + err
    assert "deletions.acknowledge: 'old-*' matches no run or job this change deletes" in out  # a stale acknowledgement


def test_the_typo_that_deleted_every_run_is_stopped_twice(tmp_path: Path) -> None:
    """Even with the key spelt right but the list emptied by a bad merge, the deletions stop the change."""
    statuses = {
        "trot-baseline": "Succeeded",
        "trot-sweep": "Succeeded",
        "trot-continue": "Succeeded",
        "robocache-resample": "Failed",
    }
    deployed = export(tmp_path, deployed_outputs(**statuses))
    config = stack_file(
        tmp_path, lambda c: c.update({"simfleet:runs": [], "simfleet:jobs": [], "simfleet:deletions": {"limit": 2}})
    )
    code, _, err = plan_against(tmp_path, config, deployed)
    assert code == 2 and "4 unacknowledged deletions, more than simfleet:deletions.limit (2)" in err
    assert "job robocache-resample finished (Failed)" in err


class EngineError(grpc.RpcError):
    """What the SDK's monitor stub raises when the engine answers an invoke with an error (a gRPC status)."""

    def __init__(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNKNOWN

    def details(self) -> str:
        return self._details


class RecordingMocks(SimfleetMocks):
    """The mocks, recording the program's readStackOutputs invokes and failing the names listed the way the engine
    does (resmon.Invoke: "invocation of <tok> returned an error: ...", a gRPC error)."""

    def __init__(self, failing: tuple[str, ...] = ()) -> None:
        super().__init__("us-east-1", {"runs": {}})
        self.failing = failing
        self.asked: list[str] = []

    def call(self, args: Any) -> Any:
        if args.token == deletions.READ_STACK_OUTPUTS:
            self.asked.append(args.args["name"])
            if args.args["name"] in self.failing:
                raise EngineError(f"invocation of {args.token} returned an error: unknown stack {args.args['name']!r}")
        return super().call(args)


def run_guard(mocks: RecordingMocks) -> dict[str, Any]:
    import asyncio

    from pulumi.runtime import settings
    from pulumi.runtime.stack import run_pulumi_func

    settings.reset_options()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.set_mocks(mocks, project="simfleet", stack="dev", preview=True)
    found: dict[str, Any] = {}
    try:
        loop.run_until_complete(run_pulumi_func(lambda: found.update(deletions.stack_outputs())))
    finally:
        loop.close()
        settings.reset_options()
    return found


def test_the_program_reads_its_own_stack_by_its_qualified_name() -> None:
    mocks = RecordingMocks()
    assert run_guard(mocks) == {"runs": {}}
    assert mocks.asked == ["organization/simfleet/dev"]


def test_a_backend_without_project_scoping_is_asked_by_the_bare_name() -> None:
    mocks = RecordingMocks(failing=("organization/simfleet/dev",))
    assert run_guard(mocks) == {"runs": {}}
    assert mocks.asked == ["organization/simfleet/dev", "dev"]


def test_unreadable_deployments_stop_the_program_with_what_to_do() -> None:
    mocks = RecordingMocks(failing=("organization/simfleet/dev", "dev"))
    with pytest.raises(deletions.DeployedUnknown, match=r"unknown stack 'organization/simfleet/dev'.*unknown stack 'dev'"):
        run_guard(mocks)
