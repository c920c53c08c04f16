"""IAM for the cluster's workloads: one least-privilege IRSA role per add-on service account and one for run pods."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

import naming
from components.irsa import IrsaRole, IrsaRoleArgs
from components.policies_lbc import load_balancer_controller_policy, vpc_arn

# Add-on role keys (what Addons looks up in `Access.roles`) and the service account each one trusts.
ADDON_SERVICE_ACCOUNTS: dict[str, tuple[str, str]] = {
    "aws-load-balancer-controller": naming.LOAD_BALANCER_CONTROLLER_SA,
    "cluster-autoscaler": naming.CLUSTER_AUTOSCALER_SA,
}

_S3_URI_RE = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>.+)$")


def _policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def cluster_autoscaler_policy(partition: str, region: str, account_id: str, cluster_name: str) -> dict[str, Any]:
    """Reads anywhere (the describes take no resource), scales only this cluster's node groups.

    Actions: kubernetes/autoscaler cluster-autoscaler/cloudprovider/aws/README.md, "Full Cluster
    Autoscaler Features Policy", plus autoscaling:DescribeTags, which tag-based auto-discovery calls.
    The README asks to restrict only the scaling block; we also scope eks:DescribeNodegroup (read
    for the labels and taints of a node group at zero nodes) to this cluster's node groups.
    """
    return _policy(
        {
            "Sid": "DescribeScalingState",
            "Effect": "Allow",
            "Action": [
                "autoscaling:DescribeAutoScalingGroups",
                "autoscaling:DescribeAutoScalingInstances",
                "autoscaling:DescribeLaunchConfigurations",
                "autoscaling:DescribeScalingActivities",
                "autoscaling:DescribeTags",
                "ec2:DescribeImages",
                "ec2:DescribeInstanceTypes",
                "ec2:DescribeLaunchTemplateVersions",
                "ec2:GetInstanceTypesFromInstanceRequirements",
            ],
            "Resource": "*",
        },
        {
            "Sid": "DescribeOwnNodegroups",
            "Effect": "Allow",
            "Action": ["eks:DescribeNodegroup"],
            # nodegroup/<cluster>/<nodegroup>/<uuid>
            "Resource": f"arn:{partition}:eks:{region}:{account_id}:nodegroup/{cluster_name}/*",
        },
        {
            "Sid": "ScaleOwnNodegroups",
            "Effect": "Allow",
            "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
            "Resource": f"arn:{partition}:autoscaling:{region}:{account_id}:autoScalingGroup:*:autoScalingGroupName/*",
            # EKS tags the Auto Scaling group of every managed node group for the Cluster Autoscaler
            # (EKS user guide, "Managed node groups"), k8s.io/cluster-autoscaler/<cluster> = owned.
            "Condition": {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"}},
        },
    )


def s3_object_arn(partition: str, uri: str) -> str:
    """`s3://bucket/key` -> `arn:<partition>:s3:::bucket/key`, refusing keys IAM would read as patterns."""
    match = _S3_URI_RE.match(uri)
    if not match or match["key"].endswith("/"):
        raise ValueError(f"{uri!r} is not s3://<bucket>/<key of one object>")
    # In a policy Resource, * and ? are wildcards and ${...} a policy variable: such a key would grant more than one object.
    if any(c in match["key"] for c in "*?$"):
        raise ValueError(f"{uri!r}: keys with *, ? or $ cannot be granted as a single object")
    return f"arn:{partition}:s3:::{match['bucket']}/{match['key']}"


def run_policy(
    partition: str,
    checkpoints_bucket_arn: str,
    artifacts_bucket_arn: str,
    external_checkpoint_uris: Sequence[str] = (),
) -> dict[str, Any]:
    """What a run pod may do in S3: read and write under runs/, read the sources the stack declares, never delete data.

    Out-checkpoints (and partial ones) go to s3://<checkpoints>/runs/<run>/<hash>/ and artifacts, attempt markers
    and index.json to s3://<artifacts>/runs/<run>/<hash>/. PutObjectTagging is needed because the uploader tags
    each artifact with its kind (the lifecycle rules key on it). A `run:<name>` continuation reads its source's
    out-checkpoint (under runs/) and index.json; an `s3://` source is granted object by object. Every run shares
    one service account, so IAM cannot tell one run's prefix from another's: runs/ is the narrowest boundary IRSA
    allows. Nothing is deleted: the uploader's staging copy of a partial checkpoint is tagged and expires by the
    checkpoints bucket's lifecycle (components/storage.py).
    """
    runs = naming.RUNS_PREFIX
    statements: list[dict[str, Any]] = [
        {
            # GetObjectTagging: the uploader promotes a partial checkpoint with an S3-to-S3 `aws s3 cp`, which in AWS
            # CLI v2 copies the source's tags by default (--copy-props default) and so reads them first; without it
            # the promotion is AccessDenied and a replacement pod could never resume.
            "Sid": "ReadRunCheckpoints",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectTagging"],
            "Resource": [f"{checkpoints_bucket_arn}/{runs}*"],
        },
        {
            # fetch.sh reads the source run's index.json before its checkpoint, and a resumed pod its own records.
            "Sid": "ReadRunRecords",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"{artifacts_bucket_arn}/{runs}*/index.json", f"{artifacts_bucket_arn}/{runs}*/attempts/*"],
        },
        {
            "Sid": "WriteRunOutputs",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"],
            "Resource": [f"{artifacts_bucket_arn}/{runs}*", f"{checkpoints_bucket_arn}/{runs}*"],
        },
        {
            # Listing stays inside runs/: the attempt count, and a 404 (not 403) for an object not written yet.
            "Sid": "ListRunPrefixes",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [artifacts_bucket_arn, checkpoints_bucket_arn],
            "Condition": {"StringLike": {"s3:prefix": [f"{runs}*"]}},
        },
    ]
    external = sorted({s3_object_arn(partition, uri) for uri in external_checkpoint_uris})
    if external:
        statements.append({"Sid": "ReadExternalCheckpoints", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": external})
    return _policy(*statements)


def gate_policy(artifacts_bucket_arn: str) -> dict[str, Any]:
    """What a continuation's gate may do: read run records (index.json) to see whether its source succeeded."""
    runs = naming.RUNS_PREFIX
    return _policy(
        {
            "Sid": "ReadRunRecords",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"{artifacts_bucket_arn}/{runs}*/index.json"],
        },
        {
            # With ListBucket a record not written yet is a 404, which gate.sh waits through; without it, a 403.
            "Sid": "ListRunRecords",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [artifacts_bucket_arn],
            "Condition": {"StringLike": {"s3:prefix": [f"{runs}*"]}},
        },
    )


