"""The plan's Kubernetes manifests: which objects a stack would create, each run's rendered once, written as YAML.

Writing them was most of a large plan's time. They are written as libyaml's C emitter writes them when PyYAML
was built with it (the wheels are), PyYAML's pure-Python emitter otherwise, with multi-line text (scripts,
configuration files) as literal blocks that read as the files they are, and lines never folded; `dump` lays out
the blocks itself and asks the emitter only how to write each distinct scalar. The bytes are deterministic.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from workloads.inputs import objects_from_inputs
from workloads.renderers.common import is_shared

DYNAMIC_TYPE = "pulumi-python:dynamic:Resource"
NON_OBJECT_K8S = ("kubernetes:helm.sh/", "pulumi:providers:")
# The top-level fields of a Kubernetes object that a pulumi-kubernetes resource's inputs carry.
OBJECT_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "metadata",
        "spec",
        "data",
        "immutable",
        "rules",
        "roleRef",
        "subjects",
        "stringData",
        "type",
        "automountServiceAccountToken",
        "provisioner",
        "parameters",
        "reclaimPolicy",
        "volumeBindingMode",
        "mountOptions",
        "allowVolumeExpansion",
        # Custom resources with top-level fields (Kueue's WorkloadPriorityClass).
        "value",
        "description",
    }
)

# libyaml's emitter when PyYAML was built with it (yaml.__with_libyaml__; the wheels are), else the pure-Python one.
_BASE_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# Keys libyaml and PyYAML write as simple keys (`key: value`): shorter than this (PyYAML emitter.check_simple_key,
# libyaml yaml_emitter_check_simple_key); longer ones become explicit `? key` entries, which `dump` leaves to them.
_SIMPLE_KEY_LIMIT = 128
# A line width no line reaches: neither emitter folds (width -1 means unlimited to libyaml, but 80 to PyYAML's own).
_NO_FOLDING = 1 << 30


def manifest_dumper(base: type[yaml.SafeDumper]) -> type[yaml.SafeDumper]:
    """Safe YAML on `base`'s emitter, with multi-line strings as literal blocks and no anchors (a dict used twice is
    written out twice)."""

    class ManifestDumper(base):  # type: ignore[misc, valid-type]
        def ignore_aliases(self, data: Any) -> bool:
            return True

    ManifestDumper.add_representer(str, _represent_str)
    return ManifestDumper


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # A literal block where the emitter allows one (it falls back to quoting text a block cannot hold, such as
    # trailing spaces on a line); one-line strings keep the emitter's own choice.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


ManifestDumper = manifest_dumper(_BASE_DUMPER)


def emitter_dump(body: Any, dumper: type[yaml.SafeDumper] = ManifestDumper) -> str:
    """`body` as the emitter writes it: block style, keys in the renderer's order, no line folding."""
    text: str = yaml.dump(body, Dumper=dumper, sort_keys=False, width=_NO_FOLDING, allow_unicode=True)
    return text


def dump(body: Any) -> str:
    """One manifest as YAML text: the same bytes as emitter_dump, several times faster.

    A Job is ~1,000 nodes, and the emitter's per-node cost (PyYAML's Python representer, then events into the
    emitter) made writing manifests most of a large plan's time. Here the layout is written directly, as both
    emitters lay out block style, and the emitter formats each distinct scalar once (its quoting and literal
    blocks); tests/test_manifests.py compares the bytes with emitter_dump. Anything outside that layout (a type
    other than JSON's, a key the emitter would write as `? key`) goes to emitter_dump whole.
    """
    if type(body) is not dict or not body:
        return emitter_dump(body)
    lines: list[str] = []
    try:
        _block(body, 0, lines)
    except _NotBlockLayout:
        return emitter_dump(body)
    lines.append("")
    return "\n".join(lines)


class _NotBlockLayout(Exception):
    """A value dump's direct layout does not cover."""


_scalars: dict[str, tuple[str, tuple[str, ...]]] = {}  # text -> its first line and the rest, as the emitter wrote it
_SCALARS_KEPT = 50_000
_WORDS = {True: "true", False: "false", None: "null"}


