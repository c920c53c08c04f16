"""`make plan` says per run what `pulumi up` would do (create, keep, update, replace, delete) and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.sources import load_yaml
from tools import plan
from tools.run_changes import EarlierStateError, compare, load_earlier, summary

ROOT = Path(__file__).resolve().parent.parent


def stack_file(tmp_path: Path, name: str, edit: Any = None) -> Path:
    document = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())
    if edit is not None:
        edit({run["name"]: run for run in document["config"]["simfleet:runs"]}, document["config"])
    path = tmp_path / name / "Pulumi.dev.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def before(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("before")
    out = tmp / "out"
    assert plan.main(["--config", str(stack_file(tmp, "a")), "--out", str(out)]) == 0
    return out / "dev" / "resources.json"


def changes_after(tmp_path: Path, before: Path, edit: Any) -> dict[str, dict[str, Any]]:
    out = tmp_path / "out"
    assert plan.main(["--config", str(stack_file(tmp_path, "b", edit)), "--out", str(out), "--against", str(before)]) == 0
    return {c["run"]: c for c in json.loads((out / "dev" / "changes.json").read_text())}


def test_an_unchanged_stack_keeps_every_run(tmp_path: Path, before: Path) -> None:
    changes = changes_after(tmp_path, before, lambda runs, config: None)
    assert {c["action"] for c in changes.values()} == {"keep"}


def test_labels_and_ttl_update_in_place(tmp_path: Path, before: Path) -> None:
    def edit(runs: dict[str, Any], _: Any) -> None:
        runs["trot-sweep"]["labels"] = {"user": "carol"}
        runs["trot-baseline"]["ttlAfterFinished"] = "1d"

    changes = changes_after(tmp_path, before, edit)
    assert changes["trot-sweep"]["action"] == "update" and "labels" in changes["trot-sweep"]["reasons"][0]
    assert changes["trot-baseline"]["action"] == "update" and "ttlAfterFinished" in changes["trot-baseline"]["reasons"][0]
    assert changes["trot-continue"]["action"] == "keep"


def test_an_image_change_replaces_the_run_and_its_continuation_and_says_why(tmp_path: Path, before: Path) -> None:
    def edit(runs: dict[str, Any], _: Any) -> None:
        runs["trot-baseline"]["images"]["sim"] = "unitree-sim:4.3.0"

    changes = changes_after(tmp_path, before, edit)
    assert changes["trot-baseline"]["action"] == "replace"
    assert changes["trot-baseline"]["reasons"][0] == "images.sim: unitree-sim:4.2.0 -> unitree-sim:4.3.0"
    assert changes["trot-continue"]["action"] == "replace"
    assert "its source run trot-baseline changed" in changes["trot-continue"]["reasons"][0]
    assert changes["trot-sweep"]["action"] == "keep"


def test_new_and_removed_runs(tmp_path: Path, before: Path) -> None:
    def edit(runs: dict[str, Any], config: dict[str, Any]) -> None:
        sweep = runs["trot-sweep"]
        config["simfleet:runs"] = [runs["trot-baseline"], runs["trot-continue"], {**sweep, "name": "trot-sweep-2"}]

    changes = changes_after(tmp_path, before, edit)
    assert changes["trot-sweep-2"]["action"] == "create"
    reason = changes["trot-sweep"]["reasons"][0]
    assert changes["trot-sweep"]["action"] == "delete" and "its record and data stay in S3 (s3://" in reason
    assert "may be running (status unknown)" in reason  # a previous plan records no status


def test_a_stack_export_is_read_from_its_outputs(tmp_path: Path, before: Path) -> None:
    records = json.loads(before.read_text())
    resources = [
        {"urn": r["urn"], "type": r["type"], "inputs": r["inputs"], "outputs": {**r["inputs"], "status": "Succeeded"}}
        for r in records
    ]
    export = tmp_path / "dev.json"
    export.write_text(json.dumps({"version": 3, "deployment": {"resources": resources}}))
    earlier = load_earlier(export)
    assert {r["runName"] for r in earlier.values()} == {"trot-baseline", "trot-sweep", "trot-continue", "robocache-resample"}
    assert all(r["status"] == "Succeeded" for r in earlier.values())
    planned = [type("Reg", (), {"type": r["type"], "urn": r["urn"], "inputs": r["inputs"]})() for r in records]
    assert {c.action for c in compare(planned, earlier)} == {"keep"}


def test_a_file_that_is_neither_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(EarlierStateError, match="neither a `pulumi stack export` file"):
        load_earlier(bad)


def registrations(before: Path, rename: dict[str, str] | None = None, aliases: bool = False) -> list[Any]:
    """The earlier plan's runs as planned registrations, with URNs renamed (and each given its old name as alias)."""
    regs = []
    for record in json.loads(before.read_text()):
        urn, options = record["urn"], {}
        old_name = urn.rsplit("::", 1)[1]
        if rename and old_name in rename:
            urn = f"{urn.rsplit('::', 1)[0]}::{rename[old_name]}"
            if aliases:
                options = {"aliases": [{"name": old_name}]}
        regs.append(type("Reg", (), {"type": record["type"], "urn": urn, "inputs": record["inputs"], "options": options})())
    return regs


