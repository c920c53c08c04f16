"""Where a stack's entries come from: the stack file, the run files it names (`simfleet:runFiles`), and the file, line
and name every problem is shown with.

A run file holds `runs:`, `jobs:` and `services:` lists, exactly as the stack file's `simfleet:runs`, `:jobs` and
`:services` do. The validation sees one list per section, the stack file's entries first and then each run file's in
file order; `locate` turns a position in that combined list back into the file, its own index there, the entry's
name and the line, so `runs[5].seeds` is shown as `runs/perception.yaml:12: runs[1] (grasp-a).seeds`.

Where an entry lives is not part of it: nothing here reaches a spec, a resource name or a hash, so a run moved from
one file to another keeps its URN and its spec hash.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from config.errors import LIST_SECTIONS, ConfigError, Issue, did_you_mean, file_order

# What a run file may hold; the stack file's `simfleet:<section>` keys hold the same.
FILE_SECTIONS = ("runs", "jobs", "services")
RUN_FILES_KEY = "runFiles"
_ENTRY_PATH_RE = re.compile(r"^(?P<section>\w+)\[(?P<index>\d+)\](?P<rest>.*)$")
# A reference to another entry inside a message ("already used by runs[0].name").
_REFERENCE_RE = re.compile(rf"\b(?P<section>{'|'.join(LIST_SECTIONS)})\[(?P<index>\d+)\](?:\.name\b)?")
_KEY_RE = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")
# Pulumi.yaml and Pulumi.<stack>.yaml: never a run file, whatever a pattern matches.
_PULUMI_FILE_RE = re.compile(r"^Pulumi(\.[^/]+)?\.ya?ml$")


def shown(path: Path) -> str:
    """A path as messages show it: relative to the working directory when inside it (where `pulumi` and `make` run)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def safe_loader() -> type[yaml.SafeLoader]:
    """The safe loader on libyaml's parser (CSafeLoader) when PyYAML was built with it, else the pure-Python SafeLoader.

    The same constructor and resolver over a parser in C: the same values in ~1/10 of the CPU (a 10,000-run stack file
    parses in seconds instead of minutes). The product's YAML reads and the tests' reads of the repository's files take
    their loader from here (tests/test_yaml_loader.py: each of those files reads the same with either loader)."""
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # type: ignore[no-any-return]


def load_yaml(text: str) -> Any:
    """yaml.safe_load(text), parsed by safe_loader(). A text libyaml refuses is read again by the pure-Python loader, so a
    YAML error is the one yaml.safe_load raises (its wording, and the line with a caret under the spot; libyaml's names
    the line and column only) wherever it is shown as it is. Where the two read differently, libyaml's value stands
    (tests/test_yaml_loader.py shows each): it reads tabs YAML allows and the pure-Python scanner refuses (after
    `key:`, before a colon or a comment, at a line's end, inside a plain value or a flow mapping) and `|#` without the
    space; it takes a byte-order mark at the start of a later line or document for one, where the pure-Python loader
    keeps it in the key; and a bare `!` tag on an empty value gives '' there, None here. go-yaml, which Pulumi reads
    stack files with, reads the tabs as libyaml does. None of the repository's files is such a text."""
    try:
        return yaml.load(text, Loader=safe_loader())
    except (yaml.YAMLError, UnicodeEncodeError):  # (UnicodeEncodeError: a lone surrogate, which libyaml's UTF-8 can't hold)
        return yaml.safe_load(text)


def load_yaml_all(text: str) -> list[Any]:
    """The documents of yaml.safe_load_all(text), parsed as load_yaml parses (a YAML error is the pure-Python loader's)."""
    try:
        return list(yaml.load_all(text, Loader=safe_loader()))
    except (yaml.YAMLError, UnicodeEncodeError):
        return list(yaml.safe_load_all(text))


class DuplicateKey(yaml.constructor.ConstructorError):
    """A key written twice in one mapping."""


