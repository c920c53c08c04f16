"""The run renderer: every object passes strict schema validation, and the pod has the designed shape (docs/researchers/runs.md)."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions, major_minor
from pydantic import ValidationError

import naming
from config import RunSpec
from config.sources import load_yaml
from versions import AWS_CLI_IMAGE, kubectl_image
from workloads import contract
from workloads.budget import Budget
from workloads.identity import RunContext, SourceRef, glue_config_map_name, glue_sha256, identify
from workloads.inputs import objects_from_inputs, run_inputs
from workloads.renderers.run import glue_configmap, job_deadline, render_run, runtime, runtime_files

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
    runs = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"]["simfleet:runs"]
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


STACK_VERSION = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"]["simfleet:platform"]["kubernetesVersion"]
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
        job_deadline(spec),
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
    """The run's object of this kind; for Job, the run's own (a continuation also has its gate Job)."""
    [obj] = [o for o in plan.objects if o["kind"] == kind and (kind != "Job" or o["metadata"]["name"] == plan.run)]
    return obj


def _pod(plan: RunPlan) -> dict[str, Any]:
    return _by_kind(plan, "Job")["spec"]["template"]["spec"]


def _containers(plan: RunPlan) -> dict[str, dict[str, Any]]:
    pod = _pod(plan)
    return {c["name"]: c for c in [*pod["initContainers"], *pod["containers"]]}


def _by_kind_list(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


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
    kinds = [(o["kind"], o["metadata"]["name"]) for o in PLANS["trot-baseline"].objects]
    assert kinds == [
        ("ConfigMap", runtime().name),
        ("Service", "trot-baseline-viewport"),
        ("NetworkPolicy", "trot-baseline-viewport"),
        ("Job", "trot-baseline"),
    ]
    assert [o["kind"] for o in PLANS["trot-sweep"].objects] == ["ConfigMap", "Job"]
    # A continuation comes with the gate that releases it, and the account its release acts as (tests/test_gate.py).
    assert [(o["kind"], o["metadata"]["name"]) for o in PLANS["trot-continue"].objects][-6:] == [
        ("Job", "trot-continue"),
        ("ServiceAccount", "trot-continue-gate"),
        ("Role", "trot-continue-gate"),
        ("RoleBinding", "trot-continue-gate"),
        ("Secret", "trot-continue-gate-token"),
        ("Job", "trot-continue-gate"),
    ]
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
    containers = _containers(PLANS[run])
    assert containers["checkpoint-fetch"]["image"] == containers["artifact-uploader"]["image"] == AWS_CLI_IMAGE


@pytest.mark.parametrize("run", sorted(PLANS))
def test_sidecars_have_startup_probes_on_their_health_ports(run: str) -> None:
    """The kubelet starts glue only once both sidecars passed their startup probe (native sidecars)."""
    containers = _containers(PLANS[run])
    for name, port in (("unitree-sim", naming.SIM_HEALTH_PORT), ("monty", naming.MONTY_HEALTH_PORT)):
        probe = containers[name]["startupProbe"]
        assert probe["httpGet"] == {"path": naming.HEALTH_PATH, "port": port}, name
        assert probe["periodSeconds"] * probe["failureThreshold"] == 15 * 60, name
        assert {"name": "health", "containerPort": port, "protocol": "TCP"} in containers[name]["ports"]
        assert _env(containers[name])["SIMFLEET_HEALTH_PORT"] == str(port)


@pytest.mark.parametrize("run", sorted(PLANS))
def test_every_script_container_execs_a_script_that_handles_term(run: str) -> None:
    containers = _containers(PLANS[run])
    assert containers["checkpoint-fetch"]["command"] == ["/bin/bash", "/opt/simfleet/fetch.sh"]
    assert containers["artifact-uploader"]["command"] == ["/bin/bash", "/opt/simfleet/upload.sh"]
    assert containers["glue"]["command"] == ["python", "-P", "-m", "glue_runtime", "/glue/glue.py"]
    assert _env(containers["glue"])["PYTHONPATH"] == "/opt/simfleet"  # where the runtime volume puts glue_runtime/
    # PID 1: without a trap, no TERM. Each script hands it to the guardian (term.sh guard_term), which traps it.
    for script in ("fetch.sh", "upload.sh", "gate.sh"):
        assert re.search(r'^guard_term (stop|notify) "\$@"$', runtime_files()[script], re.M), script
    assert re.search(r"^  trap guard_on_term TERM$", runtime_files()["term.sh"], re.M)
    assert "signal.SIGTERM" in runtime_files()["glue_runtime/runtime.py"]


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
def test_restricted_security_and_read_only_roots_on_simfleets_containers(run: str) -> None:
    for obj in PLANS[run].objects:
        if obj["kind"] != "Job":
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["securityContext"]["runAsUser"] > 0 and "fsGroup" in pod["securityContext"]
        containers = {c["name"]: c for c in [*pod["initContainers"], *pod["containers"]]}
        for name, container in containers.items():
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert security["runAsNonRoot"] is True, name
            assert "privileged" not in security
            # simfleet's own containers have read-only roots and a /tmp (and HOME) of their own; the third-party
            # simulator and brain images keep writable roots (docs/researchers/runs.md).
            ours = name not in ("unitree-sim", "monty")
            assert security.get("readOnlyRootFilesystem", False) is ours, name
            if ours:
                assert {"name": f"tmp-{name}", "mountPath": "/tmp"} in container["volumeMounts"], name
                assert _env(container)["HOME"] == "/tmp", name
        # Nothing from the host (the gate's release mounts its own ServiceAccount token Secret).
        assert all(set(v) - {"name"} <= {"emptyDir", "configMap", "secret"} for v in pod["volumes"])
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)


def test_volumes() -> None:
    volumes = {v["name"]: v for v in _pod(PLANS["trot-baseline"])["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory" and volumes["dshm"]["emptyDir"]["sizeLimit"] == "3072Mi"
    # simfleet's runtime from the ConfigMap every run of this simfleet shares, named by its content.
    assert volumes["runtime"]["configMap"]["name"] == runtime().name == f"simfleet-runtime-{runtime().sha256[:12]}"
    # The glue comes from the shared ConfigMap named by its content, mounted read-only where glue runs.
    assert volumes["glue"]["configMap"]["name"] == glue_config_map_name(glue_sha256(GLUE))
    mounts = {
        c["name"]: {m["mountPath"]: m.get("readOnly", False) for m in c["volumeMounts"]}
        for c in _containers(PLANS["trot-baseline"]).values()
    }
    assert mounts["checkpoint-fetch"] == {"/opt/simfleet": True, "/checkpoints": False, "/tmp": False}
    assert mounts["glue"]["/glue"] is True and mounts["glue"]["/opt/simfleet"] is True
    assert mounts["artifact-uploader"]["/checkpoints"] is True and mounts["artifact-uploader"]["/artifacts"] is True
    assert "/dev/shm" in mounts["unitree-sim"] and "/checkpoints" in mounts["monty"]


@pytest.mark.parametrize(
    ("run", "selector"),
    [
        ("trot-baseline", {naming.CAPACITY_TYPE_LABEL: "ON_DEMAND"}),  # a person is watching: never reclaimed
        ("trot-sweep", {}),  # batch: Kueue's spot flavor first, on-demand second; the admitted flavor adds its selector
        ("trot-continue", {}),
    ],
)
def test_scheduling_per_mode(run: str, selector: dict[str, str]) -> None:
    pod = _pod(PLANS[run])
    assert pod["nodeSelector"] == {naming.NODE_POOL_LABEL: "gpu", **selector}
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


def test_time_budget_reaches_every_container() -> None:
    """maxRuntime is one seed's simulation time; the deadline, grace period and waits follow workloads/budget.py."""
    sweep_spec = _spec("trot-sweep")
    budget = Budget.of(sweep_spec.max_runtime, len(sweep_spec.seeds), sweep_spec.parallel_pods)
    job = _by_kind(PLANS["trot-sweep"], "Job")["spec"]
    assert job["activeDeadlineSeconds"] == budget.deadline_seconds and job["ttlSecondsAfterFinished"] == 1800
    assert job["template"]["spec"]["terminationGracePeriodSeconds"] == budget.grace_seconds == 120  # the spot notice
    glue = _env(_containers(PLANS["trot-sweep"])["glue"])
    uploader = _env(_containers(PLANS["trot-sweep"])["artifact-uploader"])
    assert int(glue["SIMFLEET_STOP_AFTER_SECONDS"]) == 3 * 3600  # the simulation time of one seed
    # No wait on a clock: the uploader follows glue's heartbeat, which glue rewrites every second.
    assert "SIMFLEET_DONE_WAIT_SECONDS" not in uploader
    assert glue["SIMFLEET_HEARTBEAT_FILE"] == uploader["SIMFLEET_HEARTBEAT_FILE"] == "/checkpoints/.heartbeat"
    assert int(glue["SIMFLEET_HEARTBEAT_SECONDS"]) < int(uploader["SIMFLEET_HEARTBEAT_TIMEOUT_SECONDS"])
    # The run's liveness bounds, defaults here (config/runs.py Timeouts).
    assert [glue[f"SIMFLEET_{k}_SECONDS"] for k in ("OBSERVATION_TIMEOUT", "STEP_TIMEOUT", "BRAIN_SILENCE")] == ["60", "30", "60"]
    # After SIGTERM glue saves, then the uploader ships and writes index.json, inside the grace period.
    term = [int(glue["SIMFLEET_TERM_SAVE_SECONDS"])] + [
        int(uploader[f"SIMFLEET_TERM_{k}_SECONDS"]) for k in ("WAIT", "SHIP", "INDEX")
    ]
    assert term == sorted(term) and term[-1] < budget.grace_seconds