def _scalar(value: Any, column: int, key: bool = False) -> str:
    kind = type(value)
    if kind is str:
        formatted = _scalars.get(value)
        if formatted is None:
            if len(_scalars) >= _SCALARS_KEPT:
                _scalars.clear()  # most of a large plan's distinct strings belong to one run each
            # As a mapping value at column 0: a literal block's lines are then indented by 2, its header on the key's line.
            head, *tail = emitter_dump({"k": value})[3:-1].split("\n")
            formatted = _scalars[value] = (head, tuple(tail))
        first, rest = formatted
        if key and (rest or len(first) >= _SIMPLE_KEY_LIMIT):
            raise _NotBlockLayout
        if value.endswith("\n\n"):
            raise _NotBlockLayout  # a `|+` block: the emitter ends the document after it when it comes last
        if not rest:
            return first
        # A literal block's lines sit 2 columns right of the key or dash that holds it; empty lines stay empty.
        pad = " " * column
        return first + "".join(f"\n{pad}{line}" if line else "\n" for line in rest)
    if kind is int:
        return str(value)
    if kind is bool or value is None:
        return _WORDS[value]
    raise _NotBlockLayout


def _block(value: dict[Any, Any] | list[Any], column: int, lines: list[str]) -> None:
    """The lines of a non-empty mapping or sequence whose entries start at `column`."""
    pad = " " * column
    if type(value) is dict:
        for key, item in value.items():
            _entry(f"{pad}{_scalar(key, column, key=True)}:", item, column, lines, in_mapping=True)
    else:
        for item in value:
            _entry(f"{pad}-", item, column, lines, in_mapping=False)


def _entry(head: str, item: Any, column: int, lines: list[str], in_mapping: bool) -> None:
    kind = type(item)
    if kind is not dict and kind is not list:
        lines.append(f"{head} {_scalar(item, column)}")
    elif not item:
        lines.append(f"{head} {{}}" if kind is dict else f"{head} []")
    elif in_mapping:
        # A mapping nests 2 columns in; a sequence under a key starts at the key's column (an indentless sequence).
        lines.append(head)
        _block(item, column + 2 if kind is dict else column, lines)
    else:
        # A sequence entry's mapping or sequence starts on the dash's line.
        first = len(lines)
        _block(item, column + 2, lines)
        lines[first] = f"{head} {lines[first][column + 2 :]}"


def rendered_runs(registrations: Iterable[Any]) -> dict[str, list[dict[str, Any]]]:
    """Each run's and job's objects by URN, rendered once from its SimRun inputs (the provider's own renderer) for
    the manifests, the policies and the cost estimate alike; one that does not render is left out, so the policies
    render it again and report why."""
    rendered: dict[str, list[dict[str, Any]]] = {}
    for reg in registrations:
        if reg.type == DYNAMIC_TYPE and "spec" in reg.inputs:
            try:
                rendered[reg.urn] = objects_from_inputs(reg.inputs)
            except (ValueError, KeyError, TypeError):
                continue
    return rendered


def kubernetes_objects(
    registrations: list[Any], rendered: dict[str, list[dict[str, Any]]] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(relative file name, object) for every Kubernetes object the stack would create. `rendered`: the runs'
    objects already rendered (rendered_runs); a run missing from it is rendered here. An object runs share (the
    runtime ConfigMap of this simfleet) is listed once, under shared/, where the cluster holds it once too."""
    rendered = rendered or {}
    objects: list[tuple[str, dict[str, Any]]] = []
    shared: set[str] = set()
    for reg in registrations:
        if reg.type.startswith("kubernetes:") and not reg.type.startswith(NON_OBJECT_K8S):
            body = {k: v for k, v in reg.inputs.items() if k in OBJECT_FIELDS}
            objects.append((f"platform/{_object_file(body, reg.name)}", body))
        elif reg.type == DYNAMIC_TYPE and "spec" in reg.inputs:
            # The objects the provider will apply at create time, from the same inputs and the same renderer.
            run = reg.inputs.get("runName", reg.name)
            bodies = rendered.get(reg.urn)
            for body in objects_from_inputs(reg.inputs) if bodies is None else bodies:
                if not is_shared(body):
                    objects.append((f"runs/{run}/{_object_file(body, reg.name)}", body))
                elif (rel := f"shared/{_object_file(body, reg.name)}") not in shared:
                    shared.add(rel)
                    objects.append((rel, body))
    return objects


def _object_file(body: dict[str, Any], fallback: str) -> str:
    meta = body.get("metadata") or {}
    namespace = meta.get("namespace")
    name = meta.get("name", fallback)
    kind = str(body.get("kind", "Object")).lower()
    return f"{namespace + '_' if namespace else ''}{kind}_{name}.yaml"


def write_manifests(directory: Path, objects: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Write each object to `directory`/<relative name>, replacing whatever an earlier plan left there."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    made: set[Path] = set()
    for rel, body in objects:
        path = directory / rel
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_text(dump(body), encoding="utf-8")
