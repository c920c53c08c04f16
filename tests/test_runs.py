"""The Runs component under mocks: small plain SimRun inputs, shared glue ConfigMaps, checkpoint order, aliases."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from config import RunSpec
from config.sources import load_yaml
from tools.mocks import DYNAMIC_TYPE
from workloads import runs as runs_module
from workloads.identity import RunContext, glue_config_map_name, glue_sha256
from workloads.inputs import objects_from_inputs
from workloads.runs import Runs, RunsArgs, gathered, plan_runs

ROOT = Path(__file__).resolve().parent.parent
GLUE = (ROOT / "glue" / "trot.py").read_text()
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
CTX = RunContext(
    "simfleet-dev", "simfleet-runs", "simfleet-run", "ckpt-bucket", "art-bucket", REGISTRY, "us-east-1", "1.35", "10.40.0.0/16"
)
CONFIGMAP = "kubernetes:core/v1:ConfigMap"


def dev_runs() -> tuple[RunSpec, ...]:
    raw = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"]["simfleet:runs"]
    return tuple(RunSpec.model_validate(r) for r in raw)


def build(
    runs: tuple[RunSpec, ...], captured: dict[str, Any] | None = None, name: str = "runs", opts: Any = None, **changes: Any
) -> Runs:
    cluster = pulumi.ComponentResource("test:index:Cluster", "cluster")
    platform = pulumi.ComponentResource("test:index:Platform", "platform")
    # depends_on a component waits for its children; give it one, as the real platform components have many.
    pulumi.CustomResource("test:index:Guard", "platform-guard", {}, opts=pulumi.ResourceOptions(parent=platform))
    fields: dict[str, Any] = dict(
        runs=runs,
        context=CTX,
        after=[platform],
        cluster=cluster,
    )
    provider = pulumi.ProviderResource("kubernetes", "k8s", {})
    component = Runs(name, RunsArgs(**{**fields, **changes}), opts or pulumi.ResourceOptions(providers=[provider]))
    if captured is not None:
        component.summary.apply(captured.update)
    return component


def expected() -> dict[str, Any]:
    return {p.spec.name: p for p in plan_runs(dev_runs(), CTX, {"glue/trot.py": GLUE})}


def test_one_simrun_per_run_with_small_plain_inputs(pulumi_mocks: Any) -> None:
    rec = pulumi_mocks(lambda: build(dev_runs()))
    component = rec.one("simfleet:workloads:Runs", "runs")
    sims = rec.of_type(DYNAMIC_TYPE)
    assert sorted(s.name for s in sims) == ["runs-trot-baseline", "runs-trot-continue", "runs-trot-sweep"]
    planned = expected()
    for sim in sims:
        inputs = sim.inputs
        run = planned[inputs["runName"]]
        assert sim.parent == component.urn
        assert {k: v for k, v in inputs.items() if k in run.inputs} == run.inputs, sim.urn
        # No endpoint or CA: the provider asks EKS for them by cluster name, so no run carries a copy of the CA.
        assert not {"objects", "clusterEndpoint", "clusterCa", "kubeconfig"} & set(inputs)
        assert sim.options.get("propertyDependencies", {}) == {}
        compact = json.dumps({k: v for k, v in inputs.items() if k != "__provider"}, separators=(",", ":"))
        assert len(compact) <= 4096, f"{sim.urn}: {len(compact)} bytes of inputs"
        # The hash is plain: no resource output reaches it, so a replaced platform resource cannot make it unknown.
        assert "specHash" not in sim.options.get("propertyDependencies", {}), sim.options
        # What the provider will render from these inputs.
        assert objects_from_inputs(inputs)[-1]["kind"] == "Job"


def test_one_immutable_glue_configmap_per_glue_content(pulumi_mocks: Any, tmp_path: Path) -> None:
    (tmp_path / "glue").mkdir()
    (tmp_path / "glue" / "trot.py").write_text(GLUE)
    (tmp_path / "glue" / "other.py").write_text(GLUE + "\n# other\n")
    runs = list(dev_runs())
    runs[1] = runs[1].model_copy(update={"glue": "glue/other.py"})
    rec = pulumi_mocks(lambda: build(tuple(runs), glue_root=tmp_path))
    maps = {c.inputs["metadata"]["name"]: c for c in rec.of_type(CONFIGMAP)}
    assert set(maps) == {glue_config_map_name(glue_sha256(GLUE)), glue_config_map_name(glue_sha256(GLUE + "\n# other\n"))}
    platform = rec.one("test:index:Guard", "platform-guard")
    for cm in maps.values():
        assert cm.inputs["immutable"] is True and cm.options["provider"] == "k8s"
        assert platform.urn in cm.options["dependsOn"]  # the glue waits for the namespace, buckets and add-ons
    sweep = rec.one(DYNAMIC_TYPE, "runs-trot-sweep")
    assert json.loads(sweep.inputs["context"])["glueSha256"] == glue_sha256(GLUE + "\n# other\n")
    # Each run waits for its own glue ConfigMap, and through it for the platform.
    other = maps[glue_config_map_name(glue_sha256(GLUE + "\n# other\n"))]
    assert other.urn in sweep.options["dependsOn"] and platform.urn not in sweep.options["dependsOn"]


def test_continuation_waits_for_its_source(pulumi_mocks: Any) -> None:
    rec = pulumi_mocks(lambda: build(dev_runs()))
    source = rec.one(DYNAMIC_TYPE, "runs-trot-baseline")
    consumer = rec.one(DYNAMIC_TYPE, "runs-trot-continue")
    assert source.urn in consumer.options.get("dependsOn", []), consumer.options
    assert source.urn not in rec.one(DYNAMIC_TYPE, "runs-trot-sweep").options.get("dependsOn", [])
    assert json.loads(consumer.inputs["context"])["source"]["specHash"] == source.inputs["specHash"]


def test_sources_are_registered_before_their_consumers(pulumi_mocks: Any) -> None:
    runs = {r.name: r for r in dev_runs()}
    reordered = (runs["trot-continue"], runs["trot-sweep"], runs["trot-baseline"])  # consumer listed first
    rec = pulumi_mocks(lambda: build(reordered))
    names = [s.name for s in rec.of_type(DYNAMIC_TYPE)]
    assert names.index("runs-trot-baseline") < names.index("runs-trot-continue")
    assert rec.one(DYNAMIC_TYPE, "runs-trot-continue").inputs["specHash"] == expected()["trot-continue"].identity.spec_hash


def test_replacement_and_cluster_deletion_options(pulumi_mocks: Any) -> None:
    rec = pulumi_mocks(lambda: build(dev_runs()))
    cluster = rec.one("test:index:Cluster", "cluster")
    for sim in rec.of_type(DYNAMIC_TYPE):
        assert sim.options.get("deleteBeforeReplace") is True, sim.urn
    assert rec.one(DYNAMIC_TYPE, "runs-trot-sweep").options.get("deletedWith") == cluster.urn
    assert rec.one(DYNAMIC_TYPE, "runs-trot-continue").options.get("deletedWith") == cluster.urn
    # The viewport run's Service owns an NLB: it is deleted through the API so the controller removes the NLB.
    assert "deletedWith" not in rec.one(DYNAMIC_TYPE, "runs-trot-baseline").options


def test_a_renamed_component_keeps_its_runs_urns(pulumi_mocks: Any) -> None:
    """Renaming the component renames its children; aliases make the engine see the same runs, not new ones."""
    before = {r.inputs["runName"]: r.urn for r in pulumi_mocks(lambda: build(dev_runs())).of_type(DYNAMIC_TYPE)}
    rec = pulumi_mocks(
        lambda: build(
            dev_runs(),
            name="simulations",
            previous_names=("runs",),
            opts=pulumi.ResourceOptions(
                providers=[pulumi.ProviderResource("kubernetes", "k8s", {})], aliases=[pulumi.Alias(name="runs")]
            ),
        )
    )
    for sim in rec.of_type(DYNAMIC_TYPE):
        [alias] = sim.options["aliases"]
        # An alias spec with only a name means: same type and parent chain, that name (the URN's last part).
        aliased_urn = sim.urn.rsplit("::", 1)[0] + "::" + alias["name"]
        assert aliased_urn == before[sim.inputs["runName"]], sim.urn
    assert rec.one("simfleet:workloads:Runs", "simulations").options["aliases"] == [{"name": "runs"}]


def test_summary_lists_every_run(pulumi_mocks: Any) -> None:
    captured: dict[str, Any] = {}
    pulumi_mocks(lambda: build(dev_runs(), captured))
    planned = expected()
    assert set(captured) == set(planned)
    for run, plan in planned.items():
        assert captured[run]["specHash"] == plan.identity.spec_hash
        assert captured[run]["artifactsUri"] == plan.identity.artifacts_uri
        assert captured[run]["checkpointUri"] == plan.identity.checkpoint_uri
        assert captured[run]["status"] == "Pending"  # what the mocked provider reports for a new Job
        assert captured[run]["jobName"] == run


def test_old_kubernetes_is_refused(pulumi_mocks: Any) -> None:
    old = RunContext(**{**CTX.__dict__, "kubernetes_version": "1.32"})
    with pytest.raises(Exception, match=r"Kubernetes 1\.33 or newer"):
        pulumi_mocks(lambda: build(dev_runs(), context=old))


@pytest.mark.parametrize("count", [0, 1, 4, 5, 4 * 4 + 1, 4 * 4 * 4 + 3])  # groups of 4: one, two and three levels
@pytest.mark.parametrize("kind", ["known", "secret", "unknown"])
def test_outputs_gathered_in_groups_are_what_output_all_gives(count: int, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """workloads/runs.py gathered: the same value, resources, known-ness and secrecy as one pulumi.Output.all."""
    from pulumi.output import _OutputData

    monkeypatch.setattr(runs_module, "SUMMARY_GROUP", 4)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    resources: list[Any] = [object() for _ in range(7)]  # stand-ins: the SDK only unions them

    def output(i: int) -> pulumi.Output[Any]:
        unknown = kind == "unknown" and i == count // 2
        data = _OutputData(
            resources={resources[i % 7]}, value=i, is_known=not unknown, is_secret=kind == "secret" and i == count - 1
        )
        return pulumi.Output._from_data(_done(data))

    async def facts(out: pulumi.Output[Any]) -> tuple[Any, ...]:
        data = await out._data
        return (data.value if data.is_known else "unknown", data.resources, data.is_known, data.is_secret)

    try:
        outputs = [output(i) for i in range(count)]
        mine = loop.run_until_complete(facts(gathered(outputs)))
        sdk = loop.run_until_complete(facts(pulumi.Output.all(*outputs)))
    finally:
        loop.close()
    assert mine == sdk
    assert mine[0] == ("unknown" if kind == "unknown" and count else list(range(count)))


def _done(value: Any) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_event_loop().create_future()
    future.set_result(value)
    return future
