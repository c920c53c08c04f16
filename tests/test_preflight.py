"""tools/preflight.py: what it checks from a stack, how it judges AWS's answers, and what it does when AWS says no.

STS and EC2 are moto (it implements GetCallerIdentity, DescribeAvailabilityZones and DescribeInstanceTypeOfferings);
Service Quotas and EKS are botocore Stubbers (moto 5.2.5 implements Service Quotas for the vpc service only, and
neither DescribeClusterVersions nor DescribeAddonVersions), which check every request against the service model.
Throttling is answered over botocore's own HTTP path (a before-send hook), so the standard retry mode really retries.
Nothing leaves the process; the subprocess tests point every endpoint at 127.0.0.1.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.retries.standard
import pytest
import yaml
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from moto import mock_aws

import versions
from config import load_stack_config
from tools import preflight
from tools.preflight import AwsApi, Check

ROOT = Path(__file__).resolve().parent.parent
TODAY = datetime.date(2026, 11, 30)
REGION = "us-east-1"
VERSION = "1.35"
# What the dev sample's node groups ask for at maxSize: system 3 x t3.medium (2 vCPU); each GPU group 4 x 8 vCPU.
DEV_NEEDS = {"L-1216C47A": 6, "L-3819A6DF": 32, "L-DB2E81BA": 32}
QUOTA_NAMES = {q.code: q.name for q in (preflight.STANDARD_ON_DEMAND, preflight.G_SPOT, preflight.G_ON_DEMAND)}


def dev_stack() -> dict[str, Any]:
    """Pulumi.dev.yaml's config with a real public CIDR instead of the placeholder and no runs."""
    config = copy.deepcopy(yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"])
    config["simfleet:platform"]["endpoint"]["publicAccessCidrs"] = ["52.94.0.0/22"]
    config["simfleet:runs"] = []
    return config


def write_stack(tmp_path: Path, config: dict[str, Any], name: str = "Pulumi.dev.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"config": config}))
    return path


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # Standard mode waits up to 1, 2, 4, 8 s between throttled attempts; the attempts, not the waits, are under test.
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


class Account:
    """A fake AWS account: moto behind STS and EC2, Stubbers in front of Service Quotas and EKS."""

    def __init__(self) -> None:
        session = boto3.session.Session(region_name=REGION)
        self.clients = {
            service: session.client(service, region_name=REGION, config=preflight.BOTO_CONFIG) for service in preflight.SERVICES
        }
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
        for addon in versions.MANAGED_ADDONS:
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


@pytest.fixture
def account() -> Iterator[Account]:
    with mock_aws():
        yield Account()


def run(
    account: Account, tmp_path: Path, config: dict[str, Any] | None = None, argv: list[str] | None = None
) -> tuple[int, dict[str, Any]]:
    path = write_stack(tmp_path, config or dev_stack())
    account.activate()
    code = preflight.main(["--config", str(path), *(argv or [])], aws=account.api, today=TODAY, out_dir=tmp_path / "out")
    report = json.loads((tmp_path / "out" / "dev.json").read_text()) if (tmp_path / "out" / "dev.json").exists() else {}
    return code, report


def by_check(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["check"]: c for c in report["checks"]}


def failed(report: dict[str, Any]) -> list[str]:
    return [c["check"] for c in report["checks"] if c["status"] == "fail"]


# ---------------------------------------------------------------------------------------------
# Whole runs against the fake account
# ---------------------------------------------------------------------------------------------


def test_everything_passes_table_and_json(account: Account, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    account.stub_all()
    code, report = run(account, tmp_path)
    out = capsys.readouterr().out
    assert code == 0, out
    assert report["ok"] is True and report["exitCode"] == 0
    assert report["account"] == "123456789012" and report["arn"].startswith("arn:aws:")
    assert report["region"] == REGION and report["stack"] == "dev"
    checks = by_check(report)
    assert {c["status"] for c in report["checks"]} == {"ok"}, report["checks"]
    assert checks["quota L-DB2E81BA Running On-Demand G and VT instances"]["wanted"].startswith(">= 32 vCPU: gpu-on-demand 4 x 8")
    assert checks["quota L-3819A6DF All G and VT Spot Instance Requests"]["wanted"].startswith(">= 32 vCPU: gpu-spot 4 x 8")
    assert checks["quota L-1216C47A Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"]["wanted"].startswith(
        ">= 6 vCPU: system 3 x 2 (t3.medium)"
    )
    assert checks[f"EKS {VERSION} support"]["found"] == "STANDARD_SUPPORT until 2027-03-27"
    assert checks[f"EKS {VERSION} end of standard support"]["status"] == "ok"
    assert (
        "versions.py marks it unconfirmed, AWS confirms it"
        in checks[f"add-on vpc-cni {versions.addon_version(VERSION, 'vpc-cni')}"]["found"]
    )
    assert checks["availability zones"]["found"].startswith("us-east-1a, us-east-1b: the first 2 of 6")
    assert checks["g5.2xlarge in the AZs (gpu-spot, gpu-on-demand)"]["found"] == "offered in all 2"
    assert checks["t3.medium in the AZs (system)"]["status"] == "ok"
    # The table: a header with the four columns, one row per check, and the summary line.
    assert out.splitlines()[1].split() == ["check", "wanted", "found", "ok"]
    assert "preflight dev (us-east-1, account 123456789012): 14 checks, 14 ok, 0 warnings, 0 failed" in out
    account.assert_all_answered()


def test_a_quota_too_low_fails_with_the_numbers(account: Account, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    account.stub_quotas({"L-DB2E81BA": 16.0, "L-1216C47A": 5.0})
    account.stub_versions()
    account.stub_addons()
    code, report = run(account, tmp_path)
    assert code == 1
    checks = by_check(report)
    gpu = checks["quota L-DB2E81BA Running On-Demand G and VT instances"]
    assert gpu["status"] == "fail" and gpu["found"] == "16 vCPU: 16 short; request L-DB2E81BA >= 32 in Service Quotas"
    standard = checks["quota L-1216C47A Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"]
    assert standard["status"] == "fail" and standard["found"].startswith("5 vCPU: 1 short")
    assert len(failed(report)) == 2
    assert "FAIL" in capsys.readouterr().out


def test_an_addon_build_not_offered_for_the_version_fails(account: Account, tmp_path: Path) -> None:
    coredns = versions.addon_version(VERSION, "coredns")
    kube_proxy = versions.addon_version(VERSION, "kube-proxy")
    account.stub_quotas()
    account.stub_versions()
    account.stub_addons(
        {
            # The pinned build exists but EKS lists it for older minors only.
            "coredns": [build(coredns, ["1.33", "1.34"]), build("v1.14.9-eksbuild.1", [VERSION], default_for=VERSION)],
            # The pinned build does not exist at all.
            "kube-proxy": [build("v1.35.9-eksbuild.2", [VERSION], default_for=VERSION)],
        }
    )
    code, report = run(account, tmp_path)
    assert code == 1
    checks = by_check(report)
    assert checks[f"add-on coredns {coredns}"]["found"] == (
        f"exists, but for 1.33, 1.34 only; EKS's default for {VERSION} is v1.14.9-eksbuild.1"
    )
    assert checks[f"add-on kube-proxy {kube_proxy}"]["found"] == (
        f"EKS offers no build {kube_proxy} (1 builds for {VERSION}; EKS's default for {VERSION} is v1.35.9-eksbuild.2)"
    )
    assert sorted(failed(report)) == [f"add-on coredns {coredns}", f"add-on kube-proxy {kube_proxy}"]


def test_a_version_out_of_standard_support_per_aws_fails(account: Account, tmp_path: Path) -> None:
    account.stub_quotas()
    account.stub_versions(status="EXTENDED_SUPPORT", end=datetime.date(2026, 11, 1))
    account.stub_addons()
    code, report = run(account, tmp_path)
    assert code == 1
    checks = by_check(report)
    support = checks[f"EKS {VERSION} support"]
    assert support["status"] == "fail" and support["found"].startswith("EXTENDED_SUPPORT until 2026-11-01")
    # AWS's date disagrees with versions.py's calendar: a warning that names both dates, not a second failure.
    dates = checks[f"EKS {VERSION} end of standard support"]
    assert dates["status"] == "warn"
    assert dates["wanted"] == "2027-03-27 (versions.EKS_RELEASES)" and dates["found"].startswith("2026-11-01 per AWS")
    assert failed(report) == [f"EKS {VERSION} support"]


def test_an_instance_type_missing_in_a_chosen_az_fails(account: Account, tmp_path: Path) -> None:
    # moto's us-east-1 offerings lack g5.2xlarge, g6.2xlarge and t3.medium in us-east-1e; five AZs take a to e.
    offered = account.clients["ec2"].describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": ["g5.2xlarge"]}]
    )["InstanceTypeOfferings"]
    assert "us-east-1e" not in {o["Location"] for o in offered} and len(offered) == 5, "moto's offering data changed"
    config = dev_stack()
    config["simfleet:platform"]["network"]["availabilityZones"] = 5
    account.stub_all()
    code, report = run(account, tmp_path, config)
    assert code == 1
    checks = by_check(report)
    assert checks["availability zones"]["found"].startswith("us-east-1a, us-east-1b, us-east-1c, us-east-1d, us-east-1e")
    g5 = checks["g5.2xlarge in the AZs (gpu-spot, gpu-on-demand)"]
    assert g5["status"] == "fail"
    assert g5["found"].startswith("missing in us-east-1e; offered in 5 of 6 AZs (us-east-1a, us-east-1b, us-east-1c")
    assert "network.py takes the first 5 AZs by name, so it would still use us-east-1e" in g5["found"]
    assert sorted(failed(report)) == sorted(
        [
            "g5.2xlarge in the AZs (gpu-spot, gpu-on-demand)",
            "g6.2xlarge in the AZs (gpu-spot, gpu-on-demand)",
            "t3.medium in the AZs (system)",
        ]
    )


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


def test_throttling_that_stops_is_retried_and_passes(account: Account, tmp_path: Path) -> None:
    # The first two calls are throttled, then Service Quotas answers.
    calls = answer_quotas_over_http(account, lambda params, n: THROTTLED if n <= 2 else (200, quota_body(params["QuotaCode"])))
    account.stub_versions()
    account.stub_addons()
    code, report = run(account, tmp_path)
    assert code == 0, report["checks"]
    assert calls == ["L-1216C47A", "L-1216C47A", "L-1216C47A", "L-3819A6DF", "L-DB2E81BA"]
    assert by_check(report)["quota L-1216C47A Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"]["status"] == "ok"


def test_throttling_that_never_stops_fails_those_checks_and_the_rest_still_run(account: Account, tmp_path: Path) -> None:
    calls = answer_quotas_over_http(account, lambda params, n: THROTTLED)
    account.stub_versions()
    account.stub_addons()
    code, report = run(account, tmp_path)
    assert code == 1
    attempts = preflight.RETRY_ATTEMPTS + 1
    assert calls == [code for code in DEV_NEEDS for _ in range(attempts)]
    quota_checks = [c for c in report["checks"] if c["check"].startswith("quota ")]
    assert len(quota_checks) == 3
    for check in quota_checks:
        assert check["status"] == "fail"
        assert check["found"] == (
            f"TooManyRequestsException: still throttled after {attempts} attempts at servicequotas:GetServiceQuota; "
            "run preflight again later"
        )
    assert [c["status"] for c in report["checks"] if not c["check"].startswith("quota ")] == ["ok"] * 11
    account.assert_all_answered()


@pytest.mark.parametrize("where", ["quota", "addon"])
def test_access_denied_on_one_call_fails_that_check_only(account: Account, tmp_path: Path, where: str) -> None:
    coredns = versions.addon_version(VERSION, "coredns")
    if where == "quota":
        account.stub_quotas(
            instead={
                "L-1216C47A": lambda stubber: stubber.add_client_error(
                    "get_service_quota",
                    service_error_code="AccessDeniedException",
                    service_message="User is not authorized to perform: servicequotas:GetServiceQuota",
                    http_status_code=400,
                    expected_params={"ServiceCode": "ec2", "QuotaCode": "L-1216C47A"},
                )
            }
        )
        account.stub_versions()
        account.stub_addons()
        label = "quota L-1216C47A Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"
        reason = "AccessDeniedException: your identity needs servicequotas:GetServiceQuota"
    else:
        account.stub_quotas()
        account.stub_versions()
        for addon in versions.MANAGED_ADDONS:
            if addon == "coredns":
                account.eks.add_client_error(
                    "describe_addon_versions", service_error_code="AccessDeniedException", http_status_code=403
                )
            else:
                pin = versions.addon_version(VERSION, addon)
                account.eks.add_response(
                    "describe_addon_versions",
                    {"addons": [{"addonName": addon, "addonVersions": [build(pin, [VERSION])]}]},
                    {"addonName": addon},
                )
        label = f"add-on coredns {coredns}"
        reason = "AccessDeniedException: your identity needs eks:DescribeAddonVersions"
    code, report = run(account, tmp_path)
    assert code == 1
    assert failed(report) == [label]
    assert by_check(report)[label]["found"] == reason
    account.assert_all_answered()


def test_quota_without_an_applied_value_falls_back_to_the_aws_default(account: Account, tmp_path: Path) -> None:
    def no_applied_value(stubber: Stubber) -> None:
        stubber.add_client_error("get_service_quota", service_error_code="NoSuchResourceException", http_status_code=400)
        stubber.add_response(
            "get_aws_default_service_quota",
            {"Quota": {"ServiceCode": "ec2", "QuotaCode": "L-1216C47A", "Value": 5.0}},
            {"ServiceCode": "ec2", "QuotaCode": "L-1216C47A"},
        )

    account.stub_quotas(instead={"L-1216C47A": no_applied_value})
    account.stub_versions()
    account.stub_addons()
    code, report = run(account, tmp_path)
    assert code == 1
    check = by_check(report)["quota L-1216C47A Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"]
    assert check["found"] == "5 vCPU (the AWS default: no applied value): 1 short; request L-1216C47A >= 6 in Service Quotas"


def test_credentials_aws_rejects_stop_with_exit_2_and_one_line(
    account: Account, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    account.sts = Stubber(account.clients["sts"])
    account.sts.add_client_error(
        "get_caller_identity",
        service_error_code="ExpiredToken",
        service_message="The security token included in the request is expired",
        http_status_code=403,
    )
    code, report = run(account, tmp_path)
    err = capsys.readouterr().err
    assert code == 2 and report == {}
    assert err == "preflight: AWS rejected the credentials: ExpiredToken: The security token included in the request is expired\n"


# ---------------------------------------------------------------------------------------------
# Exit code 2 before any AWS call: no credentials, bad stack files
# ---------------------------------------------------------------------------------------------


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """No credentials anywhere botocore looks, and every endpoint on a closed local port, should anything try."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.preflight", "--out", str(tmp_path / "out"), *args],
        cwd=ROOT,
        env=isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_no_credentials_exit_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "--stack", "prod")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("preflight: no usable AWS credentials (Unable to locate credentials)")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_malformed_stack_file_exits_2_with_the_config_error(tmp_path: Path) -> None:
    config = dev_stack()
    config["simfleet:platform"]["network"]["cidr"] = "8.8.0.0/16"
    config["simfleet:platform"]["nodeGroups"]["gpu"]["maxSise"] = 4
    path = write_stack(tmp_path, config, "Pulumi.broken.yaml")
    done = run_cli(tmp_path, "--config", str(path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.startswith(f"{path}: 2 errors in the stack config\n")
    assert "  - platform.network.cidr: 8.8.0.0/16 is not a private (RFC 1918) range" in done.stderr
    assert "  - platform.nodeGroups.gpu.maxSise: unknown key; did you mean 'maxSize'?" in done.stderr


def refuse_aws(region: str) -> AwsApi:
    raise AssertionError("preflight must not call AWS for an invalid stack file")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("config: [not, a, mapping]\n", "has no 'config:' mapping"),
        ("config: {simfleet:platform: {kubernetesVersion: '1.35'\n", "not valid YAML"),
    ],
)
def test_unreadable_stack_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(content)
    assert preflight.main(["--config", str(path)], aws=refuse_aws, today=TODAY, out_dir=tmp_path) == 2
    assert message in capsys.readouterr().err


def test_a_stack_without_a_region_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = dev_stack()
    del config["aws:region"]
    path = write_stack(tmp_path, config)
    assert preflight.main(["--config", str(path)], aws=refuse_aws, today=TODAY, out_dir=tmp_path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "aws:region is not set" in err


def test_placeholders_are_refused_as_pulumi_up_refuses_them_unless_allowed(
    account: Account, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = ROOT / "Pulumi.dev.yaml"  # its CIDRs are documentation-range placeholders
    assert preflight.main(["--config", str(sample)], aws=refuse_aws, today=TODAY, out_dir=tmp_path) == 2
    assert "is a placeholder" in capsys.readouterr().err
    account.stub_all()
    account.activate()
    code = preflight.main(["--config", str(sample), "--allow-placeholders"], aws=account.api, today=TODAY, out_dir=tmp_path)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "warning (stack file): platform.endpoint.publicAccessCidrs[0]" in out
    assert json.loads((tmp_path / "dev.json").read_text())["configWarnings"]


# ---------------------------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instance_type", "capacity", "code"),
    [
        ("g5.2xlarge", "onDemand", "L-DB2E81BA"),
        ("g6e.xlarge", "spot", "L-3819A6DF"),
        ("vt1.3xlarge", "spot", "L-3819A6DF"),
        ("p4d.24xlarge", "onDemand", "L-417A185B"),
        ("p3.2xlarge", "spot", "L-7212CCBC"),
        ("p5.48xlarge", "spot", "L-C4BD4855"),
        ("p5en.48xlarge", "spot", "L-C4BD4855"),
        ("p6-b200.48xlarge", "spot", None),
        ("t3.medium", "onDemand", "L-1216C47A"),
        ("m6i.large", "spot", "L-34B43A08"),
        ("trn1.2xlarge", "onDemand", None),
        ("inf2.xlarge", "onDemand", None),
        ("dl1.24xlarge", "onDemand", None),
        ("x2idn.16xlarge", "onDemand", None),
    ],
)
def test_quota_for_each_instance_class(instance_type: str, capacity: str, code: str | None) -> None:
    quota = preflight.quota_for(instance_type, capacity)
    assert (quota.code if quota else None) == code


def platform(**changes: Any) -> Any:
    raw = dev_stack()["simfleet:platform"]
    for key, value in changes.items():
        raw["nodeGroups"][key].update(value)
    return load_stack_config(raw, [], stack="dev", source="test", today=TODAY).platform


def test_quota_needs_sum_max_size_times_vcpus_per_capacity_type() -> None:
    demands = preflight.node_group_demands(platform(gpu={"capacity": "spot", "maxSize": 10}, system={"maxSize": 5}))
    assert [(d.group, d.capacity, d.max_vcpus) for d in demands] == [("system", "onDemand", 10), ("gpu-spot", "spot", 80)]
    needs, unknown = preflight.quota_needs(demands)
    assert [(n.quota.code, n.vcpus) for n in needs] == [("L-1216C47A", 10), ("L-3819A6DF", 80)]
    assert unknown == []


def test_a_group_whose_types_span_two_quotas_counts_against_both() -> None:
    demand = preflight.NodeGroupDemand("gpu-on-demand", "onDemand", ("g5.48xlarge", "p4d.24xlarge"), 2, 96)
    needs, _ = preflight.quota_needs([demand])
    assert [(n.quota.code, n.vcpus) for n in needs] == [("L-DB2E81BA", 192), ("L-417A185B", 192)]
    _, unknown = preflight.quota_needs([preflight.NodeGroupDemand("gpu-spot", "spot", ("p6-b200.48xlarge",), 1, 192)])
    assert [c.status for c in unknown] == ["warn"]


def test_preflight_checks_the_addons_the_program_installs() -> None:
    from components.addons import MANAGED_ADDON_CONFIG

    assert set(versions.MANAGED_ADDONS) == set(MANAGED_ADDON_CONFIG)


def test_zones_are_the_first_n_by_name_as_the_network_picks_them() -> None:
    from components.network import first_zones

    zones = ["us-east-1f", "us-east-1b", "us-east-1a", "us-east-1c"]
    chosen, check = preflight.zone_check(zones, 3)
    assert chosen == first_zones(sorted(zones), 3, REGION) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert check.status == "ok"
    _, short = preflight.zone_check(zones[:1], 2)
    assert short.status == "fail" and short.found == "the region has only 1: us-east-1f"


def test_a_version_near_its_end_warns_and_an_unlisted_one_fails() -> None:
    row = {
        "clusterVersion": VERSION,
        "versionStatus": "STANDARD_SUPPORT",
        "endOfStandardSupportDate": datetime.datetime(2027, 3, 27),
    }
    near = preflight.version_checks(VERSION, [row], datetime.date(2027, 2, 1))
    assert near[0].status == "warn" and "54 days left" in near[0].found
    missing = preflight.version_checks(VERSION, [{**row, "clusterVersion": "1.36"}], TODAY)
    assert [c.status for c in missing] == ["fail"] and missing[0].found == f"EKS does not list {VERSION} here; it lists 1.36"
    # The deprecated `status` field still counts when versionStatus is absent.
    legacy = preflight.version_checks(VERSION, [{"clusterVersion": VERSION, "status": "extended-support"}], TODAY)
    assert legacy[0].status == "fail" and legacy[0].found.startswith("EXTENDED_SUPPORT")


def test_region_from_the_shell_that_differs_warns() -> None:
    assert preflight.region_check(REGION, {"AWS_REGION": REGION}).status == "ok"
    check = preflight.region_check(REGION, {"AWS_DEFAULT_REGION": "eu-west-1"})
    assert check.status == "warn" and "AWS_DEFAULT_REGION=eu-west-1 in this shell is ignored" in check.found


def test_the_table_wraps_long_cells_and_keeps_the_ok_column() -> None:
    checks = [Check("a" * 80, "wanted", "found " * 30, "fail"), Check("short", "w", "f", "ok")]
    lines = preflight.format_table(checks).splitlines()
    assert lines[0].split() == ["check", "wanted", "found", "ok"]
    assert lines[2].endswith("FAIL") and lines[-1].endswith("ok")
    assert all(len(line) <= sum(preflight.WIDTHS) + 2 * 3 + 4 for line in lines)
