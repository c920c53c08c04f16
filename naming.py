"""Names, labels and ports that the platform components and the run manifests must agree on."""

from __future__ import annotations

import re

RUNS_NAMESPACE = "simfleet-runs"
RUN_SERVICE_ACCOUNT = "simfleet-run"
# The gate pods that release a `run:<name>` continuation once its source finished: they read the source's
# index.json (IRSA) and unsuspend the consumer's Job (RBAC: get and patch Jobs in the runs namespace).
GATE_SERVICE_ACCOUNT = "simfleet-gate"
RUN_OPERATORS_GROUP = "simfleet:run-operators"  # Kubernetes group mapped from EKS access entries

# Node labels and taint. EKS sets eks.amazonaws.com/capacityType (ON_DEMAND | SPOT) on managed nodes.
NODE_POOL_LABEL = "simfleet.io/node-pool"
CAPACITY_TYPE_LABEL = "eks.amazonaws.com/capacityType"
EKS_CAPACITY = {"spot": "SPOT", "onDemand": "ON_DEMAND"}
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"  # the NVIDIA device plugin chart's default node affinity
# The Cluster Autoscaler's GPU label on AWS (cloudprovider/aws/README.md, "Special note on GPU instances"): a node that
# carries it is a GPU node whose GPUs are not registered yet, so the autoscaler waits for the device plugin instead of
# adding more nodes.
GPU_ACCELERATOR_LABEL = "k8s.amazonaws.com/accelerator"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_VALUE = "true"
GPU_TAINT_EFFECT = "NoSchedule"

# Run labels and annotations.
RUN_LABEL = "simfleet.io/run"
SPEC_HASH_ANNOTATION = "simfleet.io/spec-hash"
# Label keys simfleet sets itself under simfleet.io/ on run objects; a run's own `labels` may not use them.
RESERVED_RUN_LABEL_KEYS = ("run", "job", "profile", "mode", "seed", "viewport")
GLUE_SHA_ANNOTATION = "simfleet.io/glue-sha256"  # on the shared glue ConfigMaps, which are named by content
# On the shared runtime ConfigMaps (simfleet-runtime-<sha>): the sha256 of the files they hold, their name's source.
RUNTIME_SHA_ANNOTATION = "simfleet.io/runtime-sha256"

# Isaac Sim WebRTC livestream: signalling over TCP, media over UDP. TURN relays on 3478.
VIEWPORT_PORTS: tuple[tuple[str, int, str], ...] = (("signal", 49100, "TCP"), ("media", 47998, "UDP"))
VIEWPORT_SIGNAL_PORT = 49100  # the TCP port the NLB health-checks for both listeners (UDP cannot be health-checked)
TURN_PORT = 3478
# Set to "true" on interactive run pods that expose a viewport; each run's own NetworkPolicy admits its clients.
VIEWPORT_POD_LABEL = "simfleet.io/viewport"
# The image contract: each sidecar answers HTTP GET /healthz on its port (bound on the pod IP) once it is ready;
# the kubelet's startup probes use them, and glue starts only after both pass.
HEALTH_PATH = "/healthz"
SIM_HEALTH_PORT = 8011
MONTY_HEALTH_PORT = 8012
INSTANCE_METADATA_CIDR = "169.254.169.254/32"

# Long-running services (workloads/services.py) live in their own namespace, one Deployment per service, each with
# this label (value: the service's name) on every object and pod.
SERVICES_NAMESPACE = "simfleet-services"
SERVICE_LABEL = "simfleet.io/service"

# Shared storage (components/shared_storage.py): the EFS StorageClass and the ReadWriteMany claim runs and jobs mount.
EFS_STORAGE_CLASS = "efs-sc"
DATASETS_CLAIM = "datasets"
IMPORT_LABEL = "simfleet.io/import"  # on a dataset import's sync Job and pod (components/dataset_imports.py)
EFS_CSI_CONTROLLER_SA = ("kube-system", "efs-csi-controller-sa")  # the EKS add-on's controller, which calls the EFS API
EFS_CSI_NODE_SA = ("kube-system", "efs-csi-node-sa")  # its node DaemonSet, which mounts with IAM authorization

# Metrics (components/metrics.py): the Pushgateway runs and jobs push to, at
# http://<PUSHGATEWAY_RELEASE>.<METRICS_NAMESPACE>.svc:<PUSHGATEWAY_PORT>.
METRICS_NAMESPACE = "simfleet-metrics"
PUSHGATEWAY_RELEASE = "prometheus-pushgateway"
PUSHGATEWAY_PORT = 9091

