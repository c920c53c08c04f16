"""The glue contract: schemas and examples agree, the sample glue passes, and each lint failure is reported."""

from __future__ import annotations

import ast
import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from workloads import contract

ROOT = Path(__file__).resolve().parent.parent
TROT = ROOT / "glue" / "trot.py"

GOOD_GLUE = """
def step(observation):
    return {"cmd_type": "stop"}

if __name__ == "__main__":
    pass
"""


def _trot() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trot_under_test", TROT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "glue.py"
    path.write_text(source)
    return path


def _lint(tmp_path: Path, source: str) -> list[str]:
    return contract.lint_glue(_write(tmp_path, source))


def example_observation() -> dict[str, Any]:
    return copy.deepcopy(contract.load_schema("observation.example.json"))


# ---------------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [contract.OBSERVATION_SCHEMA, contract.ACTION_SCHEMA])
def test_schemas_are_valid_draft_2020_12(name: str) -> None:
    schema = contract.load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_examples_match_their_schemas() -> None:
    assert contract.contract_problems() == ()
    assert contract.schema_problems(contract.load_schema("action.example.json"), contract.ACTION_SCHEMA) == []


def test_observation_schema_covers_the_seed_fields() -> None:
    schema = contract.load_schema(contract.OBSERVATION_SCHEMA)
    assert set(schema["required"]) == {"time", "imu", "base_vel", "base_pose", "joints", "contacts", "nociceptor", "energy_rate"}
    assert schema["properties"]["imu"]["minItems"] == schema["properties"]["imu"]["maxItems"] == 6
    assert schema["properties"]["base_vel"]["minItems"] == schema["properties"]["base_vel"]["maxItems"] == 3
    assert set(schema["properties"]["base_pose"]["required"]) == {"roll", "pitch", "yaw", "height"}
    assert set(schema["properties"]["joints"]["required"]) == {"q", "qd", "tau"}


@pytest.mark.parametrize(
    ("mutate", "pointer"),
    [
        (lambda o: o.update(imu=[0.0] * 5), "/imu"),
        (lambda o: o["base_pose"].pop("yaw"), "/base_pose"),
        (lambda o: o["contacts"].update(feet=[True, False, True]), "/contacts/feet"),
        (lambda o: o["joints"].update(q="fast"), "/joints/q"),
        (lambda o: o.pop("energy_rate"), "/"),
    ],
    ids=["imu-length", "pose-missing-yaw", "three-feet", "joints-not-array", "missing-energy"],
)
def test_bad_observations_are_rejected_at_their_path(mutate: Any, pointer: str) -> None:
    observation = example_observation()
    mutate(observation)
    problems = contract.schema_problems(observation, contract.OBSERVATION_SCHEMA)
    assert any(p.startswith(f"at {pointer}") for p in problems), problems


@pytest.mark.parametrize(
    ("action", "valid"),
    [
        ({"cmd_type": "stop"}, True),
        ({"cmd_type": "base"}, False),  # base needs base_cmd
        ({"cmd_type": "jump"}, False),
        ({"cmd_type": "base", "base_cmd": {"vx": 1, "vy": 0, "yaw_rate": 0, "body_pitch": 0, "gait": "gallop"}}, False),
        ({"cmd_type": "base", "base_cmd": {"vx": 1, "vy": 0, "yaw_rate": 0, "body_pitch": 0, "gait": "walk"}}, True),
        ({"cmd_type": "stop", "speed": 1}, False),  # unknown keys are typos, not extensions
    ],
)
def test_action_schema(action: dict[str, Any], valid: bool) -> None:
    assert (contract.schema_problems(action, contract.ACTION_SCHEMA) == []) is valid


