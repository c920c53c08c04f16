"""The namespace runs live in: Pod Security, the run service account, NetworkPolicies, GPU quota and operator RBAC."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.meta.v1 import LabelSelectorArgs, ObjectMetaArgs
from pulumi_kubernetes.networking.v1 import (
    IPBlockArgs,
    NetworkPolicyEgressRuleArgs,
    NetworkPolicyPeerArgs,
    NetworkPolicyPortArgs,
    NetworkPolicySpecArgs,
)

import naming
from config.capacity import gpu_quota_problems

ANYWHERE_BUT_METADATA = IPBlockArgs(cidr="0.0.0.0/0", except_=[naming.INSTANCE_METADATA_CIDR])
RUN_OPERATOR = "run-operator"
READ = ["get", "list", "watch"]


def pod_security_labels(kubernetes_version: str) -> dict[str, str]:
    """Pod Security Admission at `restricted`, pinned to the cluster minor so an upgrade cannot change the rules."""
    labels: dict[str, str] = {}
    for mode in ("enforce", "audit", "warn"):
        labels[f"pod-security.kubernetes.io/{mode}"] = "restricted"
        labels[f"pod-security.kubernetes.io/{mode}-version"] = f"v{kubernetes_version}"
    return labels


def _egress_to_pods(namespace: str, pod_labels: Mapping[str, str], ports: list[NetworkPolicyPortArgs]) -> NetworkPolicySpecArgs:
    """Egress from every pod of the namespace to the pods `pod_labels` selects (empty: all) in `namespace`, on `ports`."""
    return NetworkPolicySpecArgs(
        pod_selector=LabelSelectorArgs(),
        policy_types=["Egress"],
        egress=[
            NetworkPolicyEgressRuleArgs(
                # Namespace and pod selector in ONE peer: exactly those pods, on exactly those ports.
                to=[
                    NetworkPolicyPeerArgs(
                        namespace_selector=LabelSelectorArgs(match_labels={"kubernetes.io/metadata.name": namespace}),
                        pod_selector=LabelSelectorArgs(match_labels=dict(pod_labels)),
                    )
                ],
                ports=ports,
            )
        ],
    )


def _ports(*ports: tuple[int, str]) -> list[NetworkPolicyPortArgs]:
    return [NetworkPolicyPortArgs(port=port, protocol=protocol) for port, protocol in ports]


@dataclass(frozen=True)
class InClusterEgress:
    """Pods in another namespace that run pods may connect to: the Pushgateway, services that list the runs as clients."""

    name: str  # the policy is allow-<name>-egress
    namespace: str
    ports: Sequence[int]
    pod_labels: Mapping[str, str] = field(default_factory=dict)  # empty: every pod of the namespace


def network_policies(egress_to: Sequence[InClusterEgress] = ()) -> dict[str, NetworkPolicySpecArgs]:
    """Default deny, then one policy per thing a run may do. Policies are additive: a pod gets the union."""
    every_pod = LabelSelectorArgs()
    in_cluster = {
        f"allow-{target.name}-egress": _egress_to_pods(
            target.namespace, target.pod_labels, _ports(*((port, "TCP") for port in target.ports))
        )
        for target in egress_to
    }
    return {
        "default-deny": NetworkPolicySpecArgs(pod_selector=every_pod, policy_types=["Ingress", "Egress"]),
        # CoreDNS pods in kube-system, nothing else.
        "allow-dns": _egress_to_pods("kube-system", {"k8s-app": "kube-dns"}, _ports((53, "UDP"), (53, "TCP"))),
        # S3, STS (IRSA) and other AWS APIs. The instance metadata service is carved out so a run can never
        # fall back to the node role's credentials.
        "allow-https-egress": NetworkPolicySpecArgs(
            pod_selector=every_pod,
            policy_types=["Egress"],
            egress=[
                NetworkPolicyEgressRuleArgs(
                    to=[NetworkPolicyPeerArgs(ip_block=ANYWHERE_BUT_METADATA)], ports=_ports((443, "TCP"))
                )
            ],
        ),
        # WebRTC viewports reach browsers through a TURN relay: TCP and UDP on the TURN port.
        "allow-turn-egress": NetworkPolicySpecArgs(
            pod_selector=every_pod,
            policy_types=["Egress"],
            egress=[
                NetworkPolicyEgressRuleArgs(
                    to=[NetworkPolicyPeerArgs(ip_block=ANYWHERE_BUT_METADATA)],
                    ports=_ports((naming.TURN_PORT, "TCP"), (naming.TURN_PORT, "UDP")),
                )
            ],
        ),
        # No ingress is allowed here: a run with a viewport brings its own NetworkPolicy (the NLB's TCP from the
        # VPC, UDP from its allowedCidrs; workloads/renderers/run.py). The kubelet's probes still reach every pod:
        # the VPC CNI's policy agent always admits the node's own IP (aws/aws-network-policy-agent#65).
        **in_cluster,
    }


def run_operator_rules() -> list[k8s.rbac.v1.PolicyRuleArgs]:
    """Watch runs and stop them. No secrets, no create/update: runs are started only through `pulumi up`."""
    return [
        k8s.rbac.v1.PolicyRuleArgs(
            api_groups=[""], resources=["pods", "pods/log", "services", "configmaps", "events"], verbs=READ
        ),
        k8s.rbac.v1.PolicyRuleArgs(api_groups=["batch"], resources=["jobs"], verbs=[*READ, "delete"]),
        # Deleting a pod restarts it under its Job; deleting the Job stops the run.
        k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["pods"], verbs=["delete"]),
        # Why a run is queued: its Workload's conditions, and the teams' LocalQueues (docs/researchers/queues.md, "Why is my run Queued?"). The
        # cluster-scoped ClusterQueues are readable through components/queues.py's ClusterRole.
        k8s.rbac.v1.PolicyRuleArgs(api_groups=["kueue.x-k8s.io"], resources=["workloads", "localqueues"], verbs=READ),
        # `simfleet cancel` deactivates a run's Workload (spec.active: false, a JSON patch): Kueue evicts it for good.
        k8s.rbac.v1.PolicyRuleArgs(api_groups=["kueue.x-k8s.io"], resources=["workloads"], verbs=["patch"]),
        # A queued run's position: Kueue's visibility API (its VisibilityOnDemand feature), GET .../localqueues/<queue>/
        # pendingworkloads; where the feature is off the API answers 404 and `simfleet` shows no position.
        k8s.rbac.v1.PolicyRuleArgs(
            api_groups=["visibility.kueue.x-k8s.io"], resources=["localqueues/pendingworkloads"], verbs=["get"]
        ),
    ]


def gate_rules() -> list[k8s.rbac.v1.PolicyRuleArgs]:
    """A continuation's gate releases the suspended Job of its run (kubectl patch): nothing else."""
    return [k8s.rbac.v1.PolicyRuleArgs(api_groups=["batch"], resources=["jobs"], verbs=["get", "patch"])]


