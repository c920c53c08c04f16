"""Bad input, as a newcomer meets it: every message class in docs/reference.md's "Bad input" table is produced here
from the teams stack (a stack file and two run files), and each row's example is the text the user really sees; the
same errors end `make plan` (exit 2) and the program under `pulumi preview`/`up` (a RunError), all at once, with no
traceback."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from config import ConfigError, load_stack_file
from config.sources import load_yaml

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "teams"
REFERENCE = ROOT / "docs" / "reference.md"
ROW_RE = re.compile(r"^\| `(?P<cls>[a-z-]+)` \| `(?P<example>[^`]+)` \|(?P<notes>.*)\|$")


class Teams:
    """A writable copy of the teams stack: the stack file and the team files, edited as YAML or as text."""

    def __init__(self, tmp_path: Path) -> None:
        shutil.copytree(FIXTURE, tmp_path / "teams")
        self.dir = tmp_path / "teams"
        self.stack_file = self.dir / "Pulumi.teams.yaml"
        self.stack = "teams"

    def path(self, name: str) -> Path:
        return self.stack_file if name == "stack" else self.dir / "runs" / f"{name}.yaml"

    def edit(self, name: str, change: Callable[[Any], None]) -> None:
        document = load_yaml(self.path(name).read_text())
        change(document["config"] if name == "stack" else document)
        self.path(name).write_text(yaml.safe_dump(document, sort_keys=False))

    def text(self, name: str, old: str, new: str) -> None:
        text = self.path(name).read_text()
        assert old in text, old
        self.path(name).write_text(text.replace(old, new))


def platform(t: Teams, change: Callable[[dict[str, Any]], None]) -> None:
    t.edit("stack", lambda c: change(c["simfleet:platform"]))


def run(t: Teams, team: str, index: int, **fields: Any) -> None:
    t.edit(team, lambda d: d["runs"][index].update(fields))


def job(t: Teams, **fields: Any) -> None:
    t.edit("perception", lambda d: d["jobs"][0].update(fields))


def as_prod(t: Teams) -> None:
    prod = t.dir / "Pulumi.prod.yaml"
    prod.write_text(t.stack_file.read_text())
    t.stack_file, t.stack = prod, "prod"


def spot_only(t: Teams) -> None:
    """A stack with spot GPUs only, its queues too: the interactive run has nowhere to go."""

    def change(config: dict[str, Any]) -> None:
        config["simfleet:platform"]["nodeGroups"]["gpu"]["capacity"] = ["spot"]
        for queue in config["simfleet:queues"]:
            queue.update(gpus={"spot": 2}, borrowingLimit={"spot": 2})

    t.edit("stack", change)


def placeholder(t: Teams) -> None:
    platform(t, lambda p: p.update(endpoint={"publicAccessCidrs": ["203.0.113.0/24"]}))


# class -> how to make it happen in the teams stack. Each class's documented example must appear in the errors.
CASES: dict[str, Callable[[Teams], None]] = {
    "yaml": lambda t: t.text("locomotion", "    mode: batch\n", "    mode: batch\n   profile: x\n"),
    "unknown-key": lambda t: t.text("locomotion", "    seeds: 0..19", "    seed: 0..19"),
    "duplicate-key": lambda t: t.text("locomotion", "    maxRuntime: 1h\n", "    maxRuntime: 1h\n    seeds: [1, 2]\n"),
    "required": lambda t: t.edit("locomotion", lambda d: d["runs"][0].pop("profile")),
    # Edited as text, as a person would: the other lines keep their numbers (the docs show these three together).
    "list-form": lambda t: t.text(
        "perception", "command: [python, -m, robocache.evaluate]", "command: python -m robocache.evaluate"
    ),
    "seeds": lambda t: t.text("locomotion", "seeds: 0..19 ", "seeds: 20 "),
    "choice": lambda t: run(t, "locomotion", 1, mode="headless"),
    "number-range": lambda t: job(t, shards=0),
    "quote": lambda t: t.text("stack", 'kubernetesVersion: "1.35"', "kubernetesVersion: 1.35"),
    "duration": lambda t: run(t, "locomotion", 0, maxRuntime="forever"),
    "image-tag": lambda t: run(
        t, "locomotion", 0, images={"sim": "unitree-sim:latest", "monty": "monty:1", "glue": "glue-base:1"}
    ),
    "image-source": lambda t: run(
        t, "locomotion", 0, images={"sim": "ghcr.io/someone/unitree-sim:4.2.0", "monty": "monty:1", "glue": "glue-base:1"}
    ),
    "name": lambda t: run(t, "perception", 0, name="Grasp_From_Walk"),
    "duplicate-name": lambda t: run(t, "perception", 0, name="walk-sweep"),
    "continuation": lambda t: run(t, "perception", 0, checkpoint={"from": "run:walk-baselin"}),
    "queue": lambda t: run(t, "perception", 0, queue="percepton"),
    "gpus-per-node": lambda t: run(t, "locomotion", 0, gpus=4),
    "node-fit": lambda t: run(t, "locomotion", 0, cpu="8"),
    "capacity": spot_only,
    "admission": lambda t: run(t, "locomotion", 0, parallelism=6),
    "quota": lambda t: t.edit("stack", lambda c: c["simfleet:queues"][1].update(gpus={"spot": 3, "onDemand": 2})),
    "placeholder": placeholder,
    "glue": lambda t: run(t, "locomotion", 0, glue="glue/missing.py"),
    "datasets": lambda t: platform(t, lambda p: p.update(sharedStorage={"enabled": False})),
    "run-files": lambda t: t.edit("stack", lambda c: c.update({"simfleet:runFiles": ["runs/*.yml"]})),
    "run-file-section": lambda t: t.text("perception", "jobs:\n", "job:\n"),
    "prod": as_prod,
    "kubernetes-version": lambda t: platform(t, lambda p: p.update(kubernetesVersion="1.29")),
}


def bad_input_section() -> str:
    text = REFERENCE.read_text()
    return text[text.index("### Bad input") : text.index("## Stack outputs")]


def documented() -> dict[str, str]:
    """The Bad input table: class -> its example."""
    return {m["cls"]: m["example"] for m in map(ROW_RE.match, bad_input_section().splitlines()) if m}


def errors_of(t: Teams) -> str:
    with pytest.raises(ConfigError) as caught:
        load_stack_file(t.stack_file, t.stack)  # as `pulumi preview`/`up` judge it: placeholders are errors
    return str(caught.value)


def test_the_table_lists_every_class_and_nothing_else() -> None:
    assert sorted(documented()) == sorted(CASES)


@pytest.mark.parametrize("cls", sorted(CASES))
def test_each_class_produces_its_documented_message(cls: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    teams = Teams(tmp_path)
    monkeypatch.chdir(teams.dir)  # where a user runs `make plan` and `pulumi up`: files are shown relative to it
    CASES[cls](teams)
    message = errors_of(teams)
    example = documented()[cls]
    assert example in message, f"{cls}: the documented example is not what the user sees:\n{message}"
    assert "Traceback" not in message and "<unicode string>" not in message
    # Every error names its file (and its line, where the file has one) before the path.
    for line in message.splitlines()[1:]:
        assert re.match(r"^  - \S+\.yaml(:\d+)?: ", line) or line.startswith("  - stack: "), line


def test_several_mistakes_in_several_files_come_at_once_in_file_order_as_the_docs_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    teams = Teams(tmp_path)
    monkeypatch.chdir(teams.dir)
    for cls in ("list-form", "seeds", "quote"):
        CASES[cls](teams)
    shown = errors_of(teams)
    block = bad_input_section().split("```text\n", 1)[1].split("```", 1)[0]
    assert shown == block.rstrip("\n")
    files = [line.split(":")[0].removeprefix("  - ") for line in shown.splitlines()[1:]]
    assert files == ["Pulumi.teams.yaml", "runs/locomotion.yaml", "runs/perception.yaml"]


def test_the_plan_and_the_program_under_pulumi_print_the_same_errors(tmp_path: Path) -> None:
    """`make plan` exits 2 with the message on stderr; the program run as `pulumi preview` would (no offline flag)
    raises RunError with the same text: Pulumi prints it without a stack trace and exits non-zero."""
    from tools import plan

    teams = Teams(tmp_path)
    CASES["seeds"](teams)
    CASES["queue"](teams)
    done = subprocess.run(
        [sys.executable, "-m", "tools.plan", "--config", str(teams.stack_file), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr + done.stdout
    assert "2 errors in the stack config" in done.stderr
    original = plan._set_environment

    def as_preview(values: dict[str, str | None]) -> None:
        original({**values, "SIMFLEET_OFFLINE_PLAN": None})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plan, "_set_environment", as_preview)
        with pytest.raises(plan.PlanConfigError) as caught:
            plan.run_program(teams.stack_file, "teams")
    assert str(caught.value).strip() == done.stderr.strip()


def test_a_key_written_twice_in_the_stack_file_stops_the_plan_as_it_stops_pulumi(tmp_path: Path) -> None:
    """PyYAML would keep the second `sharedStorage:` and plan without the first; go-yaml v3 (the Pulumi CLI) refuses
    the file. The offline plan refuses it too, at the second key's line."""
    from tools import plan

    teams = Teams(tmp_path)
    teams.text(
        "stack",
        "    sharedStorage: {enabled: true}\n",
        "    sharedStorage: {enabled: true}\n    sharedStorage: {enabled: false}\n",
    )
    with pytest.raises(plan.PlanConfigError) as caught:
        plan.read_stack_file(teams.stack_file)
    line = teams.stack_file.read_text().splitlines().index("    sharedStorage: {enabled: false}") + 1
    assert f":{line}: platform.sharedStorage: is written twice (first on line {line - 1})" in str(caught.value)


