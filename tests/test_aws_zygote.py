"""The AWS CLI fork server the script tests run `aws` through (tests/aws_zygote.py): what a script sees of an `aws` call
is what it sees of the real CLI's own process, and the server neither dies nor outlives its test worker."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aws_zygote
import pytest
from pod_harness import (
    AWS_CLIS,
    AWS_V2,
    AWS_V2_PYTHON,
    GUARD,
    VENV_BIN,
    Moto,
    ScriptPod,
    aws_v2_version,
    moto_server_for,
    start_aws_server,
    wait_for,
)

BUCKET = "zygote-bucket"


@pytest.fixture(scope="module")
def moto_server() -> Iterator[Moto]:
    yield from moto_server_for((BUCKET,))


@pytest.fixture(params=AWS_CLIS)
def pods(request: pytest.FixtureRequest, tmp_path: Path, moto_server: Moto) -> tuple[ScriptPod, ScriptPod]:
    """The same pod twice: `aws` through this worker's fork server, and `aws` as the CLI's own process."""
    moto_server.reset()
    served, real = tmp_path / "served", tmp_path / "real"
    served.mkdir()
    real.mkdir()
    return ScriptPod(served, moto_server, "h", {}, request.param), ScriptPod(real, moto_server, "h", {}, request.param, True)


def bash(pod: ScriptPod, source: str) -> tuple[int, str, str]:
    done = subprocess.run(["bash", "-c", source], env=pod.env, cwd=pod.env["HOME"], capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(
    "source",
    [
        f"aws s3 cp - s3://{BUCKET}/k <&-; echo status $?",  # no stdin: the CLI refuses at once
        f"aws s3 ls s3://{BUCKET} >&-; echo status $? >&2",  # no stdout: writing the listing fails
        f"aws s3 cp s3://{BUCKET}/missing - 2>&-; echo status $?",  # no stderr
    ],
    ids=["stdin", "stdout", "stderr"],
)
def test_a_closed_standard_stream_is_closed_for_the_cli_too(pods: tuple[ScriptPod, ScriptPod], source: str) -> None:
    # Before: the `aws` client's socket to the server took the closed descriptor's number, and was passed on as the
    # CLI's stdin (the call then waited for itself forever), stdout or stderr (the output went to the server).
    served, real = pods
    if "ls" in source:
        real.moto.s3.put_object(Bucket=BUCKET, Key="listed", Body=b"x")
    assert bash(served, source) == bash(real, source)


def test_a_download_gets_the_callers_umask(pods: tuple[ScriptPod, ScriptPod]) -> None:
    # The CLI's process is the server's child: before, it wrote files with the server's umask, not the script's.
    served, real = pods
    served.moto.s3.put_object(Bucket=BUCKET, Key="private", Body=b"x")
    source = f"umask 077; aws s3 cp s3://{BUCKET}/private ./got >/dev/null && stat -c %a got"
    assert bash(served, source) == bash(real, source) == (0, "600\n", "")


@pytest.mark.slow
def test_a_signal_the_caller_ignores_stays_ignored(pods: tuple[ScriptPod, ScriptPod]) -> None:
    # bash starts a background command with SIGINT and SIGQUIT ignored (no job control), and a `trap '' TERM` is
    # inherited the same way: the real CLI never sees them, so the call goes on. Before: the client forwarded them.
    # The two calls, and the two pods, run side by side (each call still gets its signals 0.7 s into its 1.5 s GET):
    # one after the other, the test waited out four slow GETs.
    served, real = pods
    served.moto.s3.put_object(Bucket=BUCKET, Key="slow", Body=b"finished")
    served.moto.slow("GET", f"/{BUCKET}/slow", delay=1.5)
    source = (
        f"aws s3 cp s3://{BUCKET}/slow - >int.out & a=$!; (trap '' TERM; exec aws s3 cp s3://{BUCKET}/slow - >term.out) & b=$!;"
        " sleep 0.7; kill -INT $a; kill -QUIT $a; kill -TERM $b; wait $a; sa=$?; wait $b; sb=$?;"
        ' echo "$(<int.out) $sa"; echo "$(<term.out) $sb"'
    )
    with ThreadPoolExecutor(2) as both:
        served_result, real_result = both.map(lambda pod: bash(pod, source), (served, real))
    assert served_result == real_result == (0, "finished 0\nfinished 0\n", "")


@pytest.fixture(params=AWS_CLIS)
def own_server(request: pytest.FixtureRequest) -> Iterator[aws_zygote.Zygote]:
    """A fork server of this test's own (this worker's shared one stays out of a test that may break it)."""
    server = start_aws_server(request.param)
    try:
        yield server
    finally:
        server.stop()


def test_the_server_outlives_a_call_that_ends_while_its_client_is_killed(
    own_server: aws_zygote.Zygote, tmp_path: Path, moto_server: Moto
) -> None:
    # The call's end (SIGCHLD) and its client's death (the end of its connection) reach the server in one round, the
    # end first: it answered and closed the connection, then read from the closed one and died (every later call then
    # paid the CLI's start-up, and those in flight ended with 255).
    # The waits are for those events themselves (before: 0.5 s, then 2 s, of sleep).
    moto_server.reset()
    moto_server.s3.put_object(Bucket=BUCKET, Key="slow", Body=b"x")
    slow = moto_server.slow("GET", f"/{BUCKET}/slow", delay=1)
    pod = ScriptPod(tmp_path, moto_server, "h", {})
    bin_dir = own_server.shim(tmp_path / "aws-own")
    env = {**pod.env, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    call = subprocess.Popen(["bash", "-c", f"exec aws s3 cp s3://{BUCKET}/slow -"], env=env, stdout=subprocess.DEVNULL)
    wait_for(lambda: slow.hits, "the call's GET")  # its CLI is waiting on S3, for 1 s
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.connect(str(own_server.socket))  # a client that sends nothing yet: the server waits for its request
    wait_for(lambda: not _running_children(own_server.process.pid), "the call's CLI to end")  # meanwhile the call ends
    call.kill()
    call.wait()
    stalled.close()
    time.sleep(0.5)
    assert own_server.process.poll() is None, own_server.process.stderr
    done = subprocess.run(["bash", "-c", "aws --version"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert own_server.log_tail().splitlines()[-2].endswith(" --version")  # it ran through the server


def _running_children(pid: int) -> list[int]:
    """The children of `pid` that have not ended (a zombie, ended but not reaped yet, is left out)."""
    running = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                running.append(int(child))
    return running


def test_the_server_ends_with_the_worker_that_started_it(tmp_path: Path) -> None:
    # A test worker killed outright (a crash, a `timeout`, the CI's cancel) runs no atexit: before, its servers (and
    # their calls) lived on, ~100 MB each.
    starter = (
        "import sys; sys.path.insert(0, sys.argv[1]); import aws_zygote, pathlib, time\n"
        "server = aws_zygote.Zygote(pathlib.Path(sys.argv[2]), sys.executable, endpoint_flag=False)\n"
        "print(server.process.pid, server.dir, flush=True); time.sleep(600)\n"
    )
    here = str(Path(aws_zygote.__file__).parent)
    worker = subprocess.Popen([sys.executable, "-c", starter, here, str(VENV_BIN / "aws")], stdout=subprocess.PIPE, text=True)
    assert worker.stdout is not None
    pid, directory = worker.stdout.readline().split()
    worker.kill()
    worker.wait()
    deadline = time.monotonic() + GUARD
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < deadline, f"the fork server {pid} outlived its worker"
        time.sleep(0.1)
    assert not Path(directory).exists()  # its socket and log went with it


def test_an_aws_call_imports_next_to_nothing() -> None:
    # Each `aws` a script runs is a new interpreter running aws_zygote_client: before, it imported the server's module
    # (json, subprocess, tempfile, shutil, pathlib, selectors, socket, signal: ~40 ms of CPU a call, ~10 of them the
    # interpreter's own start).
    here = str(Path(aws_zygote.__file__).parent)
    source = f"import sys; sys.path.insert(0, {here!r}); before = set(sys.modules); import aws_zygote_client; "
    source += "print(' '.join(sorted(set(sys.modules) - before)))"
    done = subprocess.run([sys.executable, "-I", "-S", "-c", source], capture_output=True, text=True, timeout=GUARD)
    assert done.returncode == 0, done.stderr
    os_itself = {
        "os",
        "os.path",
        "posixpath",
        "genericpath",
        "stat",
        "_stat",
        "_collections_abc",
    }  # (`site` imports them; not with -S)
    assert set(done.stdout.split()) <= {"aws_zygote_client", "_signal", "_socket", *os_itself}, done.stdout


@pytest.mark.skipif(aws_v2_version() is None, reason="AWS CLI v2 is not installed here")
def test_the_cli_v2_version_is_the_one_the_cli_reports() -> None:
    # pod_harness reads it from the package instead of running `aws --version`, which imports the whole CLI first.
    reported = subprocess.run([str(AWS_V2), "--version"], capture_output=True, text=True, timeout=GUARD).stdout
    assert reported.split()[0] == aws_v2_version()


@pytest.mark.parametrize("reply", ["signal 9", "signal 15", "exit 3"])
def test_the_client_ends_as_the_cli_ended_even_when_sigkill_ended_it(tmp_path: Path, reply: str) -> None:
    # The server's reply for a CLI killed outright (the OOM killer, a kill -9) is "signal 9": SIGKILL's disposition
    # cannot be set (EINVAL), and the client died of that traceback with status 1 instead of SIGKILL, as the CLI did.
    path = str(tmp_path / "server")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        source = f"import sys; sys.path.insert(0, {str(Path(aws_zygote.__file__).parent)!r}); from aws_zygote_client import "
        source += f"client; sys.exit(client({path!r}, '/bin/false', False))"
        call = subprocess.Popen([sys.executable, "-I", "-S", "-c", source, "s3", "ls"], stderr=subprocess.PIPE)
        conn, _ = server.accept()
        with conn:
            header, fds, _, _ = socket.recv_fds(conn, 8, 3)
            for fd in fds:
                os.close(fd)  # the caller's stdin, stdout and stderr: held here, stderr would never reach its end
            size = int.from_bytes(header, "big")
            while size > 0:
                size -= len(conn.recv(size))
            conn.sendall(f"{reply}\n".encode())
            _, stderr = call.communicate(timeout=10)
    kind, _, value = reply.partition(" ")
    assert call.returncode == (-int(value) if kind == "signal" else int(value)), stderr
    assert stderr == b""


def test_a_call_sends_the_user_agent_of_the_real_cli(pods: tuple[ScriptPod, ScriptPod], monkeypatch: pytest.MonkeyPatch) -> None:
    # The server works out once what every call did to make it (v2's distribution: distro, lsb_release, uname); the
    # requests of a call through it name the same CLI, Python, system and distribution as the real CLI's.
    served, real = pods
    served.moto.s3.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    agents: list[str] = []
    answer = served.moto.log.app

    def recording(environ: dict[str, Any], start_response: Any) -> Any:
        if not environ.get("RAW_URI", "").startswith("/moto-api"):
            agents.append(environ.get("HTTP_USER_AGENT", ""))
        return answer(environ, start_response)

    monkeypatch.setattr(served.moto.log, "app", recording)
    source = f"aws s3api head-object --bucket {BUCKET} --key k >/dev/null && aws s3 ls s3://{BUCKET} >/dev/null"
    assert bash(served, source) == (0, "", "")
    served_agents, agents[:] = list(agents), []
    assert bash(real, source) == (0, "", "")
    # v1 lists the features a request used (m/...) in the order of a set of strings, which each process's hash seed
    # sets: the real CLI's differs from call to call, and the calls through the server share the server's.
    same_order = [re.sub(r" m/([^ ]*)", lambda m: " m/" + ",".join(sorted(m[1].split(","))), a) for a in served_agents + agents]
    assert same_order[:2] == same_order[2:] and len(agents) == 2, (served_agents, agents)


def _served_and_real(tmp_path: Path, moto_server: Moto) -> Iterator[tuple[Path, ScriptPod]]:
    """The same v2 pod twice, in its own directory each: its `aws` through the fork server, then the real CLI."""
    for name, real_aws in (("served", False), ("real", True)):
        (tmp_path / name).mkdir()
        yield tmp_path / name, ScriptPod(tmp_path / name, moto_server, "h", {}, "v2", real_aws)


def _recording(directory: Path, record: Path, programs: tuple[str, ...] = ("lsb_release", "uname")) -> Path:
    """`directory` with a stand-in for each of `programs` that writes its command line to `record`, then runs the
    program the PATH found before."""
    directory.mkdir(parents=True, exist_ok=True)
    for program in programs:
        real = shutil.which(program)
        assert real is not None and not real.startswith(str(directory)), program
        stand_in = directory / program
        stand_in.write_text(f'#!/bin/sh\necho "{program} $*" >>{record}\nexec {real} "$@"\n')
        stand_in.chmod(0o755)
    return directory


def _recorded(record: Path) -> list[str]:
    lines = record.read_text().splitlines() if record.exists() else []
    record.unlink(missing_ok=True)
    return sorted(lines)


@pytest.mark.skipif(aws_v2_version() is None, reason="AWS CLI v2 is not installed here")
def test_a_v2_call_through_the_server_runs_no_distribution_program(
    tmp_path: Path, moto_server: Moto, monkeypatch: pytest.MonkeyPatch
) -> None:
    # v2 names the distribution in its user agent: distro ran `lsb_release -a` (a shell script, which runs a few more)
    # and `uname -rs` in every call, ~15% of its CPU. The server reads it once; a call whose PATH finds the same
    # programs runs neither. Here the server's PATH and the calls' find stand-ins that record being run.
    moto_server.reset()
    (tmp_path / "served").mkdir()
    (tmp_path / "real").mkdir()
    # (Before the PATH below: this worker's own server, which the served pod's PATH names first, starts as always.)
    served = ScriptPod(tmp_path / "served", moto_server, "h", {}, "v2")
    real = ScriptPod(tmp_path / "real", moto_server, "h", {}, "v2", True)
    record = tmp_path / "ran"
    found = _recording(tmp_path / "found", record)
    monkeypatch.setenv("PATH", f"{found}:{os.environ['PATH']}")
    server = start_aws_server("v2")
    try:
        _recorded(record)  # what the server ran as it started
        for pod, bin_dir in ((served, server.shim(tmp_path / "aws-own")), (real, real.aws_bin)):
            pod.env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
            assert bash(pod, f"aws s3 ls s3://{BUCKET}")[0] == 0
            ran = _recorded(record)
            if pod is served:
                assert server.log_tail().splitlines()[-2].endswith(f"s3 ls s3://{BUCKET}")  # it ran through the server
                assert ran == []
            else:
                assert ran == ["lsb_release -a", "uname -rs"]  # what the real CLI runs with that PATH: the stand-ins
    finally:
        server.stop()


@pytest.mark.skipif(aws_v2_version() is None, reason="AWS CLI v2 is not installed here")
def test_a_v2_call_whose_path_finds_other_distribution_programs_runs_them(tmp_path: Path, moto_server: Moto) -> None:
    # What the server read is kept only for the programs the call would run itself: a PATH that finds others (a
    # test's stand-in `uname`, say) has the call run them, as the real CLI does.
    moto_server.reset()
    records = []
    for folder, pod in _served_and_real(tmp_path, moto_server):
        record = folder / "ran"
        stand_ins = _recording(folder / "stand-ins", record, ("lsb_release", "uname", "tr"))
        pod.env["PATH"] = f"{pod.aws_bin}:{stand_ins}:/usr/local/bin:/usr/bin:/bin"
        assert bash(pod, f"aws s3 ls s3://{BUCKET}")[0] == 0
        records.append(_recorded(record))
    assert records[0] == records[1] and "lsb_release -a" in records[1] and "uname -rs" in records[1], records


REFUSED_PLUGIN = """
import inspect
import types