def job_policy(artifacts_bucket_arn: str) -> dict[str, Any]:
    """What a batch job's uploader may do: write its shards' outputs, attempt markers and index.json under jobs/.

    Nothing else: no reads (the provider reads index.json with the deployer's credentials), no deletes, no runs/.
    """
    jobs = naming.JOBS_PREFIX
    return _policy(
        {
            "Sid": "WriteJobOutputs",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"],
            "Resource": [f"{artifacts_bucket_arn}/{jobs}*"],
        },
        {
            # The attempt count: the uploader lists its shard's attempts/ (inside jobs/ only).
            "Sid": "ListJobPrefixes",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [artifacts_bucket_arn],
            "Condition": {"StringLike": {"s3:prefix": [f"{jobs}*"]}},
        },
    )


def prefix_read_policy_json(uri: str, what: str, *, head_bucket: bool = False) -> Callable[[str], str]:
    """prefix_read_policy as an inline role policy, for a partition known later (`partition_output.apply(...)`)."""

    def render(partition: str) -> str:
        # Compact, like the other inline role policies (IAM's size limits ignore whitespace either way).
        return json.dumps(prefix_read_policy(partition, uri, what, head_bucket=head_bucket), separators=(",", ":"))

    return render


def prefix_read_policy(partition: str, uri: str, what: str, *, head_bucket: bool = False) -> dict[str, Any]:
    """Read-only on one S3 prefix: GetObject under it, ListBucket of that prefix only (`Read<what>`, `List<what>`).

    `uri` is `s3://bucket/prefix/` (config adds the trailing slash), so `prefix/*` never reaches a sibling prefix that
    merely starts with the same characters. `head_bucket` adds HeadBucket, for readers that call it: Triton's S3
    filesystem does (triton-inference-server/core src/filesystem/implementations/s3.h at r26.02, the release of the
    pinned 26.02 image; read 2026-12-07): HeadBucket first (CheckClient, and every IsDirectory), ListObjectsV2 with
    Prefix=<dir>/ (IsDirectory, GetDirectoryContents), HeadObject (FileExists, FileModificationTime) and GetObject
    (LocalizePath). `aws s3 sync` (dataset imports) lists with its prefix and never calls HeadBucket, so it goes
    without. HeadObject needs s3:GetObject; HeadBucket and ListObjectsV2 need s3:ListBucket (S3 API reference).
    HeadBucket carries no prefix, so IAM cannot tell it from a listing that sends no prefix parameter: the FindBucket
    statement admits exactly the requests without an s3:prefix key, which lets such a listing see the key names of the
    bucket's first page, never an object's content. A listing with any other prefix (an empty one included, as the AWS
    CLI sends for the bucket root) stays refused. No KMS statement: a bucket encrypted with its own KMS key also needs
    kms:Decrypt on that key, which simfleet does not know.
    """
    match = _S3_URI_RE.match(uri)
    if not match or not match["key"].endswith("/"):
        raise ValueError(f"{uri!r} is not s3://<bucket>/<prefix>/")
    bucket, prefix = match["bucket"], match["key"]
    if any(c in prefix for c in "*?$"):
        raise ValueError(f"{uri!r}: a prefix with *, ? or $ would grant more than the prefix")
    bucket_arn = f"arn:{partition}:s3:::{bucket}"
    statements: list[dict[str, Any]] = [
        {
            # GetObject and HeadObject.
            "Sid": f"Read{what}",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"{bucket_arn}/{prefix}*"],
        },
        {
            # Readers list the prefix to find what is there (servers their models and versions, `aws s3 sync` its
            # objects); listing stays inside the prefix.
            "Sid": f"List{what}",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [bucket_arn],
            "Condition": {"StringLike": {"s3:prefix": [f"{prefix}*"]}},
        },
    ]
    if head_bucket:
        statements.append(
            {
                # HeadBucket, which Triton calls before anything else and which has no prefix: without it the server
                # exits.
                "Sid": "FindBucket",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [bucket_arn],
                "Condition": {"Null": {"s3:prefix": "true"}},
            }
        )
    return _policy(*statements)


