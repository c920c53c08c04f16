"""SimRunProvider through the real kubernetes client against the fake API server, and S3 (moto) for run records."""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3
import pytest
from fake_kube import ARTIFACTS_BUCKET, FakeKube, run_props, run_spec
from provider_support import (
    NS,
    RUN,
    RUNTIME_CM,
    SERVICE,
    job_env,
    legacy_outputs,
    new,
    old_job,
    put_index,
    s3_keys,
    stored,
    writes,
)
from pulumi.runtime.rpc import UNKNOWN

import naming
from workloads import eks_auth, kube, provider
from workloads.budget import Budget
from workloads.provider import SimRunError, SimRunProvider, api_for

# Fake credentials, moto and no retry sleeps; `cluster` is the fake API server (both in conftest.py).
pytestmark = pytest.mark.usefixtures("provider_world")


# -- create ----------------------------------------------------------------------------------------------------


def test_create_checks_the_job_then_writes_the_job_then_its_owned_companions(cluster: FakeKube) -> None:
    props = run_props(cluster.url)
    result = SimRunProvider().create(props)
    assert result.id == f"{NS}/{RUN}"
    assert [(r.method, r.path) for r in cluster.requests] == [
        ("GET", f"/apis/batch/v1/namespaces/{NS}/jobs/{RUN}"),  # identity first: nothing is written before it
        ("GET", f"/api/v1/namespaces/{NS}/pods"),  # no pod of an earlier Job at this hash still writing
        ("POST", f"/apis/batch/v1/namespaces/{NS}/jobs"),
        ("GET", f"/api/v1/namespaces/{NS}/configmaps/{RUNTIME_CM}"),  # the shared runtime: not there yet
        ("POST", f"/api/v1/namespaces/{NS}/configmaps"),
        ("POST", f"/api/v1/namespaces/{NS}/services"),
        ("POST", f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"),
    ]
    job = cluster.get("jobs", NS, RUN)
    assert job is not None and job["metadata"]["annotations"][naming.SPEC_HASH_ANNOTATION] == props["specHash"]
    assert job["metadata"]["annotations"][kube.CLAIM_ANNOTATION] == result.outs["claim"]  # type: ignore[index]
    assert cluster.requests[0].headers["authorization"].startswith("Bearer k8s-aws-v1.")
    outs = result.outs
    assert outs is not None
    # Suspended with its queue label: Kueue's to admit.
    assert (outs["jobName"], outs["status"], outs["startTime"], outs["viewportAddress"]) == (RUN, "Queued", None, None)
    assert job["spec"]["suspend"] is True and job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "shared"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "simfleet-interactive"
    # Every input is in the outputs (read and delete only get those), plus the uids of what was created.
    assert {k: outs[k] for k in props} == props
    assert outs["jobUid"] == job["metadata"]["uid"]
    # The run's own companions; the shared runtime ConfigMap is not one (the garbage collector removes it with its
    # last owner, never a run's delete).
    live = {(c["kind"], c["name"]): c["uid"] for c in outs["companions"]}
    assert live == {
        ("Service", SERVICE): cluster.get("services", NS, SERVICE)["metadata"]["uid"],  # type: ignore[index]
        ("NetworkPolicy", SERVICE): cluster.get("networkpolicies", NS, SERVICE)["metadata"]["uid"],  # type: ignore[index]
    }
    # Written owned: there is no moment the companions exist without the Job as their owner.
    for request in [r for r in cluster.requests if r.method == "POST"][1:]:
        assert request.body["metadata"]["ownerReferences"] == [
            {"apiVersion": "batch/v1", "kind": "Job", "name": RUN, "uid": job["metadata"]["uid"]}
        ]


def test_inputs_as_the_engine_sends_them_give_integer_fields(cluster: FakeKube) -> None:
    """Pulumi's wire format carries numbers as doubles; the run's spec travels as JSON text, so the Job's integer
    fields reach the API server as integers (it rejects 10800.0 for activeDeadlineSeconds)."""
    from google.protobuf import json_format, struct_pb2

    wire = struct_pb2.Struct()
    wire.update(run_props(cluster.url, maxRuntime="3h", ttlAfterFinished="10m"))
    SimRunProvider().create(json_format.MessageToDict(wire))
    body = next(r.body for r in cluster.requests if r.method == "POST" and r.path.endswith("/jobs"))
    deadline = Budget.of(3 * 3600, 1, 1).deadline_seconds
    assert type(body["spec"]["activeDeadlineSeconds"]) is int and body["spec"]["activeDeadlineSeconds"] == deadline
    assert type(body["spec"]["ttlSecondsAfterFinished"]) is int and body["spec"]["ttlSecondsAfterFinished"] == 600


def test_the_ttl_controller_takes_the_companions_with_the_job(cluster: FakeKube) -> None:
    SimRunProvider().create(run_props(cluster.url))
    uid = cluster.get("jobs", NS, RUN)["metadata"]["uid"]  # type: ignore[index]
    for plural, name in (("configmaps", RUNTIME_CM), ("services", SERVICE)):
        owners = cluster.get(plural, NS, name)["metadata"]["ownerReferences"]  # type: ignore[index]
        assert owners == [{"apiVersion": "batch/v1", "kind": "Job", "name": RUN, "uid": uid}]
    cluster.expire_job(NS, RUN)
    cluster.collect_garbage()
    assert cluster.get("configmaps", NS, RUNTIME_CM) is None  # its only owner went
    assert cluster.get("services", NS, SERVICE) is None  # the NLB goes with it


def test_create_without_viewport_applies_no_service(cluster: FakeKube) -> None:
    SimRunProvider().create(run_props(cluster.url, viewport=False))
    assert [(m, p.rsplit("/", 1)[-1]) for m, p in writes(cluster)] == [("POST", "jobs"), ("POST", "configmaps")]


def test_create_again_adopts_the_job_with_the_same_hash_and_writes_nothing(cluster: FakeKube) -> None:
    props = run_props(cluster.url)
    first = SimRunProvider().create(props).outs
    cluster.start_job(NS, RUN, ready=1)
    cluster.requests.clear()
    again = SimRunProvider().create(props).outs  # a retry after a crash, or a lost state while the run is live
    assert again is not None and first is not None
    assert again["status"] == "Running"
    assert again["jobUid"] == first["jobUid"]
    assert {c["uid"] for c in again["companions"]} == {c["uid"] for c in first["companions"]}
    # The only write: the new claim on the Job, so the resource that held it before no longer deletes it.
    assert writes(cluster) == [("PATCH", f"/apis/batch/v1/namespaces/{NS}/jobs/{RUN}")]
    assert again["claim"] != first["claim"]
    assert cluster.get("jobs", NS, RUN)["metadata"]["annotations"][kube.CLAIM_ANNOTATION] == again["claim"]  # type: ignore[index]


def test_adopting_completes_a_create_that_crashed_after_the_job(cluster: FakeKube) -> None:
    """The Job exists but its companions were never written: the retry writes them, owned by the Job."""
    props = run_props(cluster.url)
    cluster.fail_next(kube.RETRY.attempts, 503, methods=("POST",), path_contains="/configmaps")  # the ConfigMap fails
    with pytest.raises(SimRunError):
        SimRunProvider().create(props)
    assert cluster.get("jobs", NS, RUN) is not None and cluster.get("configmaps", NS, RUNTIME_CM) is None
    outs = SimRunProvider().create(props).outs
    assert outs is not None and {c["kind"] for c in outs["companions"]} == {"Service", "NetworkPolicy"}
    uid = cluster.get("jobs", NS, RUN)["metadata"]["uid"]  # type: ignore[index]
    assert cluster.get("configmaps", NS, RUNTIME_CM)["metadata"]["ownerReferences"][0]["uid"] == uid  # type: ignore[index]


def test_a_moved_resource_never_deletes_the_run_its_successor_adopted(cluster: FakeKube) -> None:
    """A rename without an alias: the engine creates the new URN (which adopts the live Job) and then deletes the old
    one. The old one's delete must leave the run alone, or the run would die half way and never be restarted."""
    props = run_props(cluster.url)
    old = SimRunProvider().create(props).outs
    cluster.start_job(NS, RUN, ready=1)
    new = SimRunProvider().create(props).outs  # the new URN
    assert old is not None and new is not None and new["jobUid"] == old["jobUid"]
    cluster.requests.clear()
    SimRunProvider().delete(f"{NS}/{RUN}", old)  # the old URN goes at the end of the update
    assert writes(cluster) == []
    assert cluster.get("jobs", NS, RUN) is not None and cluster.get("services", NS, SERVICE) is not None
    SimRunProvider().delete(f"{NS}/{RUN}", new)  # the holder can still remove it
    assert cluster.get("jobs", NS, RUN) is None


def test_a_conflicting_job_stops_create_before_anything_is_written(cluster: FakeKube) -> None:
    other = run_props(cluster.url, rerun=1)  # same name, another spec: another hash
    SimRunProvider().create(other)
    other_runtime = cluster.get("configmaps", NS, RUNTIME_CM)
    cluster.requests.clear()
    props = run_props(cluster.url)
    with pytest.raises(SimRunError) as err:
        SimRunProvider().create(props)
    message = str(err.value)
    for needle in (
        RUN,
        other["specHash"],
        props["specHash"],
        f"kubectl -n {NS} delete job {RUN}",
        "another name",
        "Nothing was written",
    ):
        assert needle in message, message
    assert writes(cluster) == [], "the other run's ConfigMap and Service were not overwritten"
    assert cluster.get("configmaps", NS, RUNTIME_CM) == other_runtime


def test_create_refuses_a_job_simfleet_did_not_create(cluster: FakeKube) -> None:
    cluster.put_object(
        "jobs", {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": RUN, "namespace": NS}, "spec": {"template": {}}}
    )
    with pytest.raises(SimRunError, match="spec hash none"):
        SimRunProvider().create(run_props(cluster.url))
    assert writes(cluster) == []


def test_create_waits_out_a_terminating_job(cluster: FakeKube) -> None:
    SimRunProvider().create(run_props(cluster.url, viewport=False, rerun=1))
    cluster.handle("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/{RUN}?propagationPolicy=Foreground", b"", {})
    assert cluster.get("jobs", NS, RUN)["metadata"]["deletionTimestamp"]  # type: ignore[index]
    timer = threading.Timer(0.1, cluster.collect_garbage)
    timer.start()
    props = run_props(cluster.url, viewport=False)
    SimRunProvider().create(props)
    timer.join()
    assert cluster.get("jobs", NS, RUN)["metadata"]["annotations"][naming.SPEC_HASH_ANNOTATION] == props["specHash"]  # type: ignore[index]


SIMFLEET_LABELS = {"app.kubernetes.io/part-of": "simfleet"}


def leftover(kind: str, name: str, **body: Any) -> dict[str, Any]:
    """An object simfleet wrote earlier (its labels and a spec-hash annotation), left behind."""
    metadata = {
        "name": name,
        "namespace": NS,
        "labels": dict(SIMFLEET_LABELS),
        "annotations": {naming.SPEC_HASH_ANNOTATION: "0" * 12},
    }
    return {"apiVersion": "v1", "kind": kind, "metadata": metadata, **body}


def test_deleting_a_viewport_run_waits_for_its_nlb_to_go(cluster: FakeKube) -> None:
    """The Load Balancer Controller's finalizer holds the Service until the NLB is deleted. Delete waits for it, so
    the engine does not remove the controller (pulumi destroy) while the NLB still exists."""
    cluster.lbc_finalizers = True
    old = SimRunProvider().create(run_props(cluster.url, rerun=1)).outs
    assert old is not None
    timer = threading.Timer(0.2, cluster.remove_finalizers, args=("services", NS, SERVICE))
    timer.start()
    SimRunProvider().delete(f"{NS}/{RUN}", old)  # returns only once the Service is gone
    timer.join()
    assert cluster.get("services", NS, SERVICE) is None
    SimRunProvider().create(run_props(cluster.url))  # the replacement finds the name free
    assert cluster.get("services", NS, SERVICE) is not None


def test_a_stuck_nlb_finalizer_fails_the_delete_so_the_engine_keeps_the_run(
    cluster: FakeKube, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube, "TERMINATING", kube.WaitPolicy(seconds=0.2, poll=0.02))
    cluster.lbc_finalizers = True
    old = SimRunProvider().create(run_props(cluster.url)).outs
    assert old is not None
    with pytest.raises(
        SimRunError,
        match=r"Service trot-baseline-viewport is still being deleted .*service\.k8s\.aws/resources.*Load Balancer Controller",
    ):
        SimRunProvider().delete(f"{NS}/{RUN}", old)


def test_create_waits_out_a_terminating_companion_instead_of_writing_over_it(cluster: FakeKube) -> None:
    held = cluster.put_object(
        "services", leftover("Service", SERVICE, spec={"type": "LoadBalancer", "ports": [{"port": 1, "protocol": "TCP"}]})
    )
    cluster.objects[("services", NS, SERVICE)]["metadata"]["finalizers"] = ["service.k8s.aws/resources"]
    cluster.handle("DELETE", f"/api/v1/namespaces/{NS}/services/{SERVICE}", b"", {})
    timer = threading.Timer(0.2, cluster.remove_finalizers, args=("services", NS, SERVICE))
    timer.start()
    SimRunProvider().create(run_props(cluster.url))
    timer.join()
    live = cluster.get("services", NS, SERVICE)
    assert live is not None and "deletionTimestamp" not in live["metadata"], "the new Service is not the terminating one"
    assert live["metadata"]["uid"] != held["metadata"]["uid"]
    assert not any(m == "PUT" and SERVICE in p for m, p in writes(cluster))


def test_an_immutable_leftover_companion_is_deleted_and_created_again(cluster: FakeKube) -> None:
    props = run_props(cluster.url, viewport=False)
    name = f"{RUN}-settings"
    uid = cluster.put_object("configmaps", leftover("ConfigMap", name, immutable=True, data={"a": "old"}))["metadata"]["uid"]
    ours = leftover("ConfigMap", name, immutable=True, data={"a": "new"})
    api_for(props).apply_companion(ours)
    replaced = [r for r in cluster.requests if r.method == "PUT"]
    assert replaced and replaced[0].body["metadata"]["name"] == name  # tried in place first: 422
    delete = next(r for r in cluster.requests if r.method == "DELETE")
    assert delete.body["preconditions"] == {"uid": uid}  # exactly the object read, nothing newer
    live = cluster.get("configmaps", NS, name)
    assert live is not None and live["metadata"]["uid"] != uid and live["data"] == {"a": "new"}


def test_create_replaces_a_leftover_service_in_place(cluster: FakeKube) -> None:
    cluster.put_object(
        "services",
        leftover("Service", SERVICE, spec={"type": "LoadBalancer", "ports": [{"name": "old", "port": 1234, "protocol": "TCP"}]}),
    )
    SimRunProvider().create(run_props(cluster.url))
    live = cluster.get("services", NS, SERVICE)
    assert live is not None and [p["port"] for p in live["spec"]["ports"]] == [49100, 47998]
    put = next(r for r in cluster.requests if r.method == "PUT")
    assert put.body["metadata"]["resourceVersion"] and put.body["spec"]["clusterIP"].startswith("10.100.")


def test_an_object_simfleet_did_not_write_is_never_overwritten(cluster: FakeKube) -> None:
    mine = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "namespace": NS}, "spec": {"ports": []}}
    cluster.put_object("services", mine)
    with pytest.raises(SimRunError, match=rf"Service {SERVICE} that simfleet did not create is in the way"):
        SimRunProvider().create(run_props(cluster.url))
    assert cluster.get("services", NS, SERVICE)["spec"]["ports"] == []  # type: ignore[index]


