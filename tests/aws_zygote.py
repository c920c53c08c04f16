"""The real AWS CLI without paying its start-up on every call: a fork server that imported the CLI once, and an `aws`
that asks it to run one command (tests/aws_zygote_client.py, apart so that each call imports next to nothing).

The pod scripts call `aws` dozens of times per test, and each call spent ~0.45 s of CPU before it sent a byte (the
Python interpreter importing awscli and botocore), ~70% of the script tests' time. Here one server per CLI version
and test worker imports the CLI (v1 under the test's Python, v2 under Debian's /usr/bin/python3, the interpreter of
Debian's `awscli`), and for each call forks a child that runs `awscli.clidriver.main()` with the caller's arguments,
environment, working directory and standard input/output/error (the descriptors themselves, passed over the Unix
socket), exactly as the `aws` entry point does. What stays true of a process: the exit status is the child's; a
signal sent to `aws` (SIGTERM, SIGINT, ...) is forwarded to the child, and `aws` then dies of the same signal; one
ignored where `aws` started (bash starts background commands with SIGINT and SIGQUIT ignored) stays ignored; a standard
descriptor closed there is closed for the CLI too; its umask is the caller's; an `aws` killed outright (SIGKILL, the end of a test's session)
takes its child with it, a moment later (the child is the server's, not in the script's process group). The server
ends, with the calls still running, when the test worker that started it does, however it ends.

What differs: the call starts in milliseconds, so a test that measures how long the scripts take with real start-up
(the SIGTERM path against the spot notice) asks for real processes instead (`real_aws`). When the server cannot be
reached, `aws` runs the real CLI itself. What the CLI reads from its environment when it is imported is the server's,
not each caller's: paths under HOME made into constants then (the CLI alias file ~/.aws/cli/alias, botocore's extra
models ~/.aws/models, the assume-role and SSO caches, v2's autocomplete index), v1's AWS_NEW_RETRIES_2026, v2's
distro lookup settings, and PYTHONPATH (the server runs with -I). No test sets any of them for a script; a test that
needs one must ask for `real_aws`. v2's distribution, which it names in the user agent, is read once by the server
(distro's answers: /etc/os-release and the other release files, `lsb_release -a`, `uname -rs`): a call runs neither
program, unless its PATH finds other programs for them (or for those lsb_release runs) than the server's, or its
LSB_OS_RELEASE differs; then it reads it all again, as the real CLI does. The files are the machine's, which no test
changes. Every call hashes strings with the server's seed: the order of a set of strings (v1's user agent lists the
features a request used so) is the same in each call, where the real CLI's changes from call to call.

What the server works out once for every call, each answer the one the call would work out itself (the calls do the
same work on the same code and data, each in a process of its own): the imports; the data files parsed; botocore's
check that each event handler takes **kwargs, answered per function body (_check_each_handler_once); the CamelCase names
of the S3 model turned into Python's and the CLI's (_transform_names_once); and in v1, which event names have none of
the renamed services' names in them (_look_up_only_aliased_event_names). Nothing there depends on the caller's
environment but the data files' path (AWS_DATA_PATH: a call with another gets a Loader of its own).

Standard library only: the server runs under the CLI's own interpreter.
"""

from __future__ import annotations

import ast
import contextlib
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HEADER = struct.Struct("!Q")  # the length of the request's body, sent with the three descriptors
# Modules a call imports after the driver starts (the commands the scripts use: s3, s3api); a name a version lacks
# is skipped.
WARM = (
    "awscli.clidriver",
    "awscli.handlers",
    "awscli.customizations.s3.subcommands",
    "awscli.customizations.s3.s3handler",
    "botocore.session",
    "botocore.client",
    "botocore.endpoint",
    "botocore.httpsession",
    "botocore.parsers",
    "botocore.serialize",
    "botocore.auth",
    "botocore.retries.standard",
    "s3transfer.manager",
    "urllib3",
)


# ---------------------------------------------------------------------------------------------
# The server: python aws_zygote.py serve SOCKET
# ---------------------------------------------------------------------------------------------


