"""Queues: Kueue's ResourceFlavors, WorkloadPriorityClasses, and each team's ClusterQueue and LocalQueue, rendered by
workloads/renderers/kueue.py and registered as custom resources once Kueue (its CRDs and webhooks) is installed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

import naming
from components import kube
from config import QueuesConfig
from workloads.renderers.kueue import kueue_objects

QUEUE_VIEWER = "simfleet-queue-viewer"
LABELS = {"app.kubernetes.io/part-of": "simfleet", "app.kubernetes.io/managed-by": "pulumi"}


def queue_viewer_rules() -> list[k8s.rbac.v1.PolicyRuleArgs]:
    """Read the cluster-scoped Kueue objects (the teams' quotas and usage, the flavors, the priority classes) and the
    nodes (their capacity and instance types)."""
    return [
        k8s.rbac.v1.PolicyRuleArgs(
            api_groups=["kueue.x-k8s.io"],
            resources=["clusterqueues", "cohorts", "resourceflavors", "workloadpriorityclasses"],
            verbs=["get", "list", "watch"],
        ),
        # A pod's node: its capacity type and instance type (`simfleet status`, the cost so far). Read-only.
        k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["nodes"], verbs=["get", "list"]),
    ]


@dataclass(frozen=True)
class QueuesArgs:
    queues: QueuesConfig
    # RunsNamespace.namespace: the LocalQueues are created once the namespace and its guards exist.
    namespace: pulumi.Input[str]
    cluster: pulumi.Resource

    def __post_init__(self) -> None:
        if not self.queues.teams:
            raise ValueError("Queues: no queues (config/ generates one when the stack file has no simfleet:queues)")
        if self.queues.default_name not in self.queues.names():
            raise ValueError(f"Queues: the default queue {self.queues.default_name!r} is not one of {self.queues.names()}")


class Queues(pulumi.ComponentResource):
    names: tuple[str, ...]
    default_name: str

    def __init__(self, name: str, args: QueuesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("simfleet:queues:Queues", name, None, opts)
        # Kueue's CRDs and its validating webhooks come with the Helm release in Addons: the caller passes depends_on
        # Addons, restated on the children (a component's depends_on does not reach them). Deleting the cluster deletes
        # everything inside it; per-object deletes would only hang on a gone API.
        after = opts.depends_on if opts is not None else None
        in_cluster = pulumi.ResourceOptions(parent=self, depends_on=after, deleted_with=args.cluster)

        registered: dict[tuple[str, str], pulumi.Resource] = {}

        def register(body: dict[str, Any], needs: list[pulumi.Resource]) -> None:
            kind, object_name = body["kind"], body["metadata"]["name"]
            extra = pulumi.ResourceOptions(depends_on=needs) if needs else None
            resource = kube.register(
                f"{name}-{kind.lower()}-{object_name}", body, pulumi.ResourceOptions.merge(in_cluster, extra)
            )
            registered[(kind, object_name)] = resource

        objects = kueue_objects(args.queues, naming.RUNS_NAMESPACE)
        of_kind = {kind: [o for o in objects if o["kind"] == kind] for kind in {o["kind"] for o in objects}}
        for body in of_kind.get("ResourceFlavor", []) + of_kind.get("WorkloadPriorityClass", []):
            register(body, [])
        flavors = [r for (kind, _), r in registered.items() if kind == "ResourceFlavor"]
        classes = [r for (kind, _), r in registered.items() if kind == "WorkloadPriorityClass"]
        # A ClusterQueue whose flavors are missing stays inactive; one whose LocalQueue exists admits Jobs. So: flavors,
        # then queues, then the LocalQueues Jobs name, with the priority classes those Jobs use.
        for body in of_kind.get("ClusterQueue", []):
            register(body, flavors)
        for body in of_kind.get("LocalQueue", []):
            body["metadata"]["namespace"] = args.namespace
            register(body, [registered[("ClusterQueue", body["spec"]["clusterQueue"])], *classes])

        # Run operators read the cluster-scoped queue objects (`kubectl describe clusterqueue <team>`); the Workloads and
        # LocalQueues in the runs namespace are in their namespaced Role (components/runs_namespace.py).
        viewer = k8s.rbac.v1.ClusterRole(
            f"{name}-viewer",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=QUEUE_VIEWER, labels=LABELS),
            rules=queue_viewer_rules(),
            opts=in_cluster,
        )
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-viewer",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=QUEUE_VIEWER, labels=LABELS),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=viewer.metadata.name
            ),
            subjects=[
                k8s.rbac.v1.SubjectArgs(kind="Group", name=naming.RUN_OPERATORS_GROUP, api_group="rbac.authorization.k8s.io")
            ],
            opts=in_cluster,
        )

        self.names = args.queues.names()
        self.default_name = args.queues.default_name
        self.register_outputs({"names": list(self.names), "default": self.default_name})


def summary(queues: QueuesConfig) -> dict[str, Any]:
    """The stack output `queues`: each team's nominal GPUs per capacity type, the default, the priority classes."""
    return {
        "default": queues.default_name,
        "namespace": naming.RUNS_NAMESPACE,
        "teams": {
            team.name: {
                naming.KUEUE_FLAVORS[q.capacity]: {"gpus": q.gpus, "borrowingLimit": q.borrowing_gpus} for q in team.quotas
            }
            for team in queues.teams
        },
        "priorityClasses": dict(naming.PRIORITY_FOR_MODE),
    }
