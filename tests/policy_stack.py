"""A compliant synthetic stack for the policy tests (tests/policy_edits.py breaks it one rule at a time).

The resources carry the property names the engine hands a policy pack (camelCase provider inputs), with the
dependencies between them; runs, jobs and the service are rendered by the real planners and renderers.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import naming
from config import JobSpec, RunSpec, ServiceSpec
from config.sources import load_yaml
from policies.rules import Context, Resource
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
DEV_STACK = Path(__file__).resolve().parent.parent / "Pulumi.dev.yaml"
DEV_SERVICE = load_yaml(DEV_STACK.read_text())["config"]["simfleet:services"][0]


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


TRITON = "services-radstream-triton-deployment"  # the Deployment services() adds


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
