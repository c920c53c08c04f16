"""Every declared run and job of a stack in one view (`simfleet runs`): a few list calls to the API (Jobs, pods,
Workloads, nodes, each queue's pending workloads) and, only for what the cluster no longer shows, the records in S3,
read concurrently and kept in a local cache once final.

What is read where, so the view stays fast at thousands of runs:
- a Job still in the cluster: its status, its Workload (Kueue's admission, message, flavor), its pods (running seeds,
  recoveries, GPU-hours); its records only when it ended Failed, or when its Job covers fewer seeds than the run (the
  others ended before a lost state);
- no Job (its TTL removed it): each seed's index.json; the cancel record only when some seed did not succeed; attempt
  markers for a seed without index.json. A run whose seeds all recorded an ending is final: its records are cached.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import naming
from workloads import status
from workloads.kube import spec_hash_of
from workloads.observe import records, where
from workloads.observe.cluster import ClusterError, ClusterReader
from workloads.observe.fleet import Declared, Fleet
from workloads.observe.usage import LivePod, parse_time, usage

S3_THREADS = 32
# What the command shows: the provider's statuses (workloads/status.py), told apart further for a person.
DISPLAY_STATUSES = (
    "Waiting",
    "Queued",
    "Admitted",
    "Running",
    "Succeeded",
    "Failed",
    "Interrupted",
    "Incomplete",
    "Blocked",
    "Cancelled",
    "Missing",
)
CLI_ADVICE = ""  # the command words its own advice (cli/errors.py)


@dataclass
class Row:
    name: str
    kind: str
    status: str
    detail: str
    done: int
    total: int
    recoveries: int | None
    queue: str
    position: int | None  # Kueue's position in the LocalQueue, from 1
    started: str | None
    elapsed_seconds: int | None
    gpu_hours: float
    cost_usd: float
    estimated: bool
    user: str | None
    project: str | None
    spec_hash: str
    live_hash: str | None = None  # the cluster's Job has another spec hash than this checkout computes
    source: str = "cluster"  # cluster | records

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Snapshot:
    """What the cluster said, once for the whole view; `reachable` False: nothing (the records alone are shown)."""

    reachable: bool
    problem: str = ""
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    workloads: dict[str, dict[str, Any]] = field(default_factory=dict)  # by Job uid
    pods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by run or job name
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # queue -> Job name -> item


def take_snapshot(reader: ClusterReader, queues: set[str]) -> Snapshot:
    """The few list calls, made at once: each waits on the API server while the others' answers are parsed (a
    ClusterError when the cluster cannot be reached: the caller falls back to the records)."""
    ordered = sorted(queues)
    with ThreadPoolExecutor(4 + len(ordered)) as pool:
        jobs, workloads = pool.submit(reader.jobs), pool.submit(reader.workloads)
        pods, nodes = pool.submit(reader.pods), pool.submit(_nodes, reader)
        pending = [pool.submit(reader.pending, queue) for queue in ordered]
        shot = Snapshot(True, jobs=jobs.result(), workloads=workloads.result())
        for pod in pods.result():
            name = ((pod.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/instance")
            if name:
                shot.pods.setdefault(name, []).append(pod)
        shot.nodes = nodes.result()
        shot.pending = {queue: found.result() for queue, found in zip(ordered, pending, strict=True)}
    return shot


def _nodes(reader: ClusterReader) -> dict[str, dict[str, Any]]:
    try:
        return {n["metadata"]["name"]: n for n in reader.list_all("/api/v1/nodes", "listing nodes")}
    except ClusterError as err:
        if err.status == 403:
            return {}  # prices fall back to the stack's dearest GPU type
        raise


# -- records ------------------------------------------------------------------------------------------------------


class RecordCache:
    """Final records (every seed ended, no Job left) by run and spec hash: they never change again."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def _path(self, declared: Declared) -> Path | None:
        return self.directory / f"{declared.name}-{declared.spec_hash}.json" if self.directory else None

    def get(self, declared: Declared) -> list[dict[str, Any] | None] | None:
        path = self._path(declared)
        if path is None or not path.is_file():
            return None
        try:
            documents = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return documents if isinstance(documents, list) and len(documents) == len(declared.units) else None

    def put(self, declared: Declared, documents: list[dict[str, Any] | None]) -> None:
        path = self._path(declared)
        if path is None or any(d is None for d in documents):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(documents))
        temporary.replace(path)


