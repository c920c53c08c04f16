"""The policy rules: each passes on a compliant stack and fails on a broken one; the pack adapters and the real plan."""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

import naming
from config import JobSpec, RunSpec, ServiceSpec
from policies import pack
from policies.rules import RULES, Context, Resource, Rule, evaluate, helper_images, stack_from_urn
from policies.rules.eks import eks_cluster_view
from policies.rules.pods import split_image
from policies.rules.runs import run_objects
from versions import AWS_CLI_IMAGE
from workloads.identity import RunContext
from workloads.job_identity import JobContext
from workloads.jobs import plan_jobs
from workloads.renderers.service import ServiceContext, deployment
from workloads.runs import plan_runs

TODAY = datetime.date(2026, 11, 23)
ACCOUNT = "123456789012"
REGISTRY = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/ABC123"
HELPER = AWS_CLI_IMAGE  # simfleet's pinned helper image, admitted besides the stack's ECR
DEV_SERVICE = yaml.safe_load((Path(__file__).resolve().parent.parent / "Pulumi.dev.yaml").read_text())["config"][
    "simfleet:services"
][0]


def urn(stack: str, typ: str, name: str) -> str:
    return f"urn:pulumi:{stack}::simfleet::{typ}::{name}"


class StackBuilder:
    """Synthetic registrations with the property names the engine receives (camelCase provider inputs)."""

    def __init__(self, stack: str) -> None:
        self.stack = stack
        self.resources: list[Resource] = []

    def add(self, typ: str, name: str, props: Mapping[str, Any], **deps: str | list[str]) -> str:
        resource_urn = urn(self.stack, typ, name)
        dependencies = {k: [v] if isinstance(v, str) else list(v) for k, v in deps.items()}
        self.resources.append(Resource(typ, resource_urn, name, dict(props), None, dependencies))
        return resource_urn


