"""The AWS Load Balancer Controller's IAM policy: upstream's iam_policy.json with the partition filled in and the VPC scoping upstream recommends.

What was compared, 2026-12-07 (for the pinned chart 3.5.0, app v3.5.0, versions.HELM_CHARTS): upstream
kubernetes-sigs/aws-load-balancer-controller `docs/install/iam_policy.json` at tag v3.5.0 (commit 11eb202c, blob
761d0e73, the same blob as at v3.4.2 and v3.4.3): 16 statements, 86 actions. tests/test_access.py compares this module
with that file statement by statement (actions, resources, conditions) and finds the one difference below.
- One deliberate difference: statement 4 (AuthorizeSecurityGroupIngress / RevokeSecurityGroupIngress on any
  security group) carries `ArnEquals ec2:Vpc <the cluster's VPC>`, as upstream's installation guide recommends
  ("Permissions with the least privileges", docs/deploy/installation.md): the controller then cannot open any
  security group outside the cluster's VPC.
The upstream file writes `arn:aws:`; its partition variants (iam_policy_cn.json, iam_policy_us-gov.json) differ in
that prefix, which is the `partition` argument here. The optional AGA and vended-log-delivery policies are not
included: simfleet uses neither.
"""

from __future__ import annotations

from typing import Any

# The tag the controller puts on every security group, load balancer and target group it creates;
# every mutating statement is conditioned on it, so the controller only touches its own resources.
CLUSTER_TAG = "elbv2.k8s.aws/cluster"


