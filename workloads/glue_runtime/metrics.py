"""The seed's gauges, pushed to the Pushgateway from a background thread that never holds up the control loop.

With SIMFLEET_PUSHGATEWAY_URL set (simfleet gives it only where the stack's collector scrapes the Pushgateway), glue
PUTs these gauges (Prometheus text format 0.0.4, each with its `# TYPE ... gauge`) to
<url>/metrics/job/simfleet-run/run/<run>/seed/<seed> when it starts, every SIMFLEET_METRICS_PUSH_SECONDS while its
heartbeat is fresh, and once more when it ends, just before the done marker (PUT replaces the whole group, so a gauge
that became unknown is gone from it):

    simfleet_run_progress_ratio         simulation time done / SIMFLEET_STOP_AFTER_SECONDS (resumed time included),
                                        0 to 1; absent when the seed runs until the episode is done
    simfleet_run_steps                  control steps of the seed, resumed ones included
    simfleet_run_brain_latency_seconds  mean time Monty took to answer, over the steps since the last push; absent
                                        when it answered none of them in time
    simfleet_run_recoveries             pods of this seed before this one (the attempt markers checkpoint-fetch counted,
                                        <checkpoints>/.started); absent when they could not be counted

Every push is bounded by SIMFLEET_METRICS_TIMEOUT_SECONDS, and so is the wait for the final one. A push that fails is
counted (glue-summary.json: metrics_pushes, metrics_push_failures) and logged the first time only; it never changes
how the run ends. A glue wedged beyond its own bounds (stale heartbeat) stops pushing, so the group the uploader
deletes after it gave glue up is not pushed again.

<checkpoints>/.metrics tells artifact-uploader which group to delete after index.json, and from when to measure the
linger (one scrape interval and timeout, so the collector scrapes the last push once):
    {"url": ..., "group": "job/simfleet-run/run/<run>/seed/<seed>", "lastPushAt": unix seconds | null,
     "pushes": n, "failures": n}
lastPushAt is when the last push that may have reached the Pushgateway ended (answered 2xx, or timed out).
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .result import log, write_json_atomic

JOB = "simfleet-run"  # naming.PUSHGATEWAY_RUN_JOB: the collector's declaration matches it
GAUGES = {
    "simfleet_run_progress_ratio": "simulation time done over the seed's stopAfter, 0 to 1",
    "simfleet_run_steps": "control steps of the seed, resumed ones included",
    "simfleet_run_brain_latency_seconds": "mean time the brain took to answer, over the steps since the last push",
    "simfleet_run_recoveries": "pods of this seed before this one (spot reclaims, drains, retries)",
}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# No proxy from the environment: the Pushgateway is in the cluster, and a proxy would only add a hop that can hang.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PLAIN_VALUE = re.compile(r"[A-Za-z0-9._~-]+")  # RFC 3986 unreserved: safe as one path segment


def grouping_path(labels: Mapping[str, str]) -> str:
    """The grouping key as a URL path after /metrics/ (prometheus/pushgateway README.md v1.11.3, section URL): `name/value` per label, and
    `name@base64/<RFC 4648 URL-safe base64>` for a value that a path segment cannot carry as it is (a `/`, an empty
    value, a dot segment the router would collapse, anything outside the unreserved characters)."""
    parts = []
    for name, value in labels.items():
        if PLAIN_VALUE.fullmatch(value) and value.strip(".") != "":
            parts.append(f"{name}/{value}")
        else:
            encoded = base64.urlsafe_b64encode(value.encode()).decode()
            parts.append(f"{name}@base64/{encoded or '='}")  # an empty value needs its one `=`
    return "/".join(parts)


def exposition(values: Mapping[str, float]) -> str:
    """The text format 0.0.4: HELP, TYPE gauge and the sample of each known, finite value; every line ends in \\n."""
    lines: list[str] = []
    for name, value in values.items():
        if not math.isfinite(value):
            continue
        lines += [f"# HELP {name} {GAUGES[name]}", f"# TYPE {name} gauge", f"{name} {float(value)!r}"]
    return "".join(line + "\n" for line in lines)


def read_recoveries(started: Path) -> float | None:
    """How many pods of this seed came before this one: checkpoint-fetch's count in .started (null when it could not
    count them)."""
    try:
        value = json.loads(started.read_text()).get("recoveries")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def seed_gauges(state: Mapping[str, Any], brain_latency: float, recoveries: float | None) -> dict[str, float]:
    """The gauges from glue's heartbeat state (liveness.Heartbeat); NaN for a value that is not known (left out)."""
    stop = state.get("stopAfterSeconds")
    done = float(state.get("simulationSeconds") or 0.0)
    progress = math.nan if stop is None else 1.0 if stop <= 0 else min(1.0, max(0.0, done / stop))
    return {
        "simfleet_run_progress_ratio": progress,
        "simfleet_run_steps": float(state.get("steps") or 0),
        "simfleet_run_brain_latency_seconds": brain_latency,
        "simfleet_run_recoveries": math.nan if recoveries is None else recoveries,
    }


