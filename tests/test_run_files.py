"""Run files per team (`simfleet:runFiles`): validated exactly as inline entries, names unique across files, errors
naming the file and line, read relative to the project under `pulumi up`, and a run moving between files keeps its
URN and never reruns."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from project_commands import ProjectCommands
from sample_plans import planned

from config import ConfigError, StackConfig, load_from_pulumi, load_stack_config, load_stack_file
from config.sources import load_yaml
from tools import run_changes, schema
from tools.plan import PlanResult, run_program

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "teams"
STACK = FIXTURE / "Pulumi.teams.yaml"
DYNAMIC = "pulumi-python:dynamic:Resource"


def copy_fixture(tmp_path: Path) -> Path:
    """A writable copy of the teams stack; returns its stack file."""
    shutil.copytree(FIXTURE, tmp_path / "teams")
    return tmp_path / "teams" / "Pulumi.teams.yaml"


def edit(path: Path, change: Callable[[Any], None]) -> None:
    document = load_yaml(path.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def errors_of(stack_file: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_stack_file(stack_file, "teams", offline=True)
    return caught.value


def planned_fixture() -> PlanResult:
    return planned("teams")  # tests/sample_plans.py: STACK, planned once per process


def simruns(result: PlanResult) -> dict[str, tuple[str, str]]:
    """run name -> (URN, spec hash) of every SimRun the plan registers."""
    return {r.inputs["runName"]: (r.urn, r.inputs["specHash"]) for r in result.registrations if r.type == DYNAMIC}


def test_the_fixture_gathers_every_teams_file() -> None:
    cfg = load_stack_file(STACK, "teams")
    assert [run.name for run in cfg.runs] == ["walk-sweep", "walk-baseline", "grasp-from-walk"]
    assert [job.name for job in cfg.jobs] == ["perception-eval"]
    sweep = cfg.runs[0]
    assert sweep.seeds == list(range(20)) and sweep.parallel_pods == 4
    assert cfg.runs[2].seeds == [0, 1, 2, 3] and cfg.runs[2].checkpoint.from_run == "walk-baseline"


def test_entries_in_files_are_validated_exactly_as_inline_ones() -> None:
    """The same entries written inline in the stack file give the same StackConfig."""
    raw = load_yaml(STACK.read_text())["config"]
    gathered: dict[str, list[Any]] = {"runs": [], "jobs": [], "services": []}
    for path in sorted((FIXTURE / "runs").glob("*.yaml")):
        for section, entries in load_yaml(path.read_text()).items():
            gathered[section] += entries

    def load(**sections: Any) -> StackConfig:
        return load_stack_config(raw["simfleet:platform"], queues=raw["simfleet:queues"], stack="teams", source="x", **sections)

    from_files = load(runs=None, run_files=raw["simfleet:runFiles"], stack_file=STACK)
    inline = load(runs=gathered["runs"], jobs=gathered["jobs"], services=gathered["services"])
    assert from_files == inline


def test_an_error_in_a_run_file_names_the_file_the_line_and_the_run(tmp_path: Path) -> None:
    stack_file = copy_fixture(tmp_path)
    perception = stack_file.parent / "runs" / "perception.yaml"
    text = perception.read_text().replace("    seeds: [0..3]\n", "    seeds: 4\n    seed: 4\n")
    perception.write_text(text)
    line = text.splitlines().index("    seed: 4") + 1
    error = errors_of(stack_file)
    message = str(error)
    assert message.startswith(f"{stack_file}: 2 errors in the stack config")
    assert f"{perception}:{line}: runs[0] (grasp-from-walk).seed: unknown key; did you mean 'seeds'?" in message
    assert f"{perception}:{line - 1}: runs[0] (grasp-from-walk).seeds: 4 is one number, not a list; write [4]" in message
    # Its paths are the file's own: runs[0] is the first run of perception.yaml, not the third of the stack.
    assert {(i.file, i.path) for i in error.issues} == {
        (str(perception), "runs[0].seed"),
        (str(perception), "runs[0].seeds"),
    }


def test_names_are_unique_across_files_and_the_error_names_both(tmp_path: Path) -> None:
    stack_file = copy_fixture(tmp_path)
    perception = stack_file.parent / "runs" / "perception.yaml"
    edit(perception, lambda d: d["runs"][0].update(name="walk-sweep"))
    [issue] = errors_of(stack_file).issues
    locomotion = stack_file.parent / "runs" / "locomotion.yaml"
    assert (issue.file, issue.path, issue.entry) == (str(perception), "runs[0].name", "walk-sweep")
    assert re.fullmatch(
        rf"'walk-sweep' is already used by runs\[0\] \(walk-sweep\) in {re.escape(str(locomotion))}:4; names are "
        "unique, rename one",
        issue.message,
    ), issue.message


def test_a_continuation_of_a_run_with_errors_in_another_file_is_not_a_follow_on_error(tmp_path: Path) -> None:
    stack_file = copy_fixture(tmp_path)
    edit(stack_file.parent / "runs" / "locomotion.yaml", lambda d: d["runs"][1].update(gpus=0))
    [issue] = errors_of(stack_file).issues
    assert (issue.path, issue.entry) == ("runs[1].gpus", "walk-baseline")  # not grasp-from-walk's checkpoint.from


@pytest.mark.parametrize(
    ("patterns", "path", "fragment"),
    [
        (["runs/*.yml"], "runFiles[0]", "'runs/*.yml' matches no file; patterns are relative to the stack file's directory"),
        (["../runs/*.yaml"], "runFiles[0]", "must be a path inside the project, relative to the stack file"),
        ("runs/*.yaml", "runFiles", "is a list of file paths or glob patterns; write [runs/*.yaml]"),
    ],
)
def test_run_files_that_match_nothing_or_leave_the_project_are_refused(
    tmp_path: Path, patterns: Any, path: str, fragment: str
) -> None:
    stack_file = copy_fixture(tmp_path)
    edit(stack_file, lambda d: d["config"].update({"simfleet:runFiles": patterns}))
    issues = errors_of(stack_file).issues
    assert [(i.path, fragment in i.message) for i in issues] == [(path, True)], issues
    assert issues[0].line is not None  # shown at the stack file's simfleet:runFiles


def test_a_run_file_with_a_wrong_section_or_bad_yaml_names_the_file(tmp_path: Path) -> None:
    stack_file = copy_fixture(tmp_path)
    runs = stack_file.parent / "runs"
    (runs / "manipulation.yaml").write_text("run:\n  - name: pick\n")
    (runs / "planning.yaml").write_text("runs:\n  - name: plan-a\n    mode: batch\n   profile: x\n")
    message = str(errors_of(stack_file))
    assert f"{runs / 'manipulation.yaml'}:1: run: unknown section; did you mean 'runs'?" in message
    assert f"{runs / 'planning.yaml'}:4: not valid YAML: column 4:" in message
    assert "<unicode string>" not in message


def test_moving_a_run_between_files_keeps_its_urn_and_never_reruns(tmp_path: Path) -> None:
    """walk-baseline moves from locomotion.yaml into the stack file itself, grasp-from-walk into locomotion.yaml."""
    stack_file = copy_fixture(tmp_path)
    runs = stack_file.parent / "runs"
    loco, percep = (load_yaml((runs / f"{team}.yaml").read_text()) for team in ("locomotion", "perception"))
    baseline, grasp = loco["runs"].pop(1), percep["runs"].pop(0)
    loco["runs"].append(grasp)
    for team, document in (("locomotion", loco), ("perception", percep)):
        (runs / f"{team}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    edit(stack_file, lambda d: d["config"].update({"simfleet:runs": [baseline]}))

    before, after = planned_fixture(), run_program(stack_file, "teams")
    assert simruns(after) == simruns(before)
    earlier = tmp_path / "resources.json"
    earlier.write_text(json.dumps([r.as_json() for r in before.registrations], default=str))
    changes = run_changes.compare(after.registrations, run_changes.load_earlier(earlier))
    assert {(c.run, c.action) for c in changes} == {(name, "keep") for name in simruns(before)}


def test_pulumi_reads_the_run_files_beside_the_stack_file_in_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pulumi_mocks: Any
) -> None:
    """Under `pulumi up` nothing names the stack file: it is Pulumi.<stack>.yaml in the project directory, and the run
    files are read relative to it, whatever the working directory."""
    stack_file = copy_fixture(tmp_path)
    monkeypatch.delenv("SIMFLEET_STACK_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    raw = load_yaml(stack_file.read_text())["config"]
    config = {key: value if isinstance(value, str) else json.dumps(value) for key, value in raw.items()}
    loaded: list[StackConfig] = []
    pulumi_mocks(lambda: loaded.append(load_from_pulumi(stack_file.parent)), stack="teams", config=config)
    assert [run.name for run in loaded[0].runs] == ["walk-sweep", "walk-baseline", "grasp-from-walk"]

    (stack_file.parent / "runs" / "perception.yaml").write_text("runs: {name: x}\n")
    import pulumi

    with pytest.raises(pulumi.RunError, match=r"runs/perception\.yaml:1: runs: must be a list of runs"):
        pulumi_mocks(lambda: load_from_pulumi(stack_file.parent), stack="teams", config=config)


def test_the_run_file_schema_accepts_the_fixture_and_refuses_what_the_models_refuse() -> None:
    validator = jsonschema.Draft202012Validator(schema.run_file_schema())
    for path in sorted((FIXTURE / "runs").glob("*.yaml")):
        document = load_yaml(path.read_text())
        assert list(validator.iter_errors(document)) == [], path.name
        assert path.read_text().splitlines()[0] == "# yaml-language-server: $schema=../../../../schema/run-file.schema.json"
    assert list(validator.iter_errors({"run": []}))
    assert list(validator.iter_errors({"runs": [{"name": "x", "seeds": 20}]}))
    stack = jsonschema.Draft202012Validator(schema.stack_file_schema())
    assert list(stack.iter_errors(load_yaml(STACK.read_text()))) == []


def test_make_plan_of_the_teams_stack_prints_each_runs_data_and_cost(project_commands: ProjectCommands) -> None:
    # As docs/researchers/runs.md shows it, in the session's scratch copy of the project (run once, whoever asks first).
    done = project_commands.run(f"make plan CONFIG={STACK.relative_to(ROOT)}")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "runs: 3 (grasp-from-walk, walk-baseline, walk-sweep)" in out and "jobs: 1 (perception-eval)" in out
    block = out[out.index("  runs and jobs: where each writes") : out.index("  runs compared with")]
    runs = {r["name"]: r for r in json.loads((project_commands.cwd / "build" / "plan" / "teams" / "runs.json").read_text())}
    sweep = runs["walk-sweep"]
    hash_ = sweep["specHash"]
    assert "  run walk-sweep: batch, 20 seeds 0..19, 4 at a time, queue locomotion, spec hash " + hash_ in block
    bucket = "simfleet-teams-artifacts-123456789012"
    assert f"    artifacts   s3://{bucket}/runs/walk-sweep/{hash_}/seed-<n>/ *" in block
    assert f"    checkpoint  s3://simfleet-teams-checkpoints-123456789012/runs/walk-sweep/{hash_}/seed-<n>/out.mstate *" in block
    assert "* offline placeholder: 123456789012 is the mocks' account id" in block
    assert re.search(
        r"cost {8}up to \$62\.85 per admission \(4 x g5\.2xlarge on-demand for the Job's 12\.53h deadline and 0\.2h to stop",
        block,
    )
    assert re.search(
        r"typical \$\d+\.\d\d at the expected runtime \(\d+(\.\d+)? spot node-hours: each seed once for its 1h", block
    )
    assert "queue perception" in block and f"s3://{bucket}/jobs/perception-eval/" in block
    assert runs["grasp-from-walk"]["queue"] == "perception" and runs["grasp-from-walk"]["cost"]["typicalUsd"] > 0
    # The monthly header lists no run: a run's cost is per admission.
    monthly = out[out.index("  cost (") : out.index("  runs and jobs:")]
    assert "USD/month" in monthly and "walk-sweep" not in monthly
    # The excerpt docs/researchers/runs.md shows is this plan's output, line for line.
    runs_md = (ROOT / "docs" / "researchers" / "runs.md").read_text()
    excerpt = runs_md.split("**What the plan says about each run.**", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    printed = {line.strip() for line in out.splitlines()}
    assert [line for line in excerpt.splitlines() if line.strip() not in printed] == []


@pytest.mark.parametrize(
    ("seeds", "text"),
    [([7], "7"), (list(range(20)), "0..19"), ([0, 1, 2, 3, 7], "0..3, 7"), ([9, 1, 2, 5, 6], "1..2, 5..6, 9")],
)
def test_the_plan_shows_seeds_as_ranges(seeds: list[int], text: str) -> None:
    from tools.run_summary import seed_text

    assert seed_text(seeds) == text


def test_a_run_file_that_is_not_utf8_is_an_error_naming_its_line_not_a_traceback(tmp_path: Path) -> None:
    """An editor that saved `zoë` in Latin-1: the plan and the program under `pulumi up` report the file and line."""
    stack_file = copy_fixture(tmp_path)
    locomotion = stack_file.parent / "runs" / "locomotion.yaml"
    text = locomotion.read_text()
    locomotion.write_bytes(text.replace("user: alice, project: locomotion}\n  - name", "user: zoë}\n  - name").encode("latin-1"))
    line = next(n for n, row in enumerate(locomotion.read_bytes().splitlines(), 1) if b"zo\xeb" in row)
    [issue] = errors_of(stack_file).issues
    assert (issue.file, issue.line) == (str(locomotion), line)
    assert issue.message == "not UTF-8 text (byte 0xeb); save the file as UTF-8"


def test_a_section_written_as_one_value_gets_its_own_message_under_pulumi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pulumi_mocks: Any
) -> None:
    """The engine passes a list or mapping as JSON and a plain value as its text, so `simfleet:runFiles: runs/*.yaml`
    reaches the program as the text `runs/*.yaml`. Read with get_object it stopped everything with the SDK's
    "is not a valid 'JSON object'": no file, no line, no hint, and no other error. It gets the config's message."""
    import pulumi

    stack_file = copy_fixture(tmp_path)
    text = stack_file.read_text().replace("simfleet:runFiles: [runs/*.yaml]", "simfleet:runFiles: runs/*.yaml")
    stack_file.write_text(text + "  simfleet:runs: walk-fresh\n")
    monkeypatch.delenv("SIMFLEET_STACK_FILE", raising=False)
    monkeypatch.chdir(stack_file.parent)
    raw = load_yaml(stack_file.read_text())["config"]
    config = {key: value if isinstance(value, str) else json.dumps(value) for key, value in raw.items()}
    with pytest.raises(pulumi.RunError) as caught:
        pulumi_mocks(lambda: load_from_pulumi(stack_file.parent), stack="teams", config=config)
    message = str(caught.value)
    assert message.startswith("Pulumi.teams.yaml: 2 errors in the stack config"), message
    assert (
        "Pulumi.teams.yaml:22: runFiles: simfleet:runFiles is a list of file paths or glob patterns; write [runs/*.yaml]"
        in message
    )
    assert "Pulumi.teams.yaml:23: runs: simfleet:runs must be a list of runs" in message


