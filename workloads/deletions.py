"""Deleting runs is loud: which deployed runs and jobs a change deletes, what each loses, and whether the stack file
acknowledges it (simfleet:deletions, config/deletions.py).

The program learns what is deployed from its own stack's last outputs (`runs` and `jobs`: name -> jobName,
specHash, status, artifacts URI), read through the engine's builtin `pulumi:pulumi:readStackOutputs` invoke, the
one a StackReference resolves through (pkg/resource/deploy/builtins.go), before anything is registered. A change
that deletes a running one, or more than `limit` unacknowledged ones, stops there with the list and what to do;
`pulumi preview`, `pulumi up` and the offline plan against a stack export (tools/mocks.py answers the invoke with
that export's outputs) say the same.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from config import DeletionsConfig
from workloads import status

READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"
# The stack outputs that list the SimRuns, and the kind of workload each holds.
WORKLOAD_OUTPUTS = (("runs", "run"), ("jobs", "job"))
# Not started at the last `pulumi up`, but maybe running now: every Job is created suspended, so the outputs say
# Queued after the `up` that created it and keep saying so (a SimRun's outputs change only when it is updated or
# refreshed) while Kueue runs it; a Waiting continuation starts once its source succeeds.
NOT_STARTED = ("Queued", "Waiting")


@dataclass(frozen=True)
class Deletion:
    """A deployed run or job the change no longer declares, as the stack's outputs last saw it."""

    name: str
    kind: str  # run | job
    status: str | None  # at the last `pulumi up` (None: not known)
    data_uri: str | None  # where its records and data stay

    @property
    def may_be_running(self) -> bool:
        """Not known to be done: a status seen at the last `up` may have moved on since (unknown counts as running)."""
        return self.status not in status.DONE_STATUSES

    def what_is_lost(self) -> str:
        kept = f"; its record and data stay in S3 ({self.data_uri})" if self.data_uri else "; its S3 data stays"
        if self.may_be_running:
            seen = f"{self.status} at the last `pulumi up`" if self.status else "status unknown"
            if self.status in NOT_STARTED:
                seen += "; Kueue may have started it since"
            return (
                f"may be running ({seen}): its pod is stopped (SIGTERM: it saves and ships what it has, recorded "
                f"Interrupted) and its Job deleted{kept}"
            )
        if self.status == "Blocked":
            return f"Blocked, never started: it will not run; its Job is deleted{kept}"
        return f"finished ({self.status}): only its Job goes (if its TTL has not removed it already){kept}"


def deployed(outputs: dict[str, Any]) -> dict[str, Deletion]:
    """Every run and job in a stack's outputs, by name (a Deletion only once the change no longer declares it)."""
    found = {}
    for output, kind in WORKLOAD_OUTPUTS:
        for name, facts in (outputs.get(output) or {}).items():
            facts = facts if isinstance(facts, dict) else {}
            uri = facts.get("artifactsUri") or facts.get("outputsUri")
            found[str(name)] = Deletion(str(name), kind, facts.get("status"), uri)
    return found


def deletions(outputs: dict[str, Any], declared: Iterable[str]) -> list[Deletion]:
    """The deployed runs and jobs that `declared` (the names the change keeps) leaves out, in name order."""
    keep = set(declared)
    return sorted((d for name, d in deployed(outputs).items() if name not in keep), key=lambda d: d.name)


def acknowledged(name: str, config: DeletionsConfig) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in config.acknowledge)


def problems(planned: list[Deletion], config: DeletionsConfig) -> list[str]:
    """Why this set of deletions needs an acknowledgement it does not have; empty when it may go ahead."""
    unacknowledged = [d for d in planned if not acknowledged(d.name, config)]
    found = [
        f"{d.kind} {d.name} {d.what_is_lost()}: a running one is deleted only when acknowledged"
        for d in unacknowledged
        if d.may_be_running
    ]
    if len(unacknowledged) > config.limit:
        found.append(
            f"{len(unacknowledged)} unacknowledged deletions, more than simfleet:deletions.limit ({config.limit}): "
            + "; ".join(f"{d.kind} {d.name} {d.what_is_lost()}" for d in unacknowledged if not d.may_be_running)
        )
    return found


def stale_acknowledgements(planned: list[Deletion], config: DeletionsConfig) -> list[str]:
    """Acknowledgements that match no deletion of this change: leftovers that would let a later mistake through."""
    names = [d.name for d in planned]
    return [pattern for pattern in config.acknowledge if not fnmatch.filter(names, pattern)]


def refusal(source: str, planned: list[Deletion], found: list[str]) -> str:
    """The message that stops the change: what it deletes, why that needs an acknowledgement, and the two ways on."""
    names = ", ".join(d.name for d in planned)
    lines = [f"{source}: this change deletes {len(planned)} deployed run(s) and job(s) ({names}); nothing was registered:"]
    lines += [f"  - {problem}" for problem in found]
    lines += [
        "If the entries were removed on purpose, name them in the stack file and run the same command again:",
        "  simfleet:deletions:",
        f"    acknowledge: [{names}]",
        "If not: restore the entries (a bad merge, a renamed or misspelt simfleet:runs/jobs key removes them all).",
        "To stop a run without deleting it, cancel it (`simfleet cancel <run>`, docs/lifecycle.md); it then shows "
        "Cancelled and is never started again until its `rerun` is bumped.",
    ]
    return "\n".join(lines)


def stack_outputs() -> dict[str, Any]:
    """The current stack's outputs as of its last deployment (empty before the first), through the engine.

    The fully qualified name first (organization/project/stack, what the Pulumi Cloud and project-scoped DIY backends
    parse), then the bare stack name (a DIY backend without project scoping rejects the qualified form).
    """
    import pulumi
    from pulumi.runtime import invoke

    # A DIY backend's organization is the literal "organization" (what the language host passes; None under mocks).
    organization = pulumi.get_organization() or "organization"
    names = [f"{organization}/{pulumi.get_project()}/{pulumi.get_stack()}", pulumi.get_stack()]
    failures = []
    for name in names:
        try:
            result = invoke(READ_STACK_OUTPUTS, {"name": name})
        except Exception as err:  # the SDK raises a bare Exception for a failed invoke
            failures.append(f"{name}: {err}")
            continue
        outputs = (result.value or {}).get("outputs") or {}
        return dict(outputs) if isinstance(outputs, dict) else {}
    raise DeployedUnknown("; ".join(failures))


class DeployedUnknown(Exception):
    """The stack's last outputs could not be read, so the deletions cannot be checked."""


def check(cfg: Any, source: str) -> list[str]:
    """Raise pulumi.RunError (before anything is registered) when the change deletes what it does not acknowledge;
    returns warnings (stale acknowledgements)."""
    import pulumi

    try:
        outputs = stack_outputs()
    except DeployedUnknown as err:
        raise pulumi.RunError(
            f"{source}: cannot read what stack {pulumi.get_stack()} has deployed ({err}); simfleet reads its own "
            "outputs (runs, jobs) first to check which runs this change would delete, and starts nothing without "
            "knowing. Check the backend login (`pulumi whoami`) and that the stack exists, then run it again."
        ) from None
    declared = [run.name for run in cfg.runs] + [job.name for job in cfg.jobs]
    planned = deletions(outputs, declared)
    found = problems(planned, cfg.deletions)
    if found:
        raise pulumi.RunError(refusal(source, planned, found))
    return [
        f"deletions.acknowledge: {pattern!r} matches no run or job this change deletes; remove it, or a later "
        "deletion it matches goes through unchecked"
        for pattern in stale_acknowledgements(planned, cfg.deletions)
    ]
