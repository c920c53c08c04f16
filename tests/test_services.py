"""The Services component under mocks: what it registers, each service's own IRSA role, ordering, and the summary output."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

import naming
from config import ServiceSpec
from config.sources import load_yaml
from policies.rules import Context, Resource, evaluate
from workloads.renderers.service import IRSA_ANNOTATION, ServiceContext
from workloads.services import Services, ServicesArgs

ROOT = Path(__file__).resolve().parent.parent
RAW = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"]["simfleet:services"][0]
OIDC_ARN = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC"
OIDC_URL = "oidc.eks.us-east-1.amazonaws.com/id/ABC"
CTX = ServiceContext(
    namespace=naming.SERVICES_NAMESPACE,
    registry_url="123456789012.dkr.ecr.us-east-1.amazonaws.com",
    region="us-east-1",
    kubernetes_version="1.35",
    vpc_cidr="10.40.0.0/16",
)
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def specs() -> list[ServiceSpec]:
    other = copy.deepcopy(RAW) | {
        "name": "tokenizer",
        "gpus": 0,
        "cpu": "500m",
        "memory": "1Gi",
        "shmSize": "64Mi",
        "expose": {"internalLoadBalancer": {"allowedCidrs": ["10.60.0.0/16"]}},
    }
    other.pop("modelRepository")
    return [ServiceSpec.model_validate(RAW), ServiceSpec.model_validate(other)]


@pytest.fixture
def built(pulumi_mocks):
    made: dict[str, Any] = {}

    def build() -> None:
        cluster = pulumi.ComponentResource("simfleet:cluster:Cluster", "cluster")
        addons = pulumi.ComponentResource("simfleet:addons:Addons", "addons")
        pulumi.CustomResource("test:index:Release", "lbc", opts=pulumi.ResourceOptions(parent=addons))
        provider = k8s.Provider("k8s", kubeconfig="{}")
        services = Services(
            "services",
            ServicesArgs(specs(), CTX, OIDC_ARN, OIDC_URL, cluster, tags={"simfleet:stack": "dev"}, after=[addons]),
            opts=pulumi.ResourceOptions(provider=provider),
        )
        services.summary.apply(lambda v: made.__setitem__("summary", v))

    return pulumi_mocks(build), made


@pytest.fixture
def rec(built):
    return built[0]


def test_registers_the_namespace_and_each_services_objects(rec):
    kinds = sorted(r.type.rsplit(":", 1)[1] for r in rec.all if r.type.startswith("kubernetes:") and "providers" not in r.type)
    assert kinds.count("Namespace") == 1
    assert kinds.count("Deployment") == kinds.count("Service") == kinds.count("HorizontalPodAutoscaler") == 2
    assert kinds.count("PodDisruptionBudget") == kinds.count("ServiceAccount") == 2
    # default-deny, DNS, HTTPS, and one ingress rule per service
    assert kinds.count("NetworkPolicy") == 5
    for r in rec.all:
        if r.type.startswith("kubernetes:") and r.type != "kubernetes:core/v1:Namespace" and "providers" not in r.type:
            assert r.inputs["metadata"]["namespace"] == naming.SERVICES_NAMESPACE, r.urn


def test_each_service_with_a_model_repository_gets_its_own_scoped_role(rec):
    [role] = rec.of_type("aws:iam/role:Role")  # the tokenizer reads no model repository: no role
    [statement] = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Condition"]["StringEquals"] == {
        f"{OIDC_URL}:sub": "system:serviceaccount:simfleet-services:radstream-triton",
        f"{OIDC_URL}:aud": "sts.amazonaws.com",
    }
    policy = json.loads(rec.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    assert {a for s in policy["Statement"] for a in s["Action"]} == {"s3:GetObject", "s3:ListBucket"}
    # Triton calls HeadBucket before anything else: the registered role carries the statement that admits it.
    assert [s["Sid"] for s in policy["Statement"]] == ["ReadModels", "ListModels", "FindBucket"]
    account = rec.one("kubernetes:core/v1:ServiceAccount", "services-radstream-triton-serviceaccount")
    assert account.inputs["metadata"]["annotations"][IRSA_ANNOTATION].startswith("arn:aws:iam::123456789012:role/")
    bare = rec.one("kubernetes:core/v1:ServiceAccount", "services-tokenizer-serviceaccount")
    assert "annotations" not in bare.inputs["metadata"]


def test_the_policy_rules_pass_the_registered_objects(rec):
    resources = [Resource(r.type, r.urn, r.name, r.inputs, r.parent) for r in rec.all]
    violations = evaluate(resources, Context("dev", ("monty", "unitree-sim", "glue-base", "triton")))
    assert violations == []


def test_ordering_pods_after_their_account_and_ingress_rule_everything_after_the_add_ons(rec):
    lbc = rec.one("test:index:Release").urn
    cluster = rec.one("simfleet:cluster:Cluster").urn
    deployment = rec.one(DEPLOYMENT, "services-radstream-triton-deployment")
    account = rec.one("kubernetes:core/v1:ServiceAccount", "services-radstream-triton-serviceaccount")
    ingress = rec.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", "services-radstream-triton-networkpolicy")
    assert {account.urn, ingress.urn} <= set(deployment.options["dependsOn"])
    for r in rec.all:
        if r.type.startswith("kubernetes:") and "providers" not in r.type:
            assert lbc in r.options.get("dependsOn", []), r.urn
            assert r.options.get("deletedWith") == cluster and r.options.get("provider") == "k8s", r.urn
    # The namespace of every service object resolves only after the namespace's default deny exists.
    deny = rec.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", "services-networkpolicy-default-deny").urn
    assert deny in deployment.options["propertyDependencies"]["metadata"]


def test_summary_output(built):
    summary = built[1]["summary"]
    triton = summary["radstream-triton"]
    assert triton["url"] == "http://radstream-triton.simfleet-services.svc:8000"
    assert triton["endpoints"] == {
        "http": "radstream-triton.simfleet-services.svc:8000",
        "grpc": "radstream-triton.simfleet-services.svc:8001",
        "metrics": "radstream-triton.simfleet-services.svc:8002",
    }
    assert triton["replicas"] == {"min": 1, "max": 2} and triton["roleArn"].startswith("arn:aws:iam::")
    assert triton["loadBalancer"] is None
    assert summary["tokenizer"]["roleArn"] is None


def test_args_refuse_no_services_and_duplicates() -> None:
    with pytest.raises(ValueError, match="no services"):
        ServicesArgs([], CTX, OIDC_ARN, OIDC_URL, object())  # type: ignore[arg-type]
    one = specs()[0]
    with pytest.raises(ValueError, match="unique"):
        ServicesArgs([one, one], CTX, OIDC_ARN, OIDC_URL, object())  # type: ignore[arg-type]