def read_records(declared: Declared, attempts: bool = True) -> list[dict[str, Any] | None]:
    """Each seed's record as the provider reads it (index.json, else attempt markers), with the cancel overlay; the
    cancel record is read only when some seed did not succeed (a cancel never changes a Succeeded seed)."""
    at = declared.where
    documents: list[dict[str, Any] | None] = []
    for key in at.index_keys:
        document = records.read_json(at.region, at.artifacts_bucket, key, CLI_ADVICE)
        if document is None and attempts:
            document = records.attempts_record(at.run, at.region, at.artifacts_bucket, key, CLI_ADVICE)
        documents.append(document)
    if all(d is not None and d.get("status") == "Succeeded" for d in documents):
        return documents
    cancel = records.read_json(at.region, at.artifacts_bucket, at.cancel_key, CLI_ADVICE)
    return status.with_cancel(documents, at.units, cancel)


# -- the view -----------------------------------------------------------------------------------------------------


def display_status(documents: list[dict[str, Any] | None], run_state: str) -> str:
    """The provider's run status (workloads/status.py), told apart further for a person: a run that failed only by
    interruptions (spot, deadline) reads Interrupted, one whose files may be cut short Incomplete; a run with no
    Job and no record at all is Waiting (not created yet); Pending (a Job whose pods do not run yet) is Admitted."""
    if run_state == "Failed":
        statuses = {d.get("status") for d in documents if d}
        for precise in ("Interrupted", "Incomplete"):
            if statuses and statuses <= {"Succeeded", "Cancelled", precise} and precise in statuses:
                return precise
    if run_state == "Missing" and all(d is None for d in documents):
        return "Waiting"
    return {"Pending": "Admitted"}.get(run_state, run_state)


def completion_indexes(text: str | None) -> set[int]:
    """Completion indexes as the Job controller writes them ("1,3-5")."""
    out: set[int] = set()
    for part in filter(None, (text or "").split(",")):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


def _condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def deactivated(workload: dict[str, Any] | None) -> bool:
    """A Workload `simfleet cancel` deactivated (spec.active: false): Kueue never admits it again."""
    return workload is not None and (workload.get("spec") or {}).get("active") is False


def flavor_of(workload: dict[str, Any] | None) -> str | None:
    assignments = (((workload or {}).get("status") or {}).get("admission") or {}).get("podSetAssignments") or []
    flavors = (assignments[0].get("flavors") or {}) if assignments else {}
    return flavors.get(naming.GPU_RESOURCE) or next(iter(flavors.values()), None)


def queue_message(workload: dict[str, Any] | None) -> str:
    """Why Kueue has not admitted it: its QuotaReserved condition's message (or its Evicted one)."""
    for kind in ("Evicted", "QuotaReserved"):
        condition = _condition(workload, kind)
        if condition and (kind != "Evicted" or condition.get("status") == "True"):
            return str(condition.get("message") or condition.get("reason") or "")
    return "Kueue has not looked at it yet" if workload is None else ""


def live_pods(pods: list[dict[str, Any]], nodes: dict[str, dict[str, Any]]) -> list[LivePod]:
    out = []
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase")
        if phase not in ("Running", "Succeeded", "Failed"):
            continue
        labels = ((nodes.get((pod.get("spec") or {}).get("nodeName") or "") or {}).get("metadata") or {}).get("labels") or {}
        out.append(
            LivePod(
                (pod.get("status") or {}).get("startTime"),
                labels.get("node.kubernetes.io/instance-type"),
                labels.get(naming.CAPACITY_TYPE_LABEL),
                _finished(pod) if phase != "Running" else None,
            )
        )
    return out


def _finished(pod: dict[str, Any]) -> str | None:
    ends = [
        ((c.get("state") or {}).get("terminated") or {}).get("finishedAt")
        for c in (pod.get("status") or {}).get("containerStatuses") or []
    ]
    return max((e for e in ends if e), default=None)


def rows(fleet: Fleet, shot: Snapshot, cache: RecordCache, names: list[str] | None = None) -> list[Row]:
    chosen = [at_live_hash(fleet.declared[name], shot) for name in (names or sorted(fleet.declared))]
    plans = {d.name: _plan(d, shot) for d in chosen}
    needed = [d for d in chosen if plans[d.name][1]]
    # Final records from the cache here; only the rest cost an S3 read, so only they go to the threads.
    found = {d.name: cached for d in needed if plans[d.name][0] is None and (cached := cache.get(d)) is not None}
    reading = [d for d in needed if d.name not in found]
    with ThreadPoolExecutor(S3_THREADS) as pool:
        read = pool.map(lambda d: _records(d, cache, shot, plans[d.name][0]), reading)
        found |= dict(zip((d.name for d in reading), read, strict=True))
    return [_row(fleet, d, shot, plans[d.name][0], found.get(d.name)) for d in chosen]


