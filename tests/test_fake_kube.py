"""The fake API server (tests/fake_kube.py) against the Kubernetes API conventions it imitates, through the real
`kubernetes` client: where the run provider depends on the server's behaviour, the fake must behave like it.

Sources (checked 2026-12-07): the API conventions (community/contributors/devel/sig-architecture/api-conventions.md:
"Response Status Kind", "Concurrency Control and Consistency", "HTTP Status codes"); apimachinery
pkg/api/errors/errors.go (the Status reasons and messages); apiserver registry/generic/registry/store.go and
storage/etcd3 (delete preconditions, finalizers, deletionTimestamp); apiserver endpoints/handlers/patch.go (patch
content types, a JSON patch that does not apply is 422); the garbage collector and propagation policies
(concepts/architecture/garbage-collection; batch/v1 Jobs default to orphaning when deleted through the API);
pkg/controller/controller_utils.go GetPodFromTemplate (a Job's pods carry its template's labels and annotations).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fake_kube import FakeKube
from kubernetes import client
from kubernetes.client.exceptions import ApiException

NS = "simfleet-runs"


@pytest.fixture
def api(cluster: FakeKube) -> Iterator[client.ApiClient]:
    configuration = client.Configuration(host=cluster.url)
    with client.ApiClient(configuration) as api_client:
        yield api_client


def call(
    api: client.ApiClient, method: str, path: str, body: Any = None, content_type: str = "application/json"
) -> tuple[int, Any]:
    """(status, JSON body) of one request, whatever the status (the client raises on >= 400)."""
    request = api.param_serialize(
        method, path, header_params={"Content-Type": content_type, "Accept": "application/json"}, body=body
    )
    try:
        response = api.call_api(*request)
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    except ApiException as err:
        return int(err.status), json.loads(err.body or "null")


def job(name: str = "trot", **annotations: str) -> dict[str, Any]:
    template = {
        "metadata": {"labels": {"app": "sim"}, "annotations": {"simfleet.io/spec-hash": "0123456789ab", **annotations}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]},
    }
    metadata = {"name": name, "namespace": NS, "annotations": {"simfleet.io/spec-hash": "0123456789ab"}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": {"template": template}}


JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"


def test_errors_are_status_objects_with_reason_and_details(api: client.ApiClient) -> None:
    status, body = call(api, "GET", f"{JOBS}/nope")
    assert status == 404
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'jobs.batch "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "group": "batch", "kind": "jobs"},
        "code": 404,
    }


def test_a_list_pages_with_limit_and_continue(api: client.ApiClient) -> None:
    """As the API server serves large lists: `limit` items a page, an opaque `continue` token until the last page;
    a token it never gave is 400. Each page is a copy: changing it changes nothing stored."""
    for name in ("a", "b", "c", "d", "e"):
        assert call(api, "POST", JOBS, job(name))[0] == 201
    pages, token = [], ""
    while True:
        status, body = call(api, "GET", f"{JOBS}?labelSelector=app%3Dsim&limit=2" + (f"&continue={token}" if token else ""))
        assert status == 200
        pages.append([item["metadata"]["name"] for item in body["items"]])
        token = body["metadata"].get("continue", "")
        if not token:
            break
        body["items"][0]["metadata"]["name"] = "changed"
    assert pages == [["a", "b"], ["c", "d"], ["e"]]
    assert [i["metadata"]["name"] for i in call(api, "GET", JOBS)[1]["items"]] == ["a", "b", "c", "d", "e"]
    status, body = call(api, "GET", f"{JOBS}?limit=2&continue=bm90LWEtdG9rZW4")
    assert (status, body["reason"]) == (400, "BadRequest")


def test_create_twice_is_409_already_exists(api: client.ApiClient) -> None:
    status, created = call(api, "POST", JOBS, job())
    assert status == 201 and created["metadata"]["labels"] == {"app": "sim"}  # defaulted from the template
    status, body = call(api, "POST", JOBS, job())
    assert (status, body["reason"], body["message"]) == (409, "AlreadyExists", 'jobs.batch "trot" already exists')


def test_every_write_moves_the_resource_version_and_a_stale_one_is_409_conflict(api: client.ApiClient) -> None:
    _, created = call(api, "POST", JOBS, job())
    first = created["metadata"]["resourceVersion"]
    _, patched = call(api, "PATCH", f"{JOBS}/trot", {"metadata": {"labels": {"a": "b"}}}, "application/merge-patch+json")
    assert patched["metadata"]["resourceVersion"] != first
    assert (patched["metadata"]["uid"], patched["metadata"]["creationTimestamp"]) == (
        created["metadata"]["uid"],
        created["metadata"]["creationTimestamp"],
    )
    stale = {"metadata": {"resourceVersion": first, "labels": {"a": "c"}}}
    status, body = call(api, "PATCH", f"{JOBS}/trot", stale, "application/merge-patch+json")
    assert (status, body["reason"]) == (409, "Conflict")
    assert body["message"] == (
        'Operation cannot be fulfilled on jobs.batch "trot": the object has been modified; please apply your changes '
        "to the latest version and try again"
    )


def test_a_changed_job_template_is_422_invalid_with_its_field(api: client.ApiClient) -> None:
    call(api, "POST", JOBS, job())
    patch = {"spec": {"template": {"metadata": {"labels": {"app": "other"}}}}}
    status, body = call(api, "PATCH", f"{JOBS}/trot", patch, "application/merge-patch+json")
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["message"].startswith('Job.batch "trot" is invalid: spec.template: Invalid value: ')
    assert body["message"].endswith("field is immutable") and body["details"]["kind"] == "Job.batch"
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.template"]


def test_patch_content_types(api: client.ApiClient) -> None:
    call(api, "POST", JOBS, job())
    assert call(api, "PATCH", f"{JOBS}/trot", {"metadata": {}}, "application/json")[0] == 415
    ops = [
        {"op": "test", "path": "/metadata/annotations/simfleet.io~1spec-hash", "value": "0123456789ab"},
        {"op": "add", "path": "/metadata/labels/x", "value": "y"},
    ]
    assert (
        call(api, "PATCH", f"{JOBS}/trot", ops, "application/json-patch+json")[0] == 200
    )  # (the job has no such annotation: below)
    failing = [
        {"op": "test", "path": "/metadata/labels/x", "value": "z"},
        {"op": "add", "path": "/metadata/labels/w", "value": "v"},
    ]
    status, body = call(api, "PATCH", f"{JOBS}/trot", failing, "application/json-patch+json")
    assert (status, body["reason"]) == (422, "Invalid")
    _, live = call(api, "GET", f"{JOBS}/trot")
    assert live["metadata"]["labels"] == {"app": "sim", "x": "y"}, "a patch whose test fails changes nothing"


def test_delete_preconditions_are_409_conflict_and_delete_nothing(api: client.ApiClient) -> None:
    _, created = call(api, "POST", JOBS, job())
    options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background", "preconditions": {"uid": "other"}}
    status, body = call(api, "DELETE", f"{JOBS}/trot", options)
    assert (status, body["reason"]) == (409, "Conflict")
    assert body["message"].startswith('Operation cannot be fulfilled on jobs.batch "trot": StorageError: invalid object')
    assert f"Precondition failed: UID in precondition: other, UID in object meta: {created['metadata']['uid']}" in body["message"]
    stale = {**options, "preconditions": {"uid": created["metadata"]["uid"], "resourceVersion": "1"}}
    assert call(api, "DELETE", f"{JOBS}/trot", stale)[0] == 409
    assert call(api, "GET", f"{JOBS}/trot")[0] == 200


def test_finalizers_hold_a_deleted_object_with_a_deletion_timestamp(api: client.ApiClient, cluster: FakeKube) -> None:
    held = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "held", "namespace": NS, "finalizers": ["example.com/x"]},
    }
    path = f"/api/v1/namespaces/{NS}/configmaps"
    call(api, "POST", path, held)
    status, body = call(api, "DELETE", f"{path}/held")
    assert status == 200 and body["metadata"]["deletionTimestamp"]
    assert call(api, "GET", f"{path}/held")[1]["metadata"]["deletionTimestamp"]
    assert call(api, "POST", path, held)[1]["reason"] == "AlreadyExists"  # the name is taken until it is gone
    cluster.remove_finalizers("configmaps", NS, "held")
    assert call(api, "GET", f"{path}/held")[0] == 404


def test_pods_made_from_a_job_template_keep_its_labels_and_annotations(api: client.ApiClient, cluster: FakeKube) -> None:
    indexed = job(extra="kept")
    indexed["spec"]["completionMode"] = "Indexed"
    indexed["spec"]["completions"] = 2
    call(api, "POST", JOBS, indexed)
    pod = cluster.add_pod(NS, "trot", "Running", index=1)
    assert pod["metadata"]["annotations"]["simfleet.io/spec-hash"] == "0123456789ab"
    assert pod["metadata"]["annotations"]["extra"] == "kept"
    assert pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1"
    assert pod["metadata"]["labels"]["app"] == "sim" and pod["metadata"]["labels"]["batch.kubernetes.io/controller-uid"]
    [owner] = pod["metadata"]["ownerReferences"]
    assert owner["kind"] == "Job" and owner["controller"] is True
    status, listed = call(api, "GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3Dsim")
    assert status == 200 and [p["metadata"]["name"] for p in listed["items"]] == [pod["metadata"]["name"]]


@pytest.mark.parametrize(
    "policy, job_after, pods_after, pods_after_gc",
    [
        ("Background", False, 1, 0),  # gone at once; the garbage collector removes the pods after
        ("Foreground", True, 1, 0),  # kept (deletionTimestamp, foregroundDeletion) until its pods are gone
        ("Orphan", False, 1, 1),  # gone; the pods stay, without an owner
        (None, False, 1, 1),  # batch/v1 Jobs orphan their pods when deleted through the API without a policy
    ],
)
def test_propagation_policies(
    api: client.ApiClient, cluster: FakeKube, policy: str | None, job_after: bool, pods_after: int, pods_after_gc: int
) -> None:
    call(api, "POST", JOBS, job())
    cluster.add_pod(NS, "trot", "Running")
    options = {"kind": "DeleteOptions", "apiVersion": "v1", **({"propagationPolicy": policy} if policy else {})}
    assert call(api, "DELETE", f"{JOBS}/trot", options)[0] == 200
    live = cluster.get("jobs", NS, "trot")
    assert (live is not None) == job_after
    if live is not None:
        assert live["metadata"]["deletionTimestamp"] and "foregroundDeletion" in live["metadata"]["finalizers"]
    pods = [o for (plural, ns, _), o in cluster.objects.items() if plural == "pods"]
    assert len(pods) == pods_after
    cluster.collect_garbage()
    pods = [o for (plural, ns, _), o in cluster.objects.items() if plural == "pods"]
    assert len(pods) == pods_after_gc and cluster.get("jobs", NS, "trot") is None
    if policy in ("Orphan", None):
        assert pods[0]["metadata"]["ownerReferences"] == []


@pytest.mark.parametrize("policy", ["Background", "Foreground"])
def test_a_dependent_of_several_owners_goes_with_the_last(api: client.ApiClient, cluster: FakeKube, policy: str) -> None:
    """The garbage collector (kubernetes pkg/controller/garbagecollector attemptToDeleteItem): a dependent with an
    owner still there (and not itself waiting for its dependents) stays and loses its references to the gone or
    foreground-deleting ones; one with no owner left is deleted."""
    uids = [call(api, "POST", JOBS, job(name))[1]["metadata"]["uid"] for name in ("a", "b")]
    owners = [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid} for name, uid in zip("ab", uids, strict=True)]
    shared = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared", "ownerReferences": owners}}
    assert call(api, "POST", f"/api/v1/namespaces/{NS}/configmaps", shared)[0] == 201
    options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": policy}
    assert call(api, "DELETE", f"{JOBS}/a", options)[0] == 200
    cluster.collect_garbage()
    kept = cluster.get("configmaps", NS, "shared")
    assert kept is not None and kept["metadata"]["ownerReferences"] == owners[1:]
    assert cluster.get("jobs", NS, "a") is None
    assert call(api, "DELETE", f"{JOBS}/b", options)[0] == 200
    cluster.collect_garbage()
    assert cluster.get("configmaps", NS, "shared") is None
