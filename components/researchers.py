"""The researcher role: what `simfleet` needs to show, follow, fetch and cancel runs, and nothing that starts or
deletes one. An IAM role researchers assume (and a managed policy an existing role may attach instead), with an EKS
access entry in the run-operators group, whose RBAC Role in the runs namespace (components/runs_namespace.py) is all it
may do in the cluster: read Jobs, pods, logs, events and Kueue's objects; deactivate a Workload and delete a run's
pods (cancel). docs/researchers/access.md says how to use it.

IAM actions, checked against the Service Authorization Reference (2026-12-07): s3:ListBucket (bucket, with the
s3:prefix condition key), s3:GetObject and s3:PutObject (object; PutObject covers the If-None-Match/If-Match
conditional writes of the cancel record), logs:FilterLogEvents (log-group), eks:DescribeCluster (cluster).
sts:GetCallerIdentity needs no permission. The EKS bearer token is a presigned GetCallerIdentity: no permission either.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

import naming

# Where records and artifacts live (docs/records.md): runs/<run>/<hash>/... and jobs/<job>/<hash>/... in the artifacts
# bucket; only runs save checkpoints, so the checkpoints bucket holds runs/ alone (a job's role writes only jobs/ of the
# artifacts bucket, components/access.py).
RECORD_PREFIXES = (naming.RUNS_PREFIX, naming.JOBS_PREFIX)
CHECKPOINT_PREFIXES = (naming.RUNS_PREFIX,)


def researcher_policy(
    partition: str,
    region: str,
    account_id: str,
    cluster_name: str,
    artifacts_bucket: str,
    checkpoints_bucket: str,
    log_group: str | None,
) -> dict[str, Any]:
    """Read the runs' records, artifacts and checkpoints; write only a cancel record; read the container logs; find the
    cluster's endpoint. Nothing else: no delete, no other prefix, no other log group."""

    def objects(bucket: str, pattern: str, prefixes: tuple[str, ...] = RECORD_PREFIXES) -> list[str]:
        return [f"arn:{partition}:s3:::{bucket}/{prefix}{pattern}" for prefix in prefixes]

    def listing(sid: str, bucket: str, prefixes: tuple[str, ...]) -> dict[str, Any]:
        return {
            "Sid": sid,
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:{partition}:s3:::{bucket}"],
            # Also what makes a missing record a 404 rather than a 403 (S3 answers 403 without ListBucket).
            "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}},
        }

    statements: list[dict[str, Any]] = [
        listing("ListRunAndJobPrefixes", artifacts_bucket, RECORD_PREFIXES),
        listing("ListRunCheckpointPrefixes", checkpoints_bucket, CHECKPOINT_PREFIXES),
        {
            "Sid": "ReadRunRecordsAndArtifacts",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [*objects(artifacts_bucket, "*"), *objects(checkpoints_bucket, "*", CHECKPOINT_PREFIXES)],
        },
        {
            # `simfleet cancel`: its own record beside the run's (workloads/observe/records.py), nothing else.
            "Sid": "WriteCancelRecords",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": objects(artifacts_bucket, "*/cancel.json"),
        },
        {
            "Sid": "FindTheCluster",
            "Effect": "Allow",
            "Action": ["eks:DescribeCluster"],
            "Resource": f"arn:{partition}:eks:{region}:{account_id}:cluster/{cluster_name}",
        },
    ]
    if log_group is not None:
        group = f"arn:{partition}:logs:{region}:{account_id}:log-group:{log_group}"
        statements.append(
            {"Sid": "ReadContainerLogs", "Effect": "Allow", "Action": ["logs:FilterLogEvents"], "Resource": [group, f"{group}:*"]}
        )
    return {"Version": "2012-10-17", "Statement": statements}


def trust_account(partition: str, account_id: str) -> dict[str, Any]:
    """Anyone in the account whom IAM lets call sts:AssumeRole on this role (an SSO permission set, a group policy)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


@dataclass(frozen=True)
class ResearchersArgs:
    cluster_name: str
    eks_cluster_name: pulumi.Input[str]  # the cluster's output: the access entry waits for the cluster
    artifacts_bucket: pulumi.Input[str]
    checkpoints_bucket: pulumi.Input[str]
    region: str
    tags: Mapping[str, str]
    log_group: str | None  # naming.container_log_group, None when the stack ships no container logs


class Researchers(pulumi.ComponentResource):
    role_arn: pulumi.Output[str]
    policy_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ResearchersArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("simfleet:researchers:Researchers", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        partition = aws.get_partition_output(opts=invoke).partition
        account_id = aws.get_caller_identity_output(opts=invoke).account_id
        document = pulumi.Output.all(partition, account_id, args.artifacts_bucket, args.checkpoints_bucket).apply(
            lambda v: json.dumps(
                researcher_policy(v[0], args.region, v[1], args.cluster_name, v[2], v[3], args.log_group), separators=(",", ":")
            )
        )
        policy = aws.iam.Policy(
            f"{name}-policy",
            name=f"{args.cluster_name}-researcher",
            description="simfleet: see, follow, fetch and cancel runs (docs/researchers/access.md)",
            policy=document,
            tags=dict(args.tags),
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-role",
            # A fixed name, so the docs and `aws configure` can name it: simfleet-<stack>-researcher.
            name=f"{args.cluster_name}-researcher",
            description="simfleet researchers: see, follow, fetch and cancel runs (docs/researchers/access.md)",
            assume_role_policy=pulumi.Output.all(partition, account_id).apply(lambda v: json.dumps(trust_account(v[0], v[1]))),
            tags=dict(args.tags),
            opts=child,
        )
        aws.iam.RolePolicyAttachment(f"{name}-attach", role=role.name, policy_arn=policy.arn, opts=child)
        # No AWS-managed access policy (AmazonEKSViewPolicy would read every namespace): the run-operators group's RBAC
        # Role in the runs namespace and its read-only ClusterRole for the queues and nodes are all it may do.
        aws.eks.AccessEntry(
            f"{name}-entry",
            cluster_name=args.eks_cluster_name,
            principal_arn=role.arn,
            kubernetes_groups=[naming.RUN_OPERATORS_GROUP],
            type="STANDARD",
            tags=dict(args.tags),
            opts=child,
        )
        self.role_arn = role.arn
        self.policy_arn = policy.arn
        self.register_outputs({"roleArn": self.role_arn, "policyArn": self.policy_arn})
