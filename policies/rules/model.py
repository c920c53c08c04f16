"""The shapes rules see (a resource, the stack's context, a rule, a violation) and lookups over a stack's resources."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import versions
from config import PlatformConfig, is_prod_stack
from policies.rules.props import as_list, is_map

Level = Literal["mandatory", "advisory"]
Severity = Literal["low", "medium", "high", "critical"]


@dataclass(frozen=True)
class Resource:
    """One resource as the policy engine describes it (attribute names follow pulumi_policy.PolicyResource)."""

    resource_type: str
    urn: str
    name: str
    props: Mapping[str, Any]
    parent: str | None = None
    # input property -> URNs of the resources its value came from
    property_dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # A run's Kubernetes objects when the caller already has them; otherwise rendered from `props` on demand.
    rendered: Sequence[Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class Context:
    """What a rule may know besides the resources: the stack and the parts of its config rules enforce."""

    stack: str
    repositories: tuple[str, ...] = ()  # the stack's ECR repositories (platform.repositories)
    image_allow_list: tuple[str, ...] = ()  # platform.imageAllowList
    extra_images: tuple[str, ...] = ()  # simfleet's own pinned helper images (versions.py)
    today: datetime.date = field(default_factory=datetime.date.today)

    @property
    def is_prod(self) -> bool:
        return is_prod_stack(self.stack)


@dataclass(frozen=True)
class Violation:
    policy: str
    level: Level
    urn: str | None
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "level": self.level, "urn": self.urn, "message": self.message}


ResourceCheck = Callable[[Resource, Context], Iterable[str]]
StackCheck = Callable[[Sequence[Resource], Context], Iterable[tuple[str | None, str]]]


@dataclass(frozen=True)
class Rule:
    """A policy: exactly one of `resource_check` (per resource) or `stack_check` (whole stack) is set."""

    name: str
    description: str
    level: Level
    severity: Severity
    resource_check: ResourceCheck | None = None
    stack_check: StackCheck | None = None

    def __post_init__(self) -> None:
        if (self.resource_check is None) == (self.stack_check is None):
            raise ValueError(f"rule {self.name}: set exactly one of resource_check and stack_check")


def platform_settings(platform: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(repositories, imageAllowList) from a raw `simfleet:platform` mapping, with the config package's defaults."""
    platform = platform if is_map(platform) else {}
    repositories = platform.get("repositories") or PlatformConfig.model_fields["repositories"].get_default(
        call_default_factory=True
    )
    return tuple(str(r) for r in repositories), tuple(str(p) for p in platform.get("imageAllowList") or [])


def stack_from_urn(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::<type>::<name>` -> `<stack>`."""
    if not urn.startswith("urn:pulumi:") or "::" not in urn:
        raise ValueError(f"{urn!r} is not a Pulumi URN")
    return urn[len("urn:pulumi:") :].split("::", 1)[0]


def helper_images() -> tuple[str, ...]:
    """simfleet's own pinned helper images (versions.py), which runs use besides the stack's ECR: the AWS CLI for the
    pod scripts, and kubectl (per Kubernetes minor) for the gate that releases continuations."""
    return (versions.AWS_CLI_IMAGE, *(versions.kubectl_image(minor) for minor in versions.KUBECTL_IMAGE_PINS))


def index_by_urn(resources: Sequence[Resource]) -> dict[str, Resource]:
    return {r.urn: r for r in resources}


def of_type(resources: Sequence[Resource], types: str | tuple[str, ...]) -> list[Resource]:
    wanted = (types,) if isinstance(types, str) else types
    return [r for r in resources if r.resource_type in wanted]


def dependency_urns(resource: Resource, prop: str) -> list[str]:
    """URNs of the resources the value of input `prop` came from."""
    return [str(u) for u in as_list(resource.property_dependencies.get(prop))]
