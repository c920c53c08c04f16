"""A continuation's gate: gate.sh with the real AWS CLI against moto's S3 server on 127.0.0.1, the release patch it
hands to kubectl applied through the fake API server, and the per-run RBAC the release acts as.

tests/pod_harness.py has the server, the pod's env and how the scripts are run; nothing asserts on how long
anything took.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_kube import TEST_GLUE, FakeKube, run_context, run_props, run_spec
from pod_harness import GUARD, Moto, ScriptPod, explain, moto_server_for, read_until, wait_for

import naming
from config import RunSpec
from tools.term_stress import session_processes
from workloads.provider import SimRunProvider
from workloads.renderers.run import SERVICE_ACCOUNT_DIR, release_command, render_run
from workloads.runs import plan_runs

ARTIFACTS = "simfleet-dev-artifacts"
SOURCE_PREFIX = "runs/trot-baseline/aaa/"
SOURCE_INDEX_KEY = f"{SOURCE_PREFIX}index.json"
SOURCE_INDEX = f"s3://{ARTIFACTS}/{SOURCE_INDEX_KEY}"
NS = naming.RUNS_NAMESPACE

needs_bash = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("jq")), reason="needs bash and jq (the AWS CLI image has both)"
)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[Moto]:
    yield from moto_server_for((ARTIFACTS,))


@pytest.fixture
def pod(tmp_path: Path, moto_server: Moto) -> Iterator[ScriptPod]:
    moto_server.reset()
    pod = ScriptPod(tmp_path, moto_server, "trot-continue-gate-x7k2p", {"SIMFLEET_RUN": "trot-continue"})
    try:
        yield pod
    finally:
        pod.stop()


def _gate_env(**extra: str) -> dict[str, str]:
    return {
        "SIMFLEET_SOURCE_INDEX": SOURCE_INDEX,
        "SIMFLEET_GATE_POLL_SECONDS": "0.2",  # (30 in the pod) the tests that wait for a poll wait this long
        "SIMFLEET_SOURCE_DEADLINE_SECONDS": "100000",
        "SIMFLEET_GATE_GRACE_SECONDS": "900",
        **extra,
    }


def put_attempt(pod: ScriptPod) -> None:
    """The source's pod started now: its attempt marker (fetch.sh record_attempt) beside the index."""
    pod.put(ARTIFACTS, f"{SOURCE_PREFIX}attempts/20261207T100000Z-trot-baseline-0-abcde.json", json.dumps({"run": "x"}))


# -- gate.sh ------------------------------------------------------------------------------------------------------


@needs_bash
def test_gate_opens_on_a_succeeded_index(pod: ScriptPod) -> None:
    pod.put(ARTIFACTS, SOURCE_INDEX_KEY, json.dumps({"status": "Succeeded", "seed": 7}))
    result = pod.run("gate.sh", **_gate_env(SIMFLEET_GATE_DEADLINE_SECONDS="100"))
    assert result.returncode == 0, explain(result)
    assert "the source run succeeded" in result.stdout


@needs_bash
def test_gate_keeps_waiting_through_a_failed_source_until_it_succeeds(pod: ScriptPod) -> None:
    pod.put(ARTIFACTS, SOURCE_INDEX_KEY, json.dumps({"status": "Failed", "reason": "spot reclaimed twice"}))
    gate = pod.start("gate.sh", **_gate_env(SIMFLEET_GATE_DEADLINE_SECONDS="100"))
    read_until(gate, "the source run is Failed; waiting")
    pod.put(ARTIFACTS, SOURCE_INDEX_KEY, json.dumps({"status": "Succeeded"}))
    _, stderr = gate.communicate(timeout=GUARD)
    assert gate.returncode == 0, stderr


@needs_bash
@pytest.mark.parametrize("poll", ["0", "30s"])
def test_gate_names_a_poll_interval_that_is_not_a_number_of_seconds(pod: ScriptPod, poll: str) -> None:
    result = pod.run("gate.sh", **_gate_env(SIMFLEET_GATE_DEADLINE_SECONDS="100", SIMFLEET_GATE_POLL_SECONDS=poll))
    assert result.returncode == 2, explain(result)
    assert result.stderr == f"gate: SIMFLEET_GATE_POLL_SECONDS must be a number of seconds above 0, not '{poll}'\n"
    assert pod.moto.requests == []


