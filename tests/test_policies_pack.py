"""The rule set as a whole, the pulumi_policy adapters, the pack over gRPC, and the rules on the real dev and prod plans."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pulumi
import pytest
import yaml
from policy_edits import (
    CAPACITY,
    drop,
    edit,
    edit_objects,
    job_pod,
    job_spec,
    rule,
    set_path,
)
from policy_stack import compliant, context, urn
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from config.sources import load_yaml
from policies import pack
from policies.rules import RULES, Context, Resource, evaluate, helper_images, stack_from_urn

# ---------------------------------------------------------------------------------------------
# Every rule passes on the compliant stacks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_compliant_stack_has_no_violations(stack: str) -> None:
    resources = compliant(stack)
    found = evaluate(resources, context(stack))
    assert found == [], [v.as_json() for v in found]


def test_every_rule_has_metadata() -> None:
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))
    for r in RULES:
        assert r.description and r.level in ("mandatory", "advisory") and r.severity in ("low", "medium", "high", "critical")
    advisory = {r.name for r in RULES if r.level == "advisory"}
    assert advisory == {"eks-version-support-ending", "run-gpu-capacity"}


# ---------------------------------------------------------------------------------------------
# The pulumi_policy adapters
# ---------------------------------------------------------------------------------------------


def options(parent: str | None = None) -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], parent)


def collect() -> tuple[list[tuple[str, str | None]], Callable[[str, str | None], None]]:
    reported: list[tuple[str, str | None]] = []
    return reported, lambda message, urn=None: reported.append((message, urn))


def policy_resources(resources: list[Resource]) -> list[PolicyResource]:
    by_urn: dict[str, PolicyResource] = {}
    for r in resources:
        by_urn[r.urn] = PolicyResource(
            r.resource_type, unknown_checking_proxy(dict(r.props)), r.urn, r.name, options(), None, None, [], {}
        )
    for r in resources:
        by_urn[r.urn].property_dependencies = {
            k: [by_urn[u] for u in v if u in by_urn] for k, v in r.property_dependencies.items()
        }
    return list(by_urn.values())


def test_pack_policies_mirror_the_rules() -> None:
    policies = pack.policies(lambda u: context(stack_from_urn(u)))
    assert [p.name for p in policies] == [r.name for r in RULES]
    for policy, r in zip(policies, RULES, strict=True):
        assert policy.enforcement_level == EnforcementLevel(r.level)
        assert policy.severity == Severity(r.severity)
        assert isinstance(policy, ResourceValidationPolicy if r.resource_check else StackValidationPolicy)


def test_resource_policy_reports_through_validation_args() -> None:
    policy = pack.to_policy(rule("eks-endpoint-access"), lambda u: context(stack_from_urn(u)))
    assert isinstance(policy, ResourceValidationPolicy)
    props = {"version": "1.35", "endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/0"]}
    args = ResourceValidationArgs(
        "eks:index:Cluster", unknown_checking_proxy(props), urn("prod", "eks:index:Cluster", "c"), "c", options(), None
    )
    reported, report = collect()
    policy.validate(args, report)
    messages = [m for m, _ in reported]
    assert any("private endpoint only" in m for m in messages) and any("0.0.0.0/0" in m for m in messages)


def test_stack_policies_work_on_proxied_props_and_dependencies() -> None:
    """The engine's props are read-only proxies and deps are PolicyResources: the compliant stack still passes."""
    ctx_for: Callable[[str], Context] = lambda u: context(stack_from_urn(u))  # noqa: E731
    resources = compliant("dev")
    for policy in pack.policies(ctx_for):
        reported, report = collect()
        if isinstance(policy, StackValidationPolicy):
            policy.validate(StackValidationArgs(policy_resources(resources)), report)
        elif isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                policy.validate(
                    ResourceValidationArgs(
                        r.resource_type, unknown_checking_proxy(dict(r.props)), r.urn, r.name, options(), None
                    ),
                    report,
                )
        assert reported == [], (policy.name, reported)
    broken = drop(resources, "storage-checkpoints-versioning")
    policy = pack.to_policy(rule("s3-checkpoints-versioning"), ctx_for)
    assert isinstance(policy, StackValidationPolicy)
    reported, report = collect()
    policy.validate(StackValidationArgs(policy_resources(broken)), report)
    assert [u for _, u in reported] == [urn("dev", "aws:s3/bucket:Bucket", "storage-checkpoints")]


