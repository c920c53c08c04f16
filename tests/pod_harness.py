"""What the pod tests share: moto's S3 server on 127.0.0.1 (with injected faults), a pod's env to run the scripts in,
the AWS CLI versions, and the run pod's processes (the glue runtime between fake sidecars).

The scripts run as subprocesses with the real AWS CLI, in both major versions (`aws_cli` fixture): v1 from PyPI in
.venv, and v2 from Debian's `awscli` package, which the pods' image also is (.ci/run installs it; the v2 tests skip,
saying so, where it is missing). Debian's v2 (2.9) predates AWS_ENDPOINT_URL, so a two-line `aws` shim in front of it
passes --endpoint-url: nothing ever leaves 127.0.0.1. moto runs in-process as a ThreadedMotoServer; each test module
starts one and resets it before each test. A 403 comes from moto's IAM enforcement: a user whose policy denies the
action, with request authentication turned on for the length of the script run only (`ScriptPod.denied`). Throttles
(503 SlowDown) and slow answers come from a WSGI layer in front of moto (`Moto.fail`, `Moto.slow`), so the CLI sees
them over HTTP and its own retries run. The order in which moto answered requests is recorded by another WSGI layer
(`RequestLog`), outermost: every request, whatever its answer.
Nothing here asserts on speed: GUARD only stops a hung process from hanging the suite; the figures the fault tests
record (time to react, the SIGTERM path) are asserted against the product's own bounds, not the machine's speed.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_zygote
import boto3
import process_tree
import pytest
from moto import settings as moto_settings
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "workloads" / "scripts"
VENV_BIN = Path(sys.executable).parent  # `aws` (awscli from requirements-dev.txt) is installed beside the test's Python
GUARD = 120  # seconds before a hung script fails the test instead of hanging the suite; never an assertion on speed
REGION = "us-east-1"
AWS_V2 = Path("/usr/bin/aws")  # Debian's awscli package (v2)
AWS_V2_PYTHON = "/usr/bin/python3"  # the interpreter its entry point runs under (its #! line)


@functools.cache
def aws_v2_version() -> str | None:
    """The installed AWS CLI v2's version ("aws-cli/2.x.y", as `aws --version` begins), or None when there is none.
    Read from the awscli package its entry point imports, under the entry point's interpreter: `aws --version` imports
    the whole CLI first, ~0.7 s of CPU in every test worker (a CLI that imports but does not work fails its tests)."""
    if not AWS_V2.exists():
        return None
    version = subprocess.run(
        [AWS_V2_PYTHON, "-c", "import awscli; print(awscli.__version__)"], capture_output=True, text=True, timeout=60
    ).stdout.strip()
    return f"aws-cli/{version}" if version.startswith("2.") else None


AWS_CLIS = [
    pytest.param("v1", id="cli-v1"),
    pytest.param(
        "v2",
        id="cli-v2",
        marks=pytest.mark.skipif(
            aws_v2_version() is None, reason="AWS CLI v2 is not installed here (apt-get install awscli; .ci/run does)"
        ),
    ),
]
V2_SHIM = """#!/bin/sh
# Debian's AWS CLI v2 predates AWS_ENDPOINT_URL: pass it as a flag, so nothing leaves 127.0.0.1.
exec {aws} --endpoint-url "$AWS_ENDPOINT_URL" "$@"
"""


AWS_SERVERS: list[aws_zygote.Zygote] = []  # this worker's, as started (a hung script's report shows their calls)


def start_aws_server(version: str) -> aws_zygote.Zygote:
    """A new fork server of that CLI version (tests/aws_zygote.py); the caller stops it."""
    if version == "v1":
        return aws_zygote.Zygote(VENV_BIN / "aws", sys.executable, endpoint_flag=False)
    return aws_zygote.Zygote(AWS_V2, AWS_V2_PYTHON, endpoint_flag=True)


@functools.cache
def aws_server(version: str) -> aws_zygote.Zygote:
    """This test worker's fork server of that CLI version, stopped when the worker exits."""
    server = start_aws_server(version)
    atexit.register(server.stop)
    AWS_SERVERS.append(server)
    return server