def test_contract_files_for_the_configmap() -> None:
    files = contract.contract_files()
    assert set(files) == {contract.CONTRACT_FILE, contract.OBSERVATION_SCHEMA, contract.ACTION_SCHEMA}
    document = json.loads(files[contract.CONTRACT_FILE])
    assert document["entryPoint"] == "step" and document["glue"] == "glue.py"
    assert json.loads(files[contract.ACTION_SCHEMA]) == contract.load_schema(contract.ACTION_SCHEMA)
    assert 900_000 < contract.glue_size_limit() < contract.CONFIGMAP_LIMIT_BYTES


# ---------------------------------------------------------------------------------------------
# lint_glue
# ---------------------------------------------------------------------------------------------


def test_sample_glue_passes() -> None:
    assert contract.lint_glue(TROT) == []


def test_minimal_glue_passes(tmp_path: Path) -> None:
    assert _lint(tmp_path, GOOD_GLUE) == []


def test_missing_file(tmp_path: Path) -> None:
    assert contract.lint_glue(tmp_path / "nope.py") == [
        "file not found (glue paths are relative to the project root, like glue/trot.py)"
    ]


def test_too_large_for_a_configmap(tmp_path: Path) -> None:
    big = GOOD_GLUE + "# " + "x" * contract.glue_size_limit() + "\n"
    [problem] = _lint(tmp_path, big)
    assert "bytes of glue" in problem and str(contract.glue_size_limit()) in problem


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    [problem] = _lint(tmp_path, "import json\n\ndef step(observation)\n    return {}\n")
    assert problem.startswith("line 3: ")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "glue.py"
    path.write_bytes(b"def step(o):\n    return '\xff'\n")
    assert contract.lint_glue(path) == ["is not UTF-8 text (byte 25)"]


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("def act(observation):\n    return {}\n", "defines no top-level function step(observation)"),
        ("class Glue:\n    def step(self, observation):\n        return {}\n", "defines no top-level function step"),
        ("class step:\n    def __init__(self, observation):\n        pass\n", "must be defined with def step(observation)"),
        ("def step(observation, state):\n    return {}\n", "exactly one positional parameter"),
        ("def step():\n    return {}\n", "it takes none"),
        ("def step(*observations):\n    return {}\n", "exactly one positional parameter"),
        ("def step(observation=None):\n    return {}\n", "must not have a default"),
        ("def step(observation, *, gain):\n    return {}\n", "required keyword-only parameters ['gain']"),
        ("async def step(observation):\n    return {}\n", "not async def"),
        ("step = lambda observation: {}\n", "must be defined with def step(observation)"),
        ("def step(observation):\n    return {}\nstep = None\n", "line 3: step must be defined"),
    ],
    ids=[
        "no-step",
        "step-in-class",
        "step-is-class",
        "two-params",
        "no-params",
        "varargs",
        "default",
        "kw-only",
        "async",
        "lambda",
        "rebound",
    ],
)
def test_entry_point_problems(tmp_path: Path, source: str, fragment: str) -> None:
    problems = _lint(tmp_path, source + '\nif __name__ == "__main__":\n    pass\n')
    assert len(problems) == 1 and fragment in problems[0], problems


def test_keyword_only_with_default_is_fine(tmp_path: Path) -> None:
    assert _lint(tmp_path, GOOD_GLUE.replace("step(observation)", "step(observation, *, gain=1.0)")) == []


def test_a_main_block_is_neither_required_nor_a_problem(tmp_path: Path) -> None:
    # The runtime imports the file as `user_glue`, so a main block (left from the old bridge) never runs.
    assert _lint(tmp_path, 'def step(observation):\n    return {"cmd_type": "stop"}\n') == []
    assert _lint(tmp_path, GOOD_GLUE.replace("pass", "raise SystemExit('would have started a bridge')")) == []


def test_contract_drift_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = example_observation()
    broken["imu"] = [0.0]
    monkeypatch.setattr(
        contract,
        "contract_problems",
        lambda: tuple(
            f"contract: observation.example.json {p}" for p in contract.schema_problems(broken, contract.OBSERVATION_SCHEMA)
        ),
    )
    problems = _lint(tmp_path, GOOD_GLUE)
    assert problems and all(p.startswith("contract: observation.example.json at /imu") for p in problems)


