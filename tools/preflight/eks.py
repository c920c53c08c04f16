"""EKS: the stack's Kubernetes version in standard support (on versions.py's dates), and each pinned add-on build offered
for it (or the build to pin instead)."""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from typing import Any

import versions
from tools.preflight.report import Check


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


def _build_key(build: str) -> tuple[int, ...]:
    # v1.22.4-eksbuild.3 -> (1, 22, 4, 3); anything else sorts first.
    numbers = re.findall(r"\d+", build)
    return tuple(int(n) for n in numbers) if re.match(r"^v\d+\.\d+\.\d+-eksbuild\.\d+$", build) else (-1,)


def build_to_pin(version: str, builds: Sequence[Mapping[str, Any]]) -> str | None:
    """The newest build EKS offers for `version` (what versions.EKS_ADDON_PINS should say), or None when there is none."""
    compatible = [str(b.get("addonVersion")) for b in builds if version in _cluster_versions(b)]
    return max(compatible, key=_build_key) if compatible else None


def addon_check(addon: str, pin: str, version: str, builds: Sequence[Mapping[str, Any]]) -> Check:
    """A pinned EKS add-on build per DescribeAddonVersions: it exists and lists `version` in its compatibilities. When it
    does not, the row names the build to pin instead: the newest EKS offers for `version`."""
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
    newest = build_to_pin(version, builds)
    fix = (
        f"; pin {newest} (the newest EKS offers for {version}) in versions.EKS_ADDON_PINS['{version}']['{addon}']"
        if newest
        else f"; EKS offers no {addon} build for {version}"
    )
    build = next((b for b in builds if b.get("addonVersion") == pin), None)
    if build is None:
        count = sum(1 for b in builds if version in _cluster_versions(b))
        return Check(label, wanted, f"EKS offers no build {pin} ({count} builds for {version}{hint}){fix}", "fail")
    compatible = _cluster_versions(build)
    if version not in compatible:
        listed = ", ".join(sorted(set(compatible), key=_minor_key)) or "no version"
        return Check(label, wanted, f"exists, but for {listed} only{hint}{fix}", "fail")
    found = "offered" + (" (EKS's default)" if default == pin else hint)
    if f"{addon} {pin}" in versions.unconfirmed_pins(version):
        found += "; versions.py marks it unconfirmed, AWS confirms it"
    return Check(label, wanted, found, "ok")
