"""What Kueue (v0.19.2) does in the fake API server (tests/fake_kube.py): its Workloads for queued Jobs, admission,
deactivation, and the visibility API's pending workloads of a LocalQueue. Like the rest of the fake there is no
controller loop: tests call these where Kueue's controllers would act.

Read in kubernetes-sigs/kueue at tag v0.19.2:
- a Job's Workload (pkg/controller/jobframework/reconciler.go, workload_names.go): named `job-<job>-<5 hex>`, owned
  by the Job (controller reference), labelled `kueue.x-k8s.io/job-uid: <job uid>`, `spec.queueName` from the Job's
  queue label, `spec.active` defaulted to true (apis/kueue/v1beta2/workload_types.go), one pod set `main`;
- a pending Workload carries `QuotaReserved=False` with the scheduler's message (why it waits, which flavor);
  admission sets `QuotaReserved` and `Admitted` to True and `status.admission` (cluster queue, flavor per resource),
  and the Job is unsuspended;
- `spec.active: false` (pkg/controller/core/workload_controller.go): Kueue evicts the Workload (`Evicted=True`, reason
  `Deactivated`, message "The workload is deactivated"; `Requeued=False`, reason `Deactivated`), releases its quota
  and suspends its Job, whose controller then deletes the pods; the Job stays suspended and never finishes;
- the visibility API (pkg/visibility/storage/pending_workloads_lq.go, utils.go): GET .../localqueues/<lq>/
  pendingworkloads answers a PendingWorkloadsSummary of the ClusterQueue's pending workloads that are this LocalQueue's,
  in the ClusterQueue's order (priority, then creation time), each with its positions in both queues (from 0), its
  priority, local queue name and owner references; `offset` and `limit` (default 1000) page it; an unknown LocalQueue
  is 404 NotFound.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fake_kube import now, status_body

if TYPE_CHECKING:
    from fake_kube import FakeKube

API_VERSION = "kueue.x-k8s.io/v1beta2"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
DEFAULT_LIMIT = 1000


def _condition(kind: str, status: bool, reason: str, message: str) -> dict[str, Any]:
    stamp = now()
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": stamp,
    }


def _set_conditions(workload: dict[str, Any], *conditions: dict[str, Any]) -> None:
    current = {c["type"]: c for c in (workload.setdefault("status", {}).get("conditions") or [])}
    for condition in conditions:
        current[condition["type"]] = condition
    workload["status"]["conditions"] = list(current.values())


def add_local_queue(kube: FakeKube, namespace: str, name: str, cluster_queue: str) -> None:
    kube.put_object(
        "localqueues",
        {
            "apiVersion": API_VERSION,
            "kind": "LocalQueue",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterQueue": cluster_queue},
        },
    )


def workload_of(kube: FakeKube, namespace: str, job_name: str) -> dict[str, Any] | None:
    job = kube.get("jobs", namespace, job_name)
    if job is None:
        return None
    uid = job["metadata"]["uid"]
    with kube._lock:
        for (plural, ns, _), obj in kube.objects.items():
            if plural == "workloads" and ns == namespace and (obj["metadata"].get("labels") or {}).get(JOB_UID_LABEL) == uid:
                return obj
    return None


def submit(kube: FakeKube, namespace: str, job_name: str, priority: int = 0, message: str | None = None) -> dict[str, Any]:
    """Kueue's job reconciler seeing a suspended Job with a queue label: it creates the Job's Workload, pending."""
    job = kube.get("jobs", namespace, job_name)
    assert job is not None, f"no Job {job_name}"
    uid = job["metadata"]["uid"]
    queue = (job["metadata"].get("labels") or {}).get(QUEUE_LABEL)
    assert queue, f"Job {job_name} has no {QUEUE_LABEL} label: Kueue ignores it"
    workload = {
        "apiVersion": API_VERSION,
        "kind": "Workload",
        "metadata": {
            "name": f"job-{job_name}-{hashlib.sha256(uid.encode()).hexdigest()[:5]}",
            "namespace": namespace,
            "labels": {JOB_UID_LABEL: uid},
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": job_name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "queueName": queue,
            "priority": priority,
            "active": True,
            "podSets": [{"name": "main", "count": job["spec"].get("parallelism", 1), "template": job["spec"]["template"]}],
        },
        "status": {},
    }
    _set_conditions(workload, _condition("QuotaReserved", False, "Pending", message or "Pending evaluation"))
    return kube.put_object("workloads", workload)


def set_pending(kube: FakeKube, namespace: str, job_name: str, message: str, reason: str = "Pending") -> None:
    """The scheduler's verdict on a pending Workload: why it cannot reserve quota yet."""
    with kube._lock:
        workload = workload_of(kube, namespace, job_name)
        assert workload is not None
        _set_conditions(workload, _condition("QuotaReserved", False, reason, message))


