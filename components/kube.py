"""Registers a rendered Kubernetes object (a plain manifest dict) as the matching pulumi-kubernetes resource (a typed
class for built-in kinds, a custom resource for the CRD groups in CUSTOM_GROUPS).

Renderers stay pure (dicts in, dicts out: table-tested and schema-validated offline); this is the one place that turns
a manifest into a typed resource. Nested keys stay camelCase: pulumi-kubernetes passes dict inputs through as written,
so what the engine receives is exactly the rendered manifest.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

# (apiVersion, kind) -> resource class. Only the kinds simfleet's renderers produce.
KINDS: dict[tuple[str, str], Callable[..., pulumi.CustomResource]] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("batch/v1", "Job"): k8s.batch.v1.Job,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): k8s.autoscaling.v2.HorizontalPodAutoscaler,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("storage.k8s.io/v1", "StorageClass"): k8s.storage.v1.StorageClass,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): k8s.rbac.v1.ClusterRole,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): k8s.rbac.v1.ClusterRoleBinding,
    ("rbac.authorization.k8s.io/v1", "Role"): k8s.rbac.v1.Role,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
}


# API groups of the custom resources simfleet renders (their CRDs come with the charts that install them).
CUSTOM_GROUPS = ("kueue.x-k8s.io",)


class KubernetesObject(pulumi.CustomResource):
    """A custom resource registered whole, for kinds with top-level fields besides `metadata` and `spec` (Kueue's
    WorkloadPriorityClass has `value` and `description`): pulumi-kubernetes' Python CustomResource takes only `spec`
    (pulumi/pulumi-kubernetes#2363; the Node SDK has `otherFields` for this). It registers what CustomResource does,
    the type `kubernetes:<apiVersion>:<kind>` with the object's fields as inputs, which the provider applies as a whole
    object, and pins the same provider plugin version."""

    def __init__(self, name: str, body: Mapping[str, Any], opts: pulumi.ResourceOptions) -> None:
        version = pulumi.ResourceOptions(version=importlib.metadata.version("pulumi-kubernetes"))
        super().__init__(
            f"kubernetes:{body['apiVersion']}:{body['kind']}", name, dict(body), pulumi.ResourceOptions.merge(opts, version)
        )


def _custom(name: str, body: Mapping[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    if set(body) <= {"apiVersion", "kind", "metadata", "spec"}:
        return k8s.apiextensions.CustomResource(
            name, api_version=str(body["apiVersion"]), kind=str(body["kind"]), metadata=body.get("metadata"),
            spec=body.get("spec"), opts=opts,
        )  # fmt: skip
    return KubernetesObject(name, body, opts)


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def register(name: str, body: Mapping[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """The pulumi-kubernetes resource for `body`, named `name`; top-level fields become the class's arguments."""
    key = (str(body.get("apiVersion")), str(body.get("kind")))
    if key[0].split("/")[0] in CUSTOM_GROUPS:
        return _custom(name, body, opts)
    cls = KINDS.get(key)
    if cls is None:
        raise ValueError(f"{name}: no pulumi-kubernetes class registered for {key[0]} {key[1]}")
    fields = {_snake(k): v for k, v in body.items() if k not in ("apiVersion", "kind")}
    return cls(name, opts=opts, **fields)
