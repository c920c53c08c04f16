"""Adapters from pulumi_policy's validation callbacks to the pure rules in the policies/rules package.

Importable without starting anything: `policies/__main__.py` hands `policies()` to PolicyPack, whose
constructor starts the analyzer's gRPC server and never returns.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from config.sources import load_yaml
from policies.rules import RULES, Context, Resource, Rule, helper_images, platform_settings, stack_from_urn

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _engine_platform() -> Any:
    """`simfleet:platform` as the engine passes stack config to policy packs (PULUMI_CONFIG; pulumi/pulumi#3612, #20570)."""
    from pulumi.runtime import get_config

    raw = get_config("simfleet:platform")
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


@lru_cache(maxsize=8)
def _file_platform(stack: str, root: Path) -> Any:
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        return None
    document = load_yaml(path.read_text()) or {}
    return (document.get("config") or {}).get("simfleet:platform")


def stack_settings(stack: str, root: Path = PROJECT_ROOT) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(repositories, imageAllowList) of the stack being previewed.

    From the stack config the engine hands the pack; failing that, from Pulumi.<stack>.yaml in the same
    checkout. A missing key falls back to the config package's default.
    """
    platform = _engine_platform()
    if not isinstance(platform, Mapping):
        platform = _file_platform(stack, root)
    return platform_settings(platform)


def context_for(urn: str, today: datetime.date | None = None, root: Path = PROJECT_ROOT) -> Context:
    """The rule context of the stack a URN belongs to (prod-ness follows the stack name in the URN)."""
    stack = stack_from_urn(urn)
    repositories, allow_list = stack_settings(stack, root)
    return Context(stack, repositories, allow_list, helper_images(), today or datetime.date.today())


def resource_from_args(args: ResourceValidationArgs) -> Resource:
    parent = getattr(args.opts, "parent", None) if args.opts is not None else None
    return Resource(args.resource_type, args.urn, args.name, args.props, parent or None)


def resource_from_policy_resource(resource: PolicyResource) -> Resource:
    return Resource(
        resource.resource_type,
        resource.urn,
        resource.name,
        resource.props,
        resource.parent.urn if resource.parent is not None else None,
        {key: tuple(dep.urn for dep in deps) for key, deps in (resource.property_dependencies or {}).items()},
    )


def _validate_resource(
    rule: Rule, context: Callable[[str], Context]
) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    check = rule.resource_check
    assert check is not None

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(resource_from_args(args), context(args.urn)):
            report_violation(message, None)

    return validate


def _validate_stack(rule: Rule, context: Callable[[str], Context]) -> Callable[[StackValidationArgs, ReportViolation], None]:
    check = rule.stack_check
    assert check is not None

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [resource_from_policy_resource(r) for r in args.resources]
        if not resources:
            return
        for urn, message in check(resources, context(resources[0].urn)):
            report_violation(message, urn)

    return validate


def to_policy(rule: Rule, context: Callable[[str], Context] = context_for) -> Policy:
    """The pulumi_policy form of one rule: same name, description, enforcement level and severity."""
    level, severity = EnforcementLevel(rule.level), Severity(rule.severity)
    if rule.resource_check is not None:
        return ResourceValidationPolicy(
            name=rule.name,
            description=rule.description,
            validate=_validate_resource(rule, context),
            enforcement_level=level,
            severity=severity,
        )
    return StackValidationPolicy(
        name=rule.name,
        description=rule.description,
        validate=_validate_stack(rule, context),
        enforcement_level=level,
        severity=severity,
    )


def policies(context: Callable[[str], Context] = context_for) -> list[Policy]:
    return [to_policy(rule, context) for rule in RULES]
