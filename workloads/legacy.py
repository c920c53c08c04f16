"""Runs recorded by simfleet before run identity v1 (2026-11-30): read, adopted or deleted, never run again.

Those states hold outputs of another shape (rendered-object references, the cluster endpoint and CA, the old hash
and its S3 prefix; no `kind`, `spec` or `context`) and a hash computed by the old rules. Treating the new hash as a
change would delete every Job and start every finished run again, so instead:
- `diff` answers update, never replace, for a format change alone;
- `update` adopts the run: the Job (when it still exists) and the S3 records stay where the old hash put them, and
  the state remembers that hash as `adoptedFrom`, which read and delete use from then on;
- `read` and `delete` of a state nobody has updated yet work from the old outputs;
- the adoption is also written to S3 (`adopted-from.json` at the run's new prefix, workloads/observe.py), because
  the state alone forgets it when lost: a later `create` then holds the old Job or records the old outcome instead
  of running the run again, and a continuation of it waits for, and starts from, the old prefix.
A pre-v1 state lost before its first `pulumi up` with this simfleet cannot be recognised (its old hash was computed
by rules this code no longer has): a live Job of it stops `create` (another hash), a finished one would run again.
A spec changed in the same `pulumi up` as the upgrade is not seen as a change: upgrade with an unchanged stack
file first (docs/operators.md, "Upgrades").
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

from workloads import eks_auth
from workloads import observe as observed
from workloads.identity import index_keys, run_prefix
from workloads.inputs import KIND_RUN, Decoded, DecodedRun, context_of
from workloads.kube import KubeApi, SimRunError, collection_path, spec_hash_of
from workloads.observe import ADOPTION_RECORD, Where, adoption_record, observe, recorded_location


def is_legacy(props: dict[str, Any]) -> bool:
    return "context" not in props and "artifactsPrefix" in props


def where(props: dict[str, Any]) -> Where:
    seeds = props.get("seeds") or [0]
    return Where(
        str(props["runName"]),
        str(props["specHash"]),
        str(props.get("region")),
        str(props.get("artifactsBucket")),
        tuple(index_keys(str(props["artifactsPrefix"]), seeds)),
    )


def api(props: dict[str, Any]) -> KubeApi:
    from pulumi.runtime.rpc import unwrap_rpc_secret

    conn = eks_auth.Connection(
        str(props.get("clusterName")),
        str(props.get("clusterEndpoint") or ""),
        str(props.get("clusterCa") or ""),
        str(props.get("region")),
        unwrap_rpc_secret(props.get("kubeconfig")) or None,
    )
    return KubeApi(str(props["runName"]), str(props["namespace"]), conn)


def adopted_from(props: dict[str, Any]) -> dict[str, str]:
    return {"specHash": str(props["specHash"]), "prefix": str(props["artifactsPrefix"])}


def companions(kube: KubeApi, props: dict[str, Any]) -> list[dict[str, Any]]:
    """The old run's ConfigMap and Service that still carry its hash, as the state records companions."""
    found = []
    for ref in props.get("objectRefs") or []:
        if ref.get("kind") == "Job":
            continue
        name = ref["metadata"]["name"]
        body = kube.get(f"{collection_path(ref['apiVersion'], ref['kind'], kube.namespace)}/{name}", f"{ref['kind']} {name}")
        if body is not None and spec_hash_of(body) == props["specHash"]:
            found.append({"apiVersion": ref["apiVersion"], "kind": ref["kind"], "name": name, "uid": body["metadata"]["uid"]})
    return found


def live_job(kube: KubeApi, props: dict[str, Any]) -> dict[str, Any] | None:
    """The old run's Job, if it still exists with the old hash."""
    name = str(props["runName"])
    job = kube.get(f"/apis/batch/v1/namespaces/{kube.namespace}/jobs/{name}", f"Job {name}")
    return job if job is not None and spec_hash_of(job) == props["specHash"] else None


