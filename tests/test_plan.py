"""The offline plan end to end: `python -m tools.plan` on both stacks, bad files, and what it writes."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from project_commands import Done, ProjectCommands
from sample_plans import planned, planned_dev_with_service

import versions
from config.sources import load_yaml
from tools import plan
from tools.plan import PlanConfigError, PlanResult, run_program
from workloads.renderers.job import job_runtime
from workloads.renderers.run import runtime as run_runtime

ROOT = Path(__file__).resolve().parent.parent


def make_plan(project: ProjectCommands, stack: str) -> tuple[Done, Path]:
    """`make plan` of a sample stack as the README shows it (`make plan`, `make plan STACK=prod`), in the session's
    scratch copy of the project, where it runs once whichever test asks first: what it printed, and where it wrote."""
    done = project.run("make plan" if stack == "dev" else f"make plan STACK={stack}")
    return done, project.cwd / "build" / "plan" / stack


def run_plan_cli(*args: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.plan", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def dev_line(fragment: str) -> int:
    """The line of Pulumi.dev.yaml that holds `fragment`."""
    lines = (ROOT / "Pulumi.dev.yaml").read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if fragment in line)


def types(result: PlanResult) -> Counter[str]:
    return Counter(r.type for r in result.registrations)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_plan_cli_writes_resources_and_manifests(stack: str, project_commands: ProjectCommands) -> None:
    done, out = make_plan(project_commands, stack)
    assert done.returncode == 0, done.stderr
    assert f"simfleet plan: stack {stack}" in done.stdout
    assert "resources per component" in done.stdout
    resources = json.loads((out / "resources.json").read_text())
    assert resources and all(set(r) >= {"urn", "type", "name", "parent", "inputs"} for r in resources)
    manifests = list((out / "manifests").rglob("*.yaml"))
    kinds = {body["kind"] for m in manifests for body in yaml.safe_load_all(m.read_text())}
    assert {"Namespace", "ServiceAccount", "NetworkPolicy", "ResourceQuota", "Role", "RoleBinding"} <= kinds
    for name in ("policy.json", "cost.json"):
        assert (out / name).exists()


def test_dev_plan_renders_each_run_objects(project_commands: ProjectCommands) -> None:
    done, out = make_plan(project_commands, "dev")
    assert done.returncode == 0, done.stderr
    runs = out / "manifests" / "runs"
    # One file per run, `runs/<run>.yaml`, a document per object.
    by_run = {f.stem: sorted(o["kind"] for o in yaml.safe_load_all(f.read_text())) for f in runs.iterdir()}
    assert by_run == {
        "trot-baseline": ["Job", "NetworkPolicy", "Service"],
        "trot-sweep": ["Job"],
        # Its own Job, the gate that releases it, and the account the release acts as (ServiceAccount, Role, binding, token).
        "trot-continue": ["Job", "Job", "Role", "RoleBinding", "Secret", "ServiceAccount"],
        "robocache-resample": ["Job"],  # a batch job: its Indexed Job
    }
    # simfleet's runtime once for the runs and once for the jobs, whatever their number: one ConfigMap per content,
    # named by it, which every Job rendered from this simfleet mounts.
    shared = sorted(f.name for f in (out / "manifests" / "shared").iterdir())
    assert shared == sorted(
        {f"simfleet-runs_configmap_{run_runtime().name}.yaml", f"simfleet-runs_configmap_{job_runtime().name}.yaml"}
    )
    mounted = {
        volume["configMap"]["name"]
        for f in runs.iterdir()
        for job in yaml.safe_load_all(f.read_text())
        if job["kind"] == "Job"
        for volume in job["spec"]["template"]["spec"]["volumes"]
        if volume["name"] == "runtime"
    }
    assert mounted == {run_runtime().name, job_runtime().name}


# Every part of the platform, by the type the engine receives, with how many dev and prod register.
PLATFORM_PARTS = {
    "aws:ec2/vpc:Vpc": (1, 1),
    "aws:ec2/subnet:Subnet": (4, 6),
    "aws:ec2/internetGateway:InternetGateway": (1, 1),
    "aws:ec2/natGateway:NatGateway": (1, 3),
    "aws:ec2/vpcEndpoint:VpcEndpoint": (1, 1),
    "eks:index:Cluster": (1, 1),
    "aws:kms/key:Key": (1, 2),  # prod: the control-plane log group has its own key
    # Control plane; the retired aws-for-fluent-bit group (kept); Container Insights' application, dataplane, host,
    # performance and prometheus groups; the spot interruption record.
    "aws:cloudwatch/logGroup:LogGroup": (8, 8),
    "aws:ec2/securityGroup:SecurityGroup": (2, 2),  # the deployer group, the EFS mount targets' group
    "aws:ec2/securityGroupRule:SecurityGroupRule": (1, 1),  # the deployer group to the API endpoint on 443
    "aws:ec2/launchTemplate:LaunchTemplate": (3, 3),
    "aws:eks/nodeGroup:NodeGroup": (3, 3),
    # vpc-cni, coredns, kube-proxy, the EFS CSI driver (shared storage is on in both), amazon-cloudwatch-observability
    "aws:eks/addon:Addon": (5, 5),
    "kubernetes:helm.sh/v3:Release": (6, 6),  # the five add-on charts (Kueue included) and the Pushgateway (metrics on in both)
    "aws:s3/bucket:Bucket": (2, 2),
    "aws:ecr/repository:Repository": (5, 3),  # dev adds triton for its service and robocache for its job
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": (5, 3),
    "aws:efs/fileSystem:FileSystem": (1, 1),
    "aws:efs/mountTarget:MountTarget": (2, 3),  # one per AZ
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": (1, 1),  # NFS from the nodes
    "kubernetes:storage.k8s.io/v1:StorageClass": (1, 1),
    "kubernetes:core/v1:PersistentVolumeClaim": (1, 1),  # datasets
    # runs, metrics, kueue-system and observability (dev's service ships off, prod declares none)
    "kubernetes:core/v1:Namespace": (4, 4),
    # runs: 4 + the Pushgateway egress; metrics: 3 (the collector scrapes the Pushgateway); kueue-system: 1; the
    # collector: 4 (services, when one is on: 3 + one per service, tests/test_plan.py planned_dev_with_service)
    "kubernetes:networking.k8s.io/v1:NetworkPolicy": (13, 13),
    "kubernetes:apps/v1:Deployment": (1, 1),  # the collector
    "kubernetes:core/v1:Service": (0, 0),
    "kubernetes:autoscaling/v2:HorizontalPodAutoscaler": (0, 0),
    "kubernetes:policy/v1:PodDisruptionBudget": (0, 0),
    "kubernetes:core/v1:ResourceQuota": (1, 1),
    "pulumi-python:dynamic:Resource": (4, 0),  # dev: three runs and one batch job
    # Kueue: spot and on-demand flavors, two priority classes, a ClusterQueue and a LocalQueue per team (dev 2, prod 3).
    "kubernetes:kueue.x-k8s.io/v1beta2:ResourceFlavor": (2, 2),
    "kubernetes:kueue.x-k8s.io/v1beta2:WorkloadPriorityClass": (2, 2),
    "kubernetes:kueue.x-k8s.io/v1beta2:ClusterQueue": (2, 3),
    "kubernetes:kueue.x-k8s.io/v1beta2:LocalQueue": (2, 3),
    # Observability: idle GPUs, one stuck-queue alarm per team (dev 2, prod 3), run failures, Pushgateway and collector
    # down (one more per deployed service: none, dev's ships off); one dashboard, one topic, one spot-interruption rule.
    "aws:cloudwatch/metricAlarm:MetricAlarm": (6, 7),
    "aws:cloudwatch/dashboard:Dashboard": (1, 1),
    "aws:sns/topic:Topic": (1, 1),
    "aws:sns/topicSubscription:TopicSubscription": (0, 0),
    "aws:cloudwatch/eventRule:EventRule": (1, 1),
}


@pytest.mark.parametrize(("stack", "column"), [("dev", 0), ("prod", 1)])
def test_every_platform_part_is_planned(stack: str, column: int) -> None:
    counts = types(planned(stack))
    missing = {t: (want[column], counts[t]) for t, want in PLATFORM_PARTS.items() if counts[t] != want[column]}
    assert not missing, f"{stack}: expected vs planned counts differ: {missing}"


def test_a_service_turned_on_adds_its_namespace_objects_and_policies() -> None:
    on, off = types(planned_dev_with_service()), types(planned("dev"))
    added = {t: on[t] - off[t] for t in on if t.startswith("kubernetes:") and on[t] != off[t]}
    # The services namespace; its 3 policies + one per service, and the runs' egress to the service; the service's
    # objects; the collector's Role and RoleBinding to discover its metrics port there; and its below-minimum alarm.
    assert added == {
        "kubernetes:rbac.authorization.k8s.io/v1:Role": 1,
        "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding": 1,
        "kubernetes:core/v1:Namespace": 1,
        "kubernetes:networking.k8s.io/v1:NetworkPolicy": 5,
        "kubernetes:apps/v1:Deployment": 1,
        "kubernetes:core/v1:Service": 1,
        "kubernetes:core/v1:ServiceAccount": 1,
        "kubernetes:autoscaling/v2:HorizontalPodAutoscaler": 1,
        "kubernetes:policy/v1:PodDisruptionBudget": 1,
    }
    assert on["aws:cloudwatch/metricAlarm:MetricAlarm"] == off["aws:cloudwatch/metricAlarm:MetricAlarm"] + 1


def test_irsa_roles_exist_for_every_service_account() -> None:
    roles = [r for r in planned("dev").registrations if r.type == "aws:iam/role:Role"]
    subjects: set[str] = set()
    for role in roles:
        trust = json.loads(role.inputs["assumeRolePolicy"])
        for statement in trust["Statement"]:
            for key, value in statement.get("Condition", {}).get("StringEquals", {}).items():
                if key.endswith(":sub"):
                    subjects.update([value] if isinstance(value, str) else value)
    assert subjects == {
        "system:serviceaccount:kube-system:aws-node",
        "system:serviceaccount:kube-system:efs-csi-node-sa",
        "system:serviceaccount:kube-system:aws-load-balancer-controller",
        "system:serviceaccount:kube-system:cluster-autoscaler",
        "system:serviceaccount:amazon-cloudwatch:cloudwatch-agent",
        "system:serviceaccount:simfleet-observability:simfleet-collector",
        "system:serviceaccount:simfleet-runs:simfleet-run",
        "system:serviceaccount:simfleet-runs:simfleet-gate",
        "system:serviceaccount:simfleet-runs:simfleet-job",
        "system:serviceaccount:kube-system:efs-csi-controller-sa",
        "system:serviceaccount:simfleet-runs:datasets-import-trajectories",
    }
    # A service with a model repository gets its own role when it is on.
    service_roles = [r for r in planned_dev_with_service().registrations if r.type == "aws:iam/role:Role"]
    assert any("simfleet-services:radstream-triton" in r.inputs["assumeRolePolicy"] for r in service_roles)


def test_stack_exports() -> None:
    outputs = planned("dev").outputs
    assert set(outputs) >= {
        "clusterName",
        "kubeconfig",
        "oidcProviderArn",
        "checkpointsBucket",
        "artifactsBucket",
        "repositoryUrls",
        "runsNamespace",
        "runs",
        "jobs",
        "network",
        "services",
        "sharedStorage",
        "metrics",
        "queues",
    }
    assert outputs["clusterName"] == "simfleet-dev"
    network = outputs["network"]
    assert network["vpcId"].startswith("vpc-") and network["deployerSecurityGroupId"].startswith("sg-")
    assert len(network["privateSubnetIds"]) == 2
    assert outputs["runsNamespace"] == "simfleet-runs"
    assert set(outputs["repositoryUrls"]) == {"monty", "unitree-sim", "glue-base", "triton", "robocache"}
    assert set(outputs["runs"]) == {"trot-baseline", "trot-sweep", "trot-continue"}
    [job] = outputs["jobs"].values()
    assert job["jobName"] == "robocache-resample" and job["status"] == "Pending"
    assert job["outputsUri"] == f"s3://{outputs['artifactsBucket']}/jobs/robocache-resample/{job['specHash']}/"
    assert outputs["runs"]["trot-sweep"]["artifactsUri"].startswith(f"s3://{outputs['artifactsBucket']}/runs/trot-sweep/")


def test_kubeconfig_is_the_only_secret_export() -> None:
    assert planned("dev").secret_outputs == {"kubeconfig"}


def test_invalid_stack_file_exits_2_with_every_error_and_no_traceback(tmp_path: Path) -> None:
    config = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())
    config["config"]["simfleet:platform"]["network"]["cidr"] = "8.8.0.0/16"
    config["config"]["simfleet:runs"][1]["images"]["sim"] = "unitree-sim:latest"
    bad = tmp_path / "Pulumi.broken.yaml"
    bad.write_text(yaml.safe_dump(config))
    done = run_plan_cli("--config", str(bad), out=tmp_path / "out")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    assert "Pulumi.broken.yaml: 2 errors in the stack config" in done.stderr
    assert "platform.network.cidr" in done.stderr and "runs[1] (trot-sweep).images.sim" in done.stderr
    assert not (tmp_path / "out" / "broken" / "resources.json").exists()


def test_unreadable_stack_file_is_a_clean_error(tmp_path: Path) -> None:
    bad = tmp_path / "Pulumi.x.yaml"
    bad.write_text("config: [unclosed")
    with pytest.raises(PlanConfigError, match="not valid YAML"):
        run_program(bad)
    done = run_plan_cli("--config", str(tmp_path / "Pulumi.missing.yaml"), out=tmp_path)
    assert done.returncode == 2 and "no such stack file" in done.stderr


def test_nothing_is_registered_before_validation(tmp_path: Path) -> None:
    config = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())
    config["config"]["simfleet:runs"][0]["mode"] = "headless"
    bad = tmp_path / "Pulumi.dev.yaml"
    bad.write_text(yaml.safe_dump(config))
    from tools.mocks import RecordingMonitor

    registered: list[Any] = []
    original = RecordingMonitor.RegisterResource

    def spy(self: RecordingMonitor, request: Any) -> Any:
        if request.type != "pulumi:pulumi:Stack":  # the synthetic root, not a resource of ours
            registered.append(request.type)
        return original(self, request)

    RecordingMonitor.RegisterResource = spy  # type: ignore[method-assign]
    try:
        with pytest.raises(PlanConfigError, match=r"runs\[0\] \(trot-baseline\)\.mode"):
            run_program(bad, "dev")
    finally:
        RecordingMonitor.RegisterResource = original  # type: ignore[method-assign]
    assert registered == []


def test_dev_plan_runs_are_small_and_their_hash_depends_on_no_resource() -> None:
    """Issue #7's bar, on the real program: at most 4 KB of inputs a run (or job), and a hash no resource can make unknown."""
    runs = [r for r in planned("dev").registrations if r.type == "pulumi-python:dynamic:Resource"]
    assert sorted(r.inputs["kind"] for r in runs) == ["job", "run", "run", "run"]
    for run in runs:
        compact = json.dumps({k: v for k, v in run.inputs.items() if k != "__provider"}, separators=(",", ":"))
        assert len(compact) <= 4096, f"{run.urn}: {len(compact)} bytes"
        assert "specHash" not in run.options.get("propertyDependencies", {}), run.options
        assert run.options.get("propertyDependencies", {}) == {}, f"{run.urn}: every input is plain"


