"""Preflight: read-only checks of the real AWS account before `pulumi up` (quotas, EKS version and add-ons, offerings).

    python -m tools.preflight --stack dev
    python -m tools.preflight --config path/to/Pulumi.mystack.yaml
    python -m tools.preflight --stack dev --allow-placeholders   # check the account before replacing sample CIDRs

The stack file is validated the way `pulumi up` validates it (documentation-range placeholders are errors unless
--allow-placeholders). Then, with the caller's AWS credentials and the stack's `aws:region`, read-only: who the caller
is; the EC2 vCPU quotas every node group draws on at maxSize; whether EKS lists the stack's Kubernetes version in
standard support (and on the date versions.py records); whether each pinned managed add-on build exists and lists that
version as compatible; whether each instance type is offered in the availability zones the network will use.

Prints a table (check, wanted, found, ok) and writes build/preflight/<stack>.json. Exit code 0: no check failed
(warnings do not fail); 1: a check failed; 2: no usable AWS credentials, or the stack file is invalid or sets no
aws:region (one message, no traceback).

The module is pure functions (what to check, how to judge an answer, formatting) around `AwsApi`, the only code that
calls AWS. Every call retries throttling in botocore's standard retry mode; a call that still fails (throttled,
access denied, unreachable) fails its own check with the reason, and the other checks still run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)

import versions
from catalog import instance_family, load_catalog
from components.nodegroups import gpu_group_name
from config import ConfigError, PlatformConfig, StackConfig, load_stack_config
from tools.plan import PlanConfigError, read_stack_file, stack_name_for

PROJECT_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = PROJECT_ROOT / "build" / "preflight"

Status = Literal["ok", "warn", "fail"]
STATUS_LABEL: dict[str, str] = {"ok": "ok", "warn": "warn", "fail": "FAIL"}


# ---------------------------------------------------------------------------------------------
# EC2 vCPU quotas
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quota:
    """One Service Quotas quota of the service code `ec2`, in vCPUs."""

    code: str
    name: str


# Codes and names: AWS documentation "Amazon EC2 instance type quotas" (docs.aws.amazon.com/ec2/latest/instancetypes/
# ec2-instance-quotas), whose On-Demand and Spot tables link each quota name to
# console.aws.amazon.com/servicequotas/home/services/ec2/quotas/<code>. L-1216C47A is also the example of the AWS CLI
# user guide's Service Quotas examples (get-aws-default-service-quota, QuotaName as below). Read 2026-11-30.
STANDARD_ON_DEMAND = Quota("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances")
STANDARD_SPOT = Quota("L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests")
G_ON_DEMAND = Quota("L-DB2E81BA", "Running On-Demand G and VT instances")
G_SPOT = Quota("L-3819A6DF", "All G and VT Spot Instance Requests")
P_ON_DEMAND = Quota("L-417A185B", "Running On-Demand P instances")
P4_P3_P2_SPOT = Quota("L-7212CCBC", "All P4, P3 and P2 Spot Instance Requests")
P5_SPOT = Quota("L-C4BD4855", "All P5 Spot Instance Requests")

# Families of the Standard class (A, C, D, H, I, M, R, T, Z) whose names start like another class's letter.
_NOT_STANDARD = ("dl", "inf", "hpc", "trn", "mac")


def quota_for(instance_type: str, capacity: str) -> Quota | None:
    """The vCPU quota an instance of this type counts against, or None when simfleet knows no verified code for it."""
    family = instance_family(instance_type)
    spot = capacity == "spot"
    if family.startswith(("g", "vt")):
        return G_SPOT if spot else G_ON_DEMAND
    if family.startswith("p"):
        if not spot:
            return P_ON_DEMAND
        if family.startswith(("p2", "p3", "p4")):
            return P4_P3_P2_SPOT
        # p5, p5e, p5en by their family name; the quota's name says only "P5". No spot quota was found for p6.
        return P5_SPOT if family.startswith("p5") else None
    if family[:1] in tuple("acdhimrtz") and not family.startswith(_NOT_STANDARD):
        return STANDARD_SPOT if spot else STANDARD_ON_DEMAND
    return None


@dataclass(frozen=True)
class NodeGroupDemand:
    """What one managed node group can ask EC2 for at maxSize."""

    group: str  # the node group's key in components/nodegroups.py: system, gpu-spot, gpu-on-demand
    capacity: str  # onDemand | spot
    instance_types: tuple[str, ...]
    max_size: int
    vcpus: int  # per node: a group holds one shape (config/platform.py)

    @property
    def max_vcpus(self) -> int:
        return self.max_size * self.vcpus

    def describe(self) -> str:
        return f"{self.group} {self.max_size} x {self.vcpus} ({'/'.join(self.instance_types)})"


def node_group_demands(platform: PlatformConfig) -> list[NodeGroupDemand]:
    """The system group (always on-demand) and one GPU group per capacity type, as components/nodegroups.py builds them."""
    catalog = load_catalog().instances
    groups = platform.node_groups
    system = groups.system
    demands = [
        NodeGroupDemand(
            "system", "onDemand", tuple(system.instance_types), system.max_size, catalog[system.instance_types[0]].vcpu
        )
    ]
    gpu = groups.gpu
    for capacity in gpu.capacity:
        demands.append(
            NodeGroupDemand(
                gpu_group_name(capacity), capacity, tuple(gpu.instance_types), gpu.max_size, catalog[gpu.instance_types[0]].vcpu
            )
        )
    return demands


@dataclass(frozen=True)
class QuotaNeed:
    quota: Quota
    groups: tuple[NodeGroupDemand, ...]

    @property
    def vcpus(self) -> int:
        return sum(group.max_vcpus for group in self.groups)

    @property
    def label(self) -> str:
        return f"quota {self.quota.code} {self.quota.name}"

    @property
    def wanted(self) -> str:
        return f">= {self.vcpus} vCPU: " + " + ".join(group.describe() for group in self.groups)


def quota_needs(demands: Sequence[NodeGroupDemand]) -> tuple[list[QuotaNeed], list[Check]]:
    """Sum each quota's vCPUs over the groups that draw on it; warn about types with no known quota.

    A group whose types fall in two quota classes counts in full against each: any of its nodes may be either type.
    """
    by_code: dict[str, tuple[Quota, list[NodeGroupDemand]]] = {}
    unknown: list[Check] = []
    for demand in demands:
        quotas = {}
        for instance_type in demand.instance_types:
            quota = quota_for(instance_type, demand.capacity)
            if quota is None:
                unknown.append(
                    Check(
                        f"quota for {instance_type} ({demand.capacity})",
                        f">= {demand.max_vcpus} vCPU: {demand.describe()}",
                        "simfleet knows no verified quota code for this family; check it in the Service Quotas console",
                        "warn",
                    )
                )
            else:
                quotas[quota.code] = quota
        for quota in quotas.values():
            by_code.setdefault(quota.code, (quota, []))[1].append(demand)
    return [QuotaNeed(quota, tuple(groups)) for quota, groups in by_code.values()], unknown


@dataclass(frozen=True)
class QuotaValue:
    value: float | None
    aws_default: bool = False  # Service Quotas had no applied value, so this is the AWS default
    error: str | None = None  # the quota's ErrorReason, when Service Quotas could not read it


def quota_check(need: QuotaNeed, found: QuotaValue) -> Check:
    if found.value is None:
        return Check(need.label, need.wanted, f"no value: {found.error or 'Service Quotas returned none'}", "fail")
    value = found.value
    source = " (the AWS default: no applied value)" if found.aws_default else ""
    if value >= need.vcpus:
        return Check(need.label, need.wanted, f"{value:g} vCPU{source}", "ok")
    return Check(
        need.label,
        need.wanted,
        f"{value:g} vCPU{source}: {need.vcpus - value:g} short; request {need.quota.code} >= {need.vcpus} in Service Quotas",
        "fail",
    )


# ---------------------------------------------------------------------------------------------
# Checks and how AWS's answers are judged (pure)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    check: str
    wanted: str
    found: str
    status: Status

    def as_json(self) -> dict[str, str]:
        return {"check": self.check, "wanted": self.wanted, "found": self.found, "status": self.status}


def _utc_date(value: Any) -> datetime.date | None:
    if isinstance(value, datetime.datetime):
        return (value.astimezone(datetime.UTC) if value.tzinfo else value).date()
    if isinstance(value, datetime.date):
        return value
    return None


def _version_status(info: Mapping[str, Any]) -> str:
    # `status` (standard-support, ...) is deprecated in favour of `versionStatus` (STANDARD_SUPPORT, ...): EKS API
    # reference, ClusterVersionInformation; botocore eks 2017-11-01 service-2.json.
    status = info.get("versionStatus") or str(info.get("status") or "").upper().replace("-", "_")
    return str(status) or "no status"


def version_checks(version: str, listed: Sequence[Mapping[str, Any]], today: datetime.date) -> list[Check]:
    """The stack's Kubernetes version per DescribeClusterVersions: in standard support, and on versions.py's dates."""
    label = f"EKS {version} support"
    info = next((v for v in listed if v.get("clusterVersion") == version), None)
    if info is None:
        offered = ", ".join(sorted({str(v.get("clusterVersion")) for v in listed}, key=_minor_key)) or "none"
        return [Check(label, "STANDARD_SUPPORT", f"EKS does not list {version} here; it lists {offered}", "fail")]
    status = _version_status(info)
    end = _utc_date(info.get("endOfStandardSupportDate"))
    found = status + (f" until {end}" if end else "")
    if status != "STANDARD_SUPPORT":
        checks = [Check(label, "STANDARD_SUPPORT", found + " (extended support costs 6x the control plane)", "fail")]
    elif end is not None and (end - today).days <= versions.SUPPORT_WARNING_DAYS:
        checks = [Check(label, "STANDARD_SUPPORT", f"{found} ({(end - today).days} days left; plan the upgrade)", "warn")]
    else:
        checks = [Check(label, "STANDARD_SUPPORT", found, "ok")]
    release = versions.eks_release(version)
    recorded = release.end_of_standard if release else None
    label = f"EKS {version} end of standard support"
    wanted = f"{recorded} (versions.EKS_RELEASES)"
    if end is None:
        checks.append(Check(label, wanted, "AWS gives no endOfStandardSupportDate", "warn"))
    elif end != recorded:
        checks.append(Check(label, wanted, f"{end} per AWS: update the release row in versions.py", "warn"))
    else:
        checks.append(Check(label, wanted, f"{end} per AWS", "ok"))
    return checks


def _minor_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def _cluster_versions(build: Mapping[str, Any]) -> list[str]:
    return [str(c.get("clusterVersion")) for c in build.get("compatibilities") or []]


def addon_check(addon: str, pin: str, version: str, builds: Sequence[Mapping[str, Any]]) -> Check:
    """A pinned managed add-on build per DescribeAddonVersions: it exists and lists `version` in its compatibilities."""
    label = f"add-on {addon} {pin}"
    wanted = f"a build for Kubernetes {version}"
    default = next(
        (
            str(b.get("addonVersion"))
            for b in builds
            if any(c.get("clusterVersion") == version and c.get("defaultVersion") for c in b.get("compatibilities") or [])
        ),
        None,
    )
    hint = f"; EKS's default for {version} is {default}" if default else ""
    build = next((b for b in builds if b.get("addonVersion") == pin), None)
    if build is None:
        count = sum(1 for b in builds if version in _cluster_versions(b))
        return Check(label, wanted, f"EKS offers no build {pin} ({count} builds for {version}{hint})", "fail")
    compatible = _cluster_versions(build)
    if version not in compatible:
        listed = ", ".join(sorted(set(compatible), key=_minor_key)) or "no version"
        return Check(label, wanted, f"exists, but for {listed} only{hint}", "fail")
    found = "offered" + (" (EKS's default)" if default == pin else hint)
    if f"{addon} {pin}" in versions.unconfirmed_pins(version):
        found += "; versions.py marks it unconfirmed, AWS confirms it"
    return Check(label, wanted, found, "ok")


def zone_check(zones: Sequence[str], wanted: int) -> tuple[list[str], Check]:
    """The AZs the network will use: the first `wanted` by name, as components/network.py takes them from
    aws.get_availability_zones (state available, opt-in-not-required), whose names the provider sorts."""
    names = sorted(zones)
    chosen = names[:wanted]
    label = "availability zones"
    want = f"{wanted} (network.availabilityZones)"
    if len(names) < wanted:
        return chosen, Check(label, want, f"the region has only {len(names)}: {', '.join(names) or 'none'}", "fail")
    return chosen, Check(
        label, want, f"{', '.join(chosen)}: the first {wanted} of {len(names)} by name, as network.py picks", "ok"
    )


def offering_check(
    instance_type: str, groups: Sequence[str], chosen: Sequence[str], region_zones: Sequence[str], offered: set[str]
) -> Check:
    label = f"{instance_type} in the AZs ({', '.join(groups)})"
    wanted = f"offered in {', '.join(chosen)}"
    missing = [zone for zone in chosen if zone not in offered]
    if not missing:
        return Check(label, wanted, f"offered in all {len(chosen)}", "ok")
    elsewhere = sorted(zone for zone in region_zones if zone in offered)
    found = f"missing in {', '.join(missing)}; offered in {len(elsewhere)} of {len(region_zones)} AZs ({', '.join(elsewhere) or 'none'})"
    if len(elsewhere) >= len(chosen):
        found += f"; network.py takes the first {len(chosen)} AZs by name, so it would still use {', '.join(missing)}"
    return Check(label, wanted, found, "fail")


def instance_types_by_group(demands: Sequence[NodeGroupDemand]) -> dict[str, list[str]]:
    """Each instance type and the node groups that launch it, in node-group order."""
    types: dict[str, list[str]] = {}
    for demand in demands:
        for instance_type in demand.instance_types:
            types.setdefault(instance_type, []).append(demand.group)
    return types


def region_check(region: str, environ: Mapping[str, str]) -> Check:
    """Pulumi's AWS provider uses the stack's aws:region; a different region in the shell is ignored, which surprises."""
    others = {key: environ[key] for key in ("AWS_REGION", "AWS_DEFAULT_REGION") if environ.get(key) and environ[key] != region}
    wanted = f"{region} (the stack's aws:region)"
    if others:
        ignored = ", ".join(f"{key}={value}" for key, value in others.items())
        return Check("region", wanted, f"{region}; {ignored} in this shell is ignored (aws:region wins)", "warn")
    return Check("region", wanted, region, "ok")


# ---------------------------------------------------------------------------------------------
# The AWS calls (the only code that talks to AWS)
# ---------------------------------------------------------------------------------------------

# Standard retry mode: exponential backoff with jitter on throttling and transient errors. 4 retries, 5 calls in all.
RETRY_ATTEMPTS = 4
BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": RETRY_ATTEMPTS}, connect_timeout=10, read_timeout=30)
SERVICES = ("sts", "service-quotas", "eks", "ec2")

# No usable credentials or region: preflight stops with exit code 2 and one line.
CREDENTIAL_ERRORS: tuple[type[Exception], ...] = (
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    CredentialRetrievalError,
    TokenRetrievalError,
    SSOError,
    NoRegionError,
)
# Error codes with which AWS refuses the credentials themselves (STS answers the first call with one of these).
REJECTED_CREDENTIALS = frozenset(
    {
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AuthFailure",
    }
)
ACCESS_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})
# The throttling codes of botocore's standard retry mode (botocore/retries/standard.py, ThrottledRetryableChecker).
THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "EC2ThrottledException",
    }
)


class CredentialsProblem(Exception):
    """No usable AWS credentials: the message is the one line users see."""


class AwsCallError(Exception):
    """An AWS call that failed after botocore's retries; `action` is the IAM action it needs."""

    def __init__(self, action: str, error: ClientError | BotoCoreError) -> None:
        super().__init__(f"{action}: {error}")
        self.action = action
        self.error = error

    @property
    def code(self) -> str:
        if isinstance(self.error, ClientError):
            return str(self.error.response.get("Error", {}).get("Code") or "")
        return type(self.error).__name__

    @property
    def attempts(self) -> int:
        if isinstance(self.error, ClientError):
            return int(self.error.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)) + 1
        return 1

    def reason(self) -> str:
        code = self.code
        if code in ACCESS_DENIED:
            return f"{code}: your identity needs {self.action}"
        status = (
            self.error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(self.error, ClientError) else None
        )
        if code in THROTTLED or status == 429:
            return f"{code or 'HTTP 429'}: still throttled after {self.attempts} attempts at {self.action}; run preflight again later"
        if isinstance(self.error, ClientError):
            message = str(self.error.response.get("Error", {}).get("Message") or "").strip()
            return f"{code}: {message}" if message else code
        return f"{code}: {self.error}"


