"""Queues: Kueue's ResourceFlavors, WorkloadPriorityClasses, and each team's ClusterQueue and LocalQueue, rendered by
workloads/renderers/kueue.py and registered as custom resources once Kueue (its CRDs and webhooks) is installed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

import naming
from components import kube
from config import QueuesConfig
from workloads.renderers.kueue import kueue_objects


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
