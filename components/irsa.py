"""IRSA: an IAM role that exactly one Kubernetes service account can assume through the cluster's OIDC provider."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.tags import merge_tags

# The audience the EKS Pod Identity Webhook requests for projected service account tokens
# (annotation eks.amazonaws.com/audience, default "sts.amazonaws.com"), in every partition we target.
IRSA_AUDIENCE = "sts.amazonaws.com"
_WILDCARDS = ("*", "?")


def aws_managed_policy(partition: pulumi.Input[str], name: str) -> pulumi.Output[str]:
    """The ARN of AWS managed policy `name` (a path like service-role/X included) in the cluster's partition."""
    return pulumi.Output.concat("arn:", partition, f":iam::aws:policy/{name}")


def subject_problems(namespace: str, service_account: str) -> list[str]:
    """Why namespace/service_account do not name exactly one service account; empty if they do."""
    problems = []
    for label, value in (("namespace", namespace), ("service_account", service_account)):
        if not value or any(w in value for w in _WILDCARDS) or ":" in value:
            problems.append(f"{label} {value!r} must name exactly one Kubernetes object (no wildcards or colons)")
    return problems


def _names(service_account: str | Sequence[str]) -> list[str]:
    return [service_account] if isinstance(service_account, str) else list(service_account)


def trust_policy(
    oidc_provider_arn: str,
    oidc_provider_url: str,
    namespace: str,
    service_account: str | Sequence[str],
    audience: str = IRSA_AUDIENCE,
) -> dict[str, Any]:
    """Trust policy letting only `system:serviceaccount:<namespace>:<service_account>` assume the role.

    Both `:sub` and `:aud` are pinned with StringEquals, so no other service account and no token minted
    for another audience gets in. Several exact service accounts of one namespace may share a role (an add-on's
    controller and node DaemonSet): `:sub` then lists them, still exact names. Partition-aware by construction: the
    Federated principal is the provider ARN as the cluster reports it (arn:aws:, arn:aws-cn:, arn:aws-us-gov:), never
    rebuilt here.
    """
    problems: list[str] = []
    if not oidc_provider_arn.startswith("arn:") or ":oidc-provider/" not in oidc_provider_arn:
        problems.append(f"oidc_provider_arn {oidc_provider_arn!r} is not an IAM OIDC provider ARN")
    issuer = oidc_provider_url.removeprefix("https://")
    if not issuer or "/" not in issuer:
        problems.append(f"oidc_provider_url {oidc_provider_url!r} is not an OIDC issuer URL")
    names = _names(service_account)
    if not names:
        problems.append("service_account names no service account")
    for name in names:
        problems += subject_problems(namespace, name)
    if problems:
        raise ValueError("; ".join(problems))
    subjects = [f"system:serviceaccount:{namespace}:{name}" for name in names]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": oidc_provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{issuer}:sub": subjects[0] if len(subjects) == 1 else subjects,
                        f"{issuer}:aud": audience,
                    }
                },
            }
        ],
    }


@dataclass(frozen=True)
class IrsaRoleArgs:
    oidc_provider_arn: pulumi.Input[str]
    oidc_provider_url: pulumi.Input[str]
    namespace: str
    # One service account, or the exact names of several in `namespace` that share the role.
    service_account: str | tuple[str, ...]
    # Inline rather than a managed policy: it belongs to this one role, goes away with it, and needs
    # no account-unique name. Inline role policies may total 10,240 characters (the LBC one is ~5,200).
    policy_json: pulumi.Input[str] | None = None
    managed_policy_arns: Sequence[pulumi.Input[str]] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


class IrsaRole(pulumi.ComponentResource):
    """The role, its inline policy and any managed policy attachments."""

    role_arn: pulumi.Output[str]
    role_name: pulumi.Output[str]

    def __init__(self, name: str, args: IrsaRoleArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        names = _names(args.service_account)
        problems = [p for name in names for p in subject_problems(args.namespace, name)] or (
            [] if names else ["no service account"]
        )
        if problems:  # now, before anything is registered
            raise ValueError(f"IrsaRole {name}: " + "; ".join(problems))
        super().__init__("simfleet:irsa:IrsaRole", name, None, opts)

        child = pulumi.ResourceOptions(parent=self)
        assume = pulumi.Output.all(args.oidc_provider_arn, args.oidc_provider_url).apply(
            lambda v: json.dumps(trust_policy(v[0], v[1], args.namespace, args.service_account))
        )
        role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=assume,
            description=f"IRSA role for service account {args.namespace}/{'+'.join(names)}",
            tags=merge_tags(args.tags, {"simfleet:service-account": f"{args.namespace}/{'+'.join(names)}"}),
            opts=child,
        )
        if args.policy_json is not None:
            aws.iam.RolePolicy(f"{name}-policy", role=role.id, policy=args.policy_json, opts=child)
        for index, policy_arn in enumerate(args.managed_policy_arns):
            aws.iam.RolePolicyAttachment(f"{name}-attach-{index}", role=role.name, policy_arn=policy_arn, opts=child)

        self.role_arn = role.arn
        self.role_name = role.name
        self.register_outputs({"roleArn": self.role_arn, "roleName": self.role_name})
