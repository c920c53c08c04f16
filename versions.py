"""Every version simfleet pins: the EKS release calendar, EKS add-ons and Helm charts, each with its source."""

from __future__ import annotations

import datetime
from dataclasses import dataclass


@dataclass(frozen=True)
class EksRelease:
    """One row of the Amazon EKS Kubernetes release calendar."""

    version: str
    eks_release: datetime.date
    end_of_standard: datetime.date
    end_of_extended: datetime.date
    source: str


_D = datetime.date

# Amazon EKS Kubernetes release calendar, as recorded on 2026-11-23.
# Rows up to 1.34: AWS EKS user guide, "Kubernetes release calendar"
#   (awsdocs/amazon-eks-user-guide latest/ug/versioning/kubernetes-versions.adoc).
# 1.35: not yet in the stored AWS page; endoflife.date/amazon-eks and the aws-samples EKS
#   operation-review lifecycle table (verified 2026-04-24) agree on the dates below.
# 1.36: EKS release and end of standard support from one third-party post; end of extended
#   support is the EKS rule (standard + 12 months). Treat 1.36 as provisional.
# Refresh with: aws eks describe-cluster-versions --query 'clusterVersions[].[clusterVersion,endOfStandardSupportDate]'
EKS_RELEASES: dict[str, EksRelease] = {
    r.version: r
    for r in (
        EksRelease("1.30", _D(2024, 5, 23), _D(2025, 7, 23), _D(2026, 7, 23), "AWS EKS user guide"),
        EksRelease("1.31", _D(2024, 9, 26), _D(2025, 11, 26), _D(2026, 11, 26), "AWS EKS user guide"),
        EksRelease("1.32", _D(2025, 1, 23), _D(2026, 3, 23), _D(2027, 3, 23), "AWS EKS user guide"),
        EksRelease("1.33", _D(2025, 5, 29), _D(2026, 7, 29), _D(2027, 7, 29), "AWS EKS user guide"),
        EksRelease("1.34", _D(2025, 10, 2), _D(2026, 12, 2), _D(2027, 12, 2), "AWS EKS user guide"),
        EksRelease("1.35", _D(2026, 1, 27), _D(2027, 3, 27), _D(2028, 3, 27), "endoflife.date; aws-samples lifecycle table"),
        EksRelease("1.36", _D(2026, 6, 2), _D(2027, 8, 2), _D(2028, 8, 2), "third-party post; extended date by EKS rule"),
    )
}

# A version this close to its end of standard support still plans, with a warning.
SUPPORT_WARNING_DAYS = 60


# EKS managed add-ons for Kubernetes 1.35. Each is `aws eks describe-addon-versions` material;
# run `aws eks describe-addon-versions --kubernetes-version 1.35 --addon-name <name>` before
# changing KUBERNETES_VERSION, because builds are per Kubernetes minor.
EKS_ADDON_VERSIONS: dict[str, str] = {
    # AWS EKS user guide, managing-kube-proxy: 1.35 -> v1.35.3-eksbuild.13.
    "kube-proxy": "v1.35.3-eksbuild.13",
    # AWS EKS user guide, managing-coredns: newest listed build (for 1.33/1.34); not yet listed for 1.35.
    "coredns": "v1.12.4-eksbuild.1",
    # AWS EKS user guide, managing-vpc-cni: v1.20.1-eksbuild.3. Network policy needs >= v1.14.0-eksbuild.3.
    "vpc-cni": "v1.20.1-eksbuild.3",
    # aws/eks-hybrid PR #763 (2025-10-02): newest build found in public sources.
    "eks-pod-identity-agent": "v1.3.9-eksbuild.1",
}


@dataclass(frozen=True)
class HelmChart:
    """A Helm chart pinned to one version in one repository."""

    repository: str
    chart: str
    version: str
    source: str


HELM_CHARTS: dict[str, HelmChart] = {}  # filled by the add-ons research below


def eks_release(version: str) -> EksRelease | None:
    return EKS_RELEASES.get(version)