@dataclass(frozen=True)
class RunsNamespaceArgs:
    run_role_arn: pulumi.Input[str]
    gate_role_arn: pulumi.Input[str]
    job_role_arn: pulumi.Input[str]
    # config.runs_gpu_quota: what Kueue admits plus headroom for preempted pods still terminating; a backstop.
    gpu_quota: int
    kubernetes_version: str
    cluster: pulumi.Resource
    # In-cluster destinations besides DNS: the Pushgateway (metrics on), services that list simfleet-runs as a client.
    egress_to: Sequence[InClusterEgress] = ()
    # When given, gpu_quota must sit between them: the queues' nominal GPU quotas (QueuesConfig.nominal_gpus(), the most
    # Kueue admits at once) <= gpu_quota <= the GPU node groups at maxSize (config/capacity.py runs_gpu_quota says why).
    queued_gpus: int | None = None
    node_group_gpus: int | None = None

    def __post_init__(self) -> None:
        if len({e.name for e in self.egress_to}) != len(self.egress_to):
            raise ValueError("RunsNamespace: two egress_to entries share a name")
        if self.gpu_quota < 0:
            raise ValueError(f"RunsNamespace: gpu_quota must be >= 0, got {self.gpu_quota}")
        if self.queued_gpus is not None and self.node_group_gpus is not None:
            problems = gpu_quota_problems(self.gpu_quota, self.queued_gpus, self.node_group_gpus)
            if problems:
                raise ValueError("RunsNamespace: " + "; ".join(problems))


