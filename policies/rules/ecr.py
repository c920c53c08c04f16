"""ECR rules: repositories scan on push, keep tags immutable and expire old images."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from policies.rules.model import Context, Resource, Rule, dependency_urns, of_type
from policies.rules.props import as_list, get_path, policy_document

ECR_REPOSITORY = "aws:ecr/repository:Repository"
ECR_LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"


def _check_ecr_scan(resource: Resource, ctx: Context) -> Iterator[str]:
    if (
        resource.resource_type == ECR_REPOSITORY
        and get_path(resource.props, "imageScanningConfiguration", "scanOnPush") is not True
    ):
        yield f"repository {resource.props.get('name') or resource.name}: set imageScanningConfiguration.scanOnPush to true"


def _check_ecr_immutable(resource: Resource, ctx: Context) -> Iterator[str]:
    if resource.resource_type == ECR_REPOSITORY and resource.props.get("imageTagMutability") != "IMMUTABLE":
        yield (
            f"repository {resource.props.get('name') or resource.name}: imageTagMutability is "
            f"{resource.props.get('imageTagMutability') or 'MUTABLE (the default)'}; runs pin images by tag, "
            "so tags must be IMMUTABLE"
        )


def _check_ecr_lifecycle(resources: Sequence[Resource], ctx: Context) -> Iterator[tuple[str | None, str]]:
    repositories = of_type(resources, ECR_REPOSITORY)
    covered: set[str] = set()
    by_name = {str(r.props.get("name")): r.urn for r in repositories if isinstance(r.props.get("name"), str)}
    for policy in of_type(resources, ECR_LIFECYCLE):
        document = policy_document(policy.props.get("policy"))
        if document is None or not as_list(document.get("rules")):
            continue
        target = policy.props.get("repository")
        if isinstance(target, str) and target in by_name:
            covered.add(by_name[target])
        covered.update(dependency_urns(policy, "repository"))
    for repo in repositories:
        if repo.urn not in covered:
            yield (
                repo.urn,
                (
                    f"repository {repo.props.get('name') or repo.name} has no lifecycle policy with rules; "
                    "add an aws.ecr.LifecyclePolicy so old images expire"
                ),
            )


RULES: tuple[Rule, ...] = (
    Rule("ecr-scan-on-push", "ECR repositories scan images on push.", "mandatory", "medium", resource_check=_check_ecr_scan),
    Rule("ecr-immutable-tags", "ECR repositories have immutable tags.", "mandatory", "high", resource_check=_check_ecr_immutable),
    Rule(
        "ecr-lifecycle-policy",
        "ECR repositories have a lifecycle policy.",
        "mandatory",
        "medium",
        stack_check=_check_ecr_lifecycle,
    ),
)
