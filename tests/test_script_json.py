"""How the bash pod scripts read a JSON file with one jq: common.sh's JQ_READ and read_done_marker.

Each file (glue's done marker, a work container's result) is read with one `jq -s` that prints shell assignments,
where the scripts once started a jq per field. These check that every field reads what its own `$(jq -r F FILE)` read:
text with tabs, newlines, quotes and shell syntax, empty strings, trailing newlines (dropped, as a $(...) drops them),
values that are not strings (printed as jq prints them), and files that are missing, cut off, empty, not an object or
hold several values. tests/test_pod_scripts.py runs upload.sh end to end with such text.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "workloads" / "scripts"
INCARNATION = "0f1e2d3c4b5a6978"
ODD = "a\tb\n'c' \"d\" $(touch {pwned}) `touch {pwned}` \\ e"

pytestmark = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("jq")), reason="needs bash and jq (the AWS CLI image has both)"
)

# Sources common.sh (as the scripts do) and prints what read_done_marker set, NUL-separated, or "foreign".
READ = """
NAME=test ERR=/dev/null
source "$1/common.sh"
read_done_marker "$2" "the marker" "$3" || { printf foreign; exit 0; }
printf '%s\\0' "$status" "$reason" "$exit_code" "$marker_steps" "$checkpoint_saved"
"""


def _read(tmp_path: Path, text: str | bytes | None, incarnation: str = "") -> tuple[str, ...] | str:
    marker = tmp_path / ".done"
    if isinstance(text, str):
        marker.write_text(text)
    elif isinstance(text, bytes):
        marker.write_bytes(text)
    result = subprocess.run(
        ["bash", "-c", READ, "_", str(SCRIPTS), str(marker), incarnation], capture_output=True, text=True, check=True
    )
    if result.stdout == "foreign":
        return "foreign"
    fields = result.stdout.split("\0")
    assert fields[-1] == "", result.stdout
    return tuple(fields[:-1])


def _marker(**fields: object) -> str:
    return json.dumps({"incarnation": INCARNATION, **fields})


def test_every_field_of_a_marker_reads_as_its_own_jq_read_it(tmp_path: Path) -> None:
    odd = ODD.format(pwned=tmp_path / "pwned")
    marker = _marker(status="Failed", reason=odd + "\n\n", exitCode=3, steps={"done": [1, 2]}, checkpointSaved=False)
    for incarnation in ("", INCARNATION):
        assert _read(tmp_path, marker, incarnation) == ("Failed", odd, "3", '{\n  "done": [\n    1,\n    2\n  ]\n}', "false")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # A status with trailing newlines is that status (the $(...) of `jq -r .status` dropped them).
        ({"status": "Succeeded\n", "exitCode": 0, "steps": 7, "checkpointSaved": True}, ("Succeeded", "", "0", "7", "true")),
        ({"status": "Succeeded", "reason": "", "exitCode": "0", "steps": "7"}, ("Succeeded", "", "null", '"7"', "null")),
        ({"status": "Interrupted", "reason": False, "exitCode": 1.5}, ("Interrupted", "", "1.5", "null", "null")),
        ({"status": "Failed", "reason": ["x", 1], "exitCode": None}, ("Failed", '[\n  "x",\n  1\n]', "null", "null", "null")),
        ({"status": "Done", "reason": "r"}, ("Failed", "the marker has status 'Done'", "null", "null", "null")),
        ({"status": "Succeeded\tFailed"}, ("Failed", "the marker has status 'Succeeded\tFailed'", "null", "null", "null")),
        ({"status": {"a": []}}, ("Failed", "the marker has status '{\n  \"a\": []\n}'", "null", "null", "null")),
        ({"reason": "r"}, ("Failed", "the marker has status 'null'", "null", "null", "null")),
        ({"status": "", "reason": "r"}, ("Failed", "the marker has status ''", "null", "null", "null")),
        ({"status": "Succeeded", "reason": "\u0000x\u00e9"}, ("Succeeded", "x\u00e9", "null", "null", "null")),
    ],
)
def test_a_marker_field_of_any_type_reads_as_jq_printed_it(
    tmp_path: Path, fields: dict[str, object], expected: tuple[str, ...]
) -> None:
    assert _read(tmp_path, _marker(**fields)) == expected


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (None, ""),  # missing
        ('{"status": "Succeeded", "incarnation": "' + INCARNATION + '", "exitCo', None),  # cut off mid-write
        ('["Succeeded"]', None),
        ('"Succeeded"', None),
        ("null", None),
        ("", None),  # empty: not an object, as jq -e from 1.7 on judges it (1.6 said it was)
        ("  \n", "  "),  # (the $(...) of head drops the newline)
        ("not json {", None),
        (_marker(status="Succeeded") + " [1]", None),  # several values (test_a_marker_of_several_values_...)
    ],
)
def test_a_marker_that_is_not_an_object_fails_with_its_first_200_bytes(
    tmp_path: Path, text: str | None, shown: str | None
) -> None:
    expected_text = text if shown is None else shown
    assert _read(tmp_path, text) == ("Failed", f"the marker is not a JSON object: {expected_text}", "null", "null", "")
    assert _read(tmp_path, text, INCARNATION) == "foreign"


def test_a_long_marker_that_is_not_an_object_is_quoted_to_200_bytes(tmp_path: Path) -> None:
    text = "[" + "1," * 300 + "1]"
    assert _read(tmp_path, text)[1] == f"the marker is not a JSON object: {text[:200]}"


@pytest.mark.parametrize(
    "text",
    [
        _marker(status="Succeeded", exitCode=0, steps=1) + "\n" + _marker(status="Succeeded", exitCode=0, steps=2),
        "5\n" + _marker(status="Succeeded", exitCode=0),
        _marker(status="Succeeded", exitCode=0) + "\n5",
    ],
)
def test_a_marker_of_several_values_is_not_one_object_and_not_the_writers(tmp_path: Path, text: str) -> None:
    # Its writer writes it whole, once. Read field by field over every value, two objects once gave the exit code
    # "0\n0", which index.json's jq --argjson refused: the seed had no index.json at all.
    assert _read(tmp_path, text) == ("Failed", f"the marker is not a JSON object: {text}", "null", "null", "")
    assert _read(tmp_path, text, INCARNATION) == "foreign"


@pytest.mark.parametrize(
    "marker",
    [
        json.dumps({"status": "Succeeded", "incarnation": "another"}),
        json.dumps({"status": "Succeeded", "incarnation": 5}),
        json.dumps({"status": "Succeeded"}),
        _marker(status="Succeeded") + json.dumps({"status": "Succeeded", "incarnation": "another"}),
    ],
)
def test_a_marker_without_the_writers_incarnation_is_not_its_own(tmp_path: Path, marker: str) -> None:
    assert _read(tmp_path, marker, INCARNATION) == "foreign"


@pytest.mark.parametrize(
    "value",
    [
        {},
        [],
        {"a": {}, "b": [], "c": [[], [{}]]},
        {"k\u00e9\n": ['x\t"y"', 1.5, -3, 1e300, 12345678901234567890, True, False, None, "\u2028\u0001"]},
        [[1, [2, [3, {"d": {"e": None}}]]]],
    ],
)
def test_pretty_prints_as_jq_itself_does(value: object) -> None:
    text = json.dumps(value)
    native = subprocess.run(["jq", "."], input=text, capture_output=True, text=True, check=True).stdout
    program = 'source "$1/common.sh"; jq -j "$JQ_READ"\'pretty("") + "\\n"\''
    mine = subprocess.run(
        ["bash", "-c", program, "_", str(SCRIPTS)],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        env={"NAME": "t", "PATH": os.environ["PATH"]},
    ).stdout
    assert mine == native
