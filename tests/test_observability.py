"""Observability: the amazon-cloudwatch-observability add-on (pin, IRSA, GPU toleration, configuration against its
documented schema), its log groups, the collector's role, and the spot-interruption record."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import jsonschema
import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml
from test_access import allowed, assert_least_privilege
from test_plan import planned

import naming
import versions
from catalog import load_catalog
from components.irsa import trust_policy
from components.observability import (
    ADDON,
    SPOT_INTERRUPTION_PATTERN,
    Observability,
    ObservabilityArgs,
    addon_configuration,
    collector_policy,
    events_log_policy,
)
from config import ObservabilityConfig
from config.sources import load_yaml
from tools.plan import PROJECT_ROOT, PlanResult, kubernetes_objects, run_program

OIDC_ARN = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC"
OIDC_URL = "https://oidc.eks.us-east-1.amazonaws.com/id/ABC"
ADDON_TYPE = "aws:eks/addon:Addon"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"

# The add-on's configuration schema, as `aws eks describe-addon-configuration --addon-name amazon-cloudwatch-observability`
# returns it. Source: the excerpt of the v6.6.0-eksbuild.1 schema published in awslabs/global-capacity-orchestrator-on-aws
# (tests, `_ADDON_SCHEMA_EXCERPT`, read 2026-12-07): the top level, containerLogs and manager (down to
# applicationSignals.autoMonitor) are closed (additionalProperties false) and list the keys below; sections it leaves
# open ({}) are filled in from the chart the pinned build is made of (aws-observability/helm-charts tag
# amazon-cloudwatch-observability-6.4.0, values.yaml; the add-on takes the chart's configuration values, CloudWatch
# user guide "Configuring the add-on and the Helm chart"), with the booleans its templates require
# (_helpers.tpl cloudwatch-agent.validate-flags). Every key simfleet sets exists in both.
_OPEN: dict[str, Any] = {}
_BOOL = {"type": "boolean"}
_WORKLOADS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        k: {"type": "array", "items": {"type": "string"}} for k in ("daemonsets", "deployments", "namespaces", "statefulsets")
    },
}
ADDON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2019-09/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **{key: _OPEN for key in ("admissionWebhooks", "agent", "agents", "dcgmExporter", "kubeStateMetrics", "nodeExporter")},
        "tolerations": {"type": "array", "items": {"type": "object"}},
        "containerLogs": {"type": "object", "additionalProperties": False, "properties": {"enabled": _BOOL, "fluentBit": _OPEN}},
        "containerInsights": {"type": "object", "properties": {"enabled": _BOOL, "targetAgent": {"type": "string"}}},
        "applicationSignals": {"type": "object", "properties": {"enabled": _BOOL, "targetAgent": {"type": "string"}}},
        "otelContainerInsights": {"type": "object", "properties": {"enabled": _BOOL, "logs": {"type": "object", "properties": {"enabled": _BOOL}}}},
        "neuronMonitor": {"type": "object", "properties": {"enabled": _BOOL}},
        "manager": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                **{key: _OPEN for key in ("affinity", "autoAnnotateAutoInstrumentation", "autoInstrumentationConfiguration", "resources", "tolerations")},
                "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
                "applicationSignals": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "autoMonitor": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "customSelector": _OPEN,
                                "languages": {"type": "array", "items": {"type": "string"}},
                                "monitorAllServices": _BOOL,
                                "restartPods": _BOOL,
                                "exclude": {"type": "object", "additionalProperties": False, "properties": {k: _WORKLOADS for k in ("dotnet", "java", "nodejs", "python")}},
                            },
                        }
                    },
                },
            },
        },
    },
}  # fmt: skip


def test_addon_configuration_is_valid_against_its_documented_schema() -> None:
    jsonschema.Draft201909Validator.check_schema(ADDON_SCHEMA)
    jsonschema.Draft201909Validator(ADDON_SCHEMA).validate(addon_configuration())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.update(containerLog={"enabled": True}),  # a misspelled section
        lambda c: c["manager"].update(nodeSelectors={}),  # a misspelled manager key
        lambda c: c["containerInsights"].update(enabled="true"),  # the chart fails on a non-boolean flag
    ],
)
def test_the_schema_catches_what_eks_would_refuse(mutate) -> None:
    config = addon_configuration()
    mutate(config)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft201909Validator(ADDON_SCHEMA).validate(config)


def test_configuration_says_what_simfleet_needs() -> None:
    config = addon_configuration()
    # The GPU nodes' taint is tolerated, so the agent, Fluent Bit and the DCGM exporter run on GPU nodes.
    assert {"key": naming.GPU_TAINT_KEY, "operator": "Exists", "effect": naming.GPU_TAINT_EFFECT} in config["tolerations"]
    assert config["containerLogs"] == {"enabled": True} and config["containerInsights"] == {"enabled": True}
    # No instrumentation injected into any pod (run pods included), and no preview OTel pipeline.
    assert config["applicationSignals"] == {"enabled": False}
    assert config["manager"]["applicationSignals"]["autoMonitor"]["monitorAllServices"] is False
    assert config["otelContainerInsights"] == {"enabled": False}
    assert config["manager"]["nodeSelector"] == {naming.NODE_POOL_LABEL: "system"}


@pytest.mark.parametrize("minor", sorted(versions.EKS_ADDON_PINS))
def test_addon_is_pinned_for_every_minor_with_its_source(minor: str) -> None:
    assert ADDON in versions.PINNED_ADDONS  # so versions.missing_pins() refuses a minor without a build
    pin = versions.EKS_ADDON_PINS[minor][ADDON]
    assert pin.version == "v6.4.0-eksbuild.1" and pin.confirmed
    assert minor in pin.source and pin.checked == datetime.date(2026, 12, 7)


def test_missing_pins_names_the_addon() -> None:
    saved = versions.EKS_ADDON_PINS["1.35"].pop(ADDON)
    try:
        assert f"a {ADDON} add-on build for 1.35 (EKS_ADDON_PINS)" in versions.missing_pins("1.35")
    finally:
        versions.EKS_ADDON_PINS["1.35"][ADDON] = saved


def test_collector_writes_only_its_log_group() -> None:
    policy = collector_policy("aws", "us-east-1", "123456789012", "simfleet-dev")
    assert_least_privilege(policy)
    group = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/containerinsights/simfleet-dev/prometheus"
    assert allowed(policy, "logs:PutLogEvents", f"{group}:log-stream:kueue")
    assert not allowed(
        policy,
        "logs:PutLogEvents",
        "arn:aws:logs:us-east-1:123456789012:log-group:/aws/containerinsights/simfleet-dev/application:*",
    )
    assert not allowed(policy, "logs:CreateLogGroup", group)
    assert not allowed(policy, "cloudwatch:PutMetricData", "*")  # its metrics come from the log events (EMF)
    gov = collector_policy("aws-us-gov", "us-gov-west-1", "123456789012", "c")
    assert all(r.startswith("arn:aws-us-gov:logs:us-gov-west-1:") for r in gov["Statement"][0]["Resource"])


def test_events_may_write_only_the_interruption_group() -> None:
    arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/events/simfleet-dev/spot-interruptions"
    [statement] = events_log_policy(arn)["Statement"]
    assert statement["Principal"] == {"Service": ["events.amazonaws.com", "delivery.logs.amazonaws.com"]}
    assert statement["Resource"] == f"{arn}:*"
    assert SPOT_INTERRUPTION_PATTERN == {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]}


@pytest.fixture
def rec(pulumi_mocks):
    def build() -> None:
        cluster = pulumi.ComponentResource("simfleet:cluster:Cluster", "cluster")
        addons = pulumi.ComponentResource("simfleet:addons:Addons", "addons")
        pulumi.CustomResource("test:index:Release", "kueue", opts=pulumi.ResourceOptions(parent=addons))
        provider = k8s.Provider("k8s", kubeconfig="{}")
        args = ObservabilityArgs(
            "simfleet-dev",
            "us-east-1",
            "1.35",
            ObservabilityConfig(log_retention_days=14),
            OIDC_ARN,
            OIDC_URL,
            {"simfleet:stack": "dev"},
            cluster,
            scrape_pushgateway=True,
            service_metrics_ports={"radstream-triton": 8002},
            services_namespace=naming.SERVICES_NAMESPACE,
        )
        Observability("observability", args, opts=pulumi.ResourceOptions(providers=[provider], depends_on=[addons]))

    return pulumi_mocks(build)


def test_addon_is_pinned_configured_and_uses_irsa(rec) -> None:
    addon = rec.one(ADDON_TYPE).inputs
    assert (addon["addonName"], addon["addonVersion"]) == (ADDON, versions.addon_version("1.35", ADDON))
    assert json.loads(addon["configurationValues"]) == addon_configuration()
    assert addon["resolveConflictsOnCreate"] == addon["resolveConflictsOnUpdate"] == "OVERWRITE"
    roles = {r.name: r for r in rec.of_type("aws:iam/role:Role")}
    agent = roles["observability-agent-role"]
    assert addon["serviceAccountRoleArn"].startswith(f"arn:aws:iam::123456789012:role/{agent.name}")
    # The role only the add-on's agent and Fluent Bit service account can assume, with the documented managed policy.
    assert json.loads(agent.inputs["assumeRolePolicy"]) == trust_policy(OIDC_ARN, OIDC_URL, *naming.CLOUDWATCH_AGENT_SA)
    attached = [r.inputs["policyArn"] for r in rec.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")]
    assert attached == ["arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"]
    collector = roles["observability-collector-role"]
    assert json.loads(collector.inputs["assumeRolePolicy"]) == trust_policy(
        OIDC_ARN, OIDC_URL, naming.OBSERVABILITY_NAMESPACE, naming.COLLECTOR_NAME
    )


def test_log_groups_exist_first_with_the_configured_retention(rec) -> None:
    groups = {r.inputs["name"]: r for r in rec.of_type(LOG_GROUP)}
    expected = {naming.container_insights_log_group("simfleet-dev", k) for k in naming.CONTAINER_INSIGHTS_LOG_KINDS}
    assert set(groups) == expected | {naming.spot_interruption_log_group("simfleet-dev")}
    assert naming.container_log_group("simfleet-dev") == "/aws/containerinsights/simfleet-dev/application"
    assert all(g.inputs["retentionInDays"] == 14 for g in groups.values())
    # The add-on waits for its groups: created by Fluent Bit or the agent first, they would never expire.
    depends = set(rec.one(ADDON_TYPE).options["dependsOn"])
    assert {groups[name].urn for name in expected} <= depends
    assert rec.one("test:index:Release", "kueue").urn in depends


def test_collector_objects_are_guarded_and_go_with_the_cluster(rec) -> None:
    cluster = rec.one("simfleet:cluster:Cluster").urn
    deployment = rec.one("kubernetes:apps/v1:Deployment")
    policies = rec.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    assert {p.inputs["metadata"]["name"] for p in policies} == {
        "default-deny",
        "allow-dns",
        "allow-https-egress",
        "allow-scrape-egress",
    }
    needs = set(deployment.options["dependsOn"])
    assert {p.urn for p in policies} <= needs
    assert rec.one(LOG_GROUP, "observability-prometheus").urn in needs
    for r in rec.all:
        if r.type.startswith("kubernetes:"):
            assert r.options.get("deletedWith") == cluster and r.options.get("provider") == "k8s", r.urn
    account = rec.one("kubernetes:core/v1:ServiceAccount").inputs
    assert ":role/observability-collector-role" in account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]


def test_spot_interruptions_are_recorded(rec) -> None:
    rule = rec.one("aws:cloudwatch/eventRule:EventRule").inputs
    assert json.loads(rule["eventPattern"]) == SPOT_INTERRUPTION_PATTERN
    target = rec.one("aws:cloudwatch/eventTarget:EventTarget")
    group = rec.one(LOG_GROUP, "observability-spot-interruptions")
    assert target.inputs["arn"].endswith(naming.spot_interruption_log_group("simfleet-dev"))
    assert rec.one("aws:cloudwatch/logResourcePolicy:LogResourcePolicy").urn in target.options["dependsOn"]
    assert group.inputs["name"].startswith("/aws/events/")  # EventBridge writes only to /aws/events/ groups


def test_args_refuse_a_minor_without_a_pin() -> None:
    with pytest.raises(ValueError, match=r"pins no amazon-cloudwatch-observability build for Kubernetes 1\.30"):
        ObservabilityArgs("c", "r", "1.30", ObservabilityConfig(), "a", "u", {}, object(), False)  # type: ignore[arg-type]


def _job_env(result: PlanResult, container_name: str) -> dict[str, str]:
    [job] = [
        body
        for _, body in kubernetes_objects(result.registrations)
        if body["kind"] == "Job" and body["metadata"]["name"] == "robocache-resample"
    ]
    [found] = [c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == container_name]
    return {e["name"]: e.get("value") for e in found.get("env", [])}


def test_a_job_keeps_its_pushed_group_one_scrape_interval_and_timeout() -> None:
    """The collector scrapes the Pushgateway every 30 s, a scrape may take 10 s: a group deleted sooner than 40 s after
    the last push may never be scraped (naming.pushgateway_linger_seconds)."""
    result = planned("dev")
    assert _job_env(result, "work")["SIMFLEET_PUSHGATEWAY_URL"] == "http://prometheus-pushgateway.simfleet-metrics.svc:9091"
    linger = int(_job_env(result, "output-uploader")["SIMFLEET_METRICS_LINGER_SECONDS"])
    assert linger == naming.PUSHGATEWAY_SCRAPE_INTERVAL_SECONDS + naming.SCRAPE_TIMEOUT_SECONDS == 40


def test_without_the_collector_no_job_pushes_or_waits_for_a_scrape(tmp_path: Path) -> None:
    document = load_yaml((PROJECT_ROOT / "Pulumi.dev.yaml").read_text())
    document["config"]["simfleet:platform"]["observability"] = {"enabled": False}
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(document))
    result = run_program(path, "dev")
    # The Pushgateway is installed (platform.metrics), but its NetworkPolicy admits no scraper: nothing collects.
    assert not any(r.type == ADDON_TYPE and r.inputs["addonName"] == ADDON for r in result.registrations)
    for name in ("work", "output-uploader"):
        assert "SIMFLEET_PUSHGATEWAY_URL" not in _job_env(result, name), name
    assert any("nothing scrapes the Pushgateway" in w and "platform.metrics.enabled" in w for w in result.warnings)


# The instance types the add-on's DCGM exporter is scheduled on: its node affinity in the chart the pinned build is made
# of (aws-observability/helm-charts tag amazon-cloudwatch-observability-6.4.0, values.yaml dcgmExporter.affinity,
# node.kubernetes.io/instance-type In [...]; the SageMaker ml.* names left out; read 2026-12-07). It selects by
# instance type, not by a node label, so the NVIDIA device plugin's labels play no part.
DCGM_INSTANCE_TYPES = frozenset(
    [
        "g3.4xlarge",
        "g3.8xlarge",
        "g3.16xlarge",
        "g3s.xlarge",
        "g4ad.2xlarge",
        "g4ad.4xlarge",
        "g4ad.8xlarge",
        "g4ad.16xlarge",
        "g4ad.xlarge",
        "g4dn.2xlarge",
        "g4dn.4xlarge",
        "g4dn.8xlarge",
        "g4dn.12xlarge",
        "g4dn.16xlarge",
        "g4dn.metal",
        "g4dn.xlarge",
        "g5.2xlarge",
        "g5.4xlarge",
        "g5.8xlarge",
        "g5.12xlarge",
        "g5.16xlarge",
        "g5.24xlarge",
        "g5.48xlarge",
        "g5.xlarge",
        "g5g.2xlarge",
        "g5g.4xlarge",
        "g5g.8xlarge",
        "g5g.16xlarge",
        "g5g.metal",
        "g5g.xlarge",
        "g6.2xlarge",
        "g6.4xlarge",
        "g6.8xlarge",
        "g6.12xlarge",
        "g6.16xlarge",
        "g6.24xlarge",
        "g6.48xlarge",
        "g6.xlarge",
        "g6e.2xlarge",
        "g6e.4xlarge",
        "g6e.8xlarge",
        "g6e.12xlarge",
        "g6e.16xlarge",
        "g6e.24xlarge",
        "g6e.48xlarge",
        "g6e.xlarge",
        "gr6.4xlarge",
        "gr6.8xlarge",
        "p2.8xlarge",
        "p2.16xlarge",
        "p2.xlarge",
        "p3.2xlarge",
        "p3.8xlarge",
        "p3.16xlarge",
        "p3dn.24xlarge",
        "p4d.24xlarge",
        "p4de.24xlarge",
        "p5.48xlarge",
        "p5e.48xlarge",
        "p5en.48xlarge",
        "p6-b200.48xlarge",
        "p6-b300.48xlarge",
        "p6e-gb200.36xlarge",
    ]
)


def test_every_gpu_type_a_stack_may_use_gets_the_dcgm_exporter() -> None:
    """GPU metrics exist only where the DCGM exporter runs: a GPU type added to the catalog (the only types a GPU node
    group may use) but missing from the exporter's list would show no GPU utilisation at all."""
    gpu_types = {name for name, shape in load_catalog().instances.items() if shape.gpus}
    assert gpu_types and gpu_types <= DCGM_INSTANCE_TYPES, sorted(gpu_types - DCGM_INSTANCE_TYPES)
