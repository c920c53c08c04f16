"""Where the nodes can run: the availability zones the network will use, and each instance type's offerings in them."""

from __future__ import annotations

from collections.abc import Sequence

from tools.preflight.quotas import NodeGroupDemand
from tools.preflight.report import Check


def zone_check(zones: Sequence[str], wanted: int) -> tuple[list[str], Check]:
    """The AZs the network will use: the first `wanted` by name, as components/network.py takes them from
    aws.get_availability_zones (state available, opt-in-not-required), whose names the provider sorts."""
    names = sorted(zones)
    chosen = names[:wanted]
    label = "availability zones"
    want = f"{wanted} (network.availabilityZones)"
    if len(names) < wanted:
        return chosen, Check(label, want, f"the region has only {len(names)}: {', '.join(names) or 'none'}", "fail")
    return chosen, Check(
        label, want, f"{', '.join(chosen)}: the first {wanted} of {len(names)} by name, as network.py picks", "ok"
    )


def offering_check(
    instance_type: str, groups: Sequence[str], chosen: Sequence[str], region_zones: Sequence[str], offered: set[str]
) -> Check:
    label = f"{instance_type} in the AZs ({', '.join(groups)})"
    wanted = f"offered in {', '.join(chosen)}"
    missing = [zone for zone in chosen if zone not in offered]
    if not missing:
        return Check(label, wanted, f"offered in all {len(chosen)}", "ok")
    elsewhere = sorted(zone for zone in region_zones if zone in offered)
    found = f"missing in {', '.join(missing)}; offered in {len(elsewhere)} of {len(region_zones)} AZs ({', '.join(elsewhere) or 'none'})"
    if len(elsewhere) >= len(chosen):
        found += f"; network.py takes the first {len(chosen)} AZs by name, so it would still use {', '.join(missing)}"
    return Check(label, wanted, found, "fail")


def instance_types_by_group(demands: Sequence[NodeGroupDemand]) -> dict[str, list[str]]:
    """Each instance type and the node groups that launch it, in node-group order."""
    types: dict[str, list[str]] = {}
    for demand in demands:
        for instance_type in demand.instance_types:
            types.setdefault(instance_type, []).append(demand.group)
    return types
