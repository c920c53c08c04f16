"""The service rules: the services' Deployments pass on a compliant stack and fail on a broken one."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from policy_edits import (
    Failure,
    assert_breaks,
    edit,
    failure_ids,
    service_container,
    untested,
)
from policy_stack import REGISTRY, TRITON

from policies.rules import Resource, services

FAILURES: list[Failure] = [
    (
        "service-image-pinned",
        lambda rs: edit(rs, TRITON, lambda p: service_container(p).update(image=f"{REGISTRY}/triton:latest")),
        "uses :latest",
    ),
    (
        "service-image-pinned",
        lambda rs: edit(rs, TRITON, lambda p: service_container(p).update(image=f"{REGISTRY}/triton")),
        "has no tag",
    ),
    (
        "service-image-source",
        lambda rs: edit(rs, TRITON, lambda p: service_container(p).update(image="docker.io/someone/triton:26.02-py3")),
        "neither in the stack's ECR repositories",
    ),
    (
        "service-gpu-request-equals-limit",
        lambda rs: edit(rs, TRITON, lambda p: service_container(p)["resources"]["limits"].update({"nvidia.com/gpu": "2"})),
        "differs from limit",
    ),
    (
        "service-gpu-request-equals-limit",
        lambda rs: edit(rs, TRITON, lambda p: service_container(p)["resources"]["limits"].pop("nvidia.com/gpu")),
        "sets no limit",
    ),
    (
        "service-restricted-pod-security",
        lambda rs: edit(rs, TRITON, lambda p: service_container(p)["securityContext"].update(allowPrivilegeEscalation=True)),
        "allowPrivilegeEscalation must be false",
    ),
    (
        "service-restricted-pod-security",
        lambda rs: edit(rs, TRITON, lambda p: p["spec"]["template"]["spec"]["securityContext"].pop("seccompProfile")),
        "seccompProfile.type is unset",
    ),
    (
        "service-probes",
        lambda rs: edit(rs, TRITON, lambda p: service_container(p).pop("readinessProbe")),
        "no readinessProbe",
    ),
    (
        "service-probes",
        lambda rs: edit(rs, TRITON, lambda p: service_container(p).update(livenessProbe={"periodSeconds": 10})),
        "no livenessProbe",
    ),
]


@pytest.mark.parametrize(("name", "mutate", "expected"), FAILURES, ids=failure_ids(FAILURES))
def test_rule_fails_on_broken_stack(name: str, mutate: Callable[[list[Resource]], list[Resource]], expected: str) -> None:
    assert_breaks(name, mutate, expected)


def test_every_service_rule_has_a_failing_case() -> None:
    assert untested(services.RULES, FAILURES) == set()
