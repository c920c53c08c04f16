"""The collector (pure): one CloudWatch agent Deployment that scrapes the Pushgateway, Kueue and the services' metrics
ports, turns the samples into CloudWatch metrics (embedded metric format), and the objects it runs with.

What it publishes is decided here, in `metric_declarations()`: the dashboard and the alarms (components/dashboard_body.py,
components/alarm_rules.py) may only use metric names and dimension sets declared here, which tests/test_dashboard.py
checks. The agent's configuration keys are those of its JSON schema at the pinned build (translator/config/schema.json,
agent v1.300070.0: logs.metrics_collected.prometheus and emf_processor), checked in tests/test_collector.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

import naming
import versions
from components.metrics import PUSHGATEWAY_POD_LABELS
from components.runs_namespace import pod_security_labels
from workloads.glue_runtime.metrics import GAUGES as RUN_GAUGES
from workloads.renderers.service import guard_policies, network_policy

PROMETHEUS_NAMESPACE = "ContainerInsights/Prometheus"  # the agent's documented default for EKS Prometheus metrics
AGENT_CONFIG_DIR = "/etc/cwagentconfig"  # where the agent reads its JSON in a container (tool/paths CONFIG_DIR_IN_CONTAINER)
PROMETHEUS_CONFIG_DIR = "/etc/prometheusconfig"
AGENT_DIR = "/opt/aws/amazon-cloudwatch-agent"  # the agent writes its translated config, logs and pid file under it
SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
COLLECTOR_UID = 10001
GLOBAL_SCRAPE_INTERVAL_SECONDS = 60  # Kueue and the services: minute resolution, what the dashboard and alarms use
LABELS = {"app.kubernetes.io/part-of": "simfleet", "app.kubernetes.io/managed-by": "pulumi"}
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"

# Scrape job names; the `job` label of every sample, and how the declarations below tell the sources apart.
JOB_PUSHGATEWAY = "pushgateway"
JOB_KUEUE = "kueue"
JOB_SERVICES = "services"

# Metrics each source exposes that the collector keeps (everything else is dropped at scrape, so it costs nothing):
# Kueue's ClusterQueue metrics (Kueue docs, reference/metrics.md), Triton's inference and GPU metrics (Triton docs,
# user_guide/metrics.md), and the runs' own (RUN_METRICS: the contract a run's glue runtime pushes, gauges only).
KUEUE_METRICS = (
    "kueue_pending_workloads",
    "kueue_admitted_active_workloads",
    "kueue_admitted_workloads_total",
    "kueue_evicted_workloads_total",
    "kueue_finished_workloads_total",
)
TRITON_METRICS = (
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
)
# Gauges, never counters: the agent turns a counter into the difference between two scrapes and drops a series' first
# sample (plugins/inputs/prometheus/delta_calculator.go), so a seed that pushes a counter once and ends is never seen.
# Untyped samples are dropped too (metrics_filter.go): a push must say `# TYPE <name> gauge`. The names are the ones
# the glue runtime pushes (workloads/glue_runtime/metrics.py), by name and meaning.
RUN_METRICS = dict(RUN_GAUGES)


@dataclass(frozen=True)
class CollectorArgs:
    cluster_name: str
    region: str
    kubernetes_version: str
    role_arn: Any  # the collector's IRSA role (pulumi.Input[str]); passed through to the ServiceAccount annotation
    scrape_pushgateway: bool  # platform.metrics.enabled
    # Ports named "metrics" of the services, by service: the collector's egress, and the services job when non-empty.
    service_metrics_ports: Mapping[str, int] = field(default_factory=dict)


def metric_declarations(args: CollectorArgs) -> list[dict[str, Any]]:
    """Which samples become CloudWatch metrics, with which dimensions (label names; the agent adds ClusterName).

    Samples that match no declaration still reach the prometheus log group (Logs Insights can query them); they are
    not metrics, so they cost ingestion only.
    """
    declarations: list[dict[str, Any]] = [
        _declaration(JOB_KUEUE, [["ClusterName"], ["ClusterName", "cluster_queue"]], KUEUE_METRICS),
        _declaration(JOB_KUEUE, [["ClusterName", "cluster_queue", "status"]], ("kueue_pending_workloads",)),
    ]
    if args.scrape_pushgateway:
        declarations += [
            # The Pushgateway's own build gauge: always 1 while it is scraped, so its absence is the "down" signal.
            _declaration(JOB_PUSHGATEWAY, [["ClusterName"]], ("pushgateway_build_info",)),
            # Runs push under job=simfleet-run (naming.PUSHGATEWAY_RUN_JOB); honor_labels keeps their grouping labels.
            _declaration(
                naming.PUSHGATEWAY_RUN_JOB, [["ClusterName", "run"], ["ClusterName", "run", "seed"]], tuple(RUN_METRICS)
            ),
            # Jobs push what their program measures, under job=<job>, shard=<n>: every gauge of theirs, per job.
            {
                "source_labels": ["shard"],
                "label_matcher": "^[0-9]+$",
                "dimensions": [["ClusterName", "job"]],
                "metric_selectors": [".*"],
            },
        ]
    if args.service_metrics_ports:
        declarations.append(
            _declaration(JOB_SERVICES, [["ClusterName", "service"], ["ClusterName", "service", "model"]], TRITON_METRICS)
        )
    return declarations


def _declaration(job: str, dimensions: list[list[str]], metrics: Sequence[str]) -> dict[str, Any]:
    return {
        "source_labels": ["job"],
        "label_matcher": f"^{job}$",
        "dimensions": dimensions,
        "metric_selectors": [f"^{name}$" for name in metrics],
    }


def agent_config(args: CollectorArgs) -> dict[str, Any]:
    """The agent's JSON: its Prometheus pipeline only (no host metrics: the add-on's agents do those)."""
    return {
        # Set, not discovered: pods cannot reach the instance metadata service (hop limit 1, components/nodegroups.py).
        "agent": {"region": args.region},
        "logs": {
            "metrics_collected": {
                "prometheus": {
                    "cluster_name": args.cluster_name,
                    "log_group_name": naming.container_insights_log_group(args.cluster_name, "prometheus"),
                    "prometheus_config_path": f"{PROMETHEUS_CONFIG_DIR}/prometheus.yaml",
                    "emf_processor": {
                        "metric_declaration_dedup": True,
                        "metric_namespace": PROMETHEUS_NAMESPACE,
                        "metric_declaration": metric_declarations(args),
                    },
                }
            },
            "force_flush_interval": 5,
        },
    }


def _keep(*names: str) -> list[dict[str, Any]]:
    return [{"source_labels": ["__name__"], "regex": "|".join(names), "action": "keep"}]


def pushgateway_target() -> str:
    """The Pushgateway's Service (one replica: its address is the one target)."""
    return f"{naming.PUSHGATEWAY_RELEASE}.{naming.METRICS_NAMESPACE}.svc:{naming.PUSHGATEWAY_PORT}"


