"""The glue contract: observation/action JSON Schemas, the entry point, and the lint of a user's glue file.

A glue file is plain Python that defines `step(observation) -> action` at top level (glue/trot.py is the
reference). In the pod, simfleet's glue runtime (the package workloads/glue_runtime/) imports it as the module
`user_glue` and owns everything else: the ZeroMQ bridge, validation, liveness, checkpoints and the end of the run.

The lint first parses the file (size, encoding, syntax, the shape of `step`), then runs `step` on the
contract's example observations in a separate Python process with a timeout (workloads/contract_probe.py) and
validates every action it returns. A glue that raises, loops forever or returns an invalid action is reported
with the example and the field, never hangs the plan.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from workloads.glue_runtime import validator

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
PROBE = Path(__file__).resolve().parent / "contract_probe.py"
RUNTIME_PACKAGE = Path(validator.__file__).resolve().parent
CONTRACT_VERSION = 1
ENTRY_POINT = "step"

# File names inside the run's ConfigMap and, after checkpoint-fetch copies them, inside /glue.
GLUE_FILE = "glue.py"
CONTRACT_FILE = "contract.json"
OBSERVATION_SCHEMA = "observation.schema.json"
ACTION_SCHEMA = "action.schema.json"
OBSERVATION_EXAMPLE = "observation.example.json"  # the nominal example, named "nominal" in lint messages
OBSERVATION_EXAMPLES = "observation.examples.json"  # more examples, by name: a fallen robot, a done episode, ...
RUNTIME_MODULE = "glue_runtime"  # the runtime's package in the pod: /opt/simfleet/glue_runtime/*.py

# How long step() may take on all the examples together before the lint calls it stuck. Python starts in well
# under a second; a controller answers each example in milliseconds.
PROBE_TIMEOUT_SECONDS = 5.0

# The API server rejects a ConfigMap whose data exceeds 1 MiB (k8s.io/api core/v1 ConfigMap docs).
CONFIGMAP_LIMIT_BYTES = 1024 * 1024
# Room for the metadata, keys and JSON encoding of the ConfigMap around the files themselves.
CONFIGMAP_HEADROOM_BYTES = 16 * 1024


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """A contract schema or example from workloads/schemas, parsed."""
    loaded: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text())
    return loaded


def contract_document() -> dict[str, Any]:
    """What /glue/contract.json tells the glue runtime and any tooling in the pod."""
    return {
        "version": CONTRACT_VERSION,
        "entryPoint": ENTRY_POINT,
        "glue": GLUE_FILE,
        "observationSchema": OBSERVATION_SCHEMA,
        "actionSchema": ACTION_SCHEMA,
    }


@functools.cache
def contract_files() -> dict[str, str]:
    """The contract files every run's ConfigMap carries next to the glue source (file name -> text)."""
    return {
        CONTRACT_FILE: json.dumps(contract_document(), indent=2, sort_keys=True) + "\n",
        OBSERVATION_SCHEMA: (SCHEMA_DIR / OBSERVATION_SCHEMA).read_text(),
        ACTION_SCHEMA: (SCHEMA_DIR / ACTION_SCHEMA).read_text(),
    }


@functools.cache
def runtime_files() -> dict[str, str]:
    """The glue runtime package, for the run's ConfigMap (path under the mount -> text); the pod runs it with
    `python -m glue_runtime`."""
    return {f"{RUNTIME_MODULE}/{path.name}": path.read_text() for path in sorted(RUNTIME_PACKAGE.glob("*.py"))}


@functools.cache
def observation_examples() -> dict[str, dict[str, Any]]:
    """Every example observation by name; lint_glue runs step() on each."""
    return {"nominal": load_schema(OBSERVATION_EXAMPLE), **load_schema(OBSERVATION_EXAMPLES)}


def glue_size_limit() -> int:
    """The largest glue file that still fits in the run's ConfigMap beside the contract files."""
    # The glue travels alone in its ConfigMap (glue-<sha>); the runtime and the contract have their own.
    return CONFIGMAP_LIMIT_BYTES - len(GLUE_FILE) - CONFIGMAP_HEADROOM_BYTES


def schema_problems(instance: Any, schema_name: str) -> list[str]:
    """Every way `instance` breaks the named schema, as "at /json/pointer: reason" strings."""
    problems = []
    for error in sorted(_validator(schema_name).iter_errors(instance), key=lambda e: list(e.absolute_path)):
        pointer = "/" + "/".join(str(part) for part in error.absolute_path)
        problems.append(f"at {pointer}: {error.message}")
    return problems