def bucket(b: StackBuilder, purpose: str) -> None:
    name = f"simfleet-{b.stack}-{purpose}-{ACCOUNT}"
    arn = f"arn:aws:s3:::{name}"
    bucket_urn = b.add("aws:s3/bucket:Bucket", f"storage-{purpose}", {"bucket": name, "tags": {"simfleet:purpose": purpose}})
    # Chained like components/storage.py: each setting takes the bucket name from the one before.
    prev = b.add(
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        f"storage-{purpose}-public-access",
        {
            "bucket": name,
            **dict.fromkeys(("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True),
        },
        bucket=bucket_urn,
    )
    prev = b.add(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        f"storage-{purpose}-encryption",
        {"bucket": name, "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
        bucket=prev,
    )
    if purpose == "checkpoints":
        prev = b.add(
            "aws:s3/bucketVersioning:BucketVersioning",
            f"storage-{purpose}-versioning",
            {"bucket": name, "versioningConfiguration": {"status": "Enabled"}},
            bucket=prev,
        )
        rules: list[dict[str, Any]] = [
            {"id": "nc", "status": "Enabled", "filter": {}, "noncurrentVersionExpiration": {"noncurrentDays": 30}}
        ]
    else:
        rules = [
            {
                "id": "logs",
                "status": "Enabled",
                "filter": {"tag": {"key": "simfleet-kind", "value": "logs"}},
                "expiration": {"days": 30},
            }
        ]
    prev = b.add(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        f"storage-{purpose}-lifecycle",
        {"bucket": name, "rules": rules},
        bucket=prev,
    )
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
    b.add(
        "aws:s3/bucketPolicy:BucketPolicy",
        f"storage-{purpose}-tls-only",
        {"bucket": name, "policy": json.dumps(policy)},
        bucket=prev,
    )


def network(b: StackBuilder) -> list[str]:
    vpc = b.add("aws:ec2/vpc:Vpc", "network-vpc", {"cidrBlock": "10.40.0.0/16"})
    igw = b.add("aws:ec2/internetGateway:InternetGateway", "network-igw", {}, vpcId=vpc)
    public_rt = b.add("aws:ec2/routeTable:RouteTable", "network-public-rt", {}, vpcId=vpc)
    b.add(
        "aws:ec2/route:Route",
        "network-public-default",
        {"destinationCidrBlock": "0.0.0.0/0"},
        routeTableId=public_rt,
        gatewayId=igw,
    )
    private = []
    for i in range(2):
        public = b.add(
            "aws:ec2/subnet:Subnet",
            f"network-public-{i}",
            {"mapPublicIpOnLaunch": False, "tags": {"kubernetes.io/role/elb": "1"}},
            vpcId=vpc,
        )
        b.add(
            "aws:ec2/routeTableAssociation:RouteTableAssociation",
            f"network-public-assoc-{i}",
            {},
            subnetId=public,
            routeTableId=public_rt,
        )
        eip = b.add("aws:ec2/eip:Eip", f"network-nat-eip-{i}", {"domain": "vpc"}) if i == 0 else None
        nat = b.add("aws:ec2/natGateway:NatGateway", f"network-nat-{i}", {}, allocationId=eip, subnetId=public) if eip else None
        subnet = b.add(
            "aws:ec2/subnet:Subnet",
            f"network-private-{i}",
            {"mapPublicIpOnLaunch": False, "tags": {"kubernetes.io/role/internal-elb": "1"}},
            vpcId=vpc,
        )
        rt = b.add("aws:ec2/routeTable:RouteTable", f"network-private-rt-{i}", {}, vpcId=vpc)
        if nat:
            b.add(
                "aws:ec2/route:Route",
                f"network-private-default-{i}",
                {"destinationCidrBlock": "0.0.0.0/0"},
                routeTableId=rt,
                natGatewayId=nat,
            )
        b.add(
            "aws:ec2/routeTableAssociation:RouteTableAssociation",
            f"network-private-assoc-{i}",
            {},
            subnetId=subnet,
            routeTableId=rt,
        )
        private.append(subnet)
    return private


def cluster(b: StackBuilder, private_subnets: list[str], prod: bool) -> None:
    key = b.add("aws:kms/key:Key", "cluster-secrets", {"enableKeyRotation": True})
    b.add(
        "eks:index:Cluster",
        "cluster-eks",
        {
            "name": f"simfleet-{b.stack}",
            "version": "1.35",
            "enabledClusterLogTypes": ["api", "audit", "authenticator", "controllerManager", "scheduler"]
            if prod
            else ["api", "audit"],
            "endpointPrivateAccess": True,
            "endpointPublicAccess": not prod,
            **({} if prod else {"publicAccessCidrs": ["203.0.113.0/24"]}),
            "encryptionConfigKeyArn": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/mrk-1",
        },
        encryptionConfigKeyArn=key,
    )
    for group, types, capacity, min_size, max_size, disk in (
        ("system", ["t3.medium"], "ON_DEMAND", 1, 3, 20),
        ("gpu-spot", ["g5.2xlarge", "g6e.xlarge"], "SPOT", 0, 4, 200),
        ("gpu-on-demand", ["g5.2xlarge", "g6e.xlarge"], "ON_DEMAND", 0, 4, 200),
    ):
        lt = b.add(
            "aws:ec2/launchTemplate:LaunchTemplate",
            f"nodes-{group}-lt",
            {
                "metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1},
                "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeSize": disk, "volumeType": "gp3"}}],
            },
        )
        b.add(
            "aws:eks/nodeGroup:NodeGroup",
            f"nodes-{group}",
            {
                "instanceTypes": types,
                "capacityType": capacity,
                "scalingConfig": {"minSize": min_size, "maxSize": max_size, "desiredSize": min_size},
                "launchTemplate": {"id": f"lt-{group}", "version": "1"},
            },
            subnetIds=private_subnets,
            launchTemplate=lt,
        )


def trust(subject: str | list[str], operator: str = "StringEquals", audience: str | None = "sts.amazonaws.com") -> str:
    condition: dict[str, Any] = {operator: {f"{ISSUER}:sub": subject}}
    if audience is not None:
        condition.setdefault("StringEquals", {})[f"{ISSUER}:aud"] = audience
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER}"},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": condition,
                }
            ],
        }
    )


