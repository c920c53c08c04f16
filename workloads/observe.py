"""What a run's state is now: its Job while that is the one its resource holds, its index.json files in S3 after."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from config import RunSpec
from workloads import status
from workloads.identity import index_keys, run_prefix
from workloads.inputs import context_of, spec_of
from workloads.job_identity import KIND_JOB, job_index_keys, job_prefix
from workloads.kube import KubeApi, SimRunError, claim_of, spec_hash_of

DEFAULT_SEEDS: list[int] = RunSpec.model_fields["seeds"].get_default(call_default_factory=True)


@dataclass(frozen=True)
class Where:
    """Where a run's Job and records are: its hash (an adopted pre-upgrade run keeps its old one) and S3 keys."""

    run: str
    spec_hash: str
    region: str
    artifacts_bucket: str
    index_keys: tuple[str, ...]


def where(props: dict[str, Any]) -> Where:
    """From a run's or job's stored outputs, without validating the spec (read and delete must work on any stored one)."""
    adopted = props.get("adoptedFrom") or {}
    run = str(props["runName"])
    spec_hash = str(adopted.get("specHash") or props["specHash"])
    context = context_of(props)
    if props.get("kind") == KIND_JOB:
        shards = range(int(spec_of(props).get("shards") or 1))
        keys = job_index_keys(job_prefix(run, spec_hash), list(shards))
    else:
        seeds = spec_of(props).get("seeds") or DEFAULT_SEEDS
        keys = index_keys(str(adopted.get("prefix") or run_prefix(run, spec_hash)), seeds)
    return Where(run, spec_hash, str(context.get("region")), str(context.get("artifactsBucket")), tuple(keys))


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
        if state["status"] == "Waiting" and source_failed(api, props, at):
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
    record = read_index(at.run, at.region, at.artifacts_bucket, f"{prefix}index.json")
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
    record saying so; else None (the seed never started)."""
    return [read_index(at.run, at.region, at.artifacts_bucket, key) or attempts_record(at, key) for key in at.index_keys]


def attempts_record(at: Where, index_key: str) -> dict[str, Any] | None:
    """A seed with attempt markers under attempts/ but no index.json started and ended without its record: SIGKILL,
    a lost node, or a failed final upload. It ran, so it is never started again (its artifacts stay unmixed)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from workloads import eks_auth

    prefix = f"{index_key.removesuffix('index.json')}attempts/"
    try:
        listing = eks_auth.s3_client(at.region).list_objects_v2(Bucket=at.artifacts_bucket, Prefix=prefix)
    except (ClientError, BotoCoreError) as err:
        raise SimRunError(
            f"run {at.run}: listing s3://{at.artifacts_bucket}/{prefix} failed ({err}). The attempt markers say whether "
            "a seed already started, so nothing is started without them: check that your AWS identity may list the "
            "artifacts bucket (s3:ListBucket), then run `pulumi up` again."
        ) from None
    markers = sorted(listing.get("Contents") or [], key=lambda item: item["LastModified"])
    if not markers:
        return None
    first = markers[0]["LastModified"].strftime("%Y-%m-%dT%H:%M:%SZ")
    last = markers[-1]["LastModified"].strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "status": "Failed",
        "reason": (
            f"no index.json: {len(markers)} pod(s) of this seed started (the last at {last}, markers under "
            f"s3://{at.artifacts_bucket}/{prefix}) and none recorded how it ended (killed, its node lost, or its final "
            "upload failed); bump `rerun` to run it again"
        ),
        "startTime": first,
        "recoveries": len(markers) - 1,
    }


def read_index(run: str, region: str, bucket: str, key: str) -> dict[str, Any] | None:
    from botocore.exceptions import BotoCoreError, ClientError

    from workloads import eks_auth

    try:
        body = eks_auth.s3_client(region).get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise SimRunError(
            f"run {run}: reading s3://{bucket}/{key} failed ({err}). This file is the record of whether the run "
            "already ran, so nothing is started without it: check that your AWS identity can read the artifacts "
            "bucket, then run `pulumi up` again."
        ) from None
    except BotoCoreError as err:
        raise SimRunError(f"run {run}: reading s3://{bucket}/{key} failed ({err}); check AWS access and try again") from None
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        return {"status": "Failed"}  # the uploader writes it last and whole; anything else is a broken run
    return document if isinstance(document, dict) else {"status": "Failed"}


def read_uri(run: str, region: str, uri: str) -> dict[str, Any] | None:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return read_index(run, region, bucket, key)
