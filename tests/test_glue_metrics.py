"""The glue runtime's Pushgateway pushes (workloads/glue_runtime/metrics.py): the real runtime between the fake sidecars
(tests/fake_sidecars.py) and a stand-in Pushgateway on 127.0.0.1 that can answer, fail, refuse or hang
(tests/fake_pushgateway.py).

The Pushgateway's URL rules are those of prometheus/pushgateway's README.md at the pinned version (tag v1.11.3,
the chart's appVersion; sections API, URL); the text format is 0.0.4, checked strictly here (prometheus_client is not a dependency).
Nothing asserts on how long anything took: that the control loop never waits on a push is shown by the run reaching
its end while the Pushgateway still holds glue's first push unanswered.
"""

from __future__ import annotations

import base64
import json
import math
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_pushgateway import Pushgateway, absent_url
from pod_harness import GUARD, GluePod, explain, serving, wait_for

import naming
from components.collector import RUN_METRICS
from workloads.glue_runtime import metrics

TROT = Path(__file__).resolve().parent.parent / "glue" / "trot.py"
GROUP = "/metrics/job/simfleet-run/run/trot-test/seed/7"  # GluePod's run and seed
FAST = {"SIMFLEET_METRICS_PUSH_SECONDS": "0.05", "SIMFLEET_SAVE_CHECKPOINT": "false"}
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[GluePod]:
    yield from serving(GluePod(tmp_path))


@pytest.fixture
def gateway() -> Iterator[Pushgateway]:
    yield from serving(Pushgateway())


