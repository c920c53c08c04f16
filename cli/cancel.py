"""`simfleet cancel RUN [--seed N]`: stop a run now, release its GPUs, and record `Cancelled` so that no later
`pulumi up` starts it again (until its `rerun` is bumped).

In this order, so that a stop is never taken for anything else:
1. the cancel record (`<prefix>cancel.json`, S3 conditional writes, workloads/observe/records.py) lists the seeds the
   cancel stops; from then on the provider and this command read each of them as Cancelled, whatever its pod's
   uploader writes after the SIGTERM (Interrupted) - but never a seed whose own record already says Succeeded;
2. the whole run: its Kueue Workload is deactivated (`spec.active: false`): Kueue evicts it, releases its quota and
   suspends its Job for good, whose controller deletes the pods (SIGTERM: each ships what it has). A continuation
   still waiting for its source has no Workload yet: its gate Job is deleted instead, so nothing releases it later;
3. one seed of a sweep (`--seed`): its pod is deleted, and so is the replacement the Job makes for its one retry,
   until the Job has given the seed up (status.failedIndexes); the sweep's other seeds run on.
"""

from __future__ import annotations

import datetime
import sys
import time
from typing import Any

import click

from cli import render
from cli.errors import NoAccess, Partial
from cli.session import Lazy, Session, UsageProblem
from workloads import status
from workloads.kube import spec_hash_of
from workloads.observe import records
from workloads.observe.cluster import ClusterError, ClusterReader, job_seeds, seed_of_pod
from workloads.observe.fleet import Declared
from workloads.observe.listing import CLI_ADVICE, Snapshot, at_live_hash, completion_indexes, read_records

EVICT_WAIT_SECONDS = 60.0  # Kueue evicts within seconds; its quota is free once the Workload says Evicted
SEED_WAIT_SECONDS = 360.0  # two pods of a seed, each with its 120 s grace period, and the Job's retry in between
POLL_SECONDS = 1.0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def still_running(declared: Declared, job: dict[str, Any] | None, documents: list[dict[str, Any] | None]) -> list[int]:
    """The seeds a cancel would stop: those not Succeeded that the Job may still run (or, with no Job, that have no
    record, so a lost state would start them)."""
    if job is not None and status.terminal_condition(job):
        return []
    given_up = completion_indexes(((job or {}).get("status") or {}).get("failedIndexes"))
    seeds = (job_seeds(job) if job is not None else None) or list(declared.units)
    out = []
    for unit, document in zip(declared.units, documents, strict=True):
        if document is not None and document.get("status") in ("Succeeded", "Cancelled"):
            continue
        if job is None and document is not None:
            continue
        if job is not None and unit in seeds and seeds.index(unit) in given_up:
            continue
        out.append(unit)
    return out


