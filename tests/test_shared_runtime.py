"""One runtime ConfigMap per runtime content (issue #17): every Job that mounts it owns it, the garbage collector
removes it with the last one, and a simfleet upgrade brings a new one beside the old, which stays while a Job made
before the upgrade lives.

Through SimRunProvider, the real kubernetes client and the fake API server, whose garbage collector keeps a
dependent while any of its owners is left (tests/test_fake_kube.py checks that against the collector's rules).
"""

from __future__ import annotations

from typing import Any

import pytest
from fake_kube import FakeKube, job_props, run_props
from provider_support import NS, RUN, RUNTIME_CM, writes

import naming
from workloads.provider import SimRunProvider
from workloads.renderers import run as run_renderer
from workloads.renderers.common import Runtime
from workloads.renderers.job import job_runtime

pytestmark = pytest.mark.usefixtures("provider_world")
OTHER = "trot-other"


def runtime_maps(cluster: FakeKube) -> dict[str, list[str]]:
    """Each shared runtime ConfigMap in the cluster and the names of the Jobs that own it."""
    return {
        name: [ref["name"] for ref in obj["metadata"].get("ownerReferences") or []]
        for (plural, _, name), obj in cluster.objects.items()
        if plural == "configmaps" and name.startswith("simfleet-runtime-")
    }


def test_runs_share_one_runtime_configmap_until_the_last_job_goes(cluster: FakeKube) -> None:
    first = SimRunProvider().create(run_props(cluster.url, viewport=False)).outs
    cluster.requests.clear()
    SimRunProvider().create(run_props(cluster.url, run=OTHER, viewport=False))
    # The second run writes its Job and adds it to the runtime's owners (resourceVersion-guarded): no second copy.
    assert writes(cluster) == [
        ("POST", f"/apis/batch/v1/namespaces/{NS}/jobs"),
        ("PATCH", f"/api/v1/namespaces/{NS}/configmaps/{RUNTIME_CM}"),
    ]
    patch = next(r for r in cluster.requests if r.method == "PATCH")
    assert patch.body["metadata"]["resourceVersion"]
    assert runtime_maps(cluster) == {RUNTIME_CM: [RUN, OTHER]}
    live = cluster.get("configmaps", NS, RUNTIME_CM)
    assert live is not None and live["immutable"] is True
    assert live["metadata"]["annotations"][naming.RUNTIME_SHA_ANNOTATION] == run_renderer.runtime().sha256
    # No run's labels or hash: it is no run's own, and a run's delete never takes it.
    assert (
        naming.RUN_LABEL not in live["metadata"]["labels"] and naming.SPEC_HASH_ANNOTATION not in live["metadata"]["annotations"]
    )

    assert first is not None
    SimRunProvider().delete(f"{NS}/{RUN}", first)
    cluster.collect_garbage()
    assert runtime_maps(cluster) == {RUNTIME_CM: [OTHER]}, "kept for the run still alive, without the gone owner"
    cluster.finish_job(NS, OTHER)
    cluster.expire_job(NS, OTHER)  # the TTL controller: Foreground, then the collector
    assert runtime_maps(cluster) == {}


def test_runs_and_jobs_each_share_their_own_runtime(cluster: FakeKube) -> None:
    SimRunProvider().create(run_props(cluster.url, viewport=False))
    SimRunProvider().create(job_props(cluster.url))
    assert runtime_maps(cluster) == {RUNTIME_CM: [RUN], job_runtime().name: ["resample"]}
    assert job_runtime().name != RUNTIME_CM


def test_a_runtime_removed_with_its_last_owner_is_made_again_by_the_next_run(cluster: FakeKube) -> None:
    outs = SimRunProvider().create(run_props(cluster.url, viewport=False)).outs
    assert outs is not None
    SimRunProvider().delete(f"{NS}/{RUN}", outs)
    cluster.collect_garbage()
    assert runtime_maps(cluster) == {}
    SimRunProvider().create(run_props(cluster.url, run=OTHER, viewport=False))
    assert runtime_maps(cluster) == {RUNTIME_CM: [OTHER]}


def test_a_runtime_created_between_the_read_and_the_create_gets_the_job_as_another_owner(cluster: FakeKube) -> None:
    """Two runs created at once: the other's POST of the runtime lands between this one's read and its POST."""
    SimRunProvider().create(run_props(cluster.url, run=OTHER, viewport=False))
    theirs = cluster.get("configmaps", NS, RUNTIME_CM)
    assert theirs is not None
    del cluster.objects[("configmaps", NS, RUNTIME_CM)]
    original = cluster.handle

    def race(method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
        if method == "POST" and path.endswith("/configmaps") and cluster.get("configmaps", NS, RUNTIME_CM) is None:
            cluster.put_object("configmaps", theirs)
        return original(method, path, body, headers)

    cluster.handle = race  # type: ignore[method-assign, assignment]
    SimRunProvider().create(run_props(cluster.url, viewport=False))
    assert runtime_maps(cluster) == {RUNTIME_CM: [OTHER, RUN]}


def test_an_upgrade_brings_a_new_runtime_and_keeps_the_old_while_a_job_from_before_lives(
    cluster: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run created by the previous simfleet, whose runtime differed.
    before = Runtime.of({**run_renderer.runtime().data, "common.sh": "# the previous simfleet's\n"})
    with monkeypatch.context() as previous:
        previous.setattr(run_renderer, "runtime", lambda: before)
        old_props = run_props(cluster.url, viewport=False)
        SimRunProvider().create(old_props)
    assert before.name != RUNTIME_CM and runtime_maps(cluster) == {before.name: [RUN]}

    # After the upgrade: a new run gets the new runtime; the old one stays, its Job still mounts it.
    SimRunProvider().create(run_props(cluster.url, run=OTHER, viewport=False))
    assert runtime_maps(cluster) == {before.name: [RUN], RUNTIME_CM: [OTHER]}
    # The run from before keeps its spec hash (the runtime is not in it): nothing is replaced or started again, and
    # adopting its live Job (a retry, a lost state) holds the runtime it mounts, not the new one.
    assert run_props(cluster.url, viewport=False)["specHash"] == old_props["specHash"]
    cluster.requests.clear()
    SimRunProvider().create(old_props)
    assert writes(cluster) == [("PATCH", f"/apis/batch/v1/namespaces/{NS}/jobs/{RUN}")]  # only its claim
    assert runtime_maps(cluster) == {before.name: [RUN], RUNTIME_CM: [OTHER]}

    # The old runtime goes with the last Job made before the upgrade; the new one stays.
    cluster.finish_job(NS, RUN)
    cluster.expire_job(NS, RUN)
    assert runtime_maps(cluster) == {RUNTIME_CM: [OTHER]} and cluster.get("jobs", NS, OTHER) is not None