class _UniqueKeyLoader(safe_loader()):  # type: ignore[misc, valid-type]
    """The safe loader, refusing a key written twice in one mapping.

    PyYAML keeps the last value and drops the first without a word (`seeds:` twice in a run plans the second list);
    YAML says keys are unique, and go-yaml v3, which the Pulumi CLI reads stack files with, refuses them. Keys that a
    merge (`<<: *anchor`) brings in may still be overridden: that is what a merge is for.
    """

    merged = False  # whether a merge was constructed: flattening it rewrote its mapping node (SafeConstructor)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[str, str], yaml.Node] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            if key.tag == "tag:yaml.org,2002:merge":
                self.merged = True
                continue
            first = seen.setdefault((key.tag, key.value), key)
            if first is not key:
                line = first.start_mark.line + 1
                raise DuplicateKey(None, None, f"is written twice (first on line {line})", key.start_mark)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def yaml_issue(err: yaml.YAMLError, file: str, text: str = "") -> Issue:
    """A YAML syntax error with the file's name and the line (not PyYAML's `in "<unicode string>"`); a duplicated key
    with its path and entry, like any other problem of an entry."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    line = mark.line + 1 if mark else None
    if isinstance(err, DuplicateKey) and mark is not None:
        path, entry = _key_path(text, mark.line, mark.column)
        return Issue(path, f"{problem}: YAML would silently keep only the last value; delete one", file, line, entry)
    column = f"column {mark.column + 1}: " if mark is not None else ""
    detail = f"{column}{problem}" + (f" ({context})" if context else "")
    return Issue("", f"not valid YAML: {detail}; check the indentation and quoting there", file, line)


def _key_path(text: str, line: int, column: int) -> tuple[str, str | None]:
    """The path of the key at `line`, `column` (0-based) as messages show it (`runs[0].seeds`, the stack file's
    `config:` and `simfleet:` left out), and the name of the list entry it is in."""
    try:
        node = yaml.compose(text, Loader=safe_loader())
    except yaml.YAMLError:
        return "", None
    parts: list[str] = []
    entry: str | None = None
    while isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        if isinstance(node, yaml.SequenceNode):
            index, node = next(((i, n) for i, n in enumerate(node.value) if _spans(n, line, column)), (None, None))
            if index is None:
                break
            parts.append(f"[{index}]")
            if entry is None and isinstance(node, yaml.MappingNode):
                entry = next((v.value for k, v in node.value if k.value == "name" and isinstance(v, yaml.ScalarNode)), None)
            continue
        key, node = next(((k, v) for k, v in node.value if _spans(k, line, column) or _spans(v, line, column)), (None, None))
        if key is None:
            break
        if not parts and key.value == "config":
            continue
        parts.append(("." if parts else "") + (key.value.removeprefix("simfleet:") if not parts else key.value))
        if key.start_mark.line == line and key.start_mark.column == column:
            break
    return "".join(parts), entry


def _spans(node: yaml.Node, line: int, column: int) -> bool:
    start, end = node.start_mark, node.end_mark
    return (start.line, start.column) <= (line, column) < (end.line, end.column) or (start.line, start.column) == (line, column)


_parsed_nodes: dict[str, yaml.Node] | None = None  # within keeping_nodes(): each text read_yaml parsed -> its node tree


@contextlib.contextmanager
def keeping_nodes() -> Iterator[None]:
    """Within it, the node tree of each text read_yaml parses is kept for YamlFile to find lines in, by the whole text:
    the offline plan reads the stack file, then its program places the stack's warnings on lines of the same text,
    which composing it again made a third of validating a large stack. Only trees that constructing left as composed
    are kept (a merge is flattened into its mapping node), and only for this while: a tree is ~14 KB per run."""
    global _parsed_nodes
    _parsed_nodes = {}
    try:
        yield
    finally:
        _parsed_nodes = None


def read_yaml(path: Path, file: str) -> tuple[Any, Issue | None]:
    """The document in `path`, or the Issue that says why it cannot be read (missing, not YAML)."""
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")  # YAML files are UTF-8, whatever the machine's locale says
        loader = _UniqueKeyLoader(text)
        try:  # yaml.load, keeping the node tree
            node = loader.get_single_node()
            document = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
        if _parsed_nodes is not None and node is not None and not loader.merged:
            _parsed_nodes[text] = node
        return document, None
    except FileNotFoundError:
        return None, Issue("", "no such file", file)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        byte = raw[err.start : err.start + 1].hex()
        return None, Issue("", f"not UTF-8 text (byte 0x{byte}); save the file as UTF-8", file, line)
    except yaml.YAMLError as err:
        return None, yaml_issue(err, file, text)


@dataclass
class YamlFile:
    """One file's node tree, composed only when a line is asked for (a valid stack never pays for it)."""

    path: Path | None
    name: str
    prefix: tuple[str, ...] = ()  # keys above the sections: ("config",) in a stack file
    sections: dict[str, str] = field(default_factory=dict)  # section -> its key in this file
    _root: Any = None
    _composed: bool = False

    def line(self, keys: tuple[str | int, ...]) -> int | None:
        """The line of the deepest of `keys` that exists (a missing key is shown at the entry that lacks it)."""
        node = self._node()
        found: int | None = None
        for key in keys:
            if isinstance(node, yaml.MappingNode) and isinstance(key, str):
                pair = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
                if pair is None:
                    break
                found, node = pair[0].start_mark.line + 1, pair[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                node = node.value[key]
                found = node.start_mark.line + 1
            else:
                break
        return found

    def _node(self) -> Any:
        if not self._composed:
            self._composed = True
            try:
                text = self.path.read_text("utf-8") if self.path else None
                parsed = _parsed_nodes.get(text) if _parsed_nodes is not None and text is not None else None
                self._root = parsed if parsed is not None or text is None else yaml.compose(text, Loader=safe_loader())
            except (OSError, ValueError, yaml.YAMLError):  # ValueError: not UTF-8, reported by read_yaml
                self._root = None
        return self._root


@dataclass(frozen=True)
class Origin:
    """Where one entry of a combined section list was written."""

    file: YamlFile
    index: int  # its position in that file's list
    name: str | None


@dataclass
class Sources:
    """The stack file, the run files, and where each entry of the combined section lists came from."""

    stack: YamlFile
    files: list[YamlFile] = field(default_factory=list)  # the run files, in the order they were read
    origins: dict[str, list[Origin]] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)  # the combined raw lists (a broken section as written)
    issues: list[Issue] = field(default_factory=list)  # problems reading the run files
    # False when a run file could not be read: the entries it holds are unknown, so "no run named ..." is not said.
    complete: bool = True

    def locate(self, issue: Issue) -> Issue:
        """The issue with the file and line it is about, its entry's name, and references to other entries shown the same way."""
        if issue.file is not None:  # already placed (a problem reading a run file)
            return issue
        file, path, keys, entry = self.stack, issue.path, self._stack_keys(issue.path), None
        match = _ENTRY_PATH_RE.match(issue.path)
        origins = self.origins.get(match["section"], []) if match else []
        if match and int(match["index"]) < len(origins):
            origin = origins[int(match["index"])]
            file, entry = origin.file, origin.name
            path = f"{match['section']}[{origin.index}]{match['rest']}"
            keys = (*file.prefix, file.sections[match["section"]], origin.index, *_keys(match["rest"]))
        message = _REFERENCE_RE.sub(lambda m: self._reference(m, file), issue.message)
        line = file.line(keys) if keys else None
        # The stack file is named in the error's first line: only a line number is worth repeating per issue.
        name = file.name if line is not None or file is not self.stack else None
        return Issue(path, message, name, line, entry)

    def located(self, issues: list[Issue]) -> list[Issue]:
        """Every issue located, in file order: the stack file, then each run file; sections and entries in order."""
        rank = {self.stack.name: 0, **{f.name: n + 1 for n, f in enumerate(self.files)}}
        placed = [self.locate(i) for i in issues]
        return sorted(placed, key=lambda i: (rank.get(i.file or "", 0), *file_order(i), i.line or 0))

    def _stack_keys(self, path: str) -> tuple[str | int, ...]:
        head = re.match(r"^[A-Za-z]+", path)
        if head is None or head[0] == "stack":
            return ()
        key = f"simfleet:{head[0]}"
        return (*self.stack.prefix, key, *_keys(path[len(head[0]) :]))

    def _reference(self, match: re.Match[str], here: YamlFile) -> str:
        origins = self.origins.get(match["section"], [])
        index = int(match["index"])
        if index >= len(origins):
            return match[0]
        origin = origins[index]
        line = origin.file.line((*origin.file.prefix, origin.file.sections[match["section"]], origin.index))
        name = f" ({origin.name})" if origin.name else ""
        if origin.file is here:
            at = f" on line {line}" if line else ""
        else:
            at = f" in {origin.file.name}" + (f":{line}" if line else "")
        return f"{match['section']}[{origin.index}]{name}{at}"