def prometheus_config(args: CollectorArgs) -> dict[str, Any]:
    """The scrape configuration: the Pushgateway every 30 s, Kueue and the services' metrics ports every minute."""
    jobs: list[dict[str, Any]] = []
    if args.scrape_pushgateway:
        jobs.append(
            {
                "job_name": JOB_PUSHGATEWAY,
                # Finished seeds and shards delete their group after naming.pushgateway_linger_seconds(); this interval
                # and the timeout below are what that linger is measured against.
                "scrape_interval": f"{naming.PUSHGATEWAY_SCRAPE_INTERVAL_SECONDS}s",
                # Pushed samples keep the job and grouping labels of their push (Pushgateway README, "About the job and
                # instance labels").
                "honor_labels": True,
                "static_configs": [{"targets": [pushgateway_target()]}],
                # Pushed metrics, their push timestamps and the build gauge; not the Pushgateway's Go runtime.
                "metric_relabel_configs": [
                    {"source_labels": ["__name__"], "regex": "(go|process|promhttp|pushgateway_http)_.*", "action": "drop"}
                ],
            }
        )
    jobs.append(
        {
            "job_name": JOB_KUEUE,
            # Kueue serves metrics over HTTPS with authentication and authorization (controller-runtime's secure
            # metrics server): the collector's token, allowed GET /metrics by its ClusterRole. Its certificate is
            # self-issued, as the chart's own ServiceMonitor assumes (values metrics.serviceMonitor.tlsConfig).
            "scheme": "https",
            "bearer_token_file": SA_TOKEN,
            "tls_config": {"insecure_skip_verify": True},
            "static_configs": [
                {"targets": [f"{naming.KUEUE_METRICS_SERVICE}.{naming.KUEUE_NAMESPACE}.svc:{naming.KUEUE_METRICS_PORT}"]}
            ],
            "metric_relabel_configs": _keep(*KUEUE_METRICS),
        }
    )
    if args.service_metrics_ports:
        jobs.append(
            {
                "job_name": JOB_SERVICES,
                # Every replica, not the Service's address: each serves its own counters.
                "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [naming.SERVICES_NAMESPACE]}}],
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                        "regex": naming.SERVICE_METRICS_PORT_NAME,
                        "action": "keep",
                    },
                    {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
                    {"source_labels": [_pod_label_meta(naming.SERVICE_LABEL)], "target_label": "service"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                ],
                "metric_relabel_configs": _keep(*TRITON_METRICS),
            }
        )
    return {
        "global": {
            "scrape_interval": f"{GLOBAL_SCRAPE_INTERVAL_SECONDS}s",
            "scrape_timeout": f"{naming.SCRAPE_TIMEOUT_SECONDS}s",
        },
        "scrape_configs": jobs,
    }