import botocore.handlers


def without_kwargs(parsed_args):
    pass


def awscli_initialize(cli):
    if {kind!r} == "plain":
        cli.register("building-command-table.main", without_kwargs)
    elif {kind!r} == "signature":  # the code of a CLI handler that takes **kwargs, with a signature that does not
        handler = types.FunctionType(botocore.handlers.disable_signing.__code__, {{}})
        handler.__signature__ = inspect.Signature()
        cli.register("building-command-table.main", handler)
    else:
        cli.register("building-command-table.main", botocore.handlers.disable_signing)
"""


@pytest.mark.skipif(aws_v2_version() is None, reason="AWS CLI v2 is not installed here")
@pytest.mark.parametrize("kind", ["plain", "signature", "accepted"])
def test_a_handler_without_kwargs_is_refused_through_the_server_too(tmp_path: Path, moto_server: Moto, kind: str) -> None:
    # The server answers botocore's check of each handler (does it take **kwargs?) once per function body, for the
    # CLI's code; a plugin's handler without **kwargs is still refused, as the real CLI refuses it, and so is one that
    # reuses the code of a CLI handler under a signature without **kwargs (inspect reads __signature__ first).
    # (v1 imports plugins from sys.path alone, which the server's -I leaves without PYTHONPATH: v2 only.)
    moto_server.reset()
    results = []
    for folder, pod in _served_and_real(tmp_path, moto_server):
        plugins = folder / "plugins"
        plugins.mkdir()
        (plugins / "refused_plugin.py").write_text(REFUSED_PLUGIN.format(kind=kind))
        config = f"[plugins]\ncli_legacy_plugin_path = {plugins}\nrefused = refused_plugin\n"
        Path(pod.env["AWS_CONFIG_FILE"]).write_text(config)
        status, stdout, stderr = bash(pod, f"aws s3 ls s3://{BUCKET}; echo status $?")
        results.append((status, stdout, re.sub(r" at 0x[0-9a-f]+", " at 0x...", stderr)))  # (the handler's address)
    assert results[0] == results[1], results
    refused = "must accept keyword arguments (**kwargs)" in results[1][2]
    assert refused == (kind != "accepted") and results[1][1].endswith("status 0\n") == (kind == "accepted"), results[1]


EQUIVALENCE_CHECK = """
import copy, gc, inspect, io, logging, sys, types
sys.path.insert(0, sys.argv[1])
import aws_zygote
aws_zygote._warm()
import botocore.compat, botocore.hooks, botocore.utils

