"""The managed node groups (system CPU + one GPU group per capacity type), their node role and launch templates."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

import naming
from catalog import load_catalog
from components.tags import merge_tags
from config import NodeGroupConfig, NodeGroupsConfig

# No AmazonEKS_CNI_Policy: the VPC CNI has its own IRSA role (components/pod_network.py), as the EKS user guide
# recommends ("Configure Amazon VPC CNI plugin to use IRSA", step 3: remove the CNI policy from the node role).
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly")
SYSTEM_AMI = "AL2023_x86_64_STANDARD"
GPU_AMI = "AL2023_x86_64_NVIDIA"  # NVIDIA driver + container toolkit preinstalled (EKS API Nodegroup.amiType)
ROOT_DEVICE = "/dev/xvda"  # root device of the EKS-optimized AL2023 AMIs

# Cluster Autoscaler reads these ASG tags to build a node template when a group has no nodes
# (kubernetes/autoscaler cluster-autoscaler/cloudprovider/aws/README.md, "Auto-Discovery Setup").
CA_TEMPLATE = "k8s.io/cluster-autoscaler/node-template"


def eks_taint_effect(kubernetes_effect: str) -> str:
    """NoSchedule -> NO_SCHEDULE: the EKS API spells taint effects in upper snake case."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", kubernetes_effect).upper()


def gpu_group_name(capacity: str) -> str:
    return "gpu-spot" if capacity == "spot" else "gpu-on-demand"


# The autoscaler's names for the GPU models in data/aws_catalog.json (kubernetes/autoscaler cluster-autoscaler-1.35.2,
# cloudprovider/aws/aws_cloud_provider.go availableGPUTypes, read 2026-12-07).
ACCELERATOR_TYPES = {
    "T4": "nvidia-tesla-t4",
    "A10G": "nvidia-a10g",
    "L4": "nvidia-l4",
    "L40S": "nvidia-l40s",
    "A100": "nvidia-tesla-a100",
    "V100": "nvidia-tesla-v100",
}


def accelerator(instance_types: Sequence[str]) -> str:
    """The value of k8s.amazonaws.com/accelerator for a group of these instance types.

    The Cluster Autoscaler's AWS guide asks GPU nodes to carry the label, valued with the GPU type, before they join
    ("Special note on GPU instances"); the autoscaler reads its presence to wait for the device plugin, and its value
    only for --gpu-total limits (unused here) and metrics. A node group's labels are one set for every node, so a group
    of two GPU models (g5 and g6: A10G and L4) names both, sorted, instead of naming one model for every node.
    """
    catalog = load_catalog().instances
    models = sorted({catalog[t].gpu_model or "" for t in instance_types if t in catalog} - {""})
    names = [ACCELERATOR_TYPES.get(m, f"nvidia-{m.lower()}") for m in models]
    return "-or-".join(names) or "nvidia"


def gpu_labels(instance_types: Sequence[str]) -> dict[str, str]:
    # gpu.present matches the NVIDIA device plugin chart's default node affinity, so no NFD is needed.
    return {
        naming.NODE_POOL_LABEL: "gpu",
        naming.GPU_PRESENT_LABEL: "true",
        naming.GPU_ACCELERATOR_LABEL: accelerator(instance_types),
    }


def scale_from_zero_tags(labels: dict[str, str], capacity_type: str, gpus_per_node: int) -> dict[str, str]:
    """ASG tags that tell the Cluster Autoscaler what a GPU node will look like before one exists.

    Without them CA cannot tell that an empty GPU group would satisfy a pending pod's GPU request,
    toleration and node selector, so it never scales the group up from zero. EKS does not copy node group
    labels/taints to the ASG, and CA reads the EKS API (eks:DescribeNodegroup) only for groups that have
    never had a node, so the tags are written explicitly. The auto-discovery tags
    (k8s.io/cluster-autoscaler/enabled and /<cluster>) are put on managed node group ASGs by EKS itself.
    """
    tags = {f"{CA_TEMPLATE}/label/{key}": value for key, value in labels.items()}
    # Pods select spot vs on-demand with this label; EKS sets it on the node, CA must know it in advance.
    tags[f"{CA_TEMPLATE}/label/{naming.CAPACITY_TYPE_LABEL}"] = capacity_type
    tags[f"{CA_TEMPLATE}/taint/{naming.GPU_TAINT_KEY}"] = f"{naming.GPU_TAINT_VALUE}:{naming.GPU_TAINT_EFFECT}"
    tags[f"{CA_TEMPLATE}/resources/{naming.GPU_RESOURCE}"] = str(gpus_per_node)
    return tags


@dataclass(frozen=True)
class NodeGroupsArgs:
    cluster_name: str
    config: NodeGroupsConfig
    # An output of the Cluster component: using it makes every node group wait for the control plane.
    eks_cluster_name: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[list[str]]
    tags: dict[str, str]
    # Node groups follow the control plane's minor version on upgrade; None keeps the version EKS picked.
    kubernetes_version: str | None = None
    # What must exist before the first node joins (the PodNetwork: aws-node's credentials come from its role).
    after: Sequence[pulumi.Resource] = ()