def test_a_configmap_in_the_way_of_the_shared_runtime_is_never_overwritten(cluster: FakeKube) -> None:
    mine = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": RUNTIME_CM, "namespace": NS}, "data": {"a": "b"}}
    cluster.put_object("configmaps", mine)
    with pytest.raises(SimRunError, match=rf"ConfigMap {RUNTIME_CM} that simfleet did not create is in the way"):
        SimRunProvider().create(run_props(cluster.url, viewport=False))
    live = cluster.get("configmaps", NS, RUNTIME_CM)
    assert live is not None and live["data"] == {"a": "b"} and "ownerReferences" not in live["metadata"]


def test_create_into_a_missing_namespace_says_what_to_do(cluster: FakeKube) -> None:
    with pytest.raises(SimRunError, match=r"run trot-baseline: creating Job trot-baseline .* HTTP 404: .* deploy the platform"):
        SimRunProvider().create(run_props(cluster.url, namespace="nowhere"))


# -- a lost or rolled-back state never reruns a run -------------------------------------------------------------


@pytest.mark.parametrize("status", ["Succeeded", "Failed", "Interrupted"])
def test_a_run_that_already_ran_is_recorded_not_started(cluster: FakeKube, status: str) -> None:
    props = run_props(cluster.url)
    put_index(props, status)
    outs = SimRunProvider().create(props).outs
    assert outs is not None
    assert outs["status"] == ("Succeeded" if status == "Succeeded" else "Failed")
    assert (outs["startTime"], outs["completionTime"]) == ("2026-11-23T10:00:00Z", "2026-11-23T11:00:00Z")
    assert outs["jobUid"] is None and writes(cluster) == []
    SimRunProvider().delete(f"{NS}/{RUN}", outs)  # it created nothing, so it deletes nothing
    assert writes(cluster) == [] and s3_keys() == [f"runs/{RUN}/{props['specHash']}/index.json"]


