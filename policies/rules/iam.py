"""IAM rules: IRSA trust admits exact service accounts of one namespace, and no policy grants * on *."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from policies.rules.model import Context, Resource, Rule
from policies.rules.props import as_list, get_path, is_map, policy_document, policy_statements

IAM_ROLE = "aws:iam/role:Role"
# Resources that carry an IAM policy document in `policy`.
IAM_POLICY_DOCUMENTS = (
    "aws:iam/policy:Policy",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/userPolicy:UserPolicy",
    "aws:iam/groupPolicy:GroupPolicy",
)
IAM_ATTACHMENTS = (
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/policyAttachment:PolicyAttachment",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
)
WILDCARD_CHARS = ("*", "?")
SERVICE_ACCOUNT_SUBJECT_RE = re.compile(r"^system:serviceaccount:[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _web_identity_statements(document: Mapping[str, Any] | None) -> list[tuple[int, Mapping[str, Any]]]:
    out = []
    for index, statement in enumerate(policy_statements(document)):
        actions = [str(a) for a in as_list(statement.get("Action"))]
        federated = get_path(statement, "Principal", "Federated")
        if statement.get("Effect") == "Allow" and (
            "sts:AssumeRoleWithWebIdentity" in actions or any(":oidc-provider/" in str(f) for f in as_list(federated))
        ):
            out.append((index, statement))
    return out


def _check_irsa_trust(resource: Resource, ctx: Context) -> Iterator[str]:
    if resource.resource_type != IAM_ROLE:
        return
    document = policy_document(resource.props.get("assumeRolePolicy"))
    for index, statement in _web_identity_statements(document):
        where = f"assumeRolePolicy Statement[{index}]"
        conditions = statement.get("Condition")
        conditions = conditions if is_map(conditions) else {}
        subjects: list[Any] = []
        audiences: list[Any] = []
        for operator, pairs in conditions.items():
            if not is_map(pairs):
                continue
            for key, value in pairs.items():
                if str(key).endswith(":sub"):
                    if operator != "StringEquals":
                        yield f"{where}: {operator} on {key} matches patterns; use StringEquals with one service account"
                    else:
                        subjects += as_list(value)
                elif str(key).endswith(":aud") and operator == "StringEquals":
                    audiences += as_list(value)
        if not subjects:
            yield (
                f"{where}: web identity trust must be scoped to exact service accounts with StringEquals "
                "<issuer>:sub = system:serviceaccount:<namespace>:<name> (found no subject)"
            )
        for subject in subjects:
            text = str(subject)
            if any(w in text for w in WILDCARD_CHARS) or not SERVICE_ACCOUNT_SUBJECT_RE.match(text):
                yield f"{where}: {text!r} does not name one service account (system:serviceaccount:<namespace>:<name>, no wildcards)"
        # Several exact names may share a role (an add-on's controller and its node DaemonSet), never across namespaces.
        namespaces = {str(s).split(":")[2] for s in subjects if SERVICE_ACCOUNT_SUBJECT_RE.match(str(s))}
        if len(namespaces) > 1:
            yield f"{where}: the service accounts it trusts are in {len(namespaces)} namespaces ({', '.join(sorted(namespaces))}); one role serves one namespace"
        if audiences != ["sts.amazonaws.com"]:
            yield f"{where}: pin StringEquals <issuer>:aud to sts.amazonaws.com (found {audiences or 'none'})"


def _admin_statements(document: Mapping[str, Any] | None) -> Iterator[int]:
    for index, statement in enumerate(policy_statements(document)):
        actions = [str(a) for a in as_list(statement.get("Action"))]
        targets = [str(r) for r in as_list(statement.get("Resource"))]
        if statement.get("Effect") == "Allow" and any(a in ("*", "*:*") for a in actions) and "*" in targets:
            yield index


def _check_no_admin(resource: Resource, ctx: Context) -> Iterator[str]:
    props = resource.props
    documents: list[tuple[str, Any]] = []
    arns: list[Any] = []
    if resource.resource_type == IAM_ROLE:
        documents += [(f"inlinePolicies[{i}]", get_path(p, "policy")) for i, p in enumerate(as_list(props.get("inlinePolicies")))]
        arns += as_list(props.get("managedPolicyArns"))
    elif resource.resource_type in IAM_POLICY_DOCUMENTS:
        documents.append(("policy", props.get("policy")))
    elif resource.resource_type in IAM_ATTACHMENTS:
        arns.append(props.get("policyArn"))
    for where, value in documents:
        for index in _admin_statements(policy_document(value)):
            yield f"{where} Statement[{index}] allows Action * on Resource *; grant the actions and resources the role needs"
    for arn in arns:
        if str(arn).endswith(":policy/AdministratorAccess"):
            yield f"{arn} grants * on *; attach a policy scoped to what the role needs"


RULES: tuple[Rule, ...] = (
    Rule(
        "iam-irsa-trust-scoped",
        "IRSA trust policies admit exact service accounts of one namespace (StringEquals :sub, no wildcards).",
        "mandatory",
        "critical",
        resource_check=_check_irsa_trust,
    ),
    Rule(
        "iam-no-admin-wildcard",
        "No IAM policy allows Action * on Resource *.",
        "mandatory",
        "critical",
        resource_check=_check_no_admin,
    ),
)
