"""The AWS calls, the only code that talks to AWS: read-only, retried on throttling, failures named by IAM action."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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

from tools.preflight.quotas import QuotaValue

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