def test_liveness_probes_restart_a_stuck_sidecar_and_end_a_wedged_glue() -> None:
    containers = _containers(PLANS["trot-baseline"])
    for name, port in (("unitree-sim", naming.SIM_HEALTH_PORT), ("monty", naming.MONTY_HEALTH_PORT)):
        probe = containers[name]["livenessProbe"]
        assert probe["httpGet"] == {"path": naming.HEALTH_PATH, "port": port}
        assert probe["periodSeconds"] * probe["failureThreshold"] == 60
    command = containers["glue"]["livenessProbe"]["exec"]["command"]
    assert command[:3] == ["python", "-I", "-c"] and "/checkpoints/.heartbeat" in command[3]
    assert "livenessProbe" not in containers["artifact-uploader"]  # it bounds its own waits


def test_a_run_s_timeouts_reach_glue() -> None:
    spec = _spec("trot-baseline", timeouts={"observation": "2m", "step": "5s", "brain": 90})
    values = _env(_containers(plan_run(spec, CTX, GLUE))["glue"])
    assert (values["SIMFLEET_OBSERVATION_TIMEOUT_SECONDS"], values["SIMFLEET_STEP_TIMEOUT_SECONDS"]) == ("120", "5")
    assert values["SIMFLEET_BRAIN_SILENCE_SECONDS"] == "90"


