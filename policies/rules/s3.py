"""S3 rules: every bucket is encrypted, private and TLS-only; artifacts expire, checkpoints are versioned."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from policies.rules.model import Context, Resource, Rule, dependency_urns, index_by_urn, of_type
from policies.rules.props import as_list, get_path, is_map, policy_document, policy_statements

# pulumi-aws 7 still ships the *V2 S3 types as deprecated aliases; a rule must accept both spellings.
BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
BUCKET_ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
BUCKET_PUBLIC_ACCESS = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
BUCKET_POLICY = ("aws:s3/bucketPolicy:BucketPolicy",)
BUCKET_LIFECYCLE = (
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2",
)
BUCKET_VERSIONING = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
SSE_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")  # S3 ServerSideEncryptionByDefault.SSEAlgorithm values


def bucket_purpose(bucket: Resource) -> str | None:
    """`artifacts` / `checkpoints` from the bucket's purpose tag, else from its names."""
    tags = bucket.props.get("tags")
    tagged = tags.get("simfleet:purpose") if is_map(tags) else None
    if isinstance(tagged, str):
        return tagged
    names = " ".join(str(bucket.props.get(k) or "") for k in ("bucket", "bucketPrefix")) + " " + bucket.name
    for purpose in ("checkpoints", "artifacts"):
        if purpose.rstrip("s") in names:
            return purpose
    return None


def _bucket_settings(resources: Sequence[Resource], types: tuple[str, ...]) -> dict[str, list[Resource]]:
    """bucket URN -> the settings resources of `types` that target it.

    Settings name their bucket in `bucket`: matched by value when both names are known, else by
    following `property_dependencies["bucket"]`, through other settings resources when they are chained
    (simfleet applies a bucket's settings one after another, each taking the name from the one before).
    """
    by_urn = index_by_urn(resources)
    buckets = of_type(resources, BUCKETS)
    by_name = {str(b.props.get("bucket")): b.urn for b in buckets if isinstance(b.props.get("bucket"), str)}
    found: dict[str, list[Resource]] = {b.urn: [] for b in buckets}
    for setting in of_type(resources, types):
        target = _bucket_of(setting, by_urn, by_name)
        if target is not None:
            found[target].append(setting)
    return found


def _bucket_of(setting: Resource, by_urn: Mapping[str, Resource], by_name: Mapping[str, str]) -> str | None:
    name = setting.props.get("bucket")
    if isinstance(name, str) and name in by_name:
        return by_name[name]
    queue, seen = dependency_urns(setting, "bucket"), set()
    while queue:
        urn = queue.pop(0)
        if urn in seen:
            continue
        seen.add(urn)
        upstream = by_urn.get(urn)
        if upstream is None:
            continue
        if upstream.resource_type in BUCKETS:
            return urn
        queue += dependency_urns(upstream, "bucket")
    return None


def _check_s3_encryption(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str | None, str]]:
    settings = _bucket_settings(resources, BUCKET_ENCRYPTION)
    for bucket in of_type(resources, BUCKETS):
        algorithms = [
            get_path(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
            for setting in settings[bucket.urn]
            for rule in as_list(setting.props.get("rules"))
        ]
        # The inline form on the bucket (pulumi-aws < 7).
        algorithms.append(
            get_path(
                bucket.props, "serverSideEncryptionConfiguration", "rule", "applyServerSideEncryptionByDefault", "sseAlgorithm"
            )
        )
        if not any(a in SSE_ALGORITHMS for a in algorithms):
            yield (
                bucket.urn,
                (
                    f"bucket {bucket.name} has no default encryption: add a BucketServerSideEncryptionConfiguration "
                    f"with applyServerSideEncryptionByDefault.sseAlgorithm one of {', '.join(SSE_ALGORITHMS)}"
                ),
            )


PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def _check_s3_public_access(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str | None, str]]:
    settings = _bucket_settings(resources, BUCKET_PUBLIC_ACCESS)
    for bucket in of_type(resources, BUCKETS):
        blocks = settings[bucket.urn]
        if not blocks:
            yield bucket.urn, f"bucket {bucket.name} has no BucketPublicAccessBlock; add one with all four flags true"
            continue
        for block in blocks:
            off = [flag for flag in PUBLIC_ACCESS_FLAGS if block.props.get(flag) is not True]
            if off:
                yield (
                    bucket.urn,
                    f"bucket {bucket.name}: public access block {block.name} leaves {', '.join(off)} off; set all four to true",
                )


