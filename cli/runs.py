"""`simfleet runs` (every run and job of the stack) and `simfleet status RUN` (one in full)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click
from rich.table import Table

from cli import render
from cli.session import Lazy, Session
from workloads.observe.cluster import ClusterError, ClusterReader
from workloads.observe.detail import RunDetail, detail, snapshot_of
from workloads.observe.listing import DISPLAY_STATUSES, RecordCache, Row, Snapshot, rows, take_snapshot

T = TypeVar("T")


def with_fallback(session: Session, read: Callable[[Snapshot], T], snap: Callable[[ClusterReader], Snapshot]) -> T:
    """Read with the cluster when it answers; when it cannot be reached (a private endpoint from a laptop), read the
    records alone and say so."""
    reader = session.reader()
    if reader is not None:
        try:
            shot = snap(reader)
        except ClusterError as err:
            if err.reachable:
                raise
            session.unreachable(err)
        else:
            return read(shot)
    render.note(f"the cluster's API cannot be reached ({session.problem}); showing what S3 records say")
    return read(Snapshot(False, session.problem))


@click.command("runs")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(DISPLAY_STATUSES, case_sensitive=False),
    help="Only these statuses (repeatable).",
)
@click.option("--user", help="Only runs labelled user=USER.")
@click.option("--project", help="Only runs labelled project=PROJECT.")
@click.option("--kind", type=click.Choice(["run", "job"]), help="Only runs, or only batch jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def runs_command(
    lazy: Lazy, statuses: tuple[str, ...], user: str | None, project: str | None, kind: str | None, as_json: bool
) -> None:
    """Every run and batch job the stack declares: status, seeds done, recoveries, queue and position, started,
    elapsed, GPU-hours, cost so far, user and project."""
    session = lazy.get()
    fleet = session.load()
    cache = RecordCache(session.cache_dir)
    queues = {d.queue for d in fleet.declared.values()}
    found = with_fallback(session, lambda shot: rows(fleet, shot, cache), lambda reader: take_snapshot(reader, queues))
    wanted = {s.lower() for s in statuses}
    chosen = [
        r
        for r in found
        if (not wanted or r.status.lower() in wanted)
        and (user is None or r.user == user)
        and (project is None or r.project == project)
        and (kind is None or r.kind == kind)
    ]
    if as_json:
        render.emit_json({"stack": fleet.stack, "cluster": session.problem == "", "runs": [r.as_json() for r in chosen]})
        return
    render.out().print(runs_table(chosen, fleet.stack))
    _notes(chosen)


NUMERIC = ("SEEDS", "RECOV", "ELAPSED", "GPU-H", "COST")


def runs_table(chosen: list[Row], stack: str) -> Table:
    table = Table(title=f"stack {stack}: {len(chosen)} runs and jobs", title_justify="left", expand=False)
    for column in ("NAME", "STATUS", "SEEDS", "RECOV", "QUEUE", "STARTED", "ELAPSED", "GPU-H", "COST", "USER", "PROJECT"):
        table.add_column(column, justify="right" if column in NUMERIC else "left", overflow="ellipsis")
    table.add_column("WHY", overflow="fold", max_width=60)
    for r in chosen:
        queue = f"{r.queue} #{r.position}" if r.position else r.queue
        table.add_row(
            r.name + (" (job)" if r.kind == "job" else ""),
            render.coloured(r.status),
            f"{r.done}/{r.total}",
            "-" if r.recoveries is None else str(r.recoveries),
            queue,
            render.since(r.started),
            render.duration(r.elapsed_seconds),
            f"{r.gpu_hours:.2f}",
            render.money(r.cost_usd, r.estimated),
            r.user or "-",
            r.project or "-",
            r.detail,
        )
    return table


def _notes(chosen: list[Row]) -> None:
    moved = [r for r in chosen if r.live_hash]
    if moved:
        names = ", ".join(f"{r.name} (cluster {r.live_hash}, checkout {r.spec_hash})" for r in moved)
        render.note(
            f"the cluster runs another spec hash than this checkout computes for: {names}; shown as the cluster runs them"
        )
    if any(r.estimated for r in chosen):
        render.note("~ cost: priced at the stack's dearest GPU type where the node is no longer known (docs/researchers/runs.md)")


@click.command("status")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_obj
def status_command(lazy: Lazy, run: str, as_json: bool) -> None:
    """One run or job in full: per seed its record, attempts, pod, node and capacity, last events and progress;
    Kueue's admission message (why it is Queued, which flavor); where its data is."""
    session = lazy.get()
    fleet = session.load()
    declared = session.declared(run)
    cache = RecordCache(session.cache_dir)

    found = with_fallback(
        session, lambda shot: detail(fleet, declared, shot, session.reader(), cache), lambda reader: snapshot_of(reader, declared)
    )
    if as_json:
        render.emit_json(found.as_json())
        return
    show_detail(found)