kept = botocore.hooks.accepts_kwargs
original = kept.__wrapped__
assert original is botocore.compat.accepts_kwargs
root = aws_zygote.os.path.dirname(sys.modules["awscli"].__file__)
functions = [f for f in gc.get_objects() if type(f) is types.FunctionType and f.__code__.co_filename.startswith(root)]
assert len(functions) > 1000, len(functions)
for function in functions:
    assert kept(function) == original(function), function


def without_kwargs(a, b=1, *args):
    pass


def with_kwargs(a, **named):
    pass


signed = types.FunctionType(with_kwargs.__code__, {})
signed.__signature__ = inspect.Signature()
for handler, answer in ((without_kwargs, None), (with_kwargs, "named"), (signed, None)):
    assert kept(handler) == original(handler) == answer, handler
    assert kept(handler) == answer, handler  # the second time: kept
emitter = botocore.hooks.HierarchicalEmitter()
for refused in (without_kwargs, signed, types.MethodType(without_kwargs, 1)):
    try:
        emitter.register("an-event", refused)
    except ValueError as error:
        assert "must accept keyword arguments" in str(error)
    else:
        raise AssertionError(f"{refused} was not refused")

aliaser = getattr(botocore.hooks, "EventAliaser", None)
if aliaser is not None:  # (v1)
    fast = aliaser._alias_event_name
    slow = fast.__wrapped__
    aliases = botocore.utils.EVENT_ALIASES
    names = set()
    recorder = botocore.hooks.HierarchicalEmitter()
    recorder._verify_and_register = lambda event_name, *_args, **_kw: names.add(event_name)
    import awscli.handlers, botocore.handlers
    awscli.handlers.awscli_initialize(recorder)
    names.update(event for event, *_ in botocore.handlers.BUILTIN_HANDLERS)
    for old in aliases:
        for template in ("{}", "x.{}", "{}.y", "x.{}.y", "x{}", "{}y", "x.{}y.z", "x.y{}.z", "a.{}.{}", "{}.b.{}"):
            names.add(template.format(old, *[o for o in aliases if o != old][:1]))
    names.update(["", ".", "a..b", "before-call.s3.ListObjectsV2", "before-call.api.sagemaker.Op"])
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logging.getLogger("botocore.hooks").addHandler(handler)
    logging.getLogger("botocore.hooks").setLevel(logging.DEBUG)
    results = {}
    for method in (slow, fast):
        log.seek(0)
        log.truncate()
        first, second = botocore.hooks.EventAliaser(None), botocore.hooks.EventAliaser(None, copy.copy(aliases))
        renamed = [(name, method(first, name), method(second, name), method(first, name)) for name in sorted(names)]
        results[method] = (renamed, log.getvalue(), first._alias_name_cache, second._alias_name_cache)
    assert results[slow] == results[fast]
    assert sum(name != new for name, new, *_ in results[fast][0]) > 100  # (names with an alias in them were tried)
    print("aliases", len(names))