def _pod_label_meta(label: str) -> str:
    """Prometheus' meta label for a pod label: every character that is not [a-zA-Z0-9_] becomes _."""
    return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() or c == "_" else "_" for c in label)


def _meta(name: str, namespace: str | None = naming.OBSERVABILITY_NAMESPACE, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(LABELS), **extra}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def rbac_objects(args: CollectorArgs) -> list[dict[str, Any]]:
    """GET /metrics on Kueue (a non-resource URL, so cluster-wide), and listing the services' pods to find replicas."""
    subject = [{"kind": "ServiceAccount", "name": naming.COLLECTOR_NAME, "namespace": naming.OBSERVABILITY_NAMESPACE}]
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(naming.COLLECTOR_NAME, None),
            "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta(naming.COLLECTOR_NAME, None),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": naming.COLLECTOR_NAME},
            "subjects": subject,
        },
    ]
    if args.service_metrics_ports:
        objects += [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": _meta(naming.COLLECTOR_NAME, naming.SERVICES_NAMESPACE),
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": _meta(naming.COLLECTOR_NAME, naming.SERVICES_NAMESPACE),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": naming.COLLECTOR_NAME},
                "subjects": subject,
            },
        ]
    return objects


def _to_pods(namespace: str, pod_labels: Mapping[str, str], ports: Sequence[int]) -> dict[str, Any]:
    peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "podSelector": {"matchLabels": dict(pod_labels)},
    }
    return {"to": [peer], "ports": [{"port": port, "protocol": "TCP"} for port in sorted(set(ports))]}


def network_policies(args: CollectorArgs) -> list[dict[str, Any]]:
    """Default deny both ways; then DNS, HTTPS out (CloudWatch Logs, STS, the API server) and exactly its targets."""
    targets = [_to_pods(naming.KUEUE_NAMESPACE, naming.KUEUE_POD_LABELS, [naming.KUEUE_METRICS_PORT])]
    if args.scrape_pushgateway:
        targets.append(_to_pods(naming.METRICS_NAMESPACE, PUSHGATEWAY_POD_LABELS, [naming.PUSHGATEWAY_PORT]))
    if args.service_metrics_ports:
        # Pods of any service on the union of their metrics ports: a NetworkPolicy port cannot be tied to one pod.
        targets.append(_to_pods(naming.SERVICES_NAMESPACE, {}, list(args.service_metrics_ports.values())))
    return [
        *guard_policies(naming.OBSERVABILITY_NAMESPACE, dict(LABELS)),
        network_policy(
            naming.OBSERVABILITY_NAMESPACE,
            "allow-scrape-egress",
            {"podSelector": {}, "policyTypes": ["Egress"], "egress": targets},
            dict(LABELS),
        ),
    ]


