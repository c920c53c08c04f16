"""One run or job in full (`simfleet status`): per seed (a job's shard) its record, attempts, pods with their phase,
node and capacity type, their last events, and its progress; Kueue's word on the admission."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import naming
from workloads.kube import spec_hash_of
from workloads.observe import records
from workloads.observe.cluster import ClusterError, ClusterReader, seed_of_pod
from workloads.observe.fleet import Declared, Fleet
from workloads.observe.listing import (
    CLI_ADVICE,
    S3_THREADS,
    RecordCache,
    Row,
    Snapshot,
    at_live_hash,
    flavor_of,
    nothing_runs,
    queue_message,
    read_records,
    rows,
)

EVENTS_SHOWN = 3


@dataclass
class PodView:
    name: str
    phase: str
    node: str | None
    capacity: str | None  # SPOT | ON_DEMAND
    instance_type: str | None
    started: str | None
    events: list[str] = field(default_factory=list)


@dataclass
class SeedView:
    unit: int
    status: str  # its record's, or what its pod is doing
    reason: str
    attempts: int
    prefix: str  # s3://<artifacts>/<P>
    record: dict[str, Any] | None
    progress: dict[str, Any] | None
    pods: list[PodView] = field(default_factory=list)


@dataclass
class RunDetail:
    row: Row
    kind: str
    mode: str
    unit: str
    artifacts_uri: str
    checkpoints_uri: str | None
    kueue: dict[str, Any]
    seeds: list[SeedView]
    job_events: list[str]
    source: str  # cluster | records

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def snapshot_of(reader: ClusterReader, declared: Declared) -> Snapshot:
    """The cluster's view of one run: its Job, its Workload, its pods and their nodes, its queue's pending list."""
    job = reader.job(declared.name)
    shot = Snapshot(True, jobs={declared.name: job} if job else {})
    if declared.source:
        gate = reader.job(f"{declared.name}-gate")
        if gate:
            shot.jobs[gate["metadata"]["name"]] = gate
    if job is not None:
        shot.workloads = reader.workloads()
    shot.pods = {declared.name: reader.pods(declared.name)}
    for node in {(p.get("spec") or {}).get("nodeName") for p in shot.pods[declared.name]} - {None}:
        found = reader.node(str(node))
        if found is not None:
            shot.nodes[str(node)] = found
    shot.pending = {declared.queue: reader.pending(declared.queue)}
    return shot


def _event_line(event: dict[str, Any]) -> str:
    when = event.get("lastTimestamp") or event.get("eventTime") or ""
    count = int(event.get("count") or 1)
    again = f" (x{count})" if count > 1 else ""
    return f"{when} {event.get('type', '')} {event.get('reason', '')}: {event.get('message', '')}{again}".strip()


def detail(fleet: Fleet, declared: Declared, shot: Snapshot, reader: ClusterReader | None, cache: RecordCache) -> RunDetail:
    declared = at_live_hash(declared, shot)
    [row] = rows(fleet, shot, cache, [declared.name]) if declared.name in fleet.declared else []
    at = declared.where
    job = shot.jobs.get(declared.name)
    documents = read_records(declared, attempts=nothing_runs(shot, job))
    pods = [p for p in shot.pods.get(declared.name, []) if job is None or spec_hash_of(p) == spec_hash_of(job)]
    by_unit: dict[int, list[dict[str, Any]]] = {}
    for pod in pods:
        unit = seed_of_pod(pod, job, declared.units)
        if unit is not None:
            by_unit.setdefault(unit, []).append(pod)
    for found in by_unit.values():
        found.sort(key=_current_last)
    events: dict[str, list[dict[str, Any]]] = {}
    if reader is not None and shot.reachable:
        try:
            events = reader.events([declared.name, *(p["metadata"]["name"] for p in pods)])
        except ClusterError as err:
            if err.reachable and err.status != 403:
                raise

    def seed(unit: int, document: dict[str, Any] | None) -> SeedView:
        prefix = declared.unit_prefix(unit)
        attempts = len(records.attempt_markers(at.region, at.artifacts_bucket, prefix, CLI_ADVICE))
        live = by_unit.get(unit, [])
        running = any((p.get("status") or {}).get("phase") == "Running" for p in live)
        progress = (
            records.read_json(at.region, at.artifacts_bucket, f"{prefix}{records.PROGRESS}", CLI_ADVICE)
            if running or document is None
            else None
        )
        views = [_pod_view(p, shot, events) for p in live]
        if document is not None:
            shown, reason = str(document.get("status")), str(document.get("reason") or "")
        elif views:
            shown, reason = {"Running": "Running", "Pending": "Admitted"}.get(views[-1].phase, views[-1].phase), ""
        else:
            shown, reason = row.status if row.status in ("Queued", "Waiting", "Blocked") else "Waiting", ""
        return SeedView(unit, shown, reason, attempts, f"s3://{at.artifacts_bucket}/{prefix}", document, progress, views)

    with ThreadPoolExecutor(S3_THREADS) as pool:
        seeds = list(pool.map(seed, declared.units, documents))
    workload = shot.workloads.get(((job or {}).get("metadata") or {}).get("uid") or "") if job else None
    item = shot.pending.get(declared.queue, {}).get(declared.name)
    kueue = {
        "queue": declared.queue,
        "workload": ((workload or {}).get("metadata") or {}).get("name"),
        "clusterQueue": (((workload or {}).get("status") or {}).get("admission") or {}).get("clusterQueue"),
        "flavor": flavor_of(workload),
        "message": queue_message(workload) if job is not None else "",
        "positionInQueue": int(item["positionInLocalQueue"]) + 1 if item else None,
        "positionInClusterQueue": int(item["positionInClusterQueue"]) + 1 if item else None,
        "active": (workload or {}).get("spec", {}).get("active", True) if workload else None,
    }
    return RunDetail(
        row=row,
        kind=declared.kind,
        mode=declared.mode,
        unit=declared.unit,
        artifacts_uri=f"s3://{at.artifacts_bucket}/{at.prefix}",
        checkpoints_uri=declared.checkpoints_uri,
        kueue=kueue,
        seeds=seeds,
        job_events=[_event_line(e) for e in events.get(declared.name, [])[-EVENTS_SHOWN:]],
        source="cluster" if shot.reachable else "records",
    )


def _current_last(pod: dict[str, Any]) -> tuple[bool, str]:
    """A seed's pods oldest first, the one that may still work last (a reclaimed pod lingers Failed beside its
    replacement): what the seed does now is its last pod's."""
    status = pod.get("status") or {}
    created = str((pod.get("metadata") or {}).get("creationTimestamp") or "")
    return status.get("phase") not in ("Succeeded", "Failed"), str(status.get("startTime") or created)


def _pod_view(pod: dict[str, Any], shot: Snapshot, events: dict[str, list[dict[str, Any]]]) -> PodView:
    node_name = (pod.get("spec") or {}).get("nodeName")
    labels = (((shot.nodes.get(node_name or "") or {}).get("metadata") or {}).get("labels")) or {}
    name = pod["metadata"]["name"]
    return PodView(
        name=name,
        phase=str((pod.get("status") or {}).get("phase") or "Unknown"),
        node=node_name,
        capacity=labels.get(naming.CAPACITY_TYPE_LABEL)
        or ((pod.get("spec") or {}).get("nodeSelector") or {}).get(naming.CAPACITY_TYPE_LABEL),
        instance_type=labels.get("node.kubernetes.io/instance-type"),
        started=(pod.get("status") or {}).get("startTime"),
        events=[_event_line(e) for e in events.get(name, [])[-EVENTS_SHOWN:]],
    )