class Latency:
    """Brain answer times from the control loop; the pusher reads the mean of those added since its last read.

    The loop only replaces one tuple per step (atomic under the GIL): no lock, nothing for it to wait on."""

    def __init__(self) -> None:
        self.total: tuple[float, int] = (0.0, 0)
        self.read: tuple[float, int] = (0.0, 0)

    def add(self, seconds: float) -> None:
        seconds_sum, count = self.total
        self.total = (seconds_sum + seconds, count + 1)

    def mean_since_last(self) -> float:
        now = self.total
        seconds, count = now[0] - self.read[0], now[1] - self.read[1]
        self.read = now
        return seconds / count if count else math.nan


class Pusher:
    """One daemon thread: a push at start, one every `every` seconds while `alive()`, a final one at close()."""

    def __init__(
        self,
        url: str,
        labels: Mapping[str, str],
        every: float,
        timeout: float,
        record: Path,
        gauges: Callable[[], dict[str, float]],
        alive: Callable[[], bool],
    ) -> None:
        self.group = grouping_path(labels)
        self.url = f"{url.rstrip('/')}/metrics/{self.group}"
        self.base_url = url
        self.every = every
        self.timeout = timeout
        self.record = record
        self.gauges = gauges
        self.alive = alive
        self.pushes = 0
        self.failures = 0
        self.last_push_at: float | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="metrics-push", daemon=True)

    def start(self) -> Pusher:
        log(f"pushing the seed's metrics to {self.url} every {self.every:g} s")
        self._write_record()
        self.thread.start()
        return self

    def close(self) -> None:
        """The final push, waited for at most `timeout` seconds: the done marker must not wait on the Pushgateway."""
        self.stopping.set()
        self.thread.join(self.timeout)
        if self.thread.is_alive():
            log(f"the final metrics push did not end within {self.timeout:g} s; going on without it")

    def _run(self) -> None:
        self._push()
        while not self.stopping.wait(self.every):
            if self.alive():
                self._push()
        self._push()

    def _push(self) -> None:
        body = exposition(self.gauges()).encode()
        request = urllib.request.Request(self.url, data=body, method="PUT", headers={"Content-Type": CONTENT_TYPE})
        reached = False
        try:
            with OPENER.open(request, timeout=self.timeout) as answer:
                answer.read()
            self.pushes += 1
            reached = True
        except (OSError, ValueError) as err:  # URLError and HTTPError are OSErrors; a timeout is one too
            reached = isinstance(err, TimeoutError) or isinstance(getattr(err, "reason", None), TimeoutError)
            self.failures += 1
            if self.failures == 1:
                log(f"metrics push to {self.url} failed (the run goes on; later failures are only counted): {_why(err)}")
        if reached:
            self.last_push_at = time.time()
        self._write_record()

    def _write_record(self) -> None:
        document = {
            "url": self.base_url,
            "group": self.group,
            "lastPushAt": self.last_push_at,
            "pushes": self.pushes,
            "failures": self.failures,
        }
        # A full disk must not end the run (the uploader then finds no group to delete: it stays until the seed's next
        # pod replaces it, or the Pushgateway is wiped).
        with contextlib.suppress(OSError):
            write_json_atomic(self.record, document, durable=False)


def _why(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return f"{type(err).__name__}: {err}"
