"""Batch jobs through the same SimRun provider as runs: run once, adopt, record from S3, never rerun a shard."""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3
import pytest
from fake_kube import ARTIFACTS_BUCKET, FakeKube, job_props

from workloads.provider import SimRunProvider
from workloads.renderers.job import job_runtime

NS = "simfleet-runs"
JOB = "resample"
JOB_RUNTIME_CM = job_runtime().name  # the jobs' shared runtime (simfleet-runtime-<sha>)
WRITES = ("POST", "PUT", "PATCH", "DELETE")


# Fake credentials, moto and no retry sleeps; `cluster` is the fake API server (both in conftest.py).
pytestmark = pytest.mark.usefixtures("provider_world")


def put_shard(props: dict[str, Any], shard: int, status: str) -> None:
    key = f"jobs/{JOB}/{props['specHash']}/shard-{shard}/index.json"
    body = {
        "job": JOB,
        "specHash": props["specHash"],
        "shard": shard,
        "status": status,
        "startTime": "2026-11-23T10:00:00Z",
        "completionTime": f"2026-11-23T1{shard}:00:00Z",
        "recoveries": shard,
    }
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=json.dumps(body).encode())


def writes(cluster: FakeKube) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in cluster.requests if r.method in WRITES]


def env_of(job: dict[str, Any], container: str) -> dict[str, str]:
    spec = job["spec"]["template"]["spec"]
    found = next(c for c in spec["containers"] if c["name"] == container)
    return {e["name"]: e["value"] for e in found["env"]}


def test_create_writes_the_job_then_its_owned_runtime_configmap(cluster: FakeKube) -> None:
    props = job_props(cluster.url)
    outs = SimRunProvider().create(props).outs
    assert outs is not None and outs["kind"] == "job" and outs["status"] == "Queued"
    assert [p for _, p in writes(cluster)] == [
        f"/apis/batch/v1/namespaces/{NS}/jobs",
        f"/api/v1/namespaces/{NS}/configmaps",
    ]
    job = cluster.get("jobs", NS, JOB)
    cm = cluster.get("configmaps", NS, JOB_RUNTIME_CM)
    assert job is not None and cm is not None
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == ("Indexed", 4, 2)
    assert cm["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"] == outs["jobUid"]
    assert env_of(job, "work")["SIMFLEET_PUSHGATEWAY_URL"].endswith(":9091")
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "shared"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "simfleet-batch"


def test_a_job_whose_shards_all_ran_is_recorded_and_nothing_starts(cluster: FakeKube) -> None:
    props = job_props(cluster.url)
    for shard in range(4):
        put_shard(props, shard, "Succeeded" if shard != 2 else "Interrupted")
    outs = SimRunProvider().create(props).outs
    assert outs is not None and outs["jobUid"] is None and writes(cluster) == []
    assert outs["status"] == "Failed"  # one shard did not succeed, so the job did not
    assert outs["recoveries"] == 0 + 1 + 2 + 3
    assert outs["completionTime"] == "2026-11-23T13:00:00Z"


def test_after_a_lost_state_only_the_shards_that_never_ran_run_again(cluster: FakeKube) -> None:
    props = job_props(cluster.url)
    put_shard(props, 0, "Succeeded")
    put_shard(props, 2, "Failed")
    SimRunProvider().create(props)
    job = cluster.get("jobs", NS, JOB)
    assert job is not None and (job["spec"]["completions"], job["spec"]["parallelism"]) == (2, 2)
    assert env_of(job, "work")["SIMFLEET_SHARD_LIST"] == "1 3"
    assert env_of(job, "output-uploader")["SIMFLEET_SHARD_LIST"] == "1 3"


def test_create_again_adopts_the_live_job_and_starts_nothing(cluster: FakeKube) -> None:
    props = job_props(cluster.url)
    first = SimRunProvider().create(props).outs
    assert first is not None
    cluster.requests.clear()
    again = SimRunProvider().create(props).outs
    assert again is not None and again["jobUid"] == first["jobUid"]
    assert [m for m, _ in writes(cluster)] == ["PATCH"]  # only the claim moves to the adopter