def at_live_hash(declared: Declared, shot: Snapshot) -> Declared:
    """The run as the cluster runs it: when its Job carries another spec hash than this checkout computes (the stack
    file or a glue file changed since the last `pulumi up`, either way), its records are read at the Job's hash."""
    job = shot.jobs.get(declared.name)
    live = spec_hash_of(job) if job is not None else None
    if live is None or live == declared.spec_hash:
        return declared
    return dataclasses.replace(declared, where=where({**declared.inputs, "specHash": live}), checked_hash=declared.spec_hash)


def _plan(declared: Declared, shot: Snapshot) -> tuple[dict[str, Any] | None, bool]:
    """(the run's Job, whether its records must be read)."""
    job = shot.jobs.get(declared.name)
    if job is None:
        return None, True
    workload = shot.workloads.get(job["metadata"].get("uid") or "")
    if deactivated(workload):
        return job, True  # cancelled: how each seed ended is in its records
    if (job.get("spec") or {}).get("suspend") and not status.terminal_condition(job):
        return job, False
    covers_all = int((job.get("spec") or {}).get("completions") or 1) >= len(declared.units)
    return job, status.terminal_condition(job) == "Failed" or not covers_all


def nothing_runs(shot: Snapshot, job: dict[str, Any] | None) -> bool:
    """Whether the cluster says no pod of the run can still work (its Job is gone or ended), so that a seed with attempt
    markers but no index.json ended without its record. Without the cluster nobody can tell: such a seed may be running."""
    return shot.reachable and (job is None or bool(status.terminal_condition(job)))


def _records(declared: Declared, cache: RecordCache, shot: Snapshot, job: dict[str, Any] | None) -> list[dict[str, Any] | None]:
    """A run's records from S3, kept in the cache when final (no Job left: they never change again)."""
    documents = read_records(declared, attempts=nothing_runs(shot, job))
    if job is None:
        cache.put(declared, documents)
    return documents


def first_reason(declared: Declared, documents: list[dict[str, Any] | None]) -> str:
    """The first seed that did not succeed, and why, in its own record's words."""
    for unit, document in zip(declared.units, documents, strict=True):
        if document is not None and document.get("status") != "Succeeded":
            return f"{declared.unit} {unit}: {document.get('status')}: {document.get('reason') or 'no reason recorded'}"
    return ""


def pod_recoveries(pods: list[dict[str, Any]]) -> int | None:
    """Pods beyond the first of each seed that the API still shows (a retried or replaced pod)."""
    if not pods:
        return None
    per_index: dict[str, int] = {}
    for pod in pods:
        index = ((pod.get("metadata") or {}).get("annotations") or {}).get("batch.kubernetes.io/job-completion-index", "0")
        per_index[index] = per_index.get(index, 0) + 1
    return sum(count - 1 for count in per_index.values())


def _live(
    declared: Declared, job: dict[str, Any], shot: Snapshot, documents: list[dict[str, Any] | None], have_records: bool
) -> tuple[dict[str, Any], str, str, int | None]:
    """(state, shown status, detail, queue position) of a run whose Job is in the cluster."""
    workload = shot.workloads.get(job["metadata"].get("uid") or "")
    terminal = status.terminal_condition(job)
    if deactivated(workload) and not terminal:
        # Cancelled: the stopped seeds read Cancelled from the cancel record; Kueue may still be evicting it.
        state = {**status.index_state(documents), "startTime": (job.get("status") or {}).get("startTime")}
        stopping = "" if (job.get("spec") or {}).get("suspend") else "Kueue is evicting it; "
        return state, display_status(documents, state["status"]), stopping + first_reason(declared, documents), None
    if (job.get("spec") or {}).get("suspend") and not terminal:
        if status.is_queued(job):
            item = shot.pending.get(declared.queue, {}).get(declared.name)
            detail = queue_message(workload)
            if item is not None:
                detail = f"{detail} (position {int(item['positionInClusterQueue']) + 1} in its cluster queue)".strip()
            position = int(item["positionInLocalQueue"]) + 1 if item is not None else None
            return status.suspended_state(job, None), "Queued", detail, position
        state = status.suspended_state(job, shot.jobs.get(f"{declared.name}-gate"))
        source = declared.source or "its source"
        waiting = f"waiting for run {source} to succeed (its gate Job {declared.name}-gate)"
        blocked = f"run {source} did not succeed: fix it and bump its `rerun`; this run then waits for the new one"
        return state, state["status"], blocked if state["status"] == "Blocked" else waiting, None
    pods = [p for p in shot.pods.get(declared.name, []) if spec_hash_of(p) == spec_hash_of(job)]
    state = status.job_state(job, [str((p.get("status") or {}).get("phase")) for p in pods])
    if terminal and have_records:
        state = status.with_index(state, documents)
    shown = display_status(documents, state["status"])
    flavor = flavor_of(workload)
    detail = first_reason(declared, documents) if have_records else ""
    if not detail and not terminal:
        detail = f"admitted in flavor {flavor}" if flavor else "admitted"
        reasons = [_waiting_reason(p) for p in pods if (p.get("status") or {}).get("phase") == "Pending"]
        if shown == "Admitted" and any(reasons):
            detail += f"; {next(r for r in reasons if r)}"
    return state, shown, detail, None