def _denies_insecure_transport(statement: Mapping[str, Any]) -> bool:
    if statement.get("Effect") != "Deny":
        return False
    principal = statement.get("Principal")
    if not (principal == "*" or (is_map(principal) and "*" in as_list(principal.get("AWS")))):
        return False
    if not any(a in ("s3:*", "*") for a in as_list(statement.get("Action"))):
        return False
    conditions = statement.get("Condition")
    if not is_map(conditions):
        return False
    for operator in ("Bool", "BoolIfExists"):
        value = get_path(conditions, operator, "aws:SecureTransport")
        if any(str(v).lower() == "false" for v in as_list(value)):
            resources = [str(r) for r in as_list(statement.get("Resource"))]
            # Both the bucket (ListBucket, config calls) and its objects (`arn/*`) must be covered.
            return any(r.endswith("/*") for r in resources) and any(not r.endswith("/*") for r in resources)
    return False


def _check_s3_tls_only(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str | None, str]]:
    settings = _bucket_settings(resources, BUCKET_POLICY)
    for bucket in of_type(resources, BUCKETS):
        documents = [policy_document(p.props.get("policy")) for p in settings[bucket.urn]]
        documents.append(policy_document(bucket.props.get("policy")))
        if not any(_denies_insecure_transport(s) for d in documents for s in policy_statements(d)):
            yield (
                bucket.urn,
                (
                    f"bucket {bucket.name} does not refuse plain HTTP: its bucket policy needs a Deny of s3:* for "
                    "Principal * on the bucket and bucket/* when aws:SecureTransport is false"
                ),
            )


def _expiring_rule(rule: Any) -> bool:
    return is_map(rule) and rule.get("status") == "Enabled" and is_map(rule.get("expiration"))


def _check_s3_artifacts_lifecycle(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str | None, str]]:
    settings = _bucket_settings(resources, BUCKET_LIFECYCLE)
    for bucket in of_type(resources, BUCKETS):
        if bucket_purpose(bucket) != "artifacts":
            continue
        rules = [rule for s in settings[bucket.urn] for rule in as_list(s.props.get("rules"))]
        inline = [
            r for r in as_list(bucket.props.get("lifecycleRules")) if is_map(r) and r.get("enabled") and r.get("expirations")
        ]
        if not any(_expiring_rule(r) for r in rules) and not inline:
            yield (
                bucket.urn,
                (
                    f"artifacts bucket {bucket.name} keeps everything forever: add a BucketLifecycleConfiguration "
                    "with an Enabled rule that has an expiration (platform.buckets.artifactRetentionDays)"
                ),
            )


def _check_s3_checkpoints_versioning(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str | None, str]]:
    settings = _bucket_settings(resources, BUCKET_VERSIONING)
    for bucket in of_type(resources, BUCKETS):
        if bucket_purpose(bucket) != "checkpoints":
            continue
        statuses = [get_path(s.props, "versioningConfiguration", "status") for s in settings[bucket.urn]]
        if "Enabled" not in statuses and get_path(bucket.props, "versioning", "enabled") is not True:
            yield (
                bucket.urn,
                (
                    f"checkpoints bucket {bucket.name} is not versioned: a rerun would overwrite the only copy of "
                    "a checkpoint; add a BucketVersioning with versioningConfiguration.status Enabled"
                ),
            )


RULES: tuple[Rule, ...] = (
    Rule(
        "s3-encryption", "S3 buckets have default server-side encryption.", "mandatory", "high", stack_check=_check_s3_encryption
    ),
    Rule(
        "s3-public-access-block",
        "S3 buckets block every form of public access.",
        "mandatory",
        "critical",
        stack_check=_check_s3_public_access,
    ),
    Rule(
        "s3-tls-only", "S3 bucket policies deny requests made without TLS.", "mandatory", "high", stack_check=_check_s3_tls_only
    ),
    Rule(
        "s3-artifacts-lifecycle",
        "The artifacts bucket expires artifacts by lifecycle rules.",
        "mandatory",
        "medium",
        stack_check=_check_s3_artifacts_lifecycle,
    ),
    Rule(
        "s3-checkpoints-versioning",
        "The checkpoints bucket is versioned.",
        "mandatory",
        "high",
        stack_check=_check_s3_checkpoints_versioning,
    ),
)
