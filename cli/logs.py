"""`simfleet logs RUN`: a run's or a job's container logs, the same command while its pods run (the API) and after
they are gone (CloudWatch Logs); a sweep's lines carry their seed."""

from __future__ import annotations

import contextlib
import datetime
import json
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict

import click

from cli import render
from cli.session import Lazy, Session, UsageProblem, units_of
from config import parse_duration
from workloads.kube import spec_hash_of
from workloads.observe.cluster import ClusterError, ClusterReader, seed_of_pod
from workloads.observe.fleet import KIND_RUN, Declared
from workloads.observe.listing import Snapshot as Shot
from workloads.observe.listing import at_live_hash, read_records
from workloads.observe.logs import LogGroupMissing, LogLine, cloudwatch_lines, recorded_pods

# The names a researcher types, and the containers they are (workloads/renderers/run.py, job.py).
CONTAINERS = {
    KIND_RUN: {
        "glue": "glue",
        "unitree-sim": "unitree-sim",
        "monty": "monty",
        "uploader": "artifact-uploader",
        "fetch": "checkpoint-fetch",
    },
    "job": {"work": "work", "uploader": "output-uploader"},
}
DEFAULT_CONTAINER = {KIND_RUN: "glue", "job": "work"}
POLL_SECONDS = 2.0  # how often a follower looks for new pods, and for the run's end
CLOUDWATCH_POLL_SECONDS = 5.0  # Fluent Bit flushes every 5 s (the add-on's [SERVICE] Flush)


def _containers(declared: Declared, asked: tuple[str, ...]) -> set[str]:
    known = CONTAINERS[declared.kind]
    if "all" in asked:
        return set(known.values())
    wrong = [c for c in asked if c not in known]
    if wrong:
        raise UsageProblem(f"no container {', '.join(wrong)} in a {declared.kind}'s pod; one of {', '.join(known)}, or all")
    return {known[c] for c in asked or (DEFAULT_CONTAINER[declared.kind],)}


class Printer:
    def __init__(self, declared: Declared, containers: set[str], as_json: bool) -> None:
        self.sweep = len(declared.units) > 1
        self.many = len(containers) > 1
        self.unit = declared.unit
        self.as_json = as_json
        self.count = 0

    def __call__(self, line: LogLine) -> None:
        self.count += 1
        if self.as_json:
            click.echo(json.dumps(asdict(line)))
            return
        tags = [f"{self.unit} {line.unit}" if self.sweep else "", line.container if self.many else ""]
        head = " ".join(t for t in tags if t)
        click.echo(f"[{head}] {line.text}" if head else line.text)