@needs_bash
@pytest.mark.parametrize(
    ("index", "status", "seen"),
    [
        (
            '{"status": "Fail\\ted", "reason": "it\'s \\"x\\"\\n"}',
            "Fail\ted",
            '{"status":"Fail\\ted","reason":"it\'s \\"x\\"\\n"}',
        ),
        ('{"reason": "r"}', "none", '{"reason":"r"}'),
        ('["Succeeded"]', "unreadable", 'not JSON: ["Succeeded"]'),  # (not an object: jq 1.6 failed on it)
        ('{"status": "Succe', "unreadable", 'not JSON: {"status": "Succe'),
        (
            '{"status": "Failed"}\n{"status": "Interrupted"}',
            "Failed\nInterrupted",
            '{"status":"Failed"}\n{"status":"Interrupted"}',
        ),
    ],
)
def test_gate_reads_an_index_of_any_shape_as_one_jq_per_field_did(pod: ScriptPod, index: str, status: str, seen: str) -> None:
    # The status and the index are read with one jq (common.sh JQ_READ): tabs, quotes and newlines as they were.
    pod.put(ARTIFACTS, SOURCE_INDEX_KEY, index)
    result = pod.run("gate.sh", **_gate_env(SIMFLEET_GATE_DEADLINE_SECONDS="0"))
    assert result.returncode == 1
    assert f"gate: the source run is {status}; waiting" in result.stdout, result.stdout
    assert result.stderr.strip().endswith(f"last seen: {seen}"), result.stderr


@needs_bash
def test_gate_times_out_quoting_the_last_index_it_saw(pod: ScriptPod) -> None:
    pod.put(ARTIFACTS, SOURCE_INDEX_KEY, json.dumps({"status": "Interrupted", "recoveries": 2}))
    result = pod.run("gate.sh", **_gate_env(SIMFLEET_GATE_DEADLINE_SECONDS="0"))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"gate: gave up after 0 s waiting for {SOURCE_INDEX} to say Succeeded; "
        'last seen: {"status":"Interrupted","recoveries":2}'
    )


@needs_bash
def test_gate_times_out_with_no_index(pod: ScriptPod) -> None:
    result = pod.run("gate.sh", **_gate_env(SIMFLEET_GATE_DEADLINE_SECONDS="0"))
    assert result.returncode == 1 and result.stderr.strip().endswith("last seen: no index")
    assert "has not finished" in result.stdout


