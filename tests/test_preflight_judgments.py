"""tools/preflight's judgments, without AWS: which quota a type draws on, the sums, zones, versions, region, the table."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from preflight_account import (
    REGION,
    TODAY,
    VERSION,
    dev_stack,
)

import versions
from config import load_stack_config
from tools.preflight import eks, offerings, quotas, report, run
from tools.preflight.report import Check


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
    quota = quotas.quota_for(instance_type, capacity)
    assert (quota.code if quota else None) == code


def platform(**changes: Any) -> Any:
    raw = dev_stack()["simfleet:platform"]
    for key, value in changes.items():
        raw["nodeGroups"][key].update(value)
    return load_stack_config(raw, [], stack="dev", source="test", today=TODAY).platform


def test_quota_needs_sum_max_size_times_vcpus_per_capacity_type() -> None:
    demands = quotas.node_group_demands(platform(gpu={"capacity": "spot", "maxSize": 10}, system={"maxSize": 5}))
    assert [(d.group, d.capacity, d.max_vcpus) for d in demands] == [("system", "onDemand", 10), ("gpu-spot", "spot", 80)]
    needs, unknown = quotas.quota_needs(demands)
    assert [(n.quota.code, n.vcpus) for n in needs] == [("L-1216C47A", 10), ("L-3819A6DF", 80)]
    assert unknown == []


def test_a_group_whose_types_span_two_quotas_counts_against_both() -> None:
    demand = quotas.NodeGroupDemand("gpu-on-demand", "onDemand", ("g5.48xlarge", "p4d.24xlarge"), 2, 96)
    needs, _ = quotas.quota_needs([demand])
    assert [(n.quota.code, n.vcpus) for n in needs] == [("L-DB2E81BA", 192), ("L-417A185B", 192)]
    _, unknown = quotas.quota_needs([quotas.NodeGroupDemand("gpu-spot", "spot", ("p6-b200.48xlarge",), 1, 192)])
    assert [c.status for c in unknown] == ["warn"]


def test_preflight_checks_every_addon_the_program_may_install() -> None:
    from components.addons import MANAGED_ADDON_CONFIG
    from components.pod_network import VPC_CNI
    from components.shared_storage import EFS_CSI_ADDON

    # Every add-on a component installs has a pin for each minor, and the preflight checks every pin of the version.
    installed = {*MANAGED_ADDON_CONFIG, VPC_CNI, EFS_CSI_ADDON}
    for minor, pins in versions.EKS_ADDON_PINS.items():
        assert installed <= set(pins), minor


def test_zones_are_the_first_n_by_name_as_the_network_picks_them() -> None:
    from components.network import first_zones

    zones = ["us-east-1f", "us-east-1b", "us-east-1a", "us-east-1c"]
    chosen, check = offerings.zone_check(zones, 3)
    assert chosen == first_zones(sorted(zones), 3, REGION) == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert check.status == "ok"
    _, short = offerings.zone_check(zones[:1], 2)
    assert short.status == "fail" and short.found == "the region has only 1: us-east-1f"


def test_a_version_near_its_end_warns_and_an_unlisted_one_fails() -> None:
    row = {
        "clusterVersion": VERSION,
        "versionStatus": "STANDARD_SUPPORT",
        "endOfStandardSupportDate": datetime.datetime(2027, 3, 27),
    }
    near = eks.version_checks(VERSION, [row], datetime.date(2027, 2, 1))
    assert near[0].status == "warn" and "54 days left" in near[0].found
    missing = eks.version_checks(VERSION, [{**row, "clusterVersion": "1.36"}], TODAY)
    assert [c.status for c in missing] == ["fail"] and missing[0].found == f"EKS does not list {VERSION} here; it lists 1.36"
    # The deprecated `status` field still counts when versionStatus is absent.
    legacy = eks.version_checks(VERSION, [{"clusterVersion": VERSION, "status": "extended-support"}], TODAY)
    assert legacy[0].status == "fail" and legacy[0].found.startswith("EXTENDED_SUPPORT")


def test_region_from_the_shell_that_differs_warns() -> None:
    assert run.region_check(REGION, {"AWS_REGION": REGION}).status == "ok"
    check = run.region_check(REGION, {"AWS_DEFAULT_REGION": "eu-west-1"})
    assert check.status == "warn" and "AWS_DEFAULT_REGION=eu-west-1 in this shell is ignored" in check.found


def test_the_table_wraps_long_cells_and_keeps_the_ok_column() -> None:
    checks = [Check("a" * 80, "wanted", "found " * 30, "fail"), Check("short", "w", "f", "ok")]
    lines = report.format_table(checks).splitlines()
    assert lines[0].split() == ["check", "wanted", "found", "ok"]
    assert lines[2].endswith("FAIL") and lines[-1].endswith("ok")
    assert all(len(line) <= sum(report.WIDTHS) + 2 * 3 + 4 for line in lines)