# ---- the first deploy ------------------------------------------------------------------------------


def _control_plane_log_group(result: PlanResult) -> Any:
    return next(r for r in result.registrations if r.inputs.get("name") == "/aws/eks/simfleet-prod/cluster")


def test_prod_plan_has_a_443_path_for_the_deployer_and_a_managed_log_group() -> None:
    regs = planned("prod").registrations
    deployer = next(r for r in regs if r.type == "aws:ec2/securityGroup:SecurityGroup" and r.name == "network-deployer")
    [rule] = [r for r in regs if r.type == "aws:ec2/securityGroupRule:SecurityGroupRule"]
    assert (rule.inputs["type"], rule.inputs["fromPort"], rule.inputs["toPort"]) == ("ingress", 443, 443)
    assert rule.options["propertyDependencies"]["sourceSecurityGroupId"] == [deployer.urn]
    group = _control_plane_log_group(planned("prod"))
    assert group.inputs["retentionInDays"] == 90 and group.inputs["kmsKeyId"]


def test_bootstrap_phase_registers_only_the_network() -> None:
    result = run_program(ROOT / "Pulumi.prod.yaml", "prod", bootstrap=True)
    registered = {r.type for r in result.registrations}
    assert "eks:index:Cluster" not in registered and "kubernetes:helm.sh/v3:Release" not in registered
    assert {"aws:ec2/vpc:Vpc", "aws:ec2/natGateway:NatGateway", "aws:ec2/securityGroup:SecurityGroup"} <= registered
    # Every resource belongs to the Network component: the same URNs the full program registers, so the full
    # `pulumi up` that follows finds them unchanged.
    full = {r.urn for r in planned("prod").registrations}
    assert {r.urn for r in result.registrations} <= full
    assert set(result.outputs) == {"network"}


