"""Runs recorded by simfleet before run identity v1 (2026-11-30): read, adopted or deleted, never run again.

Those states hold outputs of another shape (rendered-object references, the cluster endpoint and CA, the old hash
and its S3 prefix; no `kind`, `spec` or `context`) and a hash computed by the old rules. Treating the new hash as a
change would delete every Job and start every finished run again, so instead:
- `diff` answers update, never replace, for a format change alone;
- `update` adopts the run: the Job (when it still exists) and the S3 records stay where the old hash put them, and
  the state remembers that hash as `adoptedFrom`, which read and delete use from then on;
- `read` and `delete` of a state nobody has updated yet work from the old outputs.
A spec changed in the same `pulumi up` as the upgrade is not seen as a change: upgrade with an unchanged stack
file first (docs/operators.md, "Upgrades").
"""

from __future__ import annotations

from typing import Any

from workloads import eks_auth
from workloads.identity import index_keys
from workloads.kube import KubeApi, spec_hash_of
from workloads.observe import Where


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
        base = "/api/v1" if ref["apiVersion"] == "v1" else f"/apis/{ref['apiVersion']}"
        plural = {"ConfigMap": "configmaps", "Service": "services"}.get(ref["kind"], ref["kind"].lower() + "s")
        body = kube.get(f"{base}/namespaces/{kube.namespace}/{plural}/{name}", f"{ref['kind']} {name}")
        if body is not None and spec_hash_of(body) == props["specHash"]:
            found.append({"apiVersion": ref["apiVersion"], "kind": ref["kind"], "name": name, "uid": body["metadata"]["uid"]})
    return found


def live_job(kube: KubeApi, props: dict[str, Any]) -> dict[str, Any] | None:
    """The old run's Job, if it still exists with the old hash."""
    name = str(props["runName"])
    job = kube.get(f"/apis/batch/v1/namespaces/{kube.namespace}/jobs/{name}", f"Job {name}")
    return job if job is not None and spec_hash_of(job) == props["specHash"] else None
