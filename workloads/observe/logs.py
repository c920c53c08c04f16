"""A run's logs: from the Kubernetes API while its pods exist, from CloudWatch Logs once they are gone.

The CloudWatch copy is the Container Insights add-on's (amazon-cloudwatch-observability, chart 6.4.0, values.yaml
`application-log.conf`): Fluent Bit tails /var/log/containers/*.log with the tag `application.*`, adds the pod's
Kubernetes metadata (the `kubernetes` filter, labels and annotations off) and ships every line to
`/aws/containerinsights/<cluster>/application` (naming.container_log_group), in streams named
`<node>-application.var.log.containers.<pod>_<namespace>_<container>-<container id>.log`. Each event is the Fluent Bit
record as JSON: `log` (the line), `stream`, `time`, and `kubernetes` (`pod_name`, `namespace_name`, `container_name`,
`host`, ...). The node, and so the stream's prefix, is not known once a pod is gone, so the events are found with
FilterLogEvents over the group, a JSON filter on the namespace and the run's pod names, then matched exactly here.

Which pods a run had comes from its attempt markers in S3 (each pod of a seed writes one, named `<utc>-<pod>.json`).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from workloads.observe import records
from workloads.observe.fleet import Declared

CLI_ADVICE = ""


class LogGroupMissing(Exception):
    """The stack's container log group does not exist (observability off, or never deployed)."""


@dataclass(frozen=True)
class LogLine:
    at: str  # RFC 3339, UTC
    unit: int | None  # the seed (a job's shard)
    pod: str
    container: str
    text: str
    source: str  # api | cloudwatch


def recorded_pods(declared: Declared, units: tuple[int, ...]) -> dict[str, tuple[int, str]]:
    """Every pod that started a seed, from its attempt markers: pod name -> (seed, the marker's UTC time)."""
    at = declared.where
    found: dict[str, tuple[int, str]] = {}
    for unit in units:
        for marker in records.attempt_markers(at.region, at.artifacts_bucket, declared.unit_prefix(unit), CLI_ADVICE):
            name = str(marker["Key"]).rsplit("/", 1)[-1].removesuffix(".json")
            stamp, _, pod = name.partition("-")
            if pod:
                found[pod] = (unit, records.utc(marker["LastModified"]) if stamp else "")
    return found


def filter_pattern(namespace: str, run: str) -> str:
    """CloudWatch's JSON filter for the run's pods (`<run>-...`: a Job's pods are named after it); the exact pods are
    matched on the events (another run's name may start the same)."""
    return f'{{ $.kubernetes.namespace_name = "{namespace}" && $.kubernetes.pod_name = "{run}-*" }}'


def _millis(stamp: str | datetime.datetime) -> int:
    moment = stamp if isinstance(stamp, datetime.datetime) else datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1000)


def _iso(millis: int) -> str:
    return datetime.datetime.fromtimestamp(millis / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def cloudwatch_lines(
    region: str,
    group: str,
    namespace: str,
    run: str,
    pods: dict[str, int | None],
    containers: set[str] | None,
    start: str | datetime.datetime,
    end: datetime.datetime | None = None,
    seen: set[str] | None = None,
) -> Iterator[LogLine]:
    """Events of these pods (and containers) between `start` and `end`, oldest first; `seen` event ids are skipped
    and filled (a follower polls the same window edge twice)."""
    from botocore.exceptions import ClientError

    from workloads import eks_auth

    client = eks_auth.logs_client(region)
    query: dict[str, Any] = {"logGroupName": group, "filterPattern": filter_pattern(namespace, run), "startTime": _millis(start)}
    if end is not None:
        query["endTime"] = _millis(end)
    found: list[LogLine] = []
    try:
        for page in client.get_paginator("filter_log_events").paginate(**query):
            for event in page.get("events") or []:
                if seen is not None:
                    if event["eventId"] in seen:
                        continue
                    seen.add(event["eventId"])
                line = _line(event, pods, containers)
                if line is not None:
                    found.append(line)
    except ClientError as err:
        if (err.response.get("Error") or {}).get("Code") == "ResourceNotFoundException":
            raise LogGroupMissing(group) from None
        raise
    yield from sorted(found, key=lambda line: line.at)


def _line(event: dict[str, Any], pods: dict[str, int | None], containers: set[str] | None) -> LogLine | None:
    try:
        record = json.loads(event.get("message") or "")
    except ValueError:
        return None
    meta = record.get("kubernetes") or {} if isinstance(record, dict) else {}
    pod, container = str(meta.get("pod_name") or ""), str(meta.get("container_name") or "")
    if pod not in pods or (containers is not None and container not in containers):
        return None
    text = str(record.get("log") or "").rstrip("\n")
    return LogLine(_iso(int(event["timestamp"])), pods[pod], pod, container, text, "cloudwatch")
