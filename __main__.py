"""simfleet: validate the stack config, build the platform, turn each declared run into a Job."""

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

import naming
from components.access import Access, AccessArgs
from components.addons import Addons, AddonsArgs
from components.alarm_rules import alarm_rules
from components.alerting import Alerts, AlertsArgs
from components.cluster import Cluster, ClusterArgs, cluster_creator
from components.dashboard import Dashboard, DashboardArgs
from components.dashboard_body import DashboardSpec, ServiceView, spend_model
from components.dataset_imports import DatasetImports, DatasetImportsArgs
from components.metrics import PUSHGATEWAY_POD_LABELS, Metrics, MetricsArgs, pushgateway_url
from components.network import Network, NetworkArgs, refuse_bootstrap_over_cluster
from components.nodegroups import NodeGroups, NodeGroupsArgs
from components.observability import Observability, ObservabilityArgs
from components.pod_network import PodNetwork, PodNetworkArgs
from components.queues import Queues, QueuesArgs
from components.queues import summary as queues_summary
from components.registry import Registry, RegistryArgs
from components.runs_namespace import InClusterEgress, RunsNamespace, RunsNamespaceArgs
from components.shared_storage import SharedStorage, SharedStorageArgs
from components.shared_storage import summary as shared_storage_summary
from components.storage import Storage, StorageArgs
from components.tags import base_tags
from config import load_from_pulumi, node_group_gpus, runs_gpu_quota, stack_file_name
from workloads import deletions
from workloads.identity import RunContext, registry_url
from workloads.job_identity import JobContext
from workloads.jobs import Jobs, JobsArgs
from workloads.renderers.service import ServiceContext, metrics_port
from workloads.runs import Runs, RunsArgs
from workloads.services import Services, ServicesArgs

cfg = load_from_pulumi()
platform = cfg.platform
stack = pulumi.get_stack()
# Before anything is registered: a change that deletes deployed runs or jobs lists them, and stops unless the stack
# file acknowledges deleting a running one, or more than simfleet:deletions.limit (workloads/deletions.py).
for warning in deletions.check(cfg, stack_file_name(stack)):
    pulumi.log.warn(warning)
region = pulumi.Config("aws").require("region")
cluster_name = f"simfleet-{stack}"
tags = {**base_tags(pulumi.get_project(), stack), **platform.tags}

network = Network("network", NetworkArgs(platform.network, cluster_name, tags, region))
# Both phases: a deploy runner starts in these private subnets with this security group (docs/operators.md, "First deploy (bootstrap)").
pulumi.export(
    "network",
    pulumi.Output.all(
        vpcId=network.vpc_id,
        privateSubnetIds=network.private_subnet_ids,
        deployerSecurityGroupId=network.deployer_security_group_id,
    ),
)

existing_clusters = aws.eks.get_clusters().names or []
if cfg.bootstrap_network:
    # Phase 1 of a first deploy (SIMFLEET_BOOTSTRAP=network): the network only, so a runner can start inside the
    # VPC before the private API endpoint exists; that runner's full `pulumi up` builds everything else.
    refuse_bootstrap_over_cluster(cluster_name, existing_clusters)
