"""tools/preflight: whole runs against a fake AWS account (tests/preflight_account.py): what each check finds, and
what preflight does when AWS throttles, denies a call or rejects the credentials. Nothing leaves the process.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.retries.standard
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from preflight_account import (
    ACCOUNT,
    DEPLOY_ROLE,
    DEV_NEEDS,
    REGION,
    ROOT,
    THROTTLED,
    TODAY,
    VERSION,
    Account,
    answer_quotas_over_http,
    build,
    dev_stack,
    quota_body,
    refuse_aws,
    write_stack,
)

import versions
from tools.preflight import aws, cli


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    # moto builds its ~1,000 Amazon images for each EC2 backend it makes and again when the mock ends (a third of these
    # tests' CPU); preflight reads no image (instance offerings, quotas, EKS versions and builds), so the account has none.
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # Standard mode waits up to 1, 2, 4, 8 s between throttled attempts; the attempts, not the waits, are under test.
    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


@pytest.fixture
def account() -> Iterator[Account]:
    with mock_aws():
        yield Account()


def run(
    account: Account, tmp_path: Path, config: dict[str, Any] | None = None, argv: list[str] | None = None
) -> tuple[int, dict[str, Any]]:
    path = write_stack(tmp_path, config or dev_stack())
    account.activate()
    code = cli.main(["--config", str(path), *(argv or [])], aws=account.api, today=TODAY, out_dir=tmp_path / "out")
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
    assert report["account"] == ACCOUNT and report["arn"] == f"arn:aws:sts::{ACCOUNT}:user/moto"
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
        not in checks[f"add-on vpc-cni {versions.addon_version(VERSION, 'vpc-cni')}"]["found"]
    )
    # Every pinned add-on is checked, the optional EFS CSI driver and the observability add-on too.
    assert {c for c in checks if c.startswith("add-on ")} == {
        f"add-on {addon} {pin.version}" for addon, pin in versions.EKS_ADDON_PINS[VERSION].items()
    }
    assert checks["cluster access"]["found"] == f"{DEPLOY_ROLE} is listed"
    assert checks["availability zones"]["found"].startswith("us-east-1a, us-east-1b: the first 2 of 6")
    assert checks["g5.2xlarge in the AZs (gpu-spot, gpu-on-demand)"]["found"] == "offered in all 2"
    assert checks["t3.medium in the AZs (system)"]["status"] == "ok"
    # The table: a header with the four columns, one row per check, and the summary line.
    assert out.splitlines()[1].split() == ["check", "wanted", "found", "ok"]
    assert f"preflight dev (us-east-1, account {ACCOUNT}): 17 checks, 17 ok, 0 warnings, 0 failed" in out
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
    # Each row names the build to pin instead: the newest EKS offers for the stack's version.
    assert checks[f"add-on coredns {coredns}"]["found"] == (
        f"exists, but for 1.33, 1.34 only; EKS's default for {VERSION} is v1.14.9-eksbuild.1; pin v1.14.9-eksbuild.1 "
        f"(the newest EKS offers for {VERSION}) in versions.EKS_ADDON_PINS['{VERSION}']['coredns']"
    )
    assert checks[f"add-on kube-proxy {kube_proxy}"]["found"] == (
        f"EKS offers no build {kube_proxy} (1 builds for {VERSION}; EKS's default for {VERSION} is v1.35.9-eksbuild.2); "
        f"pin v1.35.9-eksbuild.2 (the newest EKS offers for {VERSION}) in versions.EKS_ADDON_PINS['{VERSION}']['kube-proxy']"
    )
    assert sorted(failed(report)) == [f"add-on coredns {coredns}", f"add-on kube-proxy {kube_proxy}"]


def test_an_optional_addon_pin_is_checked_and_the_newest_build_for_the_version_is_named(account: Account, tmp_path: Path) -> None:
    # The EFS CSI driver, installed only with shared storage, is checked like the others: EKS lists the pinned build
    # for older minors only, and offers two for the stack's version, the newer of which is not its default.
    efs = versions.addon_version(VERSION, "aws-efs-csi-driver")
    account.stub_quotas()
    account.stub_versions()
    account.stub_addons(
        {
            "aws-efs-csi-driver": [
                build(efs, ["1.33", "1.34"]),
                build("v3.5.2-eksbuild.1", [VERSION]),
                build("v3.5.0-eksbuild.4", [VERSION], default_for=VERSION),
                build("v3.10.0-eksbuild.1", ["1.36"]),
            ]
        }
    )
    code, report = run(account, tmp_path)
    assert code == 1 and failed(report) == [f"add-on aws-efs-csi-driver {efs}"]
    found = by_check(report)[f"add-on aws-efs-csi-driver {efs}"]["found"]
    assert found.endswith(
        f"; pin v3.5.2-eksbuild.1 (the newest EKS offers for {VERSION}) in versions.EKS_ADDON_PINS['{VERSION}']['aws-efs-csi-driver']"
    )


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
    attempts = aws.RETRY_ATTEMPTS + 1
    assert calls == [code for code in DEV_NEEDS for _ in range(attempts)]
    quota_checks = [c for c in report["checks"] if c["check"].startswith("quota ")]
    assert len(quota_checks) == 3
    for check in quota_checks:
        assert check["status"] == "fail"
        assert check["found"] == (
            f"TooManyRequestsException: still throttled after {attempts} attempts at servicequotas:GetServiceQuota; "
            "run preflight again later"
        )
    assert [c["status"] for c in report["checks"] if not c["check"].startswith("quota ")] == ["ok"] * 14
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
        for addon in sorted(versions.EKS_ADDON_PINS[VERSION]):
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


def test_placeholders_are_refused_as_pulumi_up_refuses_them_unless_allowed(
    account: Account, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = ROOT / "Pulumi.dev.yaml"  # its CIDRs are documentation-range placeholders
    assert cli.main(["--config", str(sample)], aws=refuse_aws, today=TODAY, out_dir=tmp_path) == 2
    assert "is a placeholder" in capsys.readouterr().err
    account.stub_all()
    account.activate()
    code = cli.main(["--config", str(sample), "--allow-placeholders"], aws=account.api, today=TODAY, out_dir=tmp_path)
    out = capsys.readouterr().out
    assert code == 0, out
    # With the stack file's line, as every config message.
    assert re.search(r"warning \(stack file\): \S*Pulumi\.dev\.yaml:\d+: platform\.endpoint\.publicAccessCidrs\[0\]", out), out
    assert json.loads((tmp_path / "dev.json").read_text())["configWarnings"]
