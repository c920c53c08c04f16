"""Run identity: the hash covers what a run computes and where it writes, and nothing else; golden hashes pin it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

import naming
from config import RunSpec, load_stack_config
from config.sources import load_yaml
from workloads import identity, identity_rules, job_identity
from workloads.identity import (
    IDENTITY_VERSION,
    RunContext,
    SourceRef,
    glue_sha256,
    identify,
    registry_url,
    render_spec,
    resolve_image,
    spec_hash,
    spec_projection,
)
from workloads.runs import plan_runs

ROOT = Path(__file__).resolve().parent.parent
GLUE = (ROOT / "glue" / "trot.py").read_text()
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
CTX = RunContext(
    cluster_name="simfleet-dev",
    namespace=naming.RUNS_NAMESPACE,
    service_account=naming.RUN_SERVICE_ACCOUNT,
    checkpoints_bucket="simfleet-dev-checkpoints-123456789012",
    artifacts_bucket="simfleet-dev-artifacts-123456789012",
    registry_url=REGISTRY,
    region="us-east-1",
    kubernetes_version="1.35",
)
# The dev stack's runs, planned with the glue below. A change here means every deployed run with that spec would
# run again: only ever update these together with a note in docs/operators.md ("Upgrades") (and IDENTITY_VERSION when the scheme changes).
PINNED_GLUE = "def step(observation):\n    return {'cmd_type': 'stop'}\n"
GOLDEN = {
    "trot-baseline": "4d6c2958c7c3",
    # 2026-12-07: the sample's sweep starts from a placeholder bucket (s3://example-shared-brains/...) instead of
    # s3://simfleet-shared-brains/..., a spec change, so a new hash; the scheme is unchanged (the old source still
    # hashes to 9f285d0b3b62, test below). A stack that deployed the old sample keeps its run under the old prefix.
    "trot-sweep": "700b7ff0e43e",
    "trot-continue": "84c5dbde9e18",
}


def dev_runs() -> dict[str, dict[str, Any]]:
    runs = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"]["simfleet:runs"]
    return {run["name"]: run for run in runs}


def spec(base: str = "trot-baseline", **changes: Any) -> RunSpec:
    raw = copy.deepcopy(dev_runs()[base])
    raw.update(changes)
    return RunSpec.model_validate(raw)


def hash_of(run: RunSpec, ctx: RunContext = CTX, glue: str = GLUE, source: str | None = None) -> str:
    return spec_hash(run, ctx, glue_sha256(glue), source)


def dev_hashes(runs: dict[str, dict[str, Any]], ctx: RunContext = CTX) -> dict[str, str]:
    specs = [RunSpec.model_validate(raw) for raw in runs.values()]
    return {p.spec.name: p.identity.spec_hash for p in plan_runs(specs, ctx, {"glue/trot.py": PINNED_GLUE})}


def test_golden_hashes_of_the_dev_runs() -> None:
    assert IDENTITY_VERSION == 1
    assert dev_hashes(dev_runs()) == GOLDEN
    # The sweep as the sample had it before its bucket became a placeholder: the hash it had then.
    runs = dev_runs()
    runs["trot-sweep"]["checkpoint"]["from"] = "s3://simfleet-shared-brains/monty/quadruped/v12.mstate"
    assert dev_hashes(runs)["trot-sweep"] == "9f285d0b3b62"


def test_the_identity_rules_are_the_ones_pinned_for_their_version() -> None:
    assert identity_rules.problem(identity.IDENTITY_VERSION) is None


def _unsorted_seeds(spec: RunSpec) -> dict[str, Any]:
    projection = spec.model_dump(
        mode="json", by_alias=True, exclude_defaults=True, exclude={"labels", "ttl_after_finished", "queue", "images", "glue"}
    )
    return projection


@pytest.mark.parametrize(
    "module, name, value",
    [
        (identity, "NOT_IDENTITY", identity.NOT_IDENTITY - {"labels"}),  # labels would rerun runs
        (identity, "QUANTITY_UNITS", {"cpu": "m"}),  # 12Gi and 12288Mi would differ
        (identity, "HASH_LENGTH", 16),  # every prefix would move
        (identity, "spec_projection", _unsorted_seeds),  # seeds order, defaults, viewport CIDRs would count
        (job_identity, "NOT_IDENTITY", job_identity.NOT_IDENTITY | {"env"}),  # a job's env would stop counting
        (job_identity, "QUANTITY_UNITS", {"cpu": "m", "memory": "bytes"}),  # shmSize spellings would differ
    ],
)
def test_an_identity_rule_changed_without_a_version_bump_fails(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, value: Any
) -> None:
    monkeypatch.setattr(module, name, value)
    message = identity_rules.problem(identity.IDENTITY_VERSION)
    assert message is not None and "IDENTITY_VERSION is still 1" in message and "never edit a pinned entry" in message


def test_a_version_bump_needs_its_rules_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "IDENTITY_VERSION", 2)
    message = identity_rules.problem(identity.IDENTITY_VERSION)
    assert message is not None and "identity version 2 has no pinned rules fingerprint" in message


def test_code_that_computes_the_same_hashes_keeps_the_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refactor that gives the same verdicts is not a rule change (a field added later with a default neither:
    see test_a_new_optional_field_moves_no_hash)."""
    original = identity.exact_quantity
    monkeypatch.setattr(identity, "exact_quantity", lambda text, unit: int(original(str(text).strip(), unit)))
    assert identity_rules.problem(identity.IDENTITY_VERSION) is None


