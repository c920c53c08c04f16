"""What the SimRun provider tests share: names, S3 records in moto, the fake's write log, stored states."""

from __future__ import annotations

import json
from typing import Any

import boto3
from fake_kube import ARTIFACTS_BUCKET, FakeKube

import naming
from workloads import provider
from workloads.renderers.run import runtime

NS = "simfleet-runs"
RUN = "trot-baseline"
RUNTIME_CM = runtime().name  # shared by every run this simfleet renders (simfleet-runtime-<sha>)
SERVICE = f"{RUN}-viewport"
WRITES = ("POST", "PUT", "PATCH", "DELETE")


def put_index(
    props: dict[str, Any],
    status: str,
    seed: int | None = None,
    start: str = "2026-11-23T10:00:00Z",
    end: str = "2026-11-23T11:00:00Z",
) -> None:
    prefix = f"runs/{props['runName']}/{props['specHash']}/" + (f"seed-{seed}/" if seed is not None else "")
    body = {
        "run": props["runName"],
        "specHash": props["specHash"],
        "seed": seed,
        "status": status,
        "startTime": start,
        "completionTime": end,
    }
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=ARTIFACTS_BUCKET, Key=f"{prefix}index.json", Body=json.dumps(body).encode()
    )


def put_cancel(props: dict[str, Any], stopped: tuple[int, ...], whole: bool = True) -> dict[str, Any]:
    """The cancel record `simfleet cancel` writes (through the same code) at the run's prefix."""
    from workloads.observe import records

    request = records.CancelRequest(stopped, whole, "arn:aws:iam::123456789012:user/alice", "2026-11-23T10:30:00Z")
    prefix = f"runs/{props['runName']}/{props['specHash']}/"
    return records.write_cancel("us-east-1", ARTIFACTS_BUCKET, prefix, props["runName"], props["specHash"], request, "")


def s3_keys() -> list[str]:
    listing = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=ARTIFACTS_BUCKET)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def writes(cluster: FakeKube) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in cluster.requests if r.method in WRITES]


def job_env(cluster: FakeKube, container: str = "glue") -> dict[str, str]:
    job = cluster.get("jobs", NS, RUN)
    assert job is not None
    pod = job["spec"]["template"]["spec"]
    found = next(c for c in [*pod["initContainers"], *pod["containers"]] if c["name"] == container)
    return {e["name"]: e["value"] for e in found["env"]}


def stored(props: dict[str, Any], status: str = "Succeeded", **state: Any) -> dict[str, Any]:
    """What the state holds after create: inputs, outputs and the pickled provider."""
    return {**provider.outputs(props, {"status": status, "startTime": "t0", **state}), "__provider": "pickled"}


def new(props: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**props, "__provider": "pickled", **changes}


def legacy_outputs(cluster: FakeKube, spec_hash: str = "a1b2c3d4e5f6") -> dict[str, Any]:
    """A SimRun's outputs as simfleet wrote them before 2026-11-30 (commit ab0e469): references, not spec/context."""
    prefix = f"runs/{RUN}/{spec_hash}/"
    return {
        "runName": RUN,
        "namespace": NS,
        "specHash": spec_hash,
        "clusterName": "simfleet-test",
        "clusterEndpoint": cluster.url,
        "clusterCa": "Q0E=",
        "region": "us-east-1",
        "kubeconfig": None,
        "artifactsBucket": ARTIFACTS_BUCKET,
        "artifactsPrefix": prefix,
        "seeds": [7],
        "artifactsUri": f"s3://{ARTIFACTS_BUCKET}/{prefix}",
        "checkpointUri": None,
        "objectRefs": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{RUN}-glue", "namespace": NS}},
            {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": RUN, "namespace": NS}},
        ],
        "jobName": RUN,
        "status": "Running",
        "startTime": "2026-11-20T10:00:00Z",
        "completionTime": None,
        "viewportAddress": None,
        "__provider": "pickled",
    }


def old_job(cluster: FakeKube, spec_hash: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/part-of": "simfleet", naming.RUN_LABEL: RUN}
    metadata = {"name": RUN, "namespace": NS, "labels": labels, "annotations": {naming.SPEC_HASH_ANNOTATION: spec_hash}}
    return cluster.put_object("jobs", {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": {"template": {}}})