def _keys(rest: str) -> tuple[str | int, ...]:
    return tuple(int(m[2]) if m[2] is not None else m[1] for m in _KEY_RE.finditer(rest))


def _name(entry: Any) -> str | None:
    name = entry.get("name") if isinstance(entry, dict) else None
    return name if isinstance(name, str) else None


def gather(
    stack_file: Path | None,
    stack_name: str,
    inline: dict[str, Any],
    run_files: Any,
) -> Sources:
    """The combined section lists: the stack file's own entries, then those of every file `run_files` names.

    `run_files` is `simfleet:runFiles` as written: a list of paths or glob patterns relative to the stack file's
    directory (which is the project directory under `pulumi up`), each matching at least one file.
    """
    stack = YamlFile(stack_file, stack_name, ("config",), {s: f"simfleet:{s}" for s in LIST_SECTIONS})
    sources = Sources(stack)
    for section in LIST_SECTIONS:
        raw = inline.get(section)
        entries = raw if isinstance(raw, list) else []
        sources.origins[section] = [Origin(stack, i, _name(e)) for i, e in enumerate(entries)]
        sources.sections[section] = list(entries) if isinstance(raw, list) else raw
    base = stack_file.parent if stack_file is not None else Path.cwd()
    for path in _run_file_paths(run_files, base, stack_file, sources.issues):
        _read_run_file(path, sources)
    return sources


