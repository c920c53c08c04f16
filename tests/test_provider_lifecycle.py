"""The run lifecycle's hard cases (issue #16): engine unknowns, leftover pods, deletes that cannot finish, racing
creates, imports, seeds that died without a record, legacy adoptions after a lost state, and cancelled runs.

Every test drives SimRunProvider through the real kubernetes client against the fake API server (tests/fake_kube.py)
and moto's S3, and each one failed on the code before the fix it covers.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import boto3
import pytest
from fake_kube import ARTIFACTS_BUCKET, FakeKube, run_props, run_spec
from provider_support import NS, RUN, RUNTIME_CM, legacy_outputs, old_job, put_cancel, put_index, stored, writes
from pulumi.output import Unknown
from pulumi.runtime import rpc

import naming
from workloads import kube
from workloads.inputs import objects_from_inputs
from workloads.provider import PROVIDER_KEY, SimRunError, SimRunProvider

pytestmark = pytest.mark.usefixtures("provider_world")


def s3() -> Any:
    return boto3.client("s3", region_name="us-east-1")


# -- 1. unknowns reach the provider as pulumi.output.Unknown objects ---------------------------------------------


def over_the_wire(props: dict[str, Any], keep_unknowns: bool = True) -> dict[str, Any]:
    """props as the dynamic provider host receives them: serialized by the SDK into the protobuf Struct the engine
    sends (an unknown is the rpc.UNKNOWN sentinel there), then deserialized the way pulumi/dynamic/__main__.py does
    for Check and Diff (keep_unknowns=True: an unknown becomes a pulumi.output.Unknown object)."""
    struct = asyncio.run(rpc.serialize_properties(props, {}))
    return dict(rpc.deserialize_properties(struct, keep_unknowns))


def test_the_wire_turns_an_unknown_into_an_object_not_the_sentinel_string() -> None:
    wire = over_the_wire({"specHash": Unknown(), PROVIDER_KEY: "p"})
    assert isinstance(wire["specHash"], Unknown) and wire["specHash"] != rpc.UNKNOWN


def test_an_unknown_spec_hash_from_the_engine_never_replaces_the_run() -> None:
    props = run_props("https://a")
    olds = over_the_wire(stored(props))
    news = over_the_wire({**props, "specHash": Unknown(), PROVIDER_KEY: "pickled"})
    result = SimRunProvider().diff(f"{NS}/{RUN}", olds, news)
    assert (result.replaces, result.delete_before_replace) == ([], False)
    assert result.changes is True  # something may change; only a known new hash may replace


def test_a_known_new_spec_hash_through_the_wire_still_replaces() -> None:
    olds = over_the_wire(stored(run_props("https://a")))
    news = over_the_wire({**run_props("https://a", rerun=1), PROVIDER_KEY: "pickled"})
    result = SimRunProvider().diff(f"{NS}/{RUN}", olds, news)
    assert (result.replaces, result.delete_before_replace) == (["specHash"], True)


@pytest.mark.parametrize("key", ["context", "spec", "specHash", "clusterEndpoint"])
def test_check_skips_the_contract_while_an_input_is_unknown(key: str) -> None:
    news = over_the_wire({**run_props("https://a"), key: Unknown(), PROVIDER_KEY: "pickled"})
    assert SimRunProvider().check({}, news).failures == []


# -- 2. leftover pods are waited out before the records are read -------------------------------------------------


def test_the_fake_keeps_the_hash_annotation_on_pods_made_from_the_template(cluster: FakeKube) -> None:
    props = run_props(cluster.url, viewport=False)
    SimRunProvider().create(props)
    pod = cluster.add_pod(NS, RUN, "Running")
    assert pod["metadata"]["annotations"][naming.SPEC_HASH_ANNOTATION] == props["specHash"]


def test_a_pod_that_records_its_seed_while_create_waits_is_not_run_again(cluster: FakeKube) -> None:
    """A lost state, and the Job deleted by hand (Background): its pod still runs and writes index.json while
    `create` waits for it. The record it writes is read after the wait, so nothing starts again and nothing
    overwrites the record under the same prefix."""
    props = run_props(cluster.url, viewport=False)
    SimRunProvider().create(props)
    pod = cluster.add_pod(NS, RUN, "Running")
    cluster.handle("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/{RUN}?propagationPolicy=Background", b"", {})

    def the_pod_ends() -> None:
        put_index(props, "Succeeded")
        cluster.set_pod_phase(NS, pod["metadata"]["name"], "Succeeded")
        cluster.collect_garbage()

    timer = threading.Timer(0.2, the_pod_ends)
    timer.start()
    cluster.requests.clear()
    outs = SimRunProvider().create(props).outs
    timer.join()
    assert outs is not None and (outs["status"], outs["jobUid"]) == ("Succeeded", None)
    assert cluster.get("jobs", NS, RUN) is None and writes(cluster) == []


def test_pods_of_another_hash_are_not_waited_for(cluster: FakeKube) -> None:
    SimRunProvider().create(run_props(cluster.url, viewport=False, rerun=1))
    cluster.add_pod(NS, RUN, "Running")
    cluster.handle("DELETE", f"/apis/batch/v1/namespaces/{NS}/jobs/{RUN}?propagationPolicy=Background", b"", {})
    props = run_props(cluster.url, viewport=False)  # the replacement writes under its own prefix
    SimRunProvider().create(props)
    assert cluster.get("jobs", NS, RUN)["metadata"]["annotations"][naming.SPEC_HASH_ANNOTATION] == props["specHash"]  # type: ignore[index]


# -- 3. delete never reports success while the Job lives ---------------------------------------------------------


def status_writer(cluster: FakeKube, times: int) -> None:
    """The Job controller writing the Job's status between the provider's read and its delete, `times` times."""
    original = cluster.handle
    left = [times]

    def busy(method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
        if method == "DELETE" and path.split("?")[0].endswith(f"/jobs/{RUN}") and left[0] > 0:
            left[0] -= 1
            with cluster._lock:
                cluster.objects[("jobs", NS, RUN)]["metadata"]["resourceVersion"] = f"9{left[0]}{len(cluster.requests)}"
        return original(method, path, body, headers)

    cluster.handle = busy  # type: ignore[method-assign, assignment]


def test_a_delete_that_cannot_remove_the_job_fails_and_removes_nothing(cluster: FakeKube) -> None:
    outs = SimRunProvider().create(run_props(cluster.url, viewport=False)).outs
    assert outs is not None
    status_writer(cluster, times=100)
    with pytest.raises(SimRunError, match=r"it still runs, so this resource stays in the state"):
        SimRunProvider().delete(f"{NS}/{RUN}", outs)
    # The engine keeps the resource; the Job keeps its ConfigMap (not removed under a running pod).
    assert cluster.get("jobs", NS, RUN) is not None and cluster.get("configmaps", NS, RUNTIME_CM) is not None


def test_a_delete_retries_through_status_writes(cluster: FakeKube) -> None:
    outs = SimRunProvider().create(run_props(cluster.url, viewport=False)).outs
    assert outs is not None
    status_writer(cluster, times=kube.RETRY.attempts - 1)
    SimRunProvider().delete(f"{NS}/{RUN}", outs)
    cluster.collect_garbage()  # the shared runtime ConfigMap goes with its last owner
    assert cluster.get("jobs", NS, RUN) is None and cluster.get("configmaps", NS, RUNTIME_CM) is None


# -- 4. the loser of a create race holds the Job it adopts --------------------------------------------------------


def test_the_loser_of_a_create_race_writes_its_claim_and_can_delete_the_run(cluster: FakeKube) -> None:
    """Two creates of one run (two backends, or a state restored from backup): the other one's POST lands between
    this one's read and its POST. The loser adopts the winner's Job, so its claim must be the one on the Job."""
    props = run_props(cluster.url, viewport=False)
    winner = next(o for o in objects_from_inputs(props) if o["kind"] == "Job")
    winner["metadata"]["annotations"][kube.CLAIM_ANNOTATION] = "the-winner"
    original = cluster.handle

    def race(method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
        if method == "POST" and path.endswith("/jobs") and cluster.get("jobs", NS, RUN) is None:
            cluster.put_object("jobs", json.loads(json.dumps(winner)))
        return original(method, path, body, headers)

    cluster.handle = race  # type: ignore[method-assign, assignment]
    outs = SimRunProvider().create(props).outs
    assert outs is not None
    job = cluster.get("jobs", NS, RUN)
    assert job is not None and outs["jobUid"] == job["metadata"]["uid"]
    assert job["metadata"]["annotations"][kube.CLAIM_ANNOTATION] == outs["claim"] != "the-winner"
    # The winner's create had not written the ConfigMap yet: the adopter does, owned by the Job.
    assert cluster.get("configmaps", NS, RUNTIME_CM)["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]  # type: ignore[index]
    SimRunProvider().delete(f"{NS}/{RUN}", outs)
    assert cluster.get("jobs", NS, RUN) is None, "the run is deleted by the resource that holds it"


def test_a_job_that_goes_while_create_adopts_it_is_treated_as_gone(cluster: FakeKube) -> None:
    """A lost state; the run's Job, created but not started yet, is deleted (by hand) between create's read and its
    claim. Nothing holds the run then: create must go on as for a Job that is gone (its never-started seed gets a new
    Job), not record a claim on nothing and report the run Missing forever."""
    props = run_props(cluster.url, viewport=False)
    SimRunProvider().create(props)
    original = cluster.handle
    gone: list[str] = []

    def deleted_before_the_claim(method: str, path: str, body: bytes, headers: dict[str, str]) -> Any:
        if method == "PATCH" and path.endswith(f"/jobs/{RUN}") and not gone:
            with cluster._lock:
                gone.append(cluster.objects.pop(("jobs", NS, RUN))["metadata"]["uid"])
        return original(method, path, body, headers)

    cluster.handle = deleted_before_the_claim  # type: ignore[method-assign, assignment]
    outs = SimRunProvider().create(props).outs
    job = cluster.get("jobs", NS, RUN)
    assert job is not None and job["metadata"]["uid"] != gone[0], "the never-started seed runs in a new Job"
    assert outs is not None and (outs["status"], outs["jobUid"]) == ("Queued", job["metadata"]["uid"])
    assert job["metadata"]["annotations"][kube.CLAIM_ANNOTATION] == outs["claim"]


# -- 5. importing an interrupted create holds its Job ------------------------------------------------------------


def test_a_refresh_importing_an_interrupted_create_holds_the_job(cluster: FakeKube) -> None:
    """`pulumi refresh --import-pending-creates <urn> <id>`: the engine reads the resource with its id and only the
    inputs of the interrupted create (pulumi/dynamic/__main__.py Read falls back to inputs). The Job that create
    made carries its claim; the imported state must hold that claim, or its delete would never remove the Job."""
    props = run_props(cluster.url, viewport=False)
    SimRunProvider().create(props)  # the engine crashed before recording the outputs
    inputs = over_the_wire({**props, PROVIDER_KEY: "pickled"}, keep_unknowns=False)
    outs = SimRunProvider().read(f"{NS}/{RUN}", inputs).outs
    job = cluster.get("jobs", NS, RUN)
    assert outs is not None and job is not None
    assert (outs["jobUid"], outs["claim"]) == (job["metadata"]["uid"], job["metadata"]["annotations"][kube.CLAIM_ANNOTATION])
    SimRunProvider().delete(f"{NS}/{RUN}", outs)
    assert cluster.get("jobs", NS, RUN) is None


# -- 6. a seed that died without index.json is not run again -----------------------------------------------------


def put_attempt(props: dict[str, Any], seed: int | None = None, stamp: str = "20261123T100000Z") -> None:
    prefix = f"runs/{props['runName']}/{props['specHash']}/" + (f"seed-{seed}/" if seed is not None else "")
    marker = {"run": props["runName"], "pod": f"{RUN}-0-abcde", "startTime": "2026-11-23T10:00:00Z"}
    s3().put_object(Bucket=ARTIFACTS_BUCKET, Key=f"{prefix}attempts/{stamp}-{RUN}-0-abcde.json", Body=json.dumps(marker).encode())


def test_a_seed_killed_before_its_record_is_recorded_failed_not_run_again(cluster: FakeKube) -> None:
    """SIGKILL, a lost node, a failed final PUT: the pod's attempt marker is in S3 but no index.json. After a lost
    state, create must not start the seed again (it would write over what the first pod left)."""
    props = run_props(cluster.url, viewport=False)
    put_attempt(props)
    outs = SimRunProvider().create(props).outs
    assert outs is not None and (outs["status"], outs["jobUid"]) == ("Failed", None)
    assert writes(cluster) == [] and cluster.get("jobs", NS, RUN) is None
    # A later refresh says the same, not Missing.
    assert SimRunProvider().read(f"{NS}/{RUN}", {**outs, PROVIDER_KEY: "p"}).outs["status"] == "Failed"  # type: ignore[index]


def test_a_recreated_sweep_leaves_out_seeds_that_started_without_a_record(cluster: FakeKube) -> None:
    props = run_props(cluster.url, viewport=False, seeds=(1, 2, 3), parallelism=3)
    put_attempt(props, seed=1)
    put_index(props, "Succeeded", seed=2)
    SimRunProvider().create(props)
    job = cluster.get("jobs", NS, RUN)
    assert job is not None and job["spec"]["completions"] == 1
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["SIMFLEET_SEEDS"]) == [3]


# -- 7. a legacy adoption outlives the state ---------------------------------------------------------------------


def test_a_legacy_adoption_survives_a_lost_state(cluster: FakeKube) -> None:
    olds = legacy_outputs(cluster)
    job = old_job(cluster, olds["specHash"])
    news = {**run_props(cluster.url, viewport=False), PROVIDER_KEY: "pickled"}
    adopted = SimRunProvider().update("x", olds, news).outs
    assert adopted is not None and adopted["adoptedFrom"]["specHash"] == olds["specHash"]
    # The state is lost; the next `pulumi up` creates the run from its (new-rules) inputs.
    cluster.requests.clear()
    again = SimRunProvider().create(news).outs
    assert again is not None and again["adoptedFrom"] == adopted["adoptedFrom"]
    assert again["jobUid"] == job["metadata"]["uid"] and again["status"] == "Pending"
    assert [m for m, _ in writes(cluster)] == ["PATCH"], "the old Job is claimed; no Job is created"
    assert cluster.get("jobs", NS, RUN)["metadata"]["annotations"][kube.CLAIM_ANNOTATION] == again["claim"]  # type: ignore[index]
    # Once the old Job is gone, a lost state records the outcome from the old prefix.
    cluster.objects.pop(("jobs", NS, RUN))
    record = {"status": "Succeeded", "startTime": "2026-11-20T10:00:00Z", "completionTime": "2026-11-20T12:00:00Z"}
    s3().put_object(Bucket=ARTIFACTS_BUCKET, Key=f"{olds['artifactsPrefix']}index.json", Body=json.dumps(record).encode())
    last = SimRunProvider().create(news).outs
    assert last is not None and (last["status"], last["jobUid"]) == ("Succeeded", None)
    assert cluster.get("jobs", NS, RUN) is None


def test_a_continuation_of_a_legacy_adopted_run_reads_its_old_prefix(cluster: FakeKube) -> None:
    olds = legacy_outputs(cluster)
    source = {**run_props(cluster.url, viewport=False), PROVIDER_KEY: "pickled"}
    SimRunProvider().update("x", olds, source)
    record = {"status": "Succeeded", "startTime": "2026-11-20T10:00:00Z", "completionTime": "2026-11-20T12:00:00Z"}
    s3().put_object(Bucket=ARTIFACTS_BUCKET, Key=f"{olds['artifactsPrefix']}index.json", Body=json.dumps(record).encode())
    consumer = run_props(
        cluster.url,
        run="trot-continue",
        viewport=False,
        checkpoint={"from": f"run:{RUN}"},
        planned_with=(run_spec(RUN, viewport=False),),
    )
    SimRunProvider().create(consumer)
    job = cluster.get("jobs", NS, "trot-continue")
    assert job is not None and job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "shared", "not held behind a gate"
    assert cluster.get("jobs", NS, "trot-continue-gate") is None
    fetch = next(c for c in job["spec"]["template"]["spec"]["initContainers"] if c["name"] == "checkpoint-fetch")
    env = {e["name"]: e["value"] for e in fetch["env"]}
    assert env["SIMFLEET_CHECKPOINT_FROM"].endswith(f"/{olds['artifactsPrefix']}out.mstate")
    assert env["SIMFLEET_SOURCE_INDEX"] == f"s3://{ARTIFACTS_BUCKET}/{olds['artifactsPrefix']}index.json"


# -- Cancelled is final like Succeeded ---------------------------------------------------------------------------


def test_a_cancelled_run_is_recorded_and_never_run_again_until_rerun(cluster: FakeKube) -> None:
    props = run_props(cluster.url, viewport=False)
    put_cancel(props, (7,))  # cancelled while it was queued: no pod ever wrote a record
    outs = SimRunProvider().create(props).outs
    assert outs is not None and (outs["status"], outs["jobUid"]) == ("Cancelled", None) and writes(cluster) == []
    assert SimRunProvider().read(f"{NS}/{RUN}", {**outs, PROVIDER_KEY: "p"}).outs["status"] == "Cancelled"  # type: ignore[index]
    bumped = run_props(cluster.url, viewport=False, rerun=1)
    assert SimRunProvider().create(bumped).outs["status"] == "Queued"  # type: ignore[index]


def test_a_cancel_recorded_while_the_job_ended_reports_cancelled(cluster: FakeKube) -> None:
    props = run_props(cluster.url, viewport=False)
    outs = SimRunProvider().create(props).outs
    put_cancel(props, (7,))
    cluster.finish_job(NS, RUN, succeeded=False)  # the cancel stopped its pod ...
    put_index(props, "Interrupted")  # ... whose uploader then recorded the SIGTERM
    assert SimRunProvider().read(f"{NS}/{RUN}", {**outs, PROVIDER_KEY: "p"}).outs["status"] == "Cancelled"  # type: ignore[dict-item, index]


def test_a_cancelled_job_held_suspended_by_kueue_reports_cancelled_not_queued(cluster: FakeKube) -> None:
    """Kueue keeps the Job of a deactivated Workload suspended for good (it never finishes, so no TTL removes it)."""
    props = run_props(cluster.url, viewport=False)
    outs = SimRunProvider().create(props).outs
    assert outs is not None and outs["status"] == "Queued"
    put_cancel(props, (7,))
    assert SimRunProvider().read(f"{NS}/{RUN}", {**outs, PROVIDER_KEY: "p"}).outs["status"] == "Cancelled"  # type: ignore[index]


def test_a_cancelled_sweep_starts_none_of_its_seeds_after_a_lost_state(cluster: FakeKube) -> None:
    """A sweep cancelled while some seeds had not started yet (parallelism below the seed count): the cancel record
    lists every seed it stopped, the ones that had not started too, so a lost state starts none of them."""
    props = run_props(cluster.url, viewport=False, seeds=(1, 2, 3), parallelism=1)
    put_index(props, "Succeeded", seed=1)
    put_cancel(props, (2, 3))
    put_index(props, "Interrupted", seed=2)  # the stopped pod's uploader, after the cancel
    outs = SimRunProvider().create(props).outs
    assert outs is not None and (outs["status"], outs["jobUid"]) == ("Cancelled", None)
    assert writes(cluster) == [] and cluster.get("jobs", NS, RUN) is None


def test_a_sweep_with_one_seed_cancelled_still_runs_its_other_seeds_after_a_lost_state(cluster: FakeKube) -> None:
    props = run_props(cluster.url, viewport=False, seeds=(1, 2, 3), parallelism=1)
    put_index(props, "Succeeded", seed=1)
    put_cancel(props, (2,), whole=False)
    outs = SimRunProvider().create(props).outs
    assert outs is not None and outs["status"] == "Queued"
    job = cluster.get("jobs", NS, RUN)
    assert job is not None and job["spec"]["completions"] == 1  # seed 3 only