def aws_bin(version: str, tmp_path: Path, real_aws: bool = False) -> Path:
    """The directory whose `aws` is the CLI of that major version, pointed at moto: the real CLI through this worker's
    fork server (aws_zygote: the same CLI code, without ~0.45 s of start-up per call), or `real_aws`, the CLI's own
    entry point, started afresh for every call as in the pod (for tests that measure the scripts' time)."""
    if not real_aws:
        return aws_server(version).shim(tmp_path / f"aws-{version}")
    if version == "v1":
        return VENV_BIN
    shim = tmp_path / "aws-v2"
    shim.mkdir(exist_ok=True)
    (shim / "aws").write_text(V2_SHIM.format(aws=AWS_V2))
    (shim / "aws").chmod(0o755)
    return shim


@dataclass
class Fault:
    """Answer requests that match `method`, `path` (a regex on the unquoted path) and `query` (a regex on the query
    string) with `status` and the S3 error `code`, `times` times (-1: always), or delay them by `delay` seconds first.
    `hits` counts the requests it matched, as they arrive."""

    method: str
    path: str
    status: int = 503
    code: str = "SlowDown"
    times: int = 1
    delay: float = 0.0
    hits: int = 0
    query: str = ""


class FaultyS3:
    """A WSGI layer in front of moto's app that injects the faults in `faults`.

    A request a fault delays belongs to the test that made the fault: when that test ends (`end_test`, from Moto.reset)
    the requests still held answer 503 at once and never reach moto, whose buckets and keys the next test has again
    under the same names (before, a tagging call held 20 s by one test tagged the next test's object)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.test_ended = threading.Event()  # the current test's: set, and replaced, by end_test
        self.passing = 0  # held requests whose delay is over and that moto is answering now
        self.passed = threading.Condition(self.lock)

    def end_test(self) -> None:
        """Forget the faults, answer the requests they still hold, and wait (10 s at most) for the ones moto is
        answering after their delay, so that none of them reaches the next test's moto."""
        with self.lock:
            self.faults.clear()
            self.test_ended.set()
            self.test_ended = threading.Event()
            self.passed.wait_for(lambda: self.passing == 0, timeout=10)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = urllib.parse.unquote(environ.get("PATH_INFO", ""))
        with self.lock:
            fault = next(
                (
                    f
                    for f in self.faults
                    if f.method == environ["REQUEST_METHOD"]
                    and re.search(f.path, path)
                    and re.search(f.query, environ.get("QUERY_STRING", ""))
                    and (f.times < 0 or f.hits < f.times)
                ),
                None,
            )
            if fault is not None:
                fault.hits += 1
            test_ended = self.test_ended
        if fault is None:
            return self.app(environ, start_response)
        if fault.delay:
            if test_ended.wait(fault.delay):
                return self._error(environ, start_response, 503, "ServiceUnavailable", "the test that held it ended")
            with self.lock:
                if test_ended.is_set():
                    return self._error(environ, start_response, 503, "ServiceUnavailable", "the test that held it ended")
                self.passing += 1
            try:
                return self.app(environ, start_response)
            finally:
                with self.lock:
                    self.passing -= 1
                    self.passed.notify_all()
        return self._error(environ, start_response, fault.status, fault.code, "injected")

    @staticmethod
    def _error(environ: dict[str, Any], start_response: Callable[..., Any], status: int, code: str, message: str) -> Any:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))  # drained, as S3 would
        del body
        error = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        start_response(f"{status} Injected", [("Content-Type", "application/xml"), ("Content-Length", str(len(error)))])
        return [error.encode()]


