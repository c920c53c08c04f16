"""Storage: bucket names, security settings, lifecycle rules from config, and what survives a destroy."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pulumi
import pytest

import naming
from components.storage import (
    Storage,
    StorageArgs,
    artifact_lifecycle_rules,
    checkpoint_lifecycle_rules,
    tls_only_policy,
)
from config import ArtifactRetention, BucketsConfig
from tools.mocks import ACCOUNT_ID

BUCKET = "aws:s3/bucket:Bucket"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
POLICY = "aws:s3/bucketPolicy:BucketPolicy"
SETTINGS = (PAB, OWNERSHIP, SSE, LIFECYCLE, POLICY)

CUSTOM = BucketsConfig(
    artifact_retention_days=ArtifactRetention(logs=11, videos=22, metrics=33),
    checkpoint_noncurrent_days=5,
    abort_incomplete_upload_days=2,
)


def _build(pulumi_mocks, config: BucketsConfig = CUSTOM, stack: str = "dev"):
    outputs: dict[str, Any] = {}

    def build() -> None:
        storage = Storage("storage", StorageArgs(stack, config, {"simfleet:stack": stack}))
        pulumi.Output.all(
            storage.checkpoints_bucket, storage.checkpoints_bucket_arn, storage.artifacts_bucket, storage.artifacts_bucket_arn
        ).apply(lambda v: outputs.update(zip(("checkpoints", "checkpoints_arn", "artifacts", "artifacts_arn"), v, strict=True)))

    return pulumi_mocks(build, stack=stack), outputs


# ---- pure helpers -------------------------------------------------------------------------------


def test_bucket_name_is_unique_per_stack_and_account():
    assert naming.bucket_name("dev", "checkpoints", ACCOUNT_ID) == f"simfleet-dev-checkpoints-{ACCOUNT_ID}"
    assert naming.bucket_name("prod", "artifacts", "210987654321") == "simfleet-prod-artifacts-210987654321"


def test_longest_stack_name_that_fits_and_one_more():
    fits = "s" * (naming.BUCKET_NAME_MAX - len("simfleet--checkpoints-") - 12)
    assert len(naming.bucket_name(fits, "checkpoints", ACCOUNT_ID)) == naming.BUCKET_NAME_MAX
    with pytest.raises(ValueError, match=rf"S3 allows 63: use a stack name of at most {len(fits)} characters"):
        naming.bucket_name(fits + "s", "checkpoints", ACCOUNT_ID)


@pytest.mark.parametrize("stack", ["Dev", "dev_1", "dev.eu", "-dev", ""])
def test_stack_names_s3_cannot_hold_are_rejected(stack):
    with pytest.raises(ValueError, match="lowercase letters, digits and hyphens"):
        naming.bucket_name(stack, "artifacts", ACCOUNT_ID)


def test_tls_policy_denies_plain_http_on_bucket_and_objects():
    arn = "arn:aws:s3:::b"
    [statement] = tls_only_policy(arn)["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert statement["Resource"] == [arn, f"{arn}/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_checkpoint_rules_never_expire_current_versions():
    rules = checkpoint_lifecycle_rules(CUSTOM)
    # One exception: the uploader's tagged staging copies of partial checkpoints (the run role deletes nothing).
    [staging] = [rule for rule in rules if "expiration" in rule]
    assert staging["filter"] == {"tag": {"key": naming.ARTIFACT_KIND_TAG, "value": naming.STAGING_KIND}}
    assert all("transitions" not in rule for rule in rules)
    [noncurrent] = [r for r in rules if "noncurrent_version_expiration" in r]
    assert noncurrent["noncurrent_version_expiration"] == {"noncurrent_days": 5}
    assert noncurrent["filter"] == {}


def test_artifact_rules_expire_each_kind_by_tag_only():
    rules = artifact_lifecycle_rules(CUSTOM)
    expiring = {r["filter"]["tag"]["value"]: r["expiration"]["days"] for r in rules if "expiration" in r}
    assert expiring == {"logs": 11, "videos": 22, "metrics": 33}
    for rule in rules:
        if "expiration" in rule:
            # A rule without the tag filter would also expire index.json, which marks a run as finished.
            assert rule["filter"]["tag"]["key"] == naming.ARTIFACT_KIND_TAG, rule


def test_artifact_kinds_match_the_retention_config():
    assert set(naming.ARTIFACT_KINDS) == set(ArtifactRetention.model_fields)


# ---- the component under mocks ------------------------------------------------------------------


def test_bucket_names_and_outputs(pulumi_mocks):
    rec, outputs = _build(pulumi_mocks)
    names = {r.name: r.inputs["bucket"] for r in rec.of_type(BUCKET)}
    assert names == {
        "storage-checkpoints": f"simfleet-dev-checkpoints-{ACCOUNT_ID}",
        "storage-artifacts": f"simfleet-dev-artifacts-{ACCOUNT_ID}",
    }
    assert outputs == {
        "checkpoints": f"simfleet-dev-checkpoints-{ACCOUNT_ID}",
        "checkpoints_arn": f"arn:aws:s3:::simfleet-dev-checkpoints-{ACCOUNT_ID}",
        "artifacts": f"simfleet-dev-artifacts-{ACCOUNT_ID}",
        "artifacts_arn": f"arn:aws:s3:::simfleet-dev-artifacts-{ACCOUNT_ID}",
    }


def test_buckets_and_their_settings_survive_destroy(pulumi_mocks):
    rec, _ = _build(pulumi_mocks)
    for bucket in rec.of_type(BUCKET):
        assert bucket.inputs["forceDestroy"] is False, bucket.urn
    kept = [r for r in rec.all if r.type in (BUCKET, VERSIONING, *SETTINGS)]
    assert len(kept) == 2 + 1 + 2 * len(SETTINGS)
    for resource in kept:
        assert resource.options.get("retainOnDelete") is True, resource.urn
        assert resource.parent.endswith("simfleet:storage:Storage::storage"), resource.urn


@pytest.mark.parametrize("purpose", ["checkpoints", "artifacts"])
def test_every_bucket_is_private_encrypted_and_tls_only(pulumi_mocks, purpose):
    rec, _ = _build(pulumi_mocks)
    bucket = rec.one(BUCKET, f"storage-{purpose}").inputs["bucket"]
    pab = rec.one(PAB, f"storage-{purpose}-public-access").inputs
    assert {
        k: pab[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    } == dict.fromkeys(("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True)
    assert rec.one(OWNERSHIP, f"storage-{purpose}-ownership").inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    sse = rec.one(SSE, f"storage-{purpose}-encryption").inputs["rules"]
    assert sse == [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]
    policy = rec.one(POLICY, f"storage-{purpose}-tls-only").inputs
    assert policy["bucket"] == bucket
    assert json.loads(policy["policy"]) == tls_only_policy(f"arn:aws:s3:::{bucket}")


def test_only_checkpoints_are_versioned(pulumi_mocks):
    rec, _ = _build(pulumi_mocks)
    [versioning] = rec.of_type(VERSIONING)
    assert versioning.name == "storage-checkpoints-versioning"
    assert versioning.inputs["versioningConfiguration"] == {"status": "Enabled"}
    assert versioning.inputs["bucket"] == f"simfleet-dev-checkpoints-{ACCOUNT_ID}"


def test_lifecycle_days_come_from_config(pulumi_mocks):
    rec, _ = _build(pulumi_mocks)
    checkpoints = {r["id"]: r for r in rec.one(LIFECYCLE, "storage-checkpoints-lifecycle").inputs["rules"]}
    assert checkpoints["expire-noncurrent-checkpoints"]["noncurrentVersionExpiration"] == {"noncurrentDays": 5}
    assert checkpoints["abort-incomplete-uploads"]["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 2}
    assert [i for i, rule in checkpoints.items() if "expiration" in rule] == ["expire-partial-staging-copies"]

    artifacts = {r["id"]: r for r in rec.one(LIFECYCLE, "storage-artifacts-lifecycle").inputs["rules"]}
    for kind, days in (("logs", 11), ("videos", 22), ("metrics", 33)):
        rule = artifacts[f"expire-{kind}"]
        assert rule["filter"] == {"tag": {"key": naming.ARTIFACT_KIND_TAG, "value": kind}}
        assert rule["expiration"] == {"days": days}
    assert artifacts["abort-incomplete-uploads"]["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 2}


def test_settings_are_applied_one_after_another(pulumi_mocks):
    # S3 rejects concurrent configuration writes to one bucket, and lifecycle must follow versioning.
    rec, _ = _build(pulumi_mocks)
    chain = [
        rec.one(PAB, "storage-checkpoints-public-access"),
        rec.one(OWNERSHIP, "storage-checkpoints-ownership"),
        rec.one(SSE, "storage-checkpoints-encryption"),
        rec.one(VERSIONING, "storage-checkpoints-versioning"),
        rec.one(LIFECYCLE, "storage-checkpoints-lifecycle"),
        rec.one(POLICY, "storage-checkpoints-tls-only"),
    ]
    for before, after in itertools.pairwise(chain):
        assert before.urn in after.options.get("dependsOn", []), f"{after.urn} does not wait for {before.urn}"


def test_too_long_stack_fails_before_anything_is_registered(pulumi_mocks):
    stack = "a-very-long-stack-name-for-buckets"
    with pytest.raises(ValueError, match="use a stack name of at most 29 characters"):
        _build(pulumi_mocks, stack=stack)
