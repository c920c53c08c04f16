"""DESIGN "Scale": the SDK's RecursionError past ~350 dynamic resources, its fix, and thousands of runs."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from fake_kube import run_props

from tools.bench_plan import scale_stack
from tools.mocks import DYNAMIC_TYPE
from workloads.provider import SimRun

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# 400 bare dynamic resources under mocks, in a fresh interpreter (the unfixed SDK corrupts pickle for the process).
BARE_RESOURCES = textwrap.dedent("""
    import asyncio, pickle, sys
    import pulumi
    from pulumi.dynamic import CreateResult, Resource, ResourceProvider
    from pulumi.runtime.stack import run_pulumi_func

    class Null(ResourceProvider):
        def create(self, props):
            return CreateResult("x", props)

    class Bare(Resource):
        def __init__(self, name):
            super().__init__(Null(), name, {"nested": {"b": 1, "a": 2}})

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            return args.name, dict(args.inputs)
        def call(self, args):
            return {}

    if sys.argv[1] == "fixed":
        from workloads.provider import install_sdk_fix
        install_sdk_fix()
    original = pickle._Pickler._batch_setitems
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.set_mocks(Mocks(), preview=False)
    try:
        loop.run_until_complete(run_pulumi_func(lambda: [Bare(f"r{i}") for i in range(400)]))
    except RecursionError:
        print("RecursionError")
    else:
        print("ok", pickle._Pickler._batch_setitems is original)
""")


def run_bare(mode: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", BARE_RESOURCES, mode], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def test_the_sdk_bug_reproduces_without_the_fix() -> None:
    # If this starts printing "ok", pulumi fixed serialize_provider: drop install_sdk_fix (workloads/provider.py).
    assert run_bare("unfixed") == "RecursionError"


def test_the_fix_keeps_pickle_unpatched_across_400_dynamic_resources() -> None:
    assert run_bare("fixed") == "ok True"


@pytest.mark.slow
def test_two_thousand_simruns_register_under_mocks(pulumi_mocks: Any) -> None:
    count = 2000
    original = pickle._Pickler._batch_setitems  # type: ignore[attr-defined]
    endpoint = "https://0123456789ABCDEF.gr7.us-east-1.eks.amazonaws.com"
    last: dict[str, Any] = {}
    template = run_props(endpoint, viewport=False)

    def build() -> None:
        sims = [
            SimRun(f"runs-run-{i:04d}", {**template, "runName": f"run-{i:04d}", "specHash": f"{i:012x}"}) for i in range(count)
        ]
        # The typed outputs resolve (to what the mocked provider reports for a new Job).
        for name in ("status", "spec_hash"):
            getattr(sims[-1], name).apply(lambda value, name=name: last.__setitem__(name, value))

    rec = pulumi_mocks(build)
    registered = rec.of_type(DYNAMIC_TYPE)
    assert len(registered) == count
    assert {r.inputs["runName"] for r in registered} == {f"run-{i:04d}" for i in range(count)}
    assert len({r.inputs["__provider"] for r in registered}) == 1, "one stateless provider, serialized once"
    assert pickle._Pickler._batch_setitems is original  # type: ignore[attr-defined]
    assert last == {"status": "Pending", "spec_hash": f"{count - 1:012x}"}


@pytest.mark.slow
def test_a_two_thousand_run_stack_plans(tmp_path: Path) -> None:
    from tools.plan import run_program

    stack = tmp_path / "Pulumi.scale.yaml"
    stack.write_text(json.dumps(scale_stack(2000)))
    result = run_program(stack)
    runs = [r for r in result.registrations if r.type == DYNAMIC_TYPE and r.inputs.get("kind") == "run"]
    assert len(runs) == 2000
    assert len({r.inputs["specHash"] for r in runs}) == 2000
    assert sum(1 for r in result.registrations if r.type == "eks:index:Cluster") == 1, "the platform is planned too"
    # run-0002 continues from run-0000's checkpoint: its SimRun waits for that one.
    by_name = {r.inputs["runName"]: r for r in runs}
    assert by_name["run-00000"].urn in by_name["run-00002"].options["dependsOn"]


def test_the_stack_trace_of_a_registration_is_the_sdks_own() -> None:
    """workloads/sdk_fix.py builds the StackTrace a registration sends from the frames themselves (no source lines
    read, one URI per file): the same message as the SDK's _get_stack_trace, for a resource made three constructors
    deep (the concrete resource's frames and everything older) and for a call with fewer."""
    from workloads import sdk_fix

    sdk_fix.install_sdk_fix()
    sdk = sdk_fix.sdk_stack_trace
    assert sdk is not None and sdk is not sdk_fix.stack_trace

    class Resource:
        def __init__(self) -> None:
            self.traces = (sdk(), sdk_fix.stack_trace())

    class Custom(Resource):
        def __init__(self) -> None:
            super().__init__()

    class Concrete(Custom):
        def __init__(self) -> None:
            super().__init__()

    def user_code() -> tuple[Any, Any]:
        return Concrete().traces

    ours_sdk, ours = user_code()
    assert len(ours.frames) > 3 and ours == ours_sdk
    assert ours.frames[0].pc.uri.endswith("/tests/test_scale.py") and ours.frames[0].pc.line > 0
    shallow_sdk, shallow = Resource().traces  # one constructor: no frames, as the SDK answers
    assert shallow == shallow_sdk and not shallow.frames
