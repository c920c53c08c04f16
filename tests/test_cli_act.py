"""`simfleet cancel`, `viewport` and `artifacts`, and how every command fails (a missing bucket, denied access, no
credentials, an unknown run): one line, a documented exit code, no traceback. Against the fake API server (with a
Kueue controller thread) and moto's server, through the real kubernetes client and boto3 (tests/cli_world.py)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import fake_kueue
import pytest
from cli_world import ARTIFACTS, CHECKPOINTS, NS, World, run_entry, world
from moto import settings as moto_settings

from cli import errors
from workloads.provider import SimRunProvider

READ_COMMANDS = [("runs",), ("status", "walk"), ("logs", "walk"), ("artifacts", "walk"), ("report", "walk")]


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    runs = [
        run_entry("walk", viewport={"allowedCidrs": ["203.0.113.0/24"]}),
        run_entry("sweep", seeds=[1, 2, 3]),
    ]
    with world(tmp_path, runs) as found:
        fake_kueue.add_local_queue(found.kube, NS, "locomotion", "locomotion")
        yield found


def running(w: World, run: str) -> list[dict]:  # type: ignore[type-arg]
    w.create(run)
    fake_kueue.submit(w.kube, NS, run)
    fake_kueue.admit(w.kube, NS, run, "locomotion", "gpu-spot")
    return [w.kube.add_pod(NS, run, "Running", index=i) for i in range(len(w.fleet().declared[run].units))]


# -- cancel ----------------------------------------------------------------------------------------------------------


def test_cancel_stops_the_pods_releases_the_gpus_and_records_cancelled_for_good(w: World) -> None:
    running(w, "sweep")
    w.index("sweep", 1)  # seed 1 finished before the cancel: it stays Succeeded
    with fake_kueue.controller(w.kube):
        result = w.run("cancel", "sweep", "--yes")
    assert result.code == 0, result.err
    assert "deactivated its Kueue Workload" in result.out and "GPUs are released" in result.out
    assert "bump its `rerun`" in result.out
    record = json.loads(w.s3().get_object(Bucket=ARTIFACTS, Key=f"{w.prefix('sweep')}cancel.json")["Body"].read())
    assert record["stopped"] == [2, 3] and record["requests"][-1]["by"].startswith("arn:aws:")
    workload = fake_kueue.workload_of(w.kube, NS, "sweep")
    assert workload is not None and workload["spec"]["active"] is False
    assert not w.kube.pods_of(NS, "sweep")  # Kueue suspended the Job; its controller deleted the pods
    # The pods' uploaders write Interrupted after the SIGTERM: the cancel record still says how they ended.
    w.index("sweep", 2, status="Interrupted", reason="terminated before glue wrote its done marker")
    rows = {r["name"]: r for r in w.run("runs", "--json").json()["runs"]}
    assert rows["sweep"]["status"] == "Cancelled" and "cancelled by" in rows["sweep"]["detail"]
    seeds = {s["unit"]: s["status"] for s in w.run("status", "sweep", "--json").json()["seeds"]}
    assert seeds == {1: "Succeeded", 2: "Cancelled", 3: "Cancelled"}
    # The provider reads it as final: a later `pulumi up` (read, then update with the same inputs) starts nothing.
    with w.environment():
        provider = SimRunProvider()
        props = w.provider_props("sweep")
        w.kube.expire_job(NS, "sweep")
        outs = provider.read("sweep", props).outs
        assert outs is not None and outs["status"] == "Cancelled"
    again = w.run("cancel", "sweep", "--yes")
    assert again.code == 0 and "nothing left to stop" in again.out


def test_cancel_asks_first_and_refuses_without_a_terminal(w: World) -> None:
    running(w, "walk")
    result = w.run("cancel", "walk")
    assert result.code == errors.USAGE and "pass --yes" in result.err
    assert not list(w.s3().list_objects_v2(Bucket=ARTIFACTS, Prefix=f"{w.prefix('walk')}cancel.json").get("Contents", []))


def test_cancel_without_the_api_is_refused_and_writes_nothing(w: World, tmp_path: Path) -> None:
    running(w, "walk")
    bad = tmp_path / "unreachable.yaml"
    bad.write_text((tmp_path / "kubeconfig.yaml").read_text().replace(w.kube.url, "https://127.0.0.1:9"))
    result = w.run("cancel", "walk", "--yes", env={"SIMFLEET_KUBECONFIG": str(bad)})
    assert result.code == errors.ACCESS and "cannot be reached" in result.err and "Traceback" not in result.err
    assert "Contents" not in w.s3().list_objects_v2(Bucket=ARTIFACTS, Prefix=f"{w.prefix('walk')}cancel.json")


# -- viewport --------------------------------------------------------------------------------------------------------


def test_viewport_address_readiness_and_whether_you_may_connect(w: World) -> None:
    [pod] = running(w, "walk")
    early = w.run("viewport", "walk", "--from", "203.0.113.7", "--json").json()
    assert early["address"] is None and early["loadBalancerReady"] is False and early["simulatorReady"] is False
    w.kube.set_service_ingress(NS, "walk-viewport", "k8s-simfleet-walkview-0123.elb.us-east-1.amazonaws.com")
    with w.kube._lock:
        w.kube.objects[("pods", NS, pod["metadata"]["name"])]["status"]["containerStatuses"] = [
            {"name": "unitree-sim", "ready": True, "state": {"running": {}}}
        ]
    ready = w.run("viewport", "walk", "--from", "203.0.113.7", "--json").json()
    assert ready["address"].startswith("k8s-simfleet-walkview") and ready["simulatorReady"] is True
    assert ready["allowedCidrs"] == ["203.0.113.0/24"] and ready["youMayConnect"] is True
    assert "WebRTC Streaming Client" in ready["client"]
    outside = w.run("viewport", "walk", "--from", "198.51.100.9")
    assert outside.code == 0 and "NOT inside the allowed CIDRs" in outside.out
    none = w.run("viewport", "sweep")
    assert none.code == errors.USAGE and "has no viewport" in none.err


# -- artifacts -------------------------------------------------------------------------------------------------------


def test_artifacts_list_download_and_presigned_urls(w: World, tmp_path: Path) -> None:
    prefix = w.prefix("walk")
    w.index("walk", 7)
    w.put_text(f"{prefix}metrics/steps.csv", "step,time\n0,0.0\n1,0.02\n")
    w.put_text(f"{prefix}logs/glue.log", "hello\n")
    w.put_text(f"{prefix}videos/run.mp4", b"\x00" * 2048)
    w.put_text(f"{prefix}out.mstate", b"brain", bucket=CHECKPOINTS)
    listed = w.run("artifacts", "walk", "--json")
    assert listed.code == 0, listed.err
    kinds = {(a["kind"], a["relative"]) for a in listed.json()}
    assert {("metrics", "metrics/steps.csv"), ("logs", "logs/glue.log"), ("videos", "videos/run.mp4")} <= kinds
    assert ("checkpoint", "checkpoint/out.mstate") in kinds
    assert not any(path.endswith(("index.json", "progress.json")) or "attempts/" in path for _, path in kinds)
    got = w.run("artifacts", "walk", "--get", str(tmp_path / "down"))
    assert got.code == 0, got.err
    files = {p.relative_to(tmp_path / "down").as_posix() for p in (tmp_path / "down").rglob("*") if p.is_file()}
    assert "walk/seed-7/metrics/steps.csv" in files and "walk/seed-7/checkpoint/out.mstate" in files
    assert (tmp_path / "down/walk/seed-7/videos/run.mp4").stat().st_size == 2048
    urls = w.run("artifacts", "walk", "--url", "--kind", "logs").out.split()
    [url] = [u for u in urls if u.startswith("http")]
    assert "X-Amz-Signature" in url and "logs/glue.log" in url
    with urllib.request.urlopen(url) as response:  # moto on 127.0.0.1 honours its own presigned URLs
        assert response.read() == b"hello\n"


def test_a_job_s_outputs_come_from_its_index_not_a_listing(tmp_path: Path) -> None:
    job = {
        "name": "resample",
        "image": "robocache:0.4.2",
        "command": ["python", "-m", "robocache.preprocess"],
        "shards": 1,
        "maxRuntime": "10m",
        "labels": {"user": "alice", "project": "locomotion"},
    }
    with world(tmp_path, [], jobs=[job]) as w:
        declared = w.fleet().declared["resample"]
        shard = declared.unit_prefix(declared.units[0])
        attempt = "20261207T100000Z-resample-0-abcde"
        failed = "20261207T090000Z-resample-0-zzzzz"
        w.put_text(f"{shard}outputs/{attempt}/part-0.parquet", b"p" * 10)
        w.put_text(f"{shard}outputs/{failed}/part-0.parquet", b"stale")  # a failed attempt's files stay in place
        w.put_json(
            f"{shard}index.json",
            {
                "job": "resample",
                "specHash": declared.spec_hash,
                "shard": declared.units[0],
                "status": "Succeeded",
                "reason": None,
                "exitCode": 0,
                "startTime": "2026-12-07T10:00:00Z",
                "completionTime": "2026-12-07T10:05:00Z",
                "attempt": attempt,
                "outputsPrefix": f"s3://{ARTIFACTS}/{shard}outputs/{attempt}/",
                "outputFiles": ["part-0.parquet"],
                "outputs": 1,
                "recoveries": 1,
                "untaggedOutputs": 0,
            },
        )
        listed = w.run("artifacts", "resample", "--json")
        assert listed.code == 0, listed.err
        outputs = [a for a in listed.json() if a["kind"] == "output"]
        assert [(a["key"], a["size"]) for a in outputs] == [(f"{shard}outputs/{attempt}/part-0.parquet", 10)]


# -- failures ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: c[0])
def test_a_missing_bucket_is_one_line_and_exit_3(w: World, command: tuple[str, ...]) -> None:
    s3 = w.s3()
    s3.delete_bucket(Bucket=ARTIFACTS)
    result = w.run(*command)
    assert result.code == errors.ACCESS, result
    lines = [line for line in result.err.splitlines() if line.startswith("simfleet: ") and "cannot be reached" not in line]
    assert lines[-1] == (
        f"simfleet: bucket {ARTIFACTS} does not exist: is this stack deployed in the account your AWS credentials are "
        "for (aws sts get-caller-identity)?"
    )
    assert "Traceback" not in result.err + result.out


@pytest.mark.parametrize("command", [*READ_COMMANDS, ("cancel", "walk", "--yes")], ids=lambda c: c[0])
def test_denied_access_is_one_line_naming_the_role_and_exit_3(w: World, command: tuple[str, ...]) -> None:
    if command[0] == "cancel":
        running(w, "walk")
    iam = w.client("iam")
    iam.create_user(UserName="researcher")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["sts:GetCallerIdentity", "eks:DescribeCluster", "logs:*"], "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:*", "Resource": "*"},
        ],
    }
    iam.put_user_policy(UserName="researcher", PolicyName="no-s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="researcher")["AccessKey"]
    previous = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # moto checks every request's signature and policy meanwhile
    try:
        result = w.run(*command, env={"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]})
    finally:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = previous
    assert result.code == errors.ACCESS, result
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("simfleet: access denied") and "researcher role" in last, result.err
    assert "Traceback" not in result.err + result.out


def test_no_credentials_unknown_runs_and_seeds(w: World) -> None:
    gone = w.run("runs", env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    assert gone.code == errors.ACCESS and gone.err.startswith("simfleet: no AWS credentials") and "Traceback" not in gone.err
    unknown = w.run("status", "wlak")
    assert unknown.code == errors.USAGE and "declares no run or job named 'wlak'" in unknown.err
    seed = w.run("logs", "sweep", "--seed", "9")
    assert seed.code == errors.USAGE and "has no seed 9" in seed.err
    bad = w.run("runs", "--status", "Sleeping")
    assert bad.code == errors.USAGE


def test_records_md_documents_every_field_of_the_cancel_record() -> None:
    # The cancel record is the one record the command writes (workloads/observe/records.py); docs/records.md is where a
    # reader of the bucket learns what each file's fields mean.
    from workloads.observe import records

    request = records.CancelRequest((1, 2), True, "arn:aws:iam::123456789012:user/researcher", "2026-12-07T00:00:00Z")
    record = records.merged_cancel(None, request, "sweep", "0123456789ab")
    text = (Path(__file__).resolve().parent.parent / "docs" / "records.md").read_text()
    heading = "## `s3://<artifacts>/<prefix>cancel.json`"
    assert heading in text, "docs/records.md has no section for the cancel record"
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    documented = {
        name
        for line in section.splitlines()
        if line.startswith("| `")
        for name in line.split("|")[1].strip().strip("`").split("`, `")
    }
    assert documented == set(record), (documented, set(record))
    [requests_row] = [line for line in section.splitlines() if line.startswith("| `requests`")]
    assert all(f"`{key}`" in requests_row for key in record["requests"][0])