def test_a_sweep_recreated_after_a_lost_state_runs_only_the_seeds_that_never_ran(cluster: FakeKube) -> None:
    props = run_props(cluster.url, viewport=False, seeds=(1, 2, 3, 4), parallelism=4)
    put_index(props, "Succeeded", seed=1)
    put_index(props, "Failed", seed=3)
    SimRunProvider().create(props)
    job = cluster.get("jobs", NS, RUN)
    assert job is not None
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (2, 2)
    env = job_env(cluster)
    assert json.loads(env["SIMFLEET_SEEDS"]) == [2, 4] and env["SIMFLEET_PER_SEED"] == "true"
    assert env["SIMFLEET_PREFIX"] == f"runs/{RUN}/{props['specHash']}/"  # seed-<n>/ keys as the first Job wrote them


def test_a_finished_run_is_recorded_even_when_another_job_holds_its_name(cluster: FakeKube) -> None:
    SimRunProvider().create(run_props(cluster.url, rerun=1))
    cluster.requests.clear()
    props = run_props(cluster.url)
    put_index(props, "Succeeded")
    outs = SimRunProvider().create(props).outs
    assert outs is not None and outs["status"] == "Succeeded" and writes(cluster) == []


def test_an_unreadable_run_record_starts_nothing(cluster: FakeKube) -> None:
    # The artifacts bucket answers with an error that is not "no such key" (here: the bucket is gone).
    boto3.client("s3", region_name="us-east-1").delete_bucket(Bucket=ARTIFACTS_BUCKET)
    with pytest.raises(SimRunError, match=r"record of whether the run already ran.*nothing is started"):
        SimRunProvider().create(run_props(cluster.url))
    assert writes(cluster) == []


