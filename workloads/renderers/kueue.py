"""Kueue's objects, pure: a ResourceFlavor per GPU capacity type, the WorkloadPriorityClasses, and per team a
ClusterQueue in one cohort and a LocalQueue in the runs namespace. Checked against Kueue's CRD schemas in
tests/test_kueue_renderers.py.

Kueue docs cited below: site/content/en/docs/concepts/{cluster_queue,resource_flavor,preemption}.md and the field
descriptions of the v0.19.2 CRDs (config/components/crd/bases/kueue.x-k8s.io_*.yaml).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import naming
from config.queues import FlavorQuota, QueuesConfig, TeamQueue
from config.types import CapacityType
from workloads.renderers.common import gpu_toleration

# The version Kueue v0.19.2's CRDs store (v1beta1 is still served, marked deprecated: "Use v1beta2 instead").
API_VERSION = "kueue.x-k8s.io/v1beta2"
LABELS = {"app.kubernetes.io/part-of": "simfleet", "app.kubernetes.io/managed-by": "pulumi"}
# Every resource a run or job pod requests, in one resource group so one flavor serves all three (a GPU comes with its
# node's CPU and memory). A workload asking for a resource a ClusterQueue does not cover is not admitted.
COVERED_RESOURCES = ("cpu", "memory", naming.GPU_RESOURCE)
# Relative values only matter: Kueue admits higher values first within a queue, and fair-sharing preemption takes lower
# values first. Services are not here: they are Deployments Kueue does not manage, so no priority could protect their
# scale-ups; the GPUs they can reach are kept out of every queue's quota instead (config/capacity.py).
PRIORITIES: dict[str, tuple[int, str]] = {
    naming.PRIORITY_INTERACTIVE: (1000, "Interactive runs: someone is watching; admitted before batch work in a queue."),
    naming.PRIORITY_BATCH: (100, "Batch runs and sweeps: admitted after interactive runs waiting in the same queue."),
}


def _object(kind: str, name: str, *, namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": dict(LABELS)}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata}


def resource_flavor(capacity: CapacityType) -> dict[str, Any]:
    """The GPU nodes of one capacity type. When Kueue admits a workload to this flavor it adds nodeLabels to its pods'
    nodeSelector and these tolerations to its pods (resource_flavor.md "ResourceFlavor tolerations for automatic
    scheduling"). Flavors whose labels contradict a pod's own nodeSelector are never assigned to it, so a pod that pins
    a capacity type (interactive runs pin on-demand) gets only that flavor."""
    flavor = _object("ResourceFlavor", naming.KUEUE_FLAVORS[capacity])
    flavor["spec"] = {
        "nodeLabels": {naming.CAPACITY_TYPE_LABEL: naming.EKS_CAPACITY[capacity], naming.NODE_POOL_LABEL: "gpu"},
        "tolerations": [gpu_toleration()],
    }
    return flavor


def priority_classes() -> list[dict[str, Any]]:
    classes = []
    for name, (value, description) in PRIORITIES.items():
        body = _object("WorkloadPriorityClass", name)
        body.update(value=value, description=description)
        classes.append(body)
    return classes


def _weight(weight: float) -> int | str:
    # An int-or-string quantity in the CRD: a whole number as an integer, a fraction as its decimal string ("0.5").
    return int(weight) if float(weight).is_integer() else str(weight)


def _resources(quota: FlavorQuota) -> list[dict[str, Any]]:
    amounts = {
        "cpu": (quota.cpu, quota.borrowing_cpu),
        "memory": (quota.memory, quota.borrowing_memory),
        naming.GPU_RESOURCE: (quota.gpus, quota.borrowing_gpus),
    }
    resources = []
    for name in COVERED_RESOURCES:  # the order of coveredResources, as Kueue's webhook requires
        nominal, borrowing = amounts[name]
        resource: dict[str, Any] = {"name": name, "nominalQuota": nominal}
        if borrowing is not None:  # none: the team may borrow any unused quota of the cohort
            resource["borrowingLimit"] = borrowing
        resources.append(resource)
    return resources


def cluster_queue(team: TeamQueue, namespaces: Sequence[str]) -> dict[str, Any]:
    """A team's quotas, one flavor per capacity type, spot first."""
    queue = _object("ClusterQueue", team.name)
    queue["spec"] = {
        # One cohort: teams lend each other their unused nominal quota (cluster_queue.md "Cohort").
        "cohortName": naming.KUEUE_COHORT,
        # Only the runs namespace (where jobs live too) may submit to a team's queue.
        "namespaceSelector": {
            "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": list(namespaces)}]
        },
        # A sweep too big for the free quota does not hold back smaller runs behind it.
        "queueingStrategy": "BestEffortFIFO",
        "resourceGroups": [
            {
                "coveredResources": list(COVERED_RESOURCES),
                "flavors": [
                    {"name": naming.KUEUE_FLAVORS[quota.capacity], "resources": _resources(quota)} for quota in team.quotas
                ],
            }
        ],
        # Spot then on-demand, in the flavors' order. whenCanBorrow MayStopSearch: batch work borrows idle spot GPUs of
        # other teams before it takes its own team's on-demand quota, which interactive runs (on-demand only) need.
        # whenCanPreempt TryNextFlavor: when spot would fit only by preempting, try on-demand first; Kueue preempts
        # only when no flavor fits without it. (Both are the v1beta2 defaults, written out because they are the design.)
        "flavorFungibility": {"whenCanBorrow": "MayStopSearch", "whenCanPreempt": "TryNextFlavor"},
        # simfleet's promise is that a declared run runs once and finishes cleanly, so Kueue preempts as little as it
        # can. withinClusterQueue Never: a team's running work is never stopped for the team's own newer work; priority
        # only orders who is admitted next. reclaimWithinCohort Any: nominal quota is a guarantee, so a team gets it
        # back from teams borrowing it, whatever the borrowed work's priority (with fair sharing, only workloads that
        # keep the LessThanInitialShare strategy, lowest priority and newest first; components/kueue.py). Borrowed GPUs
        # are therefore best effort: a preempted pod gets SIGTERM, saves a partial checkpoint within its grace period,
        # and its Job is suspended and requeued (Kueue evicts whole workloads), resuming from that checkpoint when
        # admitted again (checkpoint.every). borrowWithinCohort is left out: it is for classic preemption, not fair
        # sharing (its CRD description).
        "preemption": {"withinClusterQueue": "Never", "reclaimWithinCohort": "Any"},
        # A larger weight gets a larger share of the cohort's idle quota; Kueue admits from the queue with the lowest
        # weighted share first and preempts from the highest (preemption.md "Fair Sharing").
        "fairSharing": {"weight": _weight(team.weight)},
    }
    return queue


def local_queue(team: str, namespace: str) -> dict[str, Any]:
    """What a Job names in kueue.x-k8s.io/queue-name: the team's queue in the runs namespace."""
    queue = _object("LocalQueue", team, namespace=namespace)
    queue["spec"] = {"clusterQueue": team}
    return queue


def kueue_objects(queues: QueuesConfig, namespace: str) -> list[dict[str, Any]]:
    """Every Kueue object of the stack: flavors and priority classes first, then each team's ClusterQueue and LocalQueue."""
    flavors = [resource_flavor(capacity) for capacity in queues.capacity]
    teams = [cluster_queue(team, [namespace]) for team in queues.teams]
    locals_ = [local_queue(team.name, namespace) for team in queues.teams]
    return [*flavors, *priority_classes(), *teams, *locals_]
