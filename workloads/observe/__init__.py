"""Reading a run or a batch job, in the three places its truth lives: its records in S3 (records.py) for what happened,
the Kubernetes API (cluster.py) for what is happening now, CloudWatch Logs (logs.py) for its logs once the pods are gone.
The provider's read, the `simfleet` command and its reports all read through this package.

This module: a run's status now, from its Job while that is the one its resource holds, from its records after.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config import RunSpec
from workloads import status
from workloads.identity import index_keys, run_prefix
from workloads.inputs import context_of, spec_of
from workloads.job_identity import KIND_JOB, job_index_keys, job_prefix
from workloads.kube import KubeApi, claim_of, spec_hash_of
from workloads.observe import records

DEFAULT_SEEDS: list[int] = RunSpec.model_fields["seeds"].get_default(call_default_factory=True)


@dataclass(frozen=True)
class Where:
    """Where a run's Job and records are: its hash (an adopted pre-upgrade run keeps its old one) and S3 keys."""

    run: str
    spec_hash: str
    region: str
    artifacts_bucket: str
    index_keys: tuple[str, ...]
    prefix: str = ""  # the run's (or job's) prefix: its cancel record is there
    units: tuple[int, ...] = ()  # the seeds (a job's shards) in index_keys' order

    @property
    def cancel_key(self) -> str:
        return records.cancel_key(self.prefix)


def where(props: dict[str, Any]) -> Where:
    """From a run's or job's stored outputs, without validating the spec (read and delete must work on any stored one)."""
    adopted = props.get("adoptedFrom") or {}
    run = str(props["runName"])
    spec_hash = str(adopted.get("specHash") or props["specHash"])
    context = context_of(props)
    if props.get("kind") == KIND_JOB:
        units = list(range(int(spec_of(props).get("shards") or 1)))
        prefix = job_prefix(run, spec_hash)
        keys = job_index_keys(prefix, units)
    else:
        units = [int(seed) for seed in spec_of(props).get("seeds") or DEFAULT_SEEDS]
        prefix = str(adopted.get("prefix") or run_prefix(run, spec_hash))
        keys = index_keys(prefix, units)
    region, bucket = str(context.get("region")), str(context.get("artifactsBucket"))
    return Where(run, spec_hash, region, bucket, tuple(keys), prefix, tuple(units))


def observe(api: KubeApi, props: dict[str, Any], at: Where) -> dict[str, Any]:
    """The run's status, times and recoveries; the other state keys are left to the caller."""
    name = at.run
    job = api.get(f"/apis/batch/v1/namespaces/{api.namespace}/jobs/{name}", f"Job {name}")
    uid = props.get("jobUid")
    ours = job is not None and spec_hash_of(job) == at.spec_hash and (uid is None or job["metadata"].get("uid") == uid)
    if not ours:
        # Gone (TTL controller) or replaced by someone else's Job: the uploader's index.json has the outcome.
        state = status.index_state(read_indexes(at))
        if state["startTime"] is None and props.get("startTime"):
            state["startTime"] = props["startTime"]  # an unknown end does not make the known start unknown
        return state
    assert job is not None
    if (job.get("spec") or {}).get("suspend") and not status.terminal_condition(job):
        gate = None
        if not status.is_queued(job):
            gate = api.get(f"/apis/batch/v1/namespaces/{api.namespace}/jobs/{name}-gate", f"Job {name}-gate")
        state = status.suspended_state(job, gate)
        if read_cancel(at) is not None:
            # `simfleet cancel` deactivated its Kueue Workload, which keeps the Job suspended for good: the records
            # say how each seed ended.
            state = {**status.index_state(read_indexes(at)), "startTime": state["startTime"]}
        elif state["status"] == "Waiting" and source_failed(api, props, at):
            state["status"] = "Blocked"
    else:
        state = status.job_state(job, api.pod_phases(job) if status.job_needs_pods(job) else [])
    if status.terminal_condition(job):
        state = status.with_index(state, read_indexes(at))
    if uid is None:
        # Found on refresh or import (a create that was interrupted before the engine recorded it): from now on
        # this is the run's Job, held by the claim that create wrote on it, so this resource's delete removes it.
        state["jobUid"] = job["metadata"].get("uid")
        state["claim"] = claim_of(job)
    return state