# -- TLS ---------------------------------------------------------------------------------------------------------


def test_a_wrong_cluster_ca_fails_at_once_and_names_cluster_ca() -> None:
    with FakeKube(tls=True) as secure, FakeKube(tls=True) as impostor:
        with pytest.raises(SimRunError) as err:
            SimRunProvider().create(run_props(secure.url, ca=impostor.ca_data))
        assert "clusterCa" in str(err.value) and "TLS verification" in str(err.value)
        assert "times" not in str(err.value), "a certificate error is not retried"
        assert secure.requests == []
        # With the right CA the same endpoint works.
        eks_auth.reset_caches()
        SimRunProvider().create(run_props(secure.url, ca=secure.ca_data, viewport=False))
        assert secure.get("jobs", NS, RUN) is not None


# -- diff and update ---------------------------------------------------------------------------------------------


def test_diff_replaces_on_a_new_spec_hash_deleting_first() -> None:
    result = SimRunProvider().diff("x", stored(run_props("https://a")), new(run_props("https://a", rerun=1)))
    assert (result.changes, result.replaces, result.delete_before_replace) == (True, ["specHash"], True)


def test_diff_never_replaces_on_a_value_it_cannot_see() -> None:
    result = SimRunProvider().diff("x", stored(run_props("https://a")), new(run_props("https://a"), specHash=UNKNOWN))
    assert result.replaces == [] and result.delete_before_replace is False and result.changes is True


@pytest.mark.parametrize(
    "change",
    [
        {"clusterEndpoint": "https://b"},
        {"clusterCa": "Zm9v"},
        {"clusterEndpoint": UNKNOWN, "clusterCa": UNKNOWN},
        {"kubeconfig": "apiVersion: v1"},
        {"__provider": "pickled-from-a-renamed-module"},
    ],
)
def test_diff_updates_in_place_for_connection_and_provider_reference(change: dict[str, Any]) -> None:
    result = SimRunProvider().diff("x", stored(run_props("https://a")), new(run_props("https://a"), **change))
    assert (result.changes, result.replaces, result.delete_before_replace) == (True, [], False)


@pytest.mark.parametrize("fields", [{"labels": {"user": "bob"}}, {"ttlAfterFinished": 86400}])
def test_diff_updates_in_place_for_labels_and_ttl(fields: dict[str, Any]) -> None:
    changed = run_props("https://a", **fields)
    assert changed["specHash"] == run_props("https://a")["specHash"]
    result = SimRunProvider().diff("x", stored(run_props("https://a")), new(changed))
    assert (result.changes, result.replaces) == (True, [])


def test_diff_reports_no_change_for_the_same_inputs_whatever_the_status() -> None:
    result = SimRunProvider().diff("x", stored(run_props("https://a"), status="Running"), new(run_props("https://a")))
    assert result.changes is False and result.replaces == []


def test_update_applies_labels_and_ttl_to_the_live_job(cluster: FakeKube) -> None:
    props = run_props(cluster.url, viewport=False, labels={"user": "alice", "project": "legs"})
    outs = SimRunProvider().create(props).outs
    assert outs is not None
    uid, template = cluster.get("jobs", NS, RUN)["metadata"]["uid"], cluster.get("jobs", NS, RUN)["spec"]["template"]  # type: ignore[index]
    changed = run_props(cluster.url, viewport=False, labels={"user": "bob"}, ttlAfterFinished="1d")
    result = SimRunProvider().update("x", {**outs, "__provider": "p"}, {**changed, "__provider": "p"})
    job = cluster.get("jobs", NS, RUN)
    assert job is not None and job["metadata"]["uid"] == uid and job["spec"]["template"] == template
    assert job["metadata"]["labels"]["simfleet.io/user"] == "bob" and "simfleet.io/project" not in job["metadata"]["labels"]
    assert job["metadata"]["labels"][naming.RUN_LABEL] == RUN
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400
    assert result.outs is not None and result.outs["jobUid"] == uid and result.outs["spec"] == changed["spec"]
    assert json.loads(result.outs["spec"])["labels"] == {"user": "bob"}


def test_update_leaves_a_job_it_did_not_create_alone(cluster: FakeKube) -> None:
    props = run_props(cluster.url, viewport=False)
    outs = SimRunProvider().create(props).outs
    assert outs is not None
    cluster.expire_job(NS, RUN)
    SimRunProvider().create(run_props(cluster.url, viewport=False))  # someone recreated a Job by that name
    cluster.requests.clear()
    changed = run_props(cluster.url, viewport=False, labels={"user": "bob"})
    result = SimRunProvider().update("x", {**outs, "__provider": "p"}, {**changed, "__provider": "p"})
    assert writes(cluster) == [] and result.outs is not None