def show_detail(found: RunDetail) -> None:
    console = render.out()
    row = found.row
    console.print(
        f"[bold]{row.name}[/bold] ({found.kind}, {found.mode}): {render.coloured(row.status)}"
        + (f" - {row.detail}" if row.detail else "")
    )
    lines = [
        ("spec hash", row.spec_hash + (f" (the cluster runs {row.live_hash})" if row.live_hash else "")),
        (f"{found.unit}s", f"{row.done}/{row.total} ended, recoveries {'-' if row.recoveries is None else row.recoveries}"),
        ("started", f"{render.since(row.started)}, elapsed {render.duration(row.elapsed_seconds)}"),
        ("GPU-hours", f"{row.gpu_hours:.2f}, cost so far {render.money(row.cost_usd, row.estimated)}"),
        ("artifacts", found.artifacts_uri),
    ]
    if found.checkpoints_uri:
        lines.append(("checkpoints", found.checkpoints_uri))
    kueue = found.kueue
    queue = kueue["queue"] + (
        f", position {kueue['positionInQueue']} (cluster queue {kueue['positionInClusterQueue']})"
        if kueue["positionInQueue"]
        else ""
    )
    lines.append(("queue", queue))
    if kueue["clusterQueue"] or kueue["flavor"]:
        lines.append(("admitted", f"cluster queue {kueue['clusterQueue']}, flavor {kueue['flavor']}"))
    if kueue["message"]:
        lines.append(("kueue says", kueue["message"]))
    for label, value in lines:
        console.print(f"  {label:<12} {value}")
    table = Table(title=f"{found.unit}s", title_justify="left")
    for column in (found.unit.upper(), "STATUS", "ATTEMPTS", "POD", "PHASE", "NODE", "CAPACITY", "PROGRESS", "WHY / LAST EVENT"):
        table.add_column(column, overflow="fold")
    for seed in found.seeds:
        pod = seed.pods[-1] if seed.pods else None
        last = (pod.events[-1] if pod and pod.events else "") if not seed.reason else seed.reason
        table.add_row(
            str(seed.unit),
            render.coloured(seed.status),
            str(seed.attempts),
            pod.name if pod else "-",
            pod.phase if pod else "-",
            f"{pod.node} ({pod.instance_type})" if pod and pod.node else "-",
            pod.capacity or "-" if pod else "-",
            progress_text(seed.progress, seed.record),
            last,
        )
    console.print(table)
    if found.job_events:
        console.print("  last events of the Job:")
        for line in found.job_events:
            console.print(f"    {line}")


def progress_text(progress: dict | None, record: dict | None) -> str:  # type: ignore[type-arg]
    """Simulation time done over the seed's total, and steps: from progress.json while it runs, its record after."""
    if progress:
        done, total = progress.get("simulationSeconds"), progress.get("stopAfterSeconds")
        share = f" ({100 * float(done) / float(total):.0f}%)" if done is not None and total else ""
        sim = f"{render.duration(done)} of {render.duration(total) if total else '?'}{share}" if done is not None else ""
        return f"{sim}, {progress.get('steps', 0)} steps, {progress.get('phase', '')}".strip(", ")
    if record and record.get("steps") is not None:
        return f"{record['steps']} steps"
    return "-"


COMMANDS = (runs_command, status_command)
