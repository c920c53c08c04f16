"""The docs: every link and anchor resolves, every shell command runs offline here or says what it needs, and the
stack-file tables of docs/reference.md match the config/ models.

The convention (docs/reference.md, "Shell blocks in these docs"): a command in a ```bash block either succeeds when
this test runs it, offline, in a copy of the project, or ends with a comment that starts with `needs <what>` (AWS,
Pulumi, cluster, Docker, internet, runner; several joined by commas, free text after a colon) or `slow`. Marked `make`
commands are still dry-run (`make -n`) so a misspelt target fails, and marked `python -m tools.<x>` commands must use
options that tool has.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from project_commands import ProjectCommands

from tools import reference

ROOT = Path(__file__).resolve().parent.parent


def _tracked_name(name: str) -> bool:
    """Part of the project, not of an environment, an output or a cache (.venv, build/, tool caches)."""
    return not (name.startswith(".") or name in ("build", "node_modules", "__pycache__"))


def _markdown_files() -> list[Path]:
    """Every markdown file of the project, below folders of the project only (not into .venv's thousands of files)."""
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if _tracked_name(name)]
        found += [Path(folder) / name for name in files if name.endswith(".md") and _tracked_name(name)]
    return found


DOCS_PAGES = sorted((ROOT / "docs").rglob("*.md"))
# Every markdown page of the project: the README, docs/, and the pages beside the code they describe (glue/README.md,
# policies/README.md), which the README's table lists as docs too.
DOCS = [
    ROOT / "README.md",
    *DOCS_PAGES,
    *sorted(p for p in _markdown_files() if p.parent != ROOT and not p.is_relative_to(ROOT / "docs")),
]
SHELL_LANGUAGES = {"bash", "sh", "shell"}
NEEDS = {"AWS", "Pulumi", "cluster", "Docker", "internet", "runner"}
MARKER_RE = re.compile(r"^(?P<word>needs|slow)\b(?P<rest>[^:]*)")
FENCE_RE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<lang>[^\s`]*)")
HEADING_RE = re.compile(r"^#{1,6}\s+(?P<text>.+?)\s*#*\s*$")
LINK_RE = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


# ---------------------------------------------------------------------------------------------
# Reading markdown
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Command:
    path: Path
    line: int
    text: str  # the logical line as shown, continuations joined
    code: str  # without its trailing comment
    marker: str | None  # the comment after `#` when it starts with needs/slow


def split_markdown(text: str, path: Path) -> tuple[list[tuple[int, str]], list[Block]]:
    """(the lines outside fenced blocks with their numbers, the fenced blocks)."""
    prose: list[tuple[int, str]] = []
    blocks: list[Block] = []
    open_fence: tuple[str, int, str] | None = None
    body: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE_RE.match(line.strip())
        if open_fence is None:
            if match:
                open_fence, body = (match["fence"], number, match["lang"]), []
            else:
                prose.append((number, line))
        elif match and match["fence"].startswith(open_fence[0]) and not match["lang"]:
            blocks.append(Block(path, open_fence[1], open_fence[2], tuple(body)))
            open_fence = None
        else:
            body.append(line)
    if open_fence is not None:
        blocks.append(Block(path, open_fence[1], open_fence[2], tuple(body)))
    return prose, blocks


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    prose, _ = split_markdown(path.read_text(), path)
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose:
        match = HEADING_RE.match(line)
        if match:
            base = slug(match["text"])
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def link_problems(path: Path, root: Path) -> list[str]:
    """Every relative link of `path` names a file or folder inside `root`, and every #anchor a heading there."""
    prose, _ = split_markdown(path.read_text(), path)
    problems = []
    for number, line in prose:
        for match in LINK_RE.finditer(re.sub(r"`[^`]*`", "``", line)):
            target = match["target"]
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            where = f"{path.relative_to(root)}:{number}: link {target}"
            resolved = (path.parent / file_part).resolve() if file_part else path
            if not resolved.is_relative_to(root):
                problems.append(f"{where} leaves the project")
            elif not resolved.exists():
                problems.append(f"{where}: {file_part} does not exist")
            elif anchor and (resolved.suffix != ".md" or anchor not in anchors(resolved)):
                problems.append(f"{where}: no heading #{anchor} in {resolved.relative_to(root)}")
    return problems


def strip_comment(line: str) -> tuple[str, str | None]:
    """(the command, its trailing comment): a `#` after whitespace and outside quotes starts the comment."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), None


def commands(block: Block) -> Iterator[Command]:
    """The block's logical lines (`\\` continuations joined), without blank and comment-only lines."""
    pending: list[str] = []
    start = 0
    for offset, raw in enumerate(block.lines, 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if not pending:
            start = block.line + offset
        if line.endswith("\\"):
            pending.append(line[:-1].rstrip())
            continue
        text = " ".join([*pending, line])
        pending = []
        code, comment = strip_comment(text)
        marker = comment if comment is not None and MARKER_RE.match(comment) else None
        yield Command(block.path, start, text, code, marker)


def marker_problem(command: Command) -> str | None:
    """Why a command's marker is not one of the documented ones, or None."""
    if command.marker is None:
        return None
    match = MARKER_RE.match(command.marker)
    assert match is not None
    if match["word"] == "slow":
        return None if not match["rest"].strip() else f"`slow` takes no list (got {command.marker!r})"
    needs = [need.strip() for need in match["rest"].split(",")]
    unknown = [need for need in needs if need not in NEEDS]
    return f"unknown need {unknown} (known: {sorted(NEEDS)})" if unknown or not needs else None


def shell_commands(paths: list[Path]) -> list[Command]:
    found: list[Command] = []
    for path in paths:
        for block in split_markdown(path.read_text(), path)[1]:
            if block.language in SHELL_LANGUAGES:
                found.extend(commands(block))
    return found


# ---------------------------------------------------------------------------------------------
# Running the commands
# ---------------------------------------------------------------------------------------------


def where(command: Command, root: Path) -> str:
    return f"{command.path.relative_to(root) if command.path.is_relative_to(root) else command.path}:{command.line}"


def marked_command_problems(command: Command, project: ProjectCommands) -> list[str]:
    """A marked command is not run, but its `make` targets must exist and its tools options must be real."""
    problems = []
    for part in re.split(r"&&|;|\|\|", command.code):
        words = part.split()
        if words[:1] == ["make"]:
            done = project.run("make -n " + " ".join(words[1:]))
            if done.returncode != 0:
                problems.append(f"`{part.strip()}`: make -n says {done.stderr.strip()[-300:]}")
        module = re.search(r"-m (tools\.\w+)", part)
        if module:
            done = project.run(f".venv/bin/python -m {module[1]} --help")
            missing = [flag for flag in re.findall(r"(?<!\S)(--[\w-]+)", part) if flag not in done.stdout]
            if done.returncode != 0 or missing:
                problems.append(f"`{part.strip()}`: {module[1]} has no option {missing or done.stderr[-300:]}")
    return problems


def command_problems(found: list[Command], project: ProjectCommands, root: Path) -> list[str]:
    """Run each unmarked command in document order (once: `project` runs a command it already ran no more); check the
    marked ones without running them."""
    problems = []
    for command in found:
        bad_marker = marker_problem(command)
        if bad_marker:
            problems.append(f"{where(command, root)}: `{command.text}`: {bad_marker}")
        elif command.marker is not None:
            problems += [f"{where(command, root)}: {p}" for p in marked_command_problems(command, project)]
        else:
            done = project.run(command.code)
            if done.returncode != 0:
                output = (done.stdout + done.stderr).strip()[-600:]
                problems.append(
                    f"{where(command, root)}: `{command.code}` exited {done.returncode} here (offline); if it needs "
                    f"something this test does not have, end it with a marker such as `# needs AWS`:\n{output}"
                )
    return problems


# ---------------------------------------------------------------------------------------------
# The project's docs
# ---------------------------------------------------------------------------------------------


def test_every_link_and_anchor_resolves() -> None:
    problems = [p for path in DOCS for p in link_problems(path, ROOT)]
    assert not problems, "\n".join(problems)


def test_every_fenced_block_names_its_language() -> None:
    # An untagged block could hide commands from the check below; output goes in ```text.
    untagged = [
        f"{b.path.relative_to(ROOT)}:{b.line}"
        for path in DOCS
        for b in split_markdown(path.read_text(), path)[1]
        if not b.language
    ]
    console = [
        f"{b.path.relative_to(ROOT)}:{b.line}"
        for path in DOCS
        for b in split_markdown(path.read_text(), path)[1]
        if b.language == "console"
    ]
    assert not untagged, f"fenced blocks without a language: {untagged}"
    assert not console, f"use ```bash for commands and ```text for output: {console}"


def test_the_docs_have_commands_of_both_kinds() -> None:
    found = shell_commands(DOCS)
    assert any(c.marker is None for c in found) and any(c.marker for c in found)  # both kinds are being checked


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


# Tests per page, so that pytest-xdist's workers share the pages out. A page's commands run in its order, as its reader
# runs them: each page shows what it needs first (`make plan` before reading build/plan/). A command two pages show runs
# once in the session's scratch project, whichever page asks first, the other waiting for its result. The marked
# commands are checked apart (nothing of theirs runs, so their order does not matter).
@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in DOCS if any(c.marker is None for c in shell_commands([p]))], ids=page_id)
def test_every_shell_command_runs_offline_or_says_what_it_needs(page: Path, project_commands: ProjectCommands) -> None:
    problems = command_problems([c for c in shell_commands([page]) if c.marker is None], project_commands, ROOT)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", [p for p in DOCS if any(c.marker for c in shell_commands([p]))], ids=page_id)