def test_labels_ttl_and_written_out_defaults_leave_every_hash_alone() -> None:
    runs = dev_runs()
    for raw in runs.values():
        raw["labels"] = {"user": "carol", "team": "legs"}
        raw["ttlAfterFinished"] = "3d"
        # Defaults written out, in other spellings of the same values.
        raw.setdefault("gpus", 1)
        raw.setdefault("cpu", "3000m")
        raw.setdefault("memory", "12288Mi")
        raw.setdefault("rerun", 0)
        raw.setdefault("maxRuntime", "120m")
        raw.setdefault("checkpoint", {"from": None, "save": True})
        raw["checkpoint"].setdefault("save", True)
    assert dev_hashes(runs) == GOLDEN


def test_a_new_optional_field_moves_no_hash() -> None:
    """A field added to RunSpec later, with a default, must not rerun every deployed run."""

    class RunSpecWithMore(RunSpec):
        gpu_model: str | None = Field(None, description="a field from a future simfleet")
        shm_fraction: float = 0.25

    for name, raw in dev_runs().items():
        old, new = RunSpec.model_validate(raw), RunSpecWithMore.model_validate(raw)
        assert spec_projection(new) == spec_projection(old), name
        assert hash_of(new) == hash_of(old), name
    assert "gpuModel" in spec_projection(RunSpecWithMore.model_validate({**dev_runs()["trot-sweep"], "gpuModel": "L40S"}))


def test_an_image_change_moves_the_run_and_its_continuation() -> None:
    runs = dev_runs()
    runs["trot-baseline"]["images"] = {**runs["trot-baseline"]["images"], "sim": "unitree-sim:4.3.0"}
    moved = dev_hashes(runs)
    assert moved["trot-baseline"] != GOLDEN["trot-baseline"]
    assert moved["trot-continue"] != GOLDEN["trot-continue"]  # it continues from a different run now
    assert moved["trot-sweep"] == GOLDEN["trot-sweep"]


