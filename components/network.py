"""The VPC: one private and one public subnet per AZ, NAT egress, an S3 gateway endpoint, and the deployer security group."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.tags import merge_tags
from config import NetworkConfig

# Each AZ's private subnet is 1/8 of the VPC (prefix + 3): pods take VPC addresses through the VPC CNI,
# so the private side gets the room. The last eighth is split again into eight small public subnets,
# which only hold NAT gateways and load balancers.
SPLIT_BITS = 3
MAX_AZS = 2**SPLIT_BITS - 1  # the last private-sized block is the public one


@dataclass(frozen=True)
class SubnetPlan:
    az_index: int
    private: ipaddress.IPv4Network
    public: ipaddress.IPv4Network


def carve_subnets(cidr: ipaddress.IPv4Network, az_count: int) -> list[SubnetPlan]:
    """Private = the i-th prefix+3 block of the VPC; public = the i-th prefix+3 block of the VPC's last one."""
    if not 1 <= az_count <= MAX_AZS:
        raise ValueError(f"az_count must be between 1 and {MAX_AZS}, got {az_count}")
    blocks = list(cidr.subnets(prefixlen_diff=SPLIT_BITS))
    public_blocks = list(blocks[-1].subnets(prefixlen_diff=SPLIT_BITS))
    return [SubnetPlan(i, blocks[i], public_blocks[i]) for i in range(az_count)]


def first_zones(names: list[str], wanted: int, region: str) -> list[str]:
    """The first `wanted` AZs, or an error naming the config key when the region has fewer."""
    if len(names) < wanted:
        raise ValueError(f"network.availabilityZones is {wanted} but {region} has only {len(names)} available AZs")
    return names[:wanted]