def live_companions(kube: KubeApi, refs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recorded companions that still exist as the very objects recorded (same uid)."""
    found = []
    for ref in refs:
        path = f"{collection_path(ref['apiVersion'], ref['kind'], kube.namespace)}/{ref['name']}"
        body = kube.get(path, f"{ref['kind']} {ref['name']}")
        if body is not None and body["metadata"].get("uid") == ref.get("uid"):
            found.append(ref)
    return found


def record_adoption(news: dict[str, Any], adopted: dict[str, str], companions: list[dict[str, Any]]) -> dict[str, Any]:
    """Write the adoption to s3://<artifacts>/runs/<run>/<new hash>/adopted-from.json (with the deployer's identity);
    the update fails, and the state keeps the old outputs, when it cannot be written."""
    from botocore.exceptions import BotoCoreError, ClientError

    context = context_of(news)
    run, bucket = str(news["runName"]), str(context.get("artifactsBucket"))
    key = f"{run_prefix(run, str(news['specHash']))}{ADOPTION_RECORD}"
    record = {
        "run": run,
        **adopted,
        "companions": companions,
        "adoptedAt": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    try:
        eks_auth.s3_client(str(context.get("region"))).put_object(
            Bucket=bucket, Key=key, Body=json.dumps(record).encode(), ContentType="application/json"
        )
    except (ClientError, BotoCoreError) as err:
        raise SimRunError(
            f"run {run}: recording its adoption at s3://{bucket}/{key} failed ({err}). Without that record a lost state "
            "would run it again, so it was not adopted: let your AWS identity write under runs/ of the artifacts "
            "bucket, then run `pulumi up` again."
        ) from None
    return record


def adopt(api: KubeApi, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
    """`update` of a pre-v1 state: keep its Job and its records where its old hash put them, and record that in S3 at
    its new prefix, so a lost state or a continuation of it finds them too."""
    job = live_job(api, olds)
    record = record_adoption(news, adopted_from(olds), companions(api, olds) if job is not None else [])
    state = hold(api, news, record, job)
    state["viewportAddress"] = olds.get("viewportAddress")
    return state


def recorded_adoption(props: dict[str, Any]) -> dict[str, Any] | None:
    """The adoption recorded at this run's own prefix by an earlier `pulumi up` (None for a job, or a run never adopted)."""
    if props.get("kind") != KIND_RUN:
        return None
    context = context_of(props)
    run, spec_hash = str(props["runName"]), str(props["specHash"])
    record = adoption_record(run, str(context.get("region")), str(context.get("artifactsBucket")), run, spec_hash)
    return record if record and record.get("specHash") and record.get("prefix") else None


def hold(api: KubeApi, props: dict[str, Any], record: dict[str, Any], job: dict[str, Any] | None) -> dict[str, Any]:
    """The state of a run adopted from before identity v1: its old Job claimed if it still runs, else its old records."""
    adopted = {"specHash": str(record["specHash"]), "prefix": str(record["prefix"])}
    at = observed.where({**props, "adoptedFrom": adopted})
    state: dict[str, Any] = {"adoptedFrom": adopted, "jobUid": None, "companions": []}
    claim = api.claim(job) if job is not None and spec_hash_of(job) == adopted["specHash"] else None
    if job is not None and claim is not None:  # else gone, or gone before it could be claimed: its records tell
        held = live_companions(api, record.get("companions") or [])
        state.update(jobUid=job["metadata"]["uid"], companions=held, claim=claim)
    state.update(observe(api, {"jobUid": state["jobUid"]}, at))
    return state


def with_recorded_source(run: Decoded) -> Decoded:
    """A continuation of a run adopted from before identity v1 reads that run's record and checkpoint where they are
    (its old prefix), not where the new rules would put them; its own hash is unchanged."""
    source = run.source
    if source is None or not isinstance(run, DecodedRun):
        return run
    ctx = run.ctx
    spec_hash, prefix = recorded_location(run.spec.name, ctx.region, ctx.artifacts_bucket, source.run, source.spec_hash)
    if spec_hash == source.spec_hash:
        return run
    moved = dataclasses.replace(
        source,
        checkpoint_uri=f"s3://{ctx.checkpoints_bucket}/{prefix}out.mstate",
        index_uri=f"s3://{ctx.artifacts_bucket}/{prefix}index.json",
    )
    return dataclasses.replace(run, source=moved)
