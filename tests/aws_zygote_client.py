"""The `aws` on the script tests' PATH: asks this test worker's AWS CLI fork server (tests/aws_zygote.py) to run one
command as the caller's own process would, or runs the real CLI when the server cannot be reached.

Every `aws` call of every script test starts a new interpreter for this, so it imports next to nothing: the C modules
`_socket` and `_signal` rather than `socket` and `signal` (whose enums and selectors took more CPU than the rest of the
call here), no array (it imports collections), and no json: the request goes as a Python literal (repr), which the server reads back with
ast.literal_eval. With the server's module (~25 ms of imports) this ran ~40 ms per call before the CLI's own work
began; now ~15 ms, ~10 of them the interpreter's start. Standard library only: it runs under `python -I -S`.

The protocol, over the server's Unix socket: an 8-byte big-endian length with the caller's descriptors 0, 1 and 2
(SCM_RIGHTS), then that many bytes of request {argv, env, cwd, umask, closed, ignored}; while the call runs,
"sig N\\n" for each signal to forward; the server's one reply line is "exit N" or "signal N".
"""

import _signal  # type: ignore[import-not-found]  # (no stub; the module `signal` wraps it)
import _socket
import os
import sys

FORWARDED = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2)


def client(path: str, real: str, endpoint_flag: bool) -> int:
    """Run `aws ARGS` through the server at `path` (or exec the real CLI `real` when it cannot be reached);
    `endpoint_flag`: pass $AWS_ENDPOINT_URL as --endpoint-url first (Debian's v2 predates the variable)."""
    argv = sys.argv[1:]
    if endpoint_flag:
        argv = ["--endpoint-url", os.environ.get("AWS_ENDPOINT_URL", ""), *argv]
    # A standard descriptor closed where `aws` started is held by /dev/null here, and closed again in the CLI's
    # process: otherwise the socket below would take its number, and be passed on as the CLI's stdin, stdout or stderr.
    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
            stand_in = os.open(os.devnull, os.O_RDWR)  # the lowest free number: this one
            if stand_in != fd:
                os.dup2(stand_in, fd)
                os.close(stand_in)
    ignored = [number for number in FORWARDED if _signal.getsignal(number) == _signal.SIG_IGN]
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        for fd in closed:
            os.close(fd)
        os.execv(real, [real, *argv])
    umask = os.umask(0o022)
    os.umask(umask)
    request = {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "umask": umask, "closed": closed, "ignored": ignored}
    body = repr(request).encode()  # str, int and lists only: a literal ast.literal_eval reads back as it was
    # A signal that comes before the whole request is out waits for it: sent at once, its bytes would land inside it.
    held: list[int] = []
    sent = [False]

    def forward(number: int, _frame: object) -> None:
        if not sent[0]:
            held.append(number)
            return
        try:  # noqa: SIM105 - contextlib.suppress: one more import per call
            conn.sendall(f"sig {number}\n".encode())
        except OSError:
            pass

    for number in FORWARDED:
        if number not in ignored:  # an ignored signal stays ignored, as the real CLI inherits it
            _signal.signal(number, forward)
    # socket.send_fds(conn, [header], [0, 1, 2]) without the modules socket and array (which imports collections):
    # the descriptors as C ints, as array("i", ...) holds them.
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
    conn.sendmsg([len(body).to_bytes(8, "big")], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
    conn.sendall(body)
    sent[0] = True
    while held:
        forward(held.pop(0), None)
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = conn.recv(64)
        if not chunk:
            print(f"aws (tests/aws_zygote_client.py): the fork server at {path} went away during this call", file=sys.stderr)
            return 255
        reply += chunk
    kind, _, value = reply.decode().strip().partition(" ")
    if kind == "signal":
        ended_by = int(value)
        if ended_by != _signal.SIGKILL:  # (its disposition cannot be set, nor needs to be)
            _signal.signal(ended_by, _signal.SIG_DFL)
        os.kill(os.getpid(), ended_by)
        return 128 + ended_by
    return int(value)
