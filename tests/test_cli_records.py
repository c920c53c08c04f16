"""The command reads the records exactly as the pod writes them (docs/records.md): a run pod's real writers
(fetch.sh's attempt marker, the glue runtime's steps.csv and summary, upload.sh's progress.json, artifacts, checkpoint
and index.json, through the real AWS CLI) write into moto's server; `simfleet status`, `runs`, `artifacts` and
`report` read them there, while the seed runs and after its Job is gone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fake_kueue
import pytest
from cli_world import ARTIFACTS, CHECKPOINTS, NS, World, run_entry, world
from pod_harness import GUARD, GluePod, Moto, ScriptPod, aws_v2_version, explain, moto_server_for, run_env, wait_for

ROOT = Path(__file__).resolve().parent.parent
TROT = ROOT / "glue" / "trot.py"
CLI = "v2" if aws_v2_version() else "v1"  # the pods run v2; v1 from .venv where Debian's awscli is missing


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    yield from moto_server_for((ARTIFACTS, CHECKPOINTS))


class Pod:
    """The walk run's pod: its checkpoint-fetch and artifact-uploader scripts, and glue between fake sidecars."""

    def __init__(self, tmp: Path, moto: Moto, w: World, pod_name: str) -> None:
        declared = w.fleet().declared["walk"]
        self.glue = GluePod(tmp)
        env = {
            **run_env(
                "walk",
                declared.spec_hash,
                declared.where.prefix,
                (ARTIFACTS, CHECKPOINTS),
                self.glue.checkpoints,
                self.glue.artifacts,
            ),
            "SIMFLEET_HEARTBEAT_TIMEOUT_SECONDS": "5",
            "SIMFLEET_PROGRESS_SECONDS": "1",
            "SIMFLEET_PARTIAL_POLL_SECONDS": "1",
            "SIMFLEET_SAVE_CHECKPOINT": "true",
        }
        self.s3 = ScriptPod(tmp, moto, pod_name, env, CLI)
        self.s3.scripts = self.glue.runtime  # the scripts as the pod mounts them

    def stop(self) -> None:
        self.glue.stop()
        self.s3.stop()


@pytest.fixture
def w(tmp_path: Path, moto: Moto) -> Iterator[World]:
    with world(tmp_path, [run_entry("walk")], moto_url=moto.endpoint) as found:
        fake_kueue.add_local_queue(found.kube, NS, "locomotion", "locomotion")
        yield found


@pytest.mark.slow
def test_status_runs_artifacts_and_report_read_what_the_pod_wrote(w: World, tmp_path: Path, moto: Moto) -> None:
    w.create("walk")
    fake_kueue.submit(w.kube, NS, "walk")
    fake_kueue.admit(w.kube, NS, "walk", "locomotion", "gpu-spot")
    made = w.kube.add_pod(NS, "walk", "Running")
    (tmp_path / "pod").mkdir()
    pod = Pod(tmp_path / "pod", moto, w, made["metadata"]["name"])
    try:
        _run_and_read(w, pod, tmp_path)
    finally:
        pod.stop()


def _run_and_read(w: World, pod: Pod, tmp_path: Path) -> None:
    prefix = w.prefix("walk")
    fetched = pod.s3.run("fetch.sh")
    assert fetched.returncode == 0, explain(fetched)
    pod.glue.sim().monty()
    upload = pod.s3.start("upload.sh")
    glue = pod.glue.start_glue(TROT, SIMFLEET_RUN="walk", SIMFLEET_STOP_AFTER_SECONDS="6")

    # While it runs: progress.json and the attempt marker, read by `simfleet status`.
    def running() -> dict[str, Any] | None:
        seed = w.run("status", "walk", "--json").json()["seeds"][0]
        progress = seed["progress"] or {}
        return seed if progress.get("phase") == "running" and progress.get("steps", 0) > 0 else None

    seed = wait_for(running, "progress.json read as running")
    assert seed["status"] == "Running" and seed["attempts"] == 1 and seed["record"] is None
    assert seed["progress"]["stopAfterSeconds"] == 6 and 0 < seed["progress"]["simulationSeconds"] < 6
    assert "of 6s" in w.run("status", "walk").out or "of 0m06s" in w.run("status", "walk").out

    assert glue.wait(timeout=GUARD) == 0
    assert upload.wait(timeout=GUARD) == 0, upload.stdout.read() if upload.stdout else ""
    index = w.s3().get_object(Bucket=ARTIFACTS, Key=f"{prefix}index.json")
    assert index["ContentLength"] > 0

    # After the end, the Job removed by its TTL: everything from the records.
    w.kube.set_pod_phase(NS, pod.s3.env["HOSTNAME"], "Succeeded")
    w.kube.finish_job(NS, "walk")
    w.kube.expire_job(NS, "walk")
    row = {r["name"]: r for r in w.run("runs", "--json").json()["runs"]}["walk"]
    assert row["status"] == "Succeeded" and row["done"] == 1 and row["recoveries"] == 0 and row["started"]
    detail = w.run("status", "walk", "--json").json()["seeds"][0]
    record = detail["record"]
    assert record["status"] == "Succeeded" and record["steps"] > 0 and record["specHash"] == w.fleet().declared["walk"].spec_hash
    assert record["checkpoint"] == f"s3://{CHECKPOINTS}/{prefix}out.mstate" and detail["attempts"] == 1

    listed = {a["relative"]: a for a in w.run("artifacts", "walk", "--json").json()}
    assert {"metrics/steps.csv", "metrics/glue-summary.json", "checkpoint/out.mstate"} <= set(listed), sorted(listed)
    assert listed["metrics/steps.csv"]["size"] > 0
    assert not any(name.endswith(("index.json", "progress.json")) or name.startswith("attempts/") for name in listed)

    report = w.run("report", "walk", "--out", str(tmp_path / "report"), "--json")
    assert report.code == 0, report.err
    written = report.json()
    velocity = next(p for p in written["plots"] if p["file"].endswith("velocity.png"))
    assert velocity["points"]["seed 7"] > 10  # glue's own rows, not a stand-in's
    [seed_row] = written["seeds"]
    assert seed_row["status"] == "Succeeded" and seed_row["steps"] == record["steps"]
    assert seed_row["energyJoules"] is not None  # glue-summary.json's energy_joules
