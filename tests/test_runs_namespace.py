"""RunsNamespace: Pod Security labels, the run service account, each NetworkPolicy's rules, GPU quota and RBAC."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pulumi
import pulumi_kubernetes as k8s
import pytest

import naming
from components.runs_namespace import RunsNamespace, RunsNamespaceArgs

ROLE_ARN = "arn:aws:iam::123456789012:role/simfleet-dev-run"
GATE_ARN = "arn:aws:iam::123456789012:role/access-gate-role"
JOB_ARN = "arn:aws:iam::123456789012:role/access-job-role"
POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
EVERY_POD: dict[str, Any] = {}
METADATA_EXCEPT = {"cidr": "0.0.0.0/0", "except": [naming.INSTANCE_METADATA_CIDR]}


@pytest.fixture
def built(pulumi_mocks):
    made: dict[str, Any] = {}

    def build() -> None:
        cluster = pulumi.ComponentResource("simfleet:cluster:Cluster", "cluster")
        provider = k8s.Provider("k8s", kubeconfig="{}")
        ns = RunsNamespace(
            "runs-ns",
            RunsNamespaceArgs(ROLE_ARN, GATE_ARN, JOB_ARN, 8, "1.35", cluster),
            opts=pulumi.ResourceOptions(provider=provider),
        )
        ns.namespace.apply(lambda v: made.__setitem__("namespace", v))
        # Stands in for a run: anything that takes the namespace output.
        k8s.core.v1.ConfigMap(
            "consumer",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="consumer", namespace=ns.namespace),
            opts=pulumi.ResourceOptions(provider=provider),
        )
        ns.service_account.apply(lambda v: made.__setitem__("service_account", v))

    rec = pulumi_mocks(build)
    return rec, made


@pytest.fixture
def rec(built):
    return built[0]


def _policy(rec, name: str) -> dict[str, Any]:
    inputs = rec.one(POLICY, f"runs-ns-{name}").inputs
    assert inputs["metadata"]["namespace"] == naming.RUNS_NAMESPACE
    return inputs["spec"]


def test_namespace_enforces_restricted_pod_security(rec):
    labels = rec.one("kubernetes:core/v1:Namespace").inputs["metadata"]["labels"]
    assert rec.one("kubernetes:core/v1:Namespace").inputs["metadata"]["name"] == naming.RUNS_NAMESPACE
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "v1.35"


def test_outputs_name_the_created_objects(built):
    _, made = built
    assert made == {"namespace": naming.RUNS_NAMESPACE, "service_account": naming.RUN_SERVICE_ACCOUNT}


def test_namespace_output_waits_for_policies_and_quota(rec):
    deps = set(rec.one("kubernetes:core/v1:ConfigMap", "consumer").options["dependsOn"])
    guards = {r.urn for r in [*rec.of_type(POLICY), rec.one("kubernetes:core/v1:ResourceQuota")]}
    assert len(guards) == 5
    assert guards <= deps


def test_run_service_account(rec):
    sa = rec.one("kubernetes:core/v1:ServiceAccount", "runs-ns-run-sa").inputs
    assert sa["metadata"]["name"] == naming.RUN_SERVICE_ACCOUNT
    assert sa["metadata"]["namespace"] == naming.RUNS_NAMESPACE
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": ROLE_ARN}
    assert sa["automountServiceAccountToken"] is False


def test_exactly_these_policies(rec):
    names = {r.inputs["metadata"]["name"] for r in rec.of_type(POLICY)}
    # No namespace-wide ingress: each viewport run brings its own policy (workloads/renderers/run.py).
    assert names == {"default-deny", "allow-dns", "allow-https-egress", "allow-turn-egress"}


def test_default_deny_both_directions(rec):
    spec = _policy(rec, "default-deny")
    assert spec["podSelector"] == EVERY_POD
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in spec and "egress" not in spec


def test_dns_only_to_kube_dns(rec):
    spec = _policy(rec, "allow-dns")
    assert spec["policyTypes"] == ["Egress"]
    assert spec["egress"] == [
        {
            # One peer holding both selectors (AND), not two peers (OR).
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
        }
    ]


def test_https_egress_excludes_instance_metadata(rec):
    spec = _policy(rec, "allow-https-egress")
    assert spec["policyTypes"] == ["Egress"]
    assert spec["egress"] == [{"to": [{"ipBlock": METADATA_EXCEPT}], "ports": [{"port": 443, "protocol": "TCP"}]}]


def test_turn_egress_both_protocols(rec):
    spec = _policy(rec, "allow-turn-egress")
    assert spec["egress"] == [
        {
            "to": [{"ipBlock": METADATA_EXCEPT}],
            "ports": [{"port": naming.TURN_PORT, "protocol": "TCP"}, {"port": naming.TURN_PORT, "protocol": "UDP"}],
        }
    ]


def test_gate_service_account_and_rbac(rec):
    """A continuation's gate reads the source's index.json (IRSA) and releases the run's Job: get and patch Jobs."""
    sa = rec.one("kubernetes:core/v1:ServiceAccount", "runs-ns-gate-sa").inputs
    assert sa["metadata"]["name"] == naming.GATE_SERVICE_ACCOUNT
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": GATE_ARN}
    assert sa["automountServiceAccountToken"] is True  # kubectl's in-cluster credentials
    rules = rec.one("kubernetes:rbac.authorization.k8s.io/v1:Role", "runs-ns-gate").inputs["rules"]
    assert rules == [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "patch"]}]
    binding = rec.one("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "runs-ns-gate").inputs
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": naming.GATE_SERVICE_ACCOUNT, "namespace": naming.RUNS_NAMESPACE}
    ]


