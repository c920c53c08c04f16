"""Registry: repository settings, the lifecycle policy's shape, and the URLs runs resolve images against."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.registry import Registry, RegistryArgs, lifecycle_policy, registry_host
from tools.mocks import ACCOUNT_ID

REPO = "aws:ecr/repository:Repository"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
HOST = f"{ACCOUNT_ID}.dkr.ecr.us-east-1.amazonaws.com"


def _build(pulumi_mocks, repositories=("monty", "unitree-sim", "glue-base"), keep=10):
    outputs: dict[str, Any] = {}

    def build() -> None:
        registry = Registry("registry", RegistryArgs(list(repositories), keep, {"simfleet:stack": "dev"}))
        pulumi.Output.all(registry.repository_urls, registry.registry_url).apply(
            lambda v: outputs.update(urls=v[0], registry=v[1])
        )

    return pulumi_mocks(build), outputs


def test_lifecycle_policy_shape():
    rules = lifecycle_policy(12)["rules"]
    priorities = [r["rulePriority"] for r in rules]
    assert priorities == sorted(set(priorities)), "ECR reorders rules by priority; keep them ascending and unique"
    untagged, tagged = rules
    assert untagged["selection"] == {
        "tagStatus": "untagged",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 7,
    }
    # ECR: tagged needs tagPatternList or tagPrefixList; untagged must have neither.
    assert tagged["selection"]["tagStatus"] == "tagged"
    assert tagged["selection"]["tagPatternList"] == ["*"]
    assert tagged["selection"]["countType"] == "imageCountMoreThan"
    assert tagged["selection"]["countNumber"] == 12
    assert all(r["action"] == {"type": "expire"} for r in rules)
    assert not any(r["selection"]["tagStatus"] == "any" for r in rules)


@pytest.mark.parametrize("keep", [0, -1])
def test_lifecycle_policy_rejects_keeping_nothing(keep):
    with pytest.raises(ValueError, match="keep_tagged"):
        lifecycle_policy(keep)


def test_registry_host():
    assert registry_host(f"{HOST}/team/monty") == HOST
    with pytest.raises(ValueError):
        registry_host("monty")


def test_repositories_are_immutable_scanned_encrypted_and_not_force_deleted(pulumi_mocks):
    rec, _ = _build(pulumi_mocks)
    repos = rec.of_type(REPO)
    assert sorted(r.inputs["name"] for r in repos) == ["glue-base", "monty", "unitree-sim"]
    for repo in repos:
        assert repo.inputs["imageTagMutability"] == "IMMUTABLE", repo.urn
        assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}, repo.urn
        assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "AES256"}], repo.urn
        assert repo.inputs["forceDelete"] is False, repo.urn
        assert repo.inputs["tags"] == {"simfleet:stack": "dev"}, repo.urn


def test_each_repository_gets_the_lifecycle_policy(pulumi_mocks):
    rec, _ = _build(pulumi_mocks, keep=25)
    policies = {r.inputs["repository"]: json.loads(r.inputs["policy"]) for r in rec.of_type(LIFECYCLE)}
    assert policies == dict.fromkeys(("monty", "unitree-sim", "glue-base"), lifecycle_policy(25))


def test_urls(pulumi_mocks):
    _, outputs = _build(pulumi_mocks, repositories=("monty", "team/glue"))
    assert outputs["urls"] == {"monty": f"{HOST}/monty", "team/glue": f"{HOST}/team/glue"}
    assert outputs["registry"] == HOST


@pytest.mark.parametrize(("repositories", "message"), [((), "empty"), (("monty", "monty"), "twice")])
def test_bad_repository_lists_fail_before_registering(pulumi_mocks, repositories, message):
    with pytest.raises(ValueError, match=message):
        _build(pulumi_mocks, repositories=repositories)