def serve(path: str) -> None:
    _warm()
    threads = os.listdir("/proc/self/task")
    if len(threads) != 1:  # a thread (a native one too: v2's CRT) holding a lock at fork would hang the child
        raise SystemExit(f"the CLI started {len(threads) - 1} thread(s) on import: forking it is not safe")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(128)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD writes to the wake-up pipe
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    selector.register(sys.stdin, selectors.EVENT_READ)  # a pipe from the worker: its end, the worker's (however it died)
    calls: dict[int, socket.socket] = {}  # child pid -> the connection of the `aws` that asked for it
    log = open(f"{path}.log", "a", buffering=1)  # noqa: SIM115 - the server's whole life
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            if key.fileobj is listener:
                conn, _ = listener.accept()
                pid = _start(conn, log, listener, selector, wake_read, wake_write)
                if pid:
                    calls[pid] = conn
                    selector.register(conn, selectors.EVENT_READ, pid)
            elif key.fileobj == wake_read:
                while True:
                    try:
                        if not os.read(wake_read, 512):
                            break
                    except BlockingIOError:
                        break
                _reap(calls, selector, log)
            elif key.fileobj is sys.stdin:
                if not os.read(0, 512):  # (sys.stdin)
                    _end(path, calls)
            elif key.data in calls:  # not a call answered (and its connection closed) earlier in this round
                _from_client(key.fileobj, key.data, calls, selector)  # type: ignore[arg-type]


def _end(path: str, calls: dict[int, socket.socket]) -> None:
    """The worker that started this server is gone: so are the calls still running, the socket and the server."""
    for pid in calls:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for leftover in (path, f"{path}.log"):
        with contextlib.suppress(OSError):
            os.unlink(leftover)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(path))
    os._exit(0)


def _warm() -> None:
    """Everything the server does once for all its calls before it serves: the imports, the data files, the handlers'
    checks, the event-name aliases and (v2) the machine's distribution."""
    import importlib

    before = dict(os.environ)
    for name in WARM:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    changed = sorted(k for k in {*before, *os.environ} if before.get(k) != os.environ.get(k))
    if changed != ["AWS_DATA_PATH"]:  # what each call must redo on its own environment (_data_path)
        raise SystemExit(f"importing the CLI changed {changed} of the environment, not just AWS_DATA_PATH")
    _warm_data_files()
    _transform_names_once()
    _check_each_handler_once()
    _look_up_only_aliased_event_names()
    _read_the_distribution_once()


def _warm_data_files() -> None:
    """Read the CLI's data files (service models, endpoints, the service lists) and the MIME tables once, here.

    Every CLI session makes its own botocore Loader, which reads and parses the JSON data files it needs: ~60% of a
    call's CPU once the imports are done. Here the Loader a session makes is kept per data path (botocore.session's
    create_loader, made to return the same Loader for the same path) and filled with what the scripts' s3 and s3api
    commands read: each forked call starts with the files parsed, as a second call in one process would. A call whose
    AWS_DATA_PATH differs gets a Loader of its own. No command runs here: v2's CRT starts native threads, which a
    fork does not survive.
    """
    import functools

    import botocore.session

    create_loader = functools.lru_cache(maxsize=None)(botocore.session.create_loader)  # type: ignore[attr-defined]
    botocore.session.create_loader = create_loader  # type: ignore[attr-defined]
    loader = create_loader(os.environ["AWS_DATA_PATH"])
    kinds = ("service-2", "endpoint-rule-set-1", "paginators-1", "waiters-2")
    calls: list[tuple[str, tuple[str, ...], dict[str, str]]] = []
    for kind in kinds:  # botocore caches per argument pattern: both the positional and the keyword one
        calls += [("list_available_services", (kind,), {}), ("list_available_services", (), {"type_name": kind})]
        for service in ("s3", "sdb"):  # v1's s3 commands read sdb's model too
            calls += [("load_service_model", (service, kind), {}), ("load_service_model", (service,), {"type_name": kind})]
    calls += [("load_data", (name,), {}) for name in ("cli", "endpoints", "partitions", "_retry", "sdk-default-configuration")]
    for method, args, kwargs in calls:
        with contextlib.suppress(Exception):
            getattr(loader, method)(*args, **kwargs)
    import mimetypes

    mimetypes.init()  # the system's MIME tables, which `s3 cp` reads on its first guess of a file's Content-Type


