"""SimRunProvider through the real kubernetes client against the fake API server, and S3 (moto) for finished runs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from fake_kube import FakeKube, run_props
from moto import mock_aws
from pulumi.runtime.rpc import UNKNOWN

import naming
from workloads import eks_auth, provider
from workloads.provider import SimRunError, SimRunProvider

NS = "simfleet-runs"
RUN = "trot-baseline"
HASH = "0123456789ab"
BUCKET = "simfleet-test-artifacts"


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key-for-tests")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # No sleeping between retries in tests; the attempt count stays the production one.
    monkeypatch.setattr(provider, "RETRY", provider.RetryPolicy(attempts=5, first_delay=0, max_delay=0))
    eks_auth.reset_caches()
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield
    eks_auth.reset_caches()


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube() as server:
        yield server


def put_index(key: str, status: str, start: str = "2026-11-23T10:00:00Z", end: str = "2026-11-23T11:00:00Z") -> None:
    body = {
        "run": RUN,
        "specHash": HASH,
        "seed": 7,
        "status": status,
        "startTime": start,
        "completionTime": end,
        "checkpoint": None,
    }
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=BUCKET, Key=key, Body=json.dumps(body).encode())


def s3_keys() -> list[str]:
    listing = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=BUCKET)
    return sorted(o["Key"] for o in listing.get("Contents", []))


# -- create ------------------------------------------------------------------------------------------------


def test_create_applies_configmap_service_then_job_verbatim(kube: FakeKube) -> None:
    props = run_props(kube.url)
    result = SimRunProvider().create(props)
    assert result.id == f"{NS}/{RUN}"
    assert [(r.method, r.path) for r in kube.requests] == [
        ("POST", f"/api/v1/namespaces/{NS}/configmaps"),
        ("POST", f"/api/v1/namespaces/{NS}/services"),
        ("POST", f"/apis/batch/v1/namespaces/{NS}/jobs"),
        ("PATCH", f"/api/v1/namespaces/{NS}/configmaps/{RUN}-glue"),
        ("PATCH", f"/api/v1/namespaces/{NS}/services/{RUN}-viewport"),
    ]
    # The rendered dicts go out unchanged (an integer GPU quantity included), and the annotation is kept.
    assert kube.requests[2].body == props["objects"][2]
    job = kube.get("jobs", NS, RUN)
    assert job is not None and job["metadata"]["annotations"][naming.SPEC_HASH_ANNOTATION] == HASH
    assert kube.requests[0].headers["authorization"].startswith("Bearer k8s-aws-v1.")
    outs = result.outs
    assert outs is not None
    assert (outs["jobName"], outs["status"], outs["startTime"], outs["viewportAddress"]) == (RUN, "Pending", None, None)
    # Every input is in the outputs (read and delete only get those), the objects as refs: they are in the inputs.
    assert {k: outs[k] for k in props if k != "objects"} == {k: v for k, v in props.items() if k != "objects"}
    assert "objects" not in outs
    assert outs["objectRefs"] == [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{RUN}-glue", "namespace": NS}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{RUN}-viewport", "namespace": NS}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": RUN, "namespace": NS}},
    ]


def test_whole_numbers_from_the_wire_are_sent_as_integers(kube: FakeKube) -> None:
    props = run_props(kube.url)
    job = props["objects"][2]
    # Pulumi delivers every number as a double; the API server wants integers for these fields.
    job["spec"]["activeDeadlineSeconds"] = float(job["spec"]["activeDeadlineSeconds"])
    job["spec"]["ttlSecondsAfterFinished"] = 600.0
    SimRunProvider().create(props)
    sent = kube.get("jobs", NS, RUN)
    assert sent is not None
    assert type(sent["spec"]["activeDeadlineSeconds"]) is int and sent["spec"]["ttlSecondsAfterFinished"] == 600
    assert type(sent["spec"]["ttlSecondsAfterFinished"]) is int


def test_the_ttl_controller_takes_configmap_and_viewport_service_with_the_job(kube: FakeKube) -> None:
    SimRunProvider().create(run_props(kube.url))
    uid = kube.get("jobs", NS, RUN)["metadata"]["uid"]  # type: ignore[index]
    for plural, name in (("configmaps", f"{RUN}-glue"), ("services", f"{RUN}-viewport")):
        owners = kube.get(plural, NS, name)["metadata"]["ownerReferences"]  # type: ignore[index]
        assert owners == [{"apiVersion": "batch/v1", "kind": "Job", "name": RUN, "uid": uid}]
    kube.expire_job(NS, RUN)
    kube.collect_garbage()
    assert kube.get("configmaps", NS, f"{RUN}-glue") is None
    assert kube.get("services", NS, f"{RUN}-viewport") is None  # the NLB goes with it


def test_create_without_viewport_applies_no_service(kube: FakeKube) -> None:
    SimRunProvider().create(run_props(kube.url, viewport=False))
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in kube.requests] == [
        ("POST", "configmaps"),
        ("POST", "jobs"),
        ("PATCH", f"{RUN}-glue"),
    ]


def test_create_again_adopts_the_job_with_the_same_hash(kube: FakeKube) -> None:
    props = run_props(kube.url)
    SimRunProvider().create(props)
    uid = kube.get("jobs", NS, RUN)["metadata"]["uid"]  # type: ignore[index]
    kube.start_job(NS, RUN, ready=1)
    kube.requests.clear()
    result = SimRunProvider().create(props)  # a retry after a crash
    assert result.outs is not None and result.outs["status"] == "Running"
    assert kube.get("jobs", NS, RUN)["metadata"]["uid"] == uid  # type: ignore[index]
    methods = [(r.method, r.path.split("/")[-2] if r.method != "POST" else r.path.split("/")[-1]) for r in kube.requests]
    # ConfigMap and Service are replaced in place (the Service with its resourceVersion and clusterIP).
    assert ("PUT", "configmaps") in methods and ("PUT", "services") in methods
    service_put = next(r for r in kube.requests if r.method == "PUT" and "/services/" in r.path)
    assert service_put.body["metadata"]["resourceVersion"] and service_put.body["spec"]["clusterIP"].startswith("10.100.")
    assert not any(r.method in ("PUT", "PATCH", "DELETE") and "/jobs" in r.path for r in kube.requests)


def test_create_replaces_a_leftover_service(kube: FakeKube) -> None:
    props = run_props(kube.url)
    stale = json.loads(json.dumps(props["objects"][1]))
    stale["spec"]["ports"] = [{"name": "old", "port": 1234, "protocol": "TCP"}]
    kube.put_object("services", stale)
    SimRunProvider().create(props)
    live = kube.get("services", NS, f"{RUN}-viewport")
    assert live is not None and [p["port"] for p in live["spec"]["ports"]] == [49100, 47998]


def test_create_refuses_a_job_with_another_hash(kube: FakeKube) -> None:
    SimRunProvider().create(run_props(kube.url, spec_hash="aaaaaaaaaaaa"))
    with pytest.raises(SimRunError) as err:
        SimRunProvider().create(run_props(kube.url, spec_hash="bbbbbbbbbbbb"))
    message = str(err.value)
    for needle in (RUN, "aaaaaaaaaaaa", "bbbbbbbbbbbb", f"kubectl -n {NS} delete job {RUN}", "another name"):
        assert needle in message, message
    assert kube.get("jobs", NS, RUN)["metadata"]["annotations"][naming.SPEC_HASH_ANNOTATION] == "aaaaaaaaaaaa"  # type: ignore[index]


def test_create_refuses_a_job_simfleet_did_not_create(kube: FakeKube) -> None:
    foreign = run_props(kube.url)["objects"][2]
    del foreign["metadata"]["annotations"]
    kube.put_object("jobs", foreign)
    with pytest.raises(SimRunError, match="spec hash none"):
        SimRunProvider().create(run_props(kube.url))


def test_create_waits_for_the_replaced_job_to_finish_deleting(kube: FakeKube, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provider, "RETRY", provider.RetryPolicy(attempts=5, first_delay=0.05, max_delay=0.2))
    old = run_props(kube.url, spec_hash="aaaaaaaaaaaa")
    SimRunProvider().create(old)
    kube.handle("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/{RUN}?propagationPolicy=Foreground", b"", {})
    timer = threading.Timer(0.1, kube.collect_garbage)
    timer.start()
    result = SimRunProvider().create(run_props(kube.url))
    timer.join()
    assert result.outs is not None
    assert kube.get("jobs", NS, RUN)["metadata"]["annotations"][naming.SPEC_HASH_ANNOTATION] == HASH  # type: ignore[index]


def test_create_into_a_missing_namespace_says_what_to_do(kube: FakeKube) -> None:
    with pytest.raises(SimRunError, match=r"run trot-baseline: creating ConfigMap .* HTTP 404: .* deploy the platform"):
        SimRunProvider().create(run_props(kube.url, namespace="nowhere"))


# -- diff and update -------------------------------------------------------------------------------------------


def stored(props: dict[str, Any], status: str = "Succeeded") -> dict[str, Any]:
    """What the state holds after create: inputs, outputs and the pickled provider."""
    return {**provider.outputs(props, {"status": status, "startTime": "t0"}), "__provider": "pickled"}


def test_diff_replaces_on_a_new_spec_hash_deleting_first() -> None:
    olds = stored(run_props("https://a"))
    news = {**run_props("https://a", spec_hash="ffffffffffff"), "__provider": "pickled"}
    result = SimRunProvider().diff(f"{NS}/{RUN}", olds, news)
    assert (result.changes, result.replaces, result.delete_before_replace) == (True, ["specHash"], True)


def test_diff_treats_an_unknown_spec_hash_as_a_replace() -> None:
    result = SimRunProvider().diff("x", stored(run_props("https://a")), {**run_props("https://a"), "specHash": UNKNOWN})
    assert result.replaces == ["specHash"] and result.changes is True


@pytest.mark.parametrize(
    "key, value",
    [("clusterEndpoint", "https://b"), ("clusterCa", "Zm9v"), ("region", "eu-west-1"), ("kubeconfig", "apiVersion: v1")],
)
def test_diff_updates_in_place_when_only_the_connection_changes(key: str, value: str) -> None:
    result = SimRunProvider().diff(
        "x", stored(run_props("https://a")), {**run_props("https://a"), key: value, "__provider": "new"}
    )
    assert (result.changes, result.replaces, result.delete_before_replace) == (True, [], False)


def test_diff_reports_no_change_for_the_same_inputs_whatever_the_status() -> None:
    result = SimRunProvider().diff(
        "x", stored(run_props("https://a"), status="Running"), {**run_props("https://a"), "__provider": "other"}
    )
    assert result.changes is False and result.replaces == []


def test_update_touches_nothing_in_the_cluster(kube: FakeKube) -> None:
    olds = stored(run_props("https://old-endpoint"))
    result = SimRunProvider().update("x", olds, run_props(kube.url))
    assert kube.requests == []
    assert result.outs is not None
    assert result.outs["clusterEndpoint"] == kube.url and result.outs["status"] == "Succeeded"


# -- delete ---------------------------------------------------------------------------------------------------


def test_delete_removes_the_job_in_the_background_then_service_and_configmap(kube: FakeKube) -> None:
    props = run_props(kube.url)
    put_index(f"runs/{RUN}/{HASH}/index.json", "Succeeded")
    outs = SimRunProvider().create(props).outs
    assert outs is not None
    kube.add_pod(NS, RUN, "Running")
    kube.requests.clear()
    SimRunProvider().delete(f"{NS}/{RUN}", outs)
    deletes = [
        (r.path.split("/")[-2], r.query.get("propagationPolicy"), (r.body or {}).get("propagationPolicy")) for r in kube.requests
    ]
    assert deletes == [
        ("jobs", "Background", "Background"),
        ("services", "Background", "Background"),
        ("configmaps", "Background", "Background"),
    ]
    assert all(r.method == "DELETE" for r in kube.requests)
    assert kube.get("jobs", NS, RUN) is None and kube.get("services", NS, f"{RUN}-viewport") is None
    assert len(kube.pods_of(NS, RUN)) == 1, "Background: the pod is left to the garbage collector"
    kube.collect_garbage()
    assert kube.pods_of(NS, RUN) == []
    assert s3_keys() == [f"runs/{RUN}/{HASH}/index.json"], "S3 is never touched"


def test_delete_of_objects_already_gone_succeeds(kube: FakeKube) -> None:
    props = run_props(kube.url)
    SimRunProvider().create(props)
    kube.expire_job(NS, RUN)  # the TTL controller was first
    SimRunProvider().delete("x", provider.outputs(props, {}))
    SimRunProvider().delete("x", provider.outputs(props, {}))  # and again: everything is 404 now
    assert kube.objects == {}


# -- read -----------------------------------------------------------------------------------------------------


def read(kube: FakeKube, props: dict[str, Any], id_: str = f"{NS}/{RUN}") -> tuple[str | None, dict[str, Any]]:
    result = SimRunProvider().read(id_, provider.outputs(props, {"status": "Pending"}))
    assert result.outs is not None
    return result.id, result.outs


def test_read_follows_the_job_through_its_life(kube: FakeKube) -> None:
    props = run_props(kube.url)
    SimRunProvider().create(props)
    assert read(kube, props)[1]["status"] == "Pending"
    kube.start_job(NS, RUN)  # active, but its pod waits for a GPU node
    kube.add_pod(NS, RUN, "Pending")
    assert read(kube, props)[1]["status"] == "Pending"
    kube.add_pod(NS, RUN, "Running", index=1)
    _, outs = read(kube, props)
    assert outs["status"] == "Running" and outs["startTime"]
    pod_list = kube.calls("GET", "/pods")[-1]
    assert pod_list.query["labelSelector"].startswith("batch.kubernetes.io/controller-uid=")
    kube.set_service_ingress(NS, f"{RUN}-viewport", "k8s-simfleet-trot-0123.elb.us-east-1.amazonaws.com")
    kube.finish_job(NS, RUN)
    _, outs = read(kube, props)
    assert (outs["status"], outs["viewportAddress"]) == ("Succeeded", "k8s-simfleet-trot-0123.elb.us-east-1.amazonaws.com")
    assert outs["completionTime"] and outs["startTime"]


def test_read_reports_a_failed_job_with_its_failure_time(kube: FakeKube) -> None:
    props = run_props(kube.url, viewport=False)
    SimRunProvider().create(props)
    kube.finish_job(NS, RUN, succeeded=False)
    _, outs = read(kube, props)
    assert outs["status"] == "Failed"
    assert outs["completionTime"] == kube.get("jobs", NS, RUN)["status"]["conditions"][-1]["lastTransitionTime"]  # type: ignore[index]


def test_read_after_ttl_uses_the_single_seed_index(kube: FakeKube) -> None:
    props = run_props(kube.url, viewport=False)
    SimRunProvider().create(props)
    kube.finish_job(NS, RUN)
    kube.expire_job(NS, RUN)
    put_index(f"runs/{RUN}/{HASH}/index.json", "Succeeded", start="2026-11-23T10:00:00Z", end="2026-11-23T12:00:00Z")
    id_, outs = read(kube, props)
    assert id_ == f"{NS}/{RUN}"
    assert (outs["status"], outs["startTime"], outs["completionTime"]) == (
        "Succeeded",
        "2026-11-23T10:00:00Z",
        "2026-11-23T12:00:00Z",
    )


@pytest.mark.parametrize(
    "written, expected",
    [
        ({1: "Succeeded", 2: "Succeeded", 3: "Succeeded"}, "Succeeded"),
        ({1: "Succeeded", 2: "Failed", 3: "Succeeded"}, "Failed"),
        ({1: "Succeeded", 3: "Succeeded"}, "Missing"),
    ],
)
def test_read_after_ttl_combines_every_seed_index(kube: FakeKube, written: dict[int, str], expected: str) -> None:
    props = run_props(kube.url, viewport=False, seeds=(1, 2, 3))
    for seed, status in written.items():
        put_index(
            f"runs/{RUN}/{HASH}/seed-{seed}/index.json",
            status,
            start=f"2026-11-23T1{seed}:00:00Z",
            end=f"2026-11-23T1{seed}:30:00Z",
        )
    _, outs = read(kube, props)
    assert outs["status"] == expected
    assert outs["startTime"] == "2026-11-23T11:00:00Z"
    assert outs["completionTime"] == (None if expected == "Missing" else "2026-11-23T13:30:00Z")


def test_read_with_no_job_and_no_index_is_missing_and_keeps_the_id(kube: FakeKube) -> None:
    props = run_props(kube.url, viewport=False)
    id_, outs = read(kube, props)
    assert (id_, outs["status"]) == (f"{NS}/{RUN}", "Missing")
    # Even a read without an id (an import) answers with the run's id, never an empty one.
    assert read(kube, props, id_="")[0] == f"{NS}/{RUN}"


def test_read_ignores_a_job_with_another_hash(kube: FakeKube) -> None:
    SimRunProvider().create(run_props(kube.url, spec_hash="aaaaaaaaaaaa", viewport=False))
    kube.finish_job(NS, RUN, succeeded=False)
    props = run_props(kube.url, viewport=False)
    put_index(f"runs/{RUN}/{HASH}/index.json", "Succeeded")
    assert read(kube, props)[1]["status"] == "Succeeded"


# -- retries --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_errors_are_retried(kube: FakeKube, status: int) -> None:
    kube.fail_next(2, status, methods=("POST",))
    SimRunProvider().create(run_props(kube.url, viewport=False))
    assert [r.method for r in kube.requests[:3]] == ["POST", "POST", "POST"]
    assert kube.get("jobs", NS, RUN) is not None


def test_dropped_connections_and_timeouts_are_retried(kube: FakeKube, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eks_auth, "REQUEST_TIMEOUT", (1.0, 0.2))
    kube.drop_next(1)
    kube.delay_next(1, 0.5)  # longer than the read timeout
    props = run_props(kube.url, viewport=False)
    SimRunProvider().create(props)
    assert kube.get("jobs", NS, RUN) is not None


def test_retries_are_bounded_and_the_error_says_what_to_do(kube: FakeKube) -> None:
    kube.fail_next(50, 503)
    with pytest.raises(SimRunError) as err:
        SimRunProvider().create(run_props(kube.url))
    message = str(err.value)
    assert "run trot-baseline" in message and "5 times" in message and "503" in message and "pulumi up" in message
    assert len(kube.requests) == provider.RETRY.attempts


def test_backoff_is_exponential_capped_and_honours_retry_after() -> None:
    policy = provider.RetryPolicy(attempts=5, first_delay=0.5, max_delay=8.0)
    assert [policy.delay(i) for i in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.delay(0, retry_after=3) == 3 and policy.delay(0, retry_after=60) == 8.0


# -- contract and secrets -------------------------------------------------------------------------------------


def test_outputs_hold_no_token_or_credential(kube: FakeKube) -> None:
    outs = SimRunProvider().create(run_props(kube.url)).outs
    text = json.dumps(outs)
    assert "k8s-aws-v1." not in text and "fake-secret-key-for-tests" not in text and "AKIDEXAMPLE" not in text
    assert set(provider.STATE_KEYS) | {"jobName"} <= set(outs or {})


def test_check_reports_contract_violations_and_skips_unknowns() -> None:
    good = run_props("https://a")
    assert SimRunProvider().check({}, good).failures == []
    assert SimRunProvider().check({}, {**good, "specHash": UNKNOWN, "objects": UNKNOWN}).failures == []
    bad = run_props("https://a")
    bad["objects"][2]["metadata"]["name"] = "other"
    bad["specHash"] = "XYZ"
    del bad["region"]
    failures = {(f.property, f.reason.split(" ")[0]) for f in SimRunProvider().check({}, bad).failures}
    assert ("region", "region") in failures and ("specHash", "'XYZ'") in failures
    assert any(prop == "objects" for prop, _ in failures)
    reordered = run_props("https://a")
    reordered["objects"].reverse()
    assert [f.property for f in SimRunProvider().check({}, reordered).failures] == ["objects"]


def test_diff_ignores_a_rendering_change_the_spec_hash_does_not_cover() -> None:
    news = run_props("https://a")
    news["objects"][0]["data"]["glue.py"] = "# rendered differently by a newer simfleet\n"
    result = SimRunProvider().diff("x", stored(run_props("https://a")), {**news, "__provider": "pickled"})
    assert result.changes is False, "the Job of a finished run is never touched for a code change"
