"""The platform rules (S3, ECR, EKS with its nodes, IAM): each passes on a compliant stack and fails on a broken one."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from policy_edits import (
    Failure,
    assert_breaks,
    drop,
    edit,
    failure_ids,
    set_path,
    untested,
    violations,
)
from policy_stack import compliant, context, trust, urn

from policies.rules import Resource, ecr, eks, evaluate, iam, s3, stack_from_urn
from policies.rules.eks import eks_cluster_view

FAILURES: list[Failure] = [
    ("s3-encryption", lambda rs: drop(rs, "storage-artifacts-encryption"), "no default encryption"),
    (
        "s3-encryption",
        lambda rs: edit(rs, "storage-artifacts-encryption", set_path(["rules"], [{"applyServerSideEncryptionByDefault": {}}])),
        "storage-artifacts",
    ),
    ("s3-public-access-block", lambda rs: drop(rs, "storage-checkpoints-public-access"), "no BucketPublicAccessBlock"),
    (
        "s3-public-access-block",
        lambda rs: edit(rs, "storage-checkpoints-public-access", set_path(["restrictPublicBuckets"], False)),
        "restrictPublicBuckets",
    ),
    ("s3-tls-only", lambda rs: drop(rs, "storage-artifacts-tls-only"), "plain HTTP"),
    (
        "s3-tls-only",
        lambda rs: edit(
            rs,
            "storage-artifacts-tls-only",
            set_path(["policy"], json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*"}]})),
        ),
        "plain HTTP",
    ),
    ("s3-artifacts-lifecycle", lambda rs: drop(rs, "storage-artifacts-lifecycle"), "keeps everything forever"),
    ("s3-checkpoints-versioning", lambda rs: drop(rs, "storage-checkpoints-versioning"), "not versioned"),
    (
        "s3-checkpoints-versioning",
        lambda rs: edit(rs, "storage-checkpoints-versioning", set_path(["versioningConfiguration", "status"], "Suspended")),
        "not versioned",
    ),
    (
        "ecr-scan-on-push",
        lambda rs: edit(rs, "registry-monty", set_path(["imageScanningConfiguration", "scanOnPush"], False)),
        "scanOnPush",
    ),
    ("ecr-immutable-tags", lambda rs: edit(rs, "registry-monty", set_path(["imageTagMutability"], "MUTABLE")), "IMMUTABLE"),
    ("ecr-lifecycle-policy", lambda rs: drop(rs, "registry-glue-base-lifecycle"), "glue-base has no lifecycle policy"),
    ("eks-version-supported", lambda rs: edit(rs, "cluster-eks", set_path(["version"], "1.31")), "left EKS standard support"),
    ("eks-version-supported", lambda rs: edit(rs, "cluster-eks", set_path(["version"], "1.99")), "not in the EKS release table"),
    (
        "eks-control-plane-logs",
        lambda rs: edit(rs, "cluster-eks", set_path(["enabledClusterLogTypes"], ["api"])),
        "missing audit",
    ),
    (
        "eks-secrets-encryption",
        lambda rs: edit(rs, "cluster-eks", lambda p: p.pop("encryptionConfigKeyArn")),
        "not envelope-encrypted",
    ),
    ("eks-endpoint-access", lambda rs: edit(rs, "cluster-eks", set_path(["publicAccessCidrs"], ["0.0.0.0/0"])), "0.0.0.0/0"),
    ("eks-endpoint-access", lambda rs: edit(rs, "cluster-eks", lambda p: p.pop("publicAccessCidrs")), "no publicAccessCidrs"),
    (
        "eks-nodes-private-subnets",
        lambda rs: [
            replace(
                r,
                property_dependencies={
                    **r.property_dependencies,
                    "subnetIds": [urn("dev", "aws:ec2/subnet:Subnet", "network-public-0")],
                },
            )
            if r.name == "nodes-system"
            else r
            for r in rs
        ],
        "which is public",
    ),
    (
        "eks-nodes-private-subnets",
        lambda rs: [replace(r, property_dependencies={}) if r.name == "nodes-gpu-spot" else r for r in rs],
        "cannot be shown to be private",
    ),
    (
        "ec2-launch-template-imdsv2",
        lambda rs: edit(rs, "nodes-system-lt", set_path(["metadataOptions", "httpTokens"], "optional")),
        "httpTokens",
    ),
    (
        "ec2-launch-template-imdsv2",
        lambda rs: edit(rs, "nodes-system-lt", set_path(["metadataOptions", "httpPutResponseHopLimit"], 2)),
        "HopLimit is 2",
    ),
    (
        "iam-irsa-trust-scoped",
        lambda rs: edit(
            rs, "access-run-role", set_path(["assumeRolePolicy"], trust("system:serviceaccount:simfleet-runs:*", "StringLike"))
        ),
        "StringLike",
    ),
    (
        "iam-irsa-trust-scoped",
        lambda rs: edit(rs, "access-run-role", set_path(["assumeRolePolicy"], trust("system:serviceaccount:simfleet-runs:*"))),
        "does not name one service account",
    ),
    (
        "iam-irsa-trust-scoped",
        lambda rs: edit(
            rs,
            "access-run-role",
            set_path(["assumeRolePolicy"], trust(["system:serviceaccount:a:b", "system:serviceaccount:c:d"])),
        ),
        "in 2 namespaces",
    ),
    (
        "iam-irsa-trust-scoped",
        lambda rs: edit(rs, "access-run-role", set_path(["assumeRolePolicy"], trust([]))),
        "found no subject",
    ),
    (
        "iam-irsa-trust-scoped",
        lambda rs: edit(rs, "access-run-role", set_path(["assumeRolePolicy"], trust("system:serviceaccount:a:b", audience=None))),
        ":aud",
    ),
    (
        "iam-no-admin-wildcard",
        lambda rs: edit(
            rs,
            "access-run-policy",
            set_path(["policy"], json.dumps({"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})),
        ),
        "Action * on Resource *",
    ),
]


@pytest.mark.parametrize(("name", "mutate", "expected"), FAILURES, ids=failure_ids(FAILURES))
def test_rule_fails_on_broken_stack(name: str, mutate: Callable[[list[Resource]], list[Resource]], expected: str) -> None:
    assert_breaks(name, mutate, expected)


def test_every_platform_rule_has_a_failing_case() -> None:
    # eks-version-support-ending is advisory and date-driven: test_version_window_warns_inside_sixty_days covers it.
    assert untested((*s3.RULES, *ecr.RULES, *eks.RULES, *iam.RULES), FAILURES) == {"eks-version-support-ending"}


def test_a_subnet_routed_to_the_internet_gateway_is_public_without_tags() -> None:
    public = urn("dev", "aws:ec2/subnet:Subnet", "network-public-1")
    resources = edit(compliant("dev"), "network-public-1", set_path(["tags"], {}))
    resources = [
        replace(r, property_dependencies={**r.property_dependencies, "subnetIds": [public]}) if r.name == "nodes-gpu-spot" else r
        for r in resources
    ]
    found = violations("eks-nodes-private-subnets", resources)
    assert found == [
        "node group nodes-gpu-spot uses subnet network-public-1, which is public: its route table sends traffic to an "
        "internet gateway; nodes belong in private subnets"
    ]


def test_version_window_warns_inside_sixty_days() -> None:
    resources = compliant("dev")
    assert violations("eks-version-support-ending", resources) == []
    late = context("dev", today=datetime.date(2027, 2, 20))  # 1.35 ends 2027-03-27: 35 days left
    found = violations("eks-version-support-ending", resources, late)
    assert found and "35 days" in found[0]
    assert violations("eks-version-supported", resources, late) == []


def test_prod_rules_follow_the_stack_name() -> None:
    dev_shaped = compliant("dev")
    as_prod = [replace(r, urn=r.urn.replace("urn:pulumi:dev::", "urn:pulumi:prod-eu::")) for r in dev_shaped]
    ctx = context("prod-eu")
    logs = violations("eks-control-plane-logs", as_prod, ctx)
    assert logs and "authenticator" in logs[0] and "prod" in logs[0]
    endpoint = violations("eks-endpoint-access", as_prod, ctx)
    assert any("private endpoint only" in m for m in endpoint)
    assert stack_from_urn(as_prod[0].urn) == "prod-eu"


# ---------------------------------------------------------------------------------------------
# EKS: one normalizer for the component and its aws:eks child
# ---------------------------------------------------------------------------------------------


def aws_cluster(**vpc: Any) -> Resource:
    props: dict[str, Any] = {
        "version": "1.35",
        "enabledClusterLogTypes": ["api", "audit"],
        "vpcConfig": {
            "endpointPrivateAccess": True,
            "endpointPublicAccess": True,
            "publicAccessCidrs": ["203.0.113.0/24"],
            **vpc,
        },
        "encryptionConfig": {"provider": {"keyArn": "arn:aws:kms:us-east-1:1:key/k"}, "resources": ["secrets"]},
    }
    return Resource(
        "aws:eks/cluster:Cluster",
        urn("dev", "aws:eks/cluster:Cluster", "cluster-eks-eksCluster"),
        "cluster-eks-eksCluster",
        props,
    )


def test_eks_child_shape_is_checked_by_the_same_rules() -> None:
    ok = aws_cluster()
    view = eks_cluster_view(ok)
    assert view is not None and view.public_cidrs == ("203.0.113.0/24",) and view.secrets_encrypted
    assert evaluate([ok], context()) == []
    open_to_all = aws_cluster(publicAccessCidrs=["0.0.0.0/0"])
    assert any("vpcConfig.publicAccessCidrs includes 0.0.0.0/0" in v.message for v in evaluate([open_to_all], context()))
    no_secrets = replace(ok, props={**ok.props, "encryptionConfig": None})
    assert [v.policy for v in evaluate([no_secrets], context())] == ["eks-secrets-encryption"]
    prod = replace(ok, urn=ok.urn.replace("dev::", "prod::"))
    assert {v.policy for v in evaluate([prod], context("prod"))} == {"eks-control-plane-logs", "eks-endpoint-access"}