def _transform_names_once() -> None:
    """botocore turns the models' CamelCase names into Python's and the CLI's (botocore.xform_name: ListObjectsV2 ->
    list_objects_v2, list-objects-v2) through two regular expressions, and keeps each answer in a module-level cache:
    a call, a process of its own, began with it empty and ran them again for every S3 operation (the client's methods),
    its endpoint rules' parameters and functions and, in s3api, its command and parameter names. Each answer is the
    name's own: they are answered here for the names in the S3 model and endpoint rules (and sdb's, which v1 reads)."""
    import botocore
    import botocore.session

    loader = botocore.session.create_loader(os.environ["AWS_DATA_PATH"])  # type: ignore[attr-defined]  # (the kept one)
    names: set[str] = set()
    for service in ("s3", "sdb"):
        with contextlib.suppress(Exception):
            model = loader.load_service_model(service, "service-2")
            names.update(model["operations"])
            for shape in model["shapes"].values():
                names.update(shape.get("members", {}))
        with contextlib.suppress(Exception):
            rules = loader.load_service_model(service, "endpoint-rule-set-1")
            names.update(rules["parameters"])
            pending: list[Any] = [rules["rules"]]
            while pending:  # the functions the rules call ({"fn": "aws.partition", ...}), however deep
                item = pending.pop()
                if isinstance(item, dict):
                    if isinstance(item.get("fn"), str):
                        names.add(item["fn"])
                    pending.extend(item.values())
                elif isinstance(item, list):
                    pending.extend(item)
    for name in names:
        for sep in ("_", "-"):
            botocore.xform_name(name, sep)


def _check_each_handler_once() -> None:
    """Answer botocore's check of an event handler (accepts_kwargs: does it take **kwargs?) once per function body.

    A call registers some 350-400 handlers, and botocore checks each through inspect.getfullargspec: ~15% of a call's
    CPU. For a plain function, or a method bound to one, inspect's answer (the name of its ** parameter, or None) is its
    code's, unless the function carries what inspect reads before its code (__signature__, __text_signature__,
    _partialmethod); such a function, and any other callable (a partial, an object with __call__), is asked each time.
    The answers for the code of every function in the CLI's packages, the nested ones too (the closures a call makes
    anew), are inspect's own, asked here once: a call asks inspect only about code it brings (a plugin's). A handler
    without **kwargs is still refused."""
    import functools
    import gc
    import types

    import botocore.hooks

    check = botocore.hooks.accepts_kwargs
    known: dict[types.CodeType, Any] = {}
    read_before_code = ("__signature__", "__text_signature__", "_partialmethod")

    @functools.wraps(check)
    def accepts_kwargs(func: Any) -> Any:
        function = func.__func__ if type(func) is types.MethodType else func
        if type(function) is types.FunctionType:
            attributes = function.__dict__
            if not attributes or not any(name in attributes for name in read_before_code):
                code = function.__code__
                answer = known.get(code, known)  # (known: not answered yet)
                if answer is known:
                    answer = known[code] = check(func)
                return answer
        return check(func)

    root = os.path.dirname(os.path.abspath(sys.modules["awscli"].__file__ or "")) + os.sep  # botocore, s3transfer: inside
    codes = [f.__code__ for f in gc.get_objects() if type(f) is types.FunctionType and f.__code__.co_filename.startswith(root)]
    seen: set[types.CodeType] = set()
    while codes:
        code = codes.pop()
        if code not in seen:
            seen.add(code)
            codes.extend(const for const in code.co_consts if type(const) is types.CodeType)
    for code in seen:
        cells = tuple(types.CellType() for _ in code.co_freevars)
        with contextlib.suppress(Exception):  # (inspect fails on none; one it failed on would be asked in each call)
            known[code] = check(types.FunctionType(code, {}, code.co_name, None, cells))
    botocore.hooks.accepts_kwargs = accepts_kwargs  # type: ignore[attr-defined]


def _look_up_only_aliased_event_names() -> None:
    """v1's event emitter renames some services' event names (botocore.hooks.EventAliaser, with botocore.utils'
    EVENT_ALIASES: ~65 old names). For each name it has not seen, it splits the name and tries the aliases in turn: ~13%
    of a call's CPU, since every copy of the emitter (one per client) starts with no name seen. Almost no name has an
    alias in it, which the name's parts tell (an alias without a dot renames a whole part) and a substring test of each
    dotted alias, the very conditions the loop tries: such a name stays as it is, as after the loop. A name with an alias
    in it goes through the original, which renames (and logs) it. v2's emitter has no aliases."""
    import functools

    import botocore.hooks

    aliaser = getattr(botocore.hooks, "EventAliaser", None)
    if aliaser is None:
        return
    original = aliaser._alias_event_name
    # The aliases (a copy) that the next two were made from; the old names without a dot; those with one.
    derived: list[Any] = [None, frozenset(), ()]

    @functools.wraps(original)
    def _alias_event_name(self: Any, event_name: Any) -> Any:
        cache = self._alias_name_cache
        if event_name in cache:
            return cache[event_name]
        aliases = self._event_aliases
        if type(aliases) is not dict or type(event_name) is not str:
            return original(self, event_name)
        if aliases != derived[0]:
            if not all(type(old) is str for old in aliases):
                return original(self, event_name)
            whole = frozenset(old for old in aliases if "." not in old)
            derived[:] = [dict(aliases), whole, tuple(old for old in aliases if old not in whole)]
        if derived[1].isdisjoint(event_name.split(".")) and not any(old in event_name for old in derived[2]):
            cache[event_name] = event_name
            return event_name
        return original(self, event_name)

    aliaser._alias_event_name = _alias_event_name


