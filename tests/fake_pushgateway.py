"""A stand-in Pushgateway on 127.0.0.1 for the pod tests: records every request (method, path, headers, body, and what
moto had answered by then) and answers as told: 200 for a push and 202 for a DELETE (as Pushgateway does), another
status, or not at all until released (a Pushgateway that hangs). `absent_url()` is an address nothing listens on.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol


class RequestLog(Protocol):
    requests: list[tuple[str, str]]


class Pushgateway:
    def __init__(self, moto: RequestLog | None = None) -> None:
        self.status: int | None = None  # None: 200 for PUT/POST, 202 for DELETE
        self.requests: list[dict[str, Any]] = []
        self.released = threading.Event()
        self.released.set()  # hang() clears it: requests are then held until release()
        self.held = threading.Event()  # set once a request is being held
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                gateway.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "version": self.request_version,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                        "moto_before": list(moto.requests) if moto is not None else [],
                    }
                )
                if not gateway.released.is_set():
                    gateway.held.set()
                    gateway.released.wait()
                default = 202 if self.command == "DELETE" else 200
                self.send_response(gateway.status or default)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_DELETE = do_GET = do_PUT = do_POST = _record

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def handle_one_request(self) -> None:
                # A client that gave up on a held request has closed its end.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    super().handle_one_request()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hang(self) -> None:
        """From now on every request is held, unanswered, until release()."""
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        return [r for r in list(self.requests) if method is None or r["method"] == method]

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def absent_url() -> str:
    """An http:// address on 127.0.0.1 that nothing listens on (a port bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