def test_a_merge_may_still_override_what_it_brings_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    teams = Teams(tmp_path)
    monkeypatch.chdir(teams.dir)
    teams.path("locomotion").write_text(
        "runs:\n"
        "  - name: walk-sweep\n"
        "    mode: batch\n"
        "    <<: &common\n"
        "      images: {sim: unitree-sim:4.2.0, monty: monty:1f3c2a9, glue: glue-base:0.3.1}\n"
        "      profile: quadruped-default\n"
        "      glue: glue/trot.py\n"
        "      maxRuntime: 1h\n"
        "    seeds: 0..3\n"
        "  - name: walk-baseline\n"
        "    mode: interactive\n"
        "    <<: *common\n"
        "    maxRuntime: 3h\n"
        "    seeds: [7]\n"
    )
    cfg = load_stack_file(teams.stack_file, teams.stack)
    assert [(run.name, run.max_runtime) for run in cfg.runs[:2]] == [("walk-sweep", 3600), ("walk-baseline", 3 * 3600)]


@pytest.mark.parametrize(
    ("edit", "paths"),
    [
        # walk-baseline's `name:` misspelt: grasp-from-walk continues from it, and that run is there, invalid.
        (
            lambda t: t.text("locomotion", "  - name: walk-baseline\n", "  - nme: walk-baseline\n"),
            ["runs[1].name", "runs[1].nme"],
        ),
        # The perception queue's `name:` misspelt: a run and a job name that queue, which is there, invalid.
        (lambda t: t.text("stack", "- {name: perception,", "- {nme: perception,"), ["queues[1].name", "queues[1].nme"]),
    ],
    ids=["run", "queue"],
)
def test_an_entry_whose_name_is_misspelt_sets_off_no_error_about_entries_that_name_it(
    tmp_path: Path, edit: Callable[[Teams], None], paths: list[str]
) -> None:
    """Its own errors are what to fix; "no run named 'walk-baseline'; did you mean 'walk-sweep'?" would send the
    reader to the wrong run."""
    teams = Teams(tmp_path)
    edit(teams)
    with pytest.raises(ConfigError) as caught:
        load_stack_file(teams.stack_file, teams.stack)
    assert sorted(issue.path for issue in caught.value.issues) == paths, str(caught.value)
