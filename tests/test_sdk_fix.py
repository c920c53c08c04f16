"""workloads/sdk_fix.py's property transfer and cycle check: a SimRun gets Outputs only for what the program reads, and
registers the same inputs, options and state as when the SDK gives it one per property; a dependency is refused and
recorded exactly as the SDK's own cycle breaker does."""

from __future__ import annotations

import random
from typing import Any

import pulumi
import pytest
from fake_kube import run_props
from pulumi.runtime import rpc

from tools.mocks import DYNAMIC_TYPE
from workloads import sdk_fix
from workloads.provider import PROGRAM_OUTPUTS, SimRun


def registered(pulumi_mocks: Any, props: dict[str, Any]) -> tuple[list[dict[str, Any]], set[str], dict[str, Any]]:
    """The registrations of one SimRun, the names of its Output attributes, and what those resolved to."""
    made: dict[str, SimRun] = {}
    values: dict[str, Any] = {}

    def keep(name: str) -> Any:
        return lambda resolved: values.__setitem__(name, resolved)

    def build() -> None:
        sim = made["sim"] = SimRun("runs-trot", props)
        for name, value in vars(sim).items():
            if isinstance(value, pulumi.Output) and name not in ("urn", "id"):
                value.apply(keep(name))

    rec = pulumi_mocks(build)
    outputs = {name for name, value in vars(made["sim"]).items() if isinstance(value, pulumi.Output)}
    return [r.as_json() for r in rec.of_type(DYNAMIC_TYPE)], outputs, values


@pytest.mark.parametrize("secret", [False, True], ids=["plain", "with-a-secret-kubeconfig"])
def test_a_simrun_gets_outputs_only_for_what_the_program_reads(
    pulumi_mocks: Any, monkeypatch: pytest.MonkeyPatch, secret: bool
) -> None:
    props = run_props("https://example.invalid")
    if secret:
        props["kubeconfig"] = "apiVersion: v1\nkind: Config\n"
    fixed, outputs, values = registered(pulumi_mocks, props)
    assert rpc.transfer_properties is sdk_fix.transfer_properties
    assert outputs == {*PROGRAM_OUTPUTS, "specHash", "urn", "id"}
    assert values == {"status": "Pending", "viewportAddress": None, "recoveries": None, "specHash": props["specHash"]}

    # The SDK's own transfer, an Output per input property: the engine receives the same registration.
    monkeypatch.setattr(SimRun, "simfleet_outputs", None)
    every, all_outputs, all_values = registered(pulumi_mocks, props)
    assert all_outputs >= {*props, "__provider", *outputs}
    assert every == fixed
    assert {name: all_values[name] for name in values} == values
    if secret:
        assert fixed[0]["inputs"]["kubeconfig"] == "[secret]"


def test_other_resources_keep_an_output_per_property(pulumi_mocks: Any) -> None:
    from tools.bench_plan import NullResource

    made: dict[str, Any] = {}
    pulumi_mocks(lambda: made.__setitem__("bare", NullResource("bare", {"x": 1, "y": "two"})))
    assert {"x", "y", "__provider"} <= {name for name, value in vars(made["bare"]).items() if isinstance(value, pulumi.Output)}


class Node:
    """A stand-in for a Resource: the cycle breaker only reads and writes one attribute of it."""

    def __init__(self, name: int) -> None:
        self.name = name


def test_the_cycle_check_answers_and_records_as_the_sdks_own() -> None:
    from pulumi.runtime import resource_cycle_breaker

    rng = random.Random(17)
    for _ in range(200):
        size = rng.randint(1, 12)
        theirs: list[Any] = [Node(i) for i in range(size)]
        ours: list[Any] = [Node(i) for i in range(size)]
        for _ in range(rng.randint(1, 40)):
            a, b = rng.randrange(size), rng.randrange(size)  # self-dependencies and cycles included
            assert sdk_fix.declare_dependency(ours[a], ours[b]) == resource_cycle_breaker.declare_dependency(theirs[a], theirs[b])
        for mine, sdk in zip(ours, theirs, strict=True):
            assert {n.name for n in getattr(mine, "_direct_computed_dependencies", set())} == {
                n.name for n in getattr(sdk, "_direct_computed_dependencies", set())
            }


def test_the_sdk_checks_dependencies_with_this_cycle_check() -> None:
    sdk_fix.install_sdk_fix()
    assert rpc.declare_dependency is sdk_fix.declare_dependency