def test_a_step_timeout_not_below_the_brain_silence_is_refused() -> None:
    # While step() runs glue asks the brain nothing, and the brain's silence counts on: a step allowed 2m beside the
    # default 60 s brain silence would end a slow first call as "brain silent".
    with pytest.raises(ValidationError, match=r"step: 120s must be shorter than brain: 60s"):
        _spec("trot-baseline", timeouts={"step": "2m"})
    assert _spec("trot-baseline", timeouts={"step": "2m", "brain": "3m"}).timeouts.step == 120


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
    problems = _spec("trot-sweep", labels={"run": "someone-else", "team": "legs"}).problems()
    assert [(p.path, "simfleet's own" in p.message) for p in problems] == [("labels", True)]
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
        assert env["SIMFLEET_PREFIX"] == f"runs/trot-sweep/{plan.spec_hash}/", name
    assert _env(_containers(plan)["monty"])["SIMFLEET_PROFILE"] == "quadruped-default"


def test_the_env_contract_of_the_scripts_and_runtime_is_met() -> None:
    """Every variable a pod script needs without a default is set on the container that runs it."""
    needed = {
        "checkpoint-fetch": (
            "fetch.sh",
            {"SIMFLEET_SEEDS", "SIMFLEET_PREFIX", "SIMFLEET_ARTIFACTS_BUCKET", "SIMFLEET_CHECKPOINTS_BUCKET"},
        ),
        "artifact-uploader": ("upload.sh", {"SIMFLEET_SEEDS", "SIMFLEET_PREFIX", "SIMFLEET_SPEC_HASH", "SIMFLEET_RUN"}),
    }
    for plan in PLANS.values():
        containers = _containers(plan)
        for name, (script, required) in needed.items():
            env = _env(containers[name])
            for variable in required:
                assert variable in runtime_files()[script], (script, variable)
                assert variable in env, (plan.run, name, variable)