def test_unknown_values_defer_to_the_engine() -> None:
    """A value unknown during preview raises UnknownValueError, which the engine turns into an advisory note."""
    policy = pack.to_policy(rule("ecr-immutable-tags"), lambda u: context())
    assert isinstance(policy, ResourceValidationPolicy)
    props = unknown_checking_proxy({"name": "monty", "imageTagMutability": UNKNOWN_STRING_VALUE})
    args = ResourceValidationArgs(
        "aws:ecr/repository:Repository", props, urn("dev", "aws:ecr/repository:Repository", "r"), "r", options(), None
    )
    with pytest.raises(UnknownValueError):
        policy.validate(args, collect()[1])


def test_stack_settings_read_the_stack_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    # No engine config: an earlier test in this process may have left the plan's config in the runtime.
    pulumi.runtime.set_all_config({})
    (tmp_path / "Pulumi.qa.yaml").write_text(
        "config:\n  simfleet:platform:\n    repositories: [a, b]\n    imageAllowList: [nvcr.io/nvidia]\n"
    )
    assert pack.stack_settings("qa", tmp_path) == (("a", "b"), ("nvcr.io/nvidia",))
    assert pack.stack_settings("missing", tmp_path) == (("monty", "unitree-sim", "glue-base"), ())
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"simfleet:platform": json.dumps({"repositories": ["x"]})}))
    assert pack.stack_settings("qa", tmp_path) == (("x",), ())


# ---------------------------------------------------------------------------------------------
# The real plan: both example stacks pass with no mandatory violation
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planned() -> Iterator[Callable[[str], Any]]:
    from sample_plans import planned

    yield planned  # each sample planned once per process


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_example_stacks_have_no_mandatory_violations(planned: Callable[[str], Any], stack: str) -> None:
    from tools import plan

    result = planned(stack)
    found = plan.policy_violations(result)
    mandatory = [v.as_json() for v in found if v.level == "mandatory"]
    assert mandatory == []
    types = {r.type for r in result.registrations}
    # The rules really ran against the resources they are about.
    assert {"eks:index:Cluster", "aws:s3/bucket:Bucket", "aws:ecr/repository:Repository", "aws:eks/nodeGroup:NodeGroup"} <= types


@pytest.mark.slow
def test_rules_bite_on_the_real_plan(planned: Callable[[str], Any]) -> None:
    """Breaking the planned dev stack the way a bad change would is caught, so passing was not vacuous."""
    from tools import plan

    resources = plan.plan_resources(planned("dev"))
    names = {r.name for r in resources}
    assert {"storage-checkpoints-versioning", "access-run-role", "runs-trot-sweep"} <= names, sorted(names)
    ctx = context("dev", extra_images=helper_images())
    assert [v for v in evaluate(resources, ctx) if v.level == "mandatory"] == []
    lt = next(r.name for r in resources if r.resource_type == "aws:ec2/launchTemplate:LaunchTemplate")
    broken = drop(resources, "storage-checkpoints-versioning")
    broken = edit(broken, lt, set_path(["metadataOptions", "httpPutResponseHopLimit"], 2))
    broken = edit(
        broken, "access-run-role", lambda p: p.update(assumeRolePolicy=p["assumeRolePolicy"].replace("simfleet-run", "*"))
    )
    broken = edit_objects(broken, "runs-trot-sweep", lambda o: job_pod(o)["nodeSelector"].update({CAPACITY: "ON_DEMAND"}))
    broken = edit_objects(broken, "jobs-robocache-resample", lambda o: job_spec(o).update(suspend=False))
    found = {v.policy for v in evaluate(broken, ctx) if v.level == "mandatory"}
    assert found == {
        "s3-checkpoints-versioning",
        "ec2-launch-template-imdsv2",
        "iam-irsa-trust-scoped",
        "run-batch-spot-first",
        "run-queued",
    }