@click.command("cancel")
@click.argument("run")
@click.option("--seed", type=int, help="Stop only this seed of a sweep (a job's shard); the others run on.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@click.option("--wait", is_flag=True, help="Also wait until the stopped pods are gone (each has 120 s to ship what it has).")
@click.pass_obj
def cancel_command(lazy: Lazy, run: str, seed: int | None, yes: bool, wait: bool) -> None:
    """Stop a run now and release its GPUs; record Cancelled so no later `pulumi up` runs it again."""
    session = lazy.get()
    declared = session.declared(run)
    reader = session.reader()
    if reader is None:
        raise NoAccess(f"cancelling stops pods through the cluster's API, which cannot be reached ({session.problem})")
    try:
        job = reader.job(run)
    except ClusterError as err:
        reach = f": {err}" if err.reachable else f", which cannot be reached ({err})"
        raise NoAccess(f"cancelling stops pods through the cluster's API{reach}") from None
    declared = at_live_hash(declared, Snapshot(True, jobs={run: job} if job else {}))
    documents = read_records(declared, attempts=False)
    stoppable = still_running(declared, job, documents)
    if seed is not None and len(declared.units) > 1:
        _cancel_seed(session, reader, declared, job, seed, stoppable, yes)
        return
    if not stoppable:
        shown = status.index_state(documents)["status"] if job is None or status.terminal_condition(job) else "ended"
        click.echo(f"{run} has nothing left to stop: it already ended ({shown}); nothing was written")
        return
    _confirm(yes, f"Cancel {declared.kind} {run}: stop {declared.unit}s {', '.join(map(str, stoppable))} now?")
    prefix = declared.where.prefix
    request = records.CancelRequest(tuple(stoppable), True, session.caller, _now())
    records.write_cancel(
        declared.where.region, declared.where.artifacts_bucket, prefix, run, declared.spec_hash, request, CLI_ADVICE
    )
    click.echo(
        f"recorded: s3://{declared.where.artifacts_bucket}/{prefix}{records.CANCEL_RECORD} ({len(stoppable)} {declared.unit}s)"
    )
    if job is not None:
        _stop_job(reader, declared, job, wait)
    _after(session, declared)


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageProblem("not a terminal to ask on: pass --yes to cancel")
    click.confirm(question, abort=True)


def _stop_job(reader: ClusterReader, declared: Declared, job: dict[str, Any], wait: bool) -> None:
    workload = reader.workloads().get(job["metadata"]["uid"])
    if workload is None:
        gate = reader.job(f"{declared.name}-gate")
        if gate is not None:
            reader.delete("batch/v1", "Job", gate["metadata"]["name"], gate["metadata"]["uid"])
            click.echo(f"deleted its gate Job {declared.name}-gate: nothing releases it now (it had no pod, no GPU)")
        else:
            click.echo("it has no Kueue Workload yet (not queued): it holds no GPU; its record keeps it from starting")
        return
    if workload["spec"].get("active", True):
        reader.deactivate(workload)
    click.echo(f"deactivated its Kueue Workload {workload['metadata']['name']}: Kueue evicts it and suspends its Job")
    deadline = time.monotonic() + EVICT_WAIT_SECONDS
    with render.err().status("waiting for Kueue to release its quota ..."):
        while time.monotonic() < deadline:
            current = reader.workloads().get(job["metadata"]["uid"]) or {}
            conditions = {c.get("type"): c.get("status") for c in (current.get("status") or {}).get("conditions") or []}
            if conditions.get("Evicted") == "True" or conditions.get("QuotaReserved") != "True":
                break
            time.sleep(POLL_SECONDS)
        else:
            raise Partial(
                f"Kueue has not evicted {workload['metadata']['name']} after {EVICT_WAIT_SECONDS:.0f} s; its record says Cancelled, so it will not start again; look again with `simfleet status {declared.name}`"
            )
    click.echo("its GPUs are released (the Workload is evicted)")
    pods = _live(reader, declared)
    if pods and wait:
        _wait_gone(reader, declared, SEED_WAIT_SECONDS)
    elif pods:
        click.echo(
            f"{len(pods)} pod(s) are stopping: each ships what it has within 120 s (simfleet logs {declared.name} -c uploader)"
        )


def _live(reader: ClusterReader, declared: Declared) -> list[dict[str, Any]]:
    return [
        p
        for p in reader.pods(declared.name)
        if spec_hash_of(p) == declared.spec_hash and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    ]


def _wait_gone(reader: ClusterReader, declared: Declared, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    with render.err().status("waiting for the pods to ship what they have and stop ..."):
        while _live(reader, declared):
            if time.monotonic() > deadline:
                raise Partial(f"pods of {declared.name} still run after {seconds:.0f} s; simfleet status {declared.name}")
            time.sleep(POLL_SECONDS)
    click.echo("its pods are gone")


def _cancel_seed(
    session: Session,
    reader: ClusterReader,
    declared: Declared,
    job: dict[str, Any] | None,
    seed: int,
    stoppable: list[int],
    yes: bool,
) -> None:
    if seed not in declared.units:
        raise UsageProblem(f"{declared.name} has no {declared.unit} {seed}; its {declared.unit}s: {list(declared.units)}")
    live = [p for p in _live(reader, declared) if seed_of_pod(p, job, declared.units) == seed]
    if seed not in stoppable:
        click.echo(f"{declared.unit} {seed} of {declared.name} has nothing left to stop: it already ended; nothing was written")
        return
    if job is None or not live:
        raise UsageProblem(
            f"{declared.unit} {seed} of {declared.name} has no pod now: the Job starts it when its turn comes. Cancel the "
            f"whole run (simfleet cancel {declared.name}), or cancel the {declared.unit} once it runs"
        )
    _confirm(yes, f"Stop {declared.unit} {seed} of {declared.name} now (the others run on)?")
    request = records.CancelRequest((seed,), False, session.caller, _now())
    at = declared.where
    records.write_cancel(at.region, at.artifacts_bucket, at.prefix, declared.name, declared.spec_hash, request, CLI_ADVICE)
    click.echo(f"recorded: s3://{at.artifacts_bucket}/{at.prefix}{records.CANCEL_RECORD} ({declared.unit} {seed})")
    index = ((job_seeds(job) if job is not None else None) or list(declared.units)).index(seed)
    deadline = time.monotonic() + SEED_WAIT_SECONDS
    stopped: set[str] = set()
    with render.err().status(f"stopping {declared.unit} {seed} until the Job gives it up ..."):
        while True:
            current = reader.job(declared.name)
            if (
                current is None
                or status.terminal_condition(current)
                or index in completion_indexes((current.get("status") or {}).get("failedIndexes"))
            ):
                break
            for pod in _live(reader, declared):
                name = pod["metadata"]["name"]
                if seed_of_pod(pod, current, declared.units) == seed and name not in stopped:
                    reader.delete_pod(pod)
                    stopped.add(name)
            if time.monotonic() > deadline:
                raise Partial(
                    f"{declared.unit} {seed}'s pods kept coming back for {SEED_WAIT_SECONDS:.0f} s; run the same command again"
                )
            time.sleep(POLL_SECONDS)
    click.echo(
        f"stopped {declared.unit} {seed}: {len(stopped)} pod(s) deleted, the Job will not run it again; the other {declared.unit}s run on"
    )
    _after(session, declared)


def _after(session: Session, declared: Declared) -> None:
    stack_file = f"Pulumi.{session.stack}.yaml"
    click.echo(
        f"`pulumi up` will not start it again. To run it again, bump its `rerun` in {stack_file}; to remove it, delete its "
        "entry (once a `pulumi up --refresh` has seen it Cancelled, that needs no acknowledgement)."
    )
    render.note(f"see it: simfleet status {declared.name}")


COMMANDS = (cancel_command,)
