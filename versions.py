"""Every version simfleet pins (EKS calendar, EKS add-ons per Kubernetes minor, Helm charts, images), each with its source and the day it was checked."""

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
#   support is the EKS rule (standard + 12 months). Treat 1.36 as provisional. (Re-checked 2026-11-30: the
#   stored user-guide copies name 1.36 and list add-on builds for it, but their calendar table was not found.)
# Re-checked 2026-11-30: endoflife.date/amazon-eks lists 1.34 (standard support to 2026-12-02) and 1.35
#   (to 2027-03-27, extended to 2028-03-27) as above. 1.34 leaves standard support two days after that check,
#   so it is pinned too: config/ accepts only versions with a complete set of pins.
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


# The day every pin below was last checked against its source.
CHECKED = _D(2026, 11, 30)


@dataclass(frozen=True)
class Pin:
    """One pinned version, where it was read, and whether that source lists it for the Kubernetes minor it is used with."""

    version: str
    source: str
    checked: datetime.date = CHECKED
    # False: the source does not list this build for the minor it is pinned under (it is the newest build found
    # for an older minor). The config warns about it, so it is confirmed with `aws eks describe-addon-versions`
    # before a first `pulumi up` instead of surprising CreateAddon.
    confirmed: bool = True


# The EKS managed add-ons simfleet installs (components/addons.py), each pinned per Kubernetes minor: EKS builds
# are per minor, and CreateAddon rejects a build that is not offered for the cluster's version.
# The Pod Identity agent is not installed: every simfleet workload role is IRSA (components/irsa.py), so the
# agent would be one more DaemonSet pod on every node, GPU nodes included, that nothing uses.
MANAGED_ADDONS: tuple[str, ...] = ("vpc-cni", "coredns", "kube-proxy")
# Installed only when the stack turns on what needs them (components/shared_storage.py for the EFS CSI driver), but
# pinned for every minor all the same: a stack may turn them on at any time.
OPTIONAL_ADDONS: tuple[str, ...] = ("aws-efs-csi-driver", "amazon-cloudwatch-observability")
PINNED_ADDONS: tuple[str, ...] = MANAGED_ADDONS + OPTIONAL_ADDONS

# Sources (docs.aws.amazon.com, EKS user guide, the "<add-on> versions" table of each page; the newest stored
# copies are the ja_jp .md renderings, which carry rows up to 1.36, checked 2026-11-30):
_KUBE_PROXY_TABLE = "EKS user guide managing-kube-proxy.md, 'kube-proxy versions' table"
_COREDNS_TABLE = "EKS user guide managing-coredns.md, 'CoreDNS versions' table"
# The EKS user guide's VPC CNI table (managing-vpc-cni, "Amazon VPC CNI versions") stops at 1.33 in every stored copy
# (v1.20.1-eksbuild.3, a mid-2025 build), so the build is the one newer sources list for the pinned minors, checked
# 2026-12-07: v1.22.4-eksbuild.3 is EKS's default on 1.36 clusters (two records of the add-on versions a new 1.36
# cluster resolved to, 2026-09) and "identical for 1.31-1.36" in a table measured with describe-addon-versions
# (ap-northeast-2). VPC CNI builds serve a range of minors (they are not tied to one like kube-proxy's).
_VPC_CNI = "describe-addon-versions records for EKS 1.31-1.36 (EKS's default on new 1.36 clusters), checked 2026-12-07"
# The EKS user guide's efs-csi page has no per-minor table, and `aws eks describe-addon-versions` could not be run here.
# v3.4.1-eksbuild.1 (driver v3.4.1, the newest release tag of kubernetes-sigs/aws-efs-csi-driver, read 2026-12-07) is
# pinned for a 1.35 cluster in tfvars written by a script that fills every add-on from describe-addon-versions (next to
# coredns v1.14.3-eksbuild.3, this file's 1.35 coredns pin), and beside vpc-cni v1.22.4-eksbuild.3 in a module's pins.
# EFS CSI builds serve a range of minors and a cluster upgrade should never move the driver backwards, so one build is
# pinned for all three minors, confirmed only where a source lists it for that minor; `make preflight` asks EKS.
_EFS_CSI = "public configurations pinning aws-efs-csi-driver for a stated EKS minor (see the comment above)"

