"""The Services component: every `simfleet:services` entry as pulumi-kubernetes objects in the simfleet-services namespace.

Unlike runs, services go through pulumi-kubernetes, not the SimRun provider: a Deployment is updated in place, so a
changed image, argument or resource request rolls the pods (maxSurge 1, maxUnavailable 0) instead of replacing
anything, and the HPA keeps owning the replica count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components import kube
from components.access import prefix_read_policy_json
from components.irsa import IrsaRole, IrsaRoleArgs
from components.runs_namespace import pod_security_labels
from config import ServiceSpec
from workloads.renderers.service import ServiceContext, cluster_host, namespace_objects, render_service

ROLLOUT_TIMEOUTS = pulumi.CustomTimeouts(create="30m", update="30m")


@dataclass(frozen=True)
class ServicesArgs:
    services: Sequence[ServiceSpec]
    context: ServiceContext
    oidc_provider_arn: pulumi.Input[str]
    oidc_provider_url: pulumi.Input[str]
    cluster: pulumi.Resource
    tags: Mapping[str, str] = field(default_factory=dict)
    # What must exist before any service object: the add-ons (the LBC's Service webhook, metrics-server for the HPA).
    after: Sequence[pulumi.Resource] = ()

    def __post_init__(self) -> None:
        if not self.services:
            raise ValueError("Services: no services; __main__ builds this component only when the stack declares some")
        names = [s.name for s in self.services]
        if len(set(names)) != len(names):
            raise ValueError(f"Services: names must be unique, got {names}")


class Services(pulumi.ComponentResource):
    namespace: pulumi.Output[str]
    summary: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: ServicesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("simfleet:services:Services", name, None, opts)
        ctx = args.context
        # Deleting the cluster deletes everything inside it; per-object deletes would only hang on a gone API.
        in_cluster = pulumi.ResourceOptions(parent=self, deleted_with=args.cluster, depends_on=list(args.after))

        namespace, *guards = (
            kube.register(f"{name}-{body['kind'].lower()}-{body['metadata']['name']}", body, in_cluster)
            for body in namespace_objects(ctx, pod_security_labels(ctx.kubernetes_version))
        )
        guard_list = list(guards)
        # Resolves once the namespace exists and denies by default, so no service pod starts in an unguarded namespace.
        guarded = pulumi.Output.all(namespace.urn, *(g.urn for g in guard_list)).apply(lambda _: ctx.namespace)
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition

        entries: dict[str, pulumi.Output[dict[str, Any]]] = {}
        for spec in args.services:
            role_arn: pulumi.Output[str] | None = None
            if spec.model_repository is not None:
                role = IrsaRole(
                    f"{name}-{spec.name}",
                    IrsaRoleArgs(
                        oidc_provider_arn=args.oidc_provider_arn,
                        oidc_provider_url=args.oidc_provider_url,
                        namespace=ctx.namespace,
                        service_account=spec.name,
                        policy_json=partition.apply(prefix_read_policy_json(spec.model_repository, "Models", head_bucket=True)),
                        tags=args.tags,
                    ),
                    opts=pulumi.ResourceOptions(parent=self),
                )
                role_arn = role.role_arn
            objects: dict[str, pulumi.CustomResource] = {}
            for rendered in render_service(spec, ctx, role_arn):
                kind = rendered["kind"]
                body = {**rendered, "metadata": {**rendered["metadata"], "namespace": guarded}}
                extra = pulumi.ResourceOptions()
                if kind == "Deployment":
                    extra = pulumi.ResourceOptions(
                        # The account (and its role annotation) and the ingress rule exist before the first pod.
                        depends_on=[objects["ServiceAccount"], *(o for k, o in objects.items() if k == "NetworkPolicy")],
                        # A GPU node from zero, a multi-GB image and model loading can outlast the provider's 10-minute
                        # wait for a rollout.
                        custom_timeouts=ROLLOUT_TIMEOUTS,
                    )
                elif kind == "Service":
                    # pulumi-kubernetes waits for a Service's endpoints to be ready (and an NLB's address): as long as
                    # the pods take.
                    extra = pulumi.ResourceOptions(custom_timeouts=ROLLOUT_TIMEOUTS)
                elif kind == "HorizontalPodAutoscaler":
                    extra = pulumi.ResourceOptions(depends_on=[objects["Deployment"]])
                objects[kind] = kube.register(
                    f"{name}-{spec.name}-{kind.lower()}", body, pulumi.ResourceOptions.merge(in_cluster, extra)
                )
            entries[spec.name] = _summary(spec, ctx, objects, role_arn)

        self.namespace = guarded
        self.summary = pulumi.Output.all(**entries).apply(lambda resolved: dict(resolved))
        self.register_outputs({"namespace": self.namespace, "summary": self.summary})


def _summary(
    spec: ServiceSpec, ctx: ServiceContext, objects: Mapping[str, pulumi.CustomResource], role_arn: pulumi.Output[str] | None
) -> pulumi.Output[dict[str, Any]]:
    """Per service in the `services` stack output: where clients reach it, and what it may read."""
    host = cluster_host(spec, ctx)
    plain: dict[str, Any] = {
        "namespace": ctx.namespace,
        "endpoints": {p.name: f"{host}:{p.port}" for p in spec.ports},
        "url": f"http://{host}:{spec.port_numbers['http']}",
        "replicas": {"min": spec.replicas.min, "max": spec.replicas.max},
        "modelRepository": spec.model_repository,
    }
    service = objects["Service"]
    load_balancer: pulumi.Output[Any] = pulumi.Output.from_input(None)
    if spec.expose.internal_load_balancer is not None:
        # The NLB's DNS name: pulumi-kubernetes waits for the AWS Load Balancer Controller to publish it.
        load_balancer = pulumi.Output.from_input(getattr(service, "status", None)).apply(_hostname)
    return pulumi.Output.all(role_arn, load_balancer, service.urn).apply(
        lambda v: {**plain, "roleArn": v[0], "loadBalancer": v[1]}
    )


def _hostname(status: Any) -> str | None:
    ingress = getattr(getattr(status, "load_balancer", None), "ingress", None) if status is not None else None
    if not ingress:
        return None
    return getattr(ingress[0], "hostname", None) or getattr(ingress[0], "ip", None)
