"""Run manifests: every object passes strict schema validation, the pod has the designed shape, hashes are stable."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions, major_minor

import naming
from config import RunSpec
from workloads import contract
from workloads.identity import RunContext, SourceRef, glue_config_map_name, glue_sha256, identify
from workloads.inputs import objects_from_inputs, run_inputs
from workloads.manifests import AWS_CLI_IMAGE, FETCH_SCRIPT, GLUE_SCRIPT, UPLOAD_SCRIPT, glue_configmap, job_deadline, render_run

ROOT = Path(__file__).resolve().parent.parent
GLUE = (ROOT / "glue" / "trot.py").read_text()
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
CTX = RunContext(
    cluster_name="simfleet-dev",
    namespace=naming.RUNS_NAMESPACE,
    service_account=naming.RUN_SERVICE_ACCOUNT,
    checkpoints_bucket="simfleet-dev-checkpoints",
    artifacts_bucket="simfleet-dev-artifacts",
    registry_url=REGISTRY,
    region="us-east-1",
    kubernetes_version="1.35",
    vpc_cidr="10.40.0.0/16",
)


def _stack_runs() -> dict[str, dict[str, Any]]:
    runs = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]["simfleet:runs"]
    return {run["name"]: run for run in runs}


def _spec(base: str, **changes: Any) -> RunSpec:
    """A dev-stack run, with some fields changed."""
    raw = copy.deepcopy(_stack_runs()[base])
    raw.update(changes)
    return RunSpec.model_validate(raw)


def _validation_version(stack_version: str) -> str:
    """The newest schema set kubernetes-validate ships that is not newer than the stack's Kubernetes."""
    wanted = tuple(int(p) for p in stack_version.split("."))
    candidates = [major_minor(v) for v in all_versions() if tuple(int(p) for p in major_minor(v).split(".")) <= wanted]
    return max(candidates, key=lambda v: tuple(int(p) for p in v.split(".")))


STACK_VERSION = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]["simfleet:platform"]["kubernetesVersion"]
K8S_SCHEMA_VERSION = _validation_version(STACK_VERSION)


@dataclass(frozen=True)
class RunPlan:
    """A run as the tests look at it: its identity, deadline and rendered objects."""

    run: str
    spec_hash: str
    prefix: str
    artifacts_uri: str
    checkpoint_uri: str | None
    index_uri: str | None
    active_deadline_seconds: int
    objects: list[dict[str, Any]]


def plan_run(spec: RunSpec, ctx: RunContext, glue: str, source: RunPlan | None = None) -> RunPlan:
    ref = None
    if source is not None:
        assert source.checkpoint_uri and source.index_uri
        ref = SourceRef(source.run, source.spec_hash, source.checkpoint_uri, source.index_uri, source.active_deadline_seconds)
    identity = identify(spec, ctx, glue_sha256(glue), ref)
    objects = render_run(spec, ctx, identity, glue_config_map_name(glue_sha256(glue)), ref)
    return RunPlan(
        spec.name,
        identity.spec_hash,
        identity.prefix,
        identity.artifacts_uri,
        identity.checkpoint_uri,
        identity.index_uri,
        job_deadline(spec, ref),
        objects,
    )


def plans() -> dict[str, RunPlan]:
    """The dev stack's runs plus a custom-resources run, planned in checkpoint order."""
    baseline = plan_run(_spec("trot-baseline"), CTX, GLUE)
    return {
        "trot-baseline": baseline,
        "trot-sweep": plan_run(_spec("trot-sweep"), CTX, GLUE),
        "trot-continue": plan_run(_spec("trot-continue"), CTX, GLUE, baseline),
        "big-fresh": plan_run(
            _spec(
                "trot-sweep",
                name="big-fresh",
                gpus=4,
                cpu="30",
                memory="180Gi",
                checkpoint={"from": None, "save": False},
                seeds=[3],
                parallelism=None,
            ),
            CTX,
            GLUE,
        ),
    }


PLANS = plans()