# What distro runs to learn the distribution (lsb_release -a, uname -rs), and what Debian's lsb_release script runs.
DISTRIBUTION_PROGRAMS = ("lsb_release", "uname", "getopt", "cut", "tr")
# distro's state before the server read the distribution, and the environment it was read under (v2 only).
_distribution: tuple[dict[str, Any], tuple[str | None, ...]] | None = None


def _read_the_distribution_once() -> None:
    """v2 names the machine's distribution in every request's user agent (awscli.clidriver._get_distribution: distro's
    id and major version). distro reads /etc/os-release and the other release files and runs `lsb_release -a` and
    `uname -rs`, then keeps the answers on its module-level LinuxDistribution (functools.cached_property); each call,
    a process of its own, read and ran it all again: ~15% of a call's CPU, and two processes (lsb_release, a shell
    script, runs a few more). They are read here, once, as a call reads them; a call keeps them when the programs are
    the ones it would run (_distribution_for_this_call)."""
    global _distribution
    read = getattr(sys.modules.get("awscli.clidriver"), "_get_distribution", None)
    module = sys.modules.get("distro.distro")
    if read is None or module is None:
        return
    before = dict(module._distro.__dict__)
    read()
    _distribution = (before, _distribution_environment())


def _distribution_environment() -> tuple[str | None, ...]:
    """What distro's answers depend on besides the machine's files: the programs it runs as this process's PATH finds
    them (as subprocess and the shell look: the first executable file), and the os-release file lsb_release is told to
    read instead (LSB_OS_RELEASE)."""
    found: list[str | None] = []
    for program in DISTRIBUTION_PROGRAMS:
        for directory in os.get_exec_path():
            candidate = os.path.abspath(os.path.join(directory, program))
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                found.append(candidate)
                break
        else:
            found.append(None)
    return (*found, os.environ.get("LSB_OS_RELEASE"))


def _distribution_for_this_call() -> None:
    """In the call's process, with the caller's environment: a PATH that finds other programs than the server's, or
    another LSB_OS_RELEASE, and distro is as it was before the server read anything, so that the call reads the
    distribution again itself, as the real CLI does."""
    if _distribution is not None and _distribution_environment() != _distribution[1]:
        state = sys.modules["distro.distro"]._distro.__dict__
        state.clear()
        state.update(_distribution[0])


def _start(conn: socket.socket, log: Any, *inherited: object) -> int:
    """Read one request and fork its child; the child's pid, or 0 when the request was cut short."""
    conn.settimeout(10)  # a client killed half-way through its request must not hold the server up
    try:
        head, fds, _, _ = socket.recv_fds(conn, HEADER.size, 3)
        if len(head) < HEADER.size or len(fds) != 3:
            raise OSError("short request")
        (length,) = HEADER.unpack(head)
        body = b""
        while len(body) < length:
            chunk = conn.recv(length - len(body))
            if not chunk:
                raise OSError("short request")
            body += chunk
    except OSError:
        conn.close()
        return 0
    conn.settimeout(None)
    request = ast.literal_eval(body.decode())  # the client's repr() of the request (aws_zygote_client.py)
    pid = os.fork()
    if pid == 0:
        _child(request, fds, conn, (log, *inherited))
    log.write(f"{time.strftime('%H:%M:%S')} {pid} started: aws {' '.join(request['argv'])}\n")
    for fd in fds:
        os.close(fd)
    return pid