# Kueue (components/addons.py installs it, components/queues.py registers its objects): every run and job is admitted
# through a LocalQueue in the runs namespace. A Job names its LocalQueue with KUEUE_QUEUE_LABEL (a queue name from
# config: QueuesConfig.names(), QueuesConfig.default_name) and its WorkloadPriorityClass with KUEUE_PRIORITY_LABEL.
# Kueue ignores Jobs without the queue label (manageJobsWithoutQueueName: false), which the continuation gate relies on.
KUEUE_NAMESPACE = "kueue-system"
KUEUE_RELEASE = "kueue"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
# Every team's ClusterQueue is in this one cohort, so teams borrow each other's idle quota.
KUEUE_COHORT = "simfleet"
# ResourceFlavors, one per GPU capacity type; a ClusterQueue lists them in this order (spot first, then on-demand).
FLAVOR_SPOT = "spot"
FLAVOR_ON_DEMAND = "on-demand"
KUEUE_FLAVORS = {"spot": FLAVOR_SPOT, "onDemand": FLAVOR_ON_DEMAND}
# WorkloadPriorityClasses: Kueue admits interactive runs before batch sweeps waiting in the same queue.
PRIORITY_INTERACTIVE = "simfleet-interactive"
PRIORITY_BATCH = "simfleet-batch"
PRIORITY_FOR_MODE = {"interactive": PRIORITY_INTERACTIVE, "batch": PRIORITY_BATCH}
# The queue simfleet generates when a stack file has no simfleet:queues section. Never "default": Kueue (since v0.17,
# LocalQueueDefaulting) labels every unlabelled Job in a namespace that has a LocalQueue named "default" with that
# queue, which would put the continuation gate and every other unqueued Job under Kueue.
GENERATED_QUEUE = "shared"
RESERVED_QUEUE_NAMES = ("default",)

# Service accounts of the add-ons that assume IRSA roles: (namespace, name). Access trusts exactly
# these; Addons installs the charts with these names.
LOAD_BALANCER_CONTROLLER_SA = ("kube-system", "aws-load-balancer-controller")
CLUSTER_AUTOSCALER_SA = ("kube-system", "cluster-autoscaler")
# The VPC CNI's DaemonSet (components/pod_network.py), created by the EKS add-on under this name.
VPC_CNI_SA = ("kube-system", "aws-node")
# The amazon-cloudwatch-observability add-on's CloudWatch agent and Fluent Bit both run as this service account (chart
# templates: serviceAccountName cloudwatch-agent in the amazon-cloudwatch namespace the add-on installs into).
CLOUDWATCH_AGENT_SA = ("amazon-cloudwatch", "cloudwatch-agent")

# Observability (components/observability.py): the collector, one CloudWatch agent Deployment that scrapes the
# Pushgateway, Kueue's metrics endpoint and every service port named SERVICE_METRICS_PORT_NAME, in its own namespace.
OBSERVABILITY_NAMESPACE = "simfleet-observability"
COLLECTOR_NAME = "simfleet-collector"  # its Deployment, ServiceAccount and ConfigMap
COLLECTOR_POD_LABELS = {"app.kubernetes.io/name": COLLECTOR_NAME, "app.kubernetes.io/part-of": "simfleet"}
SERVICE_METRICS_PORT_NAME = "metrics"  # a service port with this name is scraped (Triton's 8002)
# How often the collector scrapes the Pushgateway, and how long one scrape may take. A group deleted sooner than
# PUSHGATEWAY_SCRAPE_INTERVAL_SECONDS + SCRAPE_TIMEOUT_SECONDS after its last push may never be scraped: that sum is
# the longest a finished shard or seed needs to keep its group (pushgateway_linger_seconds).
PUSHGATEWAY_SCRAPE_INTERVAL_SECONDS = 30
SCRAPE_TIMEOUT_SECONDS = 10
# The grouping key runs push under: /metrics/job/simfleet-run/run/<run>/seed/<seed> (jobs push under
# /metrics/job/<job>/shard/<shard>, workloads/scripts/job-entry.sh).
PUSHGATEWAY_RUN_JOB = "simfleet-run"

# Kueue's controller (chart kueue 0.19.2: selector labels in templates/_helpers.tpl, ports in the manager config and
# the metrics, webhook and visibility Services): the collector reaches only the metrics port.
KUEUE_POD_LABELS = {
    "app.kubernetes.io/name": "kueue",
    "app.kubernetes.io/instance": KUEUE_RELEASE,
    "control-plane": "controller-manager",
}
KUEUE_METRICS_PORT = 8443
KUEUE_WEBHOOK_PORT = 9443
KUEUE_VISIBILITY_PORT = 8082
KUEUE_METRICS_SERVICE = f"{KUEUE_RELEASE}-controller-manager-metrics-service"


def pushgateway_url(namespace: str = METRICS_NAMESPACE) -> str:
    """The Pushgateway's in-cluster address (components/metrics.py installs it) that runs and jobs push to."""
    return f"http://{PUSHGATEWAY_RELEASE}.{namespace}.svc:{PUSHGATEWAY_PORT}"


def collector_peer() -> dict[str, dict[str, dict[str, str]]]:
    """The NetworkPolicy peer that is the collector and nothing else: its namespace and its pods' labels in ONE peer."""
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": OBSERVABILITY_NAMESPACE}},
        "podSelector": {"matchLabels": dict(COLLECTOR_POD_LABELS)},
    }


