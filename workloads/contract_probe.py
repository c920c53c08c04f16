"""Runs a glue file's step() on the contract's example observations, for workloads/contract.lint_glue.

    python -I workloads/contract_probe.py GLUE_FILE  < {"<example name>": observation, ...}

Standard library only, in a process of its own, so a step() that loops forever or kills its interpreter is
reported by the linter instead of hanging or ending the plan. Writes one JSON line per event to stdout (the
user's own prints go to stderr): {"started": name} before each example, then {"example": name, "action": ...}
or {"example": name, "error": ..., "line": n}; {"import_error": ..., "line": n} if the file does not import.
The glue is imported as `user_glue`, as the runtime in the pod does, so its `__main__` block never runs.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import socket
import sys
import traceback
from typing import Any, TextIO


def _offline(*_args: Any, **_kwargs: Any) -> Any:
    raise OSError("the glue linter runs step() without network access")


def _cut_network() -> None:
    # Not a sandbox (the glue is the user's own code, deployed by the same user): it keeps a lint from reaching
    # out to the network by accident.
    for name in ("connect", "connect_ex", "bind", "sendto"):
        setattr(socket.socket, name, _offline)
    socket.create_connection = _offline
    socket.getaddrinfo = _offline


def _line(err: BaseException, glue: str) -> int | None:
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == glue]
    return frames[-1].lineno if frames else None


def _describe(err: BaseException) -> str:
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def main(glue: str, out: TextIO) -> None:
    def emit(event: dict[str, Any]) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    examples: dict[str, Any] = json.load(sys.stdin)
    _cut_network()
    with contextlib.redirect_stdout(sys.stderr):
        spec = importlib.util.spec_from_file_location("user_glue", glue)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["user_glue"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as err:  # SystemExit and KeyboardInterrupt from user code are findings too
            emit({"import_error": _describe(err), "line": _line(err, glue)})
            return
        step = getattr(module, "step", None)
        if not callable(step):
            emit({"import_error": "the module has no step() once imported", "line": None})
            return
        for name, observation in examples.items():
            emit({"started": name})
            try:
                action = step(copy.deepcopy(observation))
            except BaseException as err:
                emit({"example": name, "error": _describe(err), "line": _line(err, glue)})
                continue
            try:
                emit({"example": name, "action": json.loads(json.dumps(action, allow_nan=False))})
            except (TypeError, ValueError) as err:
                emit({"example": name, "not_json": str(err)})


if __name__ == "__main__":
    main(sys.argv[1], sys.stdout)