def test_every_marked_command_has_a_known_marker_a_real_make_target_and_real_options(
    page: Path, project_commands: ProjectCommands
) -> None:
    problems = command_problems([c for c in shell_commands([page]) if c.marker is not None], project_commands, ROOT)
    assert not problems, "\n".join(problems)


def test_reference_tables_match_the_config_models() -> None:
    text = reference.REFERENCE_PATH.read_text()
    assert reference.render(text) == text, "docs/reference.md is stale: run `.venv/bin/python -m tools.reference`"
    rules = reference.parse_rules(text)
    assert not [key for key, rule in rules.items() if not rule], "every key needs a rule"


def test_the_readme_is_the_front_door() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 300
    assert "make plan" in readme and "make test" in readme
    linked = {m["target"].partition("#")[0] for m in LINK_RE.finditer(readme)}
    assert {f"docs/{p.relative_to(ROOT / 'docs')}" for p in DOCS_PAGES} <= linked, "the README's table lists every page"
    # Every page it links is one this file checks (links, anchors, fenced blocks, commands).
    pages = {p for p in linked if p.endswith(".md")}
    assert pages <= {str(p.relative_to(ROOT)) for p in DOCS}, pages - {str(p.relative_to(ROOT)) for p in DOCS}


def test_code_and_stack_files_name_docs_pages_not_old_readme_sections() -> None:
    """The README is the front door: a comment, message or stack-file comment that says where to read more names a
    page under docs/ (`README "Time budget"` would send the reader to a section that is no longer there)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False).stdout.split()
    sources = [ROOT / p for p in tracked if p.endswith((".py", ".yaml", ".yml", ".txt", ".sh", ".toml")) or p == "Makefile"]
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sources
        if path.is_file()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bREADME\s*[\"'(]", line) and path.name != "test_docs.py"
    ]
    assert found == []


def test_the_docs_point_at_nothing_users_do_not_have() -> None:
    for path in DOCS:
        text = path.read_text()
        assert "DESIGN.md" not in text and "../shared" not in text and "/work/" not in text, path


# ---------------------------------------------------------------------------------------------
# The checks themselves
# ---------------------------------------------------------------------------------------------


def test_slugs_are_githubs() -> None:
    assert slug("First deploy (bootstrap)") == "first-deploy-bootstrap"
    assert slug("`simfleet:platform`") == "simfleetplatform"
    assert slug("What `pulumi up` makes of a run") == "what-pulumi-up-makes-of-a-run"
    assert slug("What keeps dev's platform under $150 a month idle") == "what-keeps-devs-platform-under-150-a-month-idle"
    assert slug("Why is my run Queued?") == "why-is-my-run-queued"


def test_a_broken_link_or_anchor_is_caught(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## A section\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#a-section) [ok](#page) [web](https://example.com) `[code](nowhere.md)`\n"
        "[gone](missing.md) [bad anchor](other.md#no-such) [here](#nothing) [out](../../etc/passwd)\n"
        "```bash\n[not a link](inside-a-block.md)\n```\n"
    )
    problems = link_problems(page, tmp_path)
    assert len(problems) == 4, problems
    assert "missing.md does not exist" in problems[0] and "#no-such" in problems[1] and "#nothing" in problems[2]
    assert "leaves the project" in problems[3]


def test_an_unmarked_command_that_fails_and_an_unknown_marker_are_caught(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\n"
        "# a comment line is not a command\n"
        "echo fine   # explanations are fine\n"
        "pulumi stack output runs --json\n"  # unmarked, and pulumi is not here: it fails when run
        "exit 7   # needs AWS: marked, so never run\n"
        "ls \\\n  /nonexistent-dir   # needs coffee\n"
        "make nosuchtarget   # slow\n"
        "```\n"
    )
    (tmp_path / "Makefile").write_text("all:\n\ttrue\n")
    found = shell_commands([page])
    assert [c.marker for c in found] == [None, None, "needs AWS: marked, so never run", "needs coffee", "slow"]
    assert found[3].text == "ls /nonexistent-dir   # needs coffee" and found[3].line == 6
    problems = command_problems(found, ProjectCommands(tmp_path, tmp_path / ".results"), tmp_path)
    assert len(problems) == 3, problems
    assert "page.md:4: `pulumi stack output runs --json` exited" in problems[0]
    assert "unknown need ['coffee']" in problems[1]
    assert "make nosuchtarget" in problems[2]
