"""IRSA trust policies and each role's permissions: exact service accounts, least privilege, partition-aware ARNs."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest

import naming
import versions
from components.access import (
    ADDON_SERVICE_ACCOUNTS,
    Access,
    AccessArgs,
    cluster_autoscaler_policy,
    gate_policy,
    job_policy,
    prefix_read_policy,
    run_policy,
    s3_object_arn,
)
from components.irsa import IRSA_AUDIENCE, IrsaRole, IrsaRoleArgs, trust_policy
from components.policies_lbc import load_balancer_controller_policy, vpc_arn
from tools import mocks
from tools.mocks import ACCOUNT_ID

VPC = "vpc-0abc1234def567890"
VPC_ARN = f"arn:aws:ec2:us-east-1:{ACCOUNT_ID}:vpc/{VPC}"

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/ABC123"
PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{ISSUER}"
CKPT = f"arn:aws:s3:::simfleet-dev-checkpoints-{ACCOUNT_ID}"
ART = f"arn:aws:s3:::simfleet-dev-artifacts-{ACCOUNT_ID}"
EXTERNAL = "s3://simfleet-shared-brains/monty/quadruped/v12.mstate"


# ---- helpers: a small IAM evaluator, good enough for Allow-only identity policies -----------------


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _allows(policy: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from (s for s in policy["Statement"] if s["Effect"] == "Allow")


def allowed(policy: dict[str, Any], action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """Whether an Allow statement matches. IAM's * and ? in ARNs behave like fnmatch's (no [...] in our ARNs)."""
    for statement in _allows(policy):
        if not any(fnmatch.fnmatchcase(action, a) for a in _as_list(statement["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in _as_list(statement["Resource"])):
            continue
        condition = statement.get("Condition", {})
        keys = context or {}
        like = condition.get("StringLike", {})
        # A condition on a key the request does not carry is false (no ...IfExists operator is used here).
        if any(k not in keys or not any(fnmatch.fnmatchcase(keys[k], p) for p in _as_list(v)) for k, v in like.items()):
            continue
        # Null: "true" holds when the request carries no such key, "false" when it does.
        if any((k not in keys) != (v == "true") for k, v in condition.get("Null", {}).items()):
            continue
        return True
    return False


def assert_least_privilege(policy: dict[str, Any]) -> None:
    for statement in _allows(policy):
        actions = _as_list(statement["Action"])
        assert all("*" not in a for a in actions), f"wildcard action in {statement}"
        assert len(set(actions)) == len(actions), f"duplicate action in {statement}"
        for action in actions:
            assert not action.startswith("s3:Delete"), statement


def _arns(policy: dict[str, Any]) -> list[str]:
    return [r for s in policy["Statement"] for r in _as_list(s["Resource"]) if r != "*"]


# ---- trust policy -------------------------------------------------------------------------------


def test_trust_policy_pins_sub_and_aud_to_one_service_account():
    [statement] = trust_policy(PROVIDER_ARN, f"https://{ISSUER}", "kube-system", "cluster-autoscaler")["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Federated": PROVIDER_ARN}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    # StringEquals only: StringLike would let a pattern match other service accounts.
    assert statement["Condition"] == {
        "StringEquals": {
            f"{ISSUER}:sub": "system:serviceaccount:kube-system:cluster-autoscaler",
            f"{ISSUER}:aud": IRSA_AUDIENCE,
        }
    }
    assert IRSA_AUDIENCE == "sts.amazonaws.com"


def test_trust_policy_keeps_the_providers_partition():
    cn_issuer = "oidc.eks.cn-north-1.amazonaws.com.cn/id/XYZ"
    cn_arn = f"arn:aws-cn:iam::{ACCOUNT_ID}:oidc-provider/{cn_issuer}"
    [statement] = trust_policy(cn_arn, cn_issuer, "ns", "sa")["Statement"]
    assert statement["Principal"]["Federated"] == cn_arn
    assert f"{cn_issuer}:sub" in statement["Condition"]["StringEquals"]


@pytest.mark.parametrize(
    ("namespace", "service_account"), [("kube-system", "*"), ("*", "sa"), ("ns", "sa?"), ("", "sa"), ("a:b", "c")]
)
def test_trust_policy_refuses_anything_but_one_exact_service_account(namespace, service_account):
    with pytest.raises(ValueError, match="exactly one"):
        trust_policy(PROVIDER_ARN, ISSUER, namespace, service_account)


def test_trust_policy_refuses_a_non_provider_arn():
    with pytest.raises(ValueError, match="OIDC provider ARN"):
        trust_policy(f"arn:aws:iam::{ACCOUNT_ID}:role/x", ISSUER, "ns", "sa")


# ---- add-on policies ----------------------------------------------------------------------------


def test_load_balancer_controller_policy_matches_upstream_structure():
    policy = load_balancer_controller_policy("aws", vpc=VPC_ARN)
    assert_least_privilege(policy)
    statements = policy["Statement"]
    assert len(statements) == 16
    assert sum(len(_as_list(s["Action"])) for s in statements) == 86
    # Everything the controller deletes or changes carries its cluster tag.
    for action in (
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:DeleteTargetGroup",
        "ec2:DeleteSecurityGroup",
    ):
        [statement] = [s for s in statements if action in s["Action"]]
        assert statement["Condition"]["Null"] == {"aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}, action


UPSTREAM_LBC_POLICY = Path(
    f"/work/shared/reference/iam/aws-load-balancer-controller/v{versions.HELM_CHARTS['aws-load-balancer-controller'].version}"
    "/iam_policy.json"
)


def test_load_balancer_controller_policy_is_upstreams_for_the_pinned_chart():
    if not UPSTREAM_LBC_POLICY.exists():
        pytest.skip(f"no vendored upstream IAM policy at {UPSTREAM_LBC_POLICY}")
    upstream = json.loads(UPSTREAM_LBC_POLICY.read_text())
    ours = load_balancer_controller_policy("aws", vpc=VPC_ARN)
    assert ours["Version"] == upstream["Version"] and len(ours["Statement"]) == len(upstream["Statement"])
    differences = [(i, s, u) for i, (s, u) in enumerate(zip(ours["Statement"], upstream["Statement"], strict=True)) if s != u]
    # The one deliberate difference: the open security-group ingress statement is scoped to the cluster's VPC.
    [(index, scoped, open_statement)] = differences
    assert index == 3 and "Condition" not in open_statement
    assert {k: v for k, v in scoped.items() if k != "Condition"} == open_statement
    assert scoped["Condition"] == {"ArnEquals": {"ec2:Vpc": VPC_ARN}}


def test_load_balancer_controller_changes_security_groups_only_in_the_clusters_vpc():
    statements = load_balancer_controller_policy("aws", vpc=VPC_ARN)["Statement"]
    mutating = [s for s in statements if "ec2:AuthorizeSecurityGroupIngress" in s["Action"]]
    assert len(mutating) == 2
    # Upstream's open statement gets the VPC condition its installation guide recommends; the other one is limited
    # to security groups carrying the controller's cluster tag, as upstream writes it.
    untagged = next(s for s in mutating if "ec2:DeleteSecurityGroup" not in s["Action"])
    assert untagged["Condition"] == {"ArnEquals": {"ec2:Vpc": VPC_ARN}}
    tagged = next(s for s in mutating if "ec2:DeleteSecurityGroup" in s["Action"])
    assert tagged["Condition"] == {"Null": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}}
    assert vpc_arn("aws", "us-east-1", ACCOUNT_ID, VPC) == VPC_ARN


@pytest.mark.parametrize("partition", ["aws-us-gov", "aws-cn"])
def test_policies_use_the_partition_they_are_given(partition):
    policies = [
        load_balancer_controller_policy(partition, vpc=vpc_arn(partition, "r", ACCOUNT_ID, VPC)),
        cluster_autoscaler_policy(partition, "r", ACCOUNT_ID, "c"),
        run_policy(partition, f"arn:{partition}:s3:::a", f"arn:{partition}:s3:::b", [EXTERNAL]),
    ]
    for policy in policies:
        arns = _arns(policy)
        assert arns and all(a.startswith(f"arn:{partition}:") for a in arns), arns


def test_cluster_autoscaler_scales_only_this_clusters_groups():
    policy = cluster_autoscaler_policy("aws", "us-east-1", ACCOUNT_ID, "simfleet-dev")
    assert_least_privilege(policy)
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    scale = by_sid["ScaleOwnNodegroups"]
    assert scale["Action"] == ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]
    assert scale["Resource"] != "*"
    assert scale["Condition"] == {"StringEquals": {"aws:ResourceTag/k8s.io/cluster-autoscaler/simfleet-dev": "owned"}}
    # Writes appear nowhere else; the statement on * only reads.
    for statement in policy["Statement"]:
        if statement is not scale:
            assert all(":Describe" in a or ":Get" in a for a in statement["Action"]), statement
    nodegroups = by_sid["DescribeOwnNodegroups"]["Resource"]
    assert nodegroups == f"arn:aws:eks:us-east-1:{ACCOUNT_ID}:nodegroup/simfleet-dev/*"
    mine = f"arn:aws:eks:us-east-1:{ACCOUNT_ID}:nodegroup/simfleet-dev/simfleet-dev-gpu-spot-1/0ec1"
    theirs = f"arn:aws:eks:us-east-1:{ACCOUNT_ID}:nodegroup/simfleet-prod/simfleet-prod-gpu-1/9f2a"
    assert allowed(policy, "eks:DescribeNodegroup", mine)
    assert not allowed(policy, "eks:DescribeNodegroup", theirs)


# ---- run pods -----------------------------------------------------------------------------------


def test_run_role_writes_only_under_runs():
    policy = run_policy("aws", CKPT, ART)
    assert_least_privilege(policy)
    for action in ("s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"):
        assert allowed(policy, action, f"{ART}/runs/trot/3f9a/videos/ep1.mp4"), action
        assert allowed(policy, action, f"{CKPT}/runs/trot/3f9a/out.mstate"), action
        assert not allowed(policy, action, f"{ART}/index.json"), action
        assert not allowed(policy, action, f"{CKPT}/seeds/v12.mstate"), action
        assert not allowed(policy, action, f"{CKPT}/runsx/a"), action
    assert not any(a.startswith("s3:Delete") for s in policy["Statement"] for a in s["Action"])


def test_run_role_reads_checkpoints_but_not_other_buckets():
    policy = run_policy("aws", CKPT, ART, [EXTERNAL])
    assert allowed(policy, "s3:GetObject", f"{CKPT}/runs/trot-baseline/3f9a/out.mstate")
    assert allowed(policy, "s3:GetObject", "arn:aws:s3:::simfleet-shared-brains/monty/quadruped/v12.mstate")
    assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::simfleet-shared-brains/monty/quadruped/v13.mstate")
    assert not allowed(policy, "s3:PutObject", "arn:aws:s3:::simfleet-shared-brains/monty/quadruped/v12.mstate")
    # Only runs/ of its own checkpoints bucket (issue #8: not the whole bucket).
    assert not allowed(policy, "s3:GetObject", f"{CKPT}/brains/shared.mstate")


def test_run_role_reads_run_records_but_no_other_artifacts():
    """A continuation's fetch reads its source's index.json (per seed too), a resumed pod its attempt markers."""
    policy = run_policy("aws", CKPT, ART)
    assert allowed(policy, "s3:GetObject", f"{ART}/runs/trot/3f9a/index.json")
    assert allowed(policy, "s3:GetObject", f"{ART}/runs/trot/3f9a/seed-3/index.json")
    assert allowed(policy, "s3:GetObject", f"{ART}/runs/trot/3f9a/attempts/20261130T101500Z-pod.json")
    assert not allowed(policy, "s3:GetObject", f"{ART}/runs/trot/3f9a/videos/episode.mp4")
    assert not allowed(policy, "s3:GetObject", f"{ART}/other/index.json")


def test_run_role_reads_checkpoint_tags_for_the_cli_v2_copy():
    # `aws s3 cp s3://... s3://...` in CLI v2 copies tags (--copy-props default), reading them from the source first.
    policy = run_policy("aws", CKPT, ART)
    assert allowed(policy, "s3:GetObjectTagging", f"{CKPT}/runs/trot/3f9a/partial.mstate.uploading")
    assert not allowed(policy, "s3:GetObjectTagging", f"{ART}/runs/trot/3f9a/logs/x.log")


def test_gate_role_reads_run_records_only():
    policy = gate_policy(ART)
    assert allowed(policy, "s3:GetObject", f"{ART}/runs/trot/3f9a/index.json")
    assert allowed(policy, "s3:ListBucket", ART, {"s3:prefix": "runs/trot/3f9a/"})
    assert not allowed(policy, "s3:GetObject", f"{ART}/runs/trot/3f9a/logs/glue.log")
    assert not allowed(policy, "s3:GetObject", f"{CKPT}/runs/trot/3f9a/out.mstate")
    assert not allowed(policy, "s3:PutObject", f"{ART}/runs/trot/3f9a/index.json")


def test_job_role_writes_job_outputs_only_and_reads_and_deletes_nothing():
    policy = job_policy(ART)
    assert allowed(policy, "s3:PutObject", f"{ART}/jobs/resample/3f9a/shard-2/outputs/part-0.parquet")
    assert allowed(policy, "s3:PutObjectTagging", f"{ART}/jobs/resample/3f9a/shard-2/outputs/part-0.parquet")
    assert allowed(policy, "s3:ListBucket", ART, {"s3:prefix": "jobs/resample/3f9a/shard-2/attempts/"})
    assert not allowed(policy, "s3:PutObject", f"{ART}/runs/trot/3f9a/index.json")
    assert not allowed(policy, "s3:PutObject", f"{CKPT}/jobs/resample/3f9a/x")
    assert not allowed(policy, "s3:GetObject", f"{ART}/jobs/resample/3f9a/shard-2/index.json")
    assert not allowed(policy, "s3:DeleteObject", f"{ART}/jobs/resample/3f9a/shard-2/index.json")
    assert not allowed(policy, "s3:ListBucket", ART, {"s3:prefix": "runs/"})


def test_run_role_lists_only_the_runs_prefix():
    policy = run_policy("aws", CKPT, ART)
    assert allowed(policy, "s3:ListBucket", ART, {"s3:prefix": "runs/trot/3f9a/"})
    assert allowed(policy, "s3:ListBucket", CKPT, {"s3:prefix": "runs/"})
    assert not allowed(policy, "s3:ListBucket", ART, {"s3:prefix": ""})
    assert not allowed(policy, "s3:ListBucket", CKPT, {"s3:prefix": "seeds/"})


def test_no_external_statement_without_external_checkpoints():
    assert "ReadExternalCheckpoints" not in {s["Sid"] for s in run_policy("aws", CKPT, ART)["Statement"]}


@pytest.mark.parametrize(
    "uri", ["s3://bucket/*", "s3://bucket/a?b", "s3://bucket/${aws:username}", "s3://bucket/dir/", "s3://bucket", "gs://b/k"]
)
def test_external_checkpoint_uris_must_name_one_object(uri):
    with pytest.raises(ValueError):
        s3_object_arn("aws", uri)


# ---- the components under mocks -----------------------------------------------------------------


def test_irsa_role_component(pulumi_mocks):
    outputs: dict[str, str] = {}

    def build() -> None:
        role = IrsaRole(
            "x",
            IrsaRoleArgs(
                PROVIDER_ARN, f"https://{ISSUER}", "ns", "sa", managed_policy_arns=["arn:aws:iam::aws:policy/ReadOnlyAccess"]
            ),
        )
        pulumi.Output.all(role.role_arn, role.role_name).apply(lambda v: outputs.update(arn=v[0], name=v[1]))

    rec = pulumi_mocks(build)
    role = rec.one(ROLE, "x-role")
    assert json.loads(role.inputs["assumeRolePolicy"]) == trust_policy(PROVIDER_ARN, ISSUER, "ns", "sa")
    assert rec.of_type(ROLE_POLICY) == []  # no inline policy was given
    assert rec.one(ATTACHMENT, "x-attach-0").inputs["policyArn"] == "arn:aws:iam::aws:policy/ReadOnlyAccess"
    assert outputs["arn"] == f"arn:aws:iam::{ACCOUNT_ID}:role/{outputs['name']}"


def _access(pulumi_mocks, ckpt: str = CKPT, art: str = ART, provider_arn: str = PROVIDER_ARN, external=(EXTERNAL,)):
    outputs: dict[str, Any] = {}

    def build() -> None:
        access = Access(
            "access",
            AccessArgs(
                "simfleet-dev",
                provider_arn,
                ISSUER,
                ckpt,
                art,
                {"simfleet:stack": "dev"},
                "us-east-1",
                list(external),
                vpc_id=VPC,
            ),
        )
        pulumi.Output.all(access.run_role_arn, *access.roles.values()).apply(
            lambda v: outputs.update(run=v[0], roles=dict(zip(access.roles, v[1:], strict=True)))
        )

    return pulumi_mocks(build), outputs


def test_access_creates_one_trusted_role_per_service_account(pulumi_mocks):
    rec, outputs = _access(pulumi_mocks)
    expected = {f"access-{key}-role": sa for key, sa in ADDON_SERVICE_ACCOUNTS.items()}
    expected["access-run-role"] = (naming.RUNS_NAMESPACE, naming.RUN_SERVICE_ACCOUNT)
    expected["access-gate-role"] = (naming.RUNS_NAMESPACE, naming.GATE_SERVICE_ACCOUNT)
    expected["access-job-role"] = (naming.RUNS_NAMESPACE, naming.JOB_SERVICE_ACCOUNT)
    roles = {r.name: r for r in rec.of_type(ROLE)}
    assert set(roles) == set(expected)
    for role_name, (namespace, service_account) in expected.items():
        trust = json.loads(roles[role_name].inputs["assumeRolePolicy"])
        assert trust == trust_policy(PROVIDER_ARN, ISSUER, namespace, service_account), role_name
    assert set(outputs["roles"]) == {"aws-load-balancer-controller", "cluster-autoscaler"}
    assert all(arn.startswith(f"arn:aws:iam::{ACCOUNT_ID}:role/access-") for arn in [outputs["run"], *outputs["roles"].values()])


def test_access_role_policies(pulumi_mocks):
    rec, _ = _access(pulumi_mocks)
    policies = {r.name: json.loads(r.inputs["policy"]) for r in rec.of_type(ROLE_POLICY)}
    assert policies == {
        "access-aws-load-balancer-controller-policy": load_balancer_controller_policy("aws", vpc=VPC_ARN),
        "access-cluster-autoscaler-policy": cluster_autoscaler_policy("aws", "us-east-1", ACCOUNT_ID, "simfleet-dev"),
        "access-run-policy": run_policy("aws", CKPT, ART, [EXTERNAL]),
        "access-gate-policy": gate_policy(ART),
        "access-job-policy": job_policy(ART),
    }
    for policy in policies.values():
        assert_least_privilege(policy)


def test_access_takes_the_partition_from_the_provider(pulumi_mocks, monkeypatch):
    gov = {"partition": "aws-us-gov", "dnsSuffix": "amazonaws.com", "id": "aws-us-gov"}
    monkeypatch.setitem(mocks._CALLS, "aws:index/getPartition:getPartition", lambda m, args: gov)
    gov_provider = f"arn:aws-us-gov:iam::{ACCOUNT_ID}:oidc-provider/{ISSUER}"
    rec, _ = _access(pulumi_mocks, "arn:aws-us-gov:s3:::c", "arn:aws-us-gov:s3:::a", gov_provider)
    for policy in rec.of_type(ROLE_POLICY):
        arns = _arns(json.loads(policy.inputs["policy"]))
        assert arns and all(a.startswith("arn:aws-us-gov:") for a in arns), (policy.urn, arns)


def test_a_bad_external_checkpoint_fails_before_registering(pulumi_mocks):
    with pytest.raises(ValueError, match="single object"):
        _access(pulumi_mocks, external=("s3://bucket/*",))


# ---- a service's model repository, as Triton's S3 filesystem reads it -------------------------------

MODELS = "s3://radstream-models/models/radstream/"
MODELS_BUCKET = "arn:aws:s3:::radstream-models"


def triton_s3_calls(prefix: str) -> list[tuple[str, str, str, dict[str, str]]]:
    """(call, IAM action, resource, request context) for every S3 call Triton's S3 filesystem makes on a model repository.

    triton-inference-server/core src/filesystem/implementations/s3.h at r26.02 (the release of the pinned 26.02 image):
    CheckClient and IsDirectory call HeadBucket (no prefix in the request), IsDirectory and GetDirectoryContents call
    ListObjectsV2 with Prefix=<path>/, FileExists and FileModificationTime call HeadObject, LocalizePath GetObject.
    HeadBucket and ListObjectsV2 are authorised as s3:ListBucket, HeadObject as s3:GetObject (S3 API reference).
    """
    key = f"{MODELS_BUCKET}/{prefix}densenet/config.pbtxt"
    return [
        ("HeadBucket", "s3:ListBucket", MODELS_BUCKET, {}),
        ("ListObjectsV2 of the repository", "s3:ListBucket", MODELS_BUCKET, {"s3:prefix": prefix}),
        ("ListObjectsV2 of a model", "s3:ListBucket", MODELS_BUCKET, {"s3:prefix": f"{prefix}densenet/1/"}),
        ("HeadObject", "s3:GetObject", key, {}),
        ("GetObject", "s3:GetObject", key, {}),
    ]


def test_a_services_role_allows_every_call_tritons_s3_filesystem_makes():
    policy = prefix_read_policy("aws", MODELS, "Models", head_bucket=True)
    refused = [
        call
        for call, action, resource, context in triton_s3_calls("models/radstream/")
        if not allowed(policy, action, resource, context)
    ]
    assert not refused, f"Triton's S3 filesystem would be refused {refused} and the server would exit"
    assert_least_privilege(policy)


def test_a_services_role_reads_nothing_outside_its_prefix():
    policy = prefix_read_policy("aws", MODELS, "Models", head_bucket=True)
    assert not allowed(policy, "s3:GetObject", f"{MODELS_BUCKET}/models/other/config.pbtxt")
    assert not allowed(policy, "s3:GetObject", f"{MODELS_BUCKET}/models/radstream-old/config.pbtxt")
    assert not allowed(policy, "s3:ListBucket", MODELS_BUCKET, {"s3:prefix": "models/other/"})
    # A listing that sends an empty prefix (as the AWS CLI does for the bucket root) stays refused.
    assert not allowed(policy, "s3:ListBucket", MODELS_BUCKET, {"s3:prefix": ""})
    assert not allowed(policy, "s3:ListBucket", "arn:aws:s3:::another-bucket", {})
    assert not allowed(policy, "s3:PutObject", f"{MODELS_BUCKET}/models/radstream/x")
