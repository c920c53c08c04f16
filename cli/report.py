"""`simfleet report RUN`: a run's report a person would rather look at than read: PNG plots of each seed's per-step
series and one self-contained HTML page with the outcome, the seeds compared, and the plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cli import render
from cli.report_figures import Series, all_plots, parse_steps
from cli.report_page import page
from cli.runs import with_fallback
from cli.session import Lazy, UsageProblem, units_of
from workloads.observe import records
from workloads.observe.detail import snapshot_of
from workloads.observe.fleet import KIND_RUN, Declared
from workloads.observe.listing import CLI_ADVICE, RecordCache, Row, at_live_hash, nothing_runs, read_records, rows

STEPS = "metrics/steps.csv"
GLUE_SUMMARY = "metrics/glue-summary.json"


def seed_data(
    declared: Declared, units: tuple[int, ...]
) -> tuple[dict[int, Series], dict[int, dict[str, Any] | None], list[str]]:
    """Each seed's series (its last pod's steps.csv) and glue summary, and notes for seeds without them."""
    at = declared.where
    series: dict[int, Series] = {}
    summaries: dict[int, dict[str, Any] | None] = {}
    notes = []
    for unit in units:
        prefix = declared.unit_prefix(unit)
        text = records.read_text(at.region, at.artifacts_bucket, f"{prefix}{STEPS}", CLI_ADVICE)
        summaries[unit] = records.read_json(at.region, at.artifacts_bucket, f"{prefix}{GLUE_SUMMARY}", CLI_ADVICE)
        parsed = parse_steps(text) if text else None
        if parsed and parsed["time"]:
            series[unit] = parsed
        else:
            notes.append(
                f"{declared.unit} {unit}: no steps.csv at s3://{at.artifacts_bucket}/{prefix}{STEPS} yet (it is shipped when the seed ends)"
            )
    return series, summaries, notes


@click.command("report")
@click.argument("run")
@click.option(
    "--out",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where to write it (default ./simfleet-report/<run>/).",
)
@click.option("--seed", type=int, help="Only this seed.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written (files, plots, points per seed) as JSON.")
@click.pass_obj
def report_command(lazy: Lazy, run: str, directory: Path | None, seed: int | None, as_json: bool) -> None:
    """Plots and one HTML page from a run's metrics: velocity, pose, energy, nociceptor, brain latency, and a sweep's
    seeds compared, with the outcome (status, steps, recoveries, checkpoint, cost)."""
    session = lazy.get()
    fleet = session.load()
    declared = session.declared(run)
    if declared.kind != KIND_RUN:
        raise UsageProblem(
            f"{run} is a batch job: its outputs are files of its own (simfleet artifacts {run}); a report plots a run's metrics"
        )
    units = units_of(declared, seed)
    out = directory or Path("simfleet-report") / run
    cache = RecordCache(session.cache_dir)

    [row], shot = with_fallback(
        session, lambda shot: (rows(fleet, shot, cache, [run]), shot), lambda reader: snapshot_of(reader, declared)
    )
    declared = at_live_hash(declared, shot)
    found = read_records(declared, attempts=nothing_runs(shot, shot.jobs.get(run)))
    documents = dict(zip(declared.units, found, strict=True))
    series, summaries, notes = seed_data(declared, units)
    if not series:
        raise UsageProblem(f"{run} has no metrics yet: {notes[0] if notes else 'no seed shipped steps.csv'}")
    named = {f"seed {unit}": data for unit, data in series.items()}
    statuses = {f"seed {unit}": str((documents[unit] or {}).get("status") or "Running") for unit in series}
    plots = all_plots(named, statuses, out)
    seeds = [_seed_row(unit, documents[unit], summaries[unit]) for unit in units]
    html_path = out / "index.html"
    html_path.write_text(page(_summary(declared, row), seeds, plots, out, notes))
    written = {
        "html": str(html_path),
        "plots": [{"file": str(out / p.file), "title": p.title, "points": p.points} for p in plots],
        "seeds": seeds,
        "notes": notes,
    }
    (out / "summary.json").write_text(json.dumps(written, indent=2, default=str))
    if as_json:
        render.emit_json(written)
        return
    render.out().print(f"wrote {html_path} and {len(plots)} plots ({', '.join(p.file for p in plots)})")
    for line in notes:
        render.note(line)


def _seed_row(unit: int, record: dict[str, Any] | None, summary: dict[str, Any] | None) -> dict[str, Any]:
    record = record or {}
    return {
        "unit": unit,
        "status": record.get("status") or "Running",
        "steps": record.get("steps", (summary or {}).get("steps")),
        "recoveries": record.get("recoveries"),
        "checkpoint": record.get("checkpoint") or (record.get("recorded") or {}).get("checkpoint"),
        "reason": record.get("reason"),
        "energyJoules": (summary or {}).get("energy_joules"),
        "maxNociceptor": (summary or {}).get("max_nociceptor"),
    }


def _summary(declared: Declared, row: Row) -> dict[str, Any]:
    return {
        "name": declared.name,
        "status": row.status,
        "subtitle": f"{declared.mode} run, spec hash {row.spec_hash}, {len(declared.units)} seed(s); {row.detail}".rstrip("; "),
        "facts": {
            "seeds ended": f"{row.done} of {row.total}",
            "recoveries": row.recoveries,
            "started": render.since(row.started),
            "elapsed": render.duration(row.elapsed_seconds),
            "GPU-hours": f"{row.gpu_hours:.2f}",
            "cost so far": render.money(row.cost_usd, row.estimated),
            "artifacts": f"s3://{declared.where.artifacts_bucket}/{declared.where.prefix}",
            "checkpoints": declared.checkpoints_uri,
        },
    }


COMMANDS = (report_command,)
