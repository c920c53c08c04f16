"""`simfleet artifacts RUN`: list a run's artifacts and checkpoints from its records, download them with progress bars
and several at once, or print presigned URLs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from cli import render
from cli.errors import Partial
from cli.session import Lazy, units_of
from config import parse_duration
from workloads import eks_auth
from workloads.observe.artifacts import Artifact, artifacts_of

DOWNLOAD_THREADS = 8


@click.command("artifacts")
@click.argument("run")
@click.option("--seed", type=int, help="Only this seed (a job's shard).")
@click.option(
    "--get", "directory", type=click.Path(path_type=Path, file_okay=False), help="Download them into DIR/<run>/<seed-n>/."
)
@click.option("--url", "urls", is_flag=True, help="Print a presigned HTTPS URL for each (no AWS credentials needed to open it).")
@click.option("--expires", default="1h", show_default=True, help="How long the presigned URLs work (at most 7d).")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(["logs", "videos", "metrics", "checkpoint", "partial-checkpoint", "output", "other"]),
    help="Only these kinds (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def artifacts_command(
    lazy: Lazy,
    run: str,
    seed: int | None,
    directory: Path | None,
    urls: bool,
    expires: str,
    kinds: tuple[str, ...],
    as_json: bool,
) -> None:
    """A run's artifacts (logs, videos, metrics), its checkpoints, a job's outputs: where they are, how big, fetched."""
    session = lazy.get()
    declared = session.declared(run)
    fleet = session.load()
    found, _ = artifacts_of(declared, units_of(declared, seed))
    found = [a for a in found if not kinds or a.kind in kinds]
    unit_dir = {True: "seed", False: "shard"}[declared.kind == "run"]
    if urls:
        seconds = int(parse_duration(expires))
        if not 0 < seconds <= 7 * 24 * 3600:
            raise click.BadParameter("presigned URLs work for at most 7 days (SigV4)", param_hint="--expires")
        client = eks_auth.s3_client(fleet.region)
        signed = [
            {
                **a.as_json(),
                "url": client.generate_presigned_url("get_object", Params={"Bucket": a.bucket, "Key": a.key}, ExpiresIn=seconds),
            }
            for a in found
        ]
        if as_json:
            render.emit_json(signed)
        else:
            for item in signed:
                click.echo(f"{unit_dir} {item['unit']}\t{item['relative']}\t{item['url']}")
        return
    if directory is not None:
        download(found, directory / declared.name, unit_dir, fleet.region)
        return
    if as_json:
        render.emit_json([a.as_json() for a in found])
        return
    table = Table(title=f"{declared.name}: {len(found)} files, {_size(sum(a.size or 0 for a in found))}", title_justify="left")
    for column in (unit_dir.upper(), "KIND", "SIZE", "MODIFIED", "WHERE"):
        table.add_column(column, justify="right" if column == "SIZE" else "left", overflow="fold")
    for a in found:
        table.add_row(str(a.unit), a.kind, _size(a.size), render.since(a.last_modified), a.uri)
    render.out().print(table)
    if not found:
        render.note(f"nothing yet: a seed's artifacts are shipped when it ends (simfleet status {declared.name})")


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def download(found: list[Artifact], root: Path, unit_dir: str, region: str) -> None:
    """Every file into root/<seed-n>/<its path>, several at once, one progress bar for the bytes; a file already
    there with the same size is kept. What could not be fetched is listed (exit 1)."""
    client = eks_auth.s3_client(region)
    plan = [(a, root / f"{unit_dir}-{a.unit}" / a.relative) for a in found]
    todo = [(a, path) for a, path in plan if not (path.is_file() and a.size is not None and path.stat().st_size == a.size)]
    failed: list[str] = []
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=render.err(), transient=False) as progress:
        task = progress.add_task(f"{len(todo)} of {len(plan)} files", total=sum(a.size or 0 for a, _ in todo))

        def fetch(item: tuple[Artifact, Path]) -> None:
            artifact, path = item
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".part")
            client.download_file(artifact.bucket, artifact.key, str(partial), Callback=lambda n: progress.update(task, advance=n))
            partial.replace(path)

        with ThreadPoolExecutor(DOWNLOAD_THREADS) as pool:
            futures = {pool.submit(fetch, item): item for item in todo}
            for future in as_completed(futures):
                error = future.exception()
                if error is not None:
                    failed.append(f"{futures[future][0].uri}: {error}")
    kept = len(plan) - len(todo)
    render.note(f"{len(todo) - len(failed)} downloaded, {kept} already there, into {root}")
    if failed:
        raise Partial(f"{len(failed)} file(s) could not be downloaded:\n  " + "\n  ".join(failed))


COMMANDS = (artifacts_command,)
