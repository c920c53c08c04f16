"""The tests' own shortcuts give what the slow way gives: the kubernetes schemas parsed once per process (conftest.py),
and a shell command run once per session in the shared scratch project (tests/project_commands.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate import utils
from project_commands import Done, ProjectCommands

JOB: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "x", "namespace": "simfleet-runs"},
    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}},
}


def outcome(obj: dict[str, Any]) -> tuple[str, str, list[Any]] | str:
    """The version it passed against, or the error (message and path) kubernetes_validate raised."""
    try:
        return kubernetes_validate.validate(obj, "1.35", strict=True)
    except kubernetes_validate.ValidationError as err:
        return (type(err).__name__, err.message, list(err.path))


def test_each_kubernetes_schema_is_parsed_once_and_is_the_file_s_content() -> None:
    assert outcome(JOB) == "1.35"
    filenames = {args[0] for args, _ in _cached_calls()}
    assert any(f.endswith("/job-batch-v1.json") for f in filenames) and any(f.endswith("/_definitions.json") for f in filenames)
    for filename in filenames:
        cached = utils.schema_contents(filename, "1.35")
        assert cached is utils.schema_contents(filename, "1.35"), "parsed once"
        with open(str(utils.importlib_resources.files("kubernetes_validate").joinpath(filename))) as fresh:
            assert cached == json.load(fresh), filename
    assert utils.all_versions() == utils.all_versions.__wrapped__()  # type: ignore[attr-defined]
    assert utils.all_versions() is not utils.all_versions(), "a new list each call: a caller may change its own"


def _cached_calls() -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """The (filename, version) pairs the cache holds, read back from an uncached call of each."""
    cache = utils.schema_contents.cache_parameters  # type: ignore[attr-defined]
    assert cache()["maxsize"] is None
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    original = utils.schema_contents.__wrapped__  # type: ignore[attr-defined]

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append((args, kwargs))
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(utils, "schema_contents", spy)
        outcome(JOB)
    return seen


@pytest.mark.parametrize(
    "change",
    [
        lambda job: job["spec"].update({"backoffLimit": "six"}),  # a wrong type
        lambda job: job["spec"]["template"]["spec"]["containers"][0].update({"imagePullPolicy": 3}),
        lambda job: job["spec"].update({"notAField": True}),  # strict: unknown fields fail
        lambda job: None,
    ],
)
def test_validation_with_the_cache_is_validation_without_it(change: Any) -> None:
    job = json.loads(json.dumps(JOB))
    change(job)
    cached = outcome(job)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(utils, "schema_contents", utils.schema_contents.__wrapped__)  # type: ignore[attr-defined]
        fresh = outcome(job)
    assert cached == fresh


def test_a_command_runs_once_whoever_asks_and_its_result_is_kept(tmp_path: Path) -> None:
    results = tmp_path / "results"
    first, second = ProjectCommands(tmp_path, results), ProjectCommands(tmp_path, results)  # two workers
    code = "echo ran >> count; wc -l < count; echo to-stderr >&2; exit 3"
    done = first.run(code)
    assert done == Done(3, "1\n", "to-stderr\n")
    assert second.run("echo ran  >> count;   wc -l < count; echo to-stderr >&2; exit 3") == done  # whitespace aside
    assert (tmp_path / "count").read_text() == "ran\n", "run once"
    assert first.run("wc -l < count").stdout == "1\n", "another command runs"


def test_a_result_half_written_by_a_worker_that_died_is_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker killed while it wrote a command's result (or a sample plan's pickle) released the lock with half a file
    # written: every later asker read it (a JSONDecodeError, an UnpicklingError) instead of running the command again.
    commands = ProjectCommands(tmp_path, tmp_path / "results")
    real_text, real_bytes = Path.write_text, Path.write_bytes

    def half_then_dies(real: Any) -> Any:
        def write(path: Path, data: Any, *args: Any, **kwargs: Any) -> int:
            real(path, data[: len(data) // 2], *args, **kwargs)
            raise SystemExit("the worker died here")

        return write

    monkeypatch.setattr(Path, "write_text", half_then_dies(real_text))
    monkeypatch.setattr(Path, "write_bytes", half_then_dies(real_bytes))
    with pytest.raises(SystemExit):
        commands.run("echo x >> count; cat count")
    monkeypatch.undo()
    assert commands.run("echo x >> count; cat count") == Done(0, "x\nx\n", "")  # run again: nothing was recorded


def test_workers_asking_at_once_wait_for_the_one_that_runs_it(tmp_path: Path) -> None:
    """Four processes ask for the same slow command at the same moment: it runs once, and each gets its output."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path; from project_commands import ProjectCommands;"
        "print(ProjectCommands(Path(sys.argv[2]), Path(sys.argv[2]) / 'results').run('sleep 0.5; echo x >> runs; cat runs').stdout, end='')"
    )
    tests = str(Path(__file__).parent)
    askers = [
        subprocess.Popen([sys.executable, "-c", script, tests, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [asker.communicate(timeout=60)[0] for asker in askers]
    assert outputs == ["x\n"] * 4
    assert (tmp_path / "runs").read_text() == "x\n"


@pytest.mark.parametrize("stack", ["dev", "teams"])
def test_a_shared_sample_plan_is_what_a_fresh_plan_gives(stack: str) -> None:
    from sample_plans import SAMPLES, fingerprint, planned

    from tools.plan import run_program

    assert planned(stack) is planned(stack)
    assert fingerprint(planned(stack)) == fingerprint(run_program(SAMPLES[stack], stack))


def test_a_changed_shared_plan_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    import sample_plans

    result = sample_plans.planned("dev")
    registration = result.registrations[0]
    monkeypatch.setitem(registration.inputs, "changedByATest", True)
    assert sample_plans.changed() == ["dev"]
    monkeypatch.undo()
    assert sample_plans.changed() == []


def test_event_handlers_are_checked_as_botocore_checks_them() -> None:
    import botocore.hooks
    import botocore.session
    from botocore.handlers import BUILTIN_HANDLERS

    cached, original = botocore.hooks.accepts_kwargs, botocore.hooks.accepts_kwargs.__wrapped__  # type: ignore[attr-defined]
    botocore.session.Session()  # every built-in handler checked (and kept)
    handlers = [entry[1] for entry in BUILTIN_HANDLERS]

    class Handlers:
        def with_kwargs(self, **kwargs: Any) -> None: ...

        def without(self, request: Any) -> None: ...

    for handler in [*handlers, Handlers().with_kwargs, Handlers().without, Handlers().with_kwargs]:
        assert bool(cached(handler)) == bool(original(handler)), handler
    with pytest.raises(ValueError, match="must accept keyword arguments"):
        botocore.session.Session().register("before-call", Handlers().without)
    with pytest.raises(ValueError, match="must accept keyword arguments"):
        botocore.session.Session().register("before-call", Handlers().without)  # the kept answer refuses it too


def test_chromium_s_events_that_come_in_the_same_read_as_an_answer_are_kept() -> None:
    """Page.navigate's answer and Page.loadEventFired can arrive in one read: the event must still be seen (it was
    dropped once, and the report test then waited 60 s for a page that had loaded)."""
    from chromium import _Pipe

    to_browser_read, to_browser_write = os.pipe()
    from_browser_read, from_browser_write = os.pipe()
    try:
        pipe = _Pipe(to_browser_write, from_browser_read)
        before, answer, after = (
            {"method": "Page.frameStartedLoading"},
            {"id": 1, "result": {"frameId": "f"}},
            {"method": "Page.loadEventFired"},
        )
        os.write(from_browser_write, b"\0".join(json.dumps(m).encode() for m in (before, answer, after)) + b"\0")
        assert pipe.send("Page.navigate", {"url": "file:///x"}, timeout=5) == {"frameId": "f"}
        assert json.loads(os.read(to_browser_read, 1 << 16).rstrip(b"\0"))["method"] == "Page.navigate"
        assert pipe.events == [before, after]
        pipe.wait_for("Page.loadEventFired", timeout=0.1)
    finally:
        for fd in (to_browser_read, to_browser_write, from_browser_read, from_browser_write):
            os.close(fd)
