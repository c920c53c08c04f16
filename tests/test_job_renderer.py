"""Batch jobs: identity (what reruns a job) and the renderer (strictly valid objects with the designed pod)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

import naming
from config import JobSpec
from config.sources import load_yaml
from versions import AWS_CLI_IMAGE
from workloads.budget import JobBudget
from workloads.inputs import decode, job_inputs, objects_from_inputs
from workloads.job_identity import JobContext, identify_job, job_projection
from workloads.renderers.job import bytes_quantity, job_runtime_files, render_job

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_VERSION = "1.35"  # the dev stack's Kubernetes; kubernetes-validate 1.37 ships its schemas
CTX = JobContext(
    cluster_name="simfleet-dev",
    namespace=naming.RUNS_NAMESPACE,
    service_account=naming.JOB_SERVICE_ACCOUNT,
    artifacts_bucket="simfleet-dev-artifacts",
    registry_url="123456789012.dkr.ecr.us-east-1.amazonaws.com",
    region="us-east-1",
    kubernetes_version="1.35",
    pushgateway_url="http://prometheus-pushgateway.simfleet-metrics.svc:9091",
    datasets_claim=naming.DATASETS_CLAIM,
)
BARE = JobContext(**{**CTX.__dict__, "pushgateway_url": None, "datasets_claim": None})


def dev_job(**changes: Any) -> JobSpec:
    raw = copy.deepcopy(load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"]["simfleet:jobs"][0])
    raw.update(changes)
    return JobSpec.model_validate(raw)


def render(spec: JobSpec, ctx: JobContext = CTX, shards: tuple[int, ...] | None = None) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in render_job(spec, ctx, identify_job(spec, ctx), shards)}


def pod(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = objects["Job"]["spec"]["template"]["spec"]
    return spec


def container(objects: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    return next(c for c in pod(objects)["containers"] if c["name"] == name)


def env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c["env"]}


# -- identity --------------------------------------------------------------------------------------------------------


def test_the_dev_job_hash_is_pinned() -> None:
    # Golden: a change here reruns every deployed job; bump only on purpose (docs/operators.md, "Upgrades").
    assert identify_job(dev_job(), CTX).spec_hash == "07c776f6b9ae"


@pytest.mark.parametrize(
    "change",
    [
        {"labels": {"user": "carol"}},
        {"ttlAfterFinished": "1d"},
        {"capacity": "onDemand"},
        {"spreadAcrossNodes": False},
        {"memory": "12288Mi"},
        {"cpu": "6000m"},
        {"shmSize": "16384Mi"},
        {"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/robocache:0.4.2"},
        {"parallelism": 2},
    ],
    ids=lambda c: next(iter(c)),
)
def test_what_does_not_rerun_a_job(change: dict[str, Any]) -> None:
    assert identify_job(dev_job(**change), CTX).spec_hash == identify_job(dev_job(), CTX).spec_hash


@pytest.mark.parametrize(
    "change",
    [
        {"image": "robocache:0.4.3"},
        {"command": ["python", "-m", "robocache.other"]},
        {"args": []},
        {"env": {}},
        {"shards": 5},
        {"parallelism": 1},
        {"gpus": 2},
        {"shmSize": "8Gi"},
        {"datasets": None},
        {"outputs": {"path": "/results"}},
        {"maxRuntime": "2h"},
        {"rerun": 1},
    ],
    ids=lambda c: next(iter(c)),
)
def test_what_reruns_a_job(change: dict[str, Any]) -> None:
    assert identify_job(dev_job(**change), CTX).spec_hash != identify_job(dev_job(), CTX).spec_hash


def test_the_platform_it_writes_to_is_in_the_hash_and_how_it_is_reached_is_not() -> None:
    base = identify_job(dev_job(), CTX).spec_hash
    assert identify_job(dev_job(), JobContext(**{**CTX.__dict__, "artifacts_bucket": "other"})).spec_hash != base
    assert identify_job(dev_job(), JobContext(**{**CTX.__dict__, "kubernetes_version": "1.36"})).spec_hash == base
    assert identify_job(dev_job(), BARE).spec_hash == base  # metrics and storage on or off move nothing


def test_parallelism_counts_only_when_it_limits_the_shards() -> None:
    assert "parallelism" not in job_projection(dev_job(parallelism=4))
    assert job_projection(dev_job(parallelism=3))["parallelism"] == 3


def test_where_a_job_writes() -> None:
    identity = identify_job(dev_job(), CTX)
    assert identity.prefix == f"jobs/robocache-resample/{identity.spec_hash}/"
    assert identity.outputs_uri == f"s3://simfleet-dev-artifacts/jobs/robocache-resample/{identity.spec_hash}/"
    assert identity.index_keys() == [f"{identity.prefix}shard-{i}/index.json" for i in range(4)]


def test_inputs_decode_back_to_the_same_objects() -> None:
    spec = dev_job()
    identity = identify_job(spec, CTX)
    inputs = job_inputs(spec, CTX, identity)
    assert inputs["kind"] == "job" and inputs["runName"] == spec.name and inputs["specHash"] == identity.spec_hash
    assert len(str(inputs)) < 2048  # a few KB of state per job, never the rendered objects
    assert objects_from_inputs(inputs) == render_job(spec, CTX, identity)
    with pytest.raises(ValueError, match="is not the hash of its spec and context"):
        decode({**inputs, "specHash": "000000000000"})


# -- rendering -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ctx", [CTX, BARE], ids=["metrics-and-storage", "bare"])
def test_every_object_passes_strict_validation(ctx: JobContext) -> None:
    spec = dev_job() if ctx.datasets_claim else dev_job(datasets=None)
    for obj in render_job(spec, ctx, identify_job(spec, ctx)):
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
    for obj in render_job(spec, ctx, identify_job(spec, ctx), (1, 3)):
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)


def test_an_indexed_job_with_per_shard_retries_that_ignores_reclaims() -> None:
    job = render(dev_job())["Job"]["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"], job["backoffLimitPerIndex"]) == ("Indexed", 4, 2, 1)
    assert job["podFailurePolicy"]["rules"][0]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    # A shard that ran out of maxRuntime (the wrapper exits 124) fails its index at once instead of running again.
    assert job["podFailurePolicy"]["rules"][1] == {
        "action": "FailIndex",
        "onExitCodes": {"containerName": "work", "operator": "In", "values": [124]},
    }
    assert job["podReplacementPolicy"] == "Failed"
    budget = JobBudget.of(3600, 4, 2)
    assert job["activeDeadlineSeconds"] == budget.deadline_seconds == (2 + 1) * budget.pod_seconds + budget.grace_seconds
    assert pod(render(dev_job()))["terminationGracePeriodSeconds"] == budget.grace_seconds


def test_shm_is_a_sized_memory_volume_counted_in_the_memory_limit() -> None:
    objects = render(dev_job())
    dshm = next(v for v in pod(objects)["volumes"] if v["name"] == "dshm")
    assert dshm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    work = container(objects, "work")
    assert {"name": "dshm", "mountPath": "/dev/shm"} in work["volumeMounts"]
    assert work["resources"]["limits"] == {"memory": "28Gi", naming.GPU_RESOURCE: "1"}
    assert work["resources"]["requests"] == {"cpu": "6", "memory": "28Gi", naming.GPU_RESOURCE: "1"}
    assert not any(v["name"] == "dshm" for v in pod(render(dev_job(shmSize=None)))["volumes"])


def test_the_datasets_claim_is_mounted_read_only_and_shared() -> None:
    objects = render(dev_job())
    claim = next(v for v in pod(objects)["volumes"] if v["name"] == "datasets")
    assert claim["persistentVolumeClaim"] == {"claimName": naming.DATASETS_CLAIM, "readOnly": True}
    mount = next(m for m in container(objects, "work")["volumeMounts"] if m["name"] == "datasets")
    assert mount == {"name": "datasets", "mountPath": "/datasets", "readOnly": True}
    writable = render(dev_job(datasets={"path": "/data", "readOnly": False}))
    assert next(m for m in container(writable, "work")["volumeMounts"] if m["name"] == "datasets") == {
        "name": "datasets",
        "mountPath": "/data",
    }
    with pytest.raises(ValueError, match="sharedStorage is off"):
        render(dev_job(), BARE)


def test_the_work_container_runs_the_command_under_the_wrapper_without_aws_credentials() -> None:
    objects = render(dev_job())
    work = container(objects, "work")
    assert work["command"] == ["/bin/sh", "/opt/simfleet/job-entry.sh", "python", "-m", "robocache.preprocess"]
    assert work["args"][0] == "--input=/datasets/trajectories/raw"
    assert work["image"] == "123456789012.dkr.ecr.us-east-1.amazonaws.com/robocache:0.4.2"
    assert objects["Job"]["spec"]["template"]["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"] == "work"
    values = env(work)
    assert values["SIMFLEET_PUSHGATEWAY_URL"] == CTX.pushgateway_url
    assert values["ROBOCACHE_LOG_LEVEL"] == "info" and values["SIMFLEET_MAX_RUNTIME_SECONDS"] == "3600"
    assert "SIMFLEET_PUSHGATEWAY_URL" not in env(container(render(dev_job(datasets=None), BARE), "work"))


def test_the_uploader_writes_under_the_jobs_prefix_with_the_job_role() -> None:
    objects = render(dev_job())
    uploader = container(objects, "output-uploader")
    identity = identify_job(dev_job(), CTX)
    values = env(uploader)
    assert uploader["image"] == AWS_CLI_IMAGE and uploader["command"] == ["/bin/bash", "/opt/simfleet/job-upload.sh"]
    assert values["SIMFLEET_PREFIX"] == identity.prefix and values["SIMFLEET_ARTIFACTS_BUCKET"] == CTX.artifacts_bucket
    assert values["SIMFLEET_DONE_WAIT_SECONDS"] == str(JobBudget.of(3600, 4, 2).done_wait_seconds)
    assert uploader["securityContext"]["readOnlyRootFilesystem"] is True
    assert all(m.get("readOnly") for m in uploader["volumeMounts"] if m["name"] in ("runtime", "outputs"))
    # The result channel: the uploader makes the FIFO in the marker directory, which the work container (the user's
    # program) can only read, so no result file can be forged there (workloads/scripts/job-entry.sh).
    [marker] = [m for m in uploader["volumeMounts"] if m["name"] == "marker"]
    assert not marker.get("readOnly") and values["SIMFLEET_RESULT_FIFO"] == "/simfleet/result"
    [work_marker] = [m for m in container(objects, "work")["volumeMounts"] if m["name"] == "marker"]
    assert work_marker["readOnly"] is True and env(container(objects, "work"))["SIMFLEET_RESULT_FIFO"] == "/simfleet/result"
    assert pod(objects)["serviceAccountName"] == naming.JOB_SERVICE_ACCOUNT
    assert pod(objects)["automountServiceAccountToken"] is False
    assert objects["ConfigMap"]["data"] == job_runtime_files() and objects["ConfigMap"]["immutable"] is True


def test_spreading_across_nodes_is_required_anti_affinity_on_the_job_label() -> None:
    affinity = pod(render(dev_job()))["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert affinity == [
        {"labelSelector": {"matchLabels": {naming.JOB_LABEL: "robocache-resample"}}, "topologyKey": "kubernetes.io/hostname"}
    ]
    assert "affinity" not in pod(render(dev_job(spreadAcrossNodes=False)))


def test_on_spot_gpu_nodes_with_the_gpu_toleration() -> None:
    spec = pod(render(dev_job()))
    # spot: no capacity selector, so Kueue can give the spot flavor first and the on-demand one when spot is full.
    assert spec["nodeSelector"] == {naming.NODE_POOL_LABEL: "gpu"}
    assert spec["tolerations"][0]["key"] == naming.GPU_TAINT_KEY
    assert pod(render(dev_job(capacity="onDemand")))["nodeSelector"][naming.CAPACITY_TYPE_LABEL] == "ON_DEMAND"


def test_a_job_for_the_shards_left_maps_positions_back_to_shards() -> None:
    objects = render(dev_job(), shards=(1, 3))
    job = objects["Job"]["spec"]
    assert (job["completions"], job["parallelism"]) == (2, 2)
    assert env(container(objects, "work"))["SIMFLEET_SHARD_LIST"] == "1 3"
    assert env(container(objects, "output-uploader"))["SIMFLEET_SHARD_LIST"] == "1 3"
    assert job["activeDeadlineSeconds"] == JobBudget.of(3600, 2, 2).deadline_seconds
    assert "SIMFLEET_SHARD_LIST" not in env(container(render(dev_job()), "work"))


def test_a_job_is_created_suspended_for_its_queue_as_batch_work() -> None:
    job = render(dev_job())["Job"]
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "shared"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "simfleet-batch"
    named = render(dev_job(queue="perception"))["Job"]
    assert named["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "perception"
    assert identify_job(dev_job(queue="perception"), CTX).spec_hash == identify_job(dev_job(), CTX).spec_hash


def test_byte_quantities_use_the_largest_exact_unit() -> None:
    assert [bytes_quantity(n) for n in (28 * 2**30, 1536 * 2**20, 1000, 2**40)] == ["28Gi", "1536Mi", "1000", "1Ti"]
