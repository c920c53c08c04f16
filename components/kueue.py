"""Kueue's Helm values and controller configuration (pure), installed by components/addons.py.

Kueue admits every queued run and job (components/queues.py holds its flavors, queues and priority classes). Checked
against the pinned chart's values.yaml and templates and its default controller configuration in tests/test_kueue.py.
"""

from __future__ import annotations

from typing import Any

import yaml

import naming
import versions
from components.runs_namespace import pod_security_labels
from workloads.budget import STARTUP_SECONDS

CHART = "kueue"  # the key of its pin in versions.HELM_CHARTS
# The one integration simfleet uses: runs and jobs are batch/v1 Jobs. Leaving out "pod", "deployment" and
# "statefulset" also turns the chart's webhooks for those kinds to failurePolicy Ignore (templates/webhook/manifests.yaml
# picks Fail only for the frameworks listed; read at a commit after v0.19.2, not at the tag), so a Kueue outage does not
# block Deployments (services, add-ons). Its Job webhooks always fail closed: no Job is created while Kueue is down.
FRAMEWORKS = ("batch/job",)
# Fair sharing is on when the configuration has a fairSharing section (config.kueue.x-k8s.io/v1beta2 dropped v1beta1's
# `enable`; its conversion maps enable: false to no section). Only LessThanInitialShare: Kueue preempts a workload of
# another team only if the preempting team's share, with the incoming workload, stays strictly below that team's share,
# and it picks the lowest priority and newest workloads first (an interactive run outlives a batch sweep; the run that
# loses the least work goes first). A team below its nominal quota has a share of 0, so it can always reclaim. The
# default list also tries LessThanOrEqualToFinalShare, which "might favor preemption of smaller workloads ...
# regardless of priority or start time" (Kueue docs, concepts/preemption.md "Preemption strategies").
PREEMPTION_STRATEGIES = ("LessThanInitialShare",)
# waitForPodsReady (config.kueue.x-k8s.io/v1beta2 WaitForPodsReady, apis/config/v1beta2/configuration_types.go at
# v0.19.2; the chart's default configuration lists it commented out with these keys). Kueue counts quota, not EC2
# capacity: a workload admitted on the spot flavor while AWS has no spot GPUs would hold its quota with Pending pods
# until its deadline ran out. With this, a workload whose pods are not all Ready within PODS_READY_TIMEOUT of admission
# is evicted (its Job suspended, its quota released to others) and requeued after a backoff, with its deadline whole
# again (Kubernetes resets a suspended Job's startTime). Kueue documents this for a stock-out the Cluster Autoscaler
# cannot provision (KEP-1282 "pods-ready requeue strategy", story 1). It re-runs flavor assignment from the first flavor,
# so a requeued workload tries spot again and takes on-demand only when spot's quota is in use (kueue#2560, a flavor
# fallback for stock-outs, is open); docs/researchers/queues.md says what that means for a run.
# The timeout: budget.STARTUP_SECONDS (a GPU node from zero, the 20 GB image pull, the sidecars' startup probes) plus a
# margin, so a normal start is never evicted.
PODS_READY_TIMEOUT_SECONDS = STARTUP_SECONDS + 15 * 60
WAIT_FOR_PODS_READY: dict[str, Any] = {
    "timeout": f"{PODS_READY_TIMEOUT_SECONDS // 60}m",
    # Off ("0s" disables it): between the waves of an Indexed Job (a seed done, the next pod starting on a new node)
    # fewer pods are Ready than parallelism, which would otherwise evict a sweep that is making progress. A replaced
    # pod is the Job's own business (podFailurePolicy, backoffLimitPerIndex, the deadline).
    "recoveryTimeout": "0s",
    # Admissions continue while a workload waits: independent runs need no all-or-nothing ordering.
    "blockAdmission": False,
    "requeuingStrategy": {
        # Back in its old place in line: it was waiting for capacity, not at fault.
        "timestamp": "Creation",
        # No backoffLimitCount: a workload is never deactivated (a deactivated Job would wait suspended with no
        # deadline running). Each attempt is bounded by the timeout; the gaps grow 60 s, 120 s, ... up to 30 min.
        "backoffBaseSeconds": 60,
        "backoffMaxSeconds": 30 * 60,
    },
}


