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


# Helm charts installed by components/addons.py, keyed by release name. Researched 2026-11-23 from stored copies of
# the upstream repositories; "confirmed" = read upstream (the chart's own repo or its release PR), "best available" =
# two or more independent third-party pins. Before a bump: `helm search repo <repo>/<chart> --versions`.
HELM_CHARTS: dict[str, HelmChart] = {
    "nvidia-device-plugin": HelmChart(
        "https://nvidia.github.io/k8s-device-plugin",
        "nvidia-device-plugin",
        "0.20.0",
        # Best available: chart 0.20.0 pinned by NVIDIA/deepops#1382 (2026-08-27, 0.19.3 -> 0.20.0) and image
        # v0.20.0 by Siemens-Healthineers/K2s#2972. Upstream PR NVIDIA/k8s-device-plugin#2057 prepares 0.20.1.
        # Chart version == app version (deployments/helm/nvidia-device-plugin/Chart.yaml).
        "NVIDIA/deepops#1382; Siemens-Healthineers/K2s#2972",
    ),
    "cluster-autoscaler": HelmChart(
        "https://kubernetes.github.io/autoscaler",
        "cluster-autoscaler",
        "9.56.0",
        # Confirmed: kubernetes/autoscaler gh-pages index.yaml, 9.56.0 (2026-03-02) has appVersion 1.35.0.
        # The image tag is pinned separately per Kubernetes minor (CLUSTER_AUTOSCALER_IMAGE_TAGS).
        "kubernetes/autoscaler gh-pages index.yaml",
    ),
    "aws-load-balancer-controller": HelmChart(
        "https://aws.github.io/eks-charts",
        "aws-load-balancer-controller",
        "3.4.2",
        # Confirmed: aws/eks-charts#1347 "aws-load-balancer-controller v3.4.2 Automated Release" (merged
        # 2026-07-13). From 3.x chart version == app version. 3.5.0 is mentioned by third parties only.
        # The IAM policy in components/policies_lbc.py must match docs/install/iam_policy.json at tag v3.4.2.
        "aws/eks-charts#1347",
    ),
    "metrics-server": HelmChart(
        "https://kubernetes-sigs.github.io/metrics-server/",
        "metrics-server",
        "3.13.1",
        # Best available: entigolabs/entigo-infralib#1537 (2026-06-15, 3.13.0 -> 3.13.1, metrics-server 0.8.1);
        # the stored upstream gh-pages index is stale (3.8.1). 3.13.0 is confirmed by several repos.
        "entigolabs/entigo-infralib#1537",
    ),
    "aws-for-fluent-bit": HelmChart(
        "https://aws.github.io/eks-charts",
        "aws-for-fluent-bit",
        "0.2.1",
        # Confirmed: aws/eks-charts stable/aws-for-fluent-bit/Chart.yaml (version 0.2.1, appVersion 3.4.16).
        "aws/eks-charts stable/aws-for-fluent-bit/Chart.yaml",
    ),
}

# The Cluster Autoscaler's minor must equal the Kubernetes minor (cluster-autoscaler README: "versioning scheme
# ... match[es] Kubernetes minor releases exactly"), so its image tag is pinned per minor, not by the chart.
# 1.34 and 1.35: aws-ia/terraform-aws-eks-blueprints-addons#516 (2026-07-17, "per the autoscaler releases page").
# 1.36: best available, v1.36.1 seen in third-party pins only.
CLUSTER_AUTOSCALER_IMAGE = "registry.k8s.io/autoscaling/cluster-autoscaler"
CLUSTER_AUTOSCALER_IMAGE_TAGS: dict[str, str] = {
    "1.34": "v1.34.4",
    "1.35": "v1.35.1",
    "1.36": "v1.36.1",
}


def eks_release(version: str) -> EksRelease | None:
    return EKS_RELEASES.get(version)


def missing_pins(version: str) -> list[str]:
    """What versions.py lacks to deploy Kubernetes `version`; empty when every version-bound pin exists."""
    missing = []
    if version not in CLUSTER_AUTOSCALER_IMAGE_TAGS:
        missing.append("a Cluster Autoscaler image (CLUSTER_AUTOSCALER_IMAGE_TAGS)")
    if not EKS_ADDON_VERSIONS["kube-proxy"].startswith(f"v{version}."):
        missing.append(f"a kube-proxy add-on build for {version} (EKS_ADDON_VERSIONS)")
    return missing