@functools.cache
def _validator(schema_name: str) -> Any:
    from jsonschema import Draft202012Validator

    schema = load_schema(schema_name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def runtime_schema_problems(schema: Any, name: str = ACTION_SCHEMA) -> list[str]:
    """The pod validates actions with the runtime's small built-in validator (the glue image has no jsonschema),
    so the action schema may use only the keywords it implements."""
    return [
        f"contract: {name} uses {found}, which simfleet's glue runtime does not implement "
        "(workloads/glue_runtime/validator.py SUPPORTED_KEYWORDS)"
        for found in validator.unsupported_keywords(schema)
    ]


@functools.cache
def contract_problems() -> tuple[str, ...]:
    """The contract checked against itself: each example validates against its schema, and the action schema
    stays within what the glue runtime can validate."""
    problems = [
        f"contract: {OBSERVATION_EXAMPLE} {p}" for p in schema_problems(load_schema(OBSERVATION_EXAMPLE), OBSERVATION_SCHEMA)
    ]
    for name, example in load_schema(OBSERVATION_EXAMPLES).items():
        problems += [f"contract: {OBSERVATION_EXAMPLES} '{name}' {p}" for p in schema_problems(example, OBSERVATION_SCHEMA)]
    problems += [f"contract: action.example.json {p}" for p in schema_problems(load_schema("action.example.json"), ACTION_SCHEMA)]
    problems += runtime_schema_problems(load_schema(ACTION_SCHEMA))
    return tuple(problems)


def lint_glue(path: Path, *, probe_timeout: float = PROBE_TIMEOUT_SECONDS) -> list[str]:
    """Problems with the glue file at `path`, each a sentence a researcher can act on; [] when it is fine."""
    if not path.is_file():
        return ["file not found (glue paths are relative to the project root, like glue/trot.py)"]
    raw = path.read_bytes()
    limit = glue_size_limit()
    if len(raw) > limit:
        return [f"is {len(raw)} bytes; a run's ConfigMap holds at most {limit} bytes of glue (move data into the image)"]
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return [f"is not UTF-8 text (byte {err.start})"]
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as err:
        return [f"line {err.lineno}: {err.msg}"]
    # A `__main__` block is harmless and not reported: the runtime imports the file as `user_glue`, so the block
    # never runs in the pod (glue files written for the old bridge keep working, their own bridge unused).
    problems = _entry_point_problems(tree)
    if not problems:
        problems = list(_probe_once(str(path.resolve()), hashlib.sha256(raw).hexdigest(), probe_timeout))
    return problems + list(contract_problems())


@functools.lru_cache(maxsize=256)
def _probe_once(path: str, digest: str, timeout: float) -> tuple[str, ...]:
    """One probe per file content and process: a stack lints the same glue for many runs and every preview."""
    del digest  # part of the cache key only: an edited file is probed again
    return tuple(_probe_problems(Path(path), timeout))


def _entry_point_problems(tree: ast.Module) -> list[str]:
    definitions = [node for node in tree.body if _binds(node, ENTRY_POINT)]
    if not definitions:
        return [f"defines no top-level function {ENTRY_POINT}(observation); the glue runtime calls it once per control step"]
    # Python keeps the last binding, so that is the one the runtime will call.
    node = definitions[-1]
    where = f"line {node.lineno}"
    if isinstance(node, ast.AsyncFunctionDef):
        return [f"{where}: {ENTRY_POINT} must be a plain def, not async def (the glue runtime calls it synchronously)"]
    if not isinstance(node, ast.FunctionDef):
        return [f"{where}: {ENTRY_POINT} must be defined with def {ENTRY_POINT}(observation): at top level"]
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    required_keywords = [a.arg for a, default in zip(args.kwonlyargs, args.kw_defaults, strict=True) if default is None]
    problems = []
    if len(positional) != 1 or args.vararg is not None:
        names = ", ".join(a.arg for a in positional) or "none"
        problems.append(f"{where}: {ENTRY_POINT} must take exactly one positional parameter (the observation); it takes {names}")
    elif args.defaults:
        problems.append(f"{where}: {ENTRY_POINT}'s observation parameter must not have a default")
    if required_keywords:
        problems.append(
            f"{where}: {ENTRY_POINT} has required keyword-only parameters {required_keywords}; the glue runtime passes only the observation"
        )
    return problems


def _binds(node: ast.stmt, name: str) -> bool:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name == name
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    if isinstance(node, ast.AnnAssign | ast.AugAssign):
        return isinstance(node.target, ast.Name) and node.target.id == name
    if isinstance(node, ast.ImportFrom | ast.Import):
        return any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names)
    return False


def _probe_problems(path: Path, timeout: float) -> list[str]:
    """Run step() on every example observation in a separate process; report what it raised or returned wrong."""
    examples = observation_examples()
    with tempfile.TemporaryDirectory(prefix="simfleet-lint-") as workdir:
        # -I: no user site-packages, no PYTHON* variables, no current directory on sys.path. A session of its own,
        # so a timeout kills whatever the glue started too.
        process = subprocess.Popen(
            [sys.executable, "-I", str(PROBE), str(path.resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=workdir,
            env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"},
            start_new_session=True,
        )
        timed_out = False
        try:
            stdout, stderr = process.communicate(json.dumps(examples), timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
    events = [event for event in map(_event, stdout.splitlines()) if event is not None]
    problems: list[str] = []
    finished: set[str] = set()
    started: list[str] = []
    for event in events:
        if "import_error" in event:
            return [f"{_at(event)}importing the file raised {event['import_error']}"]
        if "started" in event:
            started.append(event["started"])
            continue
        name = event["example"]
        finished.add(name)
        where = f"example '{name}': "
        if "error" in event:
            problems.append(f"{where}{_at(event)}step raised {event['error']}")
        elif "not_json" in event:
            problems.append(f"{where}step returned a value that is not JSON ({event['not_json']})")
        else:
            problems += [f"{where}{p}" for p in schema_problems(event["action"], ACTION_SCHEMA)]
    stuck = [name for name in started if name not in finished]
    if timed_out:
        name = stuck[0] if stuck else None
        subject = f"example '{name}': step" if name else "importing the file"
        problems.append(
            f"{subject} did not return within {timeout:g} s (an endless loop, or a wait on something that never comes)"
        )
    elif process.returncode != 0 or len(finished) < len(examples):
        last = stderr.strip().splitlines()[-1:] or ["no output"]
        subject = f"example '{stuck[0]}': step" if stuck else "the glue file"
        problems.append(f"{subject} ended the linter's Python process (exit code {process.returncode}): {last[0]}")
    return problems


def _event(line: str) -> dict[str, Any] | None:
    """One line of the probe's protocol; None for anything else (a C extension writing to fd 1, say)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _at(event: dict[str, Any]) -> str:
    return f"line {event['line']}: " if event.get("line") else ""
