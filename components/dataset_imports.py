"""Dataset imports: per `platform.sharedStorage.imports` entry, a sync Job that copies an S3 prefix into the shared
`datasets` volume, under its own IRSA role that may only list and read that prefix.

A job's or run's own program has no AWS credentials, so this is how data gets into the volume: the platform copies it,
once per import spec, and the workloads mount the volume (read-only unless a job asks otherwise). The sync is
`aws s3 sync`: it copies what is new or changed and never deletes a file in the volume.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

import naming
import versions
from components import kube
from components.access import prefix_read_policy_json
from components.irsa import IrsaRole, IrsaRoleArgs
from config import DatasetImport
from workloads.renderers.common import container, env, pod_security, scratch_volumes

IMPORT_PREFIX = "datasets-import"
VOLUME_DIR = "/datasets"
# Retries of a failed sync (a throttled or dropped connection): each one copies only what is still missing.
BACKOFF_LIMIT = 3
# aws s3 sync runs 10 requests at once of up to 8 MiB chunks by default (AWS CLI s3 configuration): well inside this.
SYNC_RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
# pulumi-kubernetes waits for a Job to complete (10 minutes by default; its batch/v1 Job API docs, checked 2026-12-07)
# unless the annotation `pulumi.com/skipAwait` says not to (pulumi-kubernetes#417): a large sync takes hours, and
# `pulumi up` must not fail or hold the deploy for it. Its status shows in the `sharedStorage` stack output.
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}


def service_account_name(entry: DatasetImport) -> str:
    return f"{IMPORT_PREFIX}-{entry.name}"


def _labels(entry: DatasetImport) -> dict[str, str]:
    return {
        "app.kubernetes.io/part-of": "simfleet",
        "app.kubernetes.io/component": IMPORT_PREFIX,
        naming.IMPORT_LABEL: entry.name,
    }


def import_job(entry: DatasetImport, namespace: Any, claim: Any, region: str) -> dict[str, Any]:
    """The sync Job, pure. Its name ends in a hash of its spec, so any change (a new prefix, `rerun`, a newer CLI
    image) is a new Job: Pulumi creates it and then deletes the finished old one, never editing an immutable template."""
    target = f"{VOLUME_DIR}/{entry.directory}/"
    sync = container(
        "sync",
        versions.AWS_CLI_IMAGE,
        [env("AWS_REGION", region), env("AWS_DEFAULT_REGION", region)],
        {"datasets": VOLUME_DIR},
        SYNC_RESOURCES,
        read_only_root=True,
        # New and changed objects only (size or a newer LastModified); --delete is never passed: nothing simfleet runs
        # deletes data.
        # The AWS CLI v2 image installs the binary at /usr/local/bin/aws, its ENTRYPOINT (images built FROM it
        # restate that path); named here so the command does not depend on the entrypoint.
        command=["/usr/local/bin/aws", "s3", "sync", entry.from_, target, "--only-show-errors", "--no-progress"],
    )
    volume: dict[str, Any] = {"name": "datasets", "persistentVolumeClaim": {"claimName": naming.DATASETS_CLAIM}}
    spec: dict[str, Any] = {
        "activeDeadlineSeconds": entry.max_runtime,
        "backoffLimit": BACKOFF_LIMIT,
        # A drained or scaled-down system node does not use up a retry.
        "podFailurePolicy": {
            "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
        },
        "template": {
            "metadata": {"labels": _labels(entry)},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": service_account_name(entry),
                # Only the AWS API is called; IRSA mounts its own projected token.
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": pod_security(),
                # A CPU-only copy: the system nodes, never a GPU node (nor Kueue: it carries no queue label).
                "nodeSelector": {naming.NODE_POOL_LABEL: "system"},
                "containers": [sync],
                "volumes": [volume, *scratch_volumes([sync])],
            },
        },
    }
    digest = hashlib.sha256(json.dumps([entry.from_, target, entry.rerun, spec], sort_keys=True).encode()).hexdigest()
    # The claim's name is known; the input (an output of SharedStorage) makes the Job wait for the claim and its mounts.
    volume["persistentVolumeClaim"]["claimName"] = claim
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{IMPORT_PREFIX}-{entry.name}-{digest[:8]}",
            "namespace": namespace,
            "labels": _labels(entry),
            "annotations": {**SKIP_AWAIT, "simfleet.io/from": entry.from_, "simfleet.io/rerun": str(entry.rerun)},
        },
        "spec": spec,
    }


@dataclass(frozen=True)
class DatasetImportsArgs:
    imports: Sequence[DatasetImport]
    # The runs namespace (RunsNamespace.namespace, which resolves once it is guarded) and the datasets claim
    # (SharedStorage.datasets_claim_name, which resolves once the claim exists and every AZ has a mount target).
    namespace: pulumi.Input[str]
    claim: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_provider_url: pulumi.Input[str]
    region: str
    tags: Mapping[str, str]
    cluster: pulumi.Resource


class DatasetImports(pulumi.ComponentResource):
    """Per import: its role (read-only on its prefix), its service account, and its sync Job."""

    summary: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: DatasetImportsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("simfleet:dataset_imports:DatasetImports", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Deleting the cluster deletes everything inside it; per-object deletes would only hang on a gone API.
        in_cluster = pulumi.ResourceOptions(parent=self, deleted_with=args.cluster)
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition
        entries: dict[str, pulumi.Output[dict[str, Any]]] = {}
        for entry in args.imports:
            account = service_account_name(entry)
            role = IrsaRole(
                f"{name}-{entry.name}",
                IrsaRoleArgs(
                    oidc_provider_arn=args.oidc_provider_arn,
                    oidc_provider_url=args.oidc_provider_url,
                    namespace=naming.RUNS_NAMESPACE,
                    service_account=account,
                    policy_json=partition.apply(prefix_read_policy_json(entry.from_, "Dataset")),
                    tags=args.tags,
                ),
                opts=child,
            )
            sa = kube.register(
                f"{name}-{entry.name}-sa",
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {
                        "name": account,
                        "namespace": args.namespace,
                        "labels": _labels(entry),
                        "annotations": {"eks.amazonaws.com/role-arn": role.role_arn},
                    },
                    "automountServiceAccountToken": False,
                },
                in_cluster,
            )
            body = import_job(entry, args.namespace, args.claim, args.region)
            job = kube.register(
                f"{name}-{entry.name}-job",
                body,
                # The pod must find its service account (and the role annotation on it) when it is created.
                pulumi.ResourceOptions.merge(in_cluster, pulumi.ResourceOptions(depends_on=[sa])),
            )
            entries[entry.name] = pulumi.Output.all(
                jobName=body["metadata"]["name"],
                fromUri=entry.from_,
                directory=entry.directory,
                roleArn=role.role_arn,
                status=job.status.apply(job_status),  # type: ignore[attr-defined]
            ).apply(lambda values: {("from" if k == "fromUri" else k): v for k, v in values.items()})

        self.summary = pulumi.Output.all(**entries).apply(dict)
        self.register_outputs({"summary": self.summary})


def job_status(status: Any) -> str:
    """A sync Job's state as the `sharedStorage` output shows it (current after `pulumi up --refresh`): from its
    conditions (pulumi-kubernetes' JobStatus output, or a plain mapping)."""
    conditions = {_field(c, "type"): _field(c, "status") for c in _field(status, "conditions") or []}
    if conditions.get("Complete") == "True":
        return "Succeeded"
    if conditions.get("Failed") == "True":
        return "Failed"
    return "Running" if _field(status, "active") else "Pending"


def _field(value: Any, name: str) -> Any:
    if isinstance(value, Mapping) and name in value:
        return value[name]
    return getattr(value, name, None)