# ---------------------------------------------------------------------------------------------
# The sample controller
# ---------------------------------------------------------------------------------------------


def test_trot_step_returns_a_valid_trot_command() -> None:
    action = _trot().step(example_observation())
    assert contract.schema_problems(action, contract.ACTION_SCHEMA) == []
    assert action["cmd_type"] == "base" and action["base_cmd"]["gait"] == "trot"
    assert action["base_cmd"]["vx"] > 0


def test_trot_stops_when_falling_or_done() -> None:
    trot = _trot()
    fallen = example_observation()
    fallen["base_pose"]["roll"] = 1.2
    assert trot.step(fallen) == {"cmd_type": "stop"}
    done = example_observation()
    done["done"] = True
    assert trot.step(done) == {"cmd_type": "stop"}


def test_trot_turns_back_towards_its_heading_the_short_way() -> None:
    trot = _trot()
    observation = example_observation()
    observation["imu"][5] = 0.0
    observation["base_pose"]["yaw"] = 0.5  # left of the target heading: turn right
    assert trot.step(observation)["base_cmd"]["yaw_rate"] < 0
    observation["base_pose"]["yaw"] = 4.0  # 4 rad to the left is 2.28 rad to the right: keep turning left
    assert trot.step(observation)["base_cmd"]["yaw_rate"] > 0


def test_trot_slows_with_pain_and_follows_the_brain() -> None:
    trot = _trot()
    calm, hurt = example_observation(), example_observation()
    calm["nociceptor"], hurt["nociceptor"] = 0.0, 0.6
    assert trot.step(hurt)["base_cmd"]["vx"] < trot.step(calm)["base_cmd"]["vx"]
    hurt["nociceptor"] = 0.9
    assert trot.step(hurt)["base_cmd"] | {"yaw_rate": 0, "body_pitch": 0} == {
        "vx": 0.0,
        "vy": 0.0,
        "yaw_rate": 0,
        "body_pitch": 0,
        "gait": "stand",
    }
    calm["brain"] = {"vx": 0.3}
    assert trot.step(calm)["base_cmd"]["vx"] == pytest.approx(0.3)


def test_trot_is_only_the_controller() -> None:
    # The glue runtime owns the bridge now: trot.py holds step() and its helpers, no serve(), no main block.
    tree = ast.parse(TROT.read_text())
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert functions == {"step", "_clamp", "_wrap_angle"}
    assert not any(isinstance(node, ast.If) for node in tree.body)
    assert "zmq" not in TROT.read_text()


# ---------------------------------------------------------------------------------------------
# lint_glue runs step() on the example observations
# ---------------------------------------------------------------------------------------------


def test_every_example_observation_is_valid_and_named() -> None:
    examples = contract.observation_examples()
    assert set(examples) == {"nominal", "standing-start", "with-brain", "high-nociceptor", "fallen", "done"}
    for name, observation in examples.items():
        assert contract.schema_problems(observation, contract.OBSERVATION_SCHEMA) == [], name
    assert examples["done"]["done"] is True and examples["fallen"]["base_pose"]["roll"] > 1


def test_trot_gives_a_sensible_action_for_every_example() -> None:
    trot = _trot()
    actions = {name: trot.step(copy.deepcopy(o)) for name, o in contract.observation_examples().items()}
    assert actions["fallen"] == actions["done"] == {"cmd_type": "stop"}
    assert actions["high-nociceptor"]["base_cmd"]["gait"] == "stand"
    assert actions["nominal"]["base_cmd"]["gait"] == "trot"


def test_an_endless_step_is_reported_within_the_timeout(tmp_path: Path) -> None:
    source = "def step(observation):\n    while True:\n        pass\n"
    problems = contract.lint_glue(_write(tmp_path, source), probe_timeout=1.0)
    assert problems == [
        "example 'nominal': step did not return within 1 s (an endless loop, or a wait on something that never comes)"
    ]