def test_bootstrap_phase_refuses_a_stack_whose_cluster_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    from tools import mocks

    monkeypatch.setattr(mocks, "EXISTING_CLUSTERS", ["simfleet-prod"])
    with pytest.raises(PlanConfigError, match="already exists: this run would delete it"):
        run_program(ROOT / "Pulumi.prod.yaml", "prod", bootstrap=True)


def test_an_unknown_bootstrap_phase_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from config import BOOTSTRAP_ENV
    from tools import plan

    # run_program sets the variable itself; patch what it sets, as a user exporting a typo would.
    original = plan._set_environment

    def with_typo(values: dict[str, str | None]) -> None:
        original({**values, BOOTSTRAP_ENV: "netwrok"} if values.get(BOOTSTRAP_ENV) == "network" else values)

    monkeypatch.setattr(plan, "_set_environment", with_typo)
    with pytest.raises(PlanConfigError, match="'netwrok' is not a phase"):
        run_program(ROOT / "Pulumi.prod.yaml", "prod", bootstrap=True)


def test_placeholders_warn_in_the_plan_cli_and_fail_outside_it(project_commands: ProjectCommands) -> None:
    done, _ = make_plan(project_commands, "dev")
    assert done.returncode == 0, done.stderr
    # Each warning with the line of the stack file it is about, and a run by its name.
    endpoint, viewport = (dev_line(f"{key}: [203.0.113.0/24]") for key in ("publicAccessCidrs", "viewport: {allowedCidrs"))
    assert (
        f"warning: Pulumi.dev.yaml:{endpoint}: platform.endpoint.publicAccessCidrs[0]: 203.0.113.0/24 is a placeholder"
        in done.stdout
    )
    assert f"warning: Pulumi.dev.yaml:{viewport}: runs[0] (trot-baseline).viewport.allowedCidrs[0]: 203.0.113.0/24" in done.stdout
    # What `pulumi preview` would run: the same program without the offline plan's flag.
    from config import OFFLINE_PLAN_ENV
    from tools import plan

    original = plan._set_environment

    def as_preview(values: dict[str, str | None]) -> None:
        original({**values, OFFLINE_PLAN_ENV: None} if values.get(OFFLINE_PLAN_ENV) else values)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plan, "_set_environment", as_preview)
        with pytest.raises(PlanConfigError) as caught:
            run_program(ROOT / "Pulumi.dev.yaml", "dev")
    message = str(caught.value)
    # Every placeholder at once, CIDRs and names a deploy would trust, each with its line.
    assert message.startswith("Pulumi.dev.yaml: 5 errors in the stack config")
    assert f"  - Pulumi.dev.yaml:{endpoint}: platform.endpoint.publicAccessCidrs[0]: 203.0.113.0/24 is a placeholder" in message
    for fragment, path in (
        ("deployRoles:", "platform.deployRoles[0]: arn:aws:iam::111122223333:role/simfleet-dev-deploy is a placeholder"),
        ("robocache-data-example", "platform.sharedStorage.imports[0].from: s3://robocache-data-example/"),
        ("example-shared-brains", "runs[1] (trot-sweep).checkpoint.from: s3://example-shared-brains/"),
    ):
        assert f"  - Pulumi.dev.yaml:{dev_line(fragment)}: {path}" in message
    assert "Traceback" not in message