def test_a_pattern_never_reads_pulumis_own_files_and_says_so_when_it_matches_only_those(tmp_path: Path) -> None:
    """`*.yaml` beside the stack file matches Pulumi.yaml and every stack's file: reading them as run files gave
    "config: unknown section" for Pulumi.prod.yaml, and matching only the stack file itself said "matches no file"."""
    stack_file = copy_fixture(tmp_path)
    edit(stack_file, lambda d: d["config"].update({"simfleet:runFiles": ["*.yaml"]}))
    [issue] = errors_of(stack_file).issues
    assert issue.path == "runFiles[0]"
    assert issue.message.startswith(
        "'*.yaml' matches only Pulumi's own files (Pulumi.teams.yaml), which are never run files; keep run files in a "
        "folder of their own, like runs/*.yaml"
    ), issue.message

    (stack_file.parent / "Pulumi.yaml").write_text("name: simfleet\nruntime: python\n")
    (stack_file.parent / "Pulumi.prod.yaml").write_text("config:\n  aws:region: us-east-1\n")
    (stack_file.parent / "runs" / "locomotion.yaml").rename(stack_file.parent / "locomotion.yaml")
    (stack_file.parent / "runs" / "perception.yaml").rename(stack_file.parent / "perception.yaml")
    cfg = load_stack_file(stack_file, "teams", offline=True)
    assert [run.name for run in cfg.runs] == ["walk-sweep", "walk-baseline", "grasp-from-walk"]
