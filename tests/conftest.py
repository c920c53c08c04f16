"""Test fixtures: Pulumi mocks that record every registration, and helpers to run the real program."""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import settings
from pulumi.runtime.stack import run_pulumi_func

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import container_signals  # noqa: E402

from tools.mocks import RecordingMonitor, Registration, SimfleetMocks  # noqa: E402

container_signals.restore()  # before any script starts (tests/container_signals.py)


def _share_botocore_data_between_sessions() -> None:
    """Every botocore session in this process reads its endpoint and service-model JSON through one Loader per data
    path, as workloads/eks_auth.py does for the product's own sessions. moto sets boto3's default session aside in each
    mock, so each test's first client built a new session that parsed those files again: ~0.15 s of CPU per test, a
    third of the provider tests' time. The files do not change while the tests run; the Loader caches what it parsed."""
    import boto3.session
    import botocore.session

    from workloads.eks_auth import keep_one_boto3_data_path

    botocore.session.create_loader = functools.lru_cache(maxsize=None)(botocore.session.create_loader)  # type: ignore[attr-defined]
    append_boto3_data = boto3.session.Session._setup_loader

    def setup_loader(self: boto3.session.Session) -> None:
        append_boto3_data(self)
        keep_one_boto3_data_path(self._loader)

    boto3.session.Session._setup_loader = setup_loader  # type: ignore[method-assign]


_share_botocore_data_between_sessions()


def _inspect_each_event_handler_once() -> None:
    """A new botocore session registers some 200 built-in event handlers and checks, through inspect, that each takes
    **kwargs: ~10 ms of CPU per session, and the tests make sessions by the hundred (moto, each test's own credentials).
    A function's signature does not change, so the answer is kept per function (a bound method by its function, whose
    **kwargs are the same); a handler without **kwargs is still refused (tests/test_test_support.py)."""
    import inspect
    import weakref

    import botocore.hooks

    check = botocore.hooks.accepts_kwargs
    known: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    @functools.wraps(check)
    def accepts_kwargs(func: Any) -> Any:
        function = getattr(func, "__func__", func)
        if not inspect.isfunction(function):  # a partial, a callable object: asked each time
            return check(func)
        if function not in known:
            known[function] = check(func)
        return known[function]

    botocore.hooks.accepts_kwargs = accepts_kwargs  # type: ignore[attr-defined]


_inspect_each_event_handler_once()


def _parse_each_kubernetes_schema_once() -> None:
    """kubernetes_validate.validate reads and parses two JSON files for every object it checks: the kind's schema and
    the version's 1.5 MB _definitions.json (~40 ms), and lists its schema directory twice. The packaged files do not
    change while the tests run, so each is parsed once per process; the validation itself is the package's own, with
    the same schemas (tests/test_test_support.py compares them with a fresh parse)."""
    from kubernetes_validate import utils

    listed = functools.lru_cache(maxsize=None)(utils.all_versions)

    @functools.wraps(utils.all_versions)
    def all_versions() -> list[str]:
        return list(listed())  # a new list each call, as the package returns

    utils.schema_contents = functools.lru_cache(maxsize=None)(utils.schema_contents)
    utils.all_versions = all_versions


_parse_each_kubernetes_schema_once()


class Recorded:
    """Registrations made while a test body ran, with lookups by type and name."""

    def __init__(self, monitor: RecordingMonitor) -> None:
        self.monitor = monitor

    @property
    def all(self) -> list[Registration]:
        return self.monitor.registrations

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.all if r.type == typ]

    def one(self, typ: str, name: str | None = None) -> Registration:
        matches = [r for r in self.of_type(typ) if name is None or r.name == name]
        assert len(matches) == 1, f"expected one {typ} named {name!r}, found {[r.name for r in matches]}"
        return matches[0]


