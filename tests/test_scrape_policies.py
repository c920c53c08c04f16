"""The NetworkPolicies of the planned dev stack (its service turned on) admit the collector to exactly what it scrapes.

And nothing else to it. Evaluated on every NetworkPolicy the plan registers (platform and runs), with tests/netpol.py, the evaluator whose own
semantics are tested at the bottom.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from netpol import Endpoint, allows
from test_plan import planned_dev_with_service

import naming
from components.metrics import PUSHGATEWAY_POD_LABELS
from tools.plan import kubernetes_objects

TRITON = "radstream-triton"  # dev's service: ports http 8000, grpc 8001, metrics 8002, clients: the runs namespace


@cache
def policies() -> list[dict[str, Any]]:
    return [body for _, body in kubernetes_objects(planned_dev_with_service().registrations) if body["kind"] == "NetworkPolicy"]


@cache
def pod_labels(namespace: str, name: str) -> dict[str, str]:
    """The labels the planned Deployment gives its pods."""
    for _, body in kubernetes_objects(planned_dev_with_service().registrations):
        meta = body["metadata"]
        if body["kind"] == "Deployment" and meta.get("namespace") == namespace and meta["name"] == name:
            return dict(body["spec"]["template"]["metadata"]["labels"])
    raise AssertionError(f"no planned Deployment {namespace}/{name}")


COLLECTOR = Endpoint(naming.OBSERVABILITY_NAMESPACE, naming.COLLECTOR_POD_LABELS)
PUSHGATEWAY = Endpoint(naming.METRICS_NAMESPACE, PUSHGATEWAY_POD_LABELS)
KUEUE = Endpoint(naming.KUEUE_NAMESPACE, naming.KUEUE_POD_LABELS)
RUN_POD = Endpoint(naming.RUNS_NAMESPACE, {naming.RUN_LABEL: "trot-sweep", "app.kubernetes.io/part-of": "simfleet"})
API_SERVER = Endpoint(None, ip="10.40.1.25")  # the control plane's network interface in a private subnet


def triton() -> Endpoint:
    return Endpoint(naming.SERVICES_NAMESPACE, pod_labels(naming.SERVICES_NAMESPACE, TRITON))


def impostor(namespace: str) -> Endpoint:
    """A pod of that namespace that is not the collector (another pod in its namespace, or one copying its labels)."""
    return Endpoint(namespace, {"app.kubernetes.io/name": "something-else"})


def test_the_collector_reaches_every_target_on_its_scrape_port() -> None:
    assert pod_labels(naming.OBSERVABILITY_NAMESPACE, naming.COLLECTOR_NAME) == naming.COLLECTOR_POD_LABELS
    assert allows(policies(), COLLECTOR, PUSHGATEWAY, naming.PUSHGATEWAY_PORT)
    assert allows(policies(), COLLECTOR, KUEUE, naming.KUEUE_METRICS_PORT)
    assert allows(policies(), COLLECTOR, triton(), 8002)


def test_the_collector_reaches_nothing_else() -> None:
    assert not allows(policies(), COLLECTOR, KUEUE, naming.KUEUE_WEBHOOK_PORT)
    assert not allows(policies(), COLLECTOR, triton(), 8000)
    assert not allows(policies(), COLLECTOR, RUN_POD, 8011)  # runs are pushed from, never scraped
    assert not allows(policies(), COLLECTOR, PUSHGATEWAY, 8080)
    assert not allows(policies(), COLLECTOR, Endpoint(None, ip="169.254.169.254"), 80)  # never the node's credentials


@pytest.mark.parametrize(
    "source",
    [
        impostor(naming.OBSERVABILITY_NAMESPACE),
        Endpoint(naming.SERVICES_NAMESPACE, naming.COLLECTOR_POD_LABELS),  # the collector's labels in another namespace
        Endpoint("default", naming.COLLECTOR_POD_LABELS),
        API_SERVER,
    ],
)
def test_nothing_but_the_collector_reaches_a_metrics_port(source: Endpoint) -> None:
    assert not allows(policies(), source, KUEUE, naming.KUEUE_METRICS_PORT)
    assert not allows(policies(), source, triton(), 8002)
    assert not allows(policies(), source, PUSHGATEWAY, naming.PUSHGATEWAY_PORT)


def test_runs_still_push_and_call_their_services_and_kueue_still_serves_the_api_server() -> None:
    assert allows(policies(), RUN_POD, PUSHGATEWAY, naming.PUSHGATEWAY_PORT)
    assert allows(policies(), RUN_POD, triton(), 8000)  # a declared client, on its service ports
    assert not allows(policies(), RUN_POD, KUEUE, naming.KUEUE_METRICS_PORT)
    # The webhooks and the visibility API are called by the API server from the VPC: still open to it.
    assert allows(policies(), API_SERVER, KUEUE, naming.KUEUE_WEBHOOK_PORT)
    assert allows(policies(), API_SERVER, KUEUE, naming.KUEUE_VISIBILITY_PORT)


def test_nobody_connects_to_the_collector() -> None:
    for source in (RUN_POD, PUSHGATEWAY, KUEUE, triton(), impostor(naming.OBSERVABILITY_NAMESPACE)):
        assert not allows(policies(), source, COLLECTOR, 8080), source


# ---- the evaluator itself -------------------------------------------------------------------------


def _policy(namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": namespace}, "spec": spec}


def test_evaluator_unisolated_pods_accept_everything_and_isolated_ones_only_their_rules() -> None:
    a, b = Endpoint("a", {"app": "x"}), Endpoint("b", {"app": "y"})
    assert allows([], a, b, 80)
    deny = [_policy("b", {"podSelector": {}, "policyTypes": ["Ingress"]})]
    assert not allows(deny, a, b, 80)
    peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "a"}},
        "podSelector": {"matchLabels": {"app": "x"}},
    }
    allow = [
        *deny,
        _policy("b", {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [peer], "ports": [{"port": 80}]}]}),
    ]
    assert allows(allow, a, b, 80)
    assert not allows(allow, a, b, 81)
    assert not allows(allow, Endpoint("a", {"app": "z"}), b, 80)
    assert not allows(allow, Endpoint("c", {"app": "x"}), b, 80)
    # A peer with only a podSelector means pods of the policy's own namespace.
    same = [*deny, _policy("b", {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]})]
    assert allows(same, Endpoint("b", {}), b, 9) and not allows(same, a, b, 9)


def test_evaluator_checks_egress_and_ip_blocks() -> None:
    a, outside = Endpoint("a", {}), Endpoint(None, ip="10.0.0.5")
    egress = [
        _policy(
            "a",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/30"]}}]}],
            },
        )
    ]
    assert allows(egress, a, outside, 443)
    assert not allows(egress, a, Endpoint(None, ip="10.0.0.2"), 443)
    assert not allows(egress, a, Endpoint("b", {}), 443)  # a pod has no address here, so no ipBlock names it
    with pytest.raises(NotImplementedError):
        allows([_policy("a", {"podSelector": {"matchExpressions": []}, "policyTypes": ["Egress"]})], a, outside, 1)