def manager_config() -> dict[str, Any]:
    """The controller's Configuration (config.kueue.x-k8s.io/v1beta2), which the chart takes whole as one YAML string.

    Everything but the last four keys is the chart's default controller_manager_config.yaml at 0.19.2, restated
    because the value replaces the default instead of merging with it (the chart only adds internalCertManagement).
    """
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "health": {"healthProbeBindAddress": ":8081"},
        "metrics": {"bindAddress": ":8443"},
        "webhook": {"port": 9443},
        "leaderElection": {"leaderElect": True, "resourceName": "c1f6bfd2.kueue.x-k8s.io"},
        "controller": {
            "groupKindConcurrency": {
                "Job.batch": 5,
                "Pod": 5,
                "Workload.kueue.x-k8s.io": 10,
                "LocalQueue.kueue.x-k8s.io": 5,
                "ClusterQueue.kueue.x-k8s.io": 5,
                "ResourceFlavor.kueue.x-k8s.io": 1,
            }
        },
        "clientConnection": {"qps": 300, "burst": 500},
        # Kueue manages only Jobs that carry kueue.x-k8s.io/queue-name. The continuation gate (a small CPU Job) and
        # anything else without the label start as before; queued runs and jobs carry it.
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": list(FRAMEWORKS)},
        "fairSharing": {"preemptionStrategies": list(PREEMPTION_STRATEGIES)},
        "waitForPodsReady": WAIT_FOR_PODS_READY,
    }


def kueue_values(system_nodes: dict[str, str]) -> dict[str, Any]:
    """Values of the pinned chart: the pinned controller image on the system nodes, and simfleet's configuration."""
    return {
        "controllerManager": {
            "manager": {
                "image": {
                    "repository": versions.KUEUE_IMAGE,
                    "tag": versions.KUEUE_IMAGE_TAG,
                    # The chart's source default is Always (for its floating staging tag); a pinned tag never changes.
                    "pullPolicy": "IfNotPresent",
                }
            },
            # Like every other controller: the system nodes, never a GPU node (those scale to zero).
            "nodeSelector": system_nodes,
        },
        "managerConfig": {"controllerManagerConfigYaml": yaml.safe_dump(manager_config(), sort_keys=False)},
    }


def namespace_object(kubernetes_version: str) -> dict[str, Any]:
    """kueue-system at the restricted Pod Security level: the chart's pod and container security contexts meet it."""
    labels = {"app.kubernetes.io/part-of": "simfleet", "app.kubernetes.io/managed-by": "pulumi"}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": naming.KUEUE_NAMESPACE, "labels": {**labels, **pod_security_labels(kubernetes_version)}},
    }


def network_policies(namespace: Any = naming.KUEUE_NAMESPACE) -> list[dict[str, Any]]:
    """Ingress to Kueue's controller: its webhooks and visibility API from anywhere, its metrics only from the collector.

    The API server calls the webhooks and the aggregated visibility API from its network interfaces in the VPC, whose
    addresses no selector can name, so those two ports stay open; the metrics port (authenticated, but it lists every
    queue's workloads) admits only the collector. The kubelet's probes on 8081 still arrive: the VPC CNI's policy agent
    always admits the node's own address. Egress is left alone: Kueue only talks to the API server.
    """
    labels = {"app.kubernetes.io/part-of": "simfleet", "app.kubernetes.io/managed-by": "pulumi"}
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "kueue-ingress", "namespace": namespace, "labels": labels},
            "spec": {
                "podSelector": {"matchLabels": dict(naming.KUEUE_POD_LABELS)},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "ports": [
                            {"port": port, "protocol": "TCP"}
                            for port in (naming.KUEUE_WEBHOOK_PORT, naming.KUEUE_VISIBILITY_PORT)
                        ]
                    },
                    {"from": [naming.collector_peer()], "ports": [{"port": naming.KUEUE_METRICS_PORT, "protocol": "TCP"}]},
                ],
            },
        }
    ]
