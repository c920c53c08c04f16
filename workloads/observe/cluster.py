"""What the Kubernetes API says about a stack's runs now, for the `simfleet` command: Jobs, pods, Kueue's Workloads and
queue positions (its visibility API), events, nodes and pod logs; and the two writes a cancel makes (deactivate a
Workload, delete a pod). Errors name the command to run again, never `pulumi up`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import naming
from workloads.kube import INSTANCE_LABEL, KubeApi, RetryPolicy, SimRunError

KUEUE_API = "kueue.x-k8s.io/v1beta2"
VISIBILITY_API = "visibility.kueue.x-k8s.io/v1beta2"
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"  # on a Workload: the uid of the Job it admits (Kueue's jobframework)
PART_OF = "app.kubernetes.io/part-of=simfleet"
PAGE = 500  # items per list call; the API server pages with `continue`
# Seconds to wait to connect, and for an answer: a private endpoint from a laptop fails fast, so the command can fall
# back to S3 and CloudWatch without hanging.
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 30.0


class ClusterError(SimRunError):
    """The API answered no, or not at all; `reachable` is False when it could not be reached (the fallback case)."""

    def __init__(self, message: str, reachable: bool = True, status: int | None = None) -> None:
        super().__init__(message)
        self.reachable = reachable
        self.status = status


class ClusterReader(KubeApi):
    """The runs namespace as the caller's own identity sees it (its EKS access entry and RBAC)."""

    retry = RetryPolicy(attempts=2, first_delay=0.3, max_delay=1.0)

    def __init__(self, namespace: str, conn: Any) -> None:
        super().__init__("", namespace, conn)
        self.timeout = (CONNECT_TIMEOUT, READ_TIMEOUT)

    # -- errors phrased for the command --------------------------------------------------------------------------
    def tls_failure(self, what: str, err: BaseException) -> SimRunError:
        return ClusterError(
            f"{what}: TLS verification of {self.conn.describe()} failed ({getattr(err, 'reason', None) or err})", False
        )

    def unreachable(self, what: str, attempts: int, problem: str) -> SimRunError:
        return ClusterError(f"{what}: {self.conn.describe()} did not answer ({problem})", reachable=False)

    def fail(self, what: str, status: int, payload: dict[str, Any]) -> SimRunError:
        message = payload.get("message") or payload.get("reason") or f"HTTP {status}"
        advice = {
            401: "the API server did not accept your AWS identity: the researcher role needs an EKS access entry "
            "(docs/researchers/access.md)",
            403: f"your identity may not do this in namespace {self.namespace}: assume the stack's researcher role "
            "(docs/researchers/access.md)",
        }.get(status, "")
        return ClusterError(f"{what} failed with HTTP {status}: {message}" + (f"; {advice}" if advice else ""), status=status)

    # -- reading -----------------------------------------------------------------------------------------------
    def list_all(self, path: str, what: str, query: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Every item of a list, page by page (`limit` and `continue`), as the API server serves large lists."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            page = {**(query or {}), "limit": str(PAGE), **({"continue": token} if token else {})}
            status, body = self.request("GET", path, what, query=page)
            if status != 200:
                raise self.fail(what, status, body)
            items += body.get("items") or []
            token = (body.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    def jobs(self) -> dict[str, dict[str, Any]]:
        """simfleet's Jobs in the runs namespace by name (runs, batch jobs, gates: the caller picks)."""
        path = f"/apis/batch/v1/namespaces/{self.namespace}/jobs"
        return {job["metadata"]["name"]: job for job in self.list_all(path, "listing the runs' Jobs", {"labelSelector": PART_OF})}

    def job(self, name: str) -> dict[str, Any] | None:
        return self.get(f"/apis/batch/v1/namespaces/{self.namespace}/jobs/{name}", f"Job {name}")

    def pods(self, instance: str | None = None) -> list[dict[str, Any]]:
        """simfleet's pods in the runs namespace, or one run's or job's (its app.kubernetes.io/instance label)."""
        selector = f"{INSTANCE_LABEL}={instance}" if instance else PART_OF
        path = f"/api/v1/namespaces/{self.namespace}/pods"
        return self.list_all(path, f"listing the pods of {instance or 'the runs'}", {"labelSelector": selector})

    def workloads(self) -> dict[str, dict[str, Any]]:
        """Kueue's Workloads of the namespace by the uid of the Job each admits."""
        path = f"/apis/{KUEUE_API}/namespaces/{self.namespace}/workloads"
        out = {}
        for workload in self.list_all(path, "listing Kueue's Workloads"):
            uid = ((workload.get("metadata") or {}).get("labels") or {}).get(JOB_UID_LABEL)
            if uid:
                out[uid] = workload
        return out

    def pending(self, queue: str) -> dict[str, dict[str, Any]]:
        """Kueue's pending workloads of a LocalQueue, with their positions, by the name of the Job each belongs to.
        Kueue orders them (priority, then arrival); simfleet never recomputes the order. {} when the queue is gone."""
        path = f"/apis/{VISIBILITY_API}/namespaces/{self.namespace}/localqueues/{queue}/pendingworkloads"
        out: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            what = f"reading the pending workloads of queue {queue}"
            status, body = self.request("GET", path, what, query={"offset": str(offset), "limit": "1000"})
            if status == 404:
                return out
            if status != 200:
                raise self.fail(what, status, body)
            items = body.get("items") or []
            for item in items:
                owner = next(
                    (ref for ref in (item.get("metadata") or {}).get("ownerReferences") or [] if ref.get("kind") == "Job"), None
                )
                if owner is not None:
                    out[str(owner["name"])] = item
            if len(items) < 1000:
                return out
            offset += len(items)

    def events(self, names: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The events about each named object (a Job, its pods), oldest first."""
        out: dict[str, list[dict[str, Any]]] = {}
        for name in names:
            path = f"/api/v1/namespaces/{self.namespace}/events"
            found = self.list_all(path, f"reading the events of {name}", {"fieldSelector": f"involvedObject.name={name}"})
            out[name] = sorted(found, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        return out

    def node(self, name: str) -> dict[str, Any] | None:
        try:
            return self.get(f"/api/v1/nodes/{name}", f"node {name}")
        except ClusterError as err:
            if err.status == 403:
                return None  # the node's type and capacity are a nicety; a role without node reads still sees its run
            raise

    def service(self, name: str) -> dict[str, Any] | None:
        return self.get(f"/api/v1/namespaces/{self.namespace}/services/{name}", f"Service {name}")

    def pod_log(
        self, pod: str, container: str, since_seconds: int | None = None, follow: bool = False
    ) -> Iterator[tuple[str, str]]:
        """(RFC 3339 time, line) as the kubelet has them, through the API server; with `follow`, until the container
        ends. A container that has not started yet has no log: nothing is yielded."""
        from kubernetes.client import CoreV1Api
        from kubernetes.client.exceptions import ApiException

        options: dict[str, Any] = {"container": container, "timestamps": True, "_preload_content": False}
        if since_seconds is not None:
            options["since_seconds"] = since_seconds
        if follow:
            options["follow"] = True
        else:
            options["_request_timeout"] = self.timeout
        try:
            response: Any = CoreV1Api(self.client).read_namespaced_pod_log(pod, self.namespace, **options)
        except ApiException as err:
            if err.status in (400, 404):
                return  # not started yet (ContainerCreating, PodInitializing), or gone since it was listed
            raise self.fail(f"reading the log of {pod}/{container}", int(err.status or 0), _body(err)) from None
        pending = b""
        for chunk in response.stream(amt=65536, decode_content=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            yield from (_stamped(line) for line in lines)
        if pending:
            yield _stamped(pending)

    # -- the writes of a cancel ----------------------------------------------------------------------------------
    def deactivate(self, workload: dict[str, Any]) -> None:
        """spec.active: false on a Workload: Kueue evicts it, releases its quota and suspends its Job for good."""
        name = workload["metadata"]["name"]
        path = f"/apis/{KUEUE_API}/namespaces/{self.namespace}/workloads/{name}"
        # The uid test makes the patch apply to this very Workload, not a namesake made since it was read.
        patch = [
            {"op": "test", "path": "/metadata/uid", "value": workload["metadata"]["uid"]},
            {"op": "add", "path": "/spec/active", "value": False},
        ]
        status, body = self.request(
            "PATCH", path, f"deactivating Workload {name}", body=patch, content_type="application/json-patch+json"
        )
        if status not in (200, 201):
            raise self.fail(f"deactivating Workload {name}", status, body)

    def delete_pod(self, pod: dict[str, Any]) -> bool:
        """Delete one pod (its grace period: SIGTERM, then its uploader ships what exists); False if it was gone."""
        return self.delete("v1", "Pod", pod["metadata"]["name"], pod["metadata"].get("uid"))


def _body(err: Any) -> dict[str, Any]:
    try:
        body = json.loads(err.body or "{}")
    except (TypeError, ValueError):
        body = {"message": str(err.body)[:200]}
    return body if isinstance(body, dict) else {}


def _stamped(raw: bytes) -> tuple[str, str]:
    text = raw.decode(errors="replace")
    stamp, _, line = text.partition(" ")
    return (stamp, line) if stamp[:2].isdigit() and stamp.endswith("Z") else ("", text)


def seed_of_pod(pod: dict[str, Any], job: dict[str, Any] | None, units: tuple[int, ...]) -> int | None:
    """The seed (a job's shard) a pod runs: its completion index into the Job's SIMFLEET_SEEDS (the seeds this Job runs,
    which after a lost state are only those left), or for a job the shard is the index itself."""
    meta = pod.get("metadata") or {}
    index = (meta.get("annotations") or {}).get("batch.kubernetes.io/job-completion-index")
    if index is None:
        return units[0] if len(units) == 1 else None
    seeds = job_seeds(job) if job is not None else None
    position = int(index)
    if seeds is not None:
        return seeds[position] if position < len(seeds) else None
    return position if naming.JOB_LABEL in (meta.get("labels") or {}) else (units[position] if position < len(units) else None)


def job_seeds(job: dict[str, Any]) -> list[int] | None:
    spec = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        for env in container.get("env") or []:
            if env.get("name") == "SIMFLEET_SEEDS":
                try:
                    return [int(seed) for seed in json.loads(env.get("value") or "[]")]
                except (TypeError, ValueError):
                    return None
    return None