import ast, subprocess, botocore, botocore.session
s3 = botocore.session.create_loader(aws_zygote.os.environ["AWS_DATA_PATH"]).load_service_model("s3", "service-2")
assert all((operation, sep) in botocore._xform_cache for operation in s3["operations"] for sep in "_-")
source = "import awscli.clidriver, botocore; print(repr(botocore._xform_cache))"  # what botocore ships (special cases)
shipped = ast.literal_eval(subprocess.run([sys.executable, "-I", "-c", source], capture_output=True, text=True).stdout)
for (name, sep), transformed in botocore._xform_cache.items():
    assert transformed == shipped.get((name, sep)) or botocore.xform_name(name, sep, {}) == transformed, (name, sep)
print("ok", len(functions))
"""


@pytest.mark.parametrize("version", AWS_CLIS)
def test_what_the_server_works_out_once_is_what_the_cli_works_out(version: str) -> None:
    # Under the CLI's own interpreter, after the server's warm-up: botocore's handler check answers as inspect does, for
    # every function of the CLI and for ones without **kwargs (refused); v1's event names are renamed, and logged, as
    # the original renames and logs them, for every name the CLI registers and many made to hold each alias; the names
    # turned from CamelCase (the S3 operations' among them) are what botocore turns them into afresh.
    python = sys.executable if version == "v1" else AWS_V2_PYTHON
    here = str(Path(aws_zygote.__file__).parent)
    done = subprocess.run([python, "-I", "-c", EQUIVALENCE_CHECK, here], capture_output=True, text=True, timeout=GUARD, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("aliases" if version == "v1" else "ok"), done.stdout