@pytest.fixture
def pulumi_mocks() -> Iterator[Callable[[Callable[[], Any]], Recorded]]:
    """Run a function that builds resources under fresh mocks and wait for every registration.

    Usage: `rec = pulumi_mocks(lambda: Storage("s", args))`; then assert on `rec.one(type, name).inputs`.
    """

    def run(build: Callable[[], Any], stack: str = "dev", config: dict[str, str] | None = None) -> Recorded:
        settings.reset_options()
        pulumi.runtime.set_all_config({"aws:region": "us-east-1", **(config or {})})
        mocks = SimfleetMocks("us-east-1")
        monitor = RecordingMonitor(mocks)
        # The loop must exist before set_mocks: it creates the root Stack, whose URN future binds to the current loop.
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        pulumi.runtime.set_mocks(mocks, project="simfleet", stack=stack, preview=False, monitor=monitor)
        try:
            loop.run_until_complete(run_pulumi_func(build))
        finally:
            loop.close()
        return Recorded(monitor)

    yield run
    settings.reset_options()


@pytest.fixture
def provider_world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """What the SimRun provider sees in its tests: static fake credentials (no profile, no instance metadata, so
    nothing can reach AWS), moto with the artifacts bucket, and no sleeping between retries or while waiting on
    finalizers (the attempt count stays the production one)."""
    import boto3
    from fake_kube import ARTIFACTS_BUCKET
    from moto import mock_aws

    from workloads import eks_auth, kube

    for key, value in {
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "fake-secret-key-for-tests",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setattr(kube, "RETRY", kube.RetryPolicy(attempts=5, first_delay=0, max_delay=0))
    monkeypatch.setattr(kube, "TERMINATING", kube.WaitPolicy(seconds=5, poll=0.02))
    eks_auth.reset_caches()
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=ARTIFACTS_BUCKET)
        yield
    eks_auth.reset_caches()


@pytest.fixture
def cluster() -> Iterator[Any]:
    """The fake Kubernetes API server (tests/fake_kube.py), serving on 127.0.0.1 for one test."""
    from fake_kube import FakeKube

    with FakeKube() as server:
        yield server


@pytest.fixture(scope="session")
def project_commands(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A scratch copy of the project where each distinct shell command runs once per test session, offline, its result
    shared by every worker (tests/project_commands.py): `make plan` there is the command the README shows."""
    from project_commands import session_project

    return session_project(tmp_path_factory)


@pytest.fixture(scope="session", autouse=True)
def _shared_plans_stay_as_planned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Where this session's workers share what they make once (tests/project_commands.py, tests/sample_plans.py); at
    the end, no shared sample plan may have been changed by a test."""
    import project_commands

    project_commands.session_root = project_commands.session_dir(tmp_path_factory)
    yield
    shared = sys.modules.get("sample_plans")
    if shared is not None:
        changed = shared.changed()
        assert not changed, f"a test changed the shared plan of {changed}: change a copy (tests/sample_plans.py)"


# Cycle collection in a test worker. A worker lives for the whole session and holds a large heap (the product's and
# the SDKs' modules, parsed schemas and service models, moto's state, the plans a test builds), and with Python's
# default thresholds (700, 10, 10) it collected the oldest generation 20-30 times a session, each pass walking every
# live object: ~35 s of the four workers' CPU (of ~290 s), measured with gc.callbacks on 2026-12-08. Larger thresholds
# collect the same cyclic garbage less often (6 full passes a worker, ~5 s in all), and freezing what collection
# imported keeps the modules and their constants out of every later pass (gc.freeze). Reference counting frees
# everything else as usual; a worker's peak memory grew from 768 to 842 MB.
GC_THRESHOLDS = (50_000, 20, 20)


def pytest_collection_finish(session: pytest.Session) -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked `slow` go first, otherwise in collection order: pytest-xdist hands tests out in this order, and a
    20-30 s test handed out last would leave the other workers idle while it runs (longest first is the classic way to
    keep parallel workers evenly loaded to the end)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A test that gave up waiting for a process (subprocess's TimeoutExpired) reports what every process under this
    worker was doing then, and the last AWS CLI calls of this worker's fork servers: a hang that happens once in a
    few hundred runs (on CI, say) must leave enough behind to be found."""
    report: Any = yield
    if call.when == "call" and call.excinfo is not None and call.excinfo.errisinstance(subprocess.TimeoutExpired):
        import process_tree

        harness = sys.modules.get("pod_harness")
        calls = harness.aws_calls() if harness is not None else ""
        report.sections.append(("processes when the wait gave up", f"{process_tree.descendants(os.getpid())}\n{calls}"))
    return report  # type: ignore[no-any-return]