@click.command("logs")
@click.argument("run")
@click.option("--seed", type=int, help="Only this seed (a job's shard).")
@click.option(
    "--container",
    "-c",
    "asked",
    multiple=True,
    help="glue (default), unitree-sim, monty, uploader, fetch; a job's: work (default), uploader; or all. Repeatable.",
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the run ends (Ctrl-C stops).")
@click.option("--since", help="Only lines newer than this (10m, 2h, 1d).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: at, unit, pod, container, text, source.")
@click.pass_obj
def logs_command(
    lazy: Lazy, run: str, seed: int | None, asked: tuple[str, ...], follow: bool, since: str | None, as_json: bool
) -> None:
    """A run's logs: from the cluster while its pods exist, from CloudWatch Logs once they are gone."""
    session = lazy.get()
    declared = session.declared(run)
    containers = _containers(declared, asked)
    units = units_of(declared, seed)
    since_seconds = int(parse_duration(since)) if since else None
    printer = Printer(declared, containers, as_json)
    reader, live, declared = _live_pods(session, declared, units)
    recorded = recorded_pods(declared, units)
    gone: dict[str, int | None] = {pod: unit for pod, (unit, _) in recorded.items() if pod not in live}
    start = _start(since_seconds, [at for _, at in recorded.values()])
    if gone:
        for line in _cloudwatch(session, declared, gone, containers, start, printer):
            printer(line)
    if not follow:
        lines: list[LogLine] = []
        for pod, unit in live.items():
            for container in sorted(containers):
                lines += (
                    [LogLine(at, unit, pod, container, text, "api") for at, text in reader.pod_log(pod, container, since_seconds)]
                    if reader
                    else []
                )
        for line in sorted(lines, key=lambda item: item.at):
            printer(line)
    elif reader is not None:
        _follow_api(reader, declared, units, containers, since_seconds, printer, set(gone))
    else:
        _follow_cloudwatch(session, declared, units, containers, start, printer)
    if printer.count == 0 and not as_json:
        render.note(
            f"no log lines for {declared.name} ({', '.join(sorted(containers))}) yet"
            + ("" if live or gone else ": no pod has started it")
        )


def _start(since_seconds: int | None, attempts: list[str]) -> datetime.datetime:
    """Where CloudWatch is searched from: --since, else a few minutes before the first pod's attempt marker (a pod logs
    only after its init container wrote it), else a day back."""
    now = datetime.datetime.now(datetime.UTC)
    if since_seconds is not None:
        return now - datetime.timedelta(seconds=since_seconds)
    first = min((datetime.datetime.fromisoformat(a.replace("Z", "+00:00")) for a in attempts if a), default=None)
    return first - datetime.timedelta(minutes=10) if first else now - datetime.timedelta(days=1)


def _live_pods(
    session: Session, declared: Declared, units: tuple[int, ...]
) -> tuple[ClusterReader | None, dict[str, int | None], Declared]:
    reader = session.reader()
    if reader is None:
        render.note(f"the cluster's API cannot be reached ({session.problem}); logs come from CloudWatch only")
        return None, {}, declared
    try:
        job = reader.job(declared.name)
        declared = at_live_hash(declared, Shot(True, jobs={declared.name: job} if job else {}))
        pods = [p for p in reader.pods(declared.name) if spec_hash_of(p) == declared.spec_hash]
    except ClusterError as err:
        if err.reachable:
            raise
        session.unreachable(err)
        render.note(f"the cluster's API cannot be reached ({err}); logs come from CloudWatch only")
        return None, {}, declared
    live: dict[str, int | None] = {}
    for pod in pods:
        unit = seed_of_pod(pod, job, declared.units)
        if unit in units:
            live[str(pod["metadata"]["name"])] = unit
    return reader, live, declared


def _cloudwatch(
    session: Session,
    declared: Declared,
    pods: dict[str, int | None],
    containers: set[str],
    start: datetime.datetime,
    printer: Printer,
    seen: set[str] | None = None,
) -> Iterable[LogLine]:
    fleet = session.load()
    if fleet.log_group is None:
        render.note(
            f"stack {fleet.stack} ships no container logs to CloudWatch (platform.observability is off): the logs of "
            f"{len(pods)} pod(s) that are gone cannot be read; the run's own log files are artifacts (simfleet artifacts {declared.name})"
        )
        return []
    try:
        return list(
            cloudwatch_lines(fleet.region, fleet.log_group, fleet.namespace, declared.name, pods, containers, start, seen=seen)
        )
    except LogGroupMissing as missing:
        render.note(f"log group {missing} does not exist: the stack's observability add-on has not shipped any log yet")
        return []


def _ended(declared: Declared, units: tuple[int, ...]) -> bool:
    documents = read_records(declared, attempts=False)
    return all(doc is not None for unit, doc in zip(declared.units, documents, strict=True) if unit in units)


def _follow_api(
    reader: ClusterReader,
    declared: Declared,
    units: tuple[int, ...],
    containers: set[str],
    since_seconds: int | None,
    printer: Printer,
    done_pods: set[str],
) -> None:
    """One follower per pod and container; new pods (the next wave of a sweep, a retry) are picked up as they come;
    it ends when every seed asked for has its record and no follower is left."""
    lines: queue.Queue[LogLine] = queue.Queue()
    followers: dict[tuple[str, str], threading.Thread] = {}

    def pump(pod: str, unit: int | None, container: str) -> None:
        for at, text in reader.pod_log(pod, container, since_seconds, follow=True):
            lines.put(LogLine(at, unit, pod, container, text, "api"))

    while True:
        job = reader.job(declared.name)
        for pod in reader.pods(declared.name):
            name, unit = str(pod["metadata"]["name"]), seed_of_pod(pod, job, declared.units)
            if spec_hash_of(pod) != declared.spec_hash or unit not in units or name in done_pods:
                continue
            if (pod.get("status") or {}).get("phase") == "Pending" and not _started(pod):
                continue
            for container in containers:
                if (name, container) not in followers:
                    followers[(name, container)] = threading.Thread(target=pump, args=(name, unit, container), daemon=True)
                    followers[(name, container)].start()
        deadline = time.monotonic() + POLL_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                printer(lines.get(timeout=0.2))
        if all(not t.is_alive() for t in followers.values()) and _ended(declared, units):
            while not lines.empty():
                printer(lines.get())
            return


def _started(pod: dict) -> bool:  # type: ignore[type-arg]
    statuses = [
        *((pod.get("status") or {}).get("initContainerStatuses") or []),
        *((pod.get("status") or {}).get("containerStatuses") or []),
    ]
    return any("running" in (c.get("state") or {}) or "terminated" in (c.get("state") or {}) for c in statuses)


def _follow_cloudwatch(
    session: Session, declared: Declared, units: tuple[int, ...], containers: set[str], start: datetime.datetime, printer: Printer
) -> None:
    """Without the API: poll CloudWatch for the run's pods (their attempt markers) until every seed has its record."""
    seen: set[str] = set()
    while True:
        pods: dict[str, int | None] = {pod: unit for pod, (unit, _) in recorded_pods(declared, units).items()}
        for line in _cloudwatch(session, declared, pods, containers, start, printer, seen):
            printer(line)
        if _ended(declared, units):
            return
        time.sleep(CLOUDWATCH_POLL_SECONDS)


COMMANDS = (logs_command,)
