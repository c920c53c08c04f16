"""What the processes under a test are doing, read from /proc: for the report of a test that waited too long for one
of them (a hung script's children, the AWS CLI calls it waits for, the kernel function each one sleeps in)."""

from __future__ import annotations

from pathlib import Path

HEADER = "    pid    ppid S wchan                    command"


def _processes() -> dict[int, tuple[int, int, str, str, str]]:
    """pid -> (parent, session, state, wchan, command line cut at 200 characters), for every process there is."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # (the command name in parentheses may hold spaces)
            wchan = (stat.parent / "wchan").read_text()
            args = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
        except (OSError, IndexError):
            continue  # ended meanwhile
        found[int(stat.parent.name)] = (int(fields[1]), int(fields[3]), fields[0], wchan or "-", args.strip())
    return found


def _table(rows: dict[int, tuple[int, int, str, str, str]]) -> str:
    lines = [f"{pid:>7} {ppid:>7} {state} {wchan:<24} {args}" for pid, (ppid, _, state, wchan, args) in sorted(rows.items())]
    return "\n".join([HEADER, *lines])


def session(leader: int) -> str:
    """Every process of the session `leader` leads (a script started in a session of its own)."""
    return _table({pid: row for pid, row in _processes().items() if row[1] == leader})


def descendants(root: int) -> str:
    """Every process under `root` (its children, theirs, ...), `root` left out."""
    processes = _processes()
    children: dict[int, list[int]] = {}
    for pid, row in processes.items():
        children.setdefault(row[0], []).append(pid)
    found, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found[pid] = processes[pid]
        todo += children.get(pid, [])
    return _table(found)
