"""The glue contract: observation/action JSON Schemas, the entry point, and the static lint of a user's glue file.

A glue file is plain Python that runs as a script in the `glue` container (`python /glue/glue.py`). It must
define `step(observation) -> action` at top level, and start its ZeroMQ bridge under
`if __name__ == "__main__":` (glue/trot.py is the reference). The lint never imports or runs the file: it
parses it, so linting needs neither the bridge's dependencies nor a sandbox.
"""

from __future__ import annotations

import ast
import functools
import json
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
CONTRACT_VERSION = 1
ENTRY_POINT = "step"

# File names inside the run's ConfigMap and, after checkpoint-fetch copies them, inside /glue.
GLUE_FILE = "glue.py"
CONTRACT_FILE = "contract.json"
OBSERVATION_SCHEMA = "observation.schema.json"
ACTION_SCHEMA = "action.schema.json"

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
    """What /glue/contract.json tells the bridge and any tooling in the pod."""
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


def glue_size_limit() -> int:
    """The largest glue file that still fits in the run's ConfigMap beside the contract files."""
    contract_bytes = sum(len(k) + len(v.encode()) for k, v in contract_files().items())
    return CONFIGMAP_LIMIT_BYTES - contract_bytes - CONFIGMAP_HEADROOM_BYTES


def schema_problems(instance: Any, schema_name: str) -> list[str]:
    """Every way `instance` breaks the named schema, as "at /json/pointer: reason" strings."""
    from jsonschema import Draft202012Validator

    schema = load_schema(schema_name)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path)):
        pointer = "/" + "/".join(str(part) for part in error.absolute_path)
        problems.append(f"at {pointer}: {error.message}")
    return problems


@functools.cache
def contract_problems() -> tuple[str, ...]:
    """The contract checked against itself: each example validates against its schema."""
    problems = [
        f"contract: observation.example.json {p}"
        for p in schema_problems(load_schema("observation.example.json"), OBSERVATION_SCHEMA)
    ]
    problems += [f"contract: action.example.json {p}" for p in schema_problems(load_schema("action.example.json"), ACTION_SCHEMA)]
    return tuple(problems)


def lint_glue(path: Path) -> list[str]:
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
    return _entry_point_problems(tree) + _main_guard_problems(tree) + list(contract_problems())


def _entry_point_problems(tree: ast.Module) -> list[str]:
    definitions = [node for node in tree.body if _binds(node, ENTRY_POINT)]
    if not definitions:
        return [f"defines no top-level function {ENTRY_POINT}(observation); the bridge calls it once per control step"]
    # Python keeps the last binding, so that is the one the bridge will call.
    node = definitions[-1]
    where = f"line {node.lineno}"
    if isinstance(node, ast.AsyncFunctionDef):
        return [f"{where}: {ENTRY_POINT} must be a plain def, not async def (the bridge calls it synchronously)"]
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
            f"{where}: {ENTRY_POINT} has required keyword-only parameters {required_keywords}; the bridge passes only the observation"
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


def _main_guard_problems(tree: ast.Module) -> list[str]:
    # Without a main block the glue container would exit at once and the run would "succeed" having done nothing.
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_test(node.test):
            return []
    return [
        'has no `if __name__ == "__main__":` block; the glue container runs the file as a script, so it must start '
        "the bridge there (copy the block at the end of glue/trot.py)"
    ]


def _is_main_test(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    has_name = any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
    has_main = any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)
    return has_name and has_main