def pushgateway_linger_seconds() -> int:
    """The longest a finished seed or shard must keep its Pushgateway group for the collector to scrape it once."""
    return PUSHGATEWAY_SCRAPE_INTERVAL_SECONDS + SCRAPE_TIMEOUT_SECONDS


# The add-on's Fluent Bit and CloudWatch agent write these groups (chart amazon-cloudwatch-observability 6.4.0:
# application-log.conf, dataplane-log.conf, host-log.conf; the agent's performance events), and the collector writes
# the prometheus one. The Observability component creates them first, with a retention: left to the add-on they
# would be created on first write and kept forever.
CONTAINER_INSIGHTS_LOG_KINDS: tuple[str, ...] = ("application", "dataplane", "host", "performance", "prometheus")


def container_insights_log_group(cluster_name: str, kind: str) -> str:
    if kind not in CONTAINER_INSIGHTS_LOG_KINDS:
        raise ValueError(f"unknown Container Insights log group kind {kind!r}; one of {CONTAINER_INSIGHTS_LOG_KINDS}")
    return f"/aws/containerinsights/{cluster_name}/{kind}"


def container_log_group(cluster_name: str) -> str:
    """The group every container's stdout and stderr lands in: what `simfleet logs` reads."""
    return container_insights_log_group(cluster_name, "application")


def legacy_container_log_group(cluster_name: str) -> str:
    """Where the retired aws-for-fluent-bit chart shipped container logs; kept (never deleted) with its old logs."""
    return f"/aws/eks/{cluster_name}/containers"


def spot_interruption_log_group(cluster_name: str) -> str:
    """EventBridge writes each EC2 Spot interruption warning of the region here (the group must start /aws/events/)."""
    return f"/aws/events/{cluster_name}/spot-interruptions"


def control_plane_log_group(cluster_name: str) -> str:
    """The group EKS writes control-plane logs to. EKS creates it (never expiring) unless it already exists, so the
    Cluster component creates it first with a retention."""
    return f"/aws/eks/{cluster_name}/cluster"


# Object tag the artifact-uploader sets on every artifact it writes (value: one of ARTIFACT_KINDS).
# The artifacts bucket's lifecycle rules filter on it: artifacts live under runs/<run>/<hash>/, and
# S3 lifecycle prefixes have no wildcards, so a per-kind prefix filter cannot express "any run's logs".
ARTIFACT_KIND_TAG = "simfleet-kind"
ARTIFACT_KINDS: tuple[str, ...] = ("logs", "videos", "metrics")
# The same tag with this value marks the uploader's staging copy of a partial checkpoint, which the checkpoints
# bucket expires after STAGING_EXPIRY_DAYS (the run role deletes nothing).
STAGING_KIND = "staging"
STAGING_EXPIRY_DAYS = 1
# Every object a run writes (artifacts and out-checkpoints) lives under this prefix; the run role can write nowhere else.
RUNS_PREFIX = "runs/"
# Every object a batch job writes lives under this prefix of the artifacts bucket; the job role can write nowhere else.
JOBS_PREFIX = "jobs/"
# Batch jobs (workloads/renderers/job.py) run in the runs namespace under their own service account and IRSA role.
JOB_SERVICE_ACCOUNT = "simfleet-job"
JOB_LABEL = "simfleet.io/job"

# S3 bucket names: components/storage.py names the buckets, __main__.py hands the names to runs and jobs, and the
# config package refuses a stack name that cannot be part of them (before anything is created).
BUCKET_NAME_MAX = 63  # S3 general purpose bucket naming rules
ACCOUNT_ID_LENGTH = 12
# Bucket names allow lowercase letters, digits, hyphens and dots; Pulumi stack names also allow
# uppercase and underscores, which S3 rejects. Dots are left out: they break virtual-hosted TLS.
_STACK_IN_BUCKET_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def bucket_name(stack: str, purpose: str, account_id: str) -> str:
    """`simfleet-<stack>-<purpose>-<account id>`: unique per stack and account, as S3's global namespace needs."""
    problems = bucket_name_problems(stack, purpose, account_id)
    if problems:
        raise ValueError("; ".join(problems))
    return f"simfleet-{stack}-{purpose}-{account_id}"


def bucket_name_problems(stack: str, purpose: str, account_id: str = "0" * ACCOUNT_ID_LENGTH) -> list[str]:
    """Why `stack` cannot name this bucket; empty if it can. The default account id has the real length."""
    problems: list[str] = []
    if not _STACK_IN_BUCKET_RE.match(stack):
        problems.append(f"stack name {stack!r} cannot be part of an S3 bucket name: use lowercase letters, digits and hyphens")
    if not re.fullmatch(r"\d{12}", account_id):
        problems.append(f"account id {account_id!r} is not 12 digits")
    name = f"simfleet-{stack}-{purpose}-{account_id}"
    if len(name) > BUCKET_NAME_MAX:
        room = BUCKET_NAME_MAX - (len(name) - len(stack))
        problems.append(
            f"the {purpose} bucket name {name!r} is {len(name)} characters and S3 allows {BUCKET_NAME_MAX}: "
            f"use a stack name of at most {room} characters"
        )
    return problems
