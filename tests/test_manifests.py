"""The plan's manifest writer (tools/manifests.py): the emitter's exact bytes, literal blocks, and every plan object."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from sample_plans import planned

from tools import manifests
from tools.manifests import DYNAMIC_TYPE, ManifestDumper, documents, dump, emitter_dump, kubernetes_objects, manifest_dumper
from workloads.inputs import in_apply_order, objects_from_inputs
from workloads.renderers.common import is_shared

ROOT = Path(__file__).resolve().parent.parent

# Shapes the plan's objects have and some they may grow: nesting of every kind, empty collections, scalars the
# emitter must quote, multi-line text in mappings and sequences at several depths, unicode.
TRICKY: list[dict[str, Any]] = [
    {"a": 1, "b": True, "c": None, "d": False, "e": -7, "f": "plain"},
    {"empty": {}, "none": [], "nested": {"deeper": {"deepest": []}}},
    {"list": [[1, 2], [], [[3]], {}, {"k": [{"x": "y"}, []]}]},
    {"quoted": ["yes", "no", "on", "123", "1.5", "null", "~", "", " lead", "trail ", "a: b", "a #b", "#x", "- a", "*x"]},
    {"unicode": "héllo wörld ✓", "tab": "a\tb", "control": "bell\x07"},
    {"script": "#!/bin/bash\nset -eu\n\n  indented\necho done\n"},
    {"no-final-newline": "one\ntwo", "two-final": "one\n\n", "leading-space": "  lead\nnext\n"},
    {"in-list": ["first\nsecond\n", {"k": "deep\ntext\n", "l": ["x\ny"]}], "trailing-spaces": "a  \nb"},
    {"deep": [{"k": ["  lead\nnext\n", {"m": "  two\n  lines"}]}], "keep-last": "x\n\n"},
    {"long": "word " * 60, "url": "https://example.com/a?b=c&d=e#f"},
]


def plan_objects() -> list[tuple[str, dict[str, Any]]]:
    return [item for stack in ("dev", "prod") for item in kubernetes_objects(planned(stack).registrations)]


@pytest.mark.parametrize("body", TRICKY, ids=range(len(TRICKY)))
def test_dump_writes_the_emitters_bytes_and_reads_back(body: dict[str, Any]) -> None:
    text = dump(body)
    assert text == emitter_dump(body)
    assert yaml.safe_load(text) == body


def test_every_planned_object_is_written_as_the_emitter_writes_it() -> None:
    objects = plan_objects()
    assert len(objects) > 100
    for rel, body in objects:
        text = dump(body)
        assert text == emitter_dump(body), rel
        assert yaml.safe_load(text) == body, rel


def test_the_pure_python_emitter_writes_the_same_bytes_as_libyaml() -> None:
    # Without libyaml the plan falls back to PyYAML's own emitter: the manifests must not change with it.
    if not hasattr(yaml, "CSafeDumper"):
        pytest.skip("this PyYAML was built without libyaml: there is only the pure-Python emitter to compare")
    pure = manifest_dumper(yaml.SafeDumper)
    for rel, body in [*plan_objects(), *((f"tricky-{i}", b) for i, b in enumerate(TRICKY))]:
        assert emitter_dump(body, pure) == emitter_dump(body), rel


def test_layouts_the_writer_does_not_cover_go_to_the_emitter_whole() -> None:
    long_key = {"k" * 130: "v", "short": [1.5, {"x": 2}]}  # a `? key` entry, and a float
    assert dump(long_key) == emitter_dump(long_key)
    assert "? " in dump(long_key)
    numeric_keys = {1: "one", "two": {3: [0.25]}}
    assert dump(numeric_keys) == emitter_dump(numeric_keys)
    multi_line_key = {"a\nb": 1}
    assert dump(multi_line_key) == emitter_dump(multi_line_key)
    assert yaml.safe_load(dump(multi_line_key)) == multi_line_key


def test_scripts_are_literal_blocks_that_read_as_the_files_they_are() -> None:
    _, configmap = next((rel, body) for rel, body in plan_objects() if rel.startswith("shared/") and body["kind"] == "ConfigMap")
    text = dump(configmap)
    for name, content in configmap["data"].items():
        if "\n" in content:
            assert f"  {name}: |" in text, name
            body_lines = [line for line in content.splitlines() if line.strip()]
            assert f"\n    {body_lines[-1]}\n" in text, name


def test_the_scalar_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifests, "_SCALARS_KEPT", 10)
    manifests._scalars.clear()
    body = {f"key-{i}": f"value-{i}" for i in range(50)}
    assert dump(body) == emitter_dump(body)
    assert len(manifests._scalars) <= 10


# Text the writer formats itself as plain, and look-alikes the emitter must quote: every implicit type of YAML 1.1
# (bool, int in all bases, sexagesimal, float, null, timestamp, merge, value), and indicators a plain scalar cannot hold.
PLAIN_BAIT = [
    "run-00001",
    "5c9eca0d13f6",
    "s3://bucket/runs/a/",
    "tcp://127.0.0.1:5555",
    "us-east-1",
    "1f3c2a9",
    "a.b_c/d-e",
    "true",
    "False",
    "yes",
    "Y",
    "n",
    "on",
    "OFF",
    "null",
    "Null",
    "0",
    "12",
    "-3",
    "0x1F",
    "0o17",
    "017",
    "0b101",
    "1_000",
    "1:20",
    "190:20:30",
    "1.5",
    "1e5",
    "6.8523015e+5",
    "685.230_15e+03",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "2002-12-14",
    "a:",
    "a: b",
    "a:b",
    "a#b",
    "a #b",
    "a,b",
    "a[b]",
    "a{b}",
    "a?b",
    "a'b",
    'a"b',
    "a!b",
    "a%b",
    "a@b",
    "a&b",
    "a*b",
    "a|b",
    "a>b",
    "a=b",
    "a+b",
    "a b",
    "a\tb",
    "\u00e9t\u00e9",
    "-a",
    ".a",
    "...",
    "---",
    "_a",
    "/a",
    ":a",
]


def _plain_candidates() -> list[str]:
    rng = random.Random(17)
    alphabet = "aZ09._/:-eE+xXob"
    made = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(3000)}
    return [*PLAIN_BAIT, *sorted(made)]


def test_text_written_plain_without_the_emitter_is_what_both_emitters_write(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Any] = []
    real = manifests.emitter_dump

    def counting(body: Any, *args: Any) -> str:
        asked.append(body)
        return real(body, *args)

    monkeypatch.setattr(manifests, "emitter_dump", counting)
    manifests._scalars.clear()
    candidates = _plain_candidates()
    bodies = [{"k": text, "list": [text, {"in": text}]} for text in candidates]
    written = [dump(body) for body in bodies]
    # The fast path is taken (most candidates never reach the emitter) and gives the emitters' bytes, C and pure.
    assert len(candidates) - len(asked) > 500
    assert {"k": "run-00001"} not in asked and {"k": "true"} in asked
    pure = manifest_dumper(yaml.SafeDumper)
    for body, text in zip(bodies, written, strict=True):
        assert text == real(body) == real(body, pure), body["k"]
        assert yaml.safe_load(text) == body


def test_the_key_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifests, "_HEADS_KEPT", 10)
    manifests._heads.clear()
    body = {f"key-{i}": {f"inner-{i}": i} for i in range(50)}
    assert dump(body) == emitter_dump(body)
    assert all(len(heads) <= 10 for heads in manifests._heads.values())


def test_a_scalar_mapping_written_once_is_reused_only_for_the_same_entries_and_types(monkeypatch: pytest.MonkeyPatch) -> None:
    # True == 1 == 1.0 and they hash alike, but each is written its own way; the same mapping at another depth is
    # indented otherwise; a mapping holding a mapping is not a scalar mapping.
    manifests._entries.clear()
    body = {
        "a": [{"x": 1}, {"x": True}, {"x": 1.0}, {"x": "1"}, {"x": 1}, {"x": None}, {"x": 0}, {"x": False}],
        "b": {"c": [{"x": 1}, {"x": True}, [{"x": 1}]], "d": [{"x": {"y": 1}}, {"x": {"y": 1}}]},
        "env": [{"name": "A", "value": "b"}, {"name": "A", "value": "b\nc"}, {"name": "A", "value": "b"}],
    }
    assert dump(body) == emitter_dump(body)
    assert manifests._entries  # reused, not just bypassed
    monkeypatch.setattr(manifests, "_ENTRIES_KEPT", 3)
    manifests._entries.clear()
    assert dump(body) == emitter_dump(body)
    assert len(manifests._entries) <= 3


def emitter_dump_all(bodies: list[Any]) -> str:
    text: str = yaml.dump_all(bodies, Dumper=ManifestDumper, sort_keys=False, width=manifests._NO_FOLDING, allow_unicode=True)
    return text


def test_several_objects_are_one_stream_of_the_emitters_bytes() -> None:
    # A `|+` block ends its document open (`...` when alone): dump_all closes it with the next document's `---`.
    for count in (1, 2, 3):
        for first in range(len(TRICKY)):
            bodies = [TRICKY[(first + i) % len(TRICKY)] for i in range(count)]
            text = documents(bodies)
            assert text == emitter_dump_all(bodies), bodies
            assert list(yaml.safe_load_all(text)) == bodies
    assert documents([{"k": "x\n\n"}, {"a": 1}]) == "k: |+\n  x\n\n---\na: 1\n"
    odd = [{"a": 1}, {}, [1, "two"], "text"]  # not the block mappings dump lays out: the emitter writes them all
    assert documents(odd) == emitter_dump_all(odd)


def test_a_runs_objects_are_one_file_in_the_order_they_are_applied() -> None:
    objects = [(rel, body) for rel, body in kubernetes_objects(planned("dev").registrations) if rel.startswith("runs/")]
    by_file: dict[str, list[dict[str, Any]]] = {}
    for rel, body in objects:
        by_file.setdefault(rel, []).append(body)
    workloads = [r for r in planned("dev").registrations if r.type == DYNAMIC_TYPE and "spec" in r.inputs]
    assert set(by_file) == {f"runs/{r.inputs['runName']}.yaml" for r in workloads}
    # In the order the provider applies them (a continuation's Job, then the gate's account, then the gate Job), the
    # shared runtime ConfigMap left to shared/.
    for reg in workloads:
        run = reg.inputs["runName"]
        applied = in_apply_order(objects_from_inputs(reg.inputs), run)
        assert by_file[f"runs/{run}.yaml"] == [o for o in applied if not is_shared(o)], run
    assert len(by_file["runs/trot-continue.yaml"]) == 6
    # SimRunProvider.create writes the run's Job before anything else (tests/test_provider.py pins its requests),
    # then its companions in the renderer's order: a viewport run's Job is rendered after its Service.
    assert [o["kind"] for o in by_file["runs/trot-baseline.yaml"]] == ["Job", "Service", "NetworkPolicy"]
    for bodies in by_file.values():
        assert documents(bodies) == emitter_dump_all(bodies)


def test_objects_under_one_name_are_written_as_one_file_of_documents(tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    job, account = {"kind": "Job", "metadata": {"name": "r"}}, {"kind": "ServiceAccount", "metadata": {"name": "r-gate"}}
    namespace = {"kind": "Namespace", "metadata": {"name": "n"}}
    manifests.write_manifests(out, [("runs/r.yaml", job), ("platform/n.yaml", namespace), ("runs/r.yaml", account)])
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["platform", "platform/n.yaml", "runs", "runs/r.yaml"]
    assert list(yaml.safe_load_all((out / "runs" / "r.yaml").read_text())) == [job, account]
    assert (out / "platform" / "n.yaml").read_text() == dump(namespace)


def test_write_manifests_replaces_an_earlier_plans_files(tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    manifests.write_manifests(out, [("runs/old/x.yaml", {"kind": "ConfigMap"}), ("platform/y.yaml", {"kind": "Job"})])
    manifests.write_manifests(out, [("platform/y.yaml", {"kind": "Namespace", "metadata": {"name": "n"}})])
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["platform", "platform/y.yaml"]
    assert (out / "platform" / "y.yaml").read_text() == "kind: Namespace\nmetadata:\n  name: n\n"


def test_a_plan_writes_over_the_files_it_keeps_and_removes_the_rest(tmp_path: Path) -> None:
    """A second plan rewrites a run's file in place (same inode: no file created, the reason for the layout), drops
    the runs it no longer has, an earlier layout's per-run directories, and whatever else lies there; a symlink is
    removed, never written through."""
    out = tmp_path / "manifests"
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("not the plan's\n")
    manifests.write_manifests(out, [("runs/kept.yaml", {"kind": "Job"}), ("runs/gone.yaml", {"kind": "Job"})])
    inode = (out / "runs" / "kept.yaml").stat().st_ino
    (out / "runs" / "old-layout").mkdir()
    (out / "runs" / "old-layout" / "old-layout.yaml").write_text("kind: Job\n")
    (out / "runs" / "linked.yaml").symlink_to(elsewhere)
    (out / "runs" / "dir-where-a-file-goes.yaml").mkdir()
    (out / "runs" / "dir-where-a-file-goes.yaml" / "x").write_text("x")
    manifests.write_manifests(
        out,
        [
            ("runs/kept.yaml", {"kind": "Job", "metadata": {"name": "kept"}}),
            ("runs/linked.yaml", {"kind": "Job"}),
            ("runs/dir-where-a-file-goes.yaml", {"kind": "Job"}),
        ],
    )
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "runs",
        "runs/dir-where-a-file-goes.yaml",
        "runs/kept.yaml",
        "runs/linked.yaml",
    ]
    assert (out / "runs" / "kept.yaml").stat().st_ino == inode
    assert (out / "runs" / "kept.yaml").read_text() == "kind: Job\nmetadata:\n  name: kept\n"
    assert not (out / "runs" / "linked.yaml").is_symlink() and elsewhere.read_text() == "not the plan's\n"
    assert (out / "runs" / "dir-where-a-file-goes.yaml").read_text() == "kind: Job\n"


def test_a_manifests_path_that_is_a_file_or_a_symlink_is_replaced_by_the_directory(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("theirs")
    for leftover in ("file", "link"):
        out = tmp_path / leftover
        if leftover == "file":
            out.write_text("x")
        else:
            out.symlink_to(target, target_is_directory=True)
        manifests.write_manifests(out, [("platform/y.yaml", {"kind": "Job"})])
        assert out.is_dir() and not out.is_symlink() and (out / "platform" / "y.yaml").is_file()
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


# Text whose emitter formatting depends on where it sits: a `|+` block (the emitter then ends the document with `...`),
# Unicode line breaks the emitter writes raw and indents after, and keys libyaml writes as `? key` (any line break; more
# than 128 bytes of UTF-8, fewer than 128 characters).
WHERE_IT_SITS = ["\n", " \n", "a\n\n", "\n\n", "a\u2028b", "a\u2029", "\u2028", "a\x85b", "x\ry", "é" * 70, "日" * 43]


def test_text_whose_layout_depends_on_its_place_is_written_as_the_emitter_writes_it() -> None:
    manifests._scalars.clear()
    for text in WHERE_IT_SITS:
        for body in (
            {"data": {"f": text, "g": 1}},
            {"a": [{"b": text}, text, [text]], "z": "end"},
            {"k": {text: 1, "after": "x"}},
            {text: [text]},
        ):
            written = dump(body)
            assert written == emitter_dump(body), body
            assert yaml.safe_load(written) == body, body


def test_without_libyaml_the_writer_gives_the_pure_emitters_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    # A copy of the module loaded as on a PyYAML without libyaml: its writer must match the pure emitter, whose layout
    # differs from libyaml's in places (an empty key is `? ''` to it, `'': ...` to libyaml).
    import importlib.util

    monkeypatch.delattr(yaml, "CSafeDumper", raising=False)
    spec = importlib.util.spec_from_file_location("manifests_without_libyaml", manifests.__file__)
    assert spec is not None and spec.loader is not None
    pure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pure)
    assert pure._BASE_DUMPER is yaml.SafeDumper
    for text in ["", *WHERE_IT_SITS, "plain", "yes", "a: b"]:
        for body in ({"k": {text: 1, "after": [text]}}, {"a": [{text: text}]}):
            assert pure.dump(body) == pure.emitter_dump(body), body