@dataclass(frozen=True)
class AccessArgs:
    cluster_name: str
    oidc_provider_arn: pulumi.Input[str]
    oidc_provider_url: pulumi.Input[str]
    checkpoints_bucket_arn: pulumi.Input[str]
    artifacts_bucket_arn: pulumi.Input[str]
    tags: Mapping[str, str]
    region: str
    # `checkpoint.from: s3://bucket/key` of every run: the run role may read exactly these objects.
    external_checkpoint_uris: Sequence[str] = ()
    # The cluster's VPC: the Load Balancer Controller may change security groups only there.
    vpc_id: pulumi.Input[str] = field(kw_only=True)


class Access(pulumi.ComponentResource):
    """The IRSA roles; policies are pure functions above, the ARNs they need are filled in here."""

    roles: dict[str, pulumi.Output[str]]
    run_role_arn: pulumi.Output[str]
    gate_role_arn: pulumi.Output[str]
    job_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: AccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        for uri in args.external_checkpoint_uris:  # a bad URI fails before anything is registered
            s3_object_arn("aws", uri)
        super().__init__("simfleet:access:Access", name, None, opts)

        invoke = pulumi.InvokeOutputOptions(parent=self)
        partition = aws.get_partition_output(opts=invoke).partition
        account_id = aws.get_caller_identity_output(opts=invoke).account_id
        cluster, region = args.cluster_name, args.region

        elb_principal = aws.get_service_principal_output(service_name="elasticloadbalancing", region=region, opts=invoke).name
        addon_policies: dict[str, pulumi.Output[str]] = {
            "aws-load-balancer-controller": pulumi.Output.all(partition, elb_principal, account_id, args.vpc_id).apply(
                lambda v: _json(load_balancer_controller_policy(v[0], v[1], vpc=vpc_arn(v[0], region, v[2], v[3])))
            ),
            "cluster-autoscaler": pulumi.Output.all(partition, account_id).apply(
                lambda v: _json(cluster_autoscaler_policy(v[0], region, v[1], cluster))
            ),
        }
        self.roles = {}
        for key, (namespace, service_account) in ADDON_SERVICE_ACCOUNTS.items():
            role = self._role(f"{name}-{key}", args, namespace, service_account, addon_policies[key])
            self.roles[key] = role.role_arn

        run_policy_json = pulumi.Output.all(partition, args.checkpoints_bucket_arn, args.artifacts_bucket_arn).apply(
            lambda v: _json(run_policy(v[0], v[1], v[2], args.external_checkpoint_uris))
        )
        run_role = self._role(f"{name}-run", args, naming.RUNS_NAMESPACE, naming.RUN_SERVICE_ACCOUNT, run_policy_json)
        self.run_role_arn = run_role.role_arn
        gate_policy_json = pulumi.Output.from_input(args.artifacts_bucket_arn).apply(lambda arn: _json(gate_policy(arn)))
        gate_role = self._role(f"{name}-gate", args, naming.RUNS_NAMESPACE, naming.GATE_SERVICE_ACCOUNT, gate_policy_json)
        self.gate_role_arn = gate_role.role_arn
        job_policy_json = pulumi.Output.from_input(args.artifacts_bucket_arn).apply(lambda arn: _json(job_policy(arn)))
        job_role = self._role(f"{name}-job", args, naming.RUNS_NAMESPACE, naming.JOB_SERVICE_ACCOUNT, job_policy_json)
        self.job_role_arn = job_role.role_arn
        self.register_outputs(
            {
                "roles": self.roles,
                "runRoleArn": self.run_role_arn,
                "gateRoleArn": self.gate_role_arn,
                "jobRoleArn": self.job_role_arn,
            }
        )

    def _role(self, name: str, args: AccessArgs, namespace: str, service_account: str, policy: pulumi.Output[str]) -> IrsaRole:
        return IrsaRole(
            name,
            IrsaRoleArgs(
                oidc_provider_arn=args.oidc_provider_arn,
                oidc_provider_url=args.oidc_provider_url,
                namespace=namespace,
                service_account=service_account,
                policy_json=policy,
                tags=args.tags,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )


def _json(policy: dict[str, Any]) -> str:
    # Compact, so plans and diffs stay short (IAM's size limits ignore whitespace either way).
    return json.dumps(policy, separators=(",", ":"))