class RequestLog:
    """The outermost WSGI layer in front of moto: `requests` gets (method, unquoted path with its query) of every
    request as its answer starts, whatever the status (an injected fault's too), in that order; moto's own API
    (/moto-api, the resets) is left out.

    It replaces werkzeug's request log, which the tests read before: formatting and emitting a log record per request
    cost more than the answer of a small request, and that log only ever gave the 200s (werkzeug colours every other
    status's line, which hid it from the pattern that read it)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[tuple[str, str]] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        target = urllib.parse.unquote(environ.get("RAW_URI", ""))  # the request line's target, as the client sent it
        if target.startswith("/moto-api"):
            return self.app(environ, start_response)
        request = (environ["REQUEST_METHOD"], target)
        answered = False

        def starting(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal answered
            if not answered:
                answered = True
                self.requests.append(request)
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, starting)
        finally:
            if not answered:  # the app raised: werkzeug answers 500 on its own
                self.requests.append(request)


class QuietRequestHandler(MotoRequestHandler):
    """moto's request handler without werkzeug's request log line (RequestLog records the requests)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class Moto:
    """moto's server on 127.0.0.1, with the request line of every request it answered, in order (`requests`)."""

    def __init__(self, buckets: Sequence[str]) -> None:
        self.buckets = tuple(buckets)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        wsgi = self.server._server
        assert wsgi is not None
        wsgi.RequestHandlerClass = QuietRequestHandler  # read for each new connection
        dispatcher = wsgi.app
        assert isinstance(dispatcher, DomainDispatcherApplication)
        # Which backend answers a host: moto matches the host against every service's URL patterns, and lists its own
        # package directory, on every request. Both are fixed while the tests run, so the answer per host is too.
        dispatcher.get_backend_for_host = functools.cache(dispatcher.get_backend_for_host)  # type: ignore[method-assign]
        self.faulty = FaultyS3(dispatcher)
        self.log = RequestLog(self.faulty)
        wsgi.app = self.log  # werkzeug's handler calls server.app for every request
        self.requests = self.log.requests
        self.endpoint = f"http://127.0.0.1:{self.server.get_host_and_port()[1]}"
        self.s3 = self.client("s3")

    def fail(self, method: str, path: str, times: int = 1, status: int = 503, code: str = "SlowDown", query: str = "") -> Fault:
        fault = Fault(method, path, status, code, times, query=query)
        self.faulty.faults.append(fault)
        return fault

    def slow(self, method: str, path: str, delay: float, times: int = -1, query: str = "") -> Fault:
        fault = Fault(method, path, times=times, delay=delay, query=query)
        self.faulty.faults.append(fault)
        return fault

    def client(self, service: str, key: str = "testing", secret: str = "testing") -> Any:
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=key, aws_secret_access_key=secret
        )

    def reset(self) -> None:
        """Empty moto, then the buckets again, and forget the requests so far."""
        self.faulty.end_test()  # first: no request the last test held may reach what follows
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")).read()
        for bucket in self.buckets:
            self.s3.create_bucket(Bucket=bucket)
        self.requests.clear()

    def stop(self) -> None:
        self.server.stop()


def serving(pod: Any) -> Iterator[Any]:
    """The body of a pod fixture: the pod for the test, then its processes stopped whatever happened."""
    try:
        yield pod
    finally:
        pod.stop()


def run_env(
    run: str, spec_hash: str, prefix: str, buckets: tuple[str, str], checkpoints: Path, artifacts: Path
) -> dict[str, str]:
    """What the run renderer gives fetch.sh and upload.sh for a single-seed run (seed 7); buckets: artifacts, checkpoints."""
    return {
        "SIMFLEET_RUN": run,
        "SIMFLEET_SPEC_HASH": spec_hash,
        "SIMFLEET_SEEDS": "[7]",
        "SIMFLEET_PER_SEED": "false",
        "SIMFLEET_PREFIX": prefix,
        "SIMFLEET_ARTIFACTS_BUCKET": buckets[0],
        "SIMFLEET_CHECKPOINTS_BUCKET": buckets[1],
        "SIMFLEET_CHECKPOINTS_DIR": str(checkpoints),
        "SIMFLEET_ARTIFACTS_DIR": str(artifacts),
        "SIMFLEET_KIND_TAG": "simfleet-kind",
    }