def access(b: StackBuilder) -> None:
    role = b.add(
        "aws:iam/role:Role", "access-run-role", {"assumeRolePolicy": trust("system:serviceaccount:simfleet-runs:simfleet-run")}
    )
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::b/runs/*"}],
    }
    b.add("aws:iam/rolePolicy:RolePolicy", "access-run-policy", {"policy": json.dumps(policy)}, role=role)


def registry(b: StackBuilder) -> None:
    lifecycle = {"rules": [{"rulePriority": 1, "selection": {"tagStatus": "untagged"}, "action": {"type": "expire"}}]}
    for repo in ("monty", "unitree-sim", "glue-base"):
        r = b.add(
            "aws:ecr/repository:Repository",
            f"registry-{repo}",
            {"name": repo, "imageTagMutability": "IMMUTABLE", "imageScanningConfiguration": {"scanOnPush": True}},
        )
        b.add(
            "aws:ecr/lifecyclePolicy:LifecyclePolicy",
            f"registry-{repo}-lifecycle",
            {"repository": repo, "policy": json.dumps(lifecycle)},
            repository=r,
        )


GLUE = "def step(observation):\n    return {'cmd_type': 'stop'}\n"


def run_props(name: str, batch: bool) -> dict[str, Any]:
    """Real SimRun inputs (workloads.runs.plan_runs), whose objects the rules render with the provider's renderer."""
    raw: dict[str, Any] = {
        "name": name,
        "mode": "batch" if batch else "interactive",
        "images": {"sim": "unitree-sim:4.2.0", "monty": "monty:1f3c2a9", "glue": f"glue-base@sha256:{'a' * 64}"},
        "profile": "quadruped-default",
        "glue": "glue/trot.py",
        "seeds": list(range(1, 9)) if batch else [7],
    }
    if batch:
        raw["parallelism"] = 4
    ctx = RunContext(
        cluster_name="simfleet-dev",
        namespace="simfleet-runs",
        service_account="simfleet-run",
        checkpoints_bucket=f"simfleet-dev-checkpoints-{ACCOUNT}",
        artifacts_bucket=f"simfleet-dev-artifacts-{ACCOUNT}",
        registry_url=REGISTRY,
        region="us-east-1",
        kubernetes_version="1.35",
        vpc_cidr="10.40.0.0/16",
    )
    [planned] = plan_runs([RunSpec.model_validate(raw)], ctx, {"glue/trot.py": GLUE})
    return {
        **planned.inputs,
        "clusterEndpoint": "https://example.eks.amazonaws.com",
        "clusterCa": "Q0E=",
        "__provider": "pickled",
    }


def runs(b: StackBuilder) -> None:
    for name, batch in (("trot-baseline", False), ("trot-sweep", True)):
        b.add("pulumi-python:dynamic:Resource", f"runs-{name}", run_props(name, batch))


def job_props(capacity: str = "onDemand") -> dict[str, Any]:
    """Real SimRun inputs of a batch job (workloads.jobs.plan_jobs), on on-demand GPUs: jobs choose their capacity."""
    raw = {
        "name": "resample",
        "image": "robocache:0.4.2",
        "command": ["python", "-m", "x"],
        "shards": 4,
        "parallelism": 2,
        "capacity": capacity,
    }
    ctx = JobContext(
        cluster_name="simfleet-dev",
        namespace="simfleet-runs",
        service_account="simfleet-job",
        artifacts_bucket=f"simfleet-dev-artifacts-{ACCOUNT}",
        registry_url=REGISTRY,
        region="us-east-1",
        kubernetes_version="1.35",
    )
    [planned] = plan_jobs([JobSpec.model_validate(raw)], ctx)
    return {**planned.inputs, "__provider": "pickled"}


def jobs(b: StackBuilder) -> None:
    b.add("pulumi-python:dynamic:Resource", "jobs-resample", job_props())


def services(b: StackBuilder) -> None:
    """The dev stack's Triton service Deployment, as workloads/renderers/service.py renders it."""
    spec = ServiceSpec.model_validate(DEV_SERVICE)
    ctx = ServiceContext(naming.SERVICES_NAMESPACE, REGISTRY, "us-east-1", "1.35", "10.40.0.0/16")
    body = deployment(spec, ctx)
    b.add("kubernetes:apps/v1:Deployment", f"services-{spec.name}-deployment", {k: v for k, v in body.items()})


def compliant(stack: str = "dev") -> list[Resource]:
    b = StackBuilder(stack)
    private = network(b)
    cluster(b, private, prod=stack.startswith("prod"))
    bucket(b, "checkpoints")
    bucket(b, "artifacts")
    registry(b)
    access(b)
    runs(b)
    jobs(b)
    services(b)
    return b.resources


def context(stack: str = "dev", **changes: Any) -> Context:
    base = Context(stack, ("monty", "unitree-sim", "glue-base", "triton", "robocache"), (), (HELPER,), TODAY)
    return replace(base, **changes)


def rule(name: str) -> Rule:
    return next(r for r in RULES if r.name == name)


def violations(name: str, resources: list[Resource], ctx: Context | None = None) -> list[str]:
    return [v.message for v in evaluate(resources, ctx or context(resources[0].urn.split(":")[2]), [rule(name)])]


def edit(resources: list[Resource], name: str, change: Callable[[dict[str, Any]], Any]) -> list[Resource]:
    """A copy of the stack with one resource's props changed in place by `change`."""
    out = []
    for r in resources:
        if r.name == name:
            props = json.loads(json.dumps(r.props))
            change(props)
            r = replace(r, props=props)
        out.append(r)
    return out


def drop(resources: list[Resource], name: str) -> list[Resource]:
    return [r for r in resources if r.name != name]


def edit_objects(resources: list[Resource], name: str, change: Callable[[list[dict[str, Any]]], Any]) -> list[Resource]:
    """A copy of the stack where one run's rendered objects were changed in place by `change`."""
    out = []
    for r in resources:
        if r.name == name:
            objects = json.loads(json.dumps(run_objects(r)))
            change(objects)
            r = replace(r, rendered=objects)
        out.append(r)
    return out


def job_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    job: dict[str, Any] = next(o for o in objects if o["kind"] == "Job")
    return job["spec"]  # type: ignore[no-any-return]


def job_meta(objects: list[dict[str, Any]]) -> dict[str, Any]:
    job: dict[str, Any] = next(o for o in objects if o["kind"] == "Job")
    return job["metadata"]  # type: ignore[no-any-return]


def job_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = job_spec(objects)["template"]["spec"]
    return pod


def container(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    pod = job_pod(objects)
    return next(c for c in [*pod.get("initContainers", []), *pod["containers"]] if c["name"] == name)  # type: ignore[no-any-return]


TRITON = "services-radstream-triton-deployment"
CAPACITY = "eks.amazonaws.com/capacityType"


def service_container(props: dict[str, Any]) -> dict[str, Any]:
    main: dict[str, Any] = props["spec"]["template"]["spec"]["containers"][0]
    return main


def set_path(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(props: dict[str, Any]) -> None:
        target = props
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value

    return change


# ---------------------------------------------------------------------------------------------
# Every rule passes on the compliant stacks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_compliant_stack_has_no_violations(stack: str) -> None:
    resources = compliant(stack)
    found = evaluate(resources, context(stack))
    assert found == [], [v.as_json() for v in found]


def test_every_rule_has_metadata() -> None:
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))
    for r in RULES:
        assert r.description and r.level in ("mandatory", "advisory") and r.severity in ("low", "medium", "high", "critical")
    advisory = {r.name for r in RULES if r.level == "advisory"}
    assert advisory == {"eks-version-support-ending", "run-gpu-capacity"}


# ---------------------------------------------------------------------------------------------
# One failing case (at least) per rule
# ---------------------------------------------------------------------------------------------

FAILURES: list[tuple[str, Callable[[list[Resource]], list[Resource]], str]] = [
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
            set_path(["assumeRolePolicy"], trust(["system:serviceaccount:a:b", "system:serviceaccount:a:c"])),
        ),
        "found 2 subjects",
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
    (
        "run-image-pinned",
        lambda rs: edit_objects(
            rs, "runs-trot-baseline", lambda o: container(o, "monty").update(image=f"{REGISTRY}/monty:latest")
        ),
        ":latest",
    ),
    (
        "run-image-pinned",
        lambda rs: edit_objects(rs, "runs-trot-baseline", lambda o: container(o, "monty").update(image=f"{REGISTRY}/monty")),
        "no tag",
    ),
    (
        "run-image-source",
        lambda rs: edit_objects(
            rs, "runs-trot-sweep", lambda o: container(o, "unitree-sim").update(image="docker.io/evil/sim:1.0")
        ),
        "docker.io/evil/sim:1.0",
    ),
    (
        "run-image-source",
        lambda rs: edit_objects(rs, "runs-trot-sweep", lambda o: container(o, "monty").update(image=f"{REGISTRY}/other:1.0")),
        "other:1.0",
    ),
    (
        # Batch jobs are checked by the same rules: here the work container's image.
        "run-image-source",
        lambda rs: edit_objects(rs, "jobs-resample", lambda o: container(o, "work").update(image="docker.io/evil/x:1")),
        "docker.io/evil/x:1",
    ),
    (
        "run-restricted-pod-security",
        lambda rs: edit_objects(
            rs, "jobs-resample", lambda o: container(o, "work")["securityContext"].update(allowPrivilegeEscalation=True)
        ),
        "allowPrivilegeEscalation",
    ),
    (
        "run-gpu-request-equals-limit",
        lambda rs: edit_objects(
            rs, "runs-trot-sweep", lambda o: container(o, "unitree-sim")["resources"]["limits"].update({"nvidia.com/gpu": "2"})
        ),
        "differs from limit",
    ),
    (
        "run-gpu-request-equals-limit",
        lambda rs: edit_objects(rs, "runs-trot-sweep", lambda o: container(o, "unitree-sim")["resources"].pop("limits")),
        "no limit",
    ),
    (
        "run-deadline-and-ttl",
        lambda rs: edit_objects(rs, "runs-trot-sweep", lambda o: job_spec(o).pop("activeDeadlineSeconds")),
        "activeDeadlineSeconds",
    ),
    (
        "run-deadline-and-ttl",
        lambda rs: edit_objects(rs, "runs-trot-sweep", lambda o: job_spec(o).pop("ttlSecondsAfterFinished")),
        "ttlSecondsAfterFinished",
    ),
    (
        # A run whose inputs do not render (here a hand-edited spec) is a violation, never a quiet pass.
        "run-deadline-and-ttl",
        lambda rs: edit(rs, "runs-trot-sweep", set_path(["spec"], '{"name": "trot-sweep"}')),
        "do not render from its inputs",
    ),
    (
        "run-restricted-pod-security",
        lambda rs: edit_objects(
            rs,
            "runs-trot-baseline",
            lambda o: container(o, "glue")["securityContext"].update(allowPrivilegeEscalation=True),
        ),
        "allowPrivilegeEscalation",
    ),
    (
        "run-restricted-pod-security",
        lambda rs: edit_objects(
            rs, "runs-trot-baseline", lambda o: job_pod(o)["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
        ),
        "hostPath",
    ),
    (
        "run-restricted-pod-security",
        lambda rs: edit_objects(
            rs,
            "runs-trot-baseline",
            lambda o: container(o, "checkpoint-fetch")["securityContext"]["capabilities"].update(drop=[]),
        ),
        "drop must include ALL",
    ),
    (
        "run-batch-spot-first",
        lambda rs: edit_objects(
            rs, "runs-trot-sweep", lambda o: job_pod(o)["nodeSelector"].update({"eks.amazonaws.com/capacityType": "ON_DEMAND"})
        ),
        "found ON_DEMAND",
    ),
    (
        # Pinning spot is as wrong: Kueue could never fall back to the on-demand flavor.
        "run-batch-spot-first",
        lambda rs: edit_objects(
            rs, "runs-trot-sweep", lambda o: job_pod(o)["nodeSelector"].update({"eks.amazonaws.com/capacityType": "SPOT"})
        ),
        "found SPOT",
    ),
    (
        "run-queued",
        lambda rs: edit_objects(rs, "runs-trot-sweep", lambda o: job_spec(o).pop("suspend")),
        "created suspended",
    ),
    (
        "run-queued",
        lambda rs: edit_objects(rs, "jobs-resample", lambda o: job_meta(o)["labels"].pop("kueue.x-k8s.io/queue-name")),
        "no gate Job that adds one",
    ),
    (
        "run-queued",
        lambda rs: edit_objects(rs, "runs-trot-baseline", lambda o: job_meta(o)["labels"].pop("kueue.x-k8s.io/priority-class")),
        "no kueue.x-k8s.io/priority-class label",
    ),
    (
        "run-gpu-capacity",
        lambda rs: edit_objects(rs, "runs-trot-sweep", lambda o: job_spec(o).update(parallelism=20, completions=20)),
        "20 GPUs on any capacity",
    ),
    (
        "run-gpu-capacity",
        lambda rs: edit_objects(rs, "jobs-resample", lambda o: job_spec(o).update(parallelism=9)),
        "GPUs on ON_DEMAND capacity",
    ),
    (
        "service-image-pinned",
        lambda rs: edit(rs, TRITON, lambda p: service_container(p).update(image=f"{REGISTRY}/triton:latest")),
        "uses :latest",
    ),
    (
        "service-image-pinned",
        lambda rs: edit(rs, TRITON, lambda p: service_container(p).update(image=f"{REGISTRY}/triton")),
        "has no tag",
    ),
    (
        "service-image-source",
        lambda rs: edit(rs, TRITON, lambda p: service_container(p).update(image="docker.io/someone/triton:26.02-py3")),
        "neither in the stack's ECR repositories",
    ),
    (
        "service-gpu-request-equals-limit",
        lambda rs: edit(rs, TRITON, lambda p: service_container(p)["resources"]["limits"].update({"nvidia.com/gpu": "2"})),
        "differs from limit",
    ),
    (
        "service-gpu-request-equals-limit",
        lambda rs: edit(rs, TRITON, lambda p: service_container(p)["resources"]["limits"].pop("nvidia.com/gpu")),
        "sets no limit",
    ),
    (
        "service-restricted-pod-security",
        lambda rs: edit(rs, TRITON, lambda p: service_container(p)["securityContext"].update(allowPrivilegeEscalation=True)),
        "allowPrivilegeEscalation must be false",
    ),
    (
        "service-restricted-pod-security",
        lambda rs: edit(rs, TRITON, lambda p: p["spec"]["template"]["spec"]["securityContext"].pop("seccompProfile")),
        "seccompProfile.type is unset",
    ),
    (
        "service-probes",
        lambda rs: edit(rs, TRITON, lambda p: service_container(p).pop("readinessProbe")),
        "no readinessProbe",
    ),
    (
        "service-probes",
        lambda rs: edit(rs, TRITON, lambda p: service_container(p).update(livenessProbe={"periodSeconds": 10})),
        "no livenessProbe",
    ),
]


@pytest.mark.parametrize(("name", "mutate", "expected"), FAILURES, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(FAILURES)])
def test_rule_fails_on_broken_stack(name: str, mutate: Callable[[list[Resource]], list[Resource]], expected: str) -> None:
    resources = compliant("dev")
    assert violations(name, resources) == [], f"{name} should pass on the compliant stack"
    found = violations(name, mutate(resources))
    assert found, f"{name} found nothing"
    assert any(expected in m for m in found), found


def test_every_rule_has_a_failing_case() -> None:
    assert {r.name for r in RULES} - {name for name, _, _ in FAILURES} - {"eks-version-support-ending"} == set()


def floats(value: Any) -> Any:
    """What the engine hands a pack: protobuf Struct numbers, so every integer arrives as a float."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [floats(v) for v in value]
    return value


def test_integers_arriving_as_floats_change_nothing() -> None:
    resources = [replace(r, props=floats(dict(r.props))) for r in compliant("dev")]
    assert evaluate(resources, context()) == []
    broken = edit_objects(resources, "runs-trot-sweep", lambda o: job_spec(o).update(parallelism=20.0, completions=20.0))
    assert [v.policy for v in evaluate(broken, context())] == ["run-gpu-capacity"]


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


def test_image_allow_list_admits_listed_prefixes_only() -> None:
    resources = edit_objects(
        compliant("dev"), "runs-trot-sweep", lambda o: container(o, "unitree-sim").update(image="nvcr.io/nvidia/isaac-lab:2.1.0")
    )
    assert violations("run-image-source", resources)
    assert violations("run-image-source", resources, context(image_allow_list=("nvcr.io/nvidia",))) == []
    # A prefix matches whole path segments: nvcr.io/nvidia does not admit nvcr.io/nvidia-evil.
    evil = edit_objects(
        resources, "runs-trot-sweep", lambda o: container(o, "unitree-sim").update(image="nvcr.io/nvidia-evil/x:1")
    )
    assert violations("run-image-source", evil, context(image_allow_list=("nvcr.io/nvidia",)))


def test_split_image() -> None:
    assert split_image(f"{REGISTRY}/monty:1f3c2a9") == (REGISTRY, "monty", "1f3c2a9", None)
    assert split_image("localhost:5000/a/b") == ("localhost:5000", "a/b", None, None)
    assert split_image("busybox:1.36") == (None, "busybox", "1.36", None)
    assert split_image("x/y@sha256:abc") == (None, "x/y", None, "sha256:abc")


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


# ---------------------------------------------------------------------------------------------
# The pulumi_policy adapters
# ---------------------------------------------------------------------------------------------


def options(parent: str | None = None) -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], parent)


def collect() -> tuple[list[tuple[str, str | None]], Callable[[str, str | None], None]]:
    reported: list[tuple[str, str | None]] = []
    return reported, lambda message, urn=None: reported.append((message, urn))


def policy_resources(resources: list[Resource]) -> list[PolicyResource]:
    by_urn: dict[str, PolicyResource] = {}
    for r in resources:
        by_urn[r.urn] = PolicyResource(
            r.resource_type, unknown_checking_proxy(dict(r.props)), r.urn, r.name, options(), None, None, [], {}
        )
    for r in resources:
        by_urn[r.urn].property_dependencies = {
            k: [by_urn[u] for u in v if u in by_urn] for k, v in r.property_dependencies.items()
        }
    return list(by_urn.values())


def test_pack_policies_mirror_the_rules() -> None:
    policies = pack.policies(lambda u: context(stack_from_urn(u)))
    assert [p.name for p in policies] == [r.name for r in RULES]
    for policy, r in zip(policies, RULES, strict=True):
        assert policy.enforcement_level == EnforcementLevel(r.level)
        assert policy.severity == Severity(r.severity)
        assert isinstance(policy, ResourceValidationPolicy if r.resource_check else StackValidationPolicy)


def test_resource_policy_reports_through_validation_args() -> None:
    policy = pack.to_policy(rule("eks-endpoint-access"), lambda u: context(stack_from_urn(u)))
    assert isinstance(policy, ResourceValidationPolicy)
    props = {"version": "1.35", "endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/0"]}
    args = ResourceValidationArgs(
        "eks:index:Cluster", unknown_checking_proxy(props), urn("prod", "eks:index:Cluster", "c"), "c", options(), None
    )
    reported, report = collect()
    policy.validate(args, report)
    messages = [m for m, _ in reported]
    assert any("private endpoint only" in m for m in messages) and any("0.0.0.0/0" in m for m in messages)


def test_stack_policies_work_on_proxied_props_and_dependencies() -> None:
    """The engine's props are read-only proxies and deps are PolicyResources: the compliant stack still passes."""
    ctx_for: Callable[[str], Context] = lambda u: context(stack_from_urn(u))  # noqa: E731
    resources = compliant("dev")
    for policy in pack.policies(ctx_for):
        reported, report = collect()
        if isinstance(policy, StackValidationPolicy):
            policy.validate(StackValidationArgs(policy_resources(resources)), report)
        elif isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                policy.validate(
                    ResourceValidationArgs(
                        r.resource_type, unknown_checking_proxy(dict(r.props)), r.urn, r.name, options(), None
                    ),
                    report,
                )
        assert reported == [], (policy.name, reported)
    broken = drop(resources, "storage-checkpoints-versioning")
    policy = pack.to_policy(rule("s3-checkpoints-versioning"), ctx_for)
    assert isinstance(policy, StackValidationPolicy)
    reported, report = collect()
    policy.validate(StackValidationArgs(policy_resources(broken)), report)
    assert [u for _, u in reported] == [urn("dev", "aws:s3/bucket:Bucket", "storage-checkpoints")]


def test_unknown_values_defer_to_the_engine() -> None:
    """A value unknown during preview raises UnknownValueError, which the engine turns into an advisory note."""
    policy = pack.to_policy(rule("ecr-immutable-tags"), lambda u: context())
    assert isinstance(policy, ResourceValidationPolicy)
    props = unknown_checking_proxy({"name": "monty", "imageTagMutability": UNKNOWN_STRING_VALUE})
    args = ResourceValidationArgs(
        "aws:ecr/repository:Repository", props, urn("dev", "aws:ecr/repository:Repository", "r"), "r", options(), None
    )
    with pytest.raises(UnknownValueError):
        policy.validate(args, collect()[1])


def test_stack_settings_read_the_stack_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    # No engine config: an earlier test in this process may have left the plan's config in the runtime.
    pulumi.runtime.set_all_config({})
    (tmp_path / "Pulumi.qa.yaml").write_text(
        "config:\n  simfleet:platform:\n    repositories: [a, b]\n    imageAllowList: [nvcr.io/nvidia]\n"
    )
    assert pack.stack_settings("qa", tmp_path) == (("a", "b"), ("nvcr.io/nvidia",))
    assert pack.stack_settings("missing", tmp_path) == (("monty", "unitree-sim", "glue-base"), ())
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"simfleet:platform": json.dumps({"repositories": ["x"]})}))
    assert pack.stack_settings("qa", tmp_path) == (("x",), ())


# ---------------------------------------------------------------------------------------------
# The real plan: both example stacks pass with no mandatory violation
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planned() -> Iterator[Callable[[str], Any]]:
    from tools import plan

    cache: dict[str, Any] = {}

    def get(stack: str) -> Any:
        if stack not in cache:
            cache[stack] = plan.run_program(plan.PROJECT_ROOT / f"Pulumi.{stack}.yaml", stack)
        return cache[stack]

    yield get


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_example_stacks_have_no_mandatory_violations(planned: Callable[[str], Any], stack: str) -> None:
    from tools import plan

    result = planned(stack)
    found = plan.policy_violations(result)
    mandatory = [v.as_json() for v in found if v.level == "mandatory"]
    assert mandatory == []
    types = {r.type for r in result.registrations}
    # The rules really ran against the resources they are about.
    assert {"eks:index:Cluster", "aws:s3/bucket:Bucket", "aws:ecr/repository:Repository", "aws:eks/nodeGroup:NodeGroup"} <= types


@pytest.mark.slow
def test_rules_bite_on_the_real_plan(planned: Callable[[str], Any]) -> None:
    """Breaking the planned dev stack the way a bad change would is caught, so passing was not vacuous."""
    from tools import plan

    resources = plan.plan_resources(planned("dev"))
    names = {r.name for r in resources}
    assert {"storage-checkpoints-versioning", "access-run-role", "runs-trot-sweep"} <= names, sorted(names)
    ctx = context("dev", extra_images=helper_images())
    assert [v for v in evaluate(resources, ctx) if v.level == "mandatory"] == []
    lt = next(r.name for r in resources if r.resource_type == "aws:ec2/launchTemplate:LaunchTemplate")
    broken = drop(resources, "storage-checkpoints-versioning")
    broken = edit(broken, lt, set_path(["metadataOptions", "httpPutResponseHopLimit"], 2))
    broken = edit(
        broken, "access-run-role", lambda p: p.update(assumeRolePolicy=p["assumeRolePolicy"].replace("simfleet-run", "*"))
    )
    broken = edit_objects(broken, "runs-trot-sweep", lambda o: job_pod(o)["nodeSelector"].update({CAPACITY: "ON_DEMAND"}))
    broken = edit_objects(broken, "jobs-robocache-resample", lambda o: job_spec(o).update(suspend=False))
    found = {v.policy for v in evaluate(broken, ctx) if v.level == "mandatory"}
    assert found == {
        "s3-checkpoints-versioning",
        "ec2-launch-template-imdsv2",
        "iam-irsa-trust-scoped",
        "run-batch-spot-first",
        "run-queued",
    }


# ---------------------------------------------------------------------------------------------
# The pack as the engine runs it: a subprocess speaking the Analyzer gRPC protocol
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyzer() -> Iterator[Any]:
    """`python policies` prints its port and serves pulumirpc.Analyzer, as under `pulumi preview --policy-pack`."""
    import subprocess
    import sys

    import grpc
    from pulumi.runtime.proto import analyzer_pb2_grpc

    root = pack.PROJECT_ROOT
    # The pack would read stack config from PULUMI_CONFIG first; this test wants Pulumi.dev.yaml.
    env = {k: v for k, v in os.environ.items() if k != "PULUMI_CONFIG"}
    process = subprocess.Popen([sys.executable, str(root / "policies")], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.kill()
        process.wait(timeout=30)


def analyzer_resource(r: Resource) -> Any:
    from google.protobuf import struct_pb2
    from pulumi.runtime.proto import analyzer_pb2

    props = struct_pb2.Struct()
    props.update(json.loads(json.dumps(r.props)))
    deps = {k: analyzer_pb2.AnalyzerPropertyDependencies(urns=list(v)) for k, v in r.property_dependencies.items()}
    return analyzer_pb2.AnalyzerResource(
        type=r.resource_type, properties=props, urn=r.urn, name=r.name, parent=r.parent or "", propertyDependencies=deps
    )


@pytest.mark.slow
def test_pack_over_grpc_matches_the_offline_plan(analyzer: Any, planned: Callable[[str], Any]) -> None:
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import analyzer_pb2

    from tools import plan

    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "simfleet"
    levels = {p.name: analyzer_pb2.EnforcementLevel.Name(p.enforcementLevel).lower() for p in info.policies}
    assert levels == {r.name: r.level for r in RULES}

    resources = plan.plan_resources(planned("dev"))
    clean = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[analyzer_resource(r) for r in resources]))
    offline = [
        v
        for v in evaluate(resources, context("dev", extra_images=helper_images()))
        if v.policy in {r.name for r in RULES if r.stack_check}
    ]
    assert sorted(d.policyName for d in clean.diagnostics) == sorted(v.policy for v in offline)
    assert not any(d.enforcementLevel == analyzer_pb2.MANDATORY for d in clean.diagnostics)

    broken = drop(resources, "storage-checkpoints-versioning")
    found = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[analyzer_resource(r) for r in broken]))
    versioning = [d for d in found.diagnostics if d.policyName == "s3-checkpoints-versioning"]
    assert len(versioning) == 1 and versioning[0].enforcementLevel == analyzer_pb2.MANDATORY
    assert versioning[0].urn.endswith("::storage-checkpoints")

    eks = next(r for r in resources if r.resource_type == "eks:index:Cluster")
    opened = analyzer_resource(replace(eks, props={**eks.props, "publicAccessCidrs": ["0.0.0.0/0"]}))
    response = analyzer.Analyze(
        analyzer_pb2.AnalyzeRequest(type=opened.type, properties=opened.properties, urn=opened.urn, name=opened.name)
    )
    assert [d.policyName for d in response.diagnostics] == ["eks-endpoint-access"]
    for r in resources:
        if r.resource_type == "pulumi-python:dynamic:Resource":
            a = analyzer_resource(r)
            clean_run = analyzer.Analyze(
                analyzer_pb2.AnalyzeRequest(type=a.type, properties=a.properties, urn=a.urn, name=a.name)
            )
            assert list(clean_run.diagnostics) == [], r.name


@pytest.mark.slow
def test_plan_exits_3_on_a_mandatory_violation_config_cannot_see(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """config/ accepts any full image URI; the policy admits only the stack's ECR and the allow-list."""
    import yaml

    from tools import plan

    document = yaml.safe_load((pack.PROJECT_ROOT / "Pulumi.dev.yaml").read_text())
    runs = document["config"]["simfleet:runs"]
    runs[0]["images"]["sim"] = "ghcr.io/someone/unitree-sim:4.2.0"
    document["config"]["simfleet:runs"] = runs[:1]
    stack_file = tmp_path / "Pulumi.qa.yaml"
    stack_file.write_text(yaml.safe_dump(document))

    assert plan.main(["--config", str(stack_file), "--out", str(tmp_path / "out")]) == 3
    out = capsys.readouterr().out
    assert "[mandatory] run-image-source" in out and "cost (us-east-1 prices" in out
    found = json.loads((tmp_path / "out" / "qa" / "policy.json").read_text())
    assert [(v["policy"], v["level"]) for v in found] == [("run-image-source", "mandatory")]
    assert found[0]["urn"].endswith("::runs-trot-baseline") and "ghcr.io/someone/unitree-sim:4.2.0" in found[0]["message"]
    cost = json.loads((tmp_path / "out" / "qa" / "cost.json").read_text())
    assert cost["idleMonthlyUsd"] < 150
    assert sorted((r["kind"], r["name"]) for r in cost["runs"]) == [("job", "robocache-resample"), ("run", "trot-baseline")]