class RunsNamespace(pulumi.ComponentResource):
    namespace: pulumi.Output[str]
    service_account: pulumi.Output[str]

    def __init__(self, name: str, args: RunsNamespaceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("simfleet:runs:RunsNamespace", name, None, opts)
        # Deleting the cluster deletes everything inside it; per-object deletes would only hang on a gone API.
        child = pulumi.ResourceOptions(parent=self, deleted_with=args.cluster)
        labels = {"app.kubernetes.io/part-of": "simfleet", "app.kubernetes.io/managed-by": "pulumi"}

        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=ObjectMetaArgs(
                name=naming.RUNS_NAMESPACE, labels={**labels, **pod_security_labels(args.kubernetes_version)}
            ),
            opts=child,
        )
        namespace = ns.metadata.apply(lambda m: str(m.name))

        def meta(object_name: str, annotations: dict[str, pulumi.Input[str]] | None = None) -> ObjectMetaArgs:
            return ObjectMetaArgs(name=object_name, namespace=namespace, labels=labels, annotations=annotations)

        sa = k8s.core.v1.ServiceAccount(
            f"{name}-run-sa",
            metadata=meta(naming.RUN_SERVICE_ACCOUNT, annotations={"eks.amazonaws.com/role-arn": args.run_role_arn}),
            # Run pods never call the Kubernetes API. IRSA does not need this token: the EKS pod identity webhook
            # adds its own projected token (volume aws-iam-token, audience sts.amazonaws.com) to pods whose
            # service account carries the role annotation (aws/amazon-eks-pod-identity-webhook pkg/handler).
            automount_service_account_token=False,
            opts=child,
        )

        # Batch jobs: only their uploader uses the role (write under jobs/); no pod of a job calls the Kubernetes API.
        k8s.core.v1.ServiceAccount(
            f"{name}-job-sa",
            metadata=meta(naming.JOB_SERVICE_ACCOUNT, annotations={"eks.amazonaws.com/role-arn": args.job_role_arn}),
            automount_service_account_token=False,
            opts=child,
        )

        # The gates of `run:<name>` continuations: IRSA to read the source's index.json, RBAC to release the Job.
        gate_sa = k8s.core.v1.ServiceAccount(
            f"{name}-gate-sa",
            metadata=meta(naming.GATE_SERVICE_ACCOUNT, annotations={"eks.amazonaws.com/role-arn": args.gate_role_arn}),
            automount_service_account_token=True,  # kubectl in the gate pod authenticates with it
            opts=child,
        )
        gate_role = k8s.rbac.v1.Role(f"{name}-gate", metadata=meta(naming.GATE_SERVICE_ACCOUNT), rules=gate_rules(), opts=child)
        k8s.rbac.v1.RoleBinding(
            f"{name}-gate",
            metadata=meta(naming.GATE_SERVICE_ACCOUNT),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=gate_role.metadata.name),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=naming.GATE_SERVICE_ACCOUNT, namespace=namespace)],
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[gate_sa])),
        )

        guards: list[pulumi.Resource] = [
            k8s.networking.v1.NetworkPolicy(f"{name}-{policy}", metadata=meta(policy), spec=spec, opts=child)
            for policy, spec in network_policies(args.egress_to).items()
        ]
        guards.append(
            k8s.core.v1.ResourceQuota(
                f"{name}-gpu-quota",
                metadata=meta("gpu"),
                # Extended resources take only the requests. prefix in a quota (no overcommit, so requests ==
                # limits). The cap is what Kueue may admit (the queues' nominal quotas; borrowing moves quota between
                # teams, never adds to it) plus the GPUs it can preempt at once, whose pods still count while they
                # terminate; at most the node groups at maxSize. Kueue is what queues work; this only stops what
                # bypasses it (config/capacity.py runs_gpu_quota).
                spec=k8s.core.v1.ResourceQuotaSpecArgs(hard={f"requests.{naming.GPU_RESOURCE}": str(args.gpu_quota)}),
                opts=child,
            )
        )

        role = k8s.rbac.v1.Role(f"{name}-{RUN_OPERATOR}", metadata=meta(RUN_OPERATOR), rules=run_operator_rules(), opts=child)
        k8s.rbac.v1.RoleBinding(
            f"{name}-{RUN_OPERATOR}",
            metadata=meta(RUN_OPERATOR),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=role.metadata.name),
            subjects=[
                k8s.rbac.v1.SubjectArgs(kind="Group", name=naming.RUN_OPERATORS_GROUP, api_group="rbac.authorization.k8s.io")
            ],
            opts=child,
        )

        # The name resolves only once the policies and the quota exist (URNs are known in preview, so previews
        # still show it), so nothing that takes it can start a pod in an unguarded namespace.
        self.namespace = pulumi.Output.all(namespace, *(g.urn for g in guards)).apply(lambda values: str(values[0]))
        self.service_account = sa.metadata.apply(lambda m: str(m.name))
        self.register_outputs({"namespace": self.namespace, "serviceAccount": self.service_account})