def _allow(actions: list[str], resource: str | list[str] = "*", condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": actions, "Resource": resource}
    if condition:
        statement["Condition"] = condition
    return statement


def _elb(partition: str, *resources: str) -> list[str]:
    return [f"arn:{partition}:elasticloadbalancing:*:*:{r}" for r in resources]


def vpc_arn(partition: str, region: str, account_id: str, vpc_id: str) -> str:
    return f"arn:{partition}:ec2:{region}:{account_id}:vpc/{vpc_id}"


def load_balancer_controller_policy(
    partition: str = "aws", elb_service_principal: str = "elasticloadbalancing.amazonaws.com", *, vpc: str
) -> dict[str, Any]:
    """The controller's policy document, statement for statement as upstream, scoped to the cluster's VPC `vpc` (an ARN).

    `elb_service_principal` comes from aws.get_service_principal in the component, as the
    terraform-aws-iam module does, so the service-linked-role condition is right in every partition.
    """
    request_tagged = {"Null": {f"aws:RequestTag/{CLUSTER_TAG}": "false"}}
    resource_tagged = {"Null": {f"aws:ResourceTag/{CLUSTER_TAG}": "false"}}
    # Tag changes on resources the controller owns, but never removing or rewriting its own ownership tag.
    owned_not_retagged = {"Null": {f"aws:RequestTag/{CLUSTER_TAG}": "true", f"aws:ResourceTag/{CLUSTER_TAG}": "false"}}
    security_groups = f"arn:{partition}:ec2:*:*:security-group/*"
    lbs_and_tgs = _elb(partition, "targetgroup/*/*", "loadbalancer/net/*/*", "loadbalancer/app/*/*")

    statements = [
        # 1. The ELB service-linked role, created on first use.
        _allow(
            ["iam:CreateServiceLinkedRole"],
            condition={"StringEquals": {"iam:AWSServiceName": elb_service_principal}},
        ),
        # 2. Discovery: VPCs, subnets, security groups, existing load balancers.
        _allow(
            [
                "ec2:DescribeAccountAttributes",
                "ec2:DescribeAddresses",
                "ec2:DescribeAvailabilityZones",
                "ec2:DescribeInternetGateways",
                "ec2:DescribeVpcs",
                "ec2:DescribeVpcPeeringConnections",
                "ec2:DescribeSubnets",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeInstances",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeTags",
                "ec2:GetCoipPoolUsage",
                "ec2:DescribeCoipPools",
                "ec2:GetSecurityGroupsForVpc",
                "ec2:DescribeIpamPools",
                "ec2:DescribeRouteTables",
                "elasticloadbalancing:DescribeLoadBalancers",
                "elasticloadbalancing:DescribeLoadBalancerAttributes",
                "elasticloadbalancing:DescribeListeners",
                "elasticloadbalancing:DescribeListenerCertificates",
                "elasticloadbalancing:DescribeSSLPolicies",
                "elasticloadbalancing:DescribeRules",
                "elasticloadbalancing:DescribeTargetGroups",
                "elasticloadbalancing:DescribeTargetGroupAttributes",
                "elasticloadbalancing:DescribeTargetHealth",
                "elasticloadbalancing:DescribeTags",
                "elasticloadbalancing:DescribeTrustStores",
                "elasticloadbalancing:DescribeListenerAttributes",
                "elasticloadbalancing:DescribeCapacityReservation",
            ]
        ),
        # 3. Certificates, Cognito, WAF and Shield integrations named in Ingress annotations.
        _allow(
            [
                "cognito-idp:DescribeUserPoolClient",
                "acm:ListCertificates",
                "acm:DescribeCertificate",
                "iam:ListServerCertificates",
                "iam:GetServerCertificate",
                "waf-regional:GetWebACL",
                "waf-regional:GetWebACLForResource",
                "waf-regional:AssociateWebACL",
                "waf-regional:DisassociateWebACL",
                "wafv2:GetWebACL",
                "wafv2:GetWebACLForResource",
                "wafv2:AssociateWebACL",
                "wafv2:DisassociateWebACL",
                "shield:GetSubscriptionState",
                "shield:DescribeProtection",
                "shield:CreateProtection",
                "shield:DeleteProtection",
            ]
        ),
        # 4. Node security group rules for traffic from the load balancers, only in the cluster's VPC (upstream's
        # installation guide, "Permissions with the least privileges").
        _allow(
            ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"],
            condition={"ArnEquals": {"ec2:Vpc": vpc}},
        ),
        # 5-8. Its own security groups: create, tag at creation, retag, change and delete only when tagged.
        _allow(["ec2:CreateSecurityGroup"]),
        _allow(
            ["ec2:CreateTags"],
            security_groups,
            {"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"}, **request_tagged},
        ),
        _allow(["ec2:CreateTags", "ec2:DeleteTags"], security_groups, owned_not_retagged),
        _allow(
            ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup"],
            condition=resource_tagged,
        ),
        # 9-10. Load balancers and target groups only with the ownership tag; listeners and rules on them.
        _allow(
            ["elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup"],
            condition=request_tagged,
        ),
        _allow(
            [
                "elasticloadbalancing:CreateListener",
                "elasticloadbalancing:DeleteListener",
                "elasticloadbalancing:CreateRule",
                "elasticloadbalancing:DeleteRule",
            ]
        ),
        # 11-12. Tags on its load balancers and target groups; on listeners and listener rules.
        _allow(["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"], lbs_and_tgs, owned_not_retagged),
        _allow(
            ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
            _elb(partition, "listener/net/*/*/*", "listener/app/*/*/*", "listener-rule/net/*/*/*", "listener-rule/app/*/*/*"),
        ),
        # 13. Changes to, and deletion of, load balancers and target groups it owns.
        _allow(
            [
                "elasticloadbalancing:ModifyLoadBalancerAttributes",
                "elasticloadbalancing:SetIpAddressType",
                "elasticloadbalancing:SetSecurityGroups",
                "elasticloadbalancing:SetSubnets",
                "elasticloadbalancing:DeleteLoadBalancer",
                "elasticloadbalancing:ModifyTargetGroup",
                "elasticloadbalancing:ModifyTargetGroupAttributes",
                "elasticloadbalancing:DeleteTargetGroup",
                "elasticloadbalancing:ModifyListenerAttributes",
                "elasticloadbalancing:ModifyCapacityReservation",
                "elasticloadbalancing:ModifyIpPools",
            ],
            condition=resource_tagged,
        ),
        # 14. Tagging in the same call that creates a load balancer or target group.
        _allow(
            ["elasticloadbalancing:AddTags"],
            lbs_and_tgs,
            {
                "StringEquals": {"elasticloadbalancing:CreateAction": ["CreateTargetGroup", "CreateLoadBalancer"]},
                **request_tagged,
            },
        ),
        # 15. Pod IPs in and out of target groups.
        _allow(
            ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
            f"arn:{partition}:elasticloadbalancing:*:*:targetgroup/*/*",
        ),
        # 16. Listener and rule changes.
        _allow(
            [
                "elasticloadbalancing:SetWebAcl",
                "elasticloadbalancing:ModifyListener",
                "elasticloadbalancing:AddListenerCertificates",
                "elasticloadbalancing:RemoveListenerCertificates",
                "elasticloadbalancing:ModifyRule",
                "elasticloadbalancing:SetRulePriorities",
            ]
        ),
    ]
    return {"Version": "2012-10-17", "Statement": statements}