class AwsApi:
    """Read-only AWS calls, one method per question; failures are raised as AwsCallError naming the IAM action."""

    def __init__(self, clients: Mapping[str, Any]) -> None:
        self._clients = clients

    @classmethod
    def from_environment(cls, region: str) -> AwsApi:
        """Clients for `region` with the caller's credentials (environment, shared config and SSO, or instance role)."""
        import boto3

        session = boto3.session.Session()
        if session.get_credentials() is None:
            raise NoCredentialsError()
        return cls({service: session.client(service, region_name=region, config=BOTO_CONFIG) for service in SERVICES})

    def _call(self, service: str, operation: str, action: str, **params: Any) -> Any:
        try:
            return getattr(self._clients[service], operation)(**params)
        except CREDENTIAL_ERRORS:
            raise
        except (ClientError, BotoCoreError) as err:
            raise AwsCallError(action, err) from err

    def _pages(self, service: str, operation: str, action: str, **params: Any) -> list[Any]:
        try:
            return list(self._clients[service].get_paginator(operation).paginate(**params))
        except CREDENTIAL_ERRORS:
            raise
        except (ClientError, BotoCoreError) as err:
            raise AwsCallError(action, err) from err

    def caller_identity(self) -> dict[str, str]:
        answer = self._call("sts", "get_caller_identity", "sts:GetCallerIdentity")
        return {"account": str(answer.get("Account")), "arn": str(answer.get("Arn"))}

    def service_quota(self, code: str) -> QuotaValue:
        """The applied value of an ec2 quota; the AWS default when Service Quotas has no applied value for it."""
        try:
            answer = self._call(
                "service-quotas", "get_service_quota", "servicequotas:GetServiceQuota", ServiceCode="ec2", QuotaCode=code
            )
            aws_default = False
        except AwsCallError as err:
            # GetServiceQuota: "If the applied quota value is not available for a quota, the quota is not retrieved."
            if err.code != "NoSuchResourceException":
                raise
            answer = self._call(
                "service-quotas",
                "get_aws_default_service_quota",
                "servicequotas:GetAWSDefaultServiceQuota",
                ServiceCode="ec2",
                QuotaCode=code,
            )
            aws_default = True
        quota = answer.get("Quota") or {}
        reason = quota.get("ErrorReason") or {}
        error = ": ".join(str(part) for part in (reason.get("ErrorCode"), reason.get("ErrorMessage")) if part) or None
        value = quota.get("Value")
        return QuotaValue(float(value) if value is not None else None, aws_default, error)

    def cluster_versions(self) -> list[dict[str, Any]]:
        # includeAll: versions out of standard support are listed too, so the check can say which state one is in.
        pages = self._pages("eks", "describe_cluster_versions", "eks:DescribeClusterVersions", includeAll=True)
        return [version for page in pages for version in page.get("clusterVersions") or []]

    def addon_versions(self, addon: str) -> list[dict[str, Any]]:
        """Every build of `addon`, each with the Kubernetes versions it is compatible with."""
        pages = self._pages("eks", "describe_addon_versions", "eks:DescribeAddonVersions", addonName=addon)
        return [
            build
            for page in pages
            for info in page.get("addons") or []
            if info.get("addonName") == addon
            for build in info.get("addonVersions") or []
        ]

    def availability_zones(self) -> list[str]:
        # The filters of components/network.py's aws.get_availability_zones (state="available" becomes a state filter).
        answer = self._call(
            "ec2",
            "describe_availability_zones",
            "ec2:DescribeAvailabilityZones",
            Filters=[
                {"Name": "state", "Values": ["available"]},
                {"Name": "opt-in-status", "Values": ["opt-in-not-required"]},
            ],
        )
        return [str(zone["ZoneName"]) for zone in answer.get("AvailabilityZones") or []]

    def offerings(self, instance_types: Sequence[str]) -> dict[str, set[str]]:
        """The AZs each instance type is offered in (one paginated call for all types)."""
        pages = self._pages(
            "ec2",
            "describe_instance_type_offerings",
            "ec2:DescribeInstanceTypeOfferings",
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": sorted(instance_types)}],
        )
        offered: dict[str, set[str]] = {t: set() for t in instance_types}
        for page in pages:
            for offering in page.get("InstanceTypeOfferings") or []:
                offered.setdefault(str(offering["InstanceType"]), set()).add(str(offering["Location"]))
        return offered