def source_failed(api: KubeApi, props: dict[str, Any], at: Where) -> bool:
    """Whether a continuation's source has failed for good: its Job ended Failed, or is gone with a record that does
    not say Succeeded. A failed attempt the source's Job may still retry is not that; its gate keeps waiting."""
    source = context_of(props).get("source") or {}
    run, spec_hash = source.get("run"), source.get("specHash")
    if not run or not spec_hash:
        return False
    spec_hash, prefix = recorded_location(at.run, at.region, at.artifacts_bucket, str(run), str(spec_hash))
    job = api.get(f"/apis/batch/v1/namespaces/{api.namespace}/jobs/{run}", f"Job {run}")
    if job is not None and spec_hash_of(job) == spec_hash:
        return status.terminal_condition(job) == "Failed"
    source_at = Where(str(run), spec_hash, at.region, at.artifacts_bucket, (f"{prefix}{records.INDEX}",), prefix, (0,))
    [record] = read_indexes(source_at)
    return record is not None and record.get("status") != "Succeeded"


# A run adopted from before identity v1 (workloads/legacy.py) keeps its Job and records under its old hash; this
# file at its new prefix says so, so a lost state, or a continuation of it, still finds them.
ADOPTION_RECORD = "adopted-from.json"


def adoption_record(run: str, region: str, bucket: str, source_run: str, spec_hash: str) -> dict[str, Any] | None:
    """The legacy adoption recorded at runs/<source_run>/<spec_hash>/ (None when the run was never adopted)."""
    return read_index(run, region, bucket, f"{run_prefix(source_run, spec_hash)}{ADOPTION_RECORD}")


def recorded_location(run: str, region: str, bucket: str, source_run: str, spec_hash: str) -> tuple[str, str]:
    """(hash, prefix) where a run's Job and records are: its own, or the old ones an adoption recorded."""
    record = adoption_record(run, region, bucket, source_run, spec_hash)
    if record and record.get("specHash") and record.get("prefix"):
        return str(record["specHash"]), str(record["prefix"])
    return spec_hash, run_prefix(source_run, spec_hash)


def viewport_address(api: KubeApi, props: dict[str, Any]) -> str | None:
    service = next((c for c in props.get("companions") or [] if c.get("kind") == "Service"), None)
    if service is None:
        return None
    body = api.get(f"/api/v1/namespaces/{api.namespace}/services/{service['name']}", f"Service {service['name']}")
    if body is None or (body.get("metadata") or {}).get("uid") != service.get("uid"):
        return None
    ingress = ((body.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return (ingress[0].get("hostname") or ingress[0].get("ip")) if ingress else None


def read_indexes(at: Where) -> list[dict[str, Any] | None]:
    """Each seed's record: its index.json; where it wrote none but a pod of it started (its attempt markers), a Failed
    record saying so; else None (the seed never started). A cancel record marks the seeds it stopped Cancelled
    (status.with_cancel)."""
    documents = [
        read_index(at.run, at.region, at.artifacts_bucket, key)
        or records.attempts_record(at.run, at.region, at.artifacts_bucket, key)
        for key in at.index_keys
    ]
    return status.with_cancel(documents, at.units, read_cancel(at)) if at.prefix else documents


def read_cancel(at: Where) -> dict[str, Any] | None:
    return read_index(at.run, at.region, at.artifacts_bucket, at.cancel_key) if at.prefix else None


def read_index(run: str, region: str, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return records.read_json(region, bucket, key)
    except records.RecordError as err:
        raise records.RecordError(
            err.action, err.bucket, err.key, err.code, err.detail, records.PROVIDER_ADVICE, subject=f"run {run}"
        ) from None


def read_uri(run: str, region: str, uri: str) -> dict[str, Any] | None:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return read_index(run, region, bucket, key)