# ---- services, shared storage, metrics ---------------------------------------------------------------


def test_dev_plan_has_the_service_shared_storage_and_metrics() -> None:
    regs = planned_dev_with_service().registrations

    def one(typ: str, name: str) -> Any:
        matches = [r for r in regs if r.type == typ and r.inputs.get("metadata", {}).get("name") == name]
        assert len(matches) == 1, (typ, name, [r.name for r in regs if r.type == typ])
        return matches[0].inputs

    deployment = one("kubernetes:apps/v1:Deployment", "radstream-triton")
    [server] = deployment["spec"]["template"]["spec"]["containers"]
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live" and server["startupProbe"]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == server["resources"]["requests"]["nvidia.com/gpu"] == "1"
    service = one("kubernetes:core/v1:Service", "radstream-triton")
    assert sorted(p["port"] for p in service["spec"]["ports"]) == [8000, 8001, 8002]
    hpa = one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "radstream-triton")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 2)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert one("kubernetes:policy/v1:PodDisruptionBudget", "radstream-triton")["spec"]["maxUnavailable"] == 1
    # EFS: one mount target per AZ (dev has two), the add-on pinned, the class and the claim.
    subnets = [r for r in regs if r.type == "aws:ec2/subnet:Subnet" and r.name.startswith("network-private")]
    targets = [r for r in regs if r.type == "aws:efs/mountTarget:MountTarget"]
    assert len(targets) == len(subnets) == 2
    # The mocks name a subnet's id after the subnet (tools/mocks.py): each private subnet gets exactly one target.
    from tools.mocks import _short_hash

    assert sorted(t.inputs["subnetId"] for t in targets) == sorted(f"subnet-{_short_hash('subnet', s.name)}" for s in subnets)
    [efs_addon] = [r for r in regs if r.type == "aws:eks/addon:Addon" and r.inputs["addonName"] == "aws-efs-csi-driver"]
    assert (
        efs_addon.inputs["addonVersion"] == versions.addon_version("1.35", "aws-efs-csi-driver")
        and efs_addon.inputs["serviceAccountRoleArn"]
    )
    assert one("kubernetes:storage.k8s.io/v1:StorageClass", "efs-sc")["provisioner"] == "efs.csi.aws.com"
    assert one("kubernetes:core/v1:PersistentVolumeClaim", "datasets")["spec"]["accessModes"] == ["ReadWriteMany"]
    [pushgateway] = [
        r for r in regs if r.type == "kubernetes:helm.sh/v3:Release" and r.inputs["chart"] == "prometheus-pushgateway"
    ]
    assert pushgateway.inputs["version"] == "3.8.0" and pushgateway.inputs["namespace"] == "simfleet-metrics"
    outputs = planned_dev_with_service().outputs
    assert outputs["metrics"] == {"pushgatewayUrl": "http://prometheus-pushgateway.simfleet-metrics.svc:9091"}
    assert outputs["sharedStorage"]["datasetsClaim"] == "datasets" and outputs["sharedStorage"]["namespace"] == "simfleet-runs"
    assert outputs["services"]["radstream-triton"]["url"] == "http://radstream-triton.simfleet-services.svc:8000"