def _child(request: dict[str, Any], fds: list[int], conn: socket.socket, inherited: tuple[object, ...]) -> None:
    """The forked child: become the `aws` process that asked, run the CLI, exit with its status."""
    code: object = 1
    try:
        signal.set_wakeup_fd(-1)
        for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        conn.close()
        for thing in inherited:
            close = getattr(thing, "close", None)
            if close is not None:
                close()
            elif isinstance(thing, int):
                os.close(thing)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for number in request["ignored"]:  # ignored where `aws` started (bash's background jobs: SIGINT, SIGQUIT)
            signal.signal(number, signal.SIG_IGN)
        for target in request["closed"]:  # closed where `aws` started: as Python starts then, no sys.std* for it
            os.close(target)
            name = ("stdin", "stdout", "stderr")[target]
            setattr(sys, name, None)
            setattr(sys, f"__{name}__", None)
        os.chdir(str(request["cwd"]))
        os.umask(request["umask"])  # the files the CLI writes (a download) get the caller's permissions
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["AWS_DATA_PATH"] = _data_path()
        _distribution_for_this_call()
        if os.environ.get("LC_CTYPE", "") == "UTF-8":  # as the `aws` entry point does
            os.environ["LC_CTYPE"] = "en_US.UTF-8"
        sys.argv = ["aws", *request["argv"]]
        import awscli.clidriver

        code = awscli.clidriver.main()
    except SystemExit as end:
        code = end.code
    except BaseException:  # what an uncaught exception does to the real `aws`: a traceback and status 1
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        os._exit(_finish(code))


def _data_path() -> str:
    """AWS_DATA_PATH as importing awscli sets it (awscli/__init__.py, v1 and v2 alike): the caller's own entries, each
    with variables and ~ expanded, then the CLI's data directory. The server imported awscli under its own
    environment, so each call redoes it under the caller's."""
    import awscli

    entries = (
        [os.path.expanduser(os.path.expandvars(entry)) for entry in os.environ.get("AWS_DATA_PATH", "").split(os.pathsep)]
        if "AWS_DATA_PATH" in os.environ
        else []
    )
    entries.append(os.path.join(os.path.dirname(os.path.abspath(awscli.__file__)), "data"))
    return os.pathsep.join(entries)


def _finish(code: object) -> int:
    """What the interpreter does after the entry point's sys.exit(code): wait for the non-daemon threads, run the
    atexit functions, flush, and turn the code into a status."""
    try:
        threading._shutdown()  # type: ignore[attr-defined]
        import atexit

        atexit._run_exitfuncs()
    finally:
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError, AttributeError):  # (None: closed where `aws` started)
                stream.flush()
    return 0 if code is None else int(code) & 0xFF


def _from_client(conn: socket.socket, pid: int, calls: dict[int, socket.socket], selector: selectors.BaseSelector) -> None:
    """A signal to forward to the child, or the client gone (killed): then the child goes too."""
    try:
        data = conn.recv(64)
    except OSError:
        data = b""
    if not data:
        selector.unregister(conn)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return
    for line in data.decode().split("\n"):
        if line.startswith("sig "):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, int(line[4:]))


def _reap(calls: dict[int, socket.socket], selector: selectors.BaseSelector, log: Any) -> None:
    while calls:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = calls.pop(pid, None)
        if conn is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        reply = f"signal {-code}\n" if code < 0 else f"exit {code}\n"
        log.write(f"{time.strftime('%H:%M:%S')} {pid} ended: {reply}")
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(conn)
        with contextlib.suppress(OSError):
            conn.sendall(reply.encode())
        conn.close()


SHIM = """#!{python} -IS
import sys
sys.path.insert(0, {here!r})
from aws_zygote_client import client
sys.exit(client({socket!r}, {real!r}, {endpoint_flag!r}))
"""


class Zygote:
    """One server for one CLI: `real` is its `aws` entry point, `python` the interpreter that runs it."""

    def __init__(self, real: Path, python: str, endpoint_flag: bool) -> None:
        self.real, self.endpoint_flag = real, endpoint_flag
        self.dir = Path(tempfile.mkdtemp(prefix="awsz-"))  # short: a Unix socket's path is at most 107 bytes
        self.socket = self.dir / "aws.sock"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON"))}
        self.process = subprocess.Popen(
            [python, "-I", __file__, "serve", str(self.socket)],
            stdin=subprocess.PIPE,  # the server ends (its calls too) when this end closes: when this process ends
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd="/",
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.process.kill()
            raise RuntimeError(f"the aws fork server for {real} did not start: {line!r}")

    def shim(self, directory: Path) -> Path:
        """Write an `aws` into `directory` that runs through this server; returns the directory."""
        directory.mkdir(parents=True, exist_ok=True)
        aws = directory / "aws"
        aws.write_text(
            SHIM.format(
                python=sys.executable,
                here=str(Path(__file__).resolve().parent),
                socket=str(self.socket),
                real=str(self.real),
                endpoint_flag=self.endpoint_flag,
            )
        )
        aws.chmod(0o755)
        return directory

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "".join(Path(f"{self.socket}.log").read_text().splitlines(keepends=True)[-lines:])
        except OSError as err:
            return f"(no log: {err})"

    def stop(self) -> None:
        """End the server and the calls still running (it removes its socket and log)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    serve(sys.argv[2])