class NodeGroups(pulumi.ComponentResource):
    node_role_arn: pulumi.Output[str]
    group_names: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: NodeGroupsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("simfleet:nodegroups:NodeGroups", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self))
        role = aws.iam.Role(
            f"{name}-node-role",
            description=f"EKS managed nodes of {args.cluster_name}",
            assume_role_policy=partition.dns_suffix.apply(
                lambda suffix: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Principal": {"Service": f"ec2.{suffix}"}, "Action": "sts:AssumeRole"}],
                    }
                )
            ),
            tags=merge_tags(args.tags, {}, name=f"{args.cluster_name}-node"),
            opts=child,
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{policy}",
                role=role.name,
                policy_arn=pulumi.Output.concat("arn:", partition.partition, f":iam::aws:policy/{policy}"),
                opts=child,
            )
            for policy in NODE_POLICIES
        ]

        def node_group(
            key: str,
            group_cfg: NodeGroupConfig,
            *,
            ami_type: str,
            capacity_type: str,
            labels: dict[str, str],
            taints: list[aws.eks.NodeGroupTaintArgs],
        ) -> aws.eks.NodeGroup:
            group_tags = merge_tags(args.tags, {}, name=f"{args.cluster_name}-{key}")
            template = aws.ec2.LaunchTemplate(
                f"{name}-{key}-lt",
                description=f"{args.cluster_name} {key} nodes",
                # IMDSv2 only, with a hop limit of 1: a pod's packets to 169.254.169.254 cross one more hop than
                # the node's, so pods cannot read the node role's credentials and must use IRSA.
                metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                    http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
                ),
                block_device_mappings=[
                    aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                        device_name=ROOT_DEVICE,
                        ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                            volume_size=group_cfg.disk_gib, volume_type="gp3", encrypted="true", delete_on_termination="true"
                        ),
                    )
                ],
                # Managed node group tags stop at the node group; these reach the instances and volumes (cost reports).
                tag_specifications=[
                    aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=group_tags)
                    for kind in ("instance", "volume")
                ],
                update_default_version=True,
                tags=group_tags,
                opts=pulumi.ResourceOptions(parent=self),
            )
            return aws.eks.NodeGroup(
                f"{name}-{key}",
                cluster_name=args.eks_cluster_name,
                # A prefix, not a fixed name: replacing a group (e.g. new instance types) creates the new one first.
                node_group_name_prefix=f"{args.cluster_name}-{key}-",
                node_role_arn=role.arn,
                subnet_ids=args.private_subnet_ids,
                ami_type=ami_type,
                capacity_type=capacity_type,
                instance_types=list(group_cfg.instance_types),
                version=args.kubernetes_version,
                launch_template=aws.eks.NodeGroupLaunchTemplateArgs(id=template.id, version=template.latest_version.apply(str)),
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                    min_size=group_cfg.min_size, max_size=group_cfg.max_size, desired_size=group_cfg.desired
                ),
                labels=labels,
                taints=taints or None,
                tags=group_tags,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # The Cluster Autoscaler owns desiredSize after creation; resetting it on every `pulumi up`
                    # would undo scale-ups (killing running simulations) or strand pending pods.
                    ignore_changes=["scalingConfig.desiredSize"],
                    # Nodes cannot join without the worker policies, and EKS checks them at create time; nor become
                    # Ready before the VPC CNI has its role (args.after).
                    depends_on=[*attachments, *args.after],
                ),
            )

        cfg = args.config
        groups: dict[str, aws.eks.NodeGroup] = {
            "system": node_group(
                "system",
                cfg.system,
                ami_type=SYSTEM_AMI,
                capacity_type=naming.EKS_CAPACITY["onDemand"],
                labels={naming.NODE_POOL_LABEL: "system"},
                taints=[],
            )
        }
        gpu_taint = aws.eks.NodeGroupTaintArgs(
            key=naming.GPU_TAINT_KEY, value=naming.GPU_TAINT_VALUE, effect=eks_taint_effect(naming.GPU_TAINT_EFFECT)
        )
        for capacity in cfg.gpu.capacity:
            group_key = gpu_group_name(capacity)
            capacity_type = naming.EKS_CAPACITY[capacity]
            group = node_group(
                group_key,
                cfg.gpu,
                ami_type=GPU_AMI,
                capacity_type=capacity_type,
                labels=gpu_labels(cfg.gpu.instance_types),
                taints=[gpu_taint],
            )
            groups[group_key] = group
            asg_name = group.resources.apply(_asg_name)
            template_tags = scale_from_zero_tags(gpu_labels(cfg.gpu.instance_types), capacity_type, cfg.gpu.gpus_per_node)
            for key, value in template_tags.items():
                # Named after the tag key, so adding a label later does not rename (replace) the others.
                suffix = key.removeprefix(f"{CA_TEMPLATE}/").replace("/", "-")
                aws.autoscaling.Tag(
                    f"{name}-{group_key}-ca-{suffix}",
                    autoscaling_group_name=asg_name,
                    # ASG metadata for the autoscaler only; instances get their labels/taints from EKS.
                    tag=aws.autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=False),
                    opts=child,
                )

        self.node_role_arn = role.arn
        self.group_names = {key: group.node_group_name for key, group in groups.items()}
        self.register_outputs({"nodeRoleArn": self.node_role_arn, "groupNames": self.group_names})


def _asg_name(resources: Sequence[aws.eks.outputs.NodeGroupResource]) -> str:
    asgs = resources[0].autoscaling_groups if resources else None
    if not asgs or not asgs[0].name:
        raise ValueError("EKS reported no Auto Scaling group for the node group")
    return asgs[0].name
