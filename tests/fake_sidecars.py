"""Fake `unitree-sim` and `monty` sidecars for the glue runtime and fault-injection tests: real pyzmq on 127.0.0.1.

Run as a process, like the real images:

    python tests/fake_sidecars.py sim   --obs EP --actions EP --control EP --events FILE [options]
    python tests/fake_sidecars.py monty --endpoint EP --events FILE [options]

Each binds its sockets, prints "ready", and appends one JSON line per notable event (start, finish, save, the first
actions) to the shared events file, so a test can check the order in which glue talked to them and what the
pod's files looked like at that moment. Each picks an incarnation id at start and sends it with every observation
and reply, as the image contract asks; a test restarts one by killing it and starting it again on the same ports.
Faults on request: a simulator that stops publishing after N observations (alive but silent), a simulator slower
than real time (--interval above --dt), a brain that stops answering after N observations.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import time
from pathlib import Path
from typing import Any

import zmq

EXAMPLE = json.loads((Path(__file__).resolve().parent.parent / "workloads" / "schemas" / "observation.example.json").read_text())


def record(events: Path, who: str, event: str, **fields: Any) -> None:
    # One short line per write with O_APPEND: lines from the two fakes never interleave.
    with open(events, "a") as handle:
        handle.write(json.dumps({"who": who, "event": event, "at": time.monotonic(), **fields}) + "\n")


def file_state(path: str | None) -> Any:
    """What a pod file holds right now: None when missing, parsed JSON when it is JSON, else True."""
    if not path or not os.path.exists(path):
        return None
    try:
        return json.loads(Path(path).read_text())
    except ValueError:
        return True


def run_sim(args: argparse.Namespace) -> None:
    incarnation = "" if args.no_incarnation else secrets.token_hex(8)
    context = zmq.Context()
    # XPUB instead of PUB: it hears the subscription, so nothing is published before glue listens (a PUB drops
    # everything sent before the subscriber connects, and a short test episode could vanish entirely).
    publisher = context.socket(zmq.XPUB)
    publisher.bind(args.obs)
    actions = context.socket(zmq.PULL)
    actions.bind(args.actions)
    control = context.socket(zmq.REP)
    control.bind(args.control)
    print("ready", flush=True)
    record(args.events, "sim", "start", incarnation=incarnation, pid=os.getpid())

    poller = zmq.Poller()
    for socket in (publisher, actions, control):
        poller.register(socket, zmq.POLLIN)
    subscribed = False
    publishing = not args.silent
    sim_time, published, received, reset = 0.0, 0, 0, False
    next_publish = time.monotonic()
    while True:
        wait = max(0.0, next_publish - time.monotonic()) if publishing and subscribed else 0.1
        # Whole milliseconds, rounded up: rounded down, the last part of each wait (up to 1 ms of every 5) was a poll
        # with no timeout, again and again, a busy loop. The schedule stays next_publish's, so the rate is unchanged.
        ready = dict(poller.poll(math.ceil(wait * 1000)))
        if publisher in ready and publisher.recv()[:1] == b"\x01" and not subscribed:
            subscribed = True
            next_publish = time.monotonic()  # the episode starts when glue listens
        if actions in ready:
            action = json.loads(actions.recv())
            received += 1
            if received <= 3 or action.get("cmd_type") not in ("base", "stop"):
                record(args.events, "sim", "action", n=received, action=action)
        if control in ready:
            request = json.loads(control.recv())
            if request.get("command") == "finish":
                record(args.events, "sim", "finish", actions=received, marker=file_state(args.marker))
                publishing = False
                if args.no_finish_ack:
                    continue  # REP never answers: glue must give up after its finish timeout
                control.send_string(json.dumps({"finished": True, "incarnation": incarnation}))
            else:
                control.send_string(json.dumps({"error": f"unknown request {request}"}))
        if args.silent_after and published >= args.silent_after:
            publishing = False  # alive, sockets open, but no more observations: a stalled simulator
        if args.reset_after and published == args.reset_after and not reset:
            sim_time, reset = 0.0, True  # the same process starts its episode over: time goes back
        if publishing and subscribed and time.monotonic() >= next_publish:
            published += 1
            observation = dict(EXAMPLE)  # a new top level (all that changes below); the nested values are only read
            observation["time"] = round(sim_time, 6)
            observation["nociceptor"] = args.nociceptor
            observation["energy_rate"] = args.energy_rate
            if incarnation:
                observation["incarnation"] = incarnation
            if args.done_after and published >= args.done_after:
                observation["done"] = True
                publishing = False  # the episode is over; the done observation is the last one
            publisher.send_string(json.dumps(observation))
            sim_time += args.dt
            next_publish += args.interval


def run_monty(args: argparse.Namespace) -> None:
    incarnation = "" if args.no_incarnation else secrets.token_hex(8)
    context = zmq.Context()
    server = context.socket(zmq.REP)
    server.bind(args.endpoint)
    print("ready", flush=True)
    loaded = Path(args.checkpoint_in).read_text()[:80] if args.checkpoint_in and os.path.isfile(args.checkpoint_in) else None
    record(args.events, "monty", "start", incarnation=incarnation, pid=os.getpid(), loaded=loaded)
    observations = saves = 0

    def answer(reply: dict[str, Any]) -> None:
        server.send_string(json.dumps({**reply, **({"incarnation": incarnation} if incarnation else {})}))

    while True:
        request = json.loads(server.recv())
        if "observation" in request:
            observations += 1
            if args.silent_after and observations > args.silent_after:
                record(args.events, "monty", "silent", observations=observations)
                while True:  # alive, socket open, never answers again: a brain stuck in its own loop
                    time.sleep(3600)
            if args.brain_delay:
                time.sleep(args.brain_delay)
            answer({"brain": {"vx": args.brain_vx, "seen": observations}})
        elif request.get("command") == "save":
            saves += 1
            path = request["path"]
            record(
                args.events,
                "monty",
                "save",
                path=path,
                observations=observations,
                marker=file_state(args.marker),
                summary=file_state(args.summary),
                partial=file_state(args.partial),
            )
            delay = args.first_save_delay if saves == 1 and args.first_save_delay is not None else args.save_delay
            time.sleep(delay)
            if args.save_fails:
                answer({"error": "disk full"})
                continue
            if args.save_as_symlink:
                os.symlink(args.save_as_symlink, path)  # a brain image that "saves" a link to something else
                answer({"saved": path})
                continue
            Path(path).write_text(f"brain after {observations} observations (save {saves})\n" + "x" * args.save_bytes)
            answer({"saved": path})
        elif request.get("command") == "finish":
            record(args.events, "monty", "finish", observations=observations, marker=file_state(args.marker))
            time.sleep(args.finish_delay)
            answer({"finished": True})
        else:
            answer({"error": f"unknown request {request}"})


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    sim = sub.add_parser("sim")
    sim.add_argument("--obs", required=True)
    sim.add_argument("--actions", required=True)
    sim.add_argument("--control", required=True)
    sim.add_argument("--events", type=Path, required=True)
    sim.add_argument("--marker")
    sim.add_argument("--dt", type=float, default=0.01, help="simulation seconds per observation")
    sim.add_argument("--interval", type=float, default=0.005, help="wall seconds between observations")
    sim.add_argument("--done-after", type=int, default=0, help="the Nth observation carries done: true")
    sim.add_argument("--nociceptor", type=float, default=0.1)
    sim.add_argument("--energy-rate", type=float, default=100.0)
    sim.add_argument("--silent", action="store_true", help="never publish (a simulator that does not start)")
    sim.add_argument("--no-finish-ack", action="store_true")
    sim.add_argument("--silent-after", type=int, default=0, help="stop publishing after N observations, stay alive")
    sim.add_argument("--no-incarnation", action="store_true", help="an image that sends no incarnation id")
    sim.add_argument("--reset-after", type=int, default=0, help="after N observations, simulation time starts over")
    monty = sub.add_parser("monty")
    monty.add_argument("--endpoint", required=True)
    monty.add_argument("--events", type=Path, required=True)
    monty.add_argument("--marker")
    monty.add_argument("--summary")
    monty.add_argument("--partial")
    monty.add_argument("--brain-vx", type=float, default=0.4)
    monty.add_argument("--brain-delay", type=float, default=0.0)
    monty.add_argument("--save-delay", type=float, default=0.0)
    monty.add_argument("--first-save-delay", type=float, default=None)
    monty.add_argument("--save-fails", action="store_true")
    monty.add_argument("--finish-delay", type=float, default=0.0)
    monty.add_argument("--save-bytes", type=int, default=0, help="pad each saved checkpoint to about this size")
    monty.add_argument("--silent-after", type=int, default=0, help="answer no observation after the Nth, stay alive")
    monty.add_argument("--checkpoint-in", help="the checkpoint Monty loads at start (recorded in its start event)")
    monty.add_argument("--no-incarnation", action="store_true", help="an image that sends no incarnation id")
    monty.add_argument("--save-as-symlink", help="answer each save with a symlink to this path instead of a file")
    args = parser.parse_args()
    if args.role == "sim":
        run_sim(args)
    else:
        run_monty(args)


if __name__ == "__main__":
    main()
