"""The ZeroMQ bridge: glue's four localhost sockets, and the connection events that tell a sidecar's process went away.

pyzmq is imported only here, so the validator and the settings work without it (the plan's linter, the tests).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from .settings import Settings

POLL_SLICE_MS = 100  # longest a wait goes without looking at the SIGTERM flag and beating the heartbeat

# Which sidecar is behind each socket, as the reasons name them.
BRAIN = "brain"
SIMULATOR = "simulator"


class Bridge:
    """The sockets, each sidecar's connection state from ZeroMQ's socket monitor, and request/reply helpers."""

    def __init__(self, settings: Settings) -> None:
        import zmq

        self.zmq = zmq
        self.context = zmq.Context()
        self.observations = self.context.socket(zmq.SUB)
        # CONFLATE keeps only the newest observation: a controller that fell behind acts on the present.
        self.observations.setsockopt(zmq.CONFLATE, 1)
        self.observations.setsockopt(zmq.SUBSCRIBE, b"")
        self.actions = self.context.socket(zmq.PUSH)
        self.monty = self._requester()
        self.sim = self._requester()
        # A TCP connection to a sidecar drops only when its process goes away (it died, or the kubelet restarted it):
        # ZeroMQ then reconnects on its own and would hide that, so the monitor events are what tells.
        self.monitors = {
            BRAIN: [self.monty.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)],
            SIMULATOR: [
                sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED) for sock in (self.observations, self.sim)
            ],
        }
        self.connected: dict[str, bool] = {BRAIN: False, SIMULATOR: False}
        self.dropped: dict[str, bool] = {BRAIN: False, SIMULATOR: False}
        self.observations.connect(settings.obs_endpoint)
        self.actions.connect(settings.action_endpoint)
        self.monty.connect(settings.monty_endpoint)
        self.sim.connect(settings.sim_control_endpoint)

    def _requester(self) -> Any:
        socket = self.context.socket(self.zmq.REQ)
        # Relaxed: a new request may follow one that got no answer (a skipped brain step, a save that timed out)
        # instead of wedging the socket. Correlated: the late answer to the old request is then dropped.
        socket.setsockopt(self.zmq.REQ_RELAXED, 1)
        socket.setsockopt(self.zmq.REQ_CORRELATE, 1)
        return socket

    def connection_events(self) -> None:
        """Read the monitors: a sidecar whose established connection dropped is marked in `dropped` for good."""
        from zmq.utils.monitor import recv_monitor_message

        for name, monitors in self.monitors.items():
            for monitor in monitors:
                while True:
                    try:
                        event = recv_monitor_message(monitor, self.zmq.NOBLOCK)
                    except self.zmq.Again:
                        break
                    if event["event"] == self.zmq.EVENT_CONNECTED:
                        self.connected[name] = True
                    elif event["event"] == self.zmq.EVENT_DISCONNECTED and self.connected[name]:
                        self.dropped[name] = True

    def observation(self, timeout: float) -> bytes | None:
        if self.observations.poll(int(timeout * 1000)):
            data: bytes = self.observations.recv()
            return data
        return None

    def send_action(self, payload: bytes) -> bool:
        try:
            self.actions.send(payload, self.zmq.NOBLOCK)
        except self.zmq.Again:
            return False  # the simulator is not pulling (queue full): never block the control loop on it
        return True

    def send_request(self, socket: Any, message: Mapping[str, Any]) -> bool:
        try:
            socket.send(json.dumps(message).encode(), self.zmq.NOBLOCK)
        except self.zmq.Again:
            return False
        return True

    def read_reply(self, socket: Any) -> dict[str, Any] | None:
        try:
            reply = json.loads(socket.recv(self.zmq.NOBLOCK))
        except (self.zmq.Again, ValueError):
            return None
        return reply if isinstance(reply, dict) else None

    def request(
        self, socket: Any, message: Mapping[str, Any], timeout: float, cap: Callable[[float], float], tick: Callable[[], None]
    ) -> dict[str, Any] | None:
        """Send and wait for the answer in slices: `cap` may shorten the deadline (after SIGTERM), `tick` runs between
        slices (the heartbeat). None when there was no answer in time."""
        if not self.send_request(socket, message):
            return None
        deadline = time.monotonic() + timeout
        while True:
            left = cap(deadline) - time.monotonic()
            if left <= 0:
                return None
            if socket.poll(int(min(left * 1000, POLL_SLICE_MS)) or 1):
                reply = self.read_reply(socket)
                if reply is not None:
                    return reply
            tick()

    def finish(
        self, names: tuple[str, ...], timeout: float, cap: Callable[[float], float], tick: Callable[[], None]
    ) -> dict[str, dict[str, Any]]:
        """`finish` to the named sidecars ("sim", "monty") at once; each one's answer when it came within `timeout`."""
        pending = {}
        for name, socket in (("sim", self.sim), ("monty", self.monty)):
            if name in names and self.send_request(socket, {"command": "finish"}):
                pending[name] = socket
        answers: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        poller = self.zmq.Poller()
        for socket in pending.values():
            poller.register(socket, self.zmq.POLLIN)
        while pending:
            left = cap(deadline) - time.monotonic()
            if left <= 0:
                break
            ready = dict(poller.poll(int(min(left * 1000, POLL_SLICE_MS)) or 1))
            for name, socket in list(pending.items()):
                if socket in ready:
                    reply = self.read_reply(socket)
                    if reply is not None:
                        answers[name] = reply
                        poller.unregister(socket)
                        del pending[name]
            tick()
        return answers

    def close(self) -> None:
        for monitors in self.monitors.values():
            for monitor in monitors:
                monitor.close(linger=0)
        for socket in (self.observations, self.actions, self.monty, self.sim):
            socket.close(linger=0)
        self.context.term()
