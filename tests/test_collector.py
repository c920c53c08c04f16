"""The collector: its agent configuration against the agent's schema, what it scrapes and how often, which samples
become metrics (checked against each source's documented metrics), and the objects it runs with."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from netpol import Endpoint, allows

import naming
import versions
from components.collector import (
    JOB_KUEUE,
    JOB_PUSHGATEWAY,
    JOB_SERVICES,
    KUEUE_METRICS,
    PROMETHEUS_NAMESPACE,
    RUN_METRICS,
    TRITON_METRICS,
    CollectorArgs,
    agent_config,
    collector_objects,
    metric_declarations,
    prometheus_config,
    rbac_objects,
)
from policies.rules.pods import restricted_pod_problems

ARGS = CollectorArgs(
    "simfleet-dev", "us-east-1", "1.35", "arn:aws:iam::123456789012:role/collector", True, {"radstream-triton": 8002}
)
BARE = CollectorArgs("simfleet-prod", "us-east-1", "1.35", "arn:aws:iam::123456789012:role/collector", False, {})

# The parts of the CloudWatch agent's configuration schema the collector uses, restated from the agent at the pinned
# build (aws/amazon-cloudwatch-agent tag v1.300070.0, translator/config/schema.json: logsDefinition.metrics_collected
# .prometheus and definitions.emfProcessorDefinition, read 2026-12-07). Both objects are closed there too.
_DECLARATION = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "source_labels": {"type": "array", "items": {"type": "string"}},
        "label_matcher": {"type": "string"},
        "label_separator": {"type": "string"},
        "metric_selectors": {"type": "array", "items": {"type": "string"}},
        "dimensions": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
    },
}
AGENT_SCHEMA = {
    "type": "object",
    "required": ["agent", "logs"],
    "properties": {
        "agent": {"type": "object", "properties": {"region": {"type": "string"}}},
        "logs": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "force_flush_interval": {"type": "integer"},
                "metrics_collected": {
                    "type": "object",
                    "properties": {
                        "prometheus": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "cluster_name": {"type": "string"},
                                "log_group_name": {"type": "string"},
                                "prometheus_config_path": {"type": "string"},
                                "disable_metric_extraction": {"type": "boolean"},
                                "emf_processor": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "metric_declaration_dedup": {"type": "boolean"},
                                        "metric_namespace": {"type": "string"},
                                        "metric_unit": {"type": "object"},
                                        "metric_declaration": {"type": "array", "items": _DECLARATION},
                                    },
                                },
                            },
                        }
                    },
                },
            },
        },
    },
}

# What each source exposes, from its documentation, with the labels each sample carries.
# Kueue: kubernetes-sigs/kueue site/content/en/docs/reference/metrics.md ("ClusterQueue status"), and the v0.16 release
# notes for kueue_finished_workloads_total (#8694). Triton: triton-inference-server/server docs/user_guide/metrics.md and
# core src/metrics.cc (the nv_inference_* families, counters labelled model and version). The Pushgateway:
# prometheus/pushgateway README.md: pushed samples keep their grouping labels; pushgateway_build_info is its own.
DOCUMENTED = {
    "kueue_pending_workloads": ("gauge", {"cluster_queue", "status"}),
    "kueue_admitted_active_workloads": ("gauge", {"cluster_queue"}),
    "kueue_admitted_workloads_total": ("counter", {"cluster_queue", "priority_class"}),
    "kueue_evicted_workloads_total": ("counter", {"cluster_queue", "reason", "underlying_cause", "priority_class"}),
    "kueue_finished_workloads_total": ("counter", {"cluster_queue", "priority_class", "replica_role"}),
    **{name: ("counter", {"model", "version"}) for name in TRITON_METRICS},
    "pushgateway_build_info": ("gauge", {"version", "revision", "branch", "goversion"}),
    # simfleet's own contract for runs (components/collector.py RUN_METRICS): gauges, grouped job/run/seed.
    **{name: ("gauge", {"run", "seed"}) for name in RUN_METRICS},
}
# Labels the scrape adds: `job` (its name, or the pusher's with honor_labels), `service` and `pod` (services job).
ADDED_BY_SCRAPE = {JOB_SERVICES: {"service", "pod"}}


def test_agent_config_is_valid_for_the_pinned_agent() -> None:
    for args in (ARGS, BARE):
        jsonschema.Draft7Validator(AGENT_SCHEMA).validate(agent_config(args))
    prometheus = agent_config(ARGS)["logs"]["metrics_collected"]["prometheus"]
    assert prometheus["log_group_name"] == naming.container_insights_log_group("simfleet-dev", "prometheus")
    assert prometheus["emf_processor"]["metric_namespace"] == PROMETHEUS_NAMESPACE == "ContainerInsights/Prometheus"
    assert agent_config(ARGS)["agent"] == {"region": "us-east-1"}  # pods cannot reach IMDS to discover it
    assert versions.CLOUDWATCH_AGENT_IMAGE.endswith(":1.300070.0b1586")


def test_scrape_jobs_and_intervals() -> None:
    config = prometheus_config(ARGS)
    assert config["global"] == {"scrape_interval": "60s", "scrape_timeout": "10s"}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {JOB_PUSHGATEWAY, JOB_KUEUE, JOB_SERVICES}
    push = jobs[JOB_PUSHGATEWAY]
    assert push["honor_labels"] is True and push["scrape_interval"] == "30s"
    assert push["static_configs"] == [{"targets": ["prometheus-pushgateway.simfleet-metrics.svc:9091"]}]
    kueue = jobs[JOB_KUEUE]
    assert kueue["scheme"] == "https" and kueue["bearer_token_file"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert kueue["static_configs"] == [{"targets": ["kueue-controller-manager-metrics-service.kueue-system.svc:8443"]}]
    services = jobs[JOB_SERVICES]
    assert services["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": [naming.SERVICES_NAMESPACE]}}]
    keep = services["relabel_configs"][0]
    assert keep == {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics", "action": "keep"}
    assert {"source_labels": ["__meta_kubernetes_pod_label_simfleet_io_service"], "target_label": "service"} in services[
        "relabel_configs"
    ]
    # Without the Pushgateway or services, their jobs are gone and Kueue is still scraped.
    assert [job["job_name"] for job in prometheus_config(BARE)["scrape_configs"]] == [JOB_KUEUE]


def test_the_linger_a_finished_seed_needs_is_measured_against_the_scrape_interval() -> None:
    push = next(j for j in prometheus_config(ARGS)["scrape_configs"] if j["job_name"] == JOB_PUSHGATEWAY)
    interval = int(push["scrape_interval"].rstrip("s"))
    timeout = int(prometheus_config(ARGS)["global"]["scrape_timeout"].rstrip("s"))
    # A group deleted after this long has been visible for a whole interval plus one scrape's time.
    assert naming.pushgateway_linger_seconds() == interval + timeout == 40


def _selected(declaration: dict[str, Any], name: str) -> bool:
    return any(re.fullmatch(selector, name) for selector in declaration["metric_selectors"])


def test_every_declared_metric_is_a_documented_metric_with_those_labels() -> None:
    declared = metric_declarations(ARGS)
    for declaration in declared:
        if declaration["metric_selectors"] == [".*"]:
            continue  # jobs: what their program pushes, per job (checked below)
        job = re.fullmatch(r"\^(.+)\$", declaration["label_matcher"]).group(1)  # type: ignore[union-attr]
        names = [n for n in DOCUMENTED if _selected(declaration, n)]
        assert len(names) == len(declaration["metric_selectors"]), (declaration, names)
        for name in names:
            kind, labels = DOCUMENTED[name]
            available = labels | ADDED_BY_SCRAPE.get(job, set()) | {"ClusterName"}
            for dimensions in declaration["dimensions"]:
                assert set(dimensions) <= available, (name, dimensions)
            # Counters arrive as differences between two scrapes: only what is scraped again (Kueue, the services)
            # may be a counter; what runs push must be gauges.
            assert kind == "gauge" or job in (JOB_KUEUE, JOB_SERVICES), name
    jobs = next(d for d in declared if d["metric_selectors"] == [".*"])
    assert jobs["source_labels"] == ["shard"] and jobs["dimensions"] == [["ClusterName", "job"]]


def test_what_the_collector_keeps_is_what_it_declares() -> None:
    jobs = {job["job_name"]: job for job in prometheus_config(ARGS)["scrape_configs"]}
    assert jobs[JOB_KUEUE]["metric_relabel_configs"][0]["regex"].split("|") == list(KUEUE_METRICS)
    assert jobs[JOB_SERVICES]["metric_relabel_configs"][0]["regex"].split("|") == list(TRITON_METRICS)
    for name in (*KUEUE_METRICS, *TRITON_METRICS, *RUN_METRICS, "pushgateway_build_info"):
        assert any(_selected(d, name) for d in metric_declarations(ARGS)), name
    assert all(not name.endswith("_total") for name in RUN_METRICS)


def test_objects_validate_and_run_at_the_restricted_level() -> None:
    objects = collector_objects(ARGS)
    for body in objects:
        kubernetes_validate.validate(body, "1.35", strict=True)
    namespace = objects[0]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert restricted_pod_problems(pod) == []
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["nodeSelector"] == {naming.NODE_POOL_LABEL: "system"}
    assert pod["containers"][0]["image"] == versions.CLOUDWATCH_AGENT_IMAGE
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert {"/etc/cwagentconfig", "/etc/prometheusconfig", "/opt/aws/amazon-cloudwatch-agent/etc"} <= mounts
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    assert json.loads(config["data"]["cwagentconfig.json"]) == agent_config(ARGS)
    assert yaml.safe_load(config["data"]["prometheus.yaml"]) == prometheus_config(ARGS)


def test_a_changed_configuration_rolls_the_pod() -> None:
    def digest(args: CollectorArgs) -> str:
        deployment = next(o for o in collector_objects(args) if o["kind"] == "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["simfleet.io/config-sha256"]

    assert digest(ARGS) == digest(ARGS) != digest(BARE)


def test_rbac_is_metrics_get_and_pod_discovery_only() -> None:
    objects = {(o["kind"], o["metadata"].get("namespace")): o for o in rbac_objects(ARGS)}
    assert objects[("ClusterRole", None)]["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    role = objects[("Role", naming.SERVICES_NAMESPACE)]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        binding = next(o for o in rbac_objects(ARGS) if o["kind"] == kind)
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": naming.COLLECTOR_NAME, "namespace": naming.OBSERVABILITY_NAMESPACE}
        ]
    assert {o["kind"] for o in rbac_objects(BARE)} == {"ClusterRole", "ClusterRoleBinding"}


@pytest.mark.parametrize("args", [ARGS, BARE])
def test_egress_goes_to_exactly_the_scraped_targets(args: CollectorArgs) -> None:
    scrape = next(
        o for o in collector_objects(args) if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "allow-scrape-egress"
    )
    targets = {
        (
            rule["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            tuple(p["port"] for p in rule["ports"]),
        )
        for rule in scrape["spec"]["egress"]
    }
    expected = {(naming.KUEUE_NAMESPACE, (8443,))}
    if args.scrape_pushgateway:
        expected.add((naming.METRICS_NAMESPACE, (9091,)))
    if args.service_metrics_ports:
        expected.add((naming.SERVICES_NAMESPACE, (8002,)))
    assert targets == expected


def agent_mode(env: dict[str, str], metadata_reachable: bool) -> str:
    """The mode the agent runs in, as its start-up decides it at the pinned build (aws/amazon-cloudwatch-agent
    v1.300070.0, translator/util/sdkutil.go DetectAgentMode): RUN_IN_AWS, then RUN_WITH_IRSA (both compared with the
    exact string "True", cfg/envconfig TrueValue), then an EC2 region from the instance metadata service; otherwise
    onPremise, whose credentials are the profile AmazonCloudWatchAgent of a shared credentials file
    (GetCredentials, DEFAULT_PROFILE), which the agent then uses instead of any web identity token."""
    if env.get("RUN_IN_AWS") == "True":
        return "ec2"
    if env.get("RUN_WITH_IRSA") == "True":
        return "withIRSA"
    return "ec2" if metadata_reachable else "onPremise"


def test_the_agent_uses_its_irsa_role_where_the_metadata_service_is_out_of_reach() -> None:
    objects = collector_objects(ARGS)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    collector = Endpoint(naming.OBSERVABILITY_NAMESPACE, naming.COLLECTOR_POD_LABELS)
    # The node's credentials are never the collector's: its egress excludes the metadata service.
    metadata_reachable = allows(policies, collector, Endpoint(None, ip="169.254.169.254"), 80)
    assert not metadata_reachable
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert agent_mode(env, metadata_reachable) == "withIRSA"
    # The role it then assumes is the one the ServiceAccount names.
    account = next(o for o in objects if o["kind"] == "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ARGS.role_arn
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
