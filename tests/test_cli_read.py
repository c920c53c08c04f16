"""`simfleet runs`, `status` and `logs` against the fake API server (with Kueue) and moto's server (S3, STS,
CloudWatch Logs), through the real kubernetes client and boto3: a run with no Job yet, a queued run with Kueue's
message, a sweep mid-way with a reclaimed seed, a finished run after its TTL (logs from CloudWatch), and the API out
of reach (the records alone, said so). tests/cli_world.py builds each test's world."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fake_kueue
import pytest
from cli_world import NS, World, run_entry, world

SPOT_NODE = {
    "eks.amazonaws.com/capacityType": "SPOT",
    "node.kubernetes.io/instance-type": "g6.xlarge",
    "simfleet.dev/pool": "gpu",
}
INSUFFICIENT = (
    "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor gpu-spot, 1 more "
    "needed, insufficient quota for nvidia.com/gpu in flavor gpu-on-demand, request > maximum capacity (1 > 0)"
)


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    runs = [
        run_entry("walk"),
        run_entry("sweep", seeds=[1, 2, 3]),
        run_entry("other", labels={"user": "bob", "project": "perception"}),
    ]
    with world(tmp_path, runs) as found:
        fake_kueue.add_local_queue(found.kube, NS, "locomotion", "locomotion")
        yield found


def by_name(w: World, *args: str) -> dict[str, dict]:  # type: ignore[type-arg]
    result = w.run("runs", "--json", *args)
    assert result.code == 0, result.err
    return {row["name"]: row for row in result.json()["runs"]}


def test_a_run_with_no_job_yet_waits_for_the_next_up(w: World) -> None:
    rows = by_name(w)
    assert rows["walk"]["status"] == "Waiting" and rows["walk"]["done"] == 0 and rows["walk"]["total"] == 1
    assert "next `pulumi up` creates it" in rows["walk"]["detail"]
    assert rows["sweep"]["total"] == 3 and rows["walk"]["user"] == "alice" and rows["walk"]["project"] == "locomotion"
    table = w.run("runs")
    assert table.code == 0 and "walk" in table.out and "Waiting" in table.out
    status = w.run("status", "walk", "--json")
    assert status.code == 0, status.err
    seed = status.json()["seeds"][0]
    assert seed["status"] == "Waiting" and seed["attempts"] == 0 and seed["pods"] == []
    assert status.json()["artifacts_uri"] == f"s3://{w.fleet().declared['walk'].where.artifacts_bucket}/{w.prefix('walk')}"
    logs = w.run("logs", "walk")
    assert logs.code == 0 and logs.out == "" and "no pod has started it" in logs.err


def test_filters_by_status_user_and_project(w: World) -> None:
    w.create("walk")
    assert set(by_name(w, "--status", "queued")) == {"walk"}
    assert set(by_name(w, "--user", "bob")) == {"other"}
    assert set(by_name(w, "--project", "locomotion")) == {"walk", "sweep"}
    assert by_name(w, "--status", "Succeeded") == {}


def test_a_queued_run_shows_kueue_s_message_and_its_position(w: World) -> None:
    w.create("walk")
    w.create("sweep")
    fake_kueue.submit(w.kube, NS, "sweep")
    fake_kueue.submit(w.kube, NS, "walk")
    fake_kueue.set_pending(w.kube, NS, "walk", INSUFFICIENT)
    row = by_name(w)["walk"]
    assert row["status"] == "Queued" and INSUFFICIENT in row["detail"]
    assert row["position"] == 2  # behind sweep, which came first at the same priority
    status = w.run("status", "walk", "--json").json()
    assert status["kueue"]["message"] == INSUFFICIENT and status["kueue"]["positionInQueue"] == 2
    assert status["seeds"][0]["status"] == "Queued"
    shown = w.run("status", "walk")
    assert shown.code == 0 and "kueue says" in shown.out and "insufficient unused quota" in shown.out
    assert "locomotion #2" in w.run("runs").out


def backdate(w: World, pod: dict, started: str, finished: str | None = None) -> None:  # type: ignore[type-arg]
    """What the kubelet reports: when the pod started, and when its containers ended."""
    with w.kube._lock:
        status = w.kube.objects[("pods", NS, pod["metadata"]["name"])]["status"]
        status["startTime"] = started
        if finished:
            status["containerStatuses"] = [{"name": "glue", "state": {"terminated": {"exitCode": 0, "finishedAt": finished}}}]


def sweep_mid_way(w: World) -> dict[str, str]:
    """sweep: seed 1 done, seed 2 running again after its spot node was reclaimed, seed 3 waiting for a GPU node."""
    w.create("sweep")
    fake_kueue.submit(w.kube, NS, "sweep")
    fake_kueue.admit(w.kube, NS, "sweep", "locomotion", "gpu-spot")
    w.kube.add_node("ip-10-0-1-5", SPOT_NODE)
    done = w.kube.add_pod(NS, "sweep", "Succeeded", index=0, node="ip-10-0-1-5")
    reclaimed = w.kube.add_pod(NS, "sweep", "Failed", index=1, node="ip-10-0-1-9")
    again = w.kube.add_pod(NS, "sweep", "Running", index=1, node="ip-10-0-1-5")
    w.kube.add_pod(NS, "sweep", "Pending", index=2)
    backdate(w, done, "2026-12-07T10:00:00Z", "2026-12-07T10:30:00Z")
    backdate(w, reclaimed, "2026-12-07T10:00:00Z", "2026-12-07T10:14:00Z")
    backdate(w, again, "2026-12-07T10:15:00Z")
    w.kube.set_job_status(NS, "sweep", completedIndexes="0", succeeded=1, active=2, ready=1)
    w.kube.add_event(NS, "Pod", reclaimed["metadata"]["name"], "SpotInterruption", "node ip-10-0-1-9 is being reclaimed")
    w.index("sweep", 1)
    w.attempt("sweep", 1, done["metadata"]["name"])
    w.attempt("sweep", 2, reclaimed["metadata"]["name"], "20261207T100000Z")
    w.attempt("sweep", 2, again["metadata"]["name"], "20261207T101500Z")
    w.put_json(
        f"{w.prefix('sweep', 2)}progress.json",
        {
            "run": "sweep",
            "specHash": w.fleet().declared["sweep"].spec_hash,
            "seed": 2,
            "pod": again["metadata"]["name"],
            "phase": "running",
            "steps": 900,
            "simulationSeconds": 1800.0,
            "stopAfterSeconds": 3600.0,
            "partialSequence": 3,
            "lastHeartbeat": "2026-12-07T10:40:00Z",
            "updatedAt": "2026-12-07T10:40:05Z",
        },
    )
    w.kube.write_log(NS, again["metadata"]["name"], "glue", "step 900: vx 0.79")
    w.kube.write_log(NS, done["metadata"]["name"], "glue", "finished: 1500 steps")
    return {"done": done["metadata"]["name"], "again": again["metadata"]["name"], "reclaimed": reclaimed["metadata"]["name"]}


def test_a_sweep_mid_way_with_a_reclaimed_seed(w: World) -> None:
    pods = sweep_mid_way(w)
    row = by_name(w)["sweep"]
    assert row["status"] == "Running" and row["done"] == 1 and row["total"] == 3
    assert row["recoveries"] == 1 and "gpu-spot" in row["detail"]
    # 30 min of seed 1, 14 min of the reclaimed pod, and seed 2's second pod since 10:15; the reclaimed pod's node is
    # gone, so its price is the stack's dearest GPU type's (estimated, marked ~).
    assert row["gpu_hours"] > 0.7 and row["cost_usd"] > 0 and row["estimated"]
    status = w.run("status", "sweep", "--json")
    assert status.code == 0, status.err
    seeds = {s["unit"]: s for s in status.json()["seeds"]}
    assert seeds[1]["status"] == "Succeeded" and seeds[1]["record"]["steps"] == 1500
    assert seeds[2]["status"] == "Running" and seeds[2]["attempts"] == 2
    assert seeds[2]["progress"]["simulationSeconds"] == 1800.0
    live = next(p for p in seeds[2]["pods"] if p["name"] == pods["again"])
    assert live["capacity"] == "SPOT" and live["instance_type"] == "g6.xlarge"
    reclaimed = next(p for p in seeds[2]["pods"] if p["name"] == pods["reclaimed"])
    assert any("SpotInterruption" in e for e in reclaimed["events"])
    assert seeds[3]["status"] == "Admitted"
    assert status.json()["kueue"]["flavor"] == "gpu-spot"
    shown = w.run("status", "sweep").out
    assert "30m00s of 1h00m (50%)" in shown and "SPOT" in shown
    logs = w.run("logs", "sweep")
    assert logs.code == 0, logs.err
    assert "[seed 2] step 900: vx 0.79" in logs.out and "[seed 1] finished: 1500 steps" in logs.out
    only = w.run("logs", "sweep", "--seed", "2", "--json")
    lines = [__import__("json").loads(line) for line in only.out.splitlines()]
    assert [(x["unit"], x["text"], x["source"]) for x in lines] == [(2, "step 900: vx 0.79", "api")]


def test_a_finished_run_after_its_ttl_reads_records_and_cloudwatch(w: World) -> None:
    w.create("walk")
    fake_kueue.submit(w.kube, NS, "walk")
    fake_kueue.admit(w.kube, NS, "walk", "locomotion", "gpu-spot")
    pod = w.kube.add_pod(NS, "walk", "Succeeded", node="ip-10-0-1-5")["metadata"]["name"]
    w.kube.finish_job(NS, "walk")
    w.kube.expire_job(NS, "walk")  # the TTL controller: the Job and its pods are gone
    assert w.kube.get("jobs", NS, "walk") is None and not w.kube.pods_of(NS, "walk")
    w.index("walk", 7, recoveries=1)
    w.attempt("walk", 7, "walk-0-aaaaa", "20261207T100000Z")
    w.attempt("walk", 7, pod, "20261207T100500Z")
    w.ship_log("walk-0-aaaaa", "glue", "first pod: reclaimed at step 300")
    w.ship_log(pod, "glue", "resumed from partial 2", "finished: 1500 steps")
    w.ship_log(pod, "artifact-uploader", "Succeeded: s3://.../index.json")
    w.ship_log("walker-0-zzzzz", "glue", "another run's line")  # a run whose name starts the same
    row = by_name(w)["walk"]
    assert row["status"] == "Succeeded" and row["done"] == 1 and row["recoveries"] == 1 and row["source"] == "records"
    status = w.run("status", "walk", "--json").json()
    assert status["row"]["source"] == "records" and status["seeds"][0]["attempts"] == 2
    assert status["seeds"][0]["record"]["checkpoint"].endswith(f"{w.prefix('walk')}out.mstate")
    logs = w.run("logs", "walk")
    assert logs.code == 0, logs.err
    assert logs.out.splitlines() == ["first pod: reclaimed at step 300", "resumed from partial 2", "finished: 1500 steps"]
    both = w.run("logs", "walk", "-c", "glue", "-c", "uploader", "--json")
    found = [__import__("json").loads(line) for line in both.out.splitlines()]
    assert {x["container"] for x in found} == {"glue", "artifact-uploader"} and {x["source"] for x in found} == {"cloudwatch"}


def test_the_records_alone_when_the_api_cannot_be_reached(w: World, tmp_path: Path) -> None:
    w.index("walk", 7, status="Failed")
    unreachable = tmp_path / "unreachable.yaml"
    unreachable.write_text(
        (tmp_path / "kubeconfig.yaml").read_text().replace(w.kube.url, "https://127.0.0.1:9")  # nothing listens
    )
    result = w.run("runs", "--json", env={"SIMFLEET_KUBECONFIG": str(unreachable)})
    assert result.code == 0, result.err
    assert "cannot be reached" in result.err and "showing what S3 records say" in result.err
    assert result.json()["cluster"] is False
    rows = {r["name"]: r for r in result.json()["runs"]}
    assert rows["walk"]["status"] == "Failed" and "brain restarted" in rows["walk"]["detail"]
    status = w.run("status", "walk", "--json", env={"SIMFLEET_KUBECONFIG": str(unreachable)})
    assert status.code == 0 and status.json()["source"] == "records" and "cannot be reached" in status.err
    logs = w.run("logs", "walk", env={"SIMFLEET_KUBECONFIG": str(unreachable)})
    assert logs.code == 0 and "logs come from CloudWatch only" in logs.err


def test_an_incomplete_seed_makes_the_run_show_incomplete(w: World) -> None:
    w.index(
        "walk", 7, status="Incomplete", reason="artifacts were still being written while they were shipped: metrics/steps.csv"
    )
    row = by_name(w)["walk"]
    assert row["status"] == "Incomplete" and "still being written" in row["detail"]


def test_runs_lists_page_by_page_in_a_few_calls(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """`simfleet runs` asks the API for lists, never for one run's objects: with pages of one item (as the API server
    pages a large list), every Job and pod is still found, and the calls are the pages of each list and nothing per
    run. What a page size of 500 makes of 2,000 runs is in `make bench`."""
    from workloads.observe import cluster

    sweep_mid_way(w)
    w.create("walk")
    # What the cluster says (elapsed time and cost move with the clock between the two listings).
    fields = ("status", "detail", "done", "total", "recoveries", "started", "position", "source")
    whole = {name: [row[f] for f in fields] for name, row in by_name(w).items()}
    monkeypatch.setattr(cluster, "PAGE", 1)
    w.kube.requests.clear()
    assert {name: [row[f] for f in fields] for name, row in by_name(w).items()} == whole
    assert whole["sweep"][0] == "Running" and whole["walk"][-1] == "cluster"  # both read from their Jobs
    jobs = [j for j in w.kube.objects if j[0] == "jobs" and j[1] == NS]
    pods = [p for p in w.kube.objects if p[0] == "pods" and p[1] == NS]
    calls = [(r.method, r.path.rsplit("/", 1)[-1], r.query.get("limit")) for r in w.kube.requests]
    assert all(method == "GET" for method, _, _ in calls)
    listed = [what for _, what, _ in calls]
    assert listed.count("jobs") == len(jobs) > 1 and listed.count("pods") == len(pods) > 1  # a page each
    assert sorted(set(listed)) == ["jobs", "nodes", "pendingworkloads", "pods", "workloads"], calls
