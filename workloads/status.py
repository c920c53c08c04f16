"""A run's status, pure: from its Job (and pods) while the Job exists, from its index.json files in S3 once it is gone."""

from __future__ import annotations

from typing import Any

import naming

# Every status a SimRun reports:
#   Queued    suspended, waiting for Kueue to admit it (its queue has no room yet, or Kueue preempted it)
#   Waiting   a continuation, suspended until its source run succeeds (its gate Job is waiting)
#   Blocked   a continuation whose source ended without succeeding: it will not start; rerun the source
#   Pending   the Job exists, no pod runs yet (a GPU node is starting, or the image is pulling)
#   Running, Succeeded, Failed
#   Cancelled a person stopped it (`simfleet cancel` records it in index.json): final like Succeeded
#   Missing   the Job is gone and no index.json was written, so nothing is known
STATUSES = ("Queued", "Waiting", "Blocked", "Pending", "Running", "Succeeded", "Failed", "Cancelled", "Missing")
# An index.json records how a seed's last attempt ended; each means the seed ran (it is never started again, until
# `rerun` is bumped). Incomplete: the run ended but not everything it produced is whole (a sidecar did not acknowledge
# finish, or an artifact was still being written while it was shipped); like Failed, it makes the run Failed
# (docs/failures.md).
INDEX_STATUSES = ("Succeeded", "Failed", "Interrupted", "Incomplete", "Cancelled")
# Statuses after which a run does no more work (Blocked never starts; the others have ended). Any other one may have a
# pod doing work now or any moment: deleting such a run kills it.
DONE_STATUSES = ("Succeeded", "Failed", "Cancelled", "Missing", "Blocked")


def terminal_condition(job: dict[str, Any]) -> str | None:
    # Complete/Failed are final; SuccessCriteriaMet/FailureTarget (1.31+) precede them while pods terminate.
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return str(condition["type"])
    return None


def job_needs_pods(job: dict[str, Any]) -> bool:
    """Whether the Job's own status cannot tell Pending from Running, so its pods' phases are needed."""
    status = job.get("status") or {}
    return not terminal_condition(job) and not status.get("ready") and bool(status.get("active"))


def job_state(job: dict[str, Any], pod_phases: list[str]) -> dict[str, Any]:
    """Pending | Running | Succeeded | Failed with start and completion times, from a Job (and its pods' phases)."""
    status = job.get("status") or {}
    terminal = terminal_condition(job)
    completion = status.get("completionTime")
    if terminal == "Complete":
        phase = "Succeeded"
    elif terminal == "Failed":
        phase = "Failed"
        # completionTime is only set on success; a failed Job ends when its Failed condition became true.
        completion = next(c.get("lastTransitionTime") for c in status["conditions"] if c.get("type") == "Failed")
    elif status.get("ready") or "Running" in pod_phases:
        phase = "Running"  # `active` also counts pods still waiting for a GPU node, so it alone is not enough
    else:
        phase = "Pending"
    return {"status": phase, "startTime": status.get("startTime"), "completionTime": completion}


def suspended_state(job: dict[str, Any], gate: dict[str, Any] | None) -> dict[str, Any]:
    """A suspended Job: Queued once it carries its queue label (Kueue's to admit); before that a continuation's,
    Blocked when its gate failed (the source did not succeed in time), else Waiting."""
    gate_failed = gate is not None and terminal_condition(gate) == "Failed"
    phase = "Queued" if is_queued(job) else "Blocked" if gate_failed else "Waiting"
    return {"status": phase, "startTime": (job.get("status") or {}).get("startTime"), "completionTime": None}


def created_state(job: dict[str, Any]) -> dict[str, Any]:
    """A Job just created: Queued for Kueue, or Waiting behind its gate (no pod yet either way)."""
    if (job.get("spec") or {}).get("suspend"):
        return suspended_state(job, None)
    return job_state(job, [])


def is_queued(job: dict[str, Any]) -> bool:
    """Whether the Job is Kueue's: it carries a queue label (a gated continuation gets it from its gate)."""
    return bool(((job.get("metadata") or {}).get("labels") or {}).get(naming.KUEUE_QUEUE_LABEL))


def with_index(state: dict[str, Any], documents: list[dict[str, Any] | None]) -> dict[str, Any]:
    """A finished Job's state, corrected by the seeds' index.json: a seed that failed before the Job was recreated
    (after a lost state) still makes the run Failed; recoveries are summed over the seeds."""
    recorded = index_state(documents)
    out = {**state, "recoveries": recorded["recoveries"]}
    if state.get("status") == "Succeeded" and recorded["status"] == "Failed":
        out["status"] = "Failed"
    if recorded["status"] == "Cancelled":
        out["status"] = "Cancelled"  # a person stopped it; the Job's own ending is how the stop looked
    return out


def seed_finished(document: dict[str, Any] | None) -> bool:
    """A seed whose index.json exists has run: whatever it says, the seed is not started again."""
    return document is not None


def cancelled(documents: list[dict[str, Any] | None]) -> bool:
    """Whether a person cancelled the run: a seed's record says so. Final for the whole run, so its seeds that had
    not started yet (a sweep wider than its parallelism) never start either."""
    return any(doc is not None and doc.get("status") == "Cancelled" for doc in documents)


def index_state(documents: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Succeeded when every seed succeeded; Failed when any failed or was interrupted; else Cancelled when a person
    cancelled any; Missing when a seed left no index."""
    statuses = [doc.get("status") if doc else None for doc in documents]
    if any(status is not None and status not in ("Succeeded", "Cancelled") for status in statuses):
        phase = "Failed"
    elif "Cancelled" in statuses:
        phase = "Cancelled"
    elif documents and all(status == "Succeeded" for status in statuses):
        phase = "Succeeded"
    else:
        phase = "Missing"
    starts = sorted(d["startTime"] for d in documents if d and d.get("startTime"))
    ends = sorted(d["completionTime"] for d in documents if d and d.get("completionTime"))
    recoveries = [d.get("recoveries") for d in documents if d and isinstance(d.get("recoveries"), int)]
    return {
        "status": phase,
        "startTime": starts[0] if starts else None,
        "completionTime": ends[-1] if ends and phase != "Missing" else None,
        # Pods that replaced an earlier pod of the same seed (spot reclaim, drain, retry), over every seed.
        "recoveries": sum(recoveries) if recoveries else None,
    }
