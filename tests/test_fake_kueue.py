"""The fake API server's Kueue objects, visibility API, pod logs, nodes and events, through the real kubernetes client:
they answer as Kueue v0.19.2 and the API server do (tests/fake_kueue.py says where each behaviour was read)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import fake_kube
import fake_kueue
import pytest
from fake_kube import FakeKube
from kubernetes import client
from kubernetes.client.exceptions import ApiException

NS = "simfleet-runs"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as server:
        yield server


def api(kube: FakeKube) -> Any:
    return client.ApiClient(client.Configuration(host=kube.url))


def typed(kind: Any, kube: FakeKube) -> Any:
    """A typed API class of the real client (CoreV1Api, BatchV1Api, CustomObjectsApi) over the fake, untyped for tests."""
    return kind(api(kube))


def queued_job(kube: FakeKube, name: str, queue: str = "team-a", parallelism: int = 1) -> dict[str, Any]:
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS, "labels": {fake_kueue.QUEUE_LABEL: queue}},
        "spec": {
            "suspend": True,
            "parallelism": parallelism,
            "template": {"spec": {"containers": [{"name": "glue"}, {"name": "artifact-uploader"}], "restartPolicy": "Never"}},
        },
    }
    return typed(client.BatchV1Api, kube).create_namespaced_job(NS, job).to_dict()


def pending(kube: FakeKube, queue: str, **query: Any) -> tuple[int, dict[str, Any]]:
    path = f"/apis/visibility.kueue.x-k8s.io/v1beta2/namespaces/{NS}/localqueues/{queue}/pendingworkloads"
    response = api(kube).call_api(*api(kube).param_serialize("GET", path, query_params=list(query.items()) or None))
    return response.status, json.loads(response.read())


def test_a_queued_job_gets_a_workload_owned_by_it_and_labelled_with_its_uid(kube: FakeKube) -> None:
    job = queued_job(kube, "walk")
    fake_kueue.submit(kube, NS, "walk", message="couldn't assign flavors to pod set main: insufficient quota")
    [workload] = typed(client.CustomObjectsApi, kube).list_namespaced_custom_object("kueue.x-k8s.io", "v1beta2", NS, "workloads")[
        "items"
    ]
    assert workload["metadata"]["name"].startswith("job-walk-")
    assert workload["metadata"]["labels"][fake_kueue.JOB_UID_LABEL] == job["metadata"]["uid"]
    assert workload["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    assert workload["spec"]["queueName"] == "team-a" and workload["spec"]["active"] is True
    [condition] = workload["status"]["conditions"]
    assert (condition["type"], condition["status"]) == ("QuotaReserved", "False") and "insufficient quota" in condition["message"]


def test_visibility_lists_a_local_queue_s_pending_workloads_in_the_cluster_queue_s_order(
    kube: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Creation timestamps have whole seconds: the fake's clock moves on a second each time it stamps an object, as if
    # a second passed between the submissions (before, the test slept 1 s after each).
    ticks = itertools.count(int(time.time()))
    monkeypatch.setattr(fake_kube, "now", lambda: datetime.fromtimestamp(next(ticks), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    fake_kueue.add_local_queue(kube, NS, "team-a", "cq-a")
    fake_kueue.add_local_queue(kube, NS, "team-b", "cq-a")  # shares the ClusterQueue
    for name, queue, priority in (("a1", "team-a", 0), ("b1", "team-b", 0), ("a2", "team-a", 100), ("a3", "team-a", 0)):
        queued_job(kube, name, queue)
        fake_kueue.submit(kube, NS, name, priority=priority)
    fake_kueue.admit(kube, NS, "a3", "cq-a", "spot")  # admitted: no longer pending
    status, summary = pending(kube, "team-a")
    assert status == 200 and summary["kind"] == "PendingWorkloadsSummary"
    rows = [
        (i["metadata"]["ownerReferences"][0]["name"], i["positionInLocalQueue"], i["positionInClusterQueue"])
        for i in summary["items"]
    ]
    # a2 first (higher priority), then a1; b1 sits between them in the ClusterQueue.
    assert rows == [("a2", 0, 0), ("a1", 1, 1)]
    newer, older = (i["metadata"]["creationTimestamp"] for i in summary["items"])
    assert older < newer  # a2 first though submitted later: priority before age
    assert pending(kube, "team-a", offset=1)[1]["items"][0]["positionInLocalQueue"] == 1
    assert len(pending(kube, "team-a", limit=1)[1]["items"]) == 1
    status, body = pending(kube, "nobody")
    assert status == 404 and body["reason"] == "NotFound"


def test_deactivating_a_workload_evicts_it_suspends_its_job_and_removes_its_pods(kube: FakeKube) -> None:
    queued_job(kube, "walk")
    fake_kueue.submit(kube, NS, "walk")
    fake_kueue.admit(kube, NS, "walk", "cq-a", "on-demand")
    kube.add_pod(NS, "walk", "Running")
    workload = fake_kueue.workload_of(kube, NS, "walk")
    assert workload is not None
    custom = typed(client.CustomObjectsApi, kube)
    custom.patch_namespaced_custom_object(
        "kueue.x-k8s.io", "v1beta2", NS, "workloads", workload["metadata"]["name"], {"spec": {"active": False}}
    )
    fake_kueue.reconcile(kube)
    after = custom.get_namespaced_custom_object("kueue.x-k8s.io", "v1beta2", NS, "workloads", workload["metadata"]["name"])
    conditions = {c["type"]: (c["status"], c["reason"]) for c in after["status"]["conditions"]}
    assert conditions["Evicted"] == ("True", "Deactivated") and conditions["QuotaReserved"][0] == "False"
    assert "admission" not in after["status"]
    job = kube.get("jobs", NS, "walk")
    assert job is not None and job["spec"]["suspend"] is True and kube.pods_of(NS, "walk") == []


def test_pod_logs_need_a_container_filter_by_time_and_tail_and_follow_until_the_pod_ends(kube: FakeKube) -> None:
    queued_job(kube, "walk")
    pod = kube.add_pod(NS, "walk", "Running")["metadata"]["name"]
    core = typed(client.CoreV1Api, kube)
    kube.write_log(NS, pod, "glue", "old line", at="2026-01-01T00:00:00.000000Z")
    kube.write_log(NS, pod, "glue", "step 1", "step 2")
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod_log(pod, NS)
    assert missing.value.status == 400 and "a container name must be specified" in str(missing.value.body)
    with pytest.raises(ApiException) as wrong:
        core.read_namespaced_pod_log(pod, NS, container="monty")
    assert wrong.value.status == 400 and "is not valid for pod" in str(wrong.value.body)
    assert core.read_namespaced_pod_log(pod, NS, container="glue") == "old line\nstep 1\nstep 2\n"
    assert core.read_namespaced_pod_log(pod, NS, container="glue", since_seconds=60) == "step 1\nstep 2\n"
    assert core.read_namespaced_pod_log(pod, NS, container="glue", tail_lines=1) == "step 2\n"
    stamped = core.read_namespaced_pod_log(pod, NS, container="glue", timestamps=True, tail_lines=1)
    assert stamped.endswith("Z step 2\n") and stamped[:4] == time.strftime("%Y")

    def later() -> None:
        time.sleep(0.3)
        kube.write_log(NS, pod, "glue", "step 3")
        time.sleep(0.2)
        kube.set_pod_phase(NS, pod, "Succeeded")

    threading.Thread(target=later, daemon=True).start()
    stream = core.read_namespaced_pod_log(pod, NS, container="glue", follow=True, tail_lines=0, _preload_content=False)
    started = time.monotonic()
    assert b"".join(stream.stream()) == b"step 3\n"
    assert 0.4 < time.monotonic() - started < 5, "follow ends once the pod has ended"


def test_nodes_are_cluster_scoped_and_events_filter_by_field(kube: FakeKube) -> None:
    kube.add_node("ip-10-0-1-5.ec2.internal", {"eks.amazonaws.com/capacityType": "SPOT"})
    core = typed(client.CoreV1Api, kube)
    node = core.read_node("ip-10-0-1-5.ec2.internal")
    assert node.metadata.labels["eks.amazonaws.com/capacityType"] == "SPOT" and node.metadata.namespace is None
    namespaced = api(kube).call_api(*api(kube).param_serialize("GET", f"/api/v1/namespaces/{NS}/nodes"))
    assert namespaced.status == 404
    kube.add_event(NS, "Pod", "walk-0-abcde", "Scheduled", "Successfully assigned")
    kube.add_event(NS, "Pod", "other-0-fghij", "Pulling", "Pulling image")
    events = core.list_namespaced_event(NS, field_selector="involvedObject.name=walk-0-abcde").items
    assert [e.reason for e in events] == ["Scheduled"]
    assert len(core.list_namespaced_event(NS, field_selector="involvedObject.name!=walk-0-abcde").items) == 1
    with pytest.raises(ApiException) as unsupported:
        core.list_namespaced_event(NS, field_selector="spec.nodeName=x")
    assert unsupported.value.status == 400 and "field label not supported" in str(unsupported.value.body)