# ---------------------------------------------------------------------------------------------
# Running the checks
# ---------------------------------------------------------------------------------------------


@dataclass
class Report:
    stack: str
    source: str
    region: str
    identity: dict[str, str]
    checks: list[Check]
    warnings: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def as_json(self, checked_at: str) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "source": self.source,
            "region": self.region,
            **self.identity,
            "checkedAt": checked_at,
            "ok": not self.failed,
            "exitCode": self.exit_code,
            "checks": [c.as_json() for c in self.checks],
            "configWarnings": list(self.warnings),
        }


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
    # versions.MANAGED_ADDONS is what components/addons.py installs (MANAGED_ADDON_CONFIG has one entry per name).
    for addon in versions.MANAGED_ADDONS:
        pin = versions.addon_version(version, addon)
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


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------

# Column widths of the table; longer cells wrap onto the next lines of their row.
WIDTHS = (46, 40, 64)


def format_table(checks: Sequence[Check]) -> str:
    header = ("check", "wanted", "found", "ok")
    rows = [header] + [(c.check, c.wanted, c.found, STATUS_LABEL[c.status]) for c in checks]
    widths = [min(limit, max(len(row[i]) for row in rows)) for i, limit in enumerate(WIDTHS)]
    lines: list[str] = []
    for number, row in enumerate(rows):
        cells = [textwrap.wrap(cell, width, break_on_hyphens=False) or [""] for cell, width in zip(row[:3], widths, strict=True)]
        height = max(len(cell) for cell in cells)
        for i in range(height):
            parts = [(cell[i] if i < len(cell) else "").ljust(width) for cell, width in zip(cells, widths, strict=True)]
            lines.append("  ".join([*parts, row[3] if i == 0 else ""]).rstrip())
        if number == 0:
            lines.append("  ".join("-" * w for w in [*widths, 4]))
    return "\n".join(lines)