def _by_kind(plan: RunPlan, kind: str) -> dict[str, Any]:
    [obj] = [o for o in plan.objects if o["kind"] == kind]
    return obj


def _pod(plan: RunPlan) -> dict[str, Any]:
    return _by_kind(plan, "Job")["spec"]["template"]["spec"]


def _containers(plan: RunPlan) -> dict[str, dict[str, Any]]:
    pod = _pod(plan)
    return {c["name"]: c for c in [*pod["initContainers"], *pod["containers"]]}


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


# ---------------------------------------------------------------------------------------------
# Schema validation
# ---------------------------------------------------------------------------------------------


def test_validation_uses_the_stack_kubernetes_version() -> None:
    # kubernetes-validate 1.37 ships 1.35 schemas, so the stack's version is validated exactly.
    assert STACK_VERSION == "1.35" and K8S_SCHEMA_VERSION == "1.35"


@pytest.mark.parametrize("run", sorted(PLANS))
def test_every_object_passes_strict_validation(run: str) -> None:
    for obj in PLANS[run].objects:
        kubernetes_validate.validate(obj, K8S_SCHEMA_VERSION, strict=True)


def test_strict_validation_rejects_unknown_fields() -> None:
    # The check above is only worth something if a misspelt field fails it.
    job = copy.deepcopy(_by_kind(PLANS["trot-sweep"], "Job"))
    job["spec"]["template"]["spec"]["containers"][0]["restartPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_SCHEMA_VERSION, strict=True)


def test_objects_come_in_apply_order() -> None:
    assert [o["kind"] for o in PLANS["trot-baseline"].objects] == ["ConfigMap", "Service", "Job"]
    assert [o["kind"] for o in PLANS["trot-sweep"].objects] == ["ConfigMap", "Job"]
    names = [o["metadata"]["name"] for o in PLANS["trot-baseline"].objects]
    assert names == ["trot-baseline-runtime", "trot-baseline-viewport", "trot-baseline"]
    assert all(o["metadata"]["namespace"] == naming.RUNS_NAMESPACE for o in PLANS["trot-baseline"].objects)


# ---------------------------------------------------------------------------------------------
# Pod shape
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", sorted(PLANS))
def test_containers_sidecars_and_main(run: str) -> None:
    pod = _pod(PLANS[run])
    assert [c["name"] for c in pod["initContainers"]] == ["checkpoint-fetch", "unitree-sim", "monty"]
    assert "restartPolicy" not in pod["initContainers"][0]  # a plain init container: runs to completion first
    assert [c.get("restartPolicy") for c in pod["initContainers"][1:]] == ["Always", "Always"]  # native sidecars
    assert [c["name"] for c in pod["containers"]] == ["glue", "artifact-uploader"]
    assert pod["restartPolicy"] == "Never"
    assert _containers(PLANS[run])["checkpoint-fetch"]["image"] == AWS_CLI_IMAGE
    assert _containers(PLANS[run])["artifact-uploader"]["image"] == AWS_CLI_IMAGE


@pytest.mark.parametrize(("run", "gpus"), [("trot-baseline", "1"), ("trot-sweep", "1"), ("big-fresh", "4")])
def test_gpu_request_equals_limit_on_the_simulator_only(run: str, gpus: str) -> None:
    containers = _containers(PLANS[run])
    sim = containers["unitree-sim"]["resources"]
    assert sim["requests"][naming.GPU_RESOURCE] == sim["limits"][naming.GPU_RESOURCE] == gpus
    others = [name for name, c in containers.items() if name != "unitree-sim" and naming.GPU_RESOURCE in str(c["resources"])]
    assert others == []


def test_cpu_and_memory_split_within_the_run_request() -> None:
    containers = _containers(PLANS["big-fresh"])  # cpu 30, memory 180Gi
    long_running = [containers[n]["resources"] for n in ("unitree-sim", "monty", "glue", "artifact-uploader")]
    cpu = sum(int(r["requests"]["cpu"].removesuffix("m")) for r in long_running)
    memory = sum(int(r["requests"]["memory"].removesuffix("Mi")) for r in long_running)
    assert 29_000 <= cpu <= 30_000 and 180 * 1024 - 8 <= memory <= 180 * 1024
    assert all(r["limits"]["memory"] == r["requests"]["memory"] for r in long_running)
    assert all("cpu" not in r["limits"] for r in long_running)  # CPU throttling would slow physics


@pytest.mark.parametrize("run", sorted(PLANS))
def test_restricted_security_on_pod_and_every_container(run: str) -> None:
    pod = _pod(PLANS[run])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsUser"] > 0 and "fsGroup" in pod["securityContext"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == CTX.service_account
    for container in [*pod["initContainers"], *pod["containers"]]:
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, container["name"]
        assert security["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert security["runAsNonRoot"] is True, container["name"]
        assert "privileged" not in security
    volumes = pod["volumes"]
    assert all(set(v) - {"name"} <= {"emptyDir", "configMap"} for v in volumes)  # nothing from the host
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)


def test_volumes_are_emptydirs_with_memory_backed_shm() -> None:
    volumes = {v["name"]: v for v in _pod(PLANS["trot-baseline"])["volumes"]}
    assert {"checkpoints", "artifacts", "glue", "dshm"} <= set(volumes)
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory" and volumes["dshm"]["emptyDir"]["sizeLimit"] == "3072Mi"
    assert volumes["contract"]["configMap"]["name"] == "trot-baseline-runtime"
    # The glue comes from the shared ConfigMap named by its content, mounted read-only where glue runs.
    assert volumes["glue"]["configMap"]["name"] == glue_config_map_name(glue_sha256(GLUE))
    mounts = {c["name"]: {m["mountPath"] for m in c["volumeMounts"]} for c in _containers(PLANS["trot-baseline"]).values()}
    assert mounts["checkpoint-fetch"] == {"/contract", "/checkpoints"}
    assert "/dev/shm" in mounts["unitree-sim"] and "/checkpoints" in mounts["monty"]
    assert {"/glue", "/checkpoints", "/artifacts"} <= mounts["glue"]


@pytest.mark.parametrize(("run", "capacity"), [("trot-baseline", "ON_DEMAND"), ("trot-sweep", "SPOT"), ("trot-continue", "SPOT")])
def test_scheduling_per_mode(run: str, capacity: str) -> None:
    pod = _pod(PLANS[run])
    assert pod["nodeSelector"] == {naming.NODE_POOL_LABEL: "gpu", naming.CAPACITY_TYPE_LABEL: capacity}
    assert pod["tolerations"] == [
        {"key": naming.GPU_TAINT_KEY, "operator": "Equal", "value": naming.GPU_TAINT_VALUE, "effect": naming.GPU_TAINT_EFFECT}
    ]


def test_batch_is_an_indexed_job_that_ignores_spot_disruption() -> None:
    job = _by_kind(PLANS["trot-sweep"], "Job")["spec"]
    assert job["completionMode"] == "Indexed"
    sweep = _stack_runs()["trot-sweep"]
    assert job["completions"] == len(sweep["seeds"]) == 8
    assert job["parallelism"] == sweep["parallelism"]
    assert job["backoffLimitPerIndex"] == 1 and "backoffLimit" not in job
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in job["podFailurePolicy"][
        "rules"
    ]
    assert job["podReplacementPolicy"] == "Failed"
    env = _env(_containers(PLANS["trot-sweep"])["glue"])
    assert json.loads(env["SIMFLEET_SEEDS"]) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert env["SIMFLEET_PER_SEED"] == "true" and "SIMFLEET_SEED" not in env


def test_interactive_is_a_single_pod_with_a_small_backoff() -> None:
    job = _by_kind(PLANS["trot-baseline"], "Job")["spec"]
    assert job["completionMode"] == "NonIndexed" and job["completions"] == job["parallelism"] == 1
    assert job["backoffLimit"] == 1 and "backoffLimitPerIndex" not in job
    assert _env(_containers(PLANS["trot-baseline"])["glue"])["SIMFLEET_SEED"] == "7"


def test_deadline_and_ttl() -> None:
    baseline, sweep, cont = (_by_kind(PLANS[r], "Job")["spec"] for r in ("trot-baseline", "trot-sweep", "trot-continue"))
    assert (baseline["activeDeadlineSeconds"], baseline["ttlSecondsAfterFinished"]) == (2 * 3600, 600)
    assert (sweep["activeDeadlineSeconds"], sweep["ttlSecondsAfterFinished"]) == (3 * 3600, 1800)
    # A continuation may wait for its source's whole deadline before its own maxRuntime starts.
    assert cont["activeDeadlineSeconds"] == 2 * 3600 + 2 * 3600
    assert PLANS["trot-continue"].active_deadline_seconds == cont["activeDeadlineSeconds"]


def test_glue_stops_before_the_deadline_leaving_time_to_upload() -> None:
    # trot-sweep: 8 seeds, `parallelism` at a time -> ceil(8 / parallelism) waves inside the 3 h deadline;
    # each pod keeps a fifth of its slot (at most 15 min) for the upload.
    sweep = _stack_runs()["trot-sweep"]
    per_pod = 3 * 3600 // -(-len(sweep["seeds"]) // sweep["parallelism"])
    glue = _env(_containers(PLANS["trot-sweep"])["glue"])
    uploader = _env(_containers(PLANS["trot-sweep"])["artifact-uploader"])
    assert int(glue["SIMFLEET_STOP_AFTER_SECONDS"]) == per_pod - min(900, per_pod // 5)
    assert int(glue["SIMFLEET_STOP_AFTER_SECONDS"]) < int(uploader["SIMFLEET_UPLOAD_WAIT_SECONDS"]) < per_pod


def test_labels_and_spec_hash_annotation() -> None:
    plan = PLANS["trot-baseline"]
    job = _by_kind(plan, "Job")
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        labels = meta["labels"]
        assert {f"app.kubernetes.io/{k}" for k in ("name", "instance", "component", "part-of", "managed-by")} <= set(labels)
        assert labels[naming.RUN_LABEL] == "trot-baseline" and labels["app.kubernetes.io/instance"] == "trot-baseline"
        assert labels["simfleet.io/user"] == "alice" and labels["simfleet.io/project"] == "locomotion"
        assert labels["simfleet.io/profile"] == "quadruped-default" and labels["simfleet.io/seed"] == "7"
        assert meta["annotations"][naming.SPEC_HASH_ANNOTATION] == plan.spec_hash
    sweep = _by_kind(PLANS["trot-sweep"], "Job")["spec"]["template"]["metadata"]["labels"]
    assert "simfleet.io/seed" not in sweep  # Indexed pods carry batch.kubernetes.io/job-completion-index instead


def test_user_labels_cannot_override_run_labels() -> None:
    with pytest.raises(ValueError, match="simfleet's own"):
        _spec("trot-sweep", labels={"run": "someone-else", "team": "legs"})
    # Even a spec that slipped past validation cannot override them.
    spec = _spec("trot-sweep").model_copy(update={"labels": {"run": "someone-else", "team": "legs"}})
    labels = _by_kind(plan_run(spec, CTX, GLUE), "Job")["metadata"]["labels"]
    assert labels[naming.RUN_LABEL] == "trot-sweep" and labels["simfleet.io/team"] == "legs"


def test_only_the_s3_containers_get_aws_credentials() -> None:
    annotations = _by_kind(PLANS["trot-sweep"], "Job")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/skip-containers"].split(",") == ["unitree-sim", "monty", "glue"]


def test_every_container_knows_the_run_and_region() -> None:
    plan = PLANS["trot-sweep"]
    for name, container in _containers(plan).items():
        env = _env(container)
        assert env["SIMFLEET_RUN"] == "trot-sweep" and env["SIMFLEET_SPEC_HASH"] == plan.spec_hash, name
        assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1", name
        assert env["SIMFLEET_ARTIFACTS_URI"] == plan.artifacts_uri, name
        assert env["SIMFLEET_PREFIX"] == f"runs/trot-sweep/{plan.spec_hash}/", name
    assert _env(_containers(plan)["monty"])["SIMFLEET_PROFILE"] == "quadruped-default"


# ---------------------------------------------------------------------------------------------
# Viewport
# ---------------------------------------------------------------------------------------------


def test_viewport_service_is_an_nlb_limited_to_the_allowed_networks() -> None:
    service = _by_kind(PLANS["trot-baseline"], "Service")
    spec = service["spec"]
    assert spec["type"] == "LoadBalancer" and spec["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert spec["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    assert service["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internet-facing"
    assert service["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "ip"
    assert spec["selector"] == {naming.RUN_LABEL: "trot-baseline", naming.VIEWPORT_POD_LABEL: "true"}
    assert [(p["name"], p["port"], p["protocol"]) for p in spec["ports"]] == list(naming.VIEWPORT_PORTS)
    pod_labels = _by_kind(PLANS["trot-baseline"], "Job")["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels[k] == v for k, v in spec["selector"].items())  # the Service selects this run's pod


def test_no_viewport_means_no_service_and_no_ports() -> None:
    for run in ("trot-sweep", "trot-continue", "big-fresh"):
        assert "Service" not in {o["kind"] for o in PLANS[run].objects}
        assert "ports" not in _containers(PLANS[run])["unitree-sim"]
        assert naming.VIEWPORT_POD_LABEL not in _by_kind(PLANS[run], "Job")["spec"]["template"]["metadata"]["labels"]
    sim = _containers(PLANS["trot-baseline"])["unitree-sim"]
    assert [(p["containerPort"], p["protocol"]) for p in sim["ports"]] == [
        (port, proto) for _, port, proto in naming.VIEWPORT_PORTS
    ]


# ---------------------------------------------------------------------------------------------
# Glue ConfigMap and checkpoints
# ---------------------------------------------------------------------------------------------


def test_configmaps_carry_the_contract_and_the_shared_glue() -> None:
    configmap = _by_kind(PLANS["trot-baseline"], "ConfigMap")
    assert "glue.py" not in configmap["data"]  # the glue is shared by content, not copied into every run
    shared = glue_configmap(CTX.namespace, glue_sha256(GLUE), GLUE)
    assert shared["data"] == {"glue.py": GLUE} and shared["immutable"] is True
    assert shared["metadata"]["name"] == glue_config_map_name(glue_sha256(GLUE))
    kubernetes_validate.validate(shared, K8S_SCHEMA_VERSION, strict=True)
    assert json.loads(configmap["data"]["contract.json"])["entryPoint"] == "step"
    assert json.loads(configmap["data"]["observation.schema.json"]) == contract.load_schema("observation.schema.json")
    assert json.loads(configmap["data"]["action.schema.json"]) == contract.load_schema("action.schema.json")
    assert configmap["immutable"] is True


def test_checkpoint_sources() -> None:
    fresh = _env(_containers(PLANS["trot-baseline"])["checkpoint-fetch"])
    assert "SIMFLEET_CHECKPOINT_FROM" not in fresh and "SIMFLEET_SOURCE_INDEX" not in fresh
    s3 = _env(_containers(PLANS["trot-sweep"])["checkpoint-fetch"])
    assert s3["SIMFLEET_CHECKPOINT_FROM"] == "s3://simfleet-shared-brains/monty/quadruped/v12.mstate"
    assert "SIMFLEET_SOURCE_INDEX" not in s3
    source = PLANS["trot-baseline"]
    cont = _env(_containers(PLANS["trot-continue"])["checkpoint-fetch"])
    assert cont["SIMFLEET_CHECKPOINT_FROM"] == f"s3://{CTX.checkpoints_bucket}/runs/trot-baseline/{source.spec_hash}/out.mstate"
    assert cont["SIMFLEET_SOURCE_INDEX"] == source.index_uri
    assert int(cont["SIMFLEET_FETCH_WAIT_SECONDS"]) == source.active_deadline_seconds


def test_s3_locations_single_and_per_seed() -> None:
    base, sweep, fresh = PLANS["trot-baseline"], PLANS["trot-sweep"], PLANS["big-fresh"]
    assert base.artifacts_uri == f"s3://{CTX.artifacts_bucket}/runs/trot-baseline/{base.spec_hash}/"
    assert base.checkpoint_uri == f"s3://{CTX.checkpoints_bucket}/runs/trot-baseline/{base.spec_hash}/out.mstate"
    assert base.index_uri == f"{base.artifacts_uri}index.json"
    # Several seeds: the prefix; each seed writes seed-<n>/out.mstate and seed-<n>/index.json under it.
    assert sweep.checkpoint_uri == f"s3://{CTX.checkpoints_bucket}/runs/trot-sweep/{sweep.spec_hash}/"
    assert sweep.index_uri is None
    assert fresh.checkpoint_uri is None  # checkpoint.save: false
    assert _env(_containers(fresh)["artifact-uploader"])["SIMFLEET_SAVE_CHECKPOINT"] == "false"


# ---------------------------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------------------------


def test_images_in_the_pod_are_resolved() -> None:
    containers = _containers(PLANS["trot-baseline"])
    assert containers["unitree-sim"]["image"] == f"{REGISTRY}/unitree-sim:4.2.0"
    assert containers["monty"]["image"] == f"{REGISTRY}/monty:1f3c2a9"
    assert containers["glue"]["image"] == f"{REGISTRY}/glue-base:0.3.1"


def test_objects_from_inputs_are_the_rendered_objects() -> None:
    """The provider, the plan and the policies render from SimRun inputs; that must give exactly these objects."""
    source = PLANS["trot-baseline"]
    spec = _spec("trot-continue")
    ref = SourceRef(
        source.run, source.spec_hash, str(source.checkpoint_uri), str(source.index_uri), source.active_deadline_seconds
    )
    identity = identify(spec, CTX, glue_sha256(GLUE), ref)
    inputs = json.loads(json.dumps(run_inputs(spec, CTX, identity, glue_sha256(GLUE), ref)))
    assert objects_from_inputs(inputs) == PLANS["trot-continue"].objects


# ---------------------------------------------------------------------------------------------
# The pod's scripts, run against a fake `aws` that stores objects in a directory
# ---------------------------------------------------------------------------------------------

FAKE_AWS = r"""
import json, os, shutil, sys
root = os.environ["FAKE_S3_ROOT"]
def local(uri):
    bucket, _, key = uri[len("s3://"):].partition("/")
    return os.path.join(root, bucket, key)
def opt(args, name):
    return args[args.index(name) + 1] if name in args else None
argv = sys.argv[1:]
if argv[:2] == ["s3", "cp"]:
    src, dst = [a for a in argv[2:] if not a.startswith("--")]
    if src.startswith("s3://"):
        if os.environ.get("FAKE_S3_FORBIDDEN") == src or not os.path.isfile(local(src)):
            code = 403 if os.environ.get("FAKE_S3_FORBIDDEN") == src else 404
            sys.exit(f"fatal error: An error occurred ({code}) when calling the HeadObject operation")
        shutil.copyfile(local(src), dst)
    else:
        os.makedirs(os.path.dirname(local(dst)), exist_ok=True)
        shutil.copyfile(src, local(dst))
elif argv[:2] == ["s3api", "put-object"]:
    path = local("s3://%s/%s" % (opt(argv, "--bucket"), opt(argv, "--key")))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copyfile(opt(argv, "--body"), path)
    with open(path + ".tags", "w") as f:
        f.write(opt(argv, "--tagging") or "")
else:
    sys.exit("fake aws: unsupported " + " ".join(argv))
"""

needs_shell = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("jq")), reason="needs bash and jq (the AWS CLI image has both)"
)


class Pod:
    """The pod's directories and a fake S3 in tmp_path; runs a script with the run's env and paths rewritten."""

    def __init__(self, tmp_path: Path, plan: RunPlan, container: str) -> None:
        self.tmp = tmp_path
        self.s3 = tmp_path / "s3"
        self.dirs = {d: tmp_path / d.strip("/") for d in ("/checkpoints", "/artifacts", "/contract", "/glue")}
        for d in [self.s3, *self.dirs.values()]:
            d.mkdir(exist_ok=True)
        (self.dirs["/contract"] / "glue.py").write_text(GLUE)  # what the ConfigMap volume holds
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "fake_aws.py").write_text(FAKE_AWS)
        (bin_dir / "aws").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{bin_dir / "fake_aws.py"}" "$@"\n')
        (bin_dir / "aws").chmod(0o755)
        self.env = {
            **os.environ,
            **_env(_containers(plan)[container]),
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE_S3_ROOT": str(self.s3),
            "TMPDIR": str(tmp_path),
        }

    def run(self, script: str, shell: str = "bash", **env: str) -> subprocess.CompletedProcess[str]:
        for path, local in self.dirs.items():
            script = script.replace(path, str(local))
        return subprocess.run([shell, "-c", script], env={**self.env, **env}, capture_output=True, text=True, timeout=60)

    def put(self, uri: str, text: str) -> None:
        path = self.s3 / uri.removeprefix("s3://")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def get(self, uri: str) -> str:
        return (self.s3 / uri.removeprefix("s3://")).read_text()


@needs_shell
def test_fetch_starts_fresh_without_a_source(tmp_path: Path) -> None:
    pod = Pod(tmp_path, PLANS["trot-baseline"], "checkpoint-fetch")
    result = pod.run(FETCH_SCRIPT)
    assert result.returncode == 0, result.stderr
    assert "fresh brain" in result.stdout and not (pod.dirs["/checkpoints"] / "in.mstate").exists()


@needs_shell
def test_fetch_waits_for_a_running_source_and_fails_when_it_ended_without_a_checkpoint(tmp_path: Path) -> None:
    pod = Pod(tmp_path, PLANS["trot-continue"], "checkpoint-fetch")
    source = PLANS["trot-baseline"]
    # A window of a few polls: the deadline is checked before the "waiting" line, so a 1 s window can close
    # before the first poll on a loaded machine.
    fast = {"SIMFLEET_FETCH_WAIT_SECONDS": "3", "SIMFLEET_FETCH_POLL_SECONDS": "1"}
    # Not written yet (403 without ListBucket reads the same as 404): keep waiting, then give up at the deadline.
    result = pod.run(FETCH_SCRIPT, **fast, FAKE_S3_FORBIDDEN=str(source.checkpoint_uri))
    assert result.returncode == 1 and "waiting for" in result.stdout and "gave up" in result.stderr
    # The source's index.json exists but no checkpoint: fail at once with the source's status.
    assert source.index_uri is not None
    pod.put(source.index_uri, '{"status":"Failed"}')
    result = pod.run(FETCH_SCRIPT, **fast)
    assert result.returncode == 1 and '"status":"Failed"' in result.stderr
    pod.put(str(source.checkpoint_uri), "brain-state")
    result = pod.run(FETCH_SCRIPT)
    assert result.returncode == 0, result.stderr
    assert (pod.dirs["/checkpoints"] / "in.mstate").read_text() == "brain-state"


@needs_shell
def test_glue_and_uploader_ship_tagged_artifacts_checkpoint_and_index_per_seed(tmp_path: Path) -> None:
    plan = PLANS["trot-sweep"]
    pod = Pod(tmp_path, plan, "artifact-uploader")
    glue = pod.dirs["/glue"] / "glue.py"
    glue.write_text(
        "import os, pathlib\n"
        "a = pathlib.Path(os.environ['A'])\n"
        "(a / 'logs/sim').mkdir(parents=True); (a / 'logs/sim/run 1.log').write_text('log')\n"
        "(a / 'metrics').mkdir(); (a / 'metrics/m.json').write_text('{}')\n"
        "(a / 'scratch.bin').write_text('not uploaded')\n"
        "pathlib.Path(os.environ['C']).write_text('brain')\n"
    )
    glue_env = {
        "SIMFLEET_GLUE_FILE": str(glue),
        "A": str(pod.dirs["/artifacts"]),
        "C": str(pod.dirs["/checkpoints"] / "out.mstate"),
    }
    glue_run = pod.run(GLUE_SCRIPT.replace("python ", f"{sys.executable} "), shell="sh", **glue_env)
    assert glue_run.returncode == 0 and (pod.dirs["/checkpoints"] / ".done").read_text().strip() == "0"

    result = pod.run(UPLOAD_SCRIPT, JOB_COMPLETION_INDEX="2")  # the third seed of [1..8]
    assert result.returncode == 0, result.stderr
    prefix = f"{CTX.artifacts_bucket}/runs/trot-sweep/{plan.spec_hash}/seed-3/"
    assert pod.get(f"s3://{prefix}logs/sim/run 1.log") == "log"
    assert pod.get(f"s3://{prefix}logs/sim/run 1.log.tags") == f"{naming.ARTIFACT_KIND_TAG}=logs"
    assert pod.get(f"s3://{prefix}metrics/m.json.tags") == f"{naming.ARTIFACT_KIND_TAG}=metrics"
    assert not (pod.s3 / prefix / "scratch.bin").exists() and "skipping" in result.stderr
    checkpoint = f"s3://{CTX.checkpoints_bucket}/runs/trot-sweep/{plan.spec_hash}/seed-3/out.mstate"
    assert pod.get(checkpoint) == "brain"
    index = json.loads(pod.get(f"s3://{prefix}index.json"))
    assert {k: index[k] for k in ("run", "specHash", "seed", "status", "checkpoint")} == {
        "run": "trot-sweep",
        "specHash": plan.spec_hash,
        "seed": 3,
        "status": "Succeeded",
        "checkpoint": checkpoint,
    }
    assert index["startTime"] is None and index["completionTime"].endswith("Z")


@needs_shell
def test_a_failed_glue_still_uploads_logs_and_a_failed_index(tmp_path: Path) -> None:
    plan = PLANS["trot-baseline"]
    pod = Pod(tmp_path, plan, "artifact-uploader")
    glue = pod.dirs["/glue"] / "glue.py"
    glue.write_text(
        "import os, pathlib\n"
        "(pathlib.Path(os.environ['A']) / 'logs').mkdir(); (pathlib.Path(os.environ['A']) / 'logs/err.log').write_text('boom')\n"
        "raise SystemExit(7)\n"
    )
    (pod.dirs["/checkpoints"] / ".started").write_text("2026-01-01T00:00:00Z\n")
    glue_run = pod.run(
        GLUE_SCRIPT.replace("python ", f"{sys.executable} "),
        shell="sh",
        SIMFLEET_GLUE_FILE=str(glue),
        A=str(pod.dirs["/artifacts"]),
    )
    assert glue_run.returncode == 7 and (pod.dirs["/checkpoints"] / ".done").read_text().strip() == "7"
    result = pod.run(UPLOAD_SCRIPT)
    assert result.returncode == 1  # save is on but no out.mstate was written
    assert plan.index_uri is not None
    index = json.loads(pod.get(plan.index_uri))
    assert index["status"] == "Failed" and index["checkpoint"] is None and index["seed"] == 7
    assert index["startTime"] == "2026-01-01T00:00:00Z"
    assert pod.get(f"{plan.artifacts_uri}logs/err.log") == "boom"


@needs_shell
def test_uploader_gives_up_waiting_for_glue(tmp_path: Path) -> None:
    pod = Pod(tmp_path, PLANS["big-fresh"], "artifact-uploader")  # checkpoint.save is off
    result = pod.run(UPLOAD_SCRIPT, SIMFLEET_UPLOAD_WAIT_SECONDS="0")
    assert "did not finish in time" in result.stderr and result.returncode == 0
    assert json.loads(pod.get(str(PLANS["big-fresh"].index_uri)))["status"] == "Failed"