def test_update_refuses_a_changed_hash(cluster: FakeKube) -> None:
    olds = stored(run_props(cluster.url), jobUid="u")
    with pytest.raises(SimRunError, match="simfleet bug"):
        SimRunProvider().update("x", olds, new(run_props(cluster.url, rerun=2)))


# -- delete -------------------------------------------------------------------------------------------------------


def test_delete_removes_its_job_in_the_background_then_its_companions(cluster: FakeKube) -> None:
    props = run_props(cluster.url)
    outs = SimRunProvider().create(props).outs
    assert outs is not None
    put_index(props, "Succeeded")
    cluster.add_pod(NS, RUN, "Running")
    cluster.requests.clear()
    SimRunProvider().delete(f"{NS}/{RUN}", outs)
    deletes = [
        (r.path.split("/")[-2], r.query.get("propagationPolicy"), r.body["propagationPolicy"], r.body["preconditions"])
        for r in cluster.requests
        if r.method == "DELETE"
    ]
    uids = {c["kind"]: c["uid"] for c in outs["companions"]}
    job_read = next(r for r in cluster.requests if r.method == "GET" and r.path.endswith(f"/jobs/{RUN}"))
    assert job_read is cluster.requests[0], "the Job is read first: its claim says whether it is still ours"
    assert deletes[0][:3] == ("jobs", "Background", "Background")
    assert deletes[0][3]["uid"] == outs["jobUid"] and deletes[0][3]["resourceVersion"]
    assert deletes[1:] == [  # the shared runtime ConfigMap is the garbage collector's (its other owners keep it)
        ("services", "Background", "Background", {"uid": uids["Service"]}),
        ("networkpolicies", "Background", "Background", {"uid": uids["NetworkPolicy"]}),
    ]
    assert cluster.get("jobs", NS, RUN) is None and cluster.get("services", NS, SERVICE) is None
    assert len(cluster.pods_of(NS, RUN)) == 1, "Background: the pod is left to the garbage collector"
    cluster.collect_garbage()
    assert cluster.pods_of(NS, RUN) == []
    assert cluster.get("configmaps", NS, RUNTIME_CM) is None, "its last owner went"
    assert s3_keys() == [f"runs/{RUN}/{props['specHash']}/index.json"], "S3 is never touched"


def test_delete_never_removes_a_namesake_it_did_not_create(cluster: FakeKube) -> None:
    outs = SimRunProvider().create(run_props(cluster.url, viewport=False)).outs
    assert outs is not None
    cluster.expire_job(NS, RUN)
    cluster.collect_garbage()
    SimRunProvider().create(run_props(cluster.url, viewport=False, rerun=9))  # another Job, same name
    SimRunProvider().delete("x", outs)
    survivor = cluster.get("jobs", NS, RUN)
    assert survivor is not None and survivor["metadata"]["uid"] != outs["jobUid"]


def test_delete_of_objects_already_gone_succeeds(cluster: FakeKube) -> None:
    outs = SimRunProvider().create(run_props(cluster.url)).outs
    assert outs is not None
    cluster.expire_job(NS, RUN)  # the TTL controller was first
    cluster.collect_garbage()
    SimRunProvider().delete("x", outs)
    SimRunProvider().delete("x", outs)  # and again: everything is 404 now
    assert cluster.objects == {}


# -- read ---------------------------------------------------------------------------------------------------------


def read(cluster: FakeKube, outs: dict[str, Any], id_: str = f"{NS}/{RUN}") -> tuple[str | None, dict[str, Any]]:
    result = SimRunProvider().read(id_, outs)
    assert result.outs is not None
    return result.id, result.outs


def test_read_follows_the_job_through_its_life(cluster: FakeKube) -> None:
    outs = SimRunProvider().create(run_props(cluster.url)).outs
    assert outs is not None
    assert read(cluster, outs)[1]["status"] == "Queued"  # until Kueue admits it
    cluster.admit(NS, RUN)
    assert read(cluster, outs)[1]["status"] == "Pending"  # admitted: the Job controller is making its pod
    cluster.start_job(NS, RUN)  # active, but its pod waits for a GPU node
    cluster.add_pod(NS, RUN, "Pending")
    assert read(cluster, outs)[1]["status"] == "Pending"
    cluster.add_pod(NS, RUN, "Running", index=1)
    _, now = read(cluster, outs)
    assert now["status"] == "Running" and now["startTime"]
    assert cluster.calls("GET", "/pods")[-1].query["labelSelector"].startswith("batch.kubernetes.io/controller-uid=")
    cluster.set_service_ingress(NS, SERVICE, "k8s-simfleet-trot-0123.elb.us-east-1.amazonaws.com")
    cluster.finish_job(NS, RUN)
    _, now = read(cluster, outs)
    assert (now["status"], now["viewportAddress"]) == ("Succeeded", "k8s-simfleet-trot-0123.elb.us-east-1.amazonaws.com")
    assert now["completionTime"] and now["jobUid"] == outs["jobUid"] and now["companions"] == outs["companions"]


def test_read_reports_a_failed_job_with_its_failure_time(cluster: FakeKube) -> None:
    outs = SimRunProvider().create(run_props(cluster.url, viewport=False)).outs
    assert outs is not None
    cluster.finish_job(NS, RUN, succeeded=False)
    _, now = read(cluster, outs)
    assert now["status"] == "Failed"
    assert now["completionTime"] == cluster.get("jobs", NS, RUN)["status"]["conditions"][-1]["lastTransitionTime"]  # type: ignore[index]


def test_read_after_ttl_uses_the_single_seed_index(cluster: FakeKube) -> None:
    props = run_props(cluster.url, viewport=False)
    outs = SimRunProvider().create(props).outs
    assert outs is not None
    cluster.finish_job(NS, RUN)
    cluster.expire_job(NS, RUN)
    put_index(props, "Succeeded", start="2026-11-23T10:00:00Z", end="2026-11-23T12:00:00Z")
    id_, now = read(cluster, outs)
    assert id_ == f"{NS}/{RUN}"
    assert (now["status"], now["startTime"], now["completionTime"]) == (
        "Succeeded",
        "2026-11-23T10:00:00Z",
        "2026-11-23T12:00:00Z",
    )