# amazon-cloudwatch-observability (components/observability.py): AWS publishes no per-minor table for it; its builds serve
# a range of minors. v6.4.0-eksbuild.1 is pinned for all three because it is the build of the newest chart whose
# values and templates could be read here (aws-observability/helm-charts tag amazon-cloudwatch-observability-6.4.0,
# release notes 2026-07-21: CloudWatch agent 1.300070.0b1586, DCGM exporter 4.6.0-4.8.3), and the add-on takes the
# chart's configuration values. Sources listing it per minor (checked 2026-12-07): for 1.34 an OpenTofu module
# "qualified only for EKS Kubernetes 1.34" whose add-on set is "verified by prerequisites.lock.json" (the same module
# that pins aws-efs-csi-driver above) and an AWS sample "validated against v6.4.0-eksbuild.1 on EKS Auto Mode
# (Kubernetes 1.34)"; for 1.35 a CDK add-on map pinning it for 1.31-1.35 and a Terraform production config with
# cluster_version 1.35; for 1.36 an `aws eks describe-addon-versions --kubernetes-version 1.36` table (ap-southeast-1,
# 2026-09-18: v6.6.0-eksbuild.1 default, v6.5.0 and v6.4.0-eksbuild.1 listed) and a lab run of 2026-08-08 ("the
# default build for 1.36 on the run date"). Newer builds exist (v6.5.0, v6.6.0-eksbuild.1/.2); their chart values
# could not be read here, so 6.4.0 stays until they are checked against the keys components/observability.py sets.
_CLOUDWATCH_OBSERVABILITY = "public configurations pinning amazon-cloudwatch-observability for a stated EKS minor (see above)"

EKS_ADDON_PINS: dict[str, dict[str, Pin]] = {
    "1.34": {
        "amazon-cloudwatch-observability": Pin(
            "v6.4.0-eksbuild.1",
            checked=_D(2026, 12, 7),
            source=f"{_CLOUDWATCH_OBSERVABILITY}: OpenTofu module qualified for 1.34; AWS sample validated on 1.34",
        ),
        "kube-proxy": Pin("v1.34.6-eksbuild.13", f"{_KUBE_PROXY_TABLE}, row 1.34"),
        "coredns": Pin("v1.13.2-eksbuild.11", f"{_COREDNS_TABLE}, row 1.34"),
        "vpc-cni": Pin("v1.22.4-eksbuild.3", f"{_VPC_CNI}: row 1.34", checked=_D(2026, 12, 7)),
        "aws-efs-csi-driver": Pin(
            "v3.4.1-eksbuild.1", f"{_EFS_CSI}: newest build; seen on 1.35 only", checked=_D(2026, 12, 7), confirmed=False
        ),
    },
    "1.35": {
        "amazon-cloudwatch-observability": Pin(
            "v6.4.0-eksbuild.1",
            checked=_D(2026, 12, 7),
            source=f"{_CLOUDWATCH_OBSERVABILITY}: CDK add-on map 1.31-1.35; Terraform config on 1.35",
        ),
        "kube-proxy": Pin("v1.35.3-eksbuild.13", f"{_KUBE_PROXY_TABLE}, row 1.35"),
        "coredns": Pin("v1.14.3-eksbuild.3", f"{_COREDNS_TABLE}, row 1.35"),
        "vpc-cni": Pin("v1.22.4-eksbuild.3", f"{_VPC_CNI}: row 1.35", checked=_D(2026, 12, 7)),
        "aws-efs-csi-driver": Pin("v3.4.1-eksbuild.1", f"{_EFS_CSI}: listed for 1.35", checked=_D(2026, 12, 7)),
    },
    "1.36": {
        "amazon-cloudwatch-observability": Pin(
            "v6.4.0-eksbuild.1",
            checked=_D(2026, 12, 7),
            source=f"{_CLOUDWATCH_OBSERVABILITY}: describe-addon-versions output for 1.36 (2026-09-18); lab run of 2026-08-08",
        ),
        "kube-proxy": Pin("v1.36.0-eksbuild.14", f"{_KUBE_PROXY_TABLE}, row 1.36"),
        "coredns": Pin("v1.14.3-eksbuild.3", f"{_COREDNS_TABLE}, row 1.36"),
        "vpc-cni": Pin("v1.22.4-eksbuild.3", f"{_VPC_CNI}: row 1.36", checked=_D(2026, 12, 7)),
        "aws-efs-csi-driver": Pin(
            "v3.4.1-eksbuild.1", f"{_EFS_CSI}: newest build; seen on 1.35 only", checked=_D(2026, 12, 7), confirmed=False
        ),
    },
}