def test_efs_admits_nfs_from_the_security_group_the_managed_nodes_carry() -> None:
    regs = planned("dev").registrations
    [rule] = [r for r in regs if r.type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"]
    cluster = next(r for r in regs if r.type == "eks:index:Cluster")
    # The EKS-created cluster security group (DescribeCluster's vpcConfig.clusterSecurityGroupId), not pulumi-eks's own.
    assert rule.inputs["fromPort"] == rule.inputs["toPort"] == 2049
    assert rule.inputs["referencedSecurityGroupId"].startswith("sg-")
    assert rule.inputs["referencedSecurityGroupId"] != cluster.inputs.get("clusterSecurityGroupId")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_planned_kubernetes_object_passes_strict_validation(stack: str) -> None:
    import kubernetes_validate

    from tools.plan import kubernetes_objects

    objects = kubernetes_objects(planned(stack).registrations)
    kinds = {body["kind"] for _, body in objects}
    assert {"StorageClass", "PersistentVolumeClaim", "NetworkPolicy", "Namespace"} <= kinds
    for path, body in objects:
        if str(body["apiVersion"]).startswith("kueue.x-k8s.io/"):
            continue  # custom resources: checked against Kueue's own CRDs below
        try:
            kubernetes_validate.validate(body, "1.35", strict=True)
        except kubernetes_validate.ValidationError as err:
            raise AssertionError(f"{path}: {err}") from err


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_planned_kueue_object_passes_kueues_crds(stack: str) -> None:
    from crd_schema import load_crds, problems

    from tools.plan import kubernetes_objects

    folder = Path("/work/shared/reference/crds/kueue/v0.19.2")
    if not folder.is_dir():
        pytest.skip(f"Kueue's CRDs are not at {folder} (shared reference data)")
    crds = load_crds(folder)
    custom = [
        (path, body) for path, body in kubernetes_objects(planned(stack).registrations) if "kueue.x-k8s.io" in body["apiVersion"]
    ]
    assert {body["kind"] for _, body in custom} == {"ResourceFlavor", "WorkloadPriorityClass", "ClusterQueue", "LocalQueue"}
    for path, body in custom:
        assert problems(body, crds) == [], path


def test_dev_plan_queues_every_team_with_spot_and_on_demand_flavors() -> None:
    regs = planned("dev").registrations
    kueue: dict[str, list[dict[str, Any]]] = {}
    for r in regs:
        if r.type.startswith("kubernetes:kueue.x-k8s.io/v1beta2:"):
            kueue.setdefault(r.type.rsplit(":", 1)[1], []).append(r.inputs)
    assert {f["metadata"]["name"] for f in kueue["ResourceFlavor"]} == {"spot", "on-demand"}
    assert {c["metadata"]["name"] for c in kueue["WorkloadPriorityClass"]} == {"simfleet-interactive", "simfleet-batch"}
    gpus = {
        q["metadata"]["name"]: {
            f["name"]: next(r["nominalQuota"] for r in f["resources"] if r["name"] == "nvidia.com/gpu")
            for f in q["spec"]["resourceGroups"][0]["flavors"]
        }
        for q in kueue["ClusterQueue"]
    }
    assert gpus == {"locomotion": {"spot": 2, "on-demand": 1}, "perception": {"spot": 2, "on-demand": 0}}
    assert {(q["metadata"]["namespace"], q["spec"]["clusterQueue"]) for q in kueue["LocalQueue"]} == {
        ("simfleet-runs", "locomotion"),
        ("simfleet-runs", "perception"),
    }
    # The runs namespace's GPU quota: the queues' 5, plus the 5 borrowed GPUs Kueue may preempt at once (their pods
    # count until they are gone), at most the 8 of the node groups at maxSize.
    [quota] = [r for r in regs if r.type == "kubernetes:core/v1:ResourceQuota"]
    assert quota.inputs["spec"]["hard"] == {"requests.nvidia.com/gpu": "8"}
    outputs = planned("dev").outputs["queues"]
    assert outputs["default"] == "locomotion" and set(outputs["teams"]) == {"locomotion", "perception"}
    assert outputs["teams"]["perception"]["on-demand"] == {"gpus": 0, "borrowingLimit": 1}


def test_runs_may_reach_the_pushgateway_and_the_services_that_list_them() -> None:
    regs = planned_dev_with_service().registrations
    policies = {
        r.inputs["metadata"]["name"]: r.inputs["spec"]
        for r in regs
        if r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy" and r.inputs["metadata"].get("namespace") == "simfleet-runs"
    }
    [to_pushgateway] = policies["allow-pushgateway-egress"]["egress"]
    assert to_pushgateway["ports"] == [{"port": 9091, "protocol": "TCP"}]
    assert to_pushgateway["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "simfleet-metrics"}
    [to_triton] = policies["allow-service-radstream-triton-egress"]["egress"]
    assert [p["port"] for p in to_triton["ports"]] == [8000, 8001, 8002]
    assert to_triton["to"][0]["podSelector"]["matchLabels"] == {"simfleet.io/service": "radstream-triton"}
    # prod has no service: only the Pushgateway rule is added.
    prod = {
        r.inputs["metadata"]["name"]
        for r in planned("prod").registrations
        if r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"
    }
    assert "allow-pushgateway-egress" in prod and not any(n.startswith("allow-service-") for n in prod)


def _with_deploy_roles(tmp_path: Path, roles: list[str]) -> Path:
    raw = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())
    raw["config"]["simfleet:platform"]["deployRoles"] = roles
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _access(result: PlanResult) -> tuple[dict[str, str], set[str]]:
    [cluster] = [r for r in result.registrations if r.type == "eks:index:Cluster"]
    return cluster.inputs["clusterTags"], {e["principalArn"] for e in cluster.inputs["accessEntries"].values()}


def test_deploy_roles_reach_the_cluster_and_its_creator_is_recorded_not_entered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components.cluster import CREATOR_TAG
    from tools import mocks

    ci = f"arn:aws:iam::{mocks.ACCOUNT_ID}:role/simfleet-dev-deploy"
    caller = f"arn:aws:iam::{mocks.ACCOUNT_ID}:user/ci"  # the mocks' GetCallerIdentity
    person = f"arn:aws:iam::{mocks.ACCOUNT_ID}:role/platform-admin"
    path = _with_deploy_roles(tmp_path, [ci, caller, person])
    # A fresh account: this `up` creates the cluster, so its caller holds EKS's creator entry.
    tags, entries = _access(run_program(path, "dev"))
    assert tags[CREATOR_TAG] == caller and entries == {ci, person}
    # Later runs by anyone keep the recorded creator: the CI role still gets its entry when a person created the cluster.
    monkeypatch.setattr(mocks, "EXISTING_CLUSTERS", ["simfleet-dev"])
    monkeypatch.setattr(mocks, "EXISTING_CLUSTER_TAGS", {"simfleet-dev": {CREATOR_TAG: person}})
    tags, entries = _access(run_program(path, "dev"))
    assert tags[CREATOR_TAG] == person and entries == {ci, caller}


def test_within_a_plan_the_same_inputs_are_decoded_once() -> None:
    from fake_kube import run_props

    from workloads import inputs

    props = run_props("https://unused.invalid")
    assert inputs.decode(props) is not inputs.decode(props)  # outside a plan: a fresh decoding each time
    with inputs.decoding_once():
        first = inputs.decode(props)
        assert inputs.decode(dict(props)) is first
        with pytest.raises(ValueError, match="is not the hash"):  # other inputs are decoded (and checked) anew
            inputs.decode({**props, "specHash": "0" * 12})
    assert inputs.decode(props) is not first


def test_a_plan_runs_without_the_cycle_collector_and_puts_it_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # Collections walking every live object of a large plan were over a quarter of its CPU (tools/plan.py).
    seen: list[bool] = []

    def planned(argv: list[str] | None) -> int:
        seen.append(gc.isenabled())
        return 0

    monkeypatch.setattr(plan, "_main", planned)
    assert gc.isenabled()
    assert plan.main([]) == 0
    assert seen == [False]
    assert gc.isenabled()
    gc.disable()  # as `python -m tools.plan` runs it: off for good, not turned on at the end
    try:
        assert plan.main([]) == 0
        assert not gc.isenabled()
    finally:
        gc.enable()


# `python -m tools.plan` ends through exit_now; a process whose output cannot be written ends as the interpreter's own
# exit would end it: nothing closed is an error, and a reader gone is reported (exit 120), never a traceback.
_EXIT_NOW = "import sys\nfrom tools.plan import exit_now\nprint('planned')\nprint('warned', file=sys.stderr)\nexit_now(3)\n"


def _exit_now(**streams: Any) -> subprocess.CompletedProcess[bytes]:
    root = Path(__file__).resolve().parents[1]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}  # buffered, as users run it
    return subprocess.run([sys.executable, "-c", _EXIT_NOW], cwd=root, env=env, timeout=60, check=False, **streams)


def test_plan_exit_with_stdout_and_stderr_closed_keeps_its_code() -> None:
    # Both closed before the interpreter starts (`make plan >&- 2>&-`): sys.stdout and sys.stderr are None.
    def close_stdout_and_stderr() -> None:
        os.close(1)
        os.close(2)

    done = _exit_now(preexec_fn=close_stdout_and_stderr)
    assert done.returncode == 3


def test_plan_exit_to_a_reader_gone_is_reported_as_the_interpreter_reports_it() -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the plan prints (`make plan | head -0`)
    try:
        done = _exit_now(stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert done.returncode == 120, done.stderr  # as sys.exit's final flush: "Exception ignored ... BrokenPipeError"
    assert b"BrokenPipeError" in done.stderr
    assert b"Traceback" not in done.stderr
    assert b"warned" in done.stderr


def test_plan_exit_delivers_everything_to_a_pipe() -> None:
    done = _exit_now(capture_output=True)
    assert (done.returncode, done.stdout, done.stderr) == (3, b"planned\n", b"warned\n")