def summary(report: Report) -> str:
    counts = {status: sum(1 for c in report.checks if c.status == status) for status in ("ok", "warn", "fail")}
    who = f", account {report.identity['account']}" if report.identity else ""
    return (
        f"preflight {report.stack} ({report.region}{who}): {len(report.checks)} checks, {counts['ok']} ok, "
        f"{counts['warn']} warnings, {counts['fail']} failed"
    )


def write_report(report: Report, out_dir: Path, checked_at: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{report.stack}.json"
    path.write_text(json.dumps(report.as_json(checked_at), indent=2) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_stack(path: Path, stack: str, *, allow_placeholders: bool, today: datetime.date) -> tuple[StackConfig, str]:
    """The validated stack config and its aws:region; PlanConfigError or ConfigError when the file is not deployable."""
    raw = read_stack_file(path)
    source = _display(path)
    cfg = load_stack_config(
        raw.get("simfleet:platform"),
        raw.get("simfleet:runs"),
        services=raw.get("simfleet:services"),
        queues=raw.get("simfleet:queues"),
        stack=stack,
        source=source,
        today=today,
        offline=allow_placeholders,
    )
    region = raw.get("aws:region")
    if not region:
        # __main__.py requires it (pulumi.Config("aws").require("region")), so `pulumi up` would stop too.
        raise PlanConfigError(f"{source}: aws:region is not set; `pulumi config set aws:region <region> --stack {stack}`")
    return cfg, str(region)


def main(
    argv: list[str] | None = None,
    *,
    aws: Callable[[str], AwsApi] = AwsApi.from_environment,
    today: datetime.date | None = None,
    out_dir: Path = OUT_DIR,
) -> int:
    parser = argparse.ArgumentParser(prog="make preflight", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--stack", default="dev", help="stack name; reads Pulumi.<stack>.yaml")
    parser.add_argument("--config", type=Path, help="check this stack file instead")
    parser.add_argument(
        "--allow-placeholders",
        action="store_true",
        help="accept documentation-range placeholder CIDRs with a warning, as the offline plan does "
        "(pulumi up still refuses them)",
    )
    parser.add_argument("--out", type=Path, default=out_dir, help="where <stack>.json goes (default build/preflight)")
    args = parser.parse_args(argv)
    config_path: Path = args.config or PROJECT_ROOT / f"Pulumi.{args.stack}.yaml"
    stack = stack_name_for(config_path) if args.config else args.stack
    today = today or datetime.date.today()
    try:
        cfg, region = load_stack(config_path, stack, allow_placeholders=args.allow_placeholders, today=today)
    except (PlanConfigError, ConfigError) as err:
        print(str(err), file=sys.stderr)
        return 2
    source = _display(config_path)
    try:
        api = aws(region)
        print(f"preflight of stack {stack} ({source}) against AWS in {region}, read-only ...", flush=True)
        report = run_checks(cfg, region, source, api, today)
    except CredentialsProblem as err:
        print(f"preflight: {err}", file=sys.stderr)
        return 2
    except CREDENTIAL_ERRORS as err:
        message = " ".join(str(err).split())
        print(
            f"preflight: no usable AWS credentials ({message}); sign in (aws sso login, aws configure, or the deploy "
            "role) and run it again",
            file=sys.stderr,
        )
        return 2
    print(format_table(report.checks))
    for warning in report.warnings:
        print(f"warning (stack file): {warning}")
    checked_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    path = write_report(report, args.out, checked_at)
    print(summary(report))
    print(f"wrote {_display(path)}")
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