else:
    # Who holds EKS's own admin entry for the cluster (components/cluster.py CREATOR_TAG): the tag an existing cluster
    # carries, or whoever runs this `up` when it creates the cluster. Values known now, never resource outputs.
    creator = cluster_creator(
        aws.eks.get_cluster(name=cluster_name).tags if cluster_name in existing_clusters else None,
        aws.get_caller_identity().arn,
    )
    cluster = Cluster(
        "cluster",
        ClusterArgs(
            cluster_name,
            platform,
            network.vpc_id,
            network.public_subnet_ids,
            network.private_subnet_ids,
            tags,
            deletion_protection=cfg.is_prod,
            region=region,
            log_retention_days=cfg.control_plane_log_retention_days,
            deployer_security_group_id=network.deployer_security_group_id,
            # Prod's audit logs get their own KMS key; dev's stay on CloudWatch's default encryption.
            encrypt_control_plane_logs=cfg.is_prod,
            creator=creator,
        ),
    )
    # The VPC CNI on its own IRSA role, before any node: aws-node never needs the node role's credentials.
    pod_network = PodNetwork(
        "pod-network",
        PodNetworkArgs(
            cluster.eks_cluster_name,
            platform.kubernetes_version,
            cluster.oidc_provider_arn,
            cluster.oidc_provider_url,
            tags,
            cluster=cluster,
        ),
    )
    node_groups = NodeGroups(
        "nodes",
        NodeGroupsArgs(
            cluster_name,
            platform.node_groups,
            cluster.eks_cluster_name,
            network.private_subnet_ids,
            tags,
            kubernetes_version=platform.kubernetes_version,
            after=[pod_network],
        ),
    )
    storage = Storage("storage", StorageArgs(stack, platform.buckets, tags))
    registry = Registry("registry", RegistryArgs(platform.repositories, platform.keep_tagged_images, tags))
    access = Access(
        "access",
        AccessArgs(
            cluster_name,
            cluster.oidc_provider_arn,
            cluster.oidc_provider_url,
            storage.checkpoints_bucket_arn,
            storage.artifacts_bucket_arn,
            tags,
            region,
            external_checkpoint_uris=cfg.external_checkpoint_uris,
            vpc_id=network.vpc_id,
        ),
    )

    # One explicit provider for every in-cluster object; default Kubernetes providers are disabled in Pulumi.yaml.
    k8s_provider = k8s.Provider("k8s", kubeconfig=cluster.kubeconfig_json, enable_server_side_apply=True)
    in_cluster = pulumi.ResourceOptions(provider=k8s_provider)

    addons = Addons(
        "addons",
        AddonsArgs(cluster_name, region, platform.kubernetes_version, network.vpc_id, access.roles, tags, cluster=cluster),
        # Add-ons only after nodes exist: CoreDNS stays DEGRADED on a cluster with no nodes.
        opts=pulumi.ResourceOptions(providers=[k8s_provider], depends_on=[node_groups]),
    )
    # Run pods may reach the Pushgateway and the services that list the runs namespace among their clients; the
    # namespace's default deny stops every other in-cluster connection.
    run_egress = [
        InClusterEgress(
            f"service-{service.name}",
            naming.SERVICES_NAMESPACE,
            [port.port for port in service.ports],
            {naming.SERVICE_LABEL: service.name},
        )
        for service in cfg.services
        if any(client.namespace == naming.RUNS_NAMESPACE for client in service.clients)
    ]
    if platform.metrics.enabled:
        run_egress.insert(
            0, InClusterEgress("pushgateway", naming.METRICS_NAMESPACE, [naming.PUSHGATEWAY_PORT], PUSHGATEWAY_POD_LABELS)
        )
    runs_namespace = RunsNamespace(
        "runs-ns",
        RunsNamespaceArgs(
            access.run_role_arn,
            access.gate_role_arn,
            access.job_role_arn,
            # What Kueue admits plus room for the pods of preempted workloads still terminating (config/capacity.py).
            runs_gpu_quota(cfg.queues.capacity, cfg.queues.nominal_gpus(), cfg.queues.preemptible_gpus()),
            platform.kubernetes_version,
            cluster=cluster,
            egress_to=run_egress,
            queued_gpus=cfg.queues.nominal_gpus(),
            node_group_gpus=node_group_gpus(cfg.queues.capacity),
        ),
        opts=in_cluster,
    )
    # Kueue's flavors, priority classes and each team's queues, once Kueue's CRDs and webhooks are up (Addons).
    queues = Queues(
        "queues",
        QueuesArgs(cfg.queues, runs_namespace.namespace, cluster=cluster),
        opts=pulumi.ResourceOptions(providers=[k8s_provider], depends_on=[addons]),
    )
    shared_storage = None
    if platform.shared_storage.enabled:
        shared_storage = SharedStorage(
            "shared-storage",
            SharedStorageArgs(
                cluster_name,
                platform.shared_storage,
                platform.kubernetes_version,
                network.vpc_id,
                network.private_subnet_ids,
                platform.network.availability_zones,
                cluster.node_security_group_id,
                cluster.oidc_provider_arn,
                cluster.oidc_provider_url,
                runs_namespace.namespace,
                tags,
                cluster=cluster,
            ),
            # The EFS CSI add-on's controller pods need nodes, like every other add-on.
            opts=pulumi.ResourceOptions(providers=[k8s_provider], depends_on=[node_groups]),
        )
    imports = None
    if shared_storage is not None and platform.shared_storage.imports:
        imports = DatasetImports(
            "dataset-imports",
            DatasetImportsArgs(
                platform.shared_storage.imports,
                runs_namespace.namespace,
                shared_storage.datasets_claim_name,
                cluster.oidc_provider_arn,
                cluster.oidc_provider_url,
                region,
                tags,
                cluster=cluster,
            ),
            opts=in_cluster,
        )
    metrics = None
    if platform.metrics.enabled:
        metrics = Metrics(
            "metrics",
            MetricsArgs(
                platform.kubernetes_version,
                platform.metrics.persistence,
                shared_storage.storage_class_name if shared_storage is not None else None,
                cluster=cluster,
                scraped=platform.observability.enabled,
            ),
            # Its volume binds only once the EFS driver answers and a mount target serves each AZ: all of shared storage.
            opts=pulumi.ResourceOptions(
                providers=[k8s_provider], depends_on=[addons, *([shared_storage] if shared_storage is not None else [])]
            ),
        )
    # The runs' identity comes from values known now, never from resource outputs (workloads/identity.py): the
    # account id names the buckets and the registry exactly as Storage and Registry do.
    account_id = aws.get_caller_identity().account_id
    # Known names, not resource outputs, like every other context value (the hash never waits on them, and holds none of
    # this). Only where the collector scrapes it: a push nothing collects would only keep the GPU for the uploader's
    # linger (config/stack.py warns about the Pushgateway with observability off).
    scraped_pushgateway = pushgateway_url() if platform.metrics.enabled and platform.observability.enabled else None
    run_context = RunContext(
        cluster_name=cluster_name,
        namespace=naming.RUNS_NAMESPACE,
        service_account=naming.RUN_SERVICE_ACCOUNT,
        checkpoints_bucket=naming.bucket_name(stack, "checkpoints", account_id),
        artifacts_bucket=naming.bucket_name(stack, "artifacts", account_id),
        registry_url=registry_url(account_id, region, aws.get_partition().dns_suffix),
        region=region,
        kubernetes_version=platform.kubernetes_version,
        vpc_cidr=str(platform.network.cidr),
        default_queue=cfg.queues.default_name,
        pushgateway_url=scraped_pushgateway,
    )
    runs = Runs(
        "runs",
        # After the queues too: a Job naming a LocalQueue that does not exist yet would wait inadmissible.
        RunsArgs(cfg.runs, run_context, after=[addons, runs_namespace, queues, storage, registry], cluster=cluster),
        opts=in_cluster,
    )
    jobs = None
    if cfg.jobs:
        job_context = JobContext(
            cluster_name=cluster_name,
            namespace=naming.RUNS_NAMESPACE,
            service_account=naming.JOB_SERVICE_ACCOUNT,
            artifacts_bucket=run_context.artifacts_bucket,
            registry_url=run_context.registry_url,
            region=region,
            kubernetes_version=platform.kubernetes_version,
            pushgateway_url=scraped_pushgateway,
            datasets_claim=naming.DATASETS_CLAIM if platform.shared_storage.enabled else None,
            default_queue=cfg.queues.default_name,
        )
        jobs = Jobs(
            "jobs",
            JobsArgs(
                cfg.jobs,
                job_context,
                after=[
                    addons,
                    runs_namespace,
                    queues,
                    storage,
                    registry,
                    *(p for p in (shared_storage, metrics) if p is not None),
                ],
                cluster=cluster,
            ),
            opts=in_cluster,
        )
    services = None
    if cfg.services:
        services = Services(
            "services",
            ServicesArgs(
                cfg.services,
                ServiceContext(
                    namespace=naming.SERVICES_NAMESPACE,
                    registry_url=run_context.registry_url,
                    region=region,
                    kubernetes_version=platform.kubernetes_version,
                    vpc_cidr=str(platform.network.cidr),
                    scraped=platform.observability.enabled,
                ),
                cluster.oidc_provider_arn,
                cluster.oidc_provider_url,
                cluster=cluster,
                tags=tags,
                after=[addons, registry],
            ),
            opts=in_cluster,
        )

    observability_summary = None
    if platform.observability.enabled:
        scraped_ports = {s.name: port for s in cfg.services if (port := metrics_port(s)) is not None}
        observability = Observability(
            "observability",
            ObservabilityArgs(
                cluster_name,
                region,
                platform.kubernetes_version,
                platform.observability,
                cluster.oidc_provider_arn,
                cluster.oidc_provider_url,
                tags,
                cluster,
                scrape_pushgateway=platform.metrics.enabled,
                service_metrics_ports=scraped_ports,
                services_namespace=services.namespace if services is not None else None,
            ),
            # The add-on's pods need nodes (Addons waits for them); the collector scrapes Kueue, which Addons installs.
            opts=pulumi.ResourceOptions(providers=[k8s_provider], depends_on=[addons]),
        )
        service_views = tuple(ServiceView(s.name, s.replicas.min, s.name in scraped_ports) for s in cfg.services)
        alerts = Alerts(
            "alerts",
            AlertsArgs(
                cluster_name,
                alarm_rules(
                    cluster_name, platform.observability.alarms, cfg.queues.names(), service_views, platform.metrics.enabled
                ),
                platform.observability.alarms.subscriptions,
                tags,
            ),
        )
        dashboard = Dashboard(
            "dashboard",
            DashboardArgs(
                DashboardSpec(
                    cluster_name,
                    region,
                    cfg.queues.names(),
                    spend_model(platform),
                    spot_rule_name="",  # filled from spot_rule_name below, once the rule exists
                    services=service_views,
                    run_metrics=platform.metrics.enabled,
                    log_groups={
                        kind: naming.container_insights_log_group(cluster_name, kind)
                        for kind in naming.CONTAINER_INSIGHTS_LOG_KINDS
                    },
                ),
                alerts.alarm_arns,
                observability.spot_rule_name,
            ),
        )
        # Where to look: the CLI reads the log groups from here (`simfleet logs` reads "application").
        observability_summary = {
            "dashboardUrl": dashboard.url,
            "dashboardName": dashboard.name,
            "logGroups": observability.log_groups,
            "alarmTopicArn": alerts.topic_arn,
            "alarms": alerts.alarm_names,
            "addonVersion": observability.addon_version,
            "collectorNamespace": observability.collector_namespace,
            "pushgatewayScrapeIntervalSeconds": naming.PUSHGATEWAY_SCRAPE_INTERVAL_SECONDS if platform.metrics.enabled else None,
        }

    pulumi.export("clusterName", cluster.eks_cluster_name)
    pulumi.export("kubeconfig", pulumi.Output.secret(cluster.kubeconfig_json))
    pulumi.export("oidcProviderArn", cluster.oidc_provider_arn)
    pulumi.export("checkpointsBucket", storage.checkpoints_bucket)
    pulumi.export("artifactsBucket", storage.artifacts_bucket)
    pulumi.export("repositoryUrls", registry.repository_urls)
    pulumi.export("runsNamespace", runs_namespace.namespace)
    pulumi.export("runs", runs.summary)
    pulumi.export("jobs", jobs.summary if jobs is not None else {})
    # Researchers' view of the queues: which exist, the default, each team's nominal GPUs per flavor.
    pulumi.export("queues", queues_summary(cfg.queues))
    pulumi.export("services", services.summary if services is not None else {})
    # For jobs and runs: the claim to mount and the Pushgateway to push to (null when the piece is off).
    pulumi.export(
        "sharedStorage",
        shared_storage_summary(shared_storage, imports.summary if imports is not None else None)
        if shared_storage is not None
        else None,
    )
    pulumi.export("metrics", {"pushgatewayUrl": metrics.pushgateway_url} if metrics is not None else None)
    # Dashboard URL, log groups (the one place `simfleet logs` finds them), alarm topic and alarms; null when off.
    pulumi.export("observability", observability_summary)
