"""Open a page in headless Chromium (Debian's `chromium` package) and report what a person would see: console errors,
uncaught exceptions, failed loads, and each image's decoded size. Driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: JSON messages ending in NUL on file descriptors 3 and 4), so nothing listens on a port."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)
INSPECT = """JSON.stringify({
  title: document.title,
  images: Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})),
  figures: document.querySelectorAll('figure').length,
  rows: document.querySelectorAll('tbody tr').length,
  text: document.body.innerText.slice(0, 4000)
})"""


def binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Seen:
    errors: list[str] = field(default_factory=list)
    page: dict[str, Any] = field(default_factory=dict)


class _Pipe:
    def __init__(self, write_fd: int, read_fd: int) -> None:
        self.write_fd, self.read_fd = write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        wanted = self.next_id
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = None
            # Keep every other message of the read, those after the answer too: one read can carry the answer and
            # the events that followed it (Page.navigate's answer and Page.loadEventFired, under load), and an
            # event dropped here was waited for in vain until the timeout.
            for message in self.read(deadline - time.monotonic()):
                if message.get("id") == wanted:
                    answer = message
                else:
                    self.events.append(message)
            if answer is not None:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return dict(answer.get("result") or {})
        raise TimeoutError(f"no answer to {method} within {timeout} s")

    def read(self, timeout: float) -> list[dict[str, Any]]:
        ready, _, _ = select.select([self.read_fd], [], [], max(0.0, timeout))
        if not ready:
            return []
        chunk = os.read(self.read_fd, 1 << 20)
        if not chunk:
            raise RuntimeError("chromium closed its DevTools pipe")
        self.buffer += chunk
        *messages, self.buffer = self.buffer.split(b"\0")
        return [json.loads(m) for m in messages if m]

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("method") == method for e in self.events):
                return
            self.events += self.read(deadline - time.monotonic())
        raise TimeoutError(f"{method} did not come within {timeout} s")


def _errors(events: list[dict[str, Any]]) -> list[str]:
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params") or {}
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails") or {}
            found.append(f"exception: {(details.get('exception') or {}).get('description') or details.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append(
                f"console.{params.get('type')}: {[a.get('value') or a.get('description') for a in params.get('args') or []]}"
            )
        elif method == "Log.entryAdded" and (params.get("entry") or {}).get("level") == "error":
            entry = params["entry"]
            found.append(f"log: {entry.get('text')} {entry.get('url') or ''}".strip())
    return found


def open_page(path: Path, settle: float = 0.5, timeout: float = 60) -> Seen:
    """Load a file in a fresh headless Chromium (its own profile directory) and report what happened."""
    chrome = binary()
    if chrome is None:
        raise FileNotFoundError("chromium is not installed")
    to_chrome_read, to_chrome_write = os.pipe()
    from_chrome_read, from_chrome_write = os.pipe()

    def child() -> None:
        # Chromium reads commands on fd 3 and writes replies on fd 4; move the pipe ends there.
        read_end, write_end = os.dup(to_chrome_read), os.dup(from_chrome_write)
        os.dup2(read_end, 3)
        os.dup2(write_end, 4)

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        process = subprocess.Popen(
            [chrome, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child,  # the only way to place the pipe ends at fds 3 and 4
            pass_fds=(3, 4),
            start_new_session=True,  # its helpers (zygote, renderer, GPU) are ended with it, by session
        )
        os.close(to_chrome_read)
        os.close(from_chrome_write)
        pipe = _Pipe(to_chrome_write, from_chrome_read)
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
            session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
            pipe.wait_for("Page.loadEventFired", timeout)
            time.sleep(settle)
            pipe.events += pipe.read(0.1)
            value = pipe.send("Runtime.evaluate", {"expression": INSPECT, "returnByValue": True}, session=session)
            page = json.loads(value["result"]["value"])
            return Seen(_errors(pipe.events), page)
        finally:
            _end_session(process)
            os.close(to_chrome_write)
            os.close(from_chrome_read)


def _end_session(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to Chromium and every helper process it started, and wait until they are all gone: a helper still
    writing into the profile directory made its removal fail ("Directory not empty: 'Default'") under load."""
    from tools.term_stress import session_processes

    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while (left := session_processes(process.pid)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # (one that left the process group, if any)
        time.sleep(0.02)