def _run_file_paths(patterns: Any, base: Path, stack_file: Path | None, issues: list[Issue]) -> list[Path]:
    if patterns is None:
        return []
    key = f"simfleet:{RUN_FILES_KEY}"
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        form = f"[{patterns}]" if isinstance(patterns, str) else "[runs/*.yaml]"
        issues.append(Issue(RUN_FILES_KEY, f"{key} is a list of file paths or glob patterns; write {form}"))
        return []
    found: dict[Path, None] = {}
    for position, pattern in enumerate(patterns):
        where = f"{RUN_FILES_KEY}[{position}]"
        pure = PurePosixPath(pattern)
        if not pattern or pure.is_absolute() or ".." in pure.parts:
            issues.append(
                Issue(where, f"{pattern!r} must be a path inside the project, relative to the stack file, like runs/*.yaml")
            )
            continue
        every = sorted(p for p in base.glob(pattern) if p.is_file())
        matches = [p for p in every if not _pulumi_file(p, stack_file)]
        if every and not matches:
            names = ", ".join(p.name for p in every)
            issues.append(
                Issue(
                    where,
                    f"{pattern!r} matches only Pulumi's own files ({names}), which are never run files; keep run files "
                    "in a folder of their own, like runs/*.yaml",
                )
            )
        elif not matches:
            # A pattern that matches nothing would silently drop every run it used to hold, and `pulumi up` would
            # delete their Jobs: refuse it, so a typo or a moved directory never looks like "remove these runs".
            folder = "" if shown(base) == "." else f" ({shown(base)})"
            issues.append(
                Issue(
                    where,
                    f"{pattern!r} matches no file; patterns are relative to the stack file's directory{folder}. Fix the "
                    f"pattern, or remove it from {key} if its runs should go",
                )
            )
        for path in matches:
            found.setdefault(path.resolve(), None)
    return list(found)


def _pulumi_file(path: Path, stack_file: Path | None) -> bool:
    """Pulumi's project file, any stack's file (`Pulumi.prod.yaml` under `*.yaml`), or the stack file itself."""
    named = _PULUMI_FILE_RE.match(path.name) is not None
    return named or (stack_file is not None and path.resolve() == stack_file.resolve())


def _read_run_file(path: Path, sources: Sources) -> None:
    name = shown(path)
    file = YamlFile(path, name, (), {s: s for s in FILE_SECTIONS})
    sources.files.append(file)
    document, problem = read_yaml(path, name)
    if problem is not None:
        sources.issues.append(problem)
        sources.complete = False
        return
    if document is None:
        return  # an empty file holds nothing
    if not isinstance(document, dict):
        sources.issues.append(Issue("", "a run file is a mapping with runs:, jobs: and services: lists", name, 1))
        return
    for key, entries in document.items():
        if key not in FILE_SECTIONS:
            close = did_you_mean(str(key), FILE_SECTIONS).removeprefix("; ")
            message = f"unknown section; {close + ' A' if close else 'a'} run file holds only runs, jobs and services"
            sources.issues.append(Issue(str(key), message, name, file.line((str(key),))))
            continue
        if entries is None:
            continue
        if not isinstance(entries, list):
            message = f"must be a list of {key}, each entry starting with `- name:`"
            sources.issues.append(Issue(str(key), message, name, file.line((str(key),))))
            continue
        combined = sources.sections.get(key)
        if combined is None:
            combined = sources.sections[key] = []
        elif not isinstance(combined, list):
            continue  # the stack file's own section is not a list, which is reported on its own
        for index, entry in enumerate(entries):
            sources.origins[key].append(Origin(file, index, _name(entry)))
            combined.append(entry)


def read_stack_file(path: Path, name: str | None = None) -> dict[str, Any]:
    """The `config:` mapping of a stack file; a ConfigError naming the file (and the line of a YAML error) otherwise."""
    name = name or shown(path)
    document, problem = read_yaml(path, name)
    if problem is not None:
        raise ConfigError(name, [problem])
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(name, [Issue("", "has no 'config:' mapping; a stack file starts with config: and its keys", name)])
    return config