@dataclass(frozen=True)
class HelmChart:
    """A Helm chart pinned to one version in one repository."""

    repository: str  # https:// (a chart repository with an index.yaml) or oci:// (a registry path)
    chart: str
    version: str
    source: str
    checked: datetime.date = CHECKED

    @property
    def oci(self) -> bool:
        return self.repository.startswith("oci://")

    @property
    def reference(self) -> str:
        """What helm.v3.Release's `chart` takes: the chart's name for a repository, its full OCI reference otherwise."""
        return f"{self.repository.rstrip('/')}/{self.chart}" if self.oci else self.chart


# Helm charts installed by components/addons.py, keyed by release name. A version counts as published when the
# chart repository's index lists it (or chart-releaser's tag for it exists, which the same job creates when it
# publishes the index entry). Where a newer version is published but its values.yaml could not be checked against
# the keys simfleet sets (/work/shared/reference/helm-charts holds the checked ones), the checked version stays.
HELM_CHARTS: dict[str, HelmChart] = {
    "nvidia-device-plugin": HelmChart(
        "https://nvidia.github.io/k8s-device-plugin",
        "nvidia-device-plugin",
        "0.20.0",
        # Published: NVIDIA/k8s-device-plugin gh-pages@caa1f26 index.yaml lists stable/nvidia-device-plugin-0.20.0.tgz
        # (digest 9e5642bc...); its values.yaml equals deployments/helm/nvidia-device-plugin at tag v0.20.0.
        # 0.20.1 is being prepared upstream (NVIDIA/k8s-device-plugin#2057); not seen in an index.
        "NVIDIA/k8s-device-plugin gh-pages index.yaml, entry nvidia-device-plugin 0.20.0",
    ),
    "cluster-autoscaler": HelmChart(
        "https://kubernetes.github.io/autoscaler",
        "cluster-autoscaler",
        "9.59.0",
        # Published: kubernetes/autoscaler gh-pages index.yaml, entry 9.59.0 (created 2026-07-21, digest 90276daf...,
        # appVersion 1.35.0), the newest in the index; values.yaml and templates read at tag cluster-autoscaler-chart-9.59.0
        # (5a0b98e), checked 2026-12-07. Its ClusterRole also covers ProvisioningRequests (autoscaling.x-k8s.io), which
        # 9.56.0's did not. Only azureEnableVMSSEtag is new in values.yaml. The image is pinned per minor below.
        "kubernetes/autoscaler gh-pages index.yaml, entry cluster-autoscaler 9.59.0 (tag cluster-autoscaler-chart-9.59.0)",
        checked=_D(2026, 12, 7),
    ),
    "aws-load-balancer-controller": HelmChart(
        "https://aws.github.io/eks-charts",
        "aws-load-balancer-controller",
        "3.5.0",
        # Published: aws/eks-charts gh-pages@c7f9ea5 index.yaml lists aws-load-balancer-controller-3.5.0.tgz (sha256
        # 45051f63..., created 2026-08-03, appVersion v3.5.0; eks-charts PR #1354). Its values.yaml and templates are
        # byte-identical to kubernetes-sigs/aws-load-balancer-controller helm/ at tag v3.5.0 (11eb202c), and its IAM
        # policy (docs/install/iam_policy.json at that tag, blob 761d0e73) is unchanged since v3.4.2:
        # components/policies_lbc.py matches it (tests/test_access.py compares them). Checked 2026-12-07. Newer charts
        # (3.6.x, 3.7.0) are published, but neither their values.yaml nor their IAM policy could be read here.
        "aws/eks-charts gh-pages index.yaml, entry aws-load-balancer-controller 3.5.0 (app v3.5.0)",
        checked=_D(2026, 12, 7),
    ),
    "metrics-server": HelmChart(
        "https://kubernetes-sigs.github.io/metrics-server/",
        "metrics-server",
        "3.13.1",
        # Published: chart-releaser tag metrics-server-helm-chart-3.13.1 (842dcc8) in kubernetes-sigs/metrics-server;
        # values.yaml read at that tag. The stored copy of the gh-pages index is older (ends at 3.8.1).
        "kubernetes-sigs/metrics-server release tag metrics-server-helm-chart-3.13.1",
    ),
    "prometheus-pushgateway": HelmChart(
        "https://prometheus-community.github.io/helm-charts",
        "prometheus-pushgateway",
        "3.8.0",
        # Published: prometheus-community/helm-charts release tag prometheus-pushgateway-3.8.0 (4fa56e1c), appVersion
        # v1.11.3; its values.yaml and templates are the ones checked (/work/shared/reference/helm-charts). 3.9.0 is
        # published too (index created 2026-09-22, same appVersion v1.11.3; a public diff of the two tarballs shows only
        # HTTPRoute naming and new route values), but its values.yaml could not be read here, so 3.8.0 stays.
        "prometheus-community/helm-charts release tag prometheus-pushgateway-3.8.0",
    ),
    "kueue": HelmChart(
        "oci://registry.k8s.io/kueue/charts",
        "kueue",
        "0.19.2",
        # Published: Kueue's releases push the chart to registry.k8s.io/kueue/charts/kueue with the git tag's version
        # minus the "v" (hack/helm-chart-package.sh; the installation guide's `helm install kueue
        # oci://registry.k8s.io/kueue/charts/kueue --version=<chart_version>`). v0.19.2 is the newest release tag seen
        # (tag commit 8eab6877, 2026-08-20); its values.yaml, templates and CRDs are the ones checked
        # (/work/shared/reference/helm-charts/kueue/0.19.2, /work/shared/reference/crds/kueue/v0.19.2).
        "kubernetes-sigs/kueue release tag v0.19.2, chart pushed to oci://registry.k8s.io/kueue/charts/kueue",
    ),
}

