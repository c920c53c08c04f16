"""The stack-file JSON Schema: generated from config/, committed fresh, and agreeing with the models."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from config import PlatformConfig, QueueSpec, RunSpec
from config.sources import load_yaml
from tools import schema as schema_tool

ROOT = Path(__file__).resolve().parent.parent
STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = schema_tool.stack_file_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(path.read_text())
    return document


def errors(validator: jsonschema.Draft202012Validator, document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_committed_schema_is_fresh() -> None:
    committed = schema_tool.SCHEMA_PATH.read_text()
    assert committed == schema_tool.render(), "schema/stack-config.schema.json is stale: run `make schema` and commit it"
    assert schema_tool.main(["--check"]) == 0


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "schema.json"
    stale.write_text("{}\n")
    assert schema_tool.main(["--check", "--out", str(stale)]) == 1
    assert schema_tool.main(["--out", str(stale)]) == 0
    assert schema_tool.main(["--check", "--out", str(stale)]) == 0


def test_stack_files_point_at_the_schema() -> None:
    assert {"Pulumi.dev.yaml", "Pulumi.prod.yaml"} <= {p.name for p in STACK_FILES}
    for path in STACK_FILES:
        assert path.read_text().splitlines()[0] == "# yaml-language-server: $schema=./schema/stack-config.schema.json", path.name


@pytest.mark.parametrize("path", STACK_FILES, ids=[p.name for p in STACK_FILES])
def test_stack_files_validate(validator: jsonschema.Draft202012Validator, path: Path) -> None:
    assert errors(validator, load(path)) == []


def test_schema_rejects_what_the_models_reject(validator: jsonschema.Draft202012Validator) -> None:
    dev = load(ROOT / "Pulumi.dev.yaml")

    def broken(change: Any) -> list[str]:
        document = copy.deepcopy(dev)
        change(document["config"])
        return errors(validator, document)

    assert any("kubernetesVersoin" in e for e in broken(lambda c: c["simfleet:platform"].update(kubernetesVersoin="1.35")))
    assert broken(lambda c: c["simfleet:platform"]["network"].update(natGateways="two"))
    assert broken(lambda c: c["simfleet:runs"][0].update(mode="sometimes"))
    assert broken(lambda c: c["simfleet:runs"][0].pop("images"))
    assert broken(lambda c: c.update({"simfleet:plaform": {}}))  # typo of a simfleet key
    assert broken(lambda c: c["simfleet:queues"][0].update(gpus={"spots": 1}))
    assert broken(lambda c: c["simfleet:queues"][0].update(gpus=-1))
    assert broken(lambda c: c["simfleet:queues"][0].pop("gpus"))
    assert broken(lambda c: c.pop("aws:region"))
    assert broken(lambda c: c["simfleet:runs"][1].update(seeds=20))  # one number, not a list or a range
    assert broken(lambda c: c["simfleet:runs"][1].update(seeds="0-19"))
    assert broken(lambda c: c.update({"simfleet:runFiles": "runs/*.yaml"}))  # a list of patterns


def test_schema_accepts_the_other_forms_the_models_accept(validator: jsonschema.Draft202012Validator) -> None:
    """Integer seconds, numeric quantities, a single capacity string and seed ranges are valid for both."""
    dev = load(ROOT / "Pulumi.dev.yaml")
    config = dev["config"]
    config["simfleet:platform"]["nodeGroups"]["gpu"]["capacity"] = "spot"
    run = config["simfleet:runs"][1]
    run.update(maxRuntime=3600, ttlAfterFinished=0, cpu=4, memory="16Gi", seeds="0..19")
    config["simfleet:runFiles"] = ["runs/*.yaml"]
    config["simfleet:runs"] = [run]
    # One number for each capacity type, numeric quantities, and no borrowing limit.
    queue = {"name": "solo", "gpus": 2, "cpu": 16, "memory": "64Gi", "borrowingLimit": None, "weight": 0.5}
    config["simfleet:queues"] = [queue]
    assert errors(validator, dev) == []
    PlatformConfig.model_validate(config["simfleet:platform"])
    assert RunSpec.model_validate(run).seeds == list(range(20))
    QueueSpec.model_validate(queue)
    mixed = {**run, "seeds": ["0..9", 100]}
    config["simfleet:runs"] = [mixed]
    assert errors(validator, dev) == []
    assert RunSpec.model_validate(mixed).seeds == [*range(10), 100]


def test_aliases_are_the_yaml_keys() -> None:
    definitions = schema_tool.stack_file_schema()["$defs"]
    assert "diskGiB" in definitions["GpuNodeGroupConfig"]["properties"]
    assert "from" in definitions["Checkpoint"]["properties"]
    assert "kubernetesVersion" in definitions["PlatformConfig"]["properties"]
    assert json.dumps(definitions).count('"disk_gib"') == 0
