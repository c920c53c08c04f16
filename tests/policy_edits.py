"""Edits that break the synthetic stack of tests/policy_stack.py one rule at a time, and the asserts the policy tests share."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from policy_stack import compliant, context

from policies.rules import RULES, Context, Resource, Rule, evaluate
from policies.rules.runs import run_objects


def rule(name: str) -> Rule:
    return next(r for r in RULES if r.name == name)


def violations(name: str, resources: list[Resource], ctx: Context | None = None) -> list[str]:
    return [v.message for v in evaluate(resources, ctx or context(resources[0].urn.split(":")[2]), [rule(name)])]


def edit(resources: list[Resource], name: str, change: Callable[[dict[str, Any]], Any]) -> list[Resource]:
    """A copy of the stack with one resource's props changed in place by `change`."""
    out = []
    for r in resources:
        if r.name == name:
            props = json.loads(json.dumps(r.props))
            change(props)
            r = replace(r, props=props)
        out.append(r)
    return out


def drop(resources: list[Resource], name: str) -> list[Resource]:
    return [r for r in resources if r.name != name]


def edit_objects(resources: list[Resource], name: str, change: Callable[[list[dict[str, Any]]], Any]) -> list[Resource]:
    """A copy of the stack where one run's rendered objects were changed in place by `change`."""
    out = []
    for r in resources:
        if r.name == name:
            objects = json.loads(json.dumps(run_objects(r)))
            change(objects)
            r = replace(r, rendered=objects)
        out.append(r)
    return out


def job_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    job: dict[str, Any] = next(o for o in objects if o["kind"] == "Job")
    return job["spec"]  # type: ignore[no-any-return]


def job_meta(objects: list[dict[str, Any]]) -> dict[str, Any]:
    job: dict[str, Any] = next(o for o in objects if o["kind"] == "Job")
    return job["metadata"]  # type: ignore[no-any-return]


def job_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = job_spec(objects)["template"]["spec"]
    return pod


def container(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    pod = job_pod(objects)
    return next(c for c in [*pod.get("initContainers", []), *pod["containers"]] if c["name"] == name)  # type: ignore[no-any-return]


CAPACITY = "eks.amazonaws.com/capacityType"


def service_container(props: dict[str, Any]) -> dict[str, Any]:
    main: dict[str, Any] = props["spec"]["template"]["spec"]["containers"][0]
    return main


def set_path(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(props: dict[str, Any]) -> None:
        target = props
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value

    return change


# One failing case: the rule, how the compliant stack is broken, and a fragment of the message it must give.
Failure = tuple[str, Callable[[list[Resource]], list[Resource]], str]


def failure_ids(failures: Sequence[Failure]) -> list[str]:
    return [f"{name}-{i}" for i, (name, _, _) in enumerate(failures)]


def assert_breaks(name: str, mutate: Callable[[list[Resource]], list[Resource]], expected: str) -> None:
    """`name` passes on the compliant dev stack and reports `expected` once `mutate` has broken it."""
    resources = compliant("dev")
    assert violations(name, resources) == [], f"{name} should pass on the compliant stack"
    found = violations(name, mutate(resources))
    assert found, f"{name} found nothing"
    assert any(expected in m for m in found), found


def untested(rules: Sequence[Rule], failures: Sequence[Failure]) -> set[str]:
    """The rules among `rules` that no failing case breaks."""
    return {r.name for r in rules} - {name for name, _, _ in failures}


def floats(value: Any) -> Any:
    """What the engine hands a pack: protobuf Struct numbers, so every integer arrives as a float."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [floats(v) for v in value]
    return value