# The Kueue controller image. The released chart already points at it (hack/helm-chart-package.sh rewrites the
# staging image to registry.k8s.io/kueue/kueue:<tag> with IfNotPresent for tags vX.Y.Z); simfleet sets it explicitly
# so the pin is visible here and a chart bump cannot move the controller without this file changing.
KUEUE_IMAGE = "registry.k8s.io/kueue/kueue"
KUEUE_IMAGE_TAG = "v0.19.2"
# Kueue's installation guide (site/content/en/docs/installation/_index.md, read 2026-11-30): "A Kubernetes cluster with
# version 1.29 or newer". No upper bound is documented; every minor simfleet pins (1.34-1.36) is above it.
KUEUE_MIN_KUBERNETES = "1.29"

# The Cluster Autoscaler's minor must equal the Kubernetes minor (cluster-autoscaler README: "versioning scheme
# ... match[es] Kubernetes minor releases exactly"), so its image is pinned per minor, not by the chart.
CLUSTER_AUTOSCALER_IMAGE = "registry.k8s.io/autoscaling/cluster-autoscaler"
CLUSTER_AUTOSCALER_IMAGE_PINS: dict[str, Pin] = {
    "1.34": Pin("v1.34.5", "kubernetes/autoscaler release cluster-autoscaler-1.34.5 (2026-07-23), 'Images' list"),
    # Newer 1.35 patches may exist (1.34.5 and 1.36.1 were released together); the newest 1.35 tag read is 1.35.1.
    "1.35": Pin("v1.35.1", "aws-ia/terraform-aws-eks-blueprints-addons#516 (2026-07-17), 'per the autoscaler releases page'"),
    "1.36": Pin("v1.36.1", "kubernetes/autoscaler release cluster-autoscaler-1.36.1 (2026-07-23), 'Images' list"),
}
CLUSTER_AUTOSCALER_IMAGE_TAGS: dict[str, str] = {minor: pin.version for minor, pin in CLUSTER_AUTOSCALER_IMAGE_PINS.items()}

# kubectl for the gate pod that releases a `run:<name>` continuation (workloads/renderers/run.py). The official image
# (shell-free) is published per Kubernetes patch release; kubectl supports one minor of skew, so it is pinned per
# minor like the autoscaler. Checked 2026-11-30 against public pins of registry.k8s.io/kubectl (the registry itself
# is not reachable from here): v1.34.3 (a Terraform module default and a Helm chart value), v1.35.1 (an incident
# note and an image digest map: sha256:c93e4fb8...a274a, one source, so the digest is not pinned), v1.36.4.
KUBECTL_IMAGE = "registry.k8s.io/kubectl"
KUBECTL_IMAGE_PINS: dict[str, Pin] = {
    "1.34": Pin("v1.34.3", "public pins of registry.k8s.io/kubectl:v1.34.3 (Terraform module default, Helm values)"),
    "1.35": Pin("v1.35.1", "public pins of registry.k8s.io/kubectl:v1.35.1 (incident note, image digest map)"),
    "1.36": Pin("v1.36.4", "public pin of registry.k8s.io/kubectl:v1.36.4 (a Flux bootstrap runbook)"),
}