@pytest.mark.parametrize(
    ("change", "spec_changes", "ctx_changes", "glue"),
    [
        ("sim image", {"images": {"sim": "unitree-sim:4.2.1", "monty": "monty:1f3c2a9", "glue": "glue-base:0.3.1"}}, {}, GLUE),
        ("glue content", {}, {}, GLUE + "\n# tuned\n"),
        ("rerun", {"rerun": 1}, {}, GLUE),
        ("datasets mounted", {"datasets": {"path": "/datasets"}}, {}, GLUE),  # the run reads other inputs now
        ("seeds", {"seeds": [8]}, {}, GLUE),
        ("profile", {"profile": "quadruped-rough"}, {}, GLUE),
        ("maxRuntime", {"maxRuntime": "3h"}, {}, GLUE),
        ("gpus", {"gpus": 2}, {}, GLUE),
        ("memory", {"memory": "16Gi"}, {}, GLUE),
        ("checkpoint source", {"checkpoint": {"from": "s3://brains/a.mstate"}}, {}, GLUE),
        ("no viewport", {"viewport": None}, {}, GLUE),
        ("mode", {"mode": "batch", "viewport": None}, {}, GLUE),
        ("checkpoints bucket", {}, {"checkpoints_bucket": "other"}, GLUE),
        ("artifacts bucket", {}, {"artifacts_bucket": "other"}, GLUE),
        ("namespace", {}, {"namespace": "other"}, GLUE),
        ("cluster", {}, {"cluster_name": "simfleet-prod"}, GLUE),
        ("registry", {}, {"registry_url": "999999999999.dkr.ecr.eu-west-1.amazonaws.com"}, GLUE),
    ],
)
def test_the_hash_moves_with_what_the_run_computes_or_where_it_writes(
    change: str, spec_changes: dict[str, Any], ctx_changes: dict[str, Any], glue: str
) -> None:
    ctx = RunContext(**{**CTX.__dict__, **ctx_changes})
    assert hash_of(spec(**spec_changes), ctx, glue) != hash_of(spec()), change


def test_the_hash_ignores_how_the_pod_is_rendered() -> None:
    # A cluster upgrade or a renamed service account must not restart every finished run.
    ctx = RunContext(**{**CTX.__dict__, "kubernetes_version": "1.36", "service_account": "renamed", "region": "us-east-2"})
    assert hash_of(spec(), ctx) == hash_of(spec())


@pytest.mark.parametrize(
    "same",
    [
        {"cpu": "3000m"},
        {"memory": "12288Mi"},
        {"viewport": {"allowedCidrs": ["10.1.0.0/16", "10.2.0.0/16"]}},  # updated in place, not rerun
        {"glue": "glue/renamed.py"},  # the same content under another name
    ],
)
def test_equal_things_written_differently_hash_alike(same: dict[str, Any]) -> None:
    assert hash_of(spec(**same)) == hash_of(spec())


def test_sweeps_hash_their_seeds_as_a_set_and_parallelism_only_when_it_limits() -> None:
    base = hash_of(spec("trot-sweep"))
    assert hash_of(spec("trot-sweep", seeds=[8, 7, 6, 5, 4, 3, 2, 1])) == base
    unlimited = hash_of(spec("trot-sweep", parallelism=None))
    assert hash_of(spec("trot-sweep", parallelism=8)) == hash_of(spec("trot-sweep", parallelism=20)) == unlimited
    assert unlimited != base  # 3 at a time is a different schedule than 8


@pytest.mark.parametrize("written", ["1..8", ["1..8"], ["1..4", "5..8"], [1, "2..7", 8], " 1 .. 8 "])
def test_a_seed_range_is_the_same_run_as_the_list_it_stands_for(written: Any) -> None:
    """trot-sweep's golden hash (seeds [1..8] written out) holds whichever way the same seeds are written."""
    ranged = spec("trot-sweep", seeds=written)
    assert ranged.seeds == [1, 2, 3, 4, 5, 6, 7, 8]
    assert hash_of(ranged) == hash_of(spec("trot-sweep"))
    assert render_spec(ranged) == render_spec(spec("trot-sweep"))  # the provider's inputs do not move either
    runs = dev_runs()
    runs["trot-sweep"]["seeds"] = written
    assert dev_hashes(runs) == GOLDEN
    assert hash_of(spec("trot-sweep", seeds="1..9")) != hash_of(spec("trot-sweep"))  # one seed more is another sweep