@pytest.mark.parametrize(
    "written, expected",
    [
        ({1: "Succeeded", 2: "Succeeded", 3: "Succeeded"}, "Succeeded"),
        ({1: "Succeeded", 2: "Failed", 3: "Succeeded"}, "Failed"),
        ({1: "Succeeded", 2: "Interrupted", 3: "Succeeded"}, "Failed"),
        ({1: "Succeeded", 3: "Succeeded"}, "Missing"),
    ],
)
def test_read_after_ttl_combines_every_seed_index(cluster: FakeKube, written: dict[int, str], expected: str) -> None:
    props = run_props(cluster.url, viewport=False, seeds=(1, 2, 3))
    for seed, status in written.items():
        put_index(props, status, seed=seed, start=f"2026-11-23T1{seed}:00:00Z", end=f"2026-11-23T1{seed}:30:00Z")
    _, now = read(cluster, stored(props, status="Pending"))
    assert now["status"] == expected
    assert now["startTime"] == "2026-11-23T11:00:00Z"
    assert now["completionTime"] == (None if expected == "Missing" else "2026-11-23T13:30:00Z")


def test_read_with_no_job_and_no_index_is_missing_and_keeps_the_id(cluster: FakeKube) -> None:
    outs = stored(run_props(cluster.url, viewport=False), status="Pending")
    id_, now = read(cluster, outs)
    assert (id_, now["status"]) == (f"{NS}/{RUN}", "Missing")
    # Even a read without an id (an import) answers with the run's id, never an empty one.
    assert read(cluster, outs, id_="")[0] == f"{NS}/{RUN}"


def test_read_ignores_a_job_it_did_not_create(cluster: FakeKube) -> None:
    props = run_props(cluster.url, viewport=False)
    outs = SimRunProvider().create(props).outs
    assert outs is not None
    cluster.expire_job(NS, RUN)
    SimRunProvider().create(run_props(cluster.url, viewport=False, rerun=3))
    cluster.finish_job(NS, RUN, succeeded=False)
    put_index(props, "Succeeded")
    assert read(cluster, outs)[1]["status"] == "Succeeded"


# -- retries ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_errors_are_retried(cluster: FakeKube, status: int) -> None:
    cluster.fail_next(2, status, methods=("POST",))
    SimRunProvider().create(run_props(cluster.url, viewport=False))
    assert [r.path.rsplit("/", 1)[-1] for r in cluster.requests if r.method == "POST"][:3] == ["jobs", "jobs", "jobs"]
    assert cluster.get("jobs", NS, RUN) is not None


def test_dropped_connections_and_timeouts_are_retried(cluster: FakeKube, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eks_auth, "REQUEST_TIMEOUT", (1.0, 0.2))
    cluster.drop_next(1)
    cluster.delay_next(1, 0.5)  # longer than the read timeout
    SimRunProvider().create(run_props(cluster.url, viewport=False))
    assert cluster.get("jobs", NS, RUN) is not None


def test_retries_are_bounded_and_the_error_says_what_to_do(cluster: FakeKube) -> None:
    cluster.fail_next(50, 503)
    with pytest.raises(SimRunError) as err:
        SimRunProvider().create(run_props(cluster.url))
    message = str(err.value)
    assert "run trot-baseline" in message and "5 times" in message and "503" in message and "pulumi up" in message
    assert len(cluster.requests) == kube.RETRY.attempts


