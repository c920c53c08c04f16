"""A small NetworkPolicy evaluator for tests: would this connection be allowed by these policies?

Kubernetes semantics (networking.k8s.io/v1, "Network Policies" concept page): a pod is isolated in a direction once a
policy selecting it lists that direction in policyTypes; an isolated pod accepts a connection only when some selecting
policy has a rule whose peers match the other end (empty `from`/`to`: anyone) and whose ports match (none: any port).
A connection needs the source's egress and the destination's ingress. Only matchLabels selectors are understood; any
other selector makes the evaluator refuse to answer rather than guess.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    namespace: str | None  # None: outside the cluster (an address only, e.g. the API server's network interfaces)
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str | None = None

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace} if self.namespace else {}


def _matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return False
    unknown = set(selector) - {"matchLabels"}
    if unknown:
        raise NotImplementedError(f"selector keys {sorted(unknown)} are not understood by this evaluator")
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _peer_matches(peer: Mapping[str, Any], policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        if other.ip is None:
            return False
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        inside = address in ipaddress.ip_network(block["cidr"])
        return inside and not any(address in ipaddress.ip_network(e) for e in block.get("except", []))
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or _matches(peer["podSelector"], other.labels)


def _port_matches(ports: list[Mapping[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for p in ports:
        if isinstance(p.get("port"), str):
            raise NotImplementedError("named ports are not understood by this evaluator")
        if p.get("protocol", "TCP") == protocol and (p.get("port") is None or p["port"] == port):
            return True
    return False


def _side_allows(
    policies: Iterable[Mapping[str, Any]], pod: Endpoint, other: Endpoint, port: int, protocol: str, direction: str
) -> bool:
    if pod.namespace is None:
        return True  # outside the cluster: no policy applies
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if p["metadata"].get("namespace") == pod.namespace
        and direction in (p["spec"].get("policyTypes") or [])
        and _matches(p["spec"].get("podSelector") or {}, pod.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            peer_ok = not peers or any(_peer_matches(peer, pod.namespace, other) for peer in peers)
            if peer_ok and _port_matches(rule.get("ports"), port, protocol):
                return True
    return False


def allows(
    policies: Sequence[Mapping[str, Any]], source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP"
) -> bool:
    """Whether `source` may open a connection to `destination` on `port`."""
    return _side_allows(policies, source, destination, port, protocol, "Egress") and _side_allows(
        policies, destination, source, port, protocol, "Ingress"
    )