# ---------------------------------------------------------------------------------------------
# Viewport
# ---------------------------------------------------------------------------------------------


def test_viewport_service_is_an_nlb_limited_to_the_allowed_networks_and_health_checked_on_tcp() -> None:
    service = _by_kind(PLANS["trot-baseline"], "Service")
    spec, annotations = service["spec"], service["metadata"]["annotations"]
    assert spec["type"] == "LoadBalancer" and spec["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert spec["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internet-facing"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "ip"
    # The UDP media listener's target group is health-checked on the simulator's TCP signalling port.
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol"] == "TCP"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-healthcheck-port"] == str(naming.VIEWPORT_SIGNAL_PORT)
    assert spec["selector"] == {naming.RUN_LABEL: "trot-baseline", naming.VIEWPORT_POD_LABEL: "true"}
    assert [(p["name"], p["port"], p["protocol"]) for p in spec["ports"]] == list(naming.VIEWPORT_PORTS)
    pod_labels = _by_kind(PLANS["trot-baseline"], "Job")["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels[k] == v for k, v in spec["selector"].items())  # the Service selects this run's pod


def test_viewport_network_policy_admits_tcp_from_the_vpc_and_udp_from_the_allowed_networks() -> None:
    policy = _by_kind(PLANS["trot-baseline"], "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == {naming.RUN_LABEL: "trot-baseline", naming.VIEWPORT_POD_LABEL: "true"}
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [
        {"from": [{"ipBlock": {"cidr": "10.40.0.0/16"}}], "ports": [{"port": 49100, "protocol": "TCP"}]},
        {"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 47998, "protocol": "UDP"}]},
    ]


def test_no_viewport_means_no_service_policy_or_ports() -> None:
    for run in ("trot-sweep", "trot-continue", "big-fresh"):
        assert not {"Service", "NetworkPolicy"} & {o["kind"] for o in PLANS[run].objects}
        ports = [p["name"] for p in _containers(PLANS[run])["unitree-sim"]["ports"]]
        assert ports == ["health"]
        assert naming.VIEWPORT_POD_LABEL not in _by_kind(PLANS[run], "Job")["spec"]["template"]["metadata"]["labels"]


# ---------------------------------------------------------------------------------------------
# ConfigMaps, checkpoints, the gate
# ---------------------------------------------------------------------------------------------


def test_configmaps_carry_the_runtime_and_the_shared_glue() -> None:
    configmap = _by_kind(PLANS["trot-baseline"], "ConfigMap")
    runtime = {f"glue_runtime.{path.name}" for path in (ROOT / "workloads" / "glue_runtime").glob("*.py")}
    assert set(configmap["data"]) == {
        "common.sh",
        "term.sh",
        "fetch.sh",
        "upload.sh",
        "gate.sh",
        "contract.json",
        "observation.schema.json",
        "action.schema.json",
        *runtime,
    }
    # ConfigMap keys cannot hold a "/": the volume's items put each key back at its path, the package in a directory.
    [volume] = [
        v for v in _by_kind(PLANS["trot-baseline"], "Job")["spec"]["template"]["spec"]["volumes"] if v["name"] == "runtime"
    ]
    items = {item["key"]: item["path"] for item in volume["configMap"]["items"]}
    assert set(items) == set(configmap["data"])
    assert items["glue_runtime.runtime.py"] == "glue_runtime/runtime.py" and items["upload.sh"] == "upload.sh"
    assert json.loads(configmap["data"]["action.schema.json"]) == contract.load_schema("action.schema.json")
    assert configmap["immutable"] is True
    size = sum(len(k) + len(v.encode()) for k, v in configmap["data"].items())
    assert size < contract.CONFIGMAP_LIMIT_BYTES - contract.CONFIGMAP_HEADROOM_BYTES
    shared = glue_configmap(CTX.namespace, glue_sha256(GLUE), GLUE)
    assert shared["data"] == {"glue.py": GLUE} and shared["immutable"] is True
    assert shared["metadata"]["name"] == glue_config_map_name(glue_sha256(GLUE))
    kubernetes_validate.validate(shared, K8S_SCHEMA_VERSION, strict=True)


def test_checkpoint_sources_and_resume() -> None:
    fresh = _env(_containers(PLANS["trot-baseline"])["checkpoint-fetch"])
    assert "SIMFLEET_CHECKPOINT_FROM" not in fresh and "SIMFLEET_SOURCE_INDEX" not in fresh
    assert fresh["SIMFLEET_RESUME"] == "false"
    s3 = _env(_containers(PLANS["trot-sweep"])["checkpoint-fetch"])
    assert s3["SIMFLEET_CHECKPOINT_FROM"] == "s3://example-shared-brains/monty/quadruped/v12.mstate"
    assert "SIMFLEET_SOURCE_INDEX" not in s3
    source = PLANS["trot-baseline"]
    cont = _env(_containers(PLANS["trot-continue"])["checkpoint-fetch"])
    assert cont["SIMFLEET_CHECKPOINT_FROM"] == f"s3://{CTX.checkpoints_bucket}/runs/trot-baseline/{source.spec_hash}/out.mstate"
    assert cont["SIMFLEET_SOURCE_INDEX"] == source.index_uri


def test_periodic_checkpoints_reach_glue_uploader_and_fetch() -> None:
    every = plan_run(_spec("trot-sweep", checkpoint={"from": None, "every": "15m"}), CTX, GLUE)
    containers = _containers(every)
    assert _env(containers["glue"])["SIMFLEET_CHECKPOINT_EVERY_SECONDS"] == "900"
    assert _env(containers["artifact-uploader"])["SIMFLEET_CHECKPOINT_EVERY_SECONDS"] == "900"
    assert _env(containers["checkpoint-fetch"])["SIMFLEET_RESUME"] == "true"
    off = _containers(PLANS["trot-sweep"])
    assert _env(off["glue"])["SIMFLEET_CHECKPOINT_EVERY_SECONDS"] == "0"


def test_a_continuation_is_suspended_behind_a_cpu_only_gate() -> None:
    plan = PLANS["trot-continue"]
    job = next(o for o in plan.objects if o["metadata"]["name"] == "trot-continue")
    gate = next(o for o in plan.objects if o["kind"] == "Job" and o["metadata"]["name"] == "trot-continue-gate")
    assert job["spec"]["suspend"] is True
    pod = gate["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == naming.GATE_SERVICE_ACCOUNT and pod["automountServiceAccountToken"] is False
    assert pod["nodeSelector"] == {naming.NODE_POOL_LABEL: "system"} and "tolerations" not in pod
    assert not any(naming.GPU_RESOURCE in json.dumps(c.get("resources")) for c in [*pod["initContainers"], *pod["containers"]])
    [wait] = pod["initContainers"]
    assert wait["command"] == ["/bin/bash", "/opt/simfleet/gate.sh"]
    assert _env(wait)["SIMFLEET_SOURCE_INDEX"] == PLANS["trot-baseline"].index_uri
    [release] = pod["containers"]
    assert release["image"] == kubectl_image("1.35")
    # It hands the run to Kueue: the queue label, which Kueue lets a suspended Job gain (jobframework validation),
    # on this spec's Job only (its JSON patch tests the hash first; tests/test_gate.py applies it).
    patch = [
        {"op": "test", "path": "/metadata/annotations/simfleet.io~1spec-hash", "value": PLANS["trot-continue"].spec_hash},
        {"op": "add", "path": "/metadata/labels/kueue.x-k8s.io~1queue-name", "value": "shared"},
    ]
    assert release["command"][:7] == [
        "/bin/kubectl",
        "patch",
        "job",
        "trot-continue",
        "--namespace",
        naming.RUNS_NAMESPACE,
        "--type=json",
    ]
    assert release["command"][7] == "-p" and json.loads(release["command"][8]) == patch
    assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]
    # A drain or a Kueue webhook briefly down fails the gate pod: it is retried (the patch is idempotent).
    assert gate["spec"]["backoffLimit"] == 3
    assert gate["spec"]["podFailurePolicy"]["rules"][0]["action"] == "Ignore"
    # The absolute cap; gate.sh gives up sooner, 15 minutes past the source's own deadline from its latest pod.
    assert gate["spec"]["activeDeadlineSeconds"] == 14 * 24 * 3600
    assert gate["spec"]["template"]["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"] == "release"
    # Once the source already succeeded, the provider renders it without the gate.
    spec = _spec("trot-continue")
    source = PLANS["trot-baseline"]
    ref = SourceRef(
        source.run, source.spec_hash, str(source.checkpoint_uri), str(source.index_uri), source.active_deadline_seconds
    )
    open_objects = render_run(spec, CTX, identify(spec, CTX, glue_sha256(GLUE), ref), "glue-x", ref, gated=False)
    assert [o["metadata"]["name"] for o in open_objects if o["kind"] == "Job"] == ["trot-continue"]
    assert open_objects[-1]["spec"]["suspend"] is True  # Kueue's to admit, like every run
    assert open_objects[-1]["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "shared"


@pytest.mark.parametrize(("run", "priority"), [("trot-baseline", "simfleet-interactive"), ("trot-sweep", "simfleet-batch")])
def test_every_run_is_created_suspended_for_its_queue_with_its_priority(run: str, priority: str) -> None:
    job = _by_kind(PLANS[run], "Job")
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "shared"  # the context's default queue
    assert job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == priority
    named = render_run(_spec(run, queue="perception"), CTX, identify(_spec(run), CTX, glue_sha256(GLUE)), "glue-x")
    assert _by_kind_list(named, "Job")["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "perception"


def test_the_queue_is_not_part_of_the_run_identity() -> None:
    assert identify(_spec("trot-sweep", queue="perception"), CTX, glue_sha256(GLUE)).spec_hash == PLANS["trot-sweep"].spec_hash


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


def test_a_run_with_datasets_mounts_the_claim_read_only_where_user_code_runs() -> None:
    spec = _spec("trot-sweep", datasets={"path": "/data/shared"})
    job = _by_kind(plan_run(spec, CTX, GLUE), "Job")
    kubernetes_validate.validate(job, K8S_SCHEMA_VERSION, strict=True)
    pod = job["spec"]["template"]["spec"]
    assert {"name": "datasets", "persistentVolumeClaim": {"claimName": naming.DATASETS_CLAIM, "readOnly": True}} in pod["volumes"]
    containers = {c["name"]: c for c in [*pod["initContainers"], *pod["containers"]]}
    for name, body in containers.items():
        mounts = [m for m in body["volumeMounts"] if m["name"] == "datasets"]
        values = {e["name"]: e.get("value") for e in body["env"]}
        if name in ("unitree-sim", "monty", "glue"):
            assert mounts == [{"name": "datasets", "mountPath": "/data/shared", "readOnly": True}], name
            assert values["SIMFLEET_DATASETS_DIR"] == "/data/shared"
        else:  # the S3 containers hold credentials and need no datasets
            assert mounts == [] and "SIMFLEET_DATASETS_DIR" not in values, name
    # Off by default: the dev runs mount nothing and keep their golden hashes (tests/test_identity.py).
    plain = _by_kind(PLANS["trot-sweep"], "Job")["spec"]["template"]["spec"]
    assert not any(v["name"] == "datasets" for v in plain["volumes"])


def test_the_paths_config_keeps_clear_for_a_runs_datasets_are_the_ones_the_pod_mounts() -> None:
    from config.runs import RUN_RESERVED_PATHS

    pod = _by_kind(PLANS["trot-baseline"], "Job")["spec"]["template"]["spec"]
    mounted = {m["mountPath"] for c in [*pod["initContainers"], *pod["containers"]] for m in c["volumeMounts"]}
    assert mounted == set(RUN_RESERVED_PATHS)
    problems = _spec("trot-sweep", datasets={"path": "/artifacts/data"}).problems()
    assert [(p.path, p.message) for p in problems] == [
        ("datasets.path", "/artifacts/data overlaps /artifacts, which simfleet mounts itself")
    ]