def test_backoff_is_exponential_capped_and_honours_retry_after() -> None:
    policy = kube.RetryPolicy(attempts=5, first_delay=0.5, max_delay=8.0)
    assert [policy.delay(i) for i in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.delay(0, retry_after=3) == 3 and policy.delay(0, retry_after=60) == 8.0


# -- contract and secrets -------------------------------------------------------------------------------------------


def test_outputs_hold_no_token_or_credential(cluster: FakeKube) -> None:
    outs = SimRunProvider().create(run_props(cluster.url)).outs
    text = json.dumps(outs)
    assert "k8s-aws-v1." not in text and "fake-secret-key-for-tests" not in text and "AKIDEXAMPLE" not in text
    assert set(provider.STATE_KEYS) | {"jobName"} <= set(outs or {})


def test_check_reports_contract_violations_and_skips_unknowns() -> None:
    good = run_props("https://a")
    assert SimRunProvider().check({}, good).failures == []
    assert SimRunProvider().check({}, {**good, "clusterEndpoint": UNKNOWN, "clusterCa": UNKNOWN}).failures == []
    missing = {k: v for k, v in good.items() if k != "context"}
    assert [f.property for f in SimRunProvider().check({}, missing).failures] == ["context"]
    tampered = {**good, "specHash": "0" * 12}
    [failure] = SimRunProvider().check({}, tampered).failures
    assert failure.property == "spec" and "is not the hash of its spec" in failure.reason
    broken = {**good, "spec": json.dumps({**json.loads(good["spec"]), "seeds": []})}
    [failure] = SimRunProvider().check({}, broken).failures
    assert "seeds" in failure.reason


# -- the EKS connection ---------------------------------------------------------------------------------------------


def test_without_endpoint_inputs_the_provider_asks_eks_once(cluster: FakeKube, monkeypatch: pytest.MonkeyPatch) -> None:
    """EKS's DescribeCluster gives the endpoint and CA, so no run stores a copy of the CA (state stays small)."""
    from botocore.stub import Stubber

    eks = boto3.client("eks", region_name="us-east-1")
    stub = Stubber(eks)
    response = {"cluster": {"name": "simfleet-test", "endpoint": cluster.url, "certificateAuthority": {"data": "Q0E="}}}
    stub.add_response("describe_cluster", response, {"name": "simfleet-test"})
    stub.activate()
    original = boto3.session.Session.client

    def client(self: Any, service: str, *args: Any, **kwargs: Any) -> Any:
        return eks if service == "eks" else original(self, service, *args, **kwargs)

    monkeypatch.setattr(boto3.session.Session, "client", client)
    props = {k: v for k, v in run_props(cluster.url, viewport=False).items() if k not in ("clusterEndpoint", "clusterCa")}
    outs = SimRunProvider().create(props).outs
    assert outs is not None and "clusterCa" not in outs and "clusterEndpoint" not in outs
    assert SimRunProvider().read("x", outs).outs["status"] == "Queued"  # type: ignore[index]
    stub.assert_no_pending_responses()  # one DescribeCluster for both calls: cached per process


def test_a_cluster_eks_does_not_know_is_a_clear_error(cluster: FakeKube) -> None:
    props = {k: v for k, v in run_props(cluster.url).items() if k not in ("clusterEndpoint", "clusterCa")}
    with pytest.raises(SimRunError, match=r"cannot look up EKS cluster simfleet-test in us-east-1 .*eks:DescribeCluster"):
        SimRunProvider().create(props)
    assert cluster.requests == []


# -- continuations: suspended behind a gate until the source succeeded (issue #8) --------------------------------


def continuation(cluster: FakeKube) -> tuple[dict[str, Any], dict[str, Any]]:
    """A single-seed source and a run that continues from it (batch, no viewport)."""
    source = run_props(cluster.url, run="trot-baseline", viewport=False)
    consumer = run_props(
        cluster.url,
        run="trot-continue",
        viewport=False,
        checkpoint={"from": "run:trot-baseline"},
        planned_with=(run_spec("trot-baseline", viewport=False),),
    )
    return source, consumer


def test_a_continuation_waits_suspended_with_no_gpu_until_its_gate_releases_it(cluster: FakeKube) -> None:
    _, consumer = continuation(cluster)
    outs = SimRunProvider().create(consumer).outs
    assert outs is not None and outs["status"] == "Waiting"
    job = cluster.get("jobs", NS, "trot-continue")
    gate = cluster.get("jobs", NS, "trot-continue-gate")
    # No pod, so no GPU, while the source runs; and no queue label, so Kueue does not hold quota for it either.
    assert job is not None and job["spec"]["suspend"] is True
    assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "simfleet-batch"  # set at creation, immutable
    assert gate is not None and gate["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    cluster.admit(NS, "trot-continue")  # Kueue ignores a Job without a queue label
    assert SimRunProvider().read("x", outs).outs["status"] == "Waiting"  # type: ignore[index]
    # The gate's release container does what `kubectl label job ... kueue.x-k8s.io/queue-name=<queue>` does.
    label = {"metadata": {"labels": {"kueue.x-k8s.io/queue-name": "shared"}}}
    cluster.handle(
        "PATCH",
        f"/apis/batch/v1/namespaces/{NS}/jobs/trot-continue",
        json.dumps(label).encode(),
        {"Content-Type": "application/merge-patch+json"},
    )
    assert SimRunProvider().read("x", outs).outs["status"] == "Queued"  # type: ignore[index]
    cluster.start_job(NS, "trot-continue", ready=1)  # Kueue admits it, the Job controller starts its pod
    assert SimRunProvider().read("x", outs).outs["status"] == "Running"  # type: ignore[index]


def test_a_continuation_is_blocked_when_its_gate_gives_up(cluster: FakeKube) -> None:
    _, consumer = continuation(cluster)
    outs = SimRunProvider().create(consumer).outs
    cluster.finish_job(NS, "trot-continue-gate", succeeded=False)  # the source never succeeded before its deadline
    assert SimRunProvider().read("x", outs).outs["status"] == "Blocked"  # type: ignore[arg-type, index]


def test_a_continuation_is_blocked_as_soon_as_its_source_job_has_failed(cluster: FakeKube) -> None:
    source, consumer = continuation(cluster)
    SimRunProvider().create(source)
    outs = SimRunProvider().create(consumer).outs
    assert outs is not None
    put_index(source, "Failed")  # an attempt failed; the source Job may still retry it
    assert SimRunProvider().read("x", outs).outs["status"] == "Waiting"  # type: ignore[index]
    cluster.finish_job(NS, "trot-baseline", succeeded=False)  # now it has failed for good
    assert SimRunProvider().read("x", outs).outs["status"] == "Blocked"  # type: ignore[index]
    cluster.expire_job(NS, "trot-baseline")  # the TTL controller took it: its record still says Failed
    assert SimRunProvider().read("x", outs).outs["status"] == "Blocked"  # type: ignore[index]


def test_a_continuation_of_a_finished_source_starts_at_once_without_a_gate(cluster: FakeKube) -> None:
    source, consumer = continuation(cluster)
    put_index(source, "Succeeded")
    SimRunProvider().create(consumer)
    job = cluster.get("jobs", NS, "trot-continue")
    assert job is not None and job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "shared"  # straight to Kueue
    assert cluster.get("jobs", NS, "trot-continue-gate") is None


# -- update: labels, TTL and viewport CIDRs in place -------------------------------------------------------------


def test_update_moves_viewport_cidrs_onto_the_live_service_and_policy(cluster: FakeKube) -> None:
    props = run_props(cluster.url)
    outs = SimRunProvider().create(props).outs
    assert outs is not None
    wider = run_props(cluster.url, viewport={"allowedCidrs": ["10.20.0.0/16", "10.30.0.0/16"]})
    assert wider["specHash"] == props["specHash"]  # the viewport's CIDRs are not part of what the run computes
    assert SimRunProvider().diff("x", {**outs, "__provider": "p"}, {**wider, "__provider": "p"}).replaces == []
    SimRunProvider().update("x", {**outs, "__provider": "p"}, {**wider, "__provider": "p"})
    service = cluster.get("services", NS, SERVICE)
    policy = cluster.get("networkpolicies", NS, SERVICE)
    assert service is not None and service["spec"]["loadBalancerSourceRanges"] == ["10.20.0.0/16", "10.30.0.0/16"]
    assert policy is not None
    assert [b["ipBlock"]["cidr"] for b in policy["spec"]["ingress"][1]["from"]] == ["10.20.0.0/16", "10.30.0.0/16"]


def test_update_retries_when_the_job_controller_writes_in_between(cluster: FakeKube) -> None:
    props = run_props(cluster.url, viewport=False)
    outs = SimRunProvider().create(props).outs
    assert outs is not None
    original = cluster.handle

    def busy(method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
        if method == "PATCH" and path.endswith(f"/jobs/{RUN}") and not busy.done:  # type: ignore[attr-defined]
            busy.done = True  # type: ignore[attr-defined]
            cluster.set_job_status(NS, RUN, active=1)  # the controller's write bumps the resourceVersion
            cluster.objects[("jobs", NS, RUN)]["metadata"]["resourceVersion"] = "999999"
        return original(method, path, body, headers)

    busy.done = False  # type: ignore[attr-defined]
    cluster.handle = busy  # type: ignore[method-assign, assignment]
    changed = run_props(cluster.url, viewport=False, labels={"user": "bob"})
    SimRunProvider().update("x", {**outs, "__provider": "p"}, {**changed, "__provider": "p"})
    patches = [r for r in cluster.requests if r.method == "PATCH" and r.path.endswith(f"/jobs/{RUN}")]
    assert len(patches) == 2  # the first met a 409 (stale resourceVersion), the second went through
    assert cluster.get("jobs", NS, RUN)["metadata"]["labels"]["simfleet.io/user"] == "bob"  # type: ignore[index]


# -- the lost-state path waits for pods of an earlier Job ---------------------------------------------------------


def test_create_waits_for_pods_of_an_earlier_job_at_the_same_hash(cluster: FakeKube) -> None:
    props = run_props(cluster.url, viewport=False)
    SimRunProvider().create(props)
    cluster.add_pod(NS, RUN, "Running")
    # Someone deleted the Job by hand (Background): its pod is still terminating, writing into the run's prefix.
    cluster.handle("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/{RUN}?propagationPolicy=Background", b"", {})
    timer = threading.Timer(0.2, cluster.collect_garbage)
    timer.start()
    SimRunProvider().create(props)  # a lost state: nothing recorded, no index yet
    timer.join()
    assert cluster.pods_of(NS, RUN) == [] and cluster.get("jobs", NS, RUN) is not None


# -- sweeps: the record of seeds from before a lost state counts --------------------------------------------------


def test_a_recreated_sweep_reports_seeds_that_failed_before_it(cluster: FakeKube) -> None:
    props = run_props(cluster.url, viewport=False, seeds=(1, 2, 3))
    put_index(props, "Failed", seed=1)
    outs = SimRunProvider().create(props).outs  # runs seeds 2 and 3 only
    assert outs is not None
    for seed in (2, 3):
        put_index(props, "Succeeded", seed=seed)
    cluster.finish_job(NS, RUN)
    now = SimRunProvider().read("x", outs).outs
    assert now is not None and now["status"] == "Failed"  # seed 1's record still counts


def test_recoveries_are_summed_from_the_seed_records(cluster: FakeKube) -> None:
    props = run_props(cluster.url, viewport=False, seeds=(1, 2))
    for seed, recoveries in ((1, 2), (2, 1)):
        key = f"runs/{RUN}/{props['specHash']}/seed-{seed}/index.json"
        body = {"status": "Succeeded", "recoveries": recoveries, "startTime": "t", "completionTime": "t"}
        boto3.client("s3", region_name="us-east-1").put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=json.dumps(body).encode())
    outs = SimRunProvider().create(props).outs
    assert outs is not None and (outs["status"], outs["recoveries"]) == ("Succeeded", 3)


# -- states written before identity v1 are adopted, never rerun ------------------------------------------------------


def test_a_pre_v1_run_is_adopted_not_replaced(cluster: FakeKube) -> None:
    olds = legacy_outputs(cluster)
    job = old_job(cluster, olds["specHash"])
    news = {**run_props(cluster.url, viewport=False), "__provider": "pickled"}
    diff = SimRunProvider().diff("x", olds, news)
    assert (diff.changes, diff.replaces, diff.delete_before_replace) == (True, [], False)
    outs = SimRunProvider().update("x", olds, news).outs
    assert outs is not None
    assert outs["adoptedFrom"] == {"specHash": olds["specHash"], "prefix": olds["artifactsPrefix"]}
    assert outs["jobUid"] == job["metadata"]["uid"] and outs["claim"]
    assert cluster.get("jobs", NS, RUN)["metadata"]["annotations"][kube.CLAIM_ANNOTATION] == outs["claim"]  # type: ignore[index]
    # From now on it is kept, and read where the old hash put its records.
    assert SimRunProvider().diff("x", {**outs, "__provider": "pickled"}, news).changes is False
    cluster.objects.pop(("jobs", NS, RUN))  # the TTL controller
    old_index = f"{olds['artifactsPrefix']}index.json"
    body = {"status": "Succeeded", "startTime": "2026-11-20T10:00:00Z", "completionTime": "2026-11-20T12:00:00Z"}
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=ARTIFACTS_BUCKET, Key=old_index, Body=json.dumps(body).encode())
    assert SimRunProvider().read("x", outs).outs["status"] == "Succeeded"  # type: ignore[index]


def test_a_pre_v1_state_reads_and_deletes_by_its_old_hash(cluster: FakeKube) -> None:
    olds = legacy_outputs(cluster)
    old_job(cluster, olds["specHash"])
    read = SimRunProvider().read("x", olds).outs
    assert read is not None and read["status"] == "Pending" and read["specHash"] == olds["specHash"]
    SimRunProvider().delete("x", olds)
    assert cluster.get("jobs", NS, RUN) is None
    # A namesake with another hash is never deleted for it.
    old_job(cluster, "ffffffffffff")
    SimRunProvider().delete("x", olds)
    assert cluster.get("jobs", NS, RUN) is not None