@needs_bash
def test_gate_reports_a_403_as_an_access_problem_at_once(pod: ScriptPod) -> None:
    pod.put(ARTIFACTS, SOURCE_INDEX_KEY, json.dumps({"status": "Succeeded"}))
    deny = {"Effect": "Deny", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{ARTIFACTS}/runs/trot-baseline/*"}
    with pod.denied(deny):
        result = pod.run("gate.sh", **_gate_env(SIMFLEET_GATE_DEADLINE_SECONDS="100"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"gate: access denied (403) reading {SOURCE_INDEX}")


@needs_bash
def test_gate_gives_up_at_once_when_the_bucket_does_not_exist(pod: ScriptPod) -> None:
    """NoSuchBucket is not a hiccup: waiting 14 days for a bucket that is gone helps nobody."""
    gone = "s3://simfleet-dev-gone/runs/trot-baseline/aaa/index.json"
    result = pod.run("gate.sh", **_gate_env(SIMFLEET_SOURCE_INDEX=gone, SIMFLEET_GATE_DEADLINE_SECONDS="100"))
    assert result.returncode == 2, explain(result)
    assert result.stderr.startswith("gate: bucket simfleet-dev-gone does not exist")


@needs_bash
def test_gate_gives_up_15_minutes_after_the_sources_own_deadline(pod: ScriptPod) -> None:
    """The source's latest pod started (attempt marker); once its Job deadline and the grace have passed without a
    Succeeded index, the gate ends long before its 14-day cap."""
    put_attempt(pod)
    pod.put(ARTIFACTS, SOURCE_INDEX_KEY, json.dumps({"status": "Failed"}))
    result = pod.run(
        "gate.sh",
        **_gate_env(
            SIMFLEET_SOURCE_DEADLINE_SECONDS="0", SIMFLEET_GATE_GRACE_SECONDS="0", SIMFLEET_GATE_DEADLINE_SECONDS="1209600"
        ),
    )
    assert result.returncode == 1, explain(result)
    assert "gave up: the source's latest pod started at" in result.stderr
    assert 'last seen: {"status":"Failed"}' in result.stderr


@needs_bash
def test_gate_waits_past_the_source_deadline_while_the_source_has_not_started(pod: ScriptPod) -> None:
    """No attempt marker: the source is still queued (no clock of its own yet), so only the cap ends the wait."""
    gate = pod.start(
        "gate.sh",
        **_gate_env(SIMFLEET_SOURCE_DEADLINE_SECONDS="0", SIMFLEET_GATE_GRACE_SECONDS="0", SIMFLEET_GATE_DEADLINE_SECONDS="100"),
    )
    read_until(gate, "has not finished")
    read_until(gate, "has not finished")  # a second poll: it did not give up after the first
    pod.put(ARTIFACTS, SOURCE_INDEX_KEY, json.dumps({"status": "Succeeded"}))
    _, stderr = gate.communicate(timeout=GUARD)
    assert gate.returncode == 0, stderr


@needs_bash
def test_a_running_source_within_its_deadline_keeps_the_gate_waiting(pod: ScriptPod) -> None:
    put_attempt(pod)
    result = pod.run("gate.sh", **_gate_env(SIMFLEET_GATE_DEADLINE_SECONDS="0"))
    assert result.returncode == 1 and "gave up after 0 s" in result.stderr  # the cap, not the source's clock


@needs_bash
def test_gate_on_sigterm_stops_at_once_with_its_aws_call(pod: ScriptPod) -> None:
    # SIGTERM while the gate's own aws call waits on S3, which holds it 30 s: the guardian ends the gate and that call
    # with it (before, the trap waited for the call to return), and nothing of the gate is left running.
    slow = pod.moto.slow("GET", rf"/{ARTIFACTS}/{SOURCE_INDEX_KEY}", delay=30)
    gate = pod.start("gate.sh", **_gate_env(SIMFLEET_GATE_DEADLINE_SECONDS="100"))
    wait_for(lambda: slow.hits > 0, "the gate's GET of the index, held by S3")
    terminated_at = time.monotonic()
    gate.send_signal(signal.SIGTERM)
    _, stderr = gate.communicate(timeout=GUARD)
    assert gate.returncode == 143 and stderr.strip() == "gate: terminated", stderr
    # The aws call got its SIGTERM with the gate's shell and may still be on its way out when the gate has ended.
    wait_for(lambda: not session_processes(gate.pid), "the gate's processes to end")
    assert time.monotonic() - terminated_at < 20  # ended, not waited for: S3 would have answered at 30 s


# -- the release and the RBAC it acts as ------------------------------------------------------------------------


CTX = run_context()
SOURCE_SPEC = run_spec("trot-baseline", viewport=False)
CONSUMER_SPEC = run_spec("trot-continue", viewport=False, checkpoint={"from": "run:trot-baseline"})


def gated_plan(gated: bool = True) -> tuple[RunSpec, list[dict[str, Any]], str]:
    """A continuation's objects as the provider renders them while its source has not succeeded (or has)."""
    specs = [RunSpec.model_validate(SOURCE_SPEC), RunSpec.model_validate(CONSUMER_SPEC)]
    run = next(p for p in plan_runs(specs, CTX, {specs[1].glue: TEST_GLUE}) if p.spec.name == "trot-continue")
    assert run.source is not None
    return run.spec, render_run(run.spec, CTX, run.identity, "glue-x", run.source, gated=gated), run.identity.spec_hash


def test_the_gate_release_acts_as_the_runs_own_account_limited_to_its_job() -> None:
    spec, objects, _ = gated_plan()
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert kinds[-5:] == [
        ("ServiceAccount", "trot-continue-gate"),
        ("Role", "trot-continue-gate"),
        ("RoleBinding", "trot-continue-gate"),
        ("Secret", "trot-continue-gate-token"),
        ("Job", "trot-continue-gate"),
    ], "the account, its rights and its token exist before the gate's pod needs them"
    role = next(o for o in objects if o["kind"] == "Role")
    assert role["rules"] == [
        {"apiGroups": ["batch"], "resources": ["jobs"], "resourceNames": [spec.name], "verbs": ["get", "patch"]}
    ]
    binding = next(o for o in objects if o["kind"] == "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "trot-continue-gate", "namespace": NS}]
    secret = next(o for o in objects if o["kind"] == "Secret")
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "trot-continue-gate"
    pod = next(o for o in objects if o["metadata"]["name"] == "trot-continue-gate" and o["kind"] == "Job")["spec"]["template"][
        "spec"
    ]
    # The shared gate account (IRSA, reads run records) brings no API token of its own any more.
    assert pod["serviceAccountName"] == naming.GATE_SERVICE_ACCOUNT and pod["automountServiceAccountToken"] is False
    [release] = pod["containers"]
    assert {"name": "gate-token", "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": True} in release["volumeMounts"]
    assert {"name": "gate-token", "secret": {"secretName": "trot-continue-gate-token"}} in pod["volumes"]
    wait_env = {e["name"]: e["value"] for e in pod["initContainers"][0]["env"]}
    assert wait_env["SIMFLEET_GATE_GRACE_SECONDS"] == "900"
    assert int(wait_env["SIMFLEET_SOURCE_DEADLINE_SECONDS"]) > 0


def test_a_run_released_at_creation_gets_no_gate_and_no_gate_account() -> None:
    _, objects, _ = gated_plan(gated=False)
    assert not [o for o in objects if "gate" in o["metadata"]["name"]]


@pytest.mark.usefixtures("provider_world")
def test_the_provider_writes_the_gate_account_owned_by_the_runs_job(cluster: FakeKube) -> None:
    props = run_props(
        cluster.url,
        run="trot-continue",
        viewport=False,
        checkpoint={"from": "run:trot-baseline"},
        planned_with=(SOURCE_SPEC,),
    )
    outs = SimRunProvider().create(props).outs
    assert outs is not None
    uid = cluster.get("jobs", NS, "trot-continue")["metadata"]["uid"]  # type: ignore[index]
    for plural, name in [
        ("serviceaccounts", "trot-continue-gate"),
        ("roles", "trot-continue-gate"),
        ("rolebindings", "trot-continue-gate"),
        ("secrets", "trot-continue-gate-token"),
        ("jobs", "trot-continue-gate"),
    ]:
        found = cluster.get(plural, NS, name)
        assert found is not None and found["metadata"]["ownerReferences"][0]["uid"] == uid, (plural, name)
    assert {c["kind"] for c in outs["companions"]} >= {"ServiceAccount", "Role", "RoleBinding", "Secret", "Job"}
    SimRunProvider().delete("x", outs)  # the recorded companions go with the run
    assert cluster.get("serviceaccounts", NS, "trot-continue-gate") is None
    assert cluster.get("rolebindings", NS, "trot-continue-gate") is None


def release_patch(command: list[str]) -> bytes:
    assert command[:3] == ["/bin/kubectl", "patch", "job"] and "--type=json" in command
    return command[command.index("-p") + 1].encode()


def test_the_release_labels_its_own_job_and_refuses_a_successor(cluster: FakeKube) -> None:
    """The patch kubectl sends, applied by the API server: it adds the queue label to the Job of its own spec hash;
    a gate left over from an earlier spec meets a successor Job with another hash, whose test op fails (422)."""
    spec, objects, spec_hash = gated_plan()
    job = next(o for o in objects if o["kind"] == "Job" and o["metadata"]["name"] == spec.name)
    cluster.put_object("jobs", json.loads(json.dumps(job)))
    path = f"/apis/batch/v1/namespaces/{NS}/jobs/{spec.name}"
    headers = {"Content-Type": "application/json-patch+json"}
    patch = release_patch(release_command(spec, CTX, spec_hash))
    status, body, _ = cluster.handle("PATCH", path, patch, headers)
    assert isinstance(body, dict)  # a JSON answer, not a log stream
    assert status == 200 and body["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "shared"
    assert cluster.handle("PATCH", path, patch, headers)[0] == 200  # a retried gate patches again: fine
    # A successor with another hash under the same name: the leftover gate cannot release it.
    cluster.objects.pop(("jobs", NS, spec.name))
    successor = json.loads(json.dumps(job))
    successor["metadata"]["annotations"][naming.SPEC_HASH_ANNOTATION] = "ffffffffffff"
    cluster.put_object("jobs", successor)
    status, body, _ = cluster.handle("PATCH", path, patch, headers)
    assert isinstance(body, dict)
    assert status == 422 and body["reason"] == "Invalid"
    assert "kueue.x-k8s.io/queue-name" not in (cluster.get("jobs", NS, spec.name) or {})["metadata"]["labels"]