def test_quantities_are_compared_exactly() -> None:
    assert hash_of(spec(cpu="700m")) == hash_of(spec(cpu="0.7"))
    assert hash_of(spec(cpu="2300m")) == hash_of(spec(cpu="2.3"))
    assert hash_of(spec(memory="1Gi")) == hash_of(spec(memory="1024Mi")) != hash_of(spec(memory="1G"))


def test_a_full_uri_image_is_the_same_image_as_its_bare_form() -> None:
    full = spec(images={"sim": f"{REGISTRY}/unitree-sim:4.2.0", "monty": "monty:1f3c2a9", "glue": "glue-base:0.3.1"})
    assert hash_of(full) == hash_of(spec())


def test_the_source_hash_is_part_of_the_consumer_hash() -> None:
    consumer = spec("trot-continue")
    assert hash_of(consumer, source="abc") != hash_of(consumer, source="abd")


def test_identify_checks_the_source_and_names_the_locations() -> None:
    base = identify(spec(), CTX, glue_sha256(GLUE))
    assert base.prefix == f"runs/trot-baseline/{base.spec_hash}/"
    assert base.artifacts_uri == f"s3://{CTX.artifacts_bucket}/{base.prefix}"
    assert base.checkpoint_uri == f"s3://{CTX.checkpoints_bucket}/{base.prefix}out.mstate"
    assert base.index_uri == f"{base.artifacts_uri}index.json"
    sweep = identify(spec("trot-sweep"), CTX, glue_sha256(GLUE))
    assert sweep.checkpoint_uri == f"s3://{CTX.checkpoints_bucket}/{sweep.prefix}" and sweep.index_uri is None
    assert sweep.index_keys()[0] == f"{sweep.prefix}seed-1/index.json" and len(sweep.index_keys()) == 8
    with pytest.raises(ValueError, match=r"checkpoint\.from"):
        identify(spec("trot-continue"), CTX, glue_sha256(GLUE))  # needs its source
    source = SourceRef("trot-sweep", sweep.spec_hash, "s3://x/y", "s3://x/i.json", 60)
    with pytest.raises(ValueError, match=r"checkpoint\.from"):
        identify(spec(), CTX, glue_sha256(GLUE), source)


def test_resolve_image() -> None:
    assert resolve_image("monty:1f3c2a9", REGISTRY) == f"{REGISTRY}/monty:1f3c2a9"
    assert resolve_image("monty:1f3c2a9", REGISTRY + "/") == f"{REGISTRY}/monty:1f3c2a9"
    assert resolve_image("team/monty:1", REGISTRY) == f"{REGISTRY}/team/monty:1"
    assert resolve_image("ghcr.io/acme/sim:4.2.0", REGISTRY) == "ghcr.io/acme/sim:4.2.0"
    assert resolve_image("localhost:5000/sim:1", REGISTRY) == "localhost:5000/sim:1"
    digest = "monty@sha256:" + "a" * 64
    assert resolve_image(digest, REGISTRY) == f"{REGISTRY}/{digest}"


def test_registry_url_matches_ecr() -> None:
    assert registry_url("123456789012", "us-east-1") == REGISTRY
    assert registry_url("123456789012", "cn-north-1", "amazonaws.com.cn") == "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"


def test_dev_stack_validates_and_plans_with_the_pinned_glue() -> None:
    document = load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    cfg = load_stack_config(
        document["simfleet:platform"], document["simfleet:runs"], stack="dev", source="Pulumi.dev.yaml", offline=True
    )
    assert [run.name for run in cfg.runs] == list(GOLDEN)
