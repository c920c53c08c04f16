"""`simfleet viewport RUN`: where an interactive run's viewport is, whether it is ready, whether you may open it from
where you are, and with what."""

from __future__ import annotations

import ipaddress
import os
import urllib.request

import click

import naming
from cli import render
from cli.errors import NoAccess
from cli.session import Lazy, UsageProblem
from workloads.kube import spec_hash_of
from workloads.observe.cluster import ClusterError, ClusterReader

# AWS's own what-is-my-address service (plain text, one line): the address your traffic reaches the NLB from.
CHECKIP_URL = "https://checkip.amazonaws.com"
CHECKIP_ENV = "SIMFLEET_CHECKIP_URL"
CLIENT = (
    "NVIDIA's Isaac Sim WebRTC Streaming Client (a desktop app: Isaac Sim docs, 'Livestream Clients'); enter the "
    "address as its server. It signals over TCP {signal} and streams media over UDP {media}."
)


def public_address(given: str | None) -> tuple[str | None, str]:
    """(your public IPv4 address, how it was found)."""
    if given:
        return given, "given with --from"
    url = os.environ.get(CHECKIP_ENV) or CHECKIP_URL
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read(64).decode().strip()
        ipaddress.ip_address(text)
        return text, f"as {url} sees it"
    except (OSError, ValueError) as err:
        return None, f"{url} did not say ({err}); pass --from <your address>"


def pod_ready(reader: ClusterReader, run: str, spec_hash: str) -> tuple[bool, str]:
    """Whether the simulator of the run's pod is ready (its startup probe passed), and what it is doing if not."""
    pods = [p for p in reader.pods(run) if spec_hash_of(p) == spec_hash]
    if not pods:
        return False, "no pod yet (Queued, or a GPU node is starting: simfleet status " + run + ")"
    pod = pods[-1]
    statuses = [
        *((pod.get("status") or {}).get("initContainerStatuses") or []),
        *((pod.get("status") or {}).get("containerStatuses") or []),
    ]
    sim = next((c for c in statuses if c.get("name") == "unitree-sim"), None)
    phase = (pod.get("status") or {}).get("phase")
    if phase != "Running":
        return False, f"pod {pod['metadata']['name']} is {phase}"
    if sim is None or not sim.get("ready"):
        return False, f"pod {pod['metadata']['name']} runs, the simulator is not ready yet (it starts Isaac Sim: minutes)"
    return True, f"pod {pod['metadata']['name']}: the simulator is ready"


@click.command("viewport")
@click.argument("run")
@click.option("--from", "source", help="Your public IPv4 address (default: asked of checkip.amazonaws.com).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def viewport_command(lazy: Lazy, run: str, source: str | None, as_json: bool) -> None:
    """An interactive run's viewport: its address, whether its load balancer and simulator are ready, whether your
    address is among the run's allowed CIDRs, and which client opens it."""
    session = lazy.get()
    declared = session.declared(run)
    if not declared.viewport:
        raise UsageProblem(f"{run} has no viewport: an interactive run gets one with `viewport: {{allowedCidrs: [...]}}`")
    reader = session.reader()
    if reader is None:
        raise NoAccess(f"the viewport is read from the cluster's API, which cannot be reached ({session.problem})")
    try:
        job = reader.job(run)
        spec_hash = spec_hash_of(job) if job else declared.spec_hash
        service = reader.service(f"{run}-viewport")
        ready, why = pod_ready(reader, run, str(spec_hash))
    except ClusterError as err:
        if err.reachable:
            raise
        raise NoAccess(f"the viewport is read from the cluster's API, which cannot be reached ({err})") from None
    ingress = (((service or {}).get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    address = (ingress[0].get("hostname") or ingress[0].get("ip")) if ingress else None
    allowed = [str(c) for c in ((service or {}).get("spec") or {}).get("loadBalancerSourceRanges") or []]
    mine, how = public_address(source)
    inside = any(ipaddress.ip_address(mine) in ipaddress.ip_network(c, strict=False) for c in allowed) if mine else None
    ports = {name: port for name, port, _ in naming.VIEWPORT_PORTS}
    report = {
        "run": run,
        "address": address,
        "loadBalancerReady": address is not None,
        "simulatorReady": ready,
        "simulator": why,
        "allowedCidrs": allowed,
        "yourAddress": mine,
        "yourAddressFoundBy": how,
        "youMayConnect": inside,
        "ports": {"signalTcp": ports["signal"], "mediaUdp": ports["media"]},
        "client": CLIENT.format(signal=ports["signal"], media=ports["media"]),
    }
    if as_json:
        render.emit_json(report)
        return
    console = render.out()
    if service is None:
        console.print(f"{run}: no viewport Service yet (the run's Job creates it with its pod: simfleet status {run})")
    console.print(
        f"  address      {address or 'not yet: the AWS Load Balancer Controller is provisioning the NLB (a few minutes)'}"
    )
    console.print(f"  simulator    {'ready' if ready else 'not ready'}: {why}")
    verdict = {
        True: "inside the allowed CIDRs",
        False: "NOT inside the allowed CIDRs: ask for it in the run's viewport.allowedCidrs",
        None: "unknown",
    }[inside]
    console.print(f"  you          {mine or '?'} ({how}): {verdict}")
    console.print(f"  allowed      {', '.join(allowed) or '-'}")
    console.print(f"  open it with {report['client']}")


COMMANDS = (viewport_command,)