def test_a_renamed_resource_with_its_alias_is_kept(before: Path) -> None:
    earlier = load_earlier(before)
    old_names = {urn.rsplit("::", 1)[1] for urn in earlier}
    planned = registrations(before, {name: f"renamed-{name}" for name in old_names}, aliases=True)
    assert {c.action for c in compare(planned, earlier)} == {"keep"}


def test_a_renamed_resource_without_an_alias_is_a_move_that_reruns_nothing(before: Path) -> None:
    earlier = load_earlier(before)
    baseline = next(urn.rsplit("::", 1)[1] for urn, r in earlier.items() if r["runName"] == "trot-baseline")
    changes = {c.run: c for c in compare(registrations(before, {baseline: "moved"}), earlier)}
    assert changes["trot-baseline"].action == "move" and "nothing reruns" in changes["trot-baseline"].reasons[0]
    assert [c.action for c in changes.values()].count("delete") == 0
    assert changes["trot-sweep"].action == "keep"


def test_a_state_from_before_identity_v1_is_shown_as_adopted(before: Path) -> None:
    earlier = load_earlier(before)
    urn, record = next((urn, r) for urn, r in earlier.items() if r["runName"] == "trot-sweep")
    earlier[urn] = {
        "runName": "trot-sweep",
        "namespace": record["namespace"],
        "specHash": "a1b2c3d4e5f6",
        "artifactsPrefix": "runs/trot-sweep/a1b2c3d4e5f6/",
        "seeds": [1, 2, 3],
    }
    changes = {c.run: c for c in compare(registrations(before), earlier)}
    assert changes["trot-sweep"].action == "update"
    assert changes["trot-sweep"].reasons == (
        "recorded by simfleet before identity version 1: adopted in place (its Job and S3 data stay under hash "
        "a1b2c3d4e5f6); nothing reruns",
    )


def test_a_stack_without_runs_or_jobs_says_so_instead_of_ending_on_a_colon() -> None:
    assert summary([], "nothing") == ["runs compared with nothing: no runs or jobs, before or now"]


@pytest.mark.parametrize("observability", [True, False])
def test_observability_and_metrics_on_or_off_rerun_nothing(tmp_path: Path, before: Path, observability: bool) -> None:
    """Runs get the Pushgateway's address only where the collector scrapes it (both on); that address is not hashed."""

    def edit(_: dict[str, Any], config: dict[str, Any]) -> None:
        platform = config["simfleet:platform"]
        platform.setdefault("observability", {})["enabled"] = observability
        platform.setdefault("metrics", {})["enabled"] = not observability

    changes = changes_after(tmp_path, before, edit)
    assert changes and {c["action"] for c in changes.values()} <= {"keep", "update"}, changes
