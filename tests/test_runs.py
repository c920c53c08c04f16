"""The Runs component under mocks: one SimRun per run with the provider's props, in checkpoint order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

pytest.importorskip("workloads.provider", reason="workloads/provider.py (SimRun) is written in parallel")

from config import RunSpec
from tools.mocks import DYNAMIC_TYPE
from workloads.manifests import RunContext, plan_run
from workloads.runs import Runs, RunsArgs

ROOT = Path(__file__).resolve().parent.parent
GLUE = (ROOT / "glue" / "trot.py").read_text()
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
CTX = RunContext("simfleet-dev", "simfleet-runs", "simfleet-run", "ckpt-bucket", "art-bucket", REGISTRY, "us-east-1", "1.35")
CONTRACT_PROPS = {
    "runName",
    "namespace",
    "specHash",
    "objects",
    "clusterName",
    "clusterEndpoint",
    "clusterCa",
    "region",
    "artifactsBucket",
    "artifactsPrefix",
    "seeds",
    "artifactsUri",
    "checkpointUri",
}


def dev_runs() -> tuple[RunSpec, ...]:
    raw = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]["simfleet:runs"]
    return tuple(RunSpec.model_validate(r) for r in raw)


def build(runs: tuple[RunSpec, ...], captured: dict[str, Any] | None = None, **changes: Any) -> Runs:
    cluster = pulumi.ComponentResource("test:index:Cluster", "cluster")
    fields: dict[str, Any] = dict(
        runs=runs,
        cluster_name=CTX.cluster_name,
        region=CTX.region,
        cluster_endpoint=pulumi.Output.from_input("https://ABC.gr7.us-east-1.eks.amazonaws.com"),
        cluster_ca=pulumi.Output.from_input("Q0E="),
        namespace=pulumi.Output.from_input(CTX.namespace),
        service_account=pulumi.Output.from_input(CTX.service_account),
        checkpoints_bucket=pulumi.Output.from_input(CTX.checkpoints_bucket),
        artifacts_bucket=pulumi.Output.from_input(CTX.artifacts_bucket),
        registry_url=pulumi.Output.from_input(REGISTRY),
        kubernetes_version="1.35",
        cluster=cluster,
    )
    component = Runs("runs", RunsArgs(**{**fields, **changes}))
    if captured is not None:
        component.summary.apply(captured.update)
    return component


def expected_plans() -> dict[str, Any]:
    runs = {r.name: r for r in dev_runs()}
    baseline = plan_run(runs["trot-baseline"], CTX, GLUE)
    return {
        "trot-baseline": baseline,
        "trot-sweep": plan_run(runs["trot-sweep"], CTX, GLUE),
        "trot-continue": plan_run(runs["trot-continue"], CTX, GLUE, baseline),
    }


def test_one_simrun_per_run_with_the_provider_contract(pulumi_mocks: Any) -> None:
    rec = pulumi_mocks(lambda: build(dev_runs()))
    component = rec.one("simfleet:workloads:Runs", "runs")
    sims = rec.of_type(DYNAMIC_TYPE)
    assert sorted(s.name for s in sims) == ["runs-trot-baseline", "runs-trot-continue", "runs-trot-sweep"]
    plans = expected_plans()
    for sim in sims:
        inputs = sim.inputs
        run = inputs["runName"]
        plan = plans[run]
        assert set(inputs) >= CONTRACT_PROPS, f"{sim.urn}: missing {CONTRACT_PROPS - set(inputs)}"
        assert sim.parent == component.urn
        assert inputs["specHash"] == plan.spec_hash, sim.urn
        assert inputs["objects"] == plan.objects, sim.urn
        assert inputs["artifactsPrefix"] == f"runs/{run}/{plan.spec_hash}/" == plan.prefix
        assert inputs["artifactsUri"] == plan.artifacts_uri and inputs.get("checkpointUri") == plan.checkpoint_uri
        assert inputs["namespace"] == CTX.namespace and inputs["clusterName"] == CTX.cluster_name
        assert inputs["region"] == "us-east-1" and inputs["artifactsBucket"] == CTX.artifacts_bucket
        assert inputs["clusterCa"] == "Q0E=" and inputs["clusterEndpoint"].startswith("https://")
        assert not inputs.get("kubeconfig")
    assert rec.one(DYNAMIC_TYPE, "runs-trot-sweep").inputs["seeds"] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [o["kind"] for o in rec.one(DYNAMIC_TYPE, "runs-trot-baseline").inputs["objects"]] == ["ConfigMap", "Service", "Job"]


def test_continuation_waits_for_its_source(pulumi_mocks: Any) -> None:
    rec = pulumi_mocks(lambda: build(dev_runs()))
    source = rec.one(DYNAMIC_TYPE, "runs-trot-baseline")
    consumer = rec.one(DYNAMIC_TYPE, "runs-trot-continue")
    assert source.urn in consumer.options.get("dependsOn", []), consumer.options
    assert source.urn not in rec.one(DYNAMIC_TYPE, "runs-trot-sweep").options.get("dependsOn", [])


def test_sources_are_registered_before_their_consumers(pulumi_mocks: Any) -> None:
    runs = {r.name: r for r in dev_runs()}
    reordered = (runs["trot-continue"], runs["trot-sweep"], runs["trot-baseline"])  # consumer listed first
    rec = pulumi_mocks(lambda: build(reordered))
    names = [s.name for s in rec.of_type(DYNAMIC_TYPE)]
    assert names.index("runs-trot-baseline") < names.index("runs-trot-continue")
    consumer = rec.one(DYNAMIC_TYPE, "runs-trot-continue")
    assert consumer.inputs["specHash"] == expected_plans()["trot-continue"].spec_hash


def test_replacement_and_cluster_deletion_options(pulumi_mocks: Any) -> None:
    rec = pulumi_mocks(lambda: build(dev_runs()))
    cluster = rec.one("test:index:Cluster", "cluster")
    for sim in rec.of_type(DYNAMIC_TYPE):
        assert sim.options.get("deleteBeforeReplace") is True, sim.urn
    assert rec.one(DYNAMIC_TYPE, "runs-trot-sweep").options.get("deletedWith") == cluster.urn
    assert rec.one(DYNAMIC_TYPE, "runs-trot-continue").options.get("deletedWith") == cluster.urn
    # The viewport run's Service owns an NLB: it is deleted through the API so the controller removes the NLB.
    assert "deletedWith" not in rec.one(DYNAMIC_TYPE, "runs-trot-baseline").options


def test_summary_lists_every_run(pulumi_mocks: Any) -> None:
    captured: dict[str, Any] = {}
    pulumi_mocks(lambda: build(dev_runs(), captured))
    plans = expected_plans()
    assert set(captured) == set(plans)
    for run, plan in plans.items():
        assert captured[run]["specHash"] == plan.spec_hash
        assert captured[run]["artifactsUri"] == plan.artifacts_uri
        assert captured[run]["checkpointUri"] == plan.checkpoint_uri
        assert captured[run]["status"] == "Pending"  # what the mocked provider reports for a new Job
        assert "jobName" in captured[run]


def test_glue_files_are_read_once_per_path(pulumi_mocks: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "glue").mkdir()
    (tmp_path / "glue" / "trot.py").write_text(GLUE)
    (tmp_path / "glue" / "other.py").write_text(GLUE + "\n# other\n")
    runs = list(dev_runs())
    runs[1] = runs[1].model_copy(update={"glue": "glue/other.py"})
    reads: list[str] = []
    original = Path.read_text

    def counting(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.parent == tmp_path / "glue":
            reads.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    rec = pulumi_mocks(lambda: build(tuple(runs), glue_root=tmp_path))
    assert sorted(reads) == ["other.py", "trot.py"]
    configmaps = {s.name: s.inputs["objects"][0]["data"]["glue.py"] for s in rec.of_type(DYNAMIC_TYPE)}
    assert configmaps["runs-trot-sweep"].endswith("# other\n") and configmaps["runs-trot-baseline"] == GLUE


def test_old_kubernetes_is_refused(pulumi_mocks: Any) -> None:
    with pytest.raises(Exception, match=r"Kubernetes 1\.33 or newer"):
        pulumi_mocks(lambda: build(dev_runs(), kubernetes_version="1.32"))