@dataclass(frozen=True)
class NetworkArgs:
    config: NetworkConfig
    cluster_name: str
    tags: dict[str, str]
    region: str


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: pulumi.Output[list[str]]
    private_subnet_ids: pulumi.Output[list[str]]
    deployer_security_group_id: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("simfleet:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.config
        cluster = args.cluster_name

        def tags(resource_name: str, **extra: str) -> dict[str, str]:
            return merge_tags(args.tags, extra, name=resource_name)

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=str(cfg.cidr),
            # EKS needs both: nodes register by private DNS name and the private API endpoint resolves in-VPC.
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags=tags(f"{cluster}-vpc"),
            opts=child,
        )

        # Only zones that need no opt-in: Local and Wavelength Zones cannot hold EKS control-plane subnets.
        zones = aws.get_availability_zones_output(
            state="available",
            filters=[aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        wanted = cfg.availability_zones
        zone_names = zones.names.apply(lambda names: first_zones(names, wanted, args.region))

        # Subnet role tags let the AWS Load Balancer Controller find subnets; the cluster tag marks them as
        # shared with this cluster (awsx vpc.ts / EKS subnet requirements).
        cluster_tag = {f"kubernetes.io/cluster/{cluster}": "shared"}
        public_role = {"kubernetes.io/role/elb": "1", **cluster_tag}
        private_role = {"kubernetes.io/role/internal-elb": "1", **cluster_tag}

        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags(f"{cluster}-igw"), opts=child)
        public_rt = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=vpc.id, tags=tags(f"{cluster}-public"), opts=child)
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )

        public_subnets: list[aws.ec2.Subnet] = []
        private_subnets: list[aws.ec2.Subnet] = []
        for plan in carve_subnets(cfg.cidr, wanted):
            i = plan.az_index
            az = zone_names[i]
            public = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=vpc.id,
                cidr_block=str(plan.public),
                availability_zone=az,
                # Only NAT gateways (with EIPs) and load balancers live here; nothing should get a public IP by accident.
                map_public_ip_on_launch=False,
                tags=az.apply(lambda z: tags(f"{cluster}-public-{z}", **public_role)),
                opts=child,
            )
            private = aws.ec2.Subnet(
                f"{name}-private-{i}",
                vpc_id=vpc.id,
                cidr_block=str(plan.private),
                availability_zone=az,
                map_public_ip_on_launch=False,
                tags=az.apply(lambda z: tags(f"{cluster}-private-{z}", **private_role)),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-assoc-{i}", subnet_id=public.id, route_table_id=public_rt.id, opts=child
            )
            public_subnets.append(public)
            private_subnets.append(private)

        # single: one NAT in the first public subnet (cheap; egress depends on one AZ). perAz: one per AZ,
        # so an AZ outage cannot cut the others' egress and there is no cross-AZ data charge.
        nat_count = wanted if cfg.nat_gateways == "perAz" else 1
        nats: list[aws.ec2.NatGateway] = []
        for i in range(nat_count):
            eip = aws.ec2.Eip(f"{name}-nat-eip-{i}", domain="vpc", tags=tags(f"{cluster}-nat-{i}"), opts=child)
            nats.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{i}",
                    allocation_id=eip.id,
                    subnet_id=public_subnets[i].id,
                    tags=tags(f"{cluster}-nat-{i}"),
                    # The NAT needs the IGW attached before it can route out.
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                )
            )

        # One route table per private subnet even with a single NAT, so switching to perAz only changes routes.
        private_rts: list[aws.ec2.RouteTable] = []
        for i, subnet in enumerate(private_subnets):
            rt = aws.ec2.RouteTable(f"{name}-private-rt-{i}", vpc_id=vpc.id, tags=tags(f"{cluster}-private-{i}"), opts=child)
            aws.ec2.Route(
                f"{name}-private-default-{i}",
                route_table_id=rt.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nats[i % len(nats)].id,
                opts=child,
            )
            aws.ec2.RouteTableAssociation(f"{name}-private-assoc-{i}", subnet_id=subnet.id, route_table_id=rt.id, opts=child)
            private_rts.append(rt)

        # Checkpoints, artifacts and image layers (ECR serves them from S3) are the bulk of egress; a gateway
        # endpoint is free and keeps that traffic off the NAT's per-GB processing charge.
        aws.ec2.VpcEndpoint(
            f"{name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{args.region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in private_rts],
            tags=tags(f"{cluster}-s3"),
            opts=child,
        )

        # The deploy runner's group. It lives with the network, not the cluster, because the runner must exist
        # before the cluster does: on a first deploy the network comes up alone (SIMFLEET_BOOTSTRAP=network), a
        # runner starts in a private subnet with this group, and the cluster security group admits it on 443.
        deployer = aws.ec2.SecurityGroup(
            f"{name}-deployer",
            vpc_id=vpc.id,
            description=f"Deploy runners of {cluster}; the EKS API admits this group on 443",
            tags=tags(f"{cluster}-deployer"),
            opts=child,
        )
        # HTTPS out is all a runner needs (GitHub, PyPI, Pulumi Cloud, the AWS APIs, the cluster endpoint); DNS via
        # the VPC resolver and time sync are not subject to security groups. No ingress: sessions go through SSM.
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-deployer-https",
            security_group_id=deployer.id,
            description="HTTPS to AWS APIs, the EKS endpoint and the deploy tooling",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4="0.0.0.0/0",
            tags=tags(f"{cluster}-deployer-https"),
            opts=child,
        )

        self.vpc_id = vpc.id
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public_subnets]).apply(list)
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private_subnets]).apply(list)
        self.deployer_security_group_id = deployer.id
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
                "deployerSecurityGroupId": self.deployer_security_group_id,
            }
        )


def refuse_bootstrap_over_cluster(cluster_name: str, existing_clusters: Sequence[str]) -> None:
    """Phase 1 of a first deploy registers only the network. On a stack whose cluster already exists that would
    delete the cluster and everything after it, so the phase refuses to run there."""
    if cluster_name in existing_clusters:
        raise pulumi.RunError(
            f"SIMFLEET_BOOTSTRAP=network is for a first deploy only, but the EKS cluster {cluster_name} already exists: "
            "this run would delete it and everything in it. Unset SIMFLEET_BOOTSTRAP and run `pulumi up` from a "
            "runner that reaches the API endpoint (docs/operators.md, 'First deploy (bootstrap)')."
        )