def test_an_endless_import_is_reported_within_the_timeout(tmp_path: Path) -> None:
    source = "import time\ntime.sleep(3600)\n\ndef step(observation):\n    return {}\n"
    [problem] = contract.lint_glue(_write(tmp_path, source), probe_timeout=1.0)
    assert problem.startswith("importing the file did not return within 1 s")


def test_a_raising_step_is_reported_with_the_example_and_line(tmp_path: Path) -> None:
    source = (
        "def step(observation):\n"
        "    if observation['base_pose']['roll'] > 1:\n"
        "        raise ValueError('cannot handle a fall')\n"
        "    return {'cmd_type': 'stop'}\n"
    )
    assert _lint(tmp_path, source) == ["example 'fallen': line 3: step raised ValueError: cannot handle a fall"]


def test_an_invalid_action_is_reported_with_the_example_and_field(tmp_path: Path) -> None:
    source = (
        "def step(observation):\n"
        "    vx = 'fast' if observation['nociceptor'] > 1 else 0.5\n"
        "    return {'cmd_type': 'base', 'base_cmd': {'vx': vx, 'vy': 0, 'yaw_rate': 0, 'body_pitch': 0, 'gait': 'trot'}}\n"
    )
    assert _lint(tmp_path, source) == [
        "example 'high-nociceptor': at /base_cmd/vx: 'fast' is not of type 'number'",
        "example 'fallen': at /base_cmd/vx: 'fast' is not of type 'number'",
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "import numpy\n\ndef step(observation):\n    return {}\n",
            ["line 1: importing the file raised ModuleNotFoundError: No module named 'numpy'"],
        ),
        (
            "def step(observation):\n    return {'cmd_type': 'stop', 'ids': {1, 2}}\n",
            [
                f"example '{name}': step returned a value that is not JSON (Object of type set is not JSON serializable)"
                for name in ("nominal", "standing-start", "with-brain", "high-nociceptor", "fallen", "done")
            ],
        ),
        (
            "import os\n\ndef step(observation):\n    os._exit(3)\n",
            ["example 'nominal': step ended the linter's Python process (exit code 3): no output"],
        ),
        (
            "import socket\n\ndef step(observation):\n    socket.create_connection(('127.0.0.1', 9))\n",
            [
                f"example '{name}': line 4: step raised OSError: the glue linter runs step() without network access"
                for name in ("nominal", "standing-start", "with-brain", "high-nociceptor", "fallen", "done")
            ],
        ),
        ("def step(observation):\n    print('{not the protocol')\n    return {'cmd_type': 'stop'}\n", []),
    ],
    ids=["import-error", "not-json", "exits", "no-network", "prints"],
)
def test_probe_findings(tmp_path: Path, source: str, expected: list[str]) -> None:
    assert _lint(tmp_path, source) == expected


def test_the_contract_refuses_an_action_schema_the_runtime_cannot_validate() -> None:
    schema = copy.deepcopy(contract.load_schema(contract.ACTION_SCHEMA))
    assert contract.runtime_schema_problems(schema) == []
    schema["properties"]["base_cmd"]["properties"]["gait"] = {"type": "string", "pattern": "^[a-z]+$"}
    assert contract.runtime_schema_problems(schema) == [
        "contract: action.schema.json uses 'pattern' at /properties/base_cmd/properties/gait, which simfleet's glue "
        "runtime does not implement (workloads/glue_runtime/validator.py SUPPORTED_KEYWORDS)"
    ]


def test_runtime_files_carry_the_glue_runtime_package() -> None:
    files = contract.runtime_files()
    assert {"glue_runtime/__init__.py", "glue_runtime/__main__.py", "glue_runtime/runtime.py"} <= set(files)
    assert all(path.startswith("glue_runtime/") and path.endswith(".py") for path in files)
    assert files["glue_runtime/__init__.py"].startswith('"""simfleet\'s glue runtime')