def moto_server_for(buckets: Sequence[str]) -> Iterator[Moto]:
    """The body of a test module's (module-scoped) moto fixture."""
    server = Moto(buckets)
    try:
        yield server
    finally:
        server.stop()


class ScriptPod:
    """A pod's env for the scripts (the AWS CLI pointed at moto, HOME and TMPDIR in tmp_path), the processes the
    test started, and the S3 the scripts talk to (through boto3 with moto's default credentials)."""

    def __init__(
        self, tmp_path: Path, moto: Moto, hostname: str, env: dict[str, str], aws_cli: str = "v1", real_aws: bool = False
    ) -> None:
        self.moto = moto
        self.s3 = moto.s3
        self.aws_cli = aws_cli
        self.aws_bin = aws_bin(aws_cli, tmp_path, real_aws)
        self.scripts = SCRIPTS
        home = tmp_path / "home"
        home.mkdir()
        self.processes: list[subprocess.Popen[str]] = []
        self.env = {
            "PATH": f"{self.aws_bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "TMPDIR": str(tmp_path),
            "HOSTNAME": hostname,
            "AWS_ENDPOINT_URL": moto.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(home / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
            "SIMFLEET_POLL_SECONDS": "0.2",  # the uploaders look at glue and the work container this often
            **env,
        }

    def _spawn(
        self, script: str, args: Sequence[str], shell: Sequence[str], env: dict[str, str], cwd: str | None = None
    ) -> subprocess.Popen[str]:
        """`<shell> <script> <args>` in a session of its own (kill_session ends it and what it started), piped."""
        return subprocess.Popen(
            [*shell, str(self.scripts / script), *args],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            start_new_session=True,
        )

    def run(
        self, script: str, *args: str, shell: Sequence[str] = ("bash",), cwd: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run `<shell> <script> <args>` to its end (at most GUARD seconds), with this pod's env plus `env`, in `cwd`
        (the test's own working directory when None)."""
        process = self._spawn(script, args, shell, env, cwd)
        try:
            stdout, stderr = process.communicate(timeout=GUARD)
        except subprocess.TimeoutExpired:
            tree = process_tree.session(process.pid)
            self.kill_session(process)
            stdout, stderr = process.communicate()
            raise AssertionError(
                f"{script} did not end within {GUARD} s; its processes then:\n{tree}\n--- stdout\n{stdout[-4000:]}\n"
                f"--- stderr\n{stderr[-4000:]}\n{aws_calls()}"
            ) from None
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def run_inline(self, source: str, **env: str) -> subprocess.CompletedProcess[str]:
        """`bash -c source` with this pod's env: for a check on one helper of common.sh."""
        return subprocess.run(["bash", "-c", source], env={**self.env, **env}, capture_output=True, text=True, timeout=GUARD)

    def start(self, script: str, *args: str, shell: Sequence[str] = ("bash",), **env: str) -> subprocess.Popen[str]:
        """Start it in the background, in a session of its own, so that kill_session ends all of it (its aws children
        too), as a container's end does; stop() does that to what is still running when the test ends."""
        process = self._spawn(script, args, shell, env)
        self.processes.append(process)
        return process

    @staticmethod
    def kill_session(process: subprocess.Popen[str]) -> float:
        """SIGKILL to every process of the session `process` leads (what the kubelet does at the end of the grace
        period); returns when it is gone (monotonic time)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return time.monotonic()

    def stop(self) -> None:
        for process in self.processes:
            self.kill_session(process)  # the script and whatever it started
            process.communicate()

    # S3, through boto3 with moto's default credentials
    def put(self, bucket: str, key: str, body: str | bytes) -> None:
        self.s3.put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)

    def get(self, bucket: str, key: str) -> str:
        body: bytes = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body.decode()

    def get_json(self, bucket: str, key: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.get(bucket, key))
        return loaded

    def get_json_if_there(self, bucket: str, key: str) -> dict[str, Any] | None:
        """The JSON object at `key`, or None while there is none: one GET, for a test that waits for it (listing its
        prefix instead had moto serialize every key under it, a thousand in a test, on every look)."""
        try:
            return self.get_json(bucket, key)
        except self.s3.exceptions.NoSuchKey:
            return None

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def tags(self, bucket: str, key: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}

    @contextmanager
    def denied(self, *statements: dict[str, Any]) -> Iterator[None]:
        """Run the scripts as an IAM user that may do anything in S3 except `statements` (Deny), with moto
        checking every request's signature and permissions meanwhile."""
        iam = self.moto.client("iam")
        iam.create_user(UserName="pod-role")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, *statements]}
        iam.put_user_policy(UserName="pod-role", PolicyName="pod", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="pod-role")["AccessKey"]
        saved = dict(self.env)
        self.env.update(AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
        previous = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
        try:
            yield
        finally:
            moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = previous
            self.env = saved


def aws_calls() -> str:
    """The last calls of this worker's AWS CLI fork servers: what a hung script was waiting for."""
    return "".join(f"--- aws calls through {server.real}:\n{server.log_tail()}" for server in AWS_SERVERS)


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def read_until(process: subprocess.Popen[str], fragment: str) -> str:
    """Read the script's stdout up to the first line holding `fragment`; a script that neither prints it nor ends
    within GUARD seconds has its session killed and fails the test, instead of hanging the suite."""
    assert process.stdout is not None
    stdout, seen, found = process.stdout, [], threading.Event()

    def read() -> None:
        for line in stdout:
            seen.append(line)
            if fragment in line:
                found.set()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(GUARD)
    if reader.is_alive():
        ScriptPod.kill_session(process)
        reader.join(5)
        raise AssertionError(f"the script printed no {fragment!r} within {GUARD} s:\n{''.join(seen)}{aws_calls()}")
    if not found.is_set():
        raise AssertionError(f"the script ended without printing {fragment!r}:\n{''.join(seen)}")
    return "".join(seen)


def wait_for(predicate: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + GUARD
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


# ---------------------------------------------------------------------------------------------
# The run pod's processes: the glue runtime between fake sidecars
# ---------------------------------------------------------------------------------------------

FAKES = Path(__file__).resolve().parent / "fake_sidecars.py"


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def materialize_runtime(dest: Path) -> Path:
    """The run's runtime ConfigMap as the pod mounts it at /opt/simfleet: each key at the path its `items` entry names
    (the glue runtime package, the pod scripts, the contract), read from the rendered ConfigMap and volume."""
    from workloads.renderers.run import runtime_files

    for path, text in runtime_files().items():
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return dest


class GluePod:
    """A run pod's /checkpoints and /artifacts in tmp_path, the fake sidecars (restartable on the same ports), and the
    glue runtime run as the pod runs it: `python -P -m glue_runtime /glue/glue.py` from the materialized ConfigMap."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.checkpoints = tmp_path / "checkpoints"
        self.artifacts = tmp_path / "artifacts"
        self.checkpoints.mkdir()
        self.artifacts.mkdir()
        self.runtime = materialize_runtime(tmp_path / "opt-simfleet")
        self.events_file = tmp_path / "events.jsonl"
        self.events_file.touch()
        obs, action, monty, control = free_ports(4)
        self.endpoints = {
            "SIMFLEET_OBS_ENDPOINT": f"tcp://127.0.0.1:{obs}",
            "SIMFLEET_ACTION_ENDPOINT": f"tcp://127.0.0.1:{action}",
            "SIMFLEET_MONTY_ENDPOINT": f"tcp://127.0.0.1:{monty}",
            "SIMFLEET_SIM_CONTROL_ENDPOINT": f"tcp://127.0.0.1:{control}",
        }
        self.processes: list[subprocess.Popen[str]] = []
        self.sidecars: dict[str, tuple[subprocess.Popen[str], list[str]]] = {}

    @property
    def marker_path(self) -> Path:
        return self.checkpoints / ".done"

    def _start_fake(self, role: str, args: list[str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, str(FAKES), role, *args, "--events", str(self.events_file), "--marker", str(self.marker_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        self.sidecars[role] = (process, args)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready", f"fake {role} did not start"
        return process

    def sim(self, *args: str) -> GluePod:
        e = self.endpoints
        endpoints = ["--obs", e["SIMFLEET_OBS_ENDPOINT"], "--actions", e["SIMFLEET_ACTION_ENDPOINT"]]
        self._start_fake("sim", [*endpoints, "--control", e["SIMFLEET_SIM_CONTROL_ENDPOINT"], *args])
        return self

    def monty(self, *args: str) -> GluePod:
        files = [
            "--summary",
            str(self.artifacts / "metrics" / "glue-summary.json"),
            "--partial",
            str(self.checkpoints / "partial.json"),
            "--checkpoint-in",
            str(self.checkpoints / "in.mstate"),
        ]
        self._start_fake("monty", ["--endpoint", self.endpoints["SIMFLEET_MONTY_ENDPOINT"], *files, *args])
        return self

    def kill(self, role: str) -> float:
        """SIGKILL a sidecar (as the OOM killer or a crash would); returns when it is gone (monotonic time)."""
        process, _ = self.sidecars[role]
        process.kill()
        process.wait()
        return time.monotonic()

    def restart(self, role: str, *extra: str) -> None:
        """What the kubelet does for a native sidecar that died: the same image again, on the same ports."""
        _, args = self.sidecars[role]
        self._start_fake(role, [*args, *extra])

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(self.runtime),
            "PYTHONDONTWRITEBYTECODE": "1",
            "SIMFLEET_RUN": "trot-test",
            "SIMFLEET_SEEDS": "[7]",
            "SIMFLEET_CONTRACT_DIR": str(self.runtime),
            "SIMFLEET_CHECKPOINTS_DIR": str(self.checkpoints),
            "SIMFLEET_ARTIFACTS_DIR": str(self.artifacts),
            "SIMFLEET_STARTUP_TIMEOUT_SECONDS": "20",
            "SIMFLEET_OBSERVATION_TIMEOUT_SECONDS": "20",
            "SIMFLEET_BRAIN_SILENCE_SECONDS": "20",
            "SIMFLEET_STEP_TIMEOUT_SECONDS": "20",
            "SIMFLEET_FINISH_TIMEOUT_SECONDS": "10",
            "SIMFLEET_SAVE_TIMEOUT_SECONDS": "10",
            "SIMFLEET_TERM_SAVE_SECONDS": "10",
            "SIMFLEET_HEARTBEAT_SECONDS": "0.2",
            "SIMFLEET_SAVE_CHECKPOINT": "true",
            **self.endpoints,
            **overrides,
        }

    def start_glue(self, glue: Path, **env: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-P", "-m", "glue_runtime", str(glue)],
            env=self.env(**env),
            cwd=self.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        return process

    def run_glue(self, glue: Path, **env: str) -> subprocess.CompletedProcess[str]:
        process = self.start_glue(glue, **env)
        stdout, stderr = process.communicate(timeout=GUARD)
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def glue_file(self, source: str) -> Path:
        path = self.tmp / "glue.py"
        path.write_text(source)
        return path

    def marker(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.marker_path.read_text())
        return loaded

    def summary(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((self.artifacts / "metrics" / "glue-summary.json").read_text())
        return loaded

    def events(self, who: str | None = None, event: str | None = None) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.events_file.read_text().splitlines() if line.strip()]
        return [e for e in lines if (who is None or e["who"] == who) and (event is None or e["event"] == event)]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