def test_status_comes_from_the_shards_records_after_the_ttl_controller(cluster: FakeKube) -> None:
    props = job_props(cluster.url)
    outs = SimRunProvider().create(props).outs
    assert outs is not None
    cluster.start_job(NS, JOB, ready=2)
    assert SimRunProvider().read("x", outs).outs["status"] == "Running"  # type: ignore[index]
    cluster.finish_job(NS, JOB)
    for shard in range(4):
        put_shard(props, shard, "Succeeded")
    cluster.expire_job(NS, JOB)
    read = SimRunProvider().read("x", outs).outs
    assert read is not None and read["status"] == "Succeeded" and read["recoveries"] == 6
    assert cluster.get("configmaps", NS, JOB_RUNTIME_CM) is None  # it went with the Job, its only owner


def test_labels_update_in_place_and_nothing_reruns(cluster: FakeKube) -> None:
    props = job_props(cluster.url)
    outs = SimRunProvider().create(props).outs
    assert outs is not None
    changed = job_props(cluster.url, labels={"user": "carol"}, ttlAfterFinished="1h")
    assert changed["specHash"] == props["specHash"]
    olds, news = {**outs, "__provider": "p"}, {**changed, "__provider": "p"}
    assert SimRunProvider().diff("x", olds, news).replaces == []
    SimRunProvider().update("x", olds, news)
    job = cluster.get("jobs", NS, JOB)
    assert job is not None and job["metadata"]["labels"]["simfleet.io/user"] == "carol"
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600


def test_a_new_command_replaces_the_job_and_delete_removes_only_its_own(cluster: FakeKube) -> None:
    props = job_props(cluster.url)
    outs = SimRunProvider().create(props).outs
    assert outs is not None
    moved = job_props(cluster.url, command=["python", "-m", "robocache.v2"])
    diff = SimRunProvider().diff("x", {**outs, "__provider": "p"}, {**moved, "__provider": "p"})
    assert diff.replaces and diff.delete_before_replace
    SimRunProvider().delete(f"{NS}/{JOB}", outs)
    assert cluster.get("jobs", NS, JOB) is None


def test_create_waits_for_pods_of_an_earlier_job_at_the_same_hash(cluster: FakeKube) -> None:
    # A lost state while the old Job's shard pod is still terminating: it writes into shard-<i>/ until it is gone.
    props = job_props(cluster.url)
    SimRunProvider().create(props)
    cluster.add_pod(NS, JOB, "Running")
    cluster.handle("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/{JOB}?propagationPolicy=Background", b"", {})
    timer = threading.Timer(0.2, cluster.collect_garbage)
    timer.start()
    SimRunProvider().create(props)
    timer.join()
    listing = [r for r in cluster.requests if r.method == "GET" and r.path.endswith("/pods")]
    assert listing and listing[-1].query["labelSelector"] == f"app.kubernetes.io/instance={JOB}"
    assert cluster.pods_of(NS, JOB) == [] and cluster.get("jobs", NS, JOB) is not None


def test_a_new_queue_moves_a_job_still_waiting_but_not_one_kueue_admitted(cluster: FakeKube) -> None:
    props = job_props(cluster.url)
    outs = SimRunProvider().create(props).outs
    assert outs is not None
    moved = job_props(cluster.url, queue="perception")
    assert moved["specHash"] == props["specHash"]  # who admits it is not what it computes
    olds, news = {**outs, "__provider": "p"}, {**moved, "__provider": "p"}
    assert SimRunProvider().diff("x", olds, news).replaces == []
    SimRunProvider().update("x", olds, news)
    job = cluster.get("jobs", NS, JOB)
    assert job is not None and job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "perception"
    cluster.admit(NS, JOB)  # running now: it keeps the queue that admitted it
    back = job_props(cluster.url, queue="locomotion")
    SimRunProvider().update("x", {**outs, **moved, "__provider": "p"}, {**back, "__provider": "p"})
    job = cluster.get("jobs", NS, JOB)
    assert job is not None and job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "perception"