def _waiting_reason(pod: dict[str, Any]) -> str:
    """Why a pending pod does not run yet: unschedulable (a GPU node is coming), or a container waiting (image pull)."""
    scheduled = _condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        return f"pod {pod['metadata']['name']}: {scheduled.get('message') or scheduled.get('reason')}"
    statuses = [
        *((pod.get("status") or {}).get("initContainerStatuses") or []),
        *((pod.get("status") or {}).get("containerStatuses") or []),
    ]
    for container in statuses:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") not in (None, "PodInitializing", "ContainerCreating"):
            return f"pod {pod['metadata']['name']}: {container.get('name')}: {waiting.get('reason')} {waiting.get('message') or ''}".strip()
    return ""


def _row(
    fleet: Fleet, declared: Declared, shot: Snapshot, job: dict[str, Any] | None, documents: list[dict[str, Any] | None] | None
) -> Row:
    now = datetime.datetime.now(datetime.UTC)
    total = len(declared.units)
    docs: list[dict[str, Any] | None] = documents if documents is not None else [None] * total
    pods = [p for p in shot.pods.get(declared.name, []) if job is not None and spec_hash_of(p) == spec_hash_of(job)]
    position = None
    if job is None:
        state = status.index_state(docs)
        shown = display_status(docs, state["status"])
        detail = first_reason(declared, docs)
        left = sum(1 for d in docs if d is None)
        if not shot.reachable and left:
            detail = (
                detail
                or f"{left} {declared.unit}(s) without a record yet: queued, running or not created (the cluster cannot say now)"
            )
        elif shown == "Waiting":
            detail = detail or "no Job and no record at this spec hash yet: the next `pulumi up` creates it"
    else:
        state, shown, detail, position = _live(declared, job, shot, docs, documents is not None)
    done = sum(1 for d in docs if d is not None)
    if job is not None and documents is None:
        job_status = job.get("status") or {}
        ended = len(completion_indexes(job_status.get("completedIndexes")) | completion_indexes(job_status.get("failedIndexes")))
        # The seeds outside this Job ended before it was made (it runs only those left after a lost state).
        done = total - int((job.get("spec") or {}).get("completions") or 1) + (ended or int(job_status.get("succeeded") or 0))
    recoveries = pod_recoveries(pods)
    if recoveries is None and documents is not None:
        counted = [int(d["recoveries"]) for d in docs if d and isinstance(d.get("recoveries"), int)]
        recoveries = sum(counted) if counted else None
    # Pods the API still shows count themselves; records only where no pod is left to count.
    recorded = docs if job is None or not pods else []
    spent = usage(recorded, live_pods(pods, shot.nodes), declared.gpus, fleet.prices, declared.spot_first, now)
    began, ended_at = parse_time(state.get("startTime")), parse_time(state.get("completionTime")) or now
    return Row(
        name=declared.name,
        kind=declared.kind,
        status=shown,
        detail=detail,
        done=done,
        total=total,
        recoveries=recoveries,
        queue=declared.queue,
        position=position,
        started=state.get("startTime"),
        elapsed_seconds=int((ended_at - began).total_seconds()) if began else None,
        gpu_hours=spent.gpu_hours,
        cost_usd=spent.cost_usd,
        estimated=spent.estimated,
        user=declared.labels.get("user"),
        project=declared.labels.get("project"),
        spec_hash=declared.checked_hash or declared.spec_hash,
        live_hash=declared.spec_hash if declared.checked_hash else None,
        source="records" if job is None else "cluster",
    )
