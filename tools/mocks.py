"""Pulumi mocks shared by the offline plan and the tests: realistic outputs per type, every registration recorded."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs

ACCOUNT_ID = "123456789012"
MOCK_CA_DATA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMOCK\n-----END CERTIFICATE-----\n").decode()
DYNAMIC_TYPE = "pulumi-python:dynamic:Resource"


class UnhandledMockCall(Exception):
    """A provider function the mocks do not model; the program grew a call the plan cannot fake."""


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    parent: str
    inputs: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "parent": self.parent,
            "inputs": self.inputs,
            "options": self.options,
        }


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:17]


class SimfleetMocks(pulumi.runtime.Mocks):
    """Outputs that look like AWS's, so the program's own wiring (ARNs, ids, endpoints) is exercised."""

    def __init__(self, region: str = "us-east-1", deployed_outputs: dict[str, Any] | None = None) -> None:
        self.region = region
        # The stack's outputs as of its last deployment, as pulumi:pulumi:readStackOutputs answers (none: a new stack).
        self.deployed_outputs = deployed_outputs or {}

    def arn(self, service: str, resource: str, region: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{ACCOUNT_ID}:{resource}"

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        name = args.name
        typ = args.typ
        rid = f"{name}-{_short_hash(typ, name)[:8]}"
        state: dict[str, Any] = dict(inputs)
        handler = _TYPE_OUTPUTS.get(typ) or (_k8s_object if typ.startswith("kubernetes:") else None)
        if handler is not None:
            rid, extra = handler(self, name, inputs)
            state.update(extra)
        elif typ == DYNAMIC_TYPE:
            state.update(_dynamic_outputs(inputs))
            rid = f"{inputs.get('namespace')}/{inputs.get('runName', name)}"
        return rid, state

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        handler = _CALLS.get(args.token)
        if handler is None:
            raise UnhandledMockCall(f"no mock for provider function {args.token}; add it to tools/mocks.py")
        # An empty failure list, not None: MockMonitor.Invoke iterates it (pulumi 3.272).
        return handler(self, args.args), []


def _dynamic_outputs(inputs: dict[str, Any]) -> dict[str, Any]:
    # What SimRunProvider.create reports for a Job it has just submitted.
    return {"status": "Pending", "startTime": None, "completionTime": None}


def _eks_cluster(m: SimfleetMocks, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    cluster = inputs.get("name") or name
    oidc_id = _short_hash("oidc", cluster).upper()[:32]
    issuer = f"oidc.eks.{m.region}.amazonaws.com/id/{oidc_id}"
    endpoint = f"https://{oidc_id}.gr7.{m.region}.eks.amazonaws.com"
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": endpoint, "certificate-authority-data": MOCK_CA_DATA}}],
        "contexts": [{"name": "aws", "context": {"cluster": cluster, "user": "aws"}}],
        "current-context": "aws",
        "users": [
            {
                "name": "aws",
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": "aws",
                        "args": ["eks", "get-token", "--cluster-name", cluster, "--output", "json"],
                    }
                },
            }
        ],
    }
    return cluster, {
        "kubeconfig": kubeconfig,
        "kubeconfigJson": json.dumps(kubeconfig),
        "oidcProviderArn": m.arn("iam", f"oidc-provider/{issuer}", region=False),
        "oidcProviderUrl": issuer,
        "oidcIssuer": issuer,
        "clusterSecurityGroupId": f"sg-{_short_hash('csg', cluster)}",
        "nodeSecurityGroupId": f"sg-{_short_hash('nsg', cluster)}",
    }


def _simple(prefix: str, arn_service: str | None = None, arn_path: str = "", **extra: Any):
    def handler(m: SimfleetMocks, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        rid = f"{prefix}-{_short_hash(prefix, name)}" if prefix else inputs.get("name", name)
        out: dict[str, Any] = {"id": rid, **extra}
        if arn_service:
            out["arn"] = m.arn(arn_service, f"{arn_path}{inputs.get('name', rid)}")
        return rid, out

    return handler


def _bucket(m: SimfleetMocks, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    bucket = inputs.get("bucket") or f"{name}-{_short_hash('b', name)[:7]}"
    return bucket, {
        "bucket": bucket,
        "arn": f"arn:aws:s3:::{bucket}",
        "region": m.region,
        "bucketRegionalDomainName": f"{bucket}.s3.{m.region}.amazonaws.com",
    }


def _iam_role(m: SimfleetMocks, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    role = inputs.get("name") or f"{name}-{_short_hash('r', name)[:7]}"
    return role, {"name": role, "arn": m.arn("iam", f"role/{role}", region=False), "uniqueId": "AROA" + _short_hash(role).upper()}


def _iam_policy(m: SimfleetMocks, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    policy = inputs.get("name") or f"{name}-{_short_hash('p', name)[:7]}"
    arn = m.arn("iam", f"policy/{policy}", region=False)
    return arn, {"name": policy, "arn": arn}


def _ecr_repo(m: SimfleetMocks, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    repo = inputs.get("name", name)
    return repo, {
        "arn": m.arn("ecr", f"repository/{repo}"),
        "registryId": ACCOUNT_ID,
        "repositoryUrl": f"{ACCOUNT_ID}.dkr.ecr.{m.region}.amazonaws.com/{repo}",
    }


def _kms_key(m: SimfleetMocks, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    key_id = "mrk-" + _short_hash("kms", name)
    return key_id, {"keyId": key_id, "arn": m.arn("kms", f"key/{key_id}")}


def _node_group(m: SimfleetMocks, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    group = inputs.get("nodeGroupName") or name
    asg = f"eks-{group}-{_short_hash('asg', group)[:8]}"
    return f"{inputs.get('clusterName')}:{group}", {
        "nodeGroupName": group,
        "arn": m.arn("eks", f"nodegroup/{inputs.get('clusterName')}/{group}/{_short_hash(group)[:8]}"),
        "resources": [{"autoscalingGroups": [{"name": asg}], "remoteAccessSecurityGroupId": ""}],
        "status": "ACTIVE",
    }


def _k8s_object(m: SimfleetMocks, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    meta = inputs.get("metadata") or {}
    namespace = meta.get("namespace")
    obj_name = meta.get("name", name)
    return (f"{namespace}/{obj_name}" if namespace else obj_name), {}


def _helm_release(m: SimfleetMocks, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    release = inputs.get("name", name)
    return f"{inputs.get('namespace', 'default')}/{release}", {
        "status": {
            "name": release,
            "namespace": inputs.get("namespace"),
            "status": "deployed",
            "chart": inputs.get("chart"),
            "version": inputs.get("version"),
        }
    }


def _efs_file_system(m: SimfleetMocks, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    fs_id = f"fs-{_short_hash('efs', name)}"
    return fs_id, {
        "id": fs_id,
        "arn": m.arn("elasticfilesystem", f"file-system/{fs_id}"),
        "dnsName": f"{fs_id}.efs.{m.region}.amazonaws.com",
    }


_TYPE_OUTPUTS: dict[str, Any] = {
    "eks:index:Cluster": _eks_cluster,
    "aws:ec2/vpc:Vpc": _simple("vpc", "ec2", "vpc/"),
    "aws:ec2/subnet:Subnet": _simple("subnet", "ec2", "subnet/"),
    "aws:ec2/internetGateway:InternetGateway": _simple("igw"),
    "aws:ec2/eip:Eip": _simple("eipalloc", publicIp="198.51.100.10"),
    "aws:ec2/natGateway:NatGateway": _simple("nat"),
    "aws:ec2/routeTable:RouteTable": _simple("rtb"),
    "aws:ec2/route:Route": _simple("r"),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": _simple("rtbassoc"),
    "aws:ec2/vpcEndpoint:VpcEndpoint": _simple("vpce"),
    "aws:ec2/securityGroup:SecurityGroup": _simple("sg"),
    "aws:ec2/launchTemplate:LaunchTemplate": _simple("lt", latestVersion=1),
    "aws:eks/nodeGroup:NodeGroup": _node_group,
    "aws:eks/addon:Addon": _simple("", "eks", "addon/"),
    "aws:autoscaling/tag:Tag": _simple("asgtag"),
    "aws:kms/key:Key": _kms_key,
    "aws:kms/alias:Alias": _simple("alias"),
    "aws:iam/role:Role": _iam_role,
    "aws:iam/policy:Policy": _iam_policy,
    "aws:iam/rolePolicy:RolePolicy": _simple("rp"),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": _simple("rpa"),
    "aws:s3/bucket:Bucket": _bucket,
    "aws:ecr/repository:Repository": _ecr_repo,
    "aws:cloudwatch/logGroup:LogGroup": _simple("", "logs", "log-group:"),
    "aws:efs/fileSystem:FileSystem": _efs_file_system,
    "aws:efs/mountTarget:MountTarget": _simple("fsmt"),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": _simple("sgr"),
    "kubernetes:helm.sh/v3:Release": _helm_release,
    # Observability: the ARNs the alarms notify and the dashboard lists, as AWS forms them from the names.
    "aws:sns/topic:Topic": _simple("", "sns", ""),
    "aws:cloudwatch/metricAlarm:MetricAlarm": _simple("", "cloudwatch", "alarm:"),
    "aws:cloudwatch/eventRule:EventRule": _simple("", "events", "rule/"),
}


def _azs(m: SimfleetMocks, args: dict[str, Any]) -> dict[str, Any]:
    names = [f"{m.region}{suffix}" for suffix in "abcdef"]
    return {"names": names, "zoneIds": [f"use1-az{i}" for i in range(1, 7)], "id": m.region}


def _caller(m: SimfleetMocks, args: dict[str, Any]) -> dict[str, Any]:
    return {"accountId": ACCOUNT_ID, "arn": m.arn("iam", "user/ci", region=False), "userId": "AIDAMOCK", "id": ACCOUNT_ID}


def _partition(m: SimfleetMocks, args: dict[str, Any]) -> dict[str, Any]:
    return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}


def _region(m: SimfleetMocks, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": m.region, "region": m.region, "id": m.region}


def _service_principal(m: SimfleetMocks, args: dict[str, Any]) -> dict[str, Any]:
    service, region = args["serviceName"], args.get("region") or m.region
    return {
        "name": f"{service}.amazonaws.com",
        "suffix": "amazonaws.com",
        "id": f"{service}.{region}",
        "region": region,
        "serviceName": service,
    }


def _eks_clusters(m: SimfleetMocks, args: dict[str, Any]) -> dict[str, Any]:
    # A fresh account: no cluster yet (tests patch EXISTING_CLUSTERS to model a stack that has one).
    return {"names": list(EXISTING_CLUSTERS), "id": m.region}


def _eks_cluster_info(m: SimfleetMocks, args: dict[str, Any]) -> dict[str, Any]:
    # DescribeCluster as seen through aws.eks.get_cluster: the EKS-created security group the managed nodes carry.
    cluster = args["name"]
    return {
        "name": cluster,
        "id": cluster,
        "arn": m.arn("eks", f"cluster/{cluster}"),
        "tags": dict(EXISTING_CLUSTER_TAGS.get(cluster, {})),
        "vpcConfig": {
            "clusterSecurityGroupId": f"sg-{_short_hash('eks-cluster-sg', cluster)}",
            "controlPlaneEgressMode": "AWS_MANAGED",
            "endpointPrivateAccess": True,
            "endpointPublicAccess": False,
            "publicAccessCidrs": [],
            "securityGroupIds": [],
            "subnetIds": [],
            "vpcId": "",
        },
    }


# The EKS clusters aws.eks.get_clusters reports, and the tags aws.eks.get_cluster reports for each.
EXISTING_CLUSTERS: list[str] = []
EXISTING_CLUSTER_TAGS: dict[str, dict[str, str]] = {}


def _stack_outputs(m: SimfleetMocks, args: dict[str, Any]) -> dict[str, Any]:
    # The engine's builtin provider answers with the named stack's outputs (pkg/resource/deploy/builtins.go).
    return {"name": args.get("name"), "outputs": m.deployed_outputs, "secretOutputNames": []}


_CALLS: dict[str, Any] = {
    "pulumi:pulumi:readStackOutputs": _stack_outputs,
    "aws:eks/getCluster:getCluster": _eks_cluster_info,
    "aws:eks/getClusters:getClusters": _eks_clusters,
    "aws:index/getAvailabilityZones:getAvailabilityZones": _azs,
    "aws:index/getCallerIdentity:getCallerIdentity": _caller,
    "aws:index/getPartition:getPartition": _partition,
    "aws:index/getRegion:getRegion": _region,
    "aws:index/getServicePrincipal:getServicePrincipal": _service_principal,
}


class _InputCapture(pulumi.runtime.Mocks):
    """Hands calls to the real mocks, keeping the inputs of this thread's latest new_resource.

    MockMonitor has already deserialized a registration's inputs for new_resource; keeping that dict
    spares the recorder a second deserialization of every resource (a run carries about 30 KB). The SDK
    registers from several threads at once, and new_resource runs inside its thread's RegisterResource,
    so the slot is per thread.
    """

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        self.mocks = mocks
        self._latest = threading.local()

    @property
    def last_inputs(self) -> dict[str, Any]:
        inputs: dict[str, Any] = self._latest.inputs
        return inputs

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self._latest.inputs = args.inputs
        return self.mocks.new_resource(args)

    def call(self, args: MockCallArgs) -> Any:
        return self.mocks.call(args)


class RecordingMonitor(MockMonitor):
    """A MockMonitor that also records each registration's parent, inputs and resource options."""

    def __init__(self, mocks: SimfleetMocks) -> None:
        self.capture = _InputCapture(mocks)
        super().__init__(self.capture)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    inputs=_plain(self.capture.last_inputs),
                    options=_options(request),
                )
            )
        return response


