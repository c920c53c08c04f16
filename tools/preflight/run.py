"""Running every check against the account, in table order; a failed AWS call fails only its own checks."""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping

import versions
from components.cluster import iam_principal, same_principal
from config import StackConfig
from tools.preflight.aws import REJECTED_CREDENTIALS, AwsApi, AwsCallError, CredentialsProblem
from tools.preflight.eks import addon_check, version_checks
from tools.preflight.offerings import instance_types_by_group, offering_check, zone_check
from tools.preflight.quotas import node_group_demands, quota_check, quota_needs
from tools.preflight.report import Check, Report


def region_check(region: str, environ: Mapping[str, str]) -> Check:
    """Pulumi's AWS provider uses the stack's aws:region; a different region in the shell is ignored, which surprises."""
    others = {key: environ[key] for key in ("AWS_REGION", "AWS_DEFAULT_REGION") if environ.get(key) and environ[key] != region}
    wanted = f"{region} (the stack's aws:region)"
    if others:
        ignored = ", ".join(f"{key}={value}" for key, value in others.items())
        return Check("region", wanted, f"{region}; {ignored} in this shell is ignored (aws:region wins)", "warn")
    return Check("region", wanted, region, "ok")


def cluster_access_check(cfg: StackConfig, caller_arn: str) -> Check:
    """Whether the identity running the preflight (and then `pulumi up`) gets cluster admin: it is listed in
    platform.deployRoles or clusterAdmins, or else only EKS's creator entry gives it access, and only if it creates the
    cluster (components/cluster.py)."""
    principal = iam_principal(caller_arn)
    listed = [*cfg.platform.deploy_roles, *cfg.platform.cluster_admins]
    wanted = "listed in platform.deployRoles (or clusterAdmins)"
    match = next((arn for arn in listed if same_principal(arn, principal)), None)
    if match is not None:
        return Check("cluster access", wanted, f"{match} is listed", "ok")
    return Check(
        "cluster access",
        wanted,
        f"{principal} is not: it gets cluster admin only through EKS's creator entry, if this `up` creates the cluster; "
        "add it to platform.deployRoles so it can also update a cluster someone else created",
        "warn",
    )


def run_checks(
    cfg: StackConfig,
    region: str,
    source: str,
    aws: AwsApi,
    today: datetime.date,
    environ: Mapping[str, str] | None = None,
) -> Report:
    """Every check, in table order. A failed AWS call fails its own check; CredentialsProblem stops everything."""
    checks: list[Check] = []
    identity: dict[str, str] = {}
    try:
        identity = aws.caller_identity()
        checks.append(Check("identity", "credentials AWS accepts", f"account {identity['account']}, {identity['arn']}", "ok"))
        checks.append(cluster_access_check(cfg, identity["arn"]))
    except AwsCallError as err:
        if err.code in REJECTED_CREDENTIALS:
            raise CredentialsProblem(f"AWS rejected the credentials: {err.reason()}") from err
        checks.append(Check("identity", "credentials AWS accepts", err.reason(), "fail"))
    checks.append(region_check(region, os.environ if environ is None else environ))

    demands = node_group_demands(cfg.platform)
    needs, unknown = quota_needs(demands)
    for need in needs:
        try:
            checks.append(quota_check(need, aws.service_quota(need.quota.code)))
        except AwsCallError as err:
            checks.append(Check(need.label, need.wanted, err.reason(), "fail"))
    checks += unknown

    version = cfg.platform.kubernetes_version
    try:
        checks += version_checks(version, aws.cluster_versions(), today)
    except AwsCallError as err:
        checks.append(Check(f"EKS {version} support", "STANDARD_SUPPORT", err.reason(), "fail"))
    # Every EKS add-on versions.py pins for the version, installed now or when the stack turns on what needs it (EFS CSI
    # with shared storage): a pin EKS does not offer fails CreateAddon in the middle of `pulumi up`.
    for addon, pinned in sorted(versions.EKS_ADDON_PINS.get(version, {}).items()):
        pin = pinned.version
        try:
            checks.append(addon_check(addon, pin, version, aws.addon_versions(addon)))
        except AwsCallError as err:
            checks.append(Check(f"add-on {addon} {pin}", f"a build for Kubernetes {version}", err.reason(), "fail"))

    types = instance_types_by_group(demands)
    wanted_zones = cfg.platform.network.availability_zones
    try:
        region_zones = sorted(aws.availability_zones())
        chosen, zones = zone_check(region_zones, wanted_zones)
        checks.append(zones)
    except AwsCallError as err:
        region_zones, chosen = [], []
        checks.append(Check("availability zones", f"{wanted_zones} (network.availabilityZones)", err.reason(), "fail"))
    try:
        offered = aws.offerings(list(types))
    except AwsCallError as err:
        checks += [
            Check(f"{t} in the AZs ({', '.join(groups)})", "offered in the network's AZs", err.reason(), "fail")
            for t, groups in types.items()
        ]
    else:
        for instance_type, groups in types.items():
            if chosen:
                checks.append(offering_check(instance_type, groups, chosen, region_zones, offered.get(instance_type, set())))
            else:
                checks.append(
                    Check(
                        f"{instance_type} in the AZs ({', '.join(groups)})",
                        "offered in the network's AZs",
                        "not checked: the availability zones could not be read",
                        "fail",
                    )
                )
    return Report(cfg.stack, source, region, identity, checks, cfg.warnings)
