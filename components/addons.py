"""Cluster add-ons: EKS managed add-ons and pinned Helm charts (GPU, scaling, load balancers, Kueue); container logs are
Container Insights' (components/observability.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

import naming
import versions
from components import kube
from components.kueue import CHART as KUEUE
from components.kueue import kueue_values
from components.kueue import namespace_object as kueue_namespace
from components.kueue import network_policies as kueue_network_policies
from components.tags import merge_tags
from config import LOG_RETENTION_DAYS

IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
SYSTEM_NODES = {naming.NODE_POOL_LABEL: "system"}
GPU_NODES = {naming.NODE_POOL_LABEL: "gpu"}
GPU_TOLERATION = {"key": naming.GPU_TAINT_KEY, "operator": "Exists", "effect": naming.GPU_TAINT_EFFECT}

# Keys of AddonsArgs.roles: the IRSA role of each chart that calls AWS APIs.
LOAD_BALANCER_CONTROLLER = "aws-load-balancer-controller"
CLUSTER_AUTOSCALER = "cluster-autoscaler"
REQUIRED_ROLES = (LOAD_BALANCER_CONTROLLER, CLUSTER_AUTOSCALER)
# Every chart this component installs; each must have a pin in versions.HELM_CHARTS.
CHARTS = ("nvidia-device-plugin", CLUSTER_AUTOSCALER, "metrics-server", KUEUE, LOAD_BALANCER_CONTROLLER)

# EKS managed add-ons installed after the nodes, pinned per Kubernetes minor in versions.MANAGED_ADDONS. The VPC CNI,
# the other managed add-on, is installed before the nodes by components/pod_network.py, on its own IRSA role.
# No Pod Identity agent: every role here is IRSA, so it would only add a DaemonSet pod to every node.
MANAGED_ADDON_CONFIG: dict[str, dict[str, Any]] = {
    "coredns": {},
    "kube-proxy": {},
}
# Removing these from a running cluster takes DNS and service routing with them; keep the software if the
# Addon resource is ever deleted or renamed, and let EKS's DeleteCluster remove it with the cluster.
PRESERVE_ON_DELETE = frozenset({"coredns", "kube-proxy"})


@dataclass(frozen=True)
class AddonsArgs:
    cluster_name: str
    region: str
    kubernetes_version: str
    vpc_id: pulumi.Input[str]
    roles: Mapping[str, pulumi.Input[str]]
    tags: Mapping[str, str]
    cluster: pulumi.Resource
    # The retired aws-for-fluent-bit group's retention, kept as it was while its last logs age out.
    log_retention_days: int = 30

    def __post_init__(self) -> None:
        errors: list[str] = []
        missing = [r for r in REQUIRED_ROLES if r not in self.roles]
        if missing:
            errors.append(f"roles is missing IRSA role ARNs for {', '.join(missing)}")
        missing = versions.missing_pins(self.kubernetes_version)
        if missing:
            errors.append(
                f"versions.py has no complete pins for Kubernetes {self.kubernetes_version}: it lacks {'; '.join(missing)}"
            )
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            errors.append(f"log_retention_days {self.log_retention_days} is not a CloudWatch retention value")
        if errors:
            raise ValueError("Addons: " + "; ".join(errors))


def _service_account(sa: tuple[str, str], role_arn: pulumi.Input[str]) -> dict[str, Any]:
    # The chart creates the service account under the exact name the IRSA trust policy (components/access.py)
    # is scoped to; any other name would get no AWS credentials.
    return {"create": True, "name": sa[1], "annotations": {IRSA_ANNOTATION: role_arn}}


def device_plugin_values() -> dict[str, Any]:
    return {
        "nodeSelector": GPU_NODES,
        # The chart's default affinity requires NFD labels (pci-10de / cpu vendor) or nvidia.com/gpu.present;
        # we run no NFD, so replace its terms with our own pool label and depend on nothing else.
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": naming.NODE_POOL_LABEL, "operator": "In", "values": ["gpu"]}]}
                    ]
                }
            }
        },
        # Setting tolerations replaces the chart default list, so both of its entries are restated.
        "tolerations": [GPU_TOLERATION, {"key": "CriticalAddonsOnly", "operator": "Exists"}],
    }


# How long the Cluster Autoscaler keeps an empty node (its scale-down-unneeded-time): a run's last nodes are billed
# this long after its pods end, which the cost per admission counts (tools/run_cost.py).
SCALE_DOWN_UNNEEDED_SECONDS = 10 * 60


def cluster_autoscaler_values(args: AddonsArgs) -> dict[str, Any]:
    return {
        "cloudProvider": "aws",
        "awsRegion": args.region,
        # Discovers ASGs tagged k8s.io/cluster-autoscaler/enabled and k8s.io/cluster-autoscaler/<cluster>,
        # which EKS puts on managed node group ASGs.
        "autoDiscovery": {"clusterName": args.cluster_name},
        "image": {
            "repository": versions.CLUSTER_AUTOSCALER_IMAGE,
            "tag": versions.CLUSTER_AUTOSCALER_IMAGE_TAGS[args.kubernetes_version],
        },
        "rbac": {"serviceAccount": _service_account(naming.CLUSTER_AUTOSCALER_SA, args.roles[CLUSTER_AUTOSCALER])},
        "extraArgs": {
            # When several groups fit a pod equally, spread scale-ups across them instead of filling one.
            "balance-similar-node-groups": True,
            # kube-system Deployments (CoreDNS, metrics-server, the controllers) can move; without this a node
            # hosting any of them is never scaled down. DaemonSet pods never block scale-down either way.
            "skip-nodes-with-system-pods": False,
            # GPU nodes cost dollars per hour; release them 10 minutes after the last run leaves.
            "scale-down-unneeded-time": f"{SCALE_DOWN_UNNEEDED_SECONDS // 60}m",
            # Two instance types per GPU group: pick the one that leaves the least idle CPU/memory.
            "expander": "least-waste",
        },
        "nodeSelector": SYSTEM_NODES,
    }


def load_balancer_controller_values(args: AddonsArgs) -> dict[str, Any]:
    return {
        "clusterName": args.cluster_name,
        # Region and VPC are passed explicitly: the node launch templates set the IMDS hop limit to 1, so pods
        # cannot ask the metadata service.
        "region": args.region,
        "vpcId": args.vpc_id,
        "serviceAccount": _service_account(naming.LOAD_BALANCER_CONTROLLER_SA, args.roles[LOAD_BALANCER_CONTROLLER]),
        "nodeSelector": SYSTEM_NODES,
    }


def metrics_server_values() -> dict[str, Any]:
    return {"nodeSelector": SYSTEM_NODES}


class Addons(pulumi.ComponentResource):
    chart_versions: dict[str, str]
    addon_versions: dict[str, str]

    def __init__(self, name: str, args: AddonsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("simfleet:addons:Addons", name, None, opts)
        # depends_on on a component does not reach its children; restate it so nothing here starts before the
        # node groups (CoreDNS stays DEGRADED with no nodes, Helm waits forever for unschedulable pods).
        after = opts.depends_on if opts is not None else None
        aws_child = pulumi.ResourceOptions(parent=self, depends_on=after)
        # Deleting the cluster deletes everything inside it; per-object deletes would only hang on a gone API.
        in_cluster = pulumi.ResourceOptions(parent=self, depends_on=after, deleted_with=args.cluster)

        self.addon_versions = {}
        for addon, config in MANAGED_ADDON_CONFIG.items():
            version = versions.addon_version(args.kubernetes_version, addon)
            aws.eks.Addon(
                f"{name}-{addon}",
                cluster_name=args.cluster_name,
                addon_name=addon,
                addon_version=version,
                configuration_values=json.dumps(config) if config else None,
                # EKS bootstraps self-managed copies of vpc-cni, CoreDNS and kube-proxy; OVERWRITE adopts them.
                resolve_conflicts_on_create="OVERWRITE",
                # Pulumi is the source of truth for add-on settings: an update resets hand-edits to our values
                # instead of failing (NONE) or keeping drift (PRESERVE).
                resolve_conflicts_on_update="OVERWRITE",
                preserve=addon in PRESERVE_ON_DELETE,
                tags=merge_tags(args.tags, {}),
                opts=in_cluster,
            )
            self.addon_versions[addon] = version

        # The group the retired aws-for-fluent-bit chart wrote to. Container logs now go to Container Insights' groups
        # (components/observability.py: one log pipeline, not two); this one stays declared, retained on delete, so
        # the upgrade never deletes the logs it holds. Remove it once its retention has emptied it.
        legacy = naming.legacy_container_log_group(args.cluster_name)
        aws.cloudwatch.LogGroup(
            f"{name}-containers",
            name=legacy,
            retention_in_days=args.log_retention_days,
            tags=merge_tags(args.tags, {}, name=legacy),
            opts=pulumi.ResourceOptions.merge(aws_child, pulumi.ResourceOptions(retain_on_delete=True)),
        )

        def release(
            key: str, namespace: pulumi.Input[str], values: Mapping[str, Any], extra: pulumi.ResourceOptions | None = None
        ) -> k8s.helm.v3.Release:
            chart = versions.HELM_CHARTS[key]
            return k8s.helm.v3.Release(
                f"{name}-{key}",
                # A fixed release name instead of an autoname: the chart's objects get stable, predictable names.
                name=key,
                namespace=namespace,
                # An OCI chart is its full reference with no repository (the provider hands oci:// references to Helm's
                # registry client, pulumi-kubernetes provider/pkg/provider/helm_release.go locateChart); any other
                # chart is its name in an index.yaml repository.
                chart=chart.reference,
                version=chart.version,
                repository_opts=None if chart.oci else k8s.helm.v3.RepositoryOptsArgs(repo=chart.repository),
                values=values,
                opts=pulumi.ResourceOptions.merge(in_cluster, extra),
            )

        kube_system = "kube-system"
        # Kueue in its own namespace (restricted Pod Security); its release starts once the namespace exists.
        kueue_ns = kube.register(f"{name}-kueue-namespace", kueue_namespace(args.kubernetes_version), in_cluster)
        kueue_ns_name = kueue_ns.urn.apply(lambda _: naming.KUEUE_NAMESPACE)
        kueue_guards = [
            kube.register(f"{name}-{p['metadata']['name']}", p, in_cluster) for p in kueue_network_policies(kueue_ns_name)
        ]
        others = [
            release("nvidia-device-plugin", kube_system, device_plugin_values()),
            release(CLUSTER_AUTOSCALER, naming.CLUSTER_AUTOSCALER_SA[0], cluster_autoscaler_values(args)),
            release("metrics-server", kube_system, metrics_server_values()),
            # pulumi-kubernetes waits for the release's Deployment to be ready, so the CRDs it installs and the
            # webhooks that validate ClusterQueues exist before anything depending on Addons (components/queues.py).
            # Its namespace resolves once the ingress policy exists, so Kueue never runs unguarded.
            release(
                KUEUE,
                pulumi.Output.all(kueue_ns_name, *(g.urn for g in kueue_guards)).apply(lambda v: str(v[0])),
                kueue_values(SYSTEM_NODES),
            ),
        ]
        # Installed last: its mutating webhook for Services fails other charts' Service creates while its pods
        # are not yet ready ("no endpoints available for service aws-load-balancer-webhook-service",
        # kubernetes-sigs/aws-load-balancer-controller#4140).
        release(
            LOAD_BALANCER_CONTROLLER,
            naming.LOAD_BALANCER_CONTROLLER_SA[0],
            load_balancer_controller_values(args),
            pulumi.ResourceOptions(depends_on=others),
        )

        self.chart_versions = {key: versions.HELM_CHARTS[key].version for key in CHARTS}
        self.register_outputs({"chartVersions": self.chart_versions, "addonVersions": self.addon_versions})