def admit(kube: FakeKube, namespace: str, job_name: str, cluster_queue: str, flavor: str) -> None:
    """Kueue admitting the Workload in a flavor: quota reserved, admitted, and the Job unsuspended (then started)."""
    with kube._lock:
        workload = workload_of(kube, namespace, job_name)
        assert workload is not None
        count = workload["spec"]["podSets"][0]["count"]
        workload["status"]["admission"] = {
            "clusterQueue": cluster_queue,
            "podSetAssignments": [
                {"name": "main", "count": count, "flavors": {"cpu": flavor, "memory": flavor, "nvidia.com/gpu": flavor}}
            ],
        }
        message = f"Quota reserved in ClusterQueue {cluster_queue}"
        _set_conditions(
            workload,
            _condition("QuotaReserved", True, "QuotaReserved", message),
            _condition("Admitted", True, "Admitted", "The workload is admitted"),
        )
    kube.start_job(namespace, job_name)  # unsuspended: the Job controller starts it


def reconcile(kube: FakeKube) -> None:
    """Kueue's reaction to `spec.active: false`: evict, release the quota, suspend the Job; the Job controller then
    deletes its pods (each gets SIGTERM and its grace period on a real node)."""
    with kube._lock:
        workloads = [o for (plural, _, _), o in kube.objects.items() if plural == "workloads"]
        for workload in workloads:
            if workload["spec"].get("active", True) or any(
                c["type"] == "Evicted" and c["status"] == "True" for c in workload["status"].get("conditions") or []
            ):
                continue
            workload["status"].pop("admission", None)
            _set_conditions(
                workload,
                _condition("Evicted", True, "Deactivated", "The workload is deactivated"),
                _condition("Requeued", False, "Deactivated", "The workload is deactivated"),
                _condition("QuotaReserved", False, "Pending", "The workload is deactivated"),
                _condition("Admitted", False, "NoReservation", "The workload has no reservation"),
            )
            owner = workload["metadata"]["ownerReferences"][0]
            namespace = workload["metadata"]["namespace"]
            job = kube.objects.get(("jobs", namespace, owner["name"]))
            if job is None:
                continue
            job["spec"]["suspend"] = True
            job_status = job.setdefault("status", {})
            job_status.update(active=0, ready=0)
            job_status["conditions"] = [
                *(c for c in job_status.get("conditions") or [] if c["type"] != "Suspended"),
                {
                    "type": "Suspended",
                    "status": "True",
                    "reason": "JobSuspended",
                    "message": "Job suspended",
                    "lastTransitionTime": now(),
                },
            ]
            for key, pod in list(kube.objects.items()):
                if key[0] == "pods" and any(
                    ref.get("uid") == job["metadata"]["uid"] for ref in pod["metadata"].get("ownerReferences") or []
                ):
                    del kube.objects[key]


@contextlib.contextmanager
def controller(kube: FakeKube, every: float = 0.05) -> Iterator[None]:
    """Kueue's controller running beside a test: it reacts to a deactivation within `every` seconds."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            reconcile(kube)

    thread = threading.Thread(target=loop, name="fake-kueue", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _pending(workload: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in workload["status"].get("conditions") or []}
    return (
        workload["spec"].get("active", True)
        and conditions.get("QuotaReserved") != "True"
        and conditions.get("Finished") != "True"
    )


def pending_workloads(
    kube: FakeKube, namespace: str, name: str, query: dict[str, str]
) -> tuple[int, dict[str, Any], dict[str, str]]:
    queue = kube.objects.get(("localqueues", namespace, name))
    if queue is None:
        details = {"name": name, "group": "visibility.kueue.x-k8s.io", "kind": "localqueue"}
        return 404, status_body(404, "NotFound", f'localqueue.visibility.kueue.x-k8s.io "{name}" not found', details), {}
    cluster_queue = queue["spec"]["clusterQueue"]
    same_cq = {
        (ns, o["metadata"]["name"])
        for (plural, ns, _), o in kube.objects.items()
        if plural == "localqueues" and o["spec"]["clusterQueue"] == cluster_queue
    }
    ordered = sorted(
        (
            o
            for (plural, ns, _), o in kube.objects.items()
            if plural == "workloads" and (ns, o["spec"].get("queueName")) in same_cq and _pending(o)
        ),
        key=lambda o: (-int(o["spec"].get("priority") or 0), o["metadata"]["creationTimestamp"], o["metadata"]["name"]),
    )
    limit = max(0, int(query.get("limit") or DEFAULT_LIMIT))
    offset = max(0, int(query.get("offset") or 0))
    items: list[dict[str, Any]] = []
    skipped = 0
    for position, workload in enumerate(ordered):
        if len(items) >= limit:
            break
        meta = workload["metadata"]
        if meta["namespace"] != namespace or workload["spec"].get("queueName") != name:
            continue
        if skipped < offset:
            skipped += 1
            continue
        items.append(
            {
                "metadata": {
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "creationTimestamp": meta["creationTimestamp"],
                    "ownerReferences": [
                        {k: ref[k] for k in ("apiVersion", "kind", "name", "uid")} for ref in meta.get("ownerReferences") or []
                    ],
                },
                "priority": int(workload["spec"].get("priority") or 0),
                "localQueueName": name,
                "positionInClusterQueue": position,
                "positionInLocalQueue": len(items) + offset,
            }
        )
    summary = {
        "kind": "PendingWorkloadsSummary",
        "apiVersion": "visibility.kueue.x-k8s.io/v1beta2",
        "metadata": {},
        "items": items,
    }
    return 200, summary, {}
