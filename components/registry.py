"""ECR repositories for the run images: immutable tags, scan on push, and a lifecycle that bounds storage."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.tags import merge_tags

UNTAGGED_EXPIRY_DAYS = 7

# AES256 (ECR's S3-managed keys) rather than KMS: the encryption setting of a repository cannot be
# changed after creation, a KMS key would have to be granted to every node role that pulls, and each
# pull would add KMS requests. Images hold no secrets; pull access is decided by IAM.
ECR_ENCRYPTION = "AES256"


def lifecycle_policy(keep_tagged: int, untagged_days: int = UNTAGGED_EXPIRY_DAYS) -> dict[str, Any]:
    """ECR lifecycle policy: untagged images expire after `untagged_days`; only the newest `keep_tagged` tagged ones stay.

    Shape per the ECR user guide, "Lifecycle policy properties": `tagStatus: tagged` needs a
    `tagPatternList` or `tagPrefixList` (["*"] matches every tag; up to four wildcards per pattern),
    `untagged` must have neither. Rules are listed in ascending `rulePriority`, because ECR reorders
    them that way and the provider would otherwise see a diff on every run.
    """
    if keep_tagged < 1:
        raise ValueError(f"keep_tagged must be at least 1, got {keep_tagged}")
    if untagged_days < 1:
        raise ValueError(f"untagged_days must be at least 1, got {untagged_days}")
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"Expire untagged images {untagged_days} days after push",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": untagged_days,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 2,
                "description": f"Keep the {keep_tagged} most recent tagged images",
                "selection": {
                    "tagStatus": "tagged",
                    "tagPatternList": ["*"],
                    "countType": "imageCountMoreThan",
                    "countNumber": keep_tagged,
                },
                "action": {"type": "expire"},
            },
        ]
    }


def registry_host(repository_url: str) -> str:
    """`<account>.dkr.ecr.<region>.amazonaws.com/monty` -> `<account>.dkr.ecr.<region>.amazonaws.com`."""
    host, sep, _ = repository_url.partition("/")
    if not sep or not host:
        raise ValueError(f"{repository_url!r} is not an ECR repository URL")
    return host


@dataclass(frozen=True)
class RegistryArgs:
    repositories: Sequence[str]
    keep_tagged: int
    tags: Mapping[str, str] = field(default_factory=dict)


class Registry(pulumi.ComponentResource):
    """One ECR repository per configured name, named exactly as runs refer to it (`monty:1f3c2a9`)."""

    repository_urls: pulumi.Output[dict[str, str]]
    registry_url: pulumi.Output[str]

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        if not args.repositories:
            raise ValueError("Registry: repositories is empty; runs need at least one image repository")
        if len(set(args.repositories)) != len(args.repositories):
            raise ValueError(f"Registry: repositories lists the same name twice: {list(args.repositories)}")
        policy = json.dumps(lifecycle_policy(args.keep_tagged))  # validates keep_tagged before registering
        super().__init__("simfleet:registry:Registry", name, None, opts)

        urls: dict[str, pulumi.Output[str]] = {}
        for repo_name in args.repositories:
            repo = aws.ecr.Repository(
                f"{name}-{repo_name}",
                name=repo_name,
                # Immutable tags: a run's spec hash covers image references, so a tag must always mean the same image.
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                encryption_configurations=[{"encryption_type": ECR_ENCRYPTION}],
                # Deleting a repository that still holds images fails instead of taking the images with it.
                force_delete=False,
                tags=merge_tags(args.tags, {}),
                opts=pulumi.ResourceOptions(parent=self),
            )
            aws.ecr.LifecyclePolicy(
                f"{name}-{repo_name}-lifecycle",
                repository=repo.name,
                policy=policy,
                opts=pulumi.ResourceOptions(parent=self),
            )
            urls[repo_name] = repo.repository_url

        self.repository_urls = pulumi.Output.all(**urls).apply(lambda resolved: dict(resolved))
        # Every repository of one account and region shares the registry host; take it from the first.
        self.registry_url = urls[args.repositories[0]].apply(registry_host)
        self.register_outputs({"repositoryUrls": self.repository_urls, "registryUrl": self.registry_url})