def config_map(args: CollectorArgs) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(naming.COLLECTOR_NAME),
        "data": {
            "cwagentconfig.json": _json(agent_config(args)),
            "prometheus.yaml": yaml.safe_dump(prometheus_config(args), sort_keys=False),
        },
    }


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


def deployment(args: CollectorArgs, config_digest: str) -> dict[str, Any]:
    """One replica on the system nodes: two would scrape everything twice and double every counter's delta."""
    scratch = {"etc": f"{AGENT_DIR}/etc", "logs": f"{AGENT_DIR}/logs", "var": f"{AGENT_DIR}/var", "tmp": "/tmp"}
    container = {
        "name": "cloudwatch-agent",
        "image": versions.CLOUDWATCH_AGENT_IMAGE,
        "env": [
            {"name": "AWS_REGION", "value": args.region},
            {"name": "RUN_IN_CONTAINER", "value": "True"},
            # The agent picks its credentials by a mode it detects at start (translator/util/sdkutil.go DetectAgentMode):
            # without this, and with the instance metadata service out of reach (hop limit 1, and this pod's
            # NetworkPolicy), it takes itself for an on-premises host and reads a profile from ~/.aws/credentials that
            # does not exist, so nothing is published. With it, the agent uses the IRSA web identity token.
            {"name": "RUN_WITH_IRSA", "value": "True"},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}, "limits": {"memory": "400Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [
            {"name": "agent-config", "mountPath": AGENT_CONFIG_DIR, "readOnly": True},
            {"name": "prometheus-config", "mountPath": PROMETHEUS_CONFIG_DIR, "readOnly": True},
            # The agent writes its translated configuration, its log and its pid file under its install directory.
            *({"name": name, "mountPath": path} for name, path in scratch.items()),
        ],
    }
    pod = {
        "serviceAccountName": naming.COLLECTOR_NAME,
        # Its token authenticates it to Kueue's metrics endpoint and to the API server for pod discovery.
        "automountServiceAccountToken": True,
        "nodeSelector": {naming.NODE_POOL_LABEL: "system"},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": COLLECTOR_UID,
            "runAsGroup": COLLECTOR_UID,
            "fsGroup": COLLECTOR_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {
                "name": "agent-config",
                "configMap": {
                    "name": naming.COLLECTOR_NAME,
                    "items": [{"key": "cwagentconfig.json", "path": "cwagentconfig.json"}],
                },
            },
            {
                "name": "prometheus-config",
                "configMap": {"name": naming.COLLECTOR_NAME, "items": [{"key": "prometheus.yaml", "path": "prometheus.yaml"}]},
            },
            *({"name": name, "emptyDir": {"sizeLimit": "64Mi"}} for name in scratch),
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(naming.COLLECTOR_NAME),
        "spec": {
            "replicas": 1,
            # Never two at once: a surge would scrape (and publish) everything twice for a while.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": dict(naming.COLLECTOR_POD_LABELS)},
            "template": {
                # A changed configuration rolls the pod: the agent reads its files once, at start.
                "metadata": {
                    "labels": dict(naming.COLLECTOR_POD_LABELS),
                    "annotations": {"simfleet.io/config-sha256": config_digest},
                },
                "spec": pod,
            },
        },
    }


def namespace_object(kubernetes_version: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": naming.OBSERVABILITY_NAMESPACE, "labels": {**LABELS, **pod_security_labels(kubernetes_version)}},
    }


def service_account(role_arn: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(naming.COLLECTOR_NAME, annotations={IRSA_ANNOTATION: role_arn}),
    }


def collector_objects(args: CollectorArgs) -> list[dict[str, Any]]:
    """Every object of the collector in apply order: namespace and guards first, the Deployment last."""
    config = config_map(args)
    digest = hashlib.sha256(_json(config["data"]).encode()).hexdigest()
    return [
        namespace_object(args.kubernetes_version),
        *network_policies(args),
        service_account(args.role_arn),
        *rbac_objects(args),
        config,
        deployment(args, digest),
    ]