# ---------------------------------------------------------------------------------------------
# The pack as the engine runs it: a subprocess speaking the Analyzer gRPC protocol
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyzer() -> Iterator[Any]:
    """`python policies` prints its port and serves pulumirpc.Analyzer, as under `pulumi preview --policy-pack`."""
    import subprocess
    import sys

    import grpc
    from pulumi.runtime.proto import analyzer_pb2_grpc

    root = pack.PROJECT_ROOT
    # The pack would read stack config from PULUMI_CONFIG first; this test wants Pulumi.dev.yaml.
    env = {k: v for k, v in os.environ.items() if k != "PULUMI_CONFIG"}
    process = subprocess.Popen([sys.executable, str(root / "policies")], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.kill()
        process.wait(timeout=30)


def analyzer_resource(r: Resource) -> Any:
    from google.protobuf import struct_pb2
    from pulumi.runtime.proto import analyzer_pb2

    props = struct_pb2.Struct()
    props.update(json.loads(json.dumps(r.props)))
    deps = {k: analyzer_pb2.AnalyzerPropertyDependencies(urns=list(v)) for k, v in r.property_dependencies.items()}
    return analyzer_pb2.AnalyzerResource(
        type=r.resource_type, properties=props, urn=r.urn, name=r.name, parent=r.parent or "", propertyDependencies=deps
    )


@pytest.mark.slow
def test_pack_over_grpc_matches_the_offline_plan(analyzer: Any, planned: Callable[[str], Any]) -> None:
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import analyzer_pb2

    from tools import plan

    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "simfleet"
    levels = {p.name: analyzer_pb2.EnforcementLevel.Name(p.enforcementLevel).lower() for p in info.policies}
    assert levels == {r.name: r.level for r in RULES}

    resources = plan.plan_resources(planned("dev"))
    clean = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[analyzer_resource(r) for r in resources]))
    offline = [
        v
        for v in evaluate(resources, context("dev", extra_images=helper_images()))
        if v.policy in {r.name for r in RULES if r.stack_check}
    ]
    assert sorted(d.policyName for d in clean.diagnostics) == sorted(v.policy for v in offline)
    assert not any(d.enforcementLevel == analyzer_pb2.MANDATORY for d in clean.diagnostics)

    broken = drop(resources, "storage-checkpoints-versioning")
    found = analyzer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[analyzer_resource(r) for r in broken]))
    versioning = [d for d in found.diagnostics if d.policyName == "s3-checkpoints-versioning"]
    assert len(versioning) == 1 and versioning[0].enforcementLevel == analyzer_pb2.MANDATORY
    assert versioning[0].urn.endswith("::storage-checkpoints")

    eks = next(r for r in resources if r.resource_type == "eks:index:Cluster")
    opened = analyzer_resource(replace(eks, props={**eks.props, "publicAccessCidrs": ["0.0.0.0/0"]}))
    response = analyzer.Analyze(
        analyzer_pb2.AnalyzeRequest(type=opened.type, properties=opened.properties, urn=opened.urn, name=opened.name)
    )
    assert [d.policyName for d in response.diagnostics] == ["eks-endpoint-access"]
    for r in resources:
        if r.resource_type == "pulumi-python:dynamic:Resource":
            a = analyzer_resource(r)
            clean_run = analyzer.Analyze(
                analyzer_pb2.AnalyzeRequest(type=a.type, properties=a.properties, urn=a.urn, name=a.name)
            )
            assert list(clean_run.diagnostics) == [], r.name


@pytest.mark.slow
def test_plan_exits_3_on_a_mandatory_violation_config_cannot_see(
    tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy is the backstop behind config/: with config's image-source check switched off (as if it missed a
    case), the run-image-source policy still admits only the stack's ECR and the allow-list, and the plan exits 3."""

    import config.runs
    from tools import plan

    monkeypatch.setattr(config.runs, "image_source_problem", lambda *args: None)

    document = load_yaml((pack.PROJECT_ROOT / "Pulumi.dev.yaml").read_text())
    runs = document["config"]["simfleet:runs"]
    runs[0]["images"]["sim"] = "ghcr.io/someone/unitree-sim:4.2.0"
    document["config"]["simfleet:runs"] = runs[:1]
    stack_file = tmp_path / "Pulumi.qa.yaml"
    stack_file.write_text(yaml.safe_dump(document))

    assert plan.main(["--config", str(stack_file), "--out", str(tmp_path / "out")]) == 3
    out = capsys.readouterr().out
    assert "[mandatory] run-image-source" in out and "cost (us-east-1 prices" in out
    found = json.loads((tmp_path / "out" / "qa" / "policy.json").read_text())
    assert [(v["policy"], v["level"]) for v in found] == [("run-image-source", "mandatory")]
    assert found[0]["urn"].endswith("::runs-trot-baseline") and "ghcr.io/someone/unitree-sim:4.2.0" in found[0]["message"]
    cost = json.loads((tmp_path / "out" / "qa" / "cost.json").read_text())
    assert cost["idleMonthlyUsd"] == pytest.approx(sum(i["monthlyUsd"] for i in cost["breakdown"] if i["scope"] == "idle"))
    assert sorted((r["kind"], r["name"]) for r in cost["runs"]) == [("job", "robocache-resample"), ("run", "trot-baseline")]
