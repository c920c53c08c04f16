"""simfleet's glue runtime: runs a user's `step(observation) -> action` between unitree-sim and Monty.

    python /opt/simfleet/simfleet_glue.py /glue/glue.py

One self-contained file (it is shipped in the run's ConfigMap, whose keys cannot hold a `/`): the standard
library and pyzmq only, Python 3.11 or newer. A user's glue file defines only `step`; this runtime owns the
bridge, the clock, validation, checkpoints, the end-of-run handshake and the done marker.

What it does, in order
----------------------
1. Loads the glue file as the module `user_glue` and takes its `step`; loads `action.schema.json` from
   SIMFLEET_CONTRACT_DIR and checks that it uses only the JSON Schema keywords the built-in validator
   implements (anything else stops the run before it starts).
2. If /checkpoints/resume.json exists (written by fetch.sh when a replacement pod resumes from a partial
   checkpoint), only the rest of SIMFLEET_STOP_AFTER_SECONDS is run.
3. Control loop: newest observation from the simulator -> Monty's answer attached as observation["brain"]
   (skipped when later than SIMFLEET_BRAIN_TIMEOUT_MS) -> step() -> the action, validated against the action
   schema, to the simulator. Every SIMFLEET_CHECKPOINT_EVERY_SECONDS of wall-clock time, a partial checkpoint.
4. End (simulation time reached, or an observation with `done: true`): `finish` to the simulator and to Monty,
   wait for both acknowledgements, then the final save, then /artifacts/metrics/glue-summary.json, and only
   then the done marker that artifact-uploader waits for.
5. SIGTERM (deadline, node drain, spot reclaim): the loop stops at once, a partial checkpoint is saved, the
   sidecars are asked to finish with what time is left, and the marker says Interrupted.

The done marker is written on every exit path (SIGKILL aside), atomically, as JSON:
    {"status": "Succeeded"|"Failed"|"Interrupted", "exitCode": n, "reason": str|null, "steps": n,
     "finishAcks": {"sim": bool, "monty": bool}, "checkpointSaved": bool, "partialCheckpoint": bool}
`steps` counts the control steps of this pod; `partialCheckpoint` is true when this pod saved at least one.

Exit codes
----------
    0    Succeeded
    1    internal error of this runtime (a bug: the traceback is on stderr)
    2    bad configuration: an environment value that does not parse, a glue file without step(), or an action
         schema that uses a keyword the built-in validator does not implement
    3    the final checkpoint save failed (SIMFLEET_SAVE_CHECKPOINT=true)
    4    the simulator published no observation within SIMFLEET_STARTUP_TIMEOUT_SECONDS, or no step ran
    5    step() returned an invalid action (the first one ends the run; the reason names the step and field)
    6    the user's code raised (in step(), or while the glue file was imported); traceback on stderr
    143  interrupted by SIGTERM (a partial checkpoint was saved when Monty answered in time)

Environment
-----------
    SIMFLEET_OBS_ENDPOINT             tcp://127.0.0.1:5555  unitree-sim PUB -> glue SUB (CONFLATE: newest only)
    SIMFLEET_ACTION_ENDPOINT          tcp://127.0.0.1:5556  glue PUSH -> unitree-sim PULL
    SIMFLEET_MONTY_ENDPOINT           tcp://127.0.0.1:5557  glue REQ <-> monty REP
    SIMFLEET_SIM_CONTROL_ENDPOINT     tcp://127.0.0.1:5558  glue REQ <-> unitree-sim REP
    SIMFLEET_CONTRACT_DIR             /opt/simfleet         holds action.schema.json
    SIMFLEET_CHECKPOINTS_DIR          /checkpoints          resume.json, partial.*, out.mstate, .done
    SIMFLEET_ARTIFACTS_DIR            /artifacts            metrics/glue-summary.json goes under it
    SIMFLEET_STOP_AFTER_SECONDS       unset (until done)    simulation seconds this seed runs, resumed time included
    SIMFLEET_STARTUP_TIMEOUT_SECONDS  900                   wall seconds to wait for the first observation
    SIMFLEET_BRAIN_TIMEOUT_MS         50                    a later brain answer is skipped for that step
    SIMFLEET_CHECKPOINT_EVERY_SECONDS 0 (off)               wall seconds between partial checkpoints
    SIMFLEET_SAVE_CHECKPOINT          false                 save the final checkpoint (a failed save is exit 3)
    SIMFLEET_CHECKPOINT_OUT           <checkpoints>/out.mstate
    SIMFLEET_SAVE_TIMEOUT_SECONDS     600                   bound on each save (final and periodic)
    SIMFLEET_FINISH_TIMEOUT_SECONDS   120                   bound on each finish acknowledgement
    SIMFLEET_TERM_SAVE_SECONDS        90                    after SIGTERM: bound on the partial save and finish
    SIMFLEET_DONE_MARKER              <checkpoints>/.done

Files
-----
    <checkpoints>/resume.json           read: {"elapsedSeconds": s, "steps": n, "sequence": k, ...} (fetch.sh)
    <checkpoints>/partial.mstate        Monty saves to partial.mstate.tmp, renamed here once acknowledged
    <checkpoints>/partial.json          {"elapsedSeconds", "steps", "savedAt", "sequence"}, written after the
                                        rename; steps and elapsedSeconds include the resumed run
    <checkpoints>/out.mstate            the final checkpoint (saved to out.mstate.tmp, then renamed)
    <artifacts>/metrics/glue-summary.json
    <checkpoints>/.done                 the done marker, last

Image contract for `unitree-sim` and `monty`
--------------------------------------------
All sockets are ZeroMQ over TCP on localhost; the sidecars bind, glue connects, every message is one frame of
UTF-8 JSON. Both sidecars get SIMFLEET_ARTIFACTS_DIR (/artifacts) and write their files under
/artifacts/<kind>/ with kind one of logs, videos, metrics (anything else is not uploaded).

unitree-sim
    PUB  SIMFLEET_OBS_ENDPOINT            one observation per control step (observation.schema.json); the last
                                          one of an episode carries "done": true
    PULL SIMFLEET_ACTION_ENDPOINT         actions (action.schema.json)
    REP  SIMFLEET_SIM_CONTROL_ENDPOINT    {"command": "finish"} -> {"finished": true} once its videos and logs
                                          are flushed and closed; it may stop publishing after that
monty
    REP  SIMFLEET_MONTY_ENDPOINT
         {"observation": {...}}              -> {"brain": {...}}   Monty's output for that step (any object)
         {"command": "save", "path": P}      -> {"saved": P}       once P is completely written (P is under
                                                                   /checkpoints; glue renames it afterwards)
         {"command": "finish"}               -> {"finished": true} once its logs and metrics are flushed; Monty
                                                                   must still answer a save after finish
    Monty loads SIMFLEET_CHECKPOINT_IN (/checkpoints/in.mstate) at start when it exists.
Requests are answered in order; glue's REQ sockets are relaxed and correlated, so an answer that comes after
glue gave up on it is dropped, never mistaken for the answer to a later request. The kubelet stops both
sidecars (SIGTERM) only after glue and artifact-uploader have exited.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import json
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_CONFIG = 2
EXIT_SAVE_FAILED = 3
EXIT_NO_SIMULATION = 4
EXIT_INVALID_ACTION = 5
EXIT_USER_CODE = 6
EXIT_INTERRUPTED = 143  # 128 + SIGTERM, what a shell reports for a process killed by TERM

ACTION_SCHEMA = "action.schema.json"
POLL_SLICE_MS = 100  # longest a wait goes without looking at the SIGTERM flag


def log(message: str) -> None:
    print(f"glue: {message}", flush=True)


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


class ConfigError(Exception):
    """Something the run was given is unusable (exit 2)."""


@dataclass(frozen=True)
class Settings:
    obs_endpoint: str
    action_endpoint: str
    monty_endpoint: str
    sim_control_endpoint: str
    contract_dir: Path
    checkpoints_dir: Path
    artifacts_dir: Path
    stop_after: float  # simulation seconds of the whole seed; inf = until `done`
    startup_timeout: float
    brain_timeout: float
    checkpoint_every: float  # wall seconds; 0 = off
    save_checkpoint: bool
    checkpoint_out: Path
    save_timeout: float
    finish_timeout: float
    term_save_timeout: float
    done_marker: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        problems: list[str] = []

        def number(name: str, default: float, *, allow_inf: bool = False) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                problems.append(f"{name}={raw!r} is not a number")
                return default
            if math.isnan(value) or value < 0 or (math.isinf(value) and not allow_inf):
                problems.append(f"{name}={raw!r} must be a finite number >= 0")
                return default
            return value

        def flag(name: str) -> bool:
            raw = env.get(name, "false").strip().lower()
            if raw not in ("true", "false", ""):
                problems.append(f"{name}={raw!r} must be true or false")
            return raw == "true"

        checkpoints = Path(env.get("SIMFLEET_CHECKPOINTS_DIR") or "/checkpoints")
        settings = cls(
            obs_endpoint=env.get("SIMFLEET_OBS_ENDPOINT") or "tcp://127.0.0.1:5555",
            action_endpoint=env.get("SIMFLEET_ACTION_ENDPOINT") or "tcp://127.0.0.1:5556",
            monty_endpoint=env.get("SIMFLEET_MONTY_ENDPOINT") or "tcp://127.0.0.1:5557",
            sim_control_endpoint=env.get("SIMFLEET_SIM_CONTROL_ENDPOINT") or "tcp://127.0.0.1:5558",
            contract_dir=Path(env.get("SIMFLEET_CONTRACT_DIR") or "/opt/simfleet"),
            checkpoints_dir=checkpoints,
            artifacts_dir=Path(env.get("SIMFLEET_ARTIFACTS_DIR") or "/artifacts"),
            stop_after=number("SIMFLEET_STOP_AFTER_SECONDS", math.inf, allow_inf=True),
            startup_timeout=number("SIMFLEET_STARTUP_TIMEOUT_SECONDS", 900),
            brain_timeout=number("SIMFLEET_BRAIN_TIMEOUT_MS", 50) / 1000,
            checkpoint_every=number("SIMFLEET_CHECKPOINT_EVERY_SECONDS", 0),
            save_checkpoint=flag("SIMFLEET_SAVE_CHECKPOINT"),
            checkpoint_out=Path(env.get("SIMFLEET_CHECKPOINT_OUT") or checkpoints / "out.mstate"),
            save_timeout=number("SIMFLEET_SAVE_TIMEOUT_SECONDS", 600),
            finish_timeout=number("SIMFLEET_FINISH_TIMEOUT_SECONDS", 120),
            term_save_timeout=number("SIMFLEET_TERM_SAVE_SECONDS", 90),
            done_marker=Path(env.get("SIMFLEET_DONE_MARKER") or checkpoints / ".done"),
        )
        if problems:
            raise ConfigError("; ".join(problems))
        return settings


# ---------------------------------------------------------------------------------------------
# Action validation: the JSON Schema keywords the contract uses, nothing more
# ---------------------------------------------------------------------------------------------

# Keywords that only describe; they never change whether an instance is valid.
ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "examples", "default", "deprecated", "readOnly", "writeOnly"}
)
SUPPORTED_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
    }
)
_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")


class UnsupportedSchema(Exception):
    """The schema uses JSON Schema the built-in validator does not implement."""


def unsupported_keywords(schema: Any, pointer: str = "") -> list[str]:
    """Every place `schema` uses a keyword outside SUPPORTED_KEYWORDS | ANNOTATIONS, as "<keyword> at <pointer>"."""
    if isinstance(schema, bool):
        return []
    if not isinstance(schema, dict):
        return [f"a schema that is neither an object nor a boolean at {pointer or '/'}"]
    found: list[str] = []
    for keyword, value in schema.items():
        here = f"{pointer}/{keyword}"
        if keyword in ANNOTATIONS:
            continue
        if keyword not in SUPPORTED_KEYWORDS:
            found.append(f"'{keyword}' at {pointer or '/'}")
        elif keyword == "properties" and isinstance(value, dict):
            for name, sub in value.items():
                found += unsupported_keywords(sub, f"{here}/{name}")
        elif keyword in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            for index, sub in enumerate(value):
                found += unsupported_keywords(sub, f"{here}/{index}")
        elif keyword in ("additionalProperties", "items", "not", "if", "then", "else"):
            found += unsupported_keywords(value, here)
        elif keyword == "type":
            types = value if isinstance(value, list) else [value]
            found += [f"unknown type {t!r} at {here}" for t in types if t not in _TYPES]
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if name == "number":
        return _is_number(value)
    # integer: JSON Schema counts 1.0 as an integer
    return _is_number(value) and (isinstance(value, int) or float(value).is_integer())


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Validator:
    """Validates JSON values against a schema restricted to SUPPORTED_KEYWORDS (checked once, at construction)."""

    def __init__(self, schema: Any) -> None:
        problems = unsupported_keywords(schema)
        if problems:
            raise UnsupportedSchema(
                "the schema uses JSON Schema that simfleet's glue runtime does not implement: " + ", ".join(problems)
            )
        self.schema = schema

    def errors(self, instance: Any) -> list[tuple[str, str]]:
        """(JSON pointer, message) for every violation, in schema order; [] when the instance is valid."""
        out: list[tuple[str, str]] = []
        self._check(self.schema, instance, "", out)
        return out

    def _valid(self, schema: Any, instance: Any) -> bool:
        found: list[tuple[str, str]] = []
        self._check(schema, instance, "", found)
        return not found

    def _check(self, schema: Any, instance: Any, at: str, out: list[tuple[str, str]]) -> None:
        where = at or "/"
        if schema is True:
            return
        if schema is False:
            out.append((where, f"{_show(instance)} is not allowed here"))
            return
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_is_type(instance, t) for t in types):
                out.append((where, f"{_show(instance)} is not of type {' or '.join(repr(t) for t in types)}"))
        if "enum" in schema and not any(_json_equal(instance, option) for option in schema["enum"]):
            out.append((where, f"{_show(instance)} is not one of {_show(schema['enum'])}"))
        if "const" in schema and not _json_equal(instance, schema["const"]):
            out.append((where, f"{_show(schema['const'])} was expected, not {_show(instance)}"))
        if _is_number(instance):
            self._check_bounds(schema, instance, where, out)
        if isinstance(instance, dict):
            self._check_object(schema, instance, at, out)
        if isinstance(instance, list):
            self._check_array(schema, instance, at, out)
        for sub in schema.get("allOf", []):
            self._check(sub, instance, at, out)
        if "anyOf" in schema and not any(self._valid(sub, instance) for sub in schema["anyOf"]):
            out.append((where, f"{_show(instance)} matches none of the allowed forms (anyOf)"))
        if "oneOf" in schema:
            matches = sum(self._valid(sub, instance) for sub in schema["oneOf"])
            if matches != 1:
                detail = "none" if matches == 0 else f"{matches}"
                out.append((where, f"{_show(instance)} must match exactly one allowed form (oneOf), it matches {detail}"))
        if "not" in schema and self._valid(schema["not"], instance):
            out.append((where, f"{_show(instance)} matches a form that is not allowed (not)"))
        if "if" in schema:
            branch = "then" if self._valid(schema["if"], instance) else "else"
            if branch in schema:
                self._check(schema[branch], instance, at, out)

    @staticmethod
    def _check_bounds(schema: dict[str, Any], value: float, where: str, out: list[tuple[str, str]]) -> None:
        if "minimum" in schema and value < schema["minimum"]:
            out.append((where, f"{value} is less than the minimum of {schema['minimum']}"))
        if "maximum" in schema and value > schema["maximum"]:
            out.append((where, f"{value} is greater than the maximum of {schema['maximum']}"))
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            out.append((where, f"{value} must be greater than {schema['exclusiveMinimum']}"))
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            out.append((where, f"{value} must be less than {schema['exclusiveMaximum']}"))

    def _check_object(self, schema: dict[str, Any], instance: dict[str, Any], at: str, out: list[tuple[str, str]]) -> None:
        for name in schema.get("required", []):
            if name not in instance:
                out.append((at or "/", f"{name!r} is a required property"))
        properties = schema.get("properties", {})
        for name, sub in properties.items():
            if name in instance:
                self._check(sub, instance[name], f"{at}/{name}", out)
        extra_schema = schema.get("additionalProperties", True)
        extras = [name for name in instance if name not in properties]
        if extra_schema is False and extras:
            listed = ", ".join(repr(name) for name in extras)
            out.append((at or "/", f"additional properties are not allowed ({listed} unexpected)"))
        elif isinstance(extra_schema, dict):
            for name in extras:
                self._check(extra_schema, instance[name], f"{at}/{name}", out)

    def _check_array(self, schema: dict[str, Any], instance: list[Any], at: str, out: list[tuple[str, str]]) -> None:
        if "minItems" in schema and len(instance) < schema["minItems"]:
            out.append((at or "/", f"has {len(instance)} items, fewer than {schema['minItems']}"))
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            out.append((at or "/", f"has {len(instance)} items, more than {schema['maxItems']}"))
        if "items" in schema:
            for index, item in enumerate(instance):
                self._check(schema["items"], item, f"{at}/{index}", out)


def load_validator(contract_dir: Path) -> Validator:
    path = contract_dir / ACTION_SCHEMA
    try:
        schema = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read the action schema {path}: {err}") from err
    try:
        return Validator(schema)
    except UnsupportedSchema as err:
        raise ConfigError(f"{path}: {err}") from err


def encode_action(action: Any, validator: Validator) -> tuple[bytes | None, str | None]:
    """The action as the JSON the simulator receives, or the reason it cannot be sent.

    What is validated is the JSON itself (tuples become arrays, NaN is refused), since that is what arrives.
    """
    try:
        text = json.dumps(action, allow_nan=False)
    except (TypeError, ValueError) as err:
        return None, f"is not JSON ({err})"
    problems = validator.errors(json.loads(text))
    if problems:
        pointer, message = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return None, f"at {pointer}: {message}{more}"
    return text.encode(), None


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def write_json_atomic(path: Path, document: Mapping[str, Any]) -> None:
    """Readers see the old file or the whole new one, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        handle.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_step(path: Path) -> Callable[[Any], Any]:
    """The user's step(); ConfigError if the file or the function is missing, UserCodeError if import raised."""
    if not path.is_file():
        raise ConfigError(f"glue file {path} does not exist")
    spec = importlib.util.spec_from_file_location("user_glue", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules["user_glue"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        traceback.print_exc()
        raise UserCodeError(f"importing {path} raised {type(err).__name__}: {err}") from err
    step = getattr(module, "step", None)
    if not callable(step):
        raise ConfigError(f"{path} defines no step(observation) function")
    return step  # type: ignore[no-any-return]


class UserCodeError(Exception):
    """The user's code raised (exit 6)."""


# ---------------------------------------------------------------------------------------------
# The ZeroMQ bridge
# ---------------------------------------------------------------------------------------------


class Bridge:
    """The four localhost sockets. pyzmq is imported here so the validator above works without it."""

    def __init__(self, settings: Settings) -> None:
        import zmq

        self.zmq = zmq
        self.context = zmq.Context()
        self.observations = self.context.socket(zmq.SUB)
        # CONFLATE keeps only the newest observation: a controller that fell behind acts on the present.
        self.observations.setsockopt(zmq.CONFLATE, 1)
        self.observations.setsockopt(zmq.SUBSCRIBE, b"")
        self.observations.connect(settings.obs_endpoint)
        self.actions = self.context.socket(zmq.PUSH)
        self.actions.connect(settings.action_endpoint)
        self.monty = self._requester(settings.monty_endpoint)
        self.sim = self._requester(settings.sim_control_endpoint)

    def _requester(self, endpoint: str) -> Any:
        socket = self.context.socket(self.zmq.REQ)
        # Relaxed: a new request may follow one that got no answer (a skipped brain step, a save that timed out)
        # instead of wedging the socket. Correlated: the late answer to the old request is then dropped.
        socket.setsockopt(self.zmq.REQ_RELAXED, 1)
        socket.setsockopt(self.zmq.REQ_CORRELATE, 1)
        socket.connect(endpoint)
        return socket

    def observation(self, timeout: float) -> bytes | None:
        if self.observations.poll(int(timeout * 1000)):
            data: bytes = self.observations.recv()
            return data
        return None

    def send_action(self, payload: bytes) -> bool:
        try:
            self.actions.send(payload, self.zmq.NOBLOCK)
        except self.zmq.Again:
            return False  # the simulator is not pulling (queue full): never block the control loop on it
        return True

    def send_request(self, socket: Any, message: Mapping[str, Any]) -> bool:
        try:
            socket.send(json.dumps(message).encode(), self.zmq.NOBLOCK)
        except self.zmq.Again:
            return False
        return True

    def read_reply(self, socket: Any) -> dict[str, Any] | None:
        try:
            reply = json.loads(socket.recv(self.zmq.NOBLOCK))
        except (self.zmq.Again, ValueError):
            return None
        return reply if isinstance(reply, dict) else None

    def close(self) -> None:
        for socket in (self.observations, self.actions, self.monty, self.sim):
            socket.close(linger=0)
        self.context.term()


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


class Terminated(BaseException):
    """SIGTERM arrived while the user's step() was running; BaseException so `except Exception` in it cannot eat it."""


@dataclass
class Stats:
    steps: int = 0
    stops: int = 0
    max_nociceptor: float = 0.0
    energy_joules: float = 0.0
    sim_seconds: float = 0.0  # simulated in this pod
    brain_answers: int = 0
    brain_skipped: int = 0
    actions_dropped: int = 0
    bad_observations: int = 0
    partial_checkpoints: int = 0
    partial_failures: int = 0


@dataclass
class Outcome:
    status: str = "Failed"
    exit_code: int = EXIT_INTERNAL
    reason: str | None = "glue runtime ended unexpectedly"
    finish_acks: dict[str, bool] = field(default_factory=lambda: {"sim": False, "monty": False})
    checkpoint_saved: bool = False

    def set(self, exit_code: int, reason: str | None) -> None:
        self.exit_code = exit_code
        self.reason = reason
        self.status = {EXIT_OK: "Succeeded", EXIT_INTERRUPTED: "Interrupted"}.get(exit_code, "Failed")


class Runtime:
    def __init__(self, env: Mapping[str, str], glue_path: Path) -> None:
        self.env = env
        self.glue_path = glue_path
        self.settings: Settings | None = None
        self.stats = Stats()
        self.outcome = Outcome()
        self.terminated_at: float | None = None
        self.in_step = False
        self.resumed_seconds = 0.0
        self.resumed_steps = 0
        self.sequence = 0
        self.last_partial_at: float | None = None

    # -- signals ---------------------------------------------------------------------------

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        # No printing here: the handler may run in the middle of another print to the same stream.
        if self.terminated_at is None:
            self.terminated_at = time.monotonic()
        if self.in_step:
            self.in_step = False
            raise Terminated()  # a step() that never returns must not eat the grace period

    def _cap(self, deadline: float) -> float:
        """A deadline, shortened to the SIGTERM budget once SIGTERM has arrived."""
        if self.terminated_at is None or self.settings is None:
            return deadline
        return min(deadline, self.terminated_at + self.settings.term_save_timeout)

    # -- entry -----------------------------------------------------------------------------

    def run(self) -> int:
        # As PID 1 in its container Python gets no default SIGTERM action: without a handler TERM is ignored
        # and the kubelet's SIGKILL at the end of the grace period would lose everything.
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        try:
            self._run()
        except Terminated:
            # Only reachable if TERM lands in the instant around step(); the loop normally handles it.
            self.outcome.set(EXIT_INTERRUPTED, "terminated (SIGTERM)")
        except Exception as err:
            traceback.print_exc()
            self.outcome.set(EXIT_INTERNAL, f"glue runtime error: {type(err).__name__}: {err}")
        finally:
            self._finish_files()
        log(f"exit {self.outcome.exit_code} {self.outcome.status}" + (f": {self.outcome.reason}" if self.outcome.reason else ""))
        return self.outcome.exit_code

    def _run(self) -> None:
        try:
            self.settings = settings = Settings.from_env(self.env)
            step = load_step(self.glue_path)
            validator = load_validator(settings.contract_dir)
            self._read_resume(settings)
        except ConfigError as err:
            self.outcome.set(EXIT_CONFIG, str(err))
            return
        except UserCodeError as err:
            self.outcome.set(EXIT_USER_CODE, str(err))
            return
        budget = settings.stop_after - self.resumed_seconds
        log(
            f"start: {self.glue_path}, run {self.env.get('SIMFLEET_RUN', '?')} seed {self._seed()}, "
            f"{_seconds(settings.stop_after)} of simulation"
            + (f", resuming at {self.resumed_seconds:g} s ({_seconds(max(0.0, budget))} left)" if self.resumed_seconds else "")
        )
        bridge = Bridge(settings)
        try:
            if budget <= 0:
                # A previous pod checkpointed at or past the stop time and died before it finished: nothing is
                # left to simulate, only the end of the run.
                log("nothing left to simulate; finishing")
                self._end(bridge, settings, allow_zero_steps=True)
                return
            if self._loop(bridge, settings, step, validator, budget):
                self._end(bridge, settings)
        finally:
            bridge.close()

    def _seed(self) -> str:
        seed = self.env.get("SIMFLEET_SEED")
        if seed:
            return seed
        try:
            seeds = json.loads(self.env.get("SIMFLEET_SEEDS", "[]"))
            return str(seeds[int(self.env.get("JOB_COMPLETION_INDEX", "0"))])
        except (ValueError, IndexError, TypeError):
            return "?"

    def _read_resume(self, settings: Settings) -> None:
        path = settings.checkpoints_dir / "resume.json"
        if not path.exists():
            return
        try:
            resume = json.loads(path.read_text())
            self.resumed_seconds = float(resume["elapsedSeconds"])
            self.resumed_steps = int(resume.get("steps", 0))
            self.sequence = int(resume.get("sequence", 0))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{path} is not a resume record with elapsedSeconds: {err}") from err

    # -- the control loop ------------------------------------------------------------------

    def _loop(self, bridge: Bridge, settings: Settings, step: Callable[[Any], Any], validator: Validator, budget: float) -> bool:
        """Step until the budget is spent or the episode is done; False when the run already has its outcome."""
        started = time.monotonic()
        first_at: float | None = None
        last_time: float | None = None
        next_partial = math.inf
        while True:
            if self.terminated_at is not None:
                self._interrupt(bridge, settings)
                return False
            raw = bridge.observation(POLL_SLICE_MS / 1000)
            now = time.monotonic()
            observation = None if raw is None else self._parse(raw)
            if observation is None:
                if first_at is None and now - started >= settings.startup_timeout:
                    self.outcome.set(
                        EXIT_NO_SIMULATION, f"the simulator published no observation within {settings.startup_timeout:g} s"
                    )
                    return False
                continue
            sim_time = _float(observation.get("time"), last_time or 0.0)
            if first_at is None:
                first_at = now
                if settings.checkpoint_every > 0:
                    next_partial = now + settings.checkpoint_every
                log(f"first observation (simulation time {sim_time:g} s) after {now - started:.1f} s")
            elif last_time is not None:
                dt = max(0.0, sim_time - last_time)
                self.stats.sim_seconds += dt
                self.stats.energy_joules += _float(observation.get("energy_rate"), 0.0) * dt
            last_time = sim_time
            self._ask_brain(bridge, settings, observation)

            n = self.stats.steps + 1
            if self.terminated_at is not None:
                continue  # the top of the loop handles it; do not start a step that may never return
            try:
                self.in_step = True
                action = step(observation)
                self.in_step = False
            except Terminated:
                self._interrupt(bridge, settings)
                return False
            except Exception as err:
                self.in_step = False
                print(f"glue: step {n} raised:", file=sys.stderr, flush=True)
                traceback.print_exc()
                self.outcome.set(EXIT_USER_CODE, f"step {n} raised {type(err).__name__}: {err}")
                self._finish_sidecars(bridge, settings)
                return False
            finally:
                self.in_step = False
            payload, problem = encode_action(action, validator)
            if payload is None:
                self.outcome.set(EXIT_INVALID_ACTION, f"step {n} returned an invalid action {problem}")
                self._finish_sidecars(bridge, settings)
                return False
            if not bridge.send_action(payload):
                self.stats.actions_dropped += 1
            self._account(observation, action)

            if observation.get("done") is True:
                log(f"episode done at step {n} (simulation time {sim_time:g} s)")
                return True
            if self.stats.sim_seconds >= budget:
                log(f"simulation time reached at step {n} ({self.resumed_seconds + self.stats.sim_seconds:g} s)")
                return True
            if now >= next_partial:
                self._save_partial(bridge, settings)
                next_partial = time.monotonic() + settings.checkpoint_every

    def _parse(self, raw: bytes) -> dict[str, Any] | None:
        try:
            observation = json.loads(raw)
        except ValueError:
            observation = None
        if not isinstance(observation, dict):
            self.stats.bad_observations += 1
            if self.stats.bad_observations == 1:
                log(f"ignoring an observation that is not a JSON object: {raw[:80]!r}")
            return None
        return observation

    def _ask_brain(self, bridge: Bridge, settings: Settings, observation: dict[str, Any]) -> None:
        reply = self._request(bridge, bridge.monty, {"observation": observation}, settings.brain_timeout)
        if reply is None:
            self.stats.brain_skipped += 1
            return
        brain = reply.get("brain")
        observation["brain"] = brain if isinstance(brain, dict) else {}
        self.stats.brain_answers += 1

    def _account(self, observation: dict[str, Any], action: Any) -> None:
        self.stats.steps += 1
        if isinstance(action, dict) and action.get("cmd_type") == "stop":
            self.stats.stops += 1
        self.stats.max_nociceptor = max(self.stats.max_nociceptor, _float(observation.get("nociceptor"), 0.0))

    # -- requests --------------------------------------------------------------------------

    def _request(self, bridge: Bridge, socket: Any, message: Mapping[str, Any], timeout: float) -> dict[str, Any] | None:
        """Send and wait for the answer, in slices so SIGTERM can shorten the wait (see _cap)."""
        if not bridge.send_request(socket, message):
            return None
        deadline = time.monotonic() + timeout
        while True:
            left = self._cap(deadline) - time.monotonic()
            if left <= 0:
                return None
            if socket.poll(int(min(left * 1000, POLL_SLICE_MS)) or 1):
                reply = bridge.read_reply(socket)
                if reply is not None:
                    return reply

    def _save(self, bridge: Bridge, target: Path, timeout: float) -> str | None:
        """Ask Monty to save to target.tmp, then rename it to target; the problem, or None once it is there."""
        tmp = target.with_name(target.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        reply = self._request(bridge, bridge.monty, {"command": "save", "path": str(tmp)}, timeout)
        if reply is None:
            return f"monty did not confirm the save within {timeout:g} s"
        if reply.get("saved") != str(tmp):
            return f"monty answered the save with {_show(reply)}"
        if not tmp.is_file():
            return f"monty confirmed the save but {tmp} does not exist"
        os.replace(tmp, target)
        return None

    def _save_partial(self, bridge: Bridge, settings: Settings, timeout: float | None = None) -> bool:
        problem = self._save(bridge, settings.checkpoints_dir / "partial.mstate", timeout or settings.save_timeout)
        if problem is not None:
            self.stats.partial_failures += 1
            log(f"partial checkpoint failed, the run goes on: {problem}")
            return False
        self.sequence += 1
        elapsed = self.resumed_seconds + self.stats.sim_seconds
        write_json_atomic(
            settings.checkpoints_dir / "partial.json",
            {
                "elapsedSeconds": round(elapsed, 6),
                "steps": self.resumed_steps + self.stats.steps,
                "savedAt": utc_now(),
                "sequence": self.sequence,
            },
        )
        self.stats.partial_checkpoints += 1
        self.last_partial_at = time.monotonic()
        log(f"partial checkpoint {self.sequence} saved at {elapsed:g} s of simulation, step {self.stats.steps}")
        return True

    def _finish_sidecars(self, bridge: Bridge, settings: Settings) -> None:
        """`finish` to both sidecars at once; wait for each answer up to the finish timeout."""
        pending = {}
        for name, socket in (("sim", bridge.sim), ("monty", bridge.monty)):
            if bridge.send_request(socket, {"command": "finish"}):
                pending[name] = socket
        deadline = time.monotonic() + settings.finish_timeout
        poller = bridge.zmq.Poller()
        for socket in pending.values():
            poller.register(socket, bridge.zmq.POLLIN)
        while pending:
            left = self._cap(deadline) - time.monotonic()
            if left <= 0:
                break
            ready = dict(poller.poll(int(min(left * 1000, POLL_SLICE_MS)) or 1))
            for name, socket in list(pending.items()):
                if socket in ready:
                    reply = bridge.read_reply(socket)
                    if reply is not None:
                        self.outcome.finish_acks[name] = reply.get("finished") is True
                        poller.unregister(socket)
                        del pending[name]
        for name in pending:
            log(f"no finish acknowledgement from {name} within {settings.finish_timeout:g} s; going on")
        acks = self.outcome.finish_acks
        log(f"finish acknowledged: sim {_yes(acks['sim'])}, monty {_yes(acks['monty'])}")

    # -- endings ---------------------------------------------------------------------------

    def _end(self, bridge: Bridge, settings: Settings, *, allow_zero_steps: bool = False) -> None:
        self._finish_sidecars(bridge, settings)
        if settings.save_checkpoint:
            problem = self._save(bridge, settings.checkpoint_out, settings.save_timeout)
            if problem is not None:
                if self.terminated_at is not None:
                    self.outcome.set(EXIT_INTERRUPTED, f"terminated (SIGTERM) during the final save: {problem}")
                else:
                    self.outcome.set(EXIT_SAVE_FAILED, f"the final checkpoint save failed: {problem}")
                return
            self.outcome.checkpoint_saved = True
            log(f"final checkpoint saved to {settings.checkpoint_out}")
        if self.stats.steps == 0 and not allow_zero_steps:
            self.outcome.set(EXIT_NO_SIMULATION, "the run ended after zero steps")
            return
        self.outcome.set(EXIT_OK, None)

    def _interrupt(self, bridge: Bridge, settings: Settings) -> None:
        """After SIGTERM: partial save, then finish; every wait is capped so all of it fits in TERM_SAVE_SECONDS."""
        assert self.terminated_at is not None
        n = self.stats.steps
        log(f"SIGTERM at step {n}: saving a partial checkpoint, then finishing")
        if self.last_partial_at is not None and self.last_partial_at >= self.terminated_at:
            saved = True  # a periodic save that was under way when TERM came is as fresh as it gets
        elif n == 0:
            saved = False  # no step ran in this pod: the brain is still what it loaded, nothing to save
        else:
            saved = self._save_partial(bridge, settings, timeout=min(settings.save_timeout, settings.term_save_timeout))
        if n > 0:
            self._finish_sidecars(bridge, settings)
        self.outcome.set(
            EXIT_INTERRUPTED,
            f"terminated (SIGTERM) after {n} steps and {self.resumed_seconds + self.stats.sim_seconds:g} s of simulation; "
            + ("partial checkpoint saved" if saved else "no partial checkpoint saved"),
        )

    def _finish_files(self) -> None:
        """Summary, then the done marker (always last). Falls back to the default paths if settings never parsed."""
        settings = self.settings
        checkpoints = settings.checkpoints_dir if settings else Path(self.env.get("SIMFLEET_CHECKPOINTS_DIR") or "/checkpoints")
        artifacts = settings.artifacts_dir if settings else Path(self.env.get("SIMFLEET_ARTIFACTS_DIR") or "/artifacts")
        marker = settings.done_marker if settings else Path(self.env.get("SIMFLEET_DONE_MARKER") or checkpoints / ".done")
        outcome, stats = self.outcome, self.stats
        summary = {
            "status": outcome.status,
            "exit_code": outcome.exit_code,
            "reason": outcome.reason,
            "steps": stats.steps,
            "stops": stats.stops,
            "max_nociceptor": stats.max_nociceptor,
            "energy_joules": round(stats.energy_joules, 6),
            "sim_seconds": round(stats.sim_seconds, 6),
            "resumed_seconds": self.resumed_seconds,
            "elapsed_seconds": round(self.resumed_seconds + stats.sim_seconds, 6),
            "finish_acks": dict(outcome.finish_acks),
            "checkpoint_saved": outcome.checkpoint_saved,
            "partial_checkpoints": stats.partial_checkpoints,
            "partial_failures": stats.partial_failures,
            "brain_answers": stats.brain_answers,
            "brain_skipped": stats.brain_skipped,
            "actions_dropped": stats.actions_dropped,
            "bad_observations": stats.bad_observations,
        }
        try:
            write_json_atomic(artifacts / "metrics" / "glue-summary.json", summary)
        except OSError as err:
            log(f"could not write the summary: {err}")
        write_json_atomic(
            marker,
            {
                "status": outcome.status,
                "exitCode": outcome.exit_code,
                "reason": outcome.reason,
                "steps": stats.steps,
                "finishAcks": dict(outcome.finish_acks),
                "checkpointSaved": outcome.checkpoint_saved,
                "partialCheckpoint": stats.partial_checkpoints > 0,
            },
        )


def _float(value: Any, default: float) -> float:
    return float(value) if _is_number(value) and math.isfinite(value) else default


def _seconds(value: float) -> str:
    return "no time limit" if math.isinf(value) else f"{value:g} s"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: simfleet_glue.py /glue/glue.py", file=sys.stderr)
        return EXIT_CONFIG
    return Runtime(os.environ, Path(argv[1])).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