def _plain(value: Any) -> Any:
    # Secrets arrive as {"4dabf18193072939515e22adb298388d": ..., "value": ...} wrappers; hide the value.
    if isinstance(value, dict):
        if "4dabf18193072939515e22adb298388d" in value:
            return "[secret]"
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    # Pulumi's wire format has only doubles; a whole number is shown as the int it was written as,
    # which is also how Pulumi renders it in state and in `pulumi preview --json`.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _alias(alias: Any) -> dict[str, Any]:
    """An alias as sent to the engine: a full URN, or a spec of the parts that differ from the resource's own."""
    if alias.urn:
        return {"urn": alias.urn}
    spec = alias.spec
    fields = {key: getattr(spec, key) for key in ("name", "type", "stack", "project", "parentUrn", "noParent")}
    return {key: value for key, value in fields.items() if value}


def _options(request: Any) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if request.dependencies:
        options["dependsOn"] = sorted(request.dependencies)  # sets: the SDK sends them in no fixed order
    if request.ignoreChanges:
        options["ignoreChanges"] = list(request.ignoreChanges)
    if request.deleteBeforeReplace:
        options["deleteBeforeReplace"] = True
    if request.deletedWith:
        options["deletedWith"] = request.deletedWith
    if request.protect:
        options["protect"] = True
    if request.retainOnDelete:
        options["retainOnDelete"] = True
    if request.provider:
        options["provider"] = request.provider.split("::")[-2] if "::" in request.provider else request.provider
    if request.replaceOnChanges:
        options["replaceOnChanges"] = list(request.replaceOnChanges)
    aliases = [_alias(a) for a in request.aliases or []]
    if aliases:
        options["aliases"] = aliases
    # Which resources each input came from: the policy rules link a bucket's settings or a node group's
    # subnets through these, as the policy engine does with PolicyResource.property_dependencies.
    deps = {key: sorted(value.urns) for key, value in sorted((request.propertyDependencies or {}).items()) if value.urns}
    if deps:
        options["propertyDependencies"] = deps
    return options
