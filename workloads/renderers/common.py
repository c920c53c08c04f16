"""Pieces every rendered pod shares: the restricted security context, containers, env, scratch volumes, labels."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import naming

# Every container runs as this uid/gid: runAsNonRoot alone would refuse root-default images (the AWS CLI image)
# instead of running them unprivileged. Run images must work as this user.
RUN_UID = 1000
TMP_DIR = "/tmp"
# Where a workload's runtime ConfigMap (simfleet's scripts) is mounted, and where those scripts live in this repository.
RUNTIME_DIR = "/opt/simfleet"
SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "scripts"
# Only the S3 containers get IRSA credentials; the webhook skips these (amazon-eks-pod-identity-webhook
# pkg/handler: pod annotation eks.amazonaws.com/skip-containers, applies to initContainers and containers).
IRSA_SKIP_ANNOTATION = "eks.amazonaws.com/skip-containers"


def env(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}


def pod_security() -> dict[str, Any]:
    """The pod-level part of the restricted Pod Security Standard (the namespace enforces it)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_UID,
        "runAsGroup": RUN_UID,
        "fsGroup": RUN_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security(read_only_root: bool) -> dict[str, Any]:
    security: dict[str, Any] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True}
    if read_only_root:
        security["readOnlyRootFilesystem"] = True
    return security


def container(
    name: str,
    image: str,
    env_vars: list[dict[str, Any]],
    mounts: dict[str, str],
    resources: dict[str, Any],
    *,
    read_only: tuple[str, ...] = (),
    read_only_root: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """A container; `read_only_root` is for simfleet's own containers, which then get their own /tmp (HOME)."""
    volumes = dict(mounts)
    env_list = [dict(e) for e in env_vars]  # fresh dicts: shared ones would alias (YAML anchors in the plan)
    if read_only_root:
        volumes[tmp_volume(name)] = TMP_DIR
        # Tools want a writable home (the AWS CLI's cache, kubectl's discovery cache); the image's is read-only.
        env_list.append(env("HOME", TMP_DIR))
    body = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",  # tags are pinned (config rejects "latest")
        "env": env_list,
        "resources": resources,
        "securityContext": container_security(read_only_root),
        "volumeMounts": [
            {"name": volume, "mountPath": path, **({"readOnly": True} if volume in read_only else {})}
            for volume, path in volumes.items()
        ],
    }
    body.update(extra)
    return body


def tmp_volume(container_name: str) -> str:
    return f"tmp-{container_name}"


def scratch_volumes(containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One small emptyDir per read-only-root container, for /tmp."""
    names = [v["name"] for c in containers for v in c["volumeMounts"] if v["name"].startswith("tmp-")]
    return [{"name": name, "emptyDir": {"sizeLimit": "256Mi"}} for name in names]


def gpu_toleration() -> dict[str, str]:
    return {"key": naming.GPU_TAINT_KEY, "operator": "Equal", "value": naming.GPU_TAINT_VALUE, "effect": naming.GPU_TAINT_EFFECT}


def small_resources(cpu: str = "50m", memory: str = "128Mi") -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}


def queue_labels(queue: str | None, priority_class: str) -> dict[str, str]:
    """Kueue's labels on a Job: its LocalQueue (None: not Kueue's yet, a gate adds it later) and its priority class.

    The priority class is set at creation and never changed: Kueue's webhook limits changing it on an existing Job
    (kueue pkg/controller/jobframework/validation.go, validateUpdateForWorkloadPriorityClassName), while the queue
    name may be set or changed as long as the Job is suspended (validateUpdateForQueueName).
    """
    labels = {naming.KUEUE_PRIORITY_LABEL: priority_class}
    if queue is not None:
        labels[naming.KUEUE_QUEUE_LABEL] = queue
    return labels


RUNTIME_PREFIX = "simfleet-runtime-"
RUNTIME_HASH_LENGTH = 12  # as the glue ConfigMaps' names (workloads/identity.py HASH_LENGTH)


@dataclass(frozen=True)
class Runtime:
    """The files of a runtime ConfigMap (key -> text) and their content hash, which names it."""

    data: dict[str, str]
    sha256: str

    @classmethod
    def of(cls, data: dict[str, str]) -> Runtime:
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return cls(data, hashlib.sha256(canonical).hexdigest())

    @property
    def name(self) -> str:
        return RUNTIME_PREFIX + self.sha256[:RUNTIME_HASH_LENGTH]


def shared_runtime_configmap(namespace: str, runtime: Runtime, component: str) -> dict[str, Any]:
    """simfleet's runtime (scripts, glue runtime package, contract) as one ConfigMap per content, shared by every run
    or job rendered from the same simfleet: `simfleet-runtime-<sha256[:12]>` of its data.

    Immutable like the glue ConfigMaps. The provider creates it with the first Job that mounts it and adds each
    further Job to its ownerReferences, so the garbage collector keeps it while any of them exists and removes it
    when the last one goes (workloads/kube.py KubeApi.share). A new simfleet renders new content under a new name;
    Jobs made before keep theirs. It carries no run's labels or spec hash: it is no run's own.
    """
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": runtime.name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "simfleet", "app.kubernetes.io/component": component},
            "annotations": {naming.RUNTIME_SHA_ANNOTATION: runtime.sha256},
        },
        # Content-addressed, so it never changes; immutable also spares the kubelets a watch per mount.
        "immutable": True,
        "data": runtime.data,  # shared, never mutated: the same texts for every run
    }


def is_shared(obj: dict[str, Any]) -> bool:
    """Whether a rendered object is shared between workloads (a runtime ConfigMap) rather than one workload's own."""
    return naming.RUNTIME_SHA_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {})


def user_labels(labels: dict[str, str]) -> dict[str, str]:
    """A workload's `labels` as Kubernetes labels: simfleet.io/<key>, never one of simfleet's own keys."""
    return {f"simfleet.io/{key}": value for key, value in sorted(labels.items()) if key not in naming.RESERVED_RUN_LABEL_KEYS}


def workload_labels(app: str, name: str, component: str, user: dict[str, str], own: dict[str, str]) -> dict[str, str]:
    """The labels of a run's or job's objects: the user's (prefixed), the standard app.kubernetes.io set, then `own`."""
    labels = user_labels(user)
    labels.update(
        {
            "app.kubernetes.io/name": app,
            "app.kubernetes.io/instance": name,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": "simfleet",
            "app.kubernetes.io/managed-by": "pulumi",
            **own,
        }
    )
    return labels


def workload_metadata(name: str, namespace: str, labels: dict[str, str], spec_hash: str) -> dict[str, Any]:
    """Metadata of an object the provider applies for a run or job: its labels and the hash it was rendered for."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "annotations": {naming.SPEC_HASH_ANNOTATION: spec_hash},
    }