# The CloudWatch agent the collector runs (components/collector.py): the build amazon-cloudwatch-observability 6.4.0
# ships (chart values agent.image, repositoryDomainMap.public, tag 1.300070.0b1586; agent release v1.300070.0), so the
# collector and the add-on's agents are one agent version and the collector's Prometheus pipeline is the one read at
# that tag (plugins/inputs/prometheus). Checked 2026-12-07. Pin its digest before prod.
CLOUDWATCH_AGENT_IMAGE = "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:1.300070.0b1586"

# The AWS CLI v2 image the run pods' scripts run in (checkpoint-fetch, artifact-uploader, the gate's wait).
# aws/aws-cli docker/Dockerfile: Amazon Linux 2023 since 2.27.51 (aws/aws-cli#9551, announced in #9586 for
# 2025-07-15), with jq and findutils added by aws/aws-cli#9600 (2025-07-17); the scripts need bash, coreutils, jq.
# 2.31.23 is a tag seen pinned in public repositories (2026-11-23); newer 2.3x tags exist. Pin its digest before prod.
AWS_CLI_IMAGE = "public.ecr.aws/aws-cli/aws-cli:2.31.23"


def kubectl_image(kubernetes_version: str) -> str:
    return f"{KUBECTL_IMAGE}:{KUBECTL_IMAGE_PINS[kubernetes_version].version}"


def eks_release(version: str) -> EksRelease | None:
    return EKS_RELEASES.get(version)


def addon_version(kubernetes_version: str, addon: str) -> str:
    """The pinned build of a managed add-on for a Kubernetes minor (KeyError when versions.py has none)."""
    return EKS_ADDON_PINS[kubernetes_version][addon].version


def missing_pins(version: str) -> list[str]:
    """What versions.py lacks to deploy Kubernetes `version`: every add-on, chart and image; empty when complete."""
    missing = []
    addons = EKS_ADDON_PINS.get(version, {})
    for addon in PINNED_ADDONS:
        pin = addons.get(addon)
        if pin is None:
            missing.append(f"a {addon} add-on build for {version} (EKS_ADDON_PINS)")
        elif addon == "kube-proxy" and not pin.version.startswith(f"v{version}."):
            missing.append(f"a kube-proxy build of the {version} line, not {pin.version} (EKS_ADDON_PINS)")
    image = CLUSTER_AUTOSCALER_IMAGE_PINS.get(version)
    if image is None or not image.version.startswith(f"v{version}."):
        missing.append(f"a Cluster Autoscaler {version}.x image (CLUSTER_AUTOSCALER_IMAGE_PINS)")
    kubectl = KUBECTL_IMAGE_PINS.get(version)
    if kubectl is None or not kubectl.version.startswith(f"v{version}."):
        missing.append(f"a kubectl {version}.x image (KUBECTL_IMAGE_PINS)")
    missing += [f"a version of the {key} chart (HELM_CHARTS)" for key, chart in HELM_CHARTS.items() if not chart.version]
    if _minor(version) < _minor(KUEUE_MIN_KUBERNETES):
        missing.append(f"a Kueue release that supports Kubernetes {version} (KUEUE_MIN_KUBERNETES is {KUEUE_MIN_KUBERNETES})")
    return missing


def _minor(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def unconfirmed_pins(version: str) -> list[str]:
    """Pins for `version` whose source does not list them for that minor."""
    pins = EKS_ADDON_PINS.get(version, {})
    return [f"{addon} {pin.version}" for addon, pin in sorted(pins.items()) if not pin.confirmed]


def deployable_versions(today: datetime.date) -> list[str]:
    """Kubernetes minors in EKS standard support on `today` with a complete set of pins: what config/ accepts."""
    return sorted(v for v, r in EKS_RELEASES.items() if r.end_of_standard >= today and not missing_pins(v))
