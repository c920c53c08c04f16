"""The command's plan of the stack is read back from its cache only while every input is what it was (cli/plan_cache.py):
an edit to the stack file, a run file, a run-file pattern's matches, a glue file, simfleet's own code, another account
or another day plans the stack afresh; a corrupt cache file is ignored and replaced."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_world import STACK, World, run_entry, world

from cli import plan_cache, session
from config.sources import load_yaml


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    with world(tmp_path, [run_entry("walk"), run_entry("sweep", seeds=[1, 2])]) as found:
        # Half the runs in a run file, as a team would keep them.
        stack_file = found.project / f"Pulumi.{STACK}.yaml"
        document = load_yaml(stack_file.read_text())
        document["config"]["simfleet:runFiles"] = ["runs/*.yaml"]
        stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
        (found.project / "runs").mkdir()
        write_runs(found, "team.yaml", [run_entry("team-a")])
        yield found


def write_runs(w: World, name: str, runs: list[dict[str, Any]]) -> None:
    (w.project / "runs" / name).write_text(yaml.safe_dump({"runs": runs}, sort_keys=False))


class Planner:
    """Session.load with a count of the times it planned (fleet_from) rather than read the cache."""

    def __init__(self, w: World, monkeypatch: pytest.MonkeyPatch) -> None:
        self.w = w
        self.plans = 0
        real = session.fleet_from

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.plans += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(session, "fleet_from", counted)

    def load(self, cache: bool = True) -> Any:
        with self.w.environment():
            return session.open_session(STACK, self.w.project, None, not cache).load()

    def entry(self) -> Path:
        return Path(self.w.env["SIMFLEET_CACHE_DIR"]) / STACK / plan_cache.FILE


@pytest.fixture
def planner(w: World, monkeypatch: pytest.MonkeyPatch) -> Planner:
    return Planner(w, monkeypatch)


def test_the_plan_is_read_back_equal_and_the_output_is_the_same(w: World, planner: Planner) -> None:
    first = planner.load()
    assert planner.plans == 1 and planner.entry().is_file()
    again = planner.load()
    assert planner.plans == 1, "the second load planned again instead of reading the cache"
    assert again == first and sorted(again.declared) == ["sweep", "team-a", "walk"]
    assert again.declared["sweep"].units == (1, 2) and isinstance(again.declared["sweep"].where.index_keys, tuple)
    cached, fresh = w.run("runs", "--json"), w.run("--no-cache", "runs", "--json")
    assert cached.code == fresh.code == 0 and cached.out == fresh.out


def _edit_stack_file(w: World, planner: Planner) -> None:
    path = w.project / f"Pulumi.{STACK}.yaml"
    path.write_text(path.read_text().replace("- 7\n", "- 8\n", 1))


def _edit_glue(w: World, planner: Planner) -> None:
    (w.project / "glue" / "trot.py").write_text("def step(observation):\n    return {'cmd_type': 'stop'}  # v2\n")


def _edit_run_file(w: World, planner: Planner) -> None:
    write_runs(w, "team.yaml", [run_entry("team-a", seeds=[3, 4])])


def _add_run_file(w: World, planner: Planner) -> None:
    write_runs(w, "other.yaml", [run_entry("team-b")])


def _remove_run_file(w: World, planner: Planner) -> None:
    write_runs(w, "other.yaml", [run_entry("team-b")])
    planner.load()  # planned and cached with both files
    (w.project / "runs" / "other.yaml").unlink()


def _another_account(w: World, planner: Planner) -> None:
    entry = json.loads(planner.entry().read_text())
    entry["account"] = "210987654321"
    planner.entry().write_text(json.dumps(entry))


EDITS: dict[str, Callable[[World, Planner], None]] = {
    "stack file": _edit_stack_file,
    "glue file": _edit_glue,
    "run file": _edit_run_file,
    "a new run file": _add_run_file,
    "a removed run file": _remove_run_file,
    "another account": _another_account,
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_an_edit_to_any_input_plans_afresh(w: World, planner: Planner, edit: str) -> None:
    before = planner.load()
    EDITS[edit](w, planner)
    plans = planner.plans
    after = planner.load()
    assert planner.plans == plans + 1, f"after an edit to the {edit} the stale plan was used"
    assert after == planner.load(cache=False)  # what planning afresh gives
    if edit not in ("another account", "a removed run file"):
        assert after != before  # the edit changed the plan (a removed file: back to the first one)
    assert planner.load() == after and planner.plans == plans + 2  # the new plan is the one cached now (+1: cache=False)


@pytest.mark.parametrize("change", ["code", "today"])
def test_simfleets_code_and_the_date_are_part_of_the_key(
    w: World, planner: Planner, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    planner.load()
    if change == "code":
        monkeypatch.setattr(plan_cache, "code_version", lambda: "another simfleet")
    else:
        monkeypatch.setattr(plan_cache, "today", lambda: "2027-01-01")
    planner.load()
    assert planner.plans == 2


def test_the_code_version_moves_with_any_file_of_the_code(tmp_path: Path) -> None:
    for name in plan_cache.CODE:
        target = tmp_path / name
        if name.endswith(".py"):
            target.write_text("X = 1\n")
        else:
            (target / "sub").mkdir(parents=True)
            (target / "sub" / "a.py").write_text("X = 1\n")
    before = plan_cache.code_version(tmp_path)
    (tmp_path / "workloads" / "sub" / "a.py").write_text("X = 2\n")
    assert plan_cache.code_version(tmp_path) != before
    assert plan_cache.code_version() == plan_cache.code_version()  # the checkout's: stable between calls


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda text: "{not json",
        lambda text: "[]",
        lambda text: text[: len(text) // 2],  # cut short
        # The right key, a fleet of the wrong shape.
        lambda text: json.dumps({**json.loads(text), "fleet": {**json.loads(text)["fleet"], "declared": {"walk": 3}}}),
    ],
    ids=["not-json", "not-an-entry", "cut-short", "wrong-shape"],
)
def test_a_corrupt_cache_file_is_ignored_and_replaced(planner: Planner, corrupt: Callable[[str], str]) -> None:
    first = planner.load()
    planner.entry().write_text(corrupt(planner.entry().read_text()))
    assert planner.load() == first and planner.plans == 2
    assert planner.load() == first and planner.plans == 2  # replaced by a good entry
