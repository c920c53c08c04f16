"""Metrics: a pinned Prometheus Pushgateway in its own namespace: the runs namespace pushes to it on 9091, the collector
(components/collector.py) scrapes it there, and nothing else reaches it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

import naming
import versions
from components import kube
from components.addons import SYSTEM_NODES
from components.runs_namespace import pod_security_labels

CHART = "prometheus-pushgateway"  # the key of its pin in versions.HELM_CHARTS
DATA_DIR = "/data"  # the chart's persistentVolume.mountPath default
# The nobody user the chart runs the Pushgateway as (values.yaml securityContext); kept, and made explicit for the
# restricted Pod Security level the namespace enforces.
PUSHGATEWAY_UID = 65534
# The chart names its objects after the release when the release name contains the chart name (_helpers.tpl
# "fullname"), and labels its pods app.kubernetes.io/name=<chart>, app.kubernetes.io/instance=<release>.
PUSHGATEWAY_POD_LABELS = {"app.kubernetes.io/name": CHART, "app.kubernetes.io/instance": naming.PUSHGATEWAY_RELEASE}
# Nominal on EFS (billed by bytes stored, never enforced); the persistence file is a few KB to MB of pushed series.
VOLUME_SIZE = "1Gi"
LABELS = {"app.kubernetes.io/part-of": "simfleet", "app.kubernetes.io/managed-by": "pulumi"}


def pushgateway_url(namespace: str = naming.METRICS_NAMESPACE) -> str:
    return f"http://{naming.PUSHGATEWAY_RELEASE}.{namespace}.svc:{naming.PUSHGATEWAY_PORT}"


def namespace_object(kubernetes_version: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": naming.METRICS_NAMESPACE, "labels": {**LABELS, **pod_security_labels(kubernetes_version)}},
    }


def network_policies(
    namespace: pulumi.Input[str], clients_namespace: str = naming.RUNS_NAMESPACE, scraped: bool = False
) -> list[dict[str, Any]]:
    """Default deny both ways, then the Pushgateway's port from the runs namespace (runs and jobs push) and, when the
    collector exists, from the collector alone (it scrapes): nothing else gets in or out.

    Kubelet probes still reach the pod: the VPC CNI's network policy agent always admits the node's own address.
    """

    def policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        meta = {"name": name, "namespace": namespace, "labels": LABELS}
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta, "spec": spec}

    policies = [
        policy("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        policy(
            "allow-pushgateway-from-runs",
            {
                "podSelector": {"matchLabels": PUSHGATEWAY_POD_LABELS},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": clients_namespace}}}],
                        "ports": [{"port": naming.PUSHGATEWAY_PORT, "protocol": "TCP"}],
                    }
                ],
            },
        ),
    ]
    if scraped:
        policies.append(
            policy(
                "allow-pushgateway-from-collector",
                {
                    "podSelector": {"matchLabels": PUSHGATEWAY_POD_LABELS},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {"from": [naming.collector_peer()], "ports": [{"port": naming.PUSHGATEWAY_PORT, "protocol": "TCP"}]}
                    ],
                },
            )
        )
    return policies


def pushgateway_values(persistence: bool, storage_class: pulumi.Input[str] | None) -> dict[str, Any]:
    """Values of the pinned chart (keys checked against its values.yaml and templates in tests/test_metrics.py)."""
    values: dict[str, Any] = {
        # System nodes, like every other add-on: never a GPU node.
        "nodeSelector": SYSTEM_NODES,
        # It never calls the Kubernetes API.
        "automountServiceAccountToken": False,
        # The namespace enforces the restricted Pod Security level: seccomp, no escalation, no capabilities.
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": PUSHGATEWAY_UID,
            "runAsGroup": PUSHGATEWAY_UID,
            "fsGroup": PUSHGATEWAY_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containerSecurityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        # Small: it holds the last push of each group in memory; a limit keeps a runaway pusher from starving the node.
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
    }
    if persistence:
        if storage_class is None:
            raise ValueError("pushgateway_values: persistence needs a StorageClass")
        values["persistentVolume"] = {
            "enabled": True,
            "storageClass": storage_class,
            "size": VOLUME_SIZE,
            "accessModes": ["ReadWriteOnce"],
        }
        # The chart mounts the volume but does not tell the Pushgateway to use it (values.yaml's own example): without
        # --persistence.file a restart loses every pushed group.
        values["extraArgs"] = [f"--persistence.file={DATA_DIR}/pushgateway.data", "--persistence.interval=1m"]
    return values


@dataclass(frozen=True)
class MetricsArgs:
    kubernetes_version: str
    persistence: bool
    # SharedStorage.storage_class_name when persistence is on: the Pushgateway's file lives on EFS.
    storage_class: pulumi.Input[str] | None
    cluster: pulumi.Resource
    # platform.observability.enabled: the collector scrapes the Pushgateway, so its policy admits it.
    scraped: bool = False

    def __post_init__(self) -> None:
        if self.persistence and self.storage_class is None:
            raise ValueError("Metrics: persistence needs storage_class (turn on shared storage)")
        if CHART not in versions.HELM_CHARTS:
            raise ValueError(f"Metrics: versions.HELM_CHARTS has no pin for {CHART}")


class Metrics(pulumi.ComponentResource):
    namespace: pulumi.Output[str]
    pushgateway_url: pulumi.Output[str]

    def __init__(self, name: str, args: MetricsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("simfleet:metrics:Metrics", name, None, opts)
        after = opts.depends_on if opts is not None else None
        # Deleting the cluster deletes everything inside it; per-object deletes would only hang on a gone API.
        in_cluster = pulumi.ResourceOptions(parent=self, deleted_with=args.cluster, depends_on=after)

        ns = kube.register(f"{name}-namespace", namespace_object(args.kubernetes_version), in_cluster)
        ns_name = ns.urn.apply(lambda _: naming.METRICS_NAMESPACE)
        guards = [
            kube.register(f"{name}-{p['metadata']['name']}", p, in_cluster)
            for p in network_policies(ns_name, scraped=args.scraped)
        ]
        # The release starts only once the namespace is guarded: its name resolves after every policy exists.
        guarded = pulumi.Output.all(ns_name, *(g.urn for g in guards)).apply(lambda v: str(v[0]))

        chart = versions.HELM_CHARTS[CHART]
        release = k8s.helm.v3.Release(
            f"{name}-pushgateway",
            # A fixed release name: the Service is then `prometheus-pushgateway`, the URL runs and jobs are given.
            name=naming.PUSHGATEWAY_RELEASE,
            namespace=guarded,
            chart=chart.chart,
            version=chart.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repository),
            values=pushgateway_values(args.persistence, args.storage_class),
            opts=in_cluster,
        )

        self.namespace = guarded
        self.pushgateway_url = pulumi.Output.all(release.name, guarded).apply(
            lambda v: f"http://{v[0]}.{v[1]}.svc:{naming.PUSHGATEWAY_PORT}"
        )
        self.register_outputs({"namespace": self.namespace, "pushgatewayUrl": self.pushgateway_url})
