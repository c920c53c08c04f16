"""A run's Pushgateway address (workloads/renderers/run.py, workloads/identity.py RunContext): only glue and the
artifact-uploader get it, only where the collector scrapes the Pushgateway, and it never enters the spec hash, so
turning metrics or observability on or off never reruns a run. The dynamic provider is driven against the fake API
server (tests/fake_kube.py); tests/test_run_changes.py shows the same on the whole program's plan."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fake_kube import FakeKube, run_props
from provider_support import NS, RUN, stored, writes

from naming import pushgateway_url
from workloads import budget
from workloads.provider import SimRunProvider

pytestmark = pytest.mark.usefixtures("provider_world")
URL = pushgateway_url()
METRICS_ENV = {
    "glue": {
        "SIMFLEET_PUSHGATEWAY_URL": URL,
        "SIMFLEET_METRICS_PUSH_SECONDS": "10",
        "SIMFLEET_METRICS_TIMEOUT_SECONDS": "2",
    },
    "artifact-uploader": {
        "SIMFLEET_PUSHGATEWAY_URL": URL,
        "SIMFLEET_METRICS_LINGER_SECONDS": "40",
        "SIMFLEET_TERM_METRICS_SECONDS": "118",
    },
}
PUSH_KEYS = {"SIMFLEET_PUSHGATEWAY_URL", "SIMFLEET_METRICS_PUSH_SECONDS", "SIMFLEET_METRICS_TIMEOUT_SECONDS"}


def containers(cluster: FakeKube) -> dict[str, dict[str, str]]:
    job = cluster.get("jobs", NS, RUN)
    assert job is not None
    pod = job["spec"]["template"]["spec"]
    return {c["name"]: {e["name"]: e.get("value") for e in c["env"]} for c in [*pod["initContainers"], *pod["containers"]]}


def test_only_glue_and_the_uploader_get_the_pushgateway(cluster: FakeKube) -> None:
    SimRunProvider().create(run_props(cluster.url, viewport=False, pushgateway_url=URL))
    found = containers(cluster)
    for name, values in found.items():
        pushed = {k: v for k, v in values.items() if k in PUSH_KEYS or "METRICS" in k}
        assert pushed == METRICS_ENV.get(name, {}), name
    # The push interval is a third of the collector's scrape interval; the linger one interval plus a timeout.
    assert budget.METRICS_PUSH_SECONDS * 3 == 30 and budget.METRICS_LINGER_SECONDS == 40
    assert budget.TERM_INDEX_SECONDS < budget.TERM_METRICS_SECONDS < budget.SPOT_NOTICE_SECONDS


def test_without_a_scraped_pushgateway_no_container_gets_an_address(cluster: FakeKube) -> None:
    SimRunProvider().create(run_props(cluster.url, viewport=False))
    assert all(not any("PUSHGATEWAY" in k or "METRICS" in k for k in values) for values in containers(cluster).values())


def test_the_pushgateway_is_not_in_the_spec_hash() -> None:
    props = run_props("https://a")
    assert run_props("https://a", pushgateway_url=URL)["specHash"] == props["specHash"]
    assert "pushgatewayUrl" not in json.loads(props["context"])  # off: the stored context is as before


@pytest.mark.parametrize("turned", ["on", "off"])
def test_turning_metrics_on_or_off_updates_the_stored_context_and_never_reruns_the_run(cluster: FakeKube, turned: str) -> None:
    before, after = (None, URL) if turned == "on" else (URL, None)
    props = run_props(cluster.url, viewport=False, pushgateway_url=before)
    outs = SimRunProvider().create(props).outs
    assert outs is not None
    job_uid = cluster.get("jobs", NS, RUN)["metadata"]["uid"]  # type: ignore[index]
    news: dict[str, Any] = {**run_props(cluster.url, viewport=False, pushgateway_url=after), "__provider": "pickled"}
    olds = {**outs, "__provider": "pickled"}
    diff = SimRunProvider().diff(f"{NS}/{RUN}", olds, news)
    assert (diff.replaces, diff.delete_before_replace, diff.changes) == ([], False, True)
    cluster.requests.clear()
    SimRunProvider().update(f"{NS}/{RUN}", olds, news)
    # The live Job is left as it is (its pods keep what they were given); nothing is written to the cluster.
    assert writes(cluster) == [] and cluster.get("jobs", NS, RUN)["metadata"]["uid"] == job_uid  # type: ignore[index]


def test_a_finished_run_stays_finished_when_observability_is_turned_on() -> None:
    # The stored state of a Succeeded run, and the same run planned with the Pushgateway: no replace, so no rerun.
    olds = stored(run_props("https://a"))
    news = {**run_props("https://a", pushgateway_url=URL), "__provider": "pickled"}
    assert (
        json.loads(news["context"])["pushgatewayUrl"] == URL and SimRunProvider().diff(f"{NS}/{RUN}", olds, news).replaces == []
    )
