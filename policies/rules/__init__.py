"""simfleet's policy rules as pure functions: the one source of truth for the CrossGuard pack and the offline plan.

A rule sees resources the way the Pulumi engine hands them to a policy pack: a type token, a URN, a name,
the engine's camelCase input properties, the parent URN and, for stack rules, which resources each
input came from (`property_dependencies`). `policies/pack.py` adapts `ResourceValidationArgs` and
`StackValidationArgs` to this shape; `tools/plan.py` builds it from the mocked registrations. Nothing
here imports pulumi or pulumi_policy, so the rules run in tests and in the plan without a gRPC server.

One module per concern, named after the rules' prefix: `s3`, `ecr`, `eks` (with the node launch templates and
subnets), `iam`, `runs` (runs and batch jobs), `services` and `capacity`. `pods` holds the pod-template checks runs,
jobs and services share; `model` the shapes (Resource, Context, Rule, Violation); `props` the helpers that read
engine props.
"""

from __future__ import annotations

from collections.abc import Sequence

from policies.rules import capacity, ecr, eks, iam, runs, s3, services
from policies.rules.model import Context, Resource, Rule, Violation, helper_images, platform_settings, stack_from_urn

# The order the pack lists the policies in and evaluate() reports them in.
RULES: tuple[Rule, ...] = (*s3.RULES, *ecr.RULES, *eks.RULES, *iam.RULES, *runs.RULES, *services.RULES, *capacity.RULES)


def evaluate(resources: Sequence[Resource], ctx: Context, rules: Sequence[Rule] = RULES) -> list[Violation]:
    """Every violation of `rules` in the stack, resource rules first, in resource order."""
    violations: list[Violation] = []
    for rule in rules:
        if rule.resource_check is not None:
            for resource in resources:
                violations += [Violation(rule.name, rule.level, resource.urn, m) for m in rule.resource_check(resource, ctx)]
        elif rule.stack_check is not None:
            violations += [Violation(rule.name, rule.level, urn, m) for urn, m in rule.stack_check(resources, ctx)]
    return violations


__all__ = [
    "RULES",
    "Context",
    "Resource",
    "Rule",
    "Violation",
    "evaluate",
    "helper_images",
    "platform_settings",
    "stack_from_urn",
]
