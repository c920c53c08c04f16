"""A fake AWS account for the preflight tests, and the sample stack they check against it.

STS and EC2 are moto (it implements GetCallerIdentity, DescribeAvailabilityZones and DescribeInstanceTypeOfferings);
Service Quotas and EKS are botocore Stubbers (moto 5.2.5 implements Service Quotas for the vpc service only, and
neither DescribeClusterVersions nor DescribeAddonVersions), which check every request against the service model.
Throttling is answered over botocore's own HTTP path (a before-send hook), so the standard retry mode really retries.
"""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import yaml
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber

import versions
from config.sources import load_yaml
from tools.preflight import aws, quotas
from tools.preflight.aws import AwsApi

ROOT = Path(__file__).resolve().parent.parent
TODAY = datetime.date(2026, 11, 30)
REGION = "us-east-1"
VERSION = "1.35"
# What the dev sample's node groups ask for at maxSize: system 3 x t3.medium (2 vCPU); each GPU group 4 x 8 vCPU.
DEV_NEEDS = {"L-1216C47A": 6, "L-3819A6DF": 32, "L-DB2E81BA": 32}
QUOTA_NAMES = {q.code: q.name for q in (quotas.STANDARD_ON_DEMAND, quotas.G_SPOT, quotas.G_ON_DEMAND)}


# The fake account (moto's MOTO_ACCOUNT_ID: an id no documentation uses, unlike moto's default 123456789012) and the
# identity its STS answers for, listed as the stack's deploy role in place of the sample's placeholder.
ACCOUNT = "210987654321"
DEPLOY_ROLE = f"arn:aws:iam::{ACCOUNT}:user/moto"


def dev_stack() -> dict[str, Any]:
    """Pulumi.dev.yaml's config with a real public CIDR, deploy role and import bucket instead of the placeholders, and no
    runs."""
    config = copy.deepcopy(load_yaml((ROOT / "Pulumi.dev.yaml").read_text())["config"])
    config["simfleet:platform"]["endpoint"]["publicAccessCidrs"] = ["52.94.0.0/22"]
    config["simfleet:platform"]["deployRoles"] = [DEPLOY_ROLE]
    for entry in config["simfleet:platform"]["sharedStorage"]["imports"]:
        entry["from"] = entry["from"].replace("-example/", "-acme/")
    config["simfleet:runs"] = []
    return config


def write_stack(tmp_path: Path, config: dict[str, Any], name: str = "Pulumi.dev.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"config": config}))
    return path


class Account:
    """A fake AWS account: moto behind STS and EC2, Stubbers in front of Service Quotas and EKS."""

    def __init__(self) -> None:
        session = boto3.session.Session(region_name=REGION)
        self.clients = {service: session.client(service, region_name=REGION, config=aws.BOTO_CONFIG) for service in aws.SERVICES}
        self.quotas = Stubber(self.clients["service-quotas"])
        self.eks = Stubber(self.clients["eks"])
        self.sts: Stubber | None = None
        self.quotas_stubbed = True  # False when Service Quotas answers over HTTP (answer_quotas_over_http)

    def api(self, region: str = REGION) -> AwsApi:
        assert region == REGION
        return AwsApi(self.clients)

    def stub_quotas(
        self, values: dict[str, float] | None = None, instead: dict[str, Callable[[Stubber], None]] | None = None
    ) -> None:
        """One GetServiceQuota answer per quota the dev stack needs, in call order; `instead` stubs a code another way."""
        for code, need in DEV_NEEDS.items():
            if instead and code in instead:
                instead[code](self.quotas)
                continue
            value = (values or {}).get(code, float(need))
            self.quotas.add_response(
                "get_service_quota",
                {
                    "Quota": {
                        "ServiceCode": "ec2",
                        "QuotaCode": code,
                        "QuotaName": QUOTA_NAMES[code],
                        "Value": value,
                        "Unit": "None",
                        "Adjustable": True,
                        "GlobalQuota": False,
                    }
                },
                {"ServiceCode": "ec2", "QuotaCode": code},
            )

    def stub_versions(self, status: str = "STANDARD_SUPPORT", end: datetime.date = datetime.date(2027, 3, 27)) -> None:
        def row(version: str, status: str, end: datetime.date) -> dict[str, Any]:
            return {
                "clusterVersion": version,
                "clusterType": "eks",
                "versionStatus": status,
                "status": status.lower().replace("_", "-"),
                "endOfStandardSupportDate": datetime.datetime(end.year, end.month, end.day, tzinfo=datetime.UTC),
            }

        self.eks.add_response(
            "describe_cluster_versions",
            {"clusterVersions": [row("1.36", "STANDARD_SUPPORT", datetime.date(2027, 8, 2)), row(VERSION, status, end)]},
            {"includeAll": True},
        )

    def stub_addons(self, builds: dict[str, list[dict[str, Any]]] | None = None) -> None:
        # In the order the preflight asks: every add-on versions.py pins for the version, by name.
        for addon in sorted(versions.EKS_ADDON_PINS[VERSION]):
            pin = versions.addon_version(VERSION, addon)
            found = (builds or {}).get(addon, [build(pin, ["1.34", VERSION, "1.36"], default_for=VERSION)])
            self.eks.add_response(
                "describe_addon_versions",
                {"addons": [{"addonName": addon, "type": "networking", "addonVersions": found}]},
                {"addonName": addon},
            )

    def stub_all(self) -> None:
        self.stub_quotas()
        self.stub_versions()
        self.stub_addons()

    def activate(self) -> None:
        if self.quotas_stubbed:
            self.quotas.activate()
        self.eks.activate()
        if self.sts:
            self.sts.activate()

    def assert_all_answered(self) -> None:
        if self.quotas_stubbed:
            self.quotas.assert_no_pending_responses()
        self.eks.assert_no_pending_responses()


def build(version: str, compatible: list[str], default_for: str | None = None) -> dict[str, Any]:
    return {
        "addonVersion": version,
        "architecture": ["amd64", "arm64"],
        "compatibilities": [
            {"clusterVersion": v, "platformVersions": ["*"], "defaultVersion": v == default_for} for v in compatible
        ],
        "requiresConfiguration": False,
    }


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def answer_quotas_over_http(account: Account, answer: Callable[[dict[str, Any], int], tuple[int, dict[str, Any]]]) -> list[str]:
    """Serve GetServiceQuota through botocore's HTTP path (before-send), so retries happen as they would against AWS."""
    calls: list[str] = []

    def handler(request: Any, **_: Any) -> AWSResponse:
        params = json.loads(request.body or b"{}")
        calls.append(params["QuotaCode"])
        status, body = answer(params, len(calls))
        headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": f"req-{len(calls)}"}
        return AWSResponse(request.url, status, headers, _Body(json.dumps(body).encode()))

    account.clients["service-quotas"].meta.events.register_first("before-send.service-quotas.GetServiceQuota", handler)
    account.quotas_stubbed = False
    return calls


def quota_body(code: str) -> dict[str, Any]:
    return {"Quota": {"ServiceCode": "ec2", "QuotaCode": code, "QuotaName": QUOTA_NAMES[code], "Value": float(DEV_NEEDS[code])}}


THROTTLED = (400, {"__type": "TooManyRequestsException", "message": "Rate exceeded"})


def refuse_aws(region: str) -> AwsApi:
    raise AssertionError("preflight must not call AWS for an invalid stack file")
