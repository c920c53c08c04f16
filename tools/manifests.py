"""The plan's Kubernetes manifests: which objects a stack would create, each run's rendered once, written as YAML.

Each platform object and shared runtime ConfigMap is a file of its own (`platform/`, `shared/`); each run's or job's
objects are one file, `runs/<run>.yaml`, a YAML document per object in the order the provider applies them
(`kubectl apply -f runs/<run>.yaml` applies them in that order too; as files of their own it went by file name).

Writing them was most of a large plan's time. They are written as libyaml's C emitter writes them when PyYAML
was built with it (the wheels are), PyYAML's pure-Python emitter otherwise, with multi-line text (scripts,
configuration files) as literal blocks that read as the files they are, and lines never folded; `dump` lays out
the blocks itself and asks the emitter only how to write each distinct scalar. The bytes are deterministic.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from workloads.inputs import in_apply_order, objects_from_inputs
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
# Line breaks to both emitters (libyaml IS_BREAK, PyYAML's analyze_scalar): a key holding one is written `? key`.
_BREAK = re.compile("[\r\n\x85\u2028\u2029]")
# The line breaks the emitters may write raw in a quoted scalar; "\n" is the only one `dump` lays out itself.
_RAW_BREAK = re.compile("[\x85\u2028\u2029]")


def _simple_key_too_long(key: str) -> bool:
    # libyaml counts a key's UTF-8 bytes (at most 128 for a simple key), PyYAML its characters (fewer than 128).
    return len(key.encode("utf-8", "surrogatepass")) >= _SIMPLE_KEY_LIMIT


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
    emitters lay out block style, and each distinct scalar is formatted once: text the emitters write plain is
    recognised here (_PLAIN), the emitter formats the rest (its quoting and literal blocks); tests/test_manifests.py
    compares the bytes with emitter_dump, both emitters' on the plain text. Anything outside that layout (a type
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
# Text both emitters write plain (unquoted) in block context without asking them, when it does not also read as another
# type: no indicator can start it (it starts alphanumeric), no space, line break, `#` or other flow or block
# indicator, and a `:` never at its end (`: ` and a final `:` are indicators; `://` is not). Most of a large plan's
# distinct strings (names, hashes, URIs, images) are these; anything else is formatted by the emitter itself.
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_./:-]*(?<!:)")
# What the emitters consult to tell whether a plain scalar would read back as another type (bool, int, float, null,
# timestamp...): the dumper's own implicit resolvers for the first character, and those for any (as Resolver.resolve).
_IMPLICIT = {
    first: [regexp for _tag, regexp in [*found, *_BASE_DUMPER.yaml_implicit_resolvers.get(None, [])]]
    for first, found in _BASE_DUMPER.yaml_implicit_resolvers.items()
    if first is not None
}
_IMPLICIT_ANY = [regexp for _tag, regexp in _BASE_DUMPER.yaml_implicit_resolvers.get(None, [])]


def _scalar(value: Any, column: int, key: bool = False) -> str:
    kind = type(value)
    if kind is str:
        formatted = _scalars.get(value)
        if formatted is None:
            if len(_scalars) >= _SCALARS_KEPT:
                _scalars.clear()  # most of a large plan's distinct strings belong to one run each
            if _PLAIN.fullmatch(value) and not any(regexp.match(value) for regexp in _IMPLICIT.get(value[0], _IMPLICIT_ANY)):
                formatted = _scalars[value] = (value, ())
            else:
                # As a mapping value at column 0: a literal block's lines are then indented by 2, its header on the
                # key's line.
                text = emitter_dump({"k": value})
                if text.endswith("\n...\n") or _RAW_BREAK.search(text):
                    # A `|+` block (the emitter then ends the whole document with `...`), or a Unicode line break
                    # written raw (the emitter indents the text after it by the column it sits at): not cached.
                    raise _NotBlockLayout
                head, *tail = text[3:-1].split("\n")
                formatted = _scalars[value] = (head, tuple(tail))
        first, rest = formatted
        if key and (not value or rest or len(first) >= _SIMPLE_KEY_LIMIT or _simple_key_too_long(value) or _BREAK.search(value)):
            raise _NotBlockLayout  # the emitters write a multi-line or long key as `? key`, PyYAML's an empty one too
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


_heads: dict[int, dict[str, str]] = {}  # column -> string key -> its line's start (`<pad><key>:`)
_HEADS_KEPT = 10_000
_entries: dict[tuple[Any, ...], list[str]] = {}  # (column, a scalar mapping's items and types) -> its lines as an entry
_ENTRIES_KEPT = 50_000


def _block(value: dict[Any, Any] | list[Any], column: int, lines: list[str]) -> None:
    """The lines of a non-empty mapping or sequence whose entries start at `column`.

    One call per mapping or sequence, not per entry: a scalar entry (most of a manifest) is a cache lookup and one
    line, its key's `<pad><key>:` and its value's text both formatted once per plan."""
    append = lines.append
    pad = " " * column
    if type(value) is dict:
        heads = _heads.get(column)
        if heads is None:
            heads = _heads[column] = {}
        for key, item in value.items():
            head = heads.get(key) if type(key) is str else None
            if head is None:
                head = f"{pad}{_scalar(key, column, key=True)}:"
                if type(key) is str:  # not 1 or True: equal keys of other types would share an entry
                    if len(heads) >= _HEADS_KEPT:
                        heads.clear()
                    heads[key] = head
            kind = type(item)
            if kind is dict:
                if item:
                    append(head)
                    _block(item, column + 2, lines)  # a mapping nests 2 columns in
                else:
                    append(f"{head} {{}}")
            elif kind is list:
                if item:
                    append(head)
                    _block(item, column, lines)  # a sequence under a key starts at the key's column (indentless)
                else:
                    append(f"{head} []")
            else:
                formatted = _scalars.get(item) if kind is str else None
                append(f"{head} {formatted[0] if formatted and not formatted[1] else _scalar(item, column)}")
    else:
        dash = f"{pad}-"
        for item in value:
            kind = type(item)
            if kind is dict or kind is list:
                if item:
                    entry = None
                    if kind is dict:
                        # A mapping of scalars (an env variable, a volume mount, a port) is written once per plan: its
                        # entries and their types are the key (True and 1 are equal, and hash alike, but not written
                        # alike); a nested mapping or sequence makes it unhashable, and not cached.
                        try:
                            entry = (column, *item.items(), *map(type, item.values()))
                            cached = _entries.get(entry)
                        except TypeError:
                            entry = cached = None
                        if cached is not None:
                            lines += cached
                            continue
                    # A sequence entry's mapping or sequence starts on the dash's line.
                    first = len(lines)
                    _block(item, column + 2, lines)
                    lines[first] = f"{dash} {lines[first][column + 2 :]}"
                    if entry is not None:
                        if len(_entries) >= _ENTRIES_KEPT:
                            _entries.clear()
                        _entries[entry] = lines[first:]
                else:
                    append(f"{dash} {{}}" if kind is dict else f"{dash} []")
            else:
                formatted = _scalars.get(item) if kind is str else None
                append(f"{dash} {formatted[0] if formatted and not formatted[1] else _scalar(item, column)}")


def documents(bodies: list[Any]) -> str:
    """Several objects as one YAML stream: the bytes the emitter's dump_all writes, each document as `dump` writes it.

    dump_all puts `---` before every document but the first; a document that ends open (`...`, after a `|+` block) is
    closed by the next one's `---` instead."""
    if not all(type(body) is dict and body for body in bodies):
        text: str = yaml.dump_all(bodies, Dumper=ManifestDumper, sort_keys=False, width=_NO_FOLDING, allow_unicode=True)
        return text
    texts = [dump(body) for body in bodies]
    for index in range(len(texts) - 1):
        if texts[index].endswith("\n...\n"):
            texts[index] = texts[index][:-4]
    return "---\n".join(texts)


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
    """(relative file name, object) for every Kubernetes object the stack would create, a run's objects in apply order
    under its one file name. `rendered`: the runs' objects already rendered (rendered_runs); a run missing from it is
    rendered here. An object runs share (the runtime ConfigMap of this simfleet) is listed once, under shared/, where
    the cluster holds it once too."""
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
            for body in in_apply_order(objects_from_inputs(reg.inputs) if bodies is None else bodies, run):
                if not is_shared(body):
                    objects.append((f"runs/{run}.yaml", body))
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
    """Write each object to `directory`/<relative name>, objects under the same name as one file of documents in their
    order; what an earlier plan wrote there and this one does not is removed, and so are the directories left empty.

    One file per run in one directory, written over the earlier plan's file of the same name rather than deleted and
    created again: creating a file (and a directory) is most of what writing a small one costs the kernel, several
    times more while many files were deleted on the same disk in the last ~30 s (ext4 skips such inodes when it
    allocates one, fs/ext4/ialloc.c recently_deleted), and a run has 1-6 objects."""
    files: dict[str, list[dict[str, Any]]] = {}
    for rel, body in objects:
        files.setdefault(rel, []).append(body)
    root = str(directory)
    wanted = {os.path.join(root, rel) for rel in files}
    _remove_all_but(root, wanted)
    made: set[str] = set()
    for rel, bodies in files.items():
        path = os.path.join(root, rel)
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        _write(path, documents(bodies).encode())


def _remove_all_but(root: str, wanted: set[str]) -> None:
    """Remove every file under `root` whose path is not in `wanted`, then the directories left empty (deepest first).
    A directory where a wanted file goes (an earlier layout's) goes too; anything that is not a regular file or a
    directory (a symlink) is removed, never followed."""
    if not os.path.isdir(root) or os.path.islink(root):
        if os.path.lexists(root):
            os.unlink(root)
        return
    for parent, dirs, names in os.walk(root, topdown=False):
        for name in names:
            path = os.path.join(parent, name)
            if path not in wanted or os.path.islink(path):
                os.unlink(path)
        for name in dirs:
            path = os.path.join(parent, name)
            if os.path.islink(path):
                os.unlink(path)
            elif path in wanted:
                shutil.rmtree(path)
            else:
                with contextlib.suppress(OSError):  # not empty: it holds a file this plan writes again
                    os.rmdir(path)


def _write(path: str, data: bytes) -> None:
    # Three system calls (open, write, close) where Path.write_text makes seven: a large plan writes tens of
    # thousands of files.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