def parse_gauges(body: str) -> dict[str, float]:
    """The text format 0.0.4, strictly: every line ends in a newline; each sample is one unlabelled gauge (the grouping
    labels come from the URL) after its own HELP and TYPE lines; no name twice."""
    assert body.endswith("\n"), body
    values: dict[str, float] = {}
    typed: dict[str, str] = {}
    helped: set[str] = set()
    for line in body[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _, text = line[7:].partition(" ")
            assert NAME.fullmatch(name) and text and name not in helped, line
            helped.add(name)
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert NAME.fullmatch(name) and name not in typed, line
            typed[name] = kind
        else:
            name, value = line.split(" ")
            assert NAME.fullmatch(name) and name not in values, line
            assert typed.get(name) == "gauge" and name in helped, f"{name} has no `# TYPE {name} gauge` before it"
            values[name] = float(value)
            assert math.isfinite(values[name]), line
    assert set(typed) == set(values), body
    return values


def _started(pod: GluePod, recoveries: int | None) -> None:
    """What checkpoint-fetch leaves for glue: .started with the count of this seed's earlier pods."""
    started: dict[str, Any] = {"startTime": "2026-12-07T10:00:00Z", "recoveries": recoveries, "resumedFrom": None, "notes": []}
    (pod.checkpoints / ".started").write_text(json.dumps(started))


def _record(pod: GluePod) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((pod.checkpoints / ".metrics").read_text())
    return loaded


# ---------------------------------------------------------------------------------------------
# What is pushed, and where
# ---------------------------------------------------------------------------------------------


def test_each_seed_pushes_typed_gauges_to_its_own_group_and_a_final_push_before_the_marker(
    pod: GluePod, gateway: Pushgateway
) -> None:
    _started(pod, 2)
    pod.sim("--interval", "0.01").monty()
    result = pod.run_glue(TROT, SIMFLEET_PUSHGATEWAY_URL=gateway.url + "/", SIMFLEET_STOP_AFTER_SECONDS="1", **FAST)
    assert result.returncode == 0, explain(result)
    pushes = gateway.calls()
    assert len(pushes) >= 3 and {(r["method"], r["path"]) for r in pushes} == {("PUT", GROUP)}
    assert all(r["headers"]["content-type"] == "text/plain; version=0.0.4; charset=utf-8" for r in pushes)
    gauges = [parse_gauges(r["body"]) for r in pushes]
    # Only the names the collector declares (anything else would be pushed for nothing).
    assert set().union(*gauges) <= set(RUN_METRICS) and metrics.GAUGES.keys() == RUN_METRICS.keys()
    first, final = gauges[0], gauges[-1]
    assert first["simfleet_run_recoveries"] == final["simfleet_run_recoveries"] == 2
    assert first["simfleet_run_steps"] == first["simfleet_run_progress_ratio"] == 0
    assert "simfleet_run_brain_latency_seconds" not in first  # no step had asked the brain yet
    marker = pod.marker()
    assert final["simfleet_run_steps"] == marker["steps"] and final["simfleet_run_progress_ratio"] == 1.0
    assert [g["simfleet_run_steps"] for g in gauges] == sorted(g["simfleet_run_steps"] for g in gauges)
    assert any(0 < g.get("simfleet_run_brain_latency_seconds", 0) < 1 for g in gauges)
    # The record the uploader reads: the group, and when the final push ended (before the marker was written).
    record = _record(pod)
    assert record["group"] == GROUP.removeprefix("/metrics/") and record["url"] == gateway.url + "/"
    assert record["pushes"] == len(pushes) and record["failures"] == 0
    assert record["lastPushAt"] <= pod.marker_path.stat().st_mtime
    summary = pod.summary()
    assert (summary["metrics_pushes"], summary["metrics_push_failures"]) == (len(pushes), 0)


def test_a_seed_without_a_stop_time_pushes_no_progress_and_unknown_recoveries_are_left_out(
    pod: GluePod, gateway: Pushgateway
) -> None:
    _started(pod, None)  # checkpoint-fetch could not count the attempts
    pod.sim("--done-after", "30").monty()
    result = pod.run_glue(TROT, SIMFLEET_PUSHGATEWAY_URL=gateway.url, **FAST)
    assert result.returncode == 0, explain(result)
    final = parse_gauges(gateway.calls()[-1]["body"])
    assert set(final) <= {"simfleet_run_steps", "simfleet_run_brain_latency_seconds"}
    assert final["simfleet_run_steps"] == pod.marker()["steps"]


def test_no_url_no_push_and_no_record(pod: GluePod, gateway: Pushgateway) -> None:
    pod.sim("--done-after", "20").monty()
    result = pod.run_glue(TROT, **FAST)
    assert result.returncode == 0, explain(result)
    assert gateway.calls() == [] and not (pod.checkpoints / ".metrics").exists()
    assert "metrics_pushes" not in pod.summary() and "push" not in result.stdout


def test_a_url_that_is_not_http_is_logged_and_nothing_is_pushed(pod: GluePod, gateway: Pushgateway) -> None:
    pod.sim("--done-after", "20").monty()
    url = gateway.url.replace("http://", "https://")
    result = pod.run_glue(TROT, SIMFLEET_PUSHGATEWAY_URL=url, **FAST)
    assert result.returncode == 0, explain(result)
    assert f"not pushing metrics: SIMFLEET_PUSHGATEWAY_URL is not an http:// URL: {url!r}" in result.stdout
    assert gateway.calls() == [] and pod.marker()["status"] == "Succeeded"


# ---------------------------------------------------------------------------------------------
# Faults: a Pushgateway that hangs, refuses or fails never slows or changes the run
# ---------------------------------------------------------------------------------------------


def test_the_run_reaches_its_end_while_the_pushgateway_holds_glues_first_push(pod: GluePod, gateway: Pushgateway) -> None:
    gateway.hang()
    pod.sim("--interval", "0.01").monty()
    glue = pod.start_glue(
        TROT, SIMFLEET_PUSHGATEWAY_URL=gateway.url, SIMFLEET_STOP_AFTER_SECONDS="1", SIMFLEET_METRICS_TIMEOUT_SECONDS="60", **FAST
    )
    gateway.held.wait(GUARD)
    # Every step of the seed runs, and both sidecars are told to finish, while the first push is still unanswered.
    wait_for(lambda: pod.events(event="finish"), "glue to finish the sidecars")
    assert len(gateway.calls()) == 1 and not pod.marker_path.exists()
    gateway.release()
    stdout, stderr = glue.communicate(timeout=GUARD)
    assert glue.returncode == 0, f"{stdout}\n{stderr}"
    final = parse_gauges(gateway.calls()[-1]["body"])
    # Steps went on while the push hung: a second of 10 ms steps is ~100; a glue blocked on the push would have stopped
    # at its first. 20, not 90: a machine under load (8 busy processes on 2 cores) reached 82-84.
    assert final["simfleet_run_steps"] == pod.marker()["steps"] >= 20 and final["simfleet_run_progress_ratio"] == 1.0
    assert len(gateway.calls()) == 2  # the held one, then the final one: no pushes queued up behind it


def test_a_pushgateway_that_never_answers_costs_the_marker_one_timeout_and_counts_as_maybe_reached(
    pod: GluePod, gateway: Pushgateway
) -> None:
    gateway.hang()
    pod.sim("--interval", "0.01").monty()
    result = pod.run_glue(
        TROT,
        SIMFLEET_PUSHGATEWAY_URL=gateway.url,
        SIMFLEET_STOP_AFTER_SECONDS="0.5",
        SIMFLEET_METRICS_TIMEOUT_SECONDS="0.3",
        **FAST,
    )
    assert result.returncode == 0, explain(result)
    assert pod.marker()["status"] == "Succeeded"
    assert result.stdout.count("metrics push to") == 1 and "timed out" in result.stdout
    summary, record = pod.summary(), _record(pod)
    assert summary["metrics_pushes"] == 0 and summary["metrics_push_failures"] >= 1
    # A push that timed out may have reached the Pushgateway: the uploader still lingers for it.
    assert record["lastPushAt"] is not None


@pytest.mark.parametrize("fault", ["refused", "error-500"])
def test_a_refusing_or_failing_pushgateway_is_logged_once_counted_and_never_changes_the_run(
    pod: GluePod, gateway: Pushgateway, fault: str
) -> None:
    url = absent_url() if fault == "refused" else gateway.url
    gateway.status = 500
    pod.sim("--interval", "0.01").monty()
    result = pod.run_glue(TROT, SIMFLEET_PUSHGATEWAY_URL=url, SIMFLEET_STOP_AFTER_SECONDS="0.5", **FAST)
    assert result.returncode == 0, explain(result)
    assert pod.marker()["status"] == "Succeeded" and pod.marker()["reason"] is None
    warning = [line for line in result.stdout.splitlines() if "metrics push to" in line]
    assert len(warning) == 1, result.stdout
    assert ("HTTP 500" in warning[0]) == (fault == "error-500") and ("refused" in warning[0]) == (fault == "refused")
    summary, record = pod.summary(), _record(pod)
    assert summary["metrics_pushes"] == 0 and summary["metrics_push_failures"] == record["failures"] >= 2
    assert record["lastPushAt"] is None  # nothing reached it: the uploader need not linger


def test_sigterm_still_pushes_the_final_values_before_the_interrupted_marker(pod: GluePod, gateway: Pushgateway) -> None:
    pod.sim().monty()
    glue = pod.start_glue(TROT, SIMFLEET_PUSHGATEWAY_URL=gateway.url, SIMFLEET_STOP_AFTER_SECONDS="1000", **FAST)
    wait_for(lambda: len(pod.events("sim", "action")) >= 3, "three actions at the simulator")
    glue.send_signal(signal.SIGTERM)
    glue.communicate(timeout=GUARD)
    assert glue.returncode == 143 and pod.marker()["status"] == "Interrupted"
    final = parse_gauges(gateway.calls()[-1]["body"])
    assert final["simfleet_run_steps"] == pod.marker()["steps"] and 0 < final["simfleet_run_progress_ratio"] < 1


# ---------------------------------------------------------------------------------------------
# The grouping key (prometheus/pushgateway README.md at v1.11.3, section URL) and the gauges, as pure functions
# ---------------------------------------------------------------------------------------------


def test_the_grouping_path_follows_the_pushgateway_readme() -> None:
    assert (
        metrics.grouping_path({"job": metrics.JOB, "run": "trot-sweep", "seed": "3"}) == "job/simfleet-run/run/trot-sweep/seed/3"
    )
    # The examples of the Pushgateway's README.md: a `/` in a value, an empty value, and non-ASCII (its exact base64 text).
    assert (
        metrics.grouping_path({"job": "directory_cleaner", "path": "/var/tmp"})
        == "job/directory_cleaner/path@base64/L3Zhci90bXA="
    )
    assert metrics.grouping_path({"job": "example", "first_label": "", "second_label": "foobar"}) == (
        "job/example/first_label@base64/=/second_label/foobar"
    )
    assert metrics.grouping_path({"job": "titan", "name": "Προμηθεύς"}) == "job/titan/name@base64/zqDPgc6_zrzOt864zrXPjc-C"
    # Dot segments, which a router collapses, and a space go encoded too; every encoded value decodes back.
    for value in ("..", ".", "a b", "x?y#z"):
        encoded = metrics.grouping_path({"job": "j", "v": value}).split("/")[-1]
        assert base64.urlsafe_b64decode(encoded).decode() == value
    assert metrics.JOB == naming.PUSHGATEWAY_RUN_JOB


def test_gauges_from_the_heartbeat_state() -> None:
    state = {"steps": 120, "simulationSeconds": 30.0, "stopAfterSeconds": 120.0}
    assert metrics.seed_gauges(state, 0.004, 1.0) == {
        "simfleet_run_progress_ratio": 0.25,
        "simfleet_run_steps": 120.0,
        "simfleet_run_brain_latency_seconds": 0.004,
        "simfleet_run_recoveries": 1.0,
    }
    # Past the stop time by part of a step, or nothing left to run: 1. Unknown values are left out of the text.
    assert metrics.seed_gauges({**state, "simulationSeconds": 120.01}, math.nan, None)["simfleet_run_progress_ratio"] == 1.0
    assert metrics.seed_gauges({**state, "stopAfterSeconds": 0}, math.nan, None)["simfleet_run_progress_ratio"] == 1.0
    text = metrics.exposition(metrics.seed_gauges({**state, "stopAfterSeconds": None}, math.nan, None))
    assert parse_gauges(text) == {"simfleet_run_steps": 120.0}


def test_latency_is_the_mean_since_the_last_read() -> None:
    latency = metrics.Latency()
    assert math.isnan(latency.mean_since_last())
    latency.add(0.002)
    latency.add(0.004)
    assert latency.mean_since_last() == pytest.approx(0.003)
    assert math.isnan(latency.mean_since_last())
    latency.add(0.010)
    assert latency.mean_since_last() == pytest.approx(0.010)