def test_job_service_account_carries_the_job_role_and_no_api_token(rec):
    sa = rec.one("kubernetes:core/v1:ServiceAccount", "runs-ns-job-sa").inputs
    assert sa["metadata"]["name"] == naming.JOB_SERVICE_ACCOUNT
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": JOB_ARN}
    assert sa["automountServiceAccountToken"] is False


def test_no_policy_opens_anything_else(rec):
    for r in rec.of_type(POLICY):
        for rule in [*r.inputs["spec"].get("egress", []), *r.inputs["spec"].get("ingress", [])]:
            assert rule.get("ports"), f"{r.urn}: a rule without ports allows every port"


def test_gpu_quota(rec):
    quota = rec.one("kubernetes:core/v1:ResourceQuota").inputs
    assert quota["spec"]["hard"] == {"requests.nvidia.com/gpu": "8"}


def test_run_operator_rbac(rec):
    rules = rec.one("kubernetes:rbac.authorization.k8s.io/v1:Role", "runs-ns-run-operator").inputs["rules"]
    granted = {(group, res, verb) for r in rules for group in r["apiGroups"] for res in r["resources"] for verb in r["verbs"]}
    for res in ("pods", "pods/log", "services", "configmaps", "events"):
        assert {("", res, v) for v in ("get", "list", "watch")} <= granted, res
    assert ("batch", "jobs", "delete") in granted and ("", "pods", "delete") in granted
    # Why a run is queued: its Workload and the LocalQueues, read only.
    assert {("kueue.x-k8s.io", res, v) for res in ("workloads", "localqueues") for v in ("get", "list", "watch")} <= granted
    assert not any(res == "secrets" or "*" in (group, res, verb) for group, res, verb in granted)
    # The one write beyond deletes: `simfleet cancel` patches a Workload's spec.active; the queue position is a get.
    writes = {(g, r, v) for g, r, v in granted if v in {"create", "update", "patch", "escalate", "bind", "impersonate"}}
    assert writes == {("kueue.x-k8s.io", "workloads", "patch")}
    assert ("visibility.kueue.x-k8s.io", "localqueues/pendingworkloads", "get") in granted

    binding = rec.one("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding", "runs-ns-run-operator").inputs
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "run-operator"}
    assert binding["subjects"] == [{"kind": "Group", "name": naming.RUN_OPERATORS_GROUP, "apiGroup": "rbac.authorization.k8s.io"}]


def test_every_object_goes_with_the_cluster(rec):
    cluster = rec.one("simfleet:cluster:Cluster", "cluster").urn
    objects = [r for r in rec.all if r.type.startswith("kubernetes:") and r.parent.endswith("::runs-ns")]
    assert len(objects) == 13  # namespace, quota, 3 service accounts, 2 Roles and their bindings, 4 NetworkPolicies
    for r in objects:
        assert r.options.get("deletedWith") == cluster, r.urn
        assert r.options.get("provider") == "k8s", r.urn


def test_objects_are_valid_kubernetes(rec):
    objects = [r for r in rec.all if r.type.startswith("kubernetes:") and r.parent.endswith("::runs-ns")]
    assert len(objects) == 13
    for r in objects:
        # Raises ValidationError on an unknown field or a wrong type; returns the schema version it used.
        assert kubernetes_validate.validate(r.inputs, "1.35", strict=True) == "1.35", r.urn


def test_negative_quota_rejected():
    with pytest.raises(ValueError, match="gpu_quota"):
        RunsNamespaceArgs(ROLE_ARN, GATE_ARN, JOB_ARN, -1, "1.35", object())  # type: ignore[arg-type]


def test_gpu_quota_sits_between_the_queues_nominal_quotas_and_the_node_groups():
    # dev: the queues hold 5 nominal GPUs; the quota is the 5 the Triton service cannot reach; the groups hold 8.
    args = RunsNamespaceArgs(ROLE_ARN, GATE_ARN, JOB_ARN, 5, "1.35", object(), queued_gpus=5, node_group_gpus=8)  # type: ignore[arg-type]
    assert args.gpu_quota == 5
    with pytest.raises(ValueError, match=r"GPU quota \(4\) is below the queues' nominal quotas \(5\)"):
        RunsNamespaceArgs(ROLE_ARN, GATE_ARN, JOB_ARN, 4, "1.35", object(), queued_gpus=5, node_group_gpus=8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"GPU quota \(9\) is above what the GPU node groups hold \(8\)"):
        RunsNamespaceArgs(ROLE_ARN, GATE_ARN, JOB_ARN, 9, "1.35", object(), queued_gpus=5, node_group_gpus=8)  # type: ignore[arg-type]
