"""S3 storage for runs: the versioned checkpoints bucket and the artifacts bucket, both private, TLS-only and kept on destroy."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

import naming
from components.tags import merge_tags
from config import BucketsConfig

BUCKET_PURPOSES: tuple[str, ...] = ("checkpoints", "artifacts")

# SSE-S3 (AES256) rather than SSE-KMS: with KMS every reader and writer (run pods, the run provider
# reading index.json, researchers, other stacks' runs continuing from a checkpoint) would also need
# kms:Decrypt/GenerateDataKey through a key policy, and thousands of small artifact objects would each
# cost KMS requests. The data is not regulated; who may read it is decided by IAM and the bucket
# policy either way.
SSE_ALGORITHM = "AES256"

LifecycleRule = aws.s3.BucketLifecycleConfigurationRuleArgsDict


def tls_only_policy(bucket_arn: str) -> dict[str, Any]:
    """Bucket policy that refuses every request made without TLS, on the bucket and on its objects."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def _abort_incomplete_uploads(config: BucketsConfig) -> LifecycleRule:
    # A rule of its own: S3 rejects AbortIncompleteMultipartUpload in a rule that filters on tags.
    return {
        "id": "abort-incomplete-uploads",
        "status": "Enabled",
        "filter": {},
        "abort_incomplete_multipart_upload": {"days_after_initiation": config.abort_incomplete_upload_days},
    }


def checkpoint_lifecycle_rules(config: BucketsConfig) -> list[LifecycleRule]:
    """Only replaced (noncurrent) versions expire; the current version of a checkpoint is kept forever.

    The one exception is the uploader's staging copy of a partial checkpoint (<key>.uploading, tagged
    `simfleet-kind=staging` after it was copied into place): the run role may delete nothing, so it expires here.
    """
    return [
        {
            "id": "expire-noncurrent-checkpoints",
            "status": "Enabled",
            "filter": {},
            "noncurrent_version_expiration": {"noncurrent_days": config.checkpoint_noncurrent_days},
        },
        {
            "id": "expire-partial-staging-copies",
            "status": "Enabled",
            "filter": {"tag": {"key": naming.ARTIFACT_KIND_TAG, "value": naming.STAGING_KIND}},
            "expiration": {"days": naming.STAGING_EXPIRY_DAYS},
        },
        _abort_incomplete_uploads(config),
    ]


def artifact_lifecycle_rules(config: BucketsConfig) -> list[LifecycleRule]:
    """One expiry rule per artifact kind, selected by the object tag the artifact-uploader sets.

    Artifacts live at runs/<run>/<hash>/..., and lifecycle prefixes have no wildcards, so the kind
    is carried by the `simfleet-kind` tag. Untagged objects (each run's index.json) never expire:
    the run provider reads index.json to know a run already finished.
    """
    retention = config.artifact_retention_days
    rules: list[LifecycleRule] = [
        {
            "id": f"expire-{kind}",
            "status": "Enabled",
            "filter": {"tag": {"key": naming.ARTIFACT_KIND_TAG, "value": kind}},
            "expiration": {"days": getattr(retention, kind)},
        }
        for kind in naming.ARTIFACT_KINDS
    ]
    return [*rules, _abort_incomplete_uploads(config)]


@dataclass(frozen=True)
class StorageArgs:
    stack: str
    config: BucketsConfig
    tags: Mapping[str, str] = field(default_factory=dict)


class Storage(pulumi.ComponentResource):
    """The two run buckets. Both survive `pulumi destroy` and replacement: they hold user data."""

    checkpoints_bucket: pulumi.Output[str]
    checkpoints_bucket_arn: pulumi.Output[str]
    artifacts_bucket: pulumi.Output[str]
    artifacts_bucket_arn: pulumi.Output[str]

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # Check the name before registering anything: the account id always has 12 digits.
        problems = [p for purpose in BUCKET_PURPOSES for p in naming.bucket_name_problems(args.stack, purpose)]
        if problems:
            raise ValueError("Storage: " + "; ".join(dict.fromkeys(problems)))
        super().__init__("simfleet:storage:Storage", name, None, opts)

        account_id = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        checkpoints = self._bucket(name, args, "checkpoints", account_id, checkpoint_lifecycle_rules(args.config), versioned=True)
        artifacts = self._bucket(name, args, "artifacts", account_id, artifact_lifecycle_rules(args.config), versioned=False)

        self.checkpoints_bucket, self.checkpoints_bucket_arn = checkpoints
        self.artifacts_bucket, self.artifacts_bucket_arn = artifacts
        self.register_outputs(
            {
                "checkpointsBucket": self.checkpoints_bucket,
                "checkpointsBucketArn": self.checkpoints_bucket_arn,
                "artifactsBucket": self.artifacts_bucket,
                "artifactsBucketArn": self.artifacts_bucket_arn,
            }
        )

    def _bucket(
        self,
        name: str,
        args: StorageArgs,
        purpose: str,
        account_id: pulumi.Output[str],
        lifecycle_rules: list[LifecycleRule],
        versioned: bool,
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """A locked-down bucket; returns its name (once fully configured) and its ARN."""
        # retain_on_delete on the bucket AND its settings: checkpoints and artifacts are user data and
        # must outlive `pulumi destroy` and any replacement. Retaining the settings too means a destroy
        # never strips the public access block, TLS policy or lifecycle from a bucket that stays.
        # force_destroy stays False, so even a deliberate delete fails while objects remain.
        keep = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        bucket = aws.s3.Bucket(
            f"{name}-{purpose}",
            bucket=account_id.apply(lambda account: naming.bucket_name(args.stack, purpose, account)),
            force_destroy=False,
            tags=merge_tags(args.tags, {"simfleet:purpose": purpose}),
            opts=keep,
        )
        # Each setting takes the bucket name from the one before, so they are applied one at a time:
        # S3 answers concurrent configuration writes on one bucket with 409 OperationAborted
        # (hashicorp/terraform-provider-aws#7628, #33552), and lifecycle rules with noncurrent-version
        # actions must follow versioning (pulumi_aws BucketLifecycleConfiguration docs). The public
        # access block goes first so the bucket is never public, even for a moment.
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-{purpose}-public-access",
            bucket=bucket.bucket,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=keep,
        )
        # BucketOwnerEnforced disables ACLs: access is decided by policies alone.
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-{purpose}-ownership",
            bucket=public_access.bucket,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=keep,
        )
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-{purpose}-encryption",
            bucket=ownership.bucket,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": SSE_ALGORITHM}}],
            opts=keep,
        )
        configured: pulumi.Output[str] = encryption.bucket
        if versioned:
            versioning = aws.s3.BucketVersioning(
                f"{name}-{purpose}-versioning",
                bucket=configured,
                versioning_configuration={"status": "Enabled"},
                opts=keep,
            )
            configured = versioning.bucket
        lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-{purpose}-lifecycle", bucket=configured, rules=lifecycle_rules, opts=keep
        )
        policy = aws.s3.BucketPolicy(
            f"{name}-{purpose}-tls-only",
            bucket=lifecycle.bucket,
            policy=bucket.arn.apply(lambda arn: json.dumps(tls_only_policy(arn))),
            opts=keep,
        )
        # Consumers get the name from the end of the chain, so nothing writes before the bucket is locked down.
        return policy.bucket, bucket.arn
