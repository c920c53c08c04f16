"""Network: subnet carving, subnet role tags, NAT layout (single vs perAz) and the S3 gateway endpoint."""

from __future__ import annotations

import ipaddress
import itertools
from typing import Any

import pytest

from components.network import Network, NetworkArgs, carve_subnets, first_zones
from config import NetworkConfig

CLUSTER = "simfleet-test"
TAGS = {"simfleet:stack": "test", "cost-center": "robotics-research"}
SUBNET = "aws:ec2/subnet:Subnet"
NAT = "aws:ec2/natGateway:NatGateway"
ROUTE = "aws:ec2/route:Route"


def network(**overrides: Any) -> NetworkConfig:
    return NetworkConfig.model_validate({"cidr": "10.40.0.0/16", "availabilityZones": 2, "natGateways": "single", **overrides})


def build(pulumi_mocks, cfg: NetworkConfig):
    return pulumi_mocks(lambda: Network("net", NetworkArgs(cfg, CLUSTER, TAGS, "us-east-1")))


def ids(rec) -> dict[str, str]:
    """Physical id the mocks returned for each URN, to follow references between resources."""
    return {urn: reg.id for urn, reg in rec.monitor.resources.items()}


def subnets(rec, kind: str) -> list:
    return sorted((r for r in rec.of_type(SUBNET) if f"-{kind}-" in r.name), key=lambda r: r.name)


# ------------------------------------------------------------------ pure carving


@pytest.mark.parametrize(("prefix", "azs"), itertools.product(range(16, 21), range(2, 7)))
def test_carving_stays_inside_the_vpc_without_overlaps(prefix: int, azs: int) -> None:
    vpc = ipaddress.IPv4Network(f"10.0.0.0/{prefix}")
    plans = carve_subnets(vpc, azs)
    blocks = [p.private for p in plans] + [p.public for p in plans]
    assert len(plans) == azs
    for block in blocks:
        assert block.subnet_of(vpc), f"{block} is outside {vpc}"
    for a, b in itertools.combinations(blocks, 2):
        assert not a.overlaps(b), f"{a} overlaps {b}"
    assert all(p.private.prefixlen == prefix + 3 for p in plans)
    assert all(p.public.prefixlen == prefix + 6 for p in plans)


def test_carving_for_a_slash_16() -> None:
    plans = carve_subnets(ipaddress.IPv4Network("10.40.0.0/16"), 3)
    assert [str(p.private) for p in plans] == ["10.40.0.0/19", "10.40.32.0/19", "10.40.64.0/19"]
    # The public subnets come from the last /19 (10.40.224.0/19), split into /22s.
    assert [str(p.public) for p in plans] == ["10.40.224.0/22", "10.40.228.0/22", "10.40.232.0/22"]


def test_carving_refuses_more_azs_than_private_blocks() -> None:
    with pytest.raises(ValueError, match="az_count"):
        carve_subnets(ipaddress.IPv4Network("10.40.0.0/16"), 8)


# ------------------------------------------------------------------ component


def test_vpc_has_dns_support_and_hostnames(pulumi_mocks) -> None:
    vpc = build(pulumi_mocks, network()).one("aws:ec2/vpc:Vpc").inputs
    assert vpc["cidrBlock"] == "10.40.0.0/16"
    assert vpc["enableDnsSupport"] is True and vpc["enableDnsHostnames"] is True
    assert vpc["tags"]["Name"] == f"{CLUSTER}-vpc" and vpc["tags"]["cost-center"] == "robotics-research"


def test_subnets_per_az_with_role_and_cluster_tags(pulumi_mocks) -> None:
    rec = build(pulumi_mocks, network(availabilityZones=3))
    private, public = subnets(rec, "private"), subnets(rec, "public")
    assert [s.inputs["cidrBlock"] for s in private] == ["10.40.0.0/19", "10.40.32.0/19", "10.40.64.0/19"]
    assert [s.inputs["cidrBlock"] for s in public] == ["10.40.224.0/22", "10.40.228.0/22", "10.40.232.0/22"]
    # One subnet of each kind per AZ, first three AZs of the region.
    assert [s.inputs["availabilityZone"] for s in private] == ["us-east-1a", "us-east-1b", "us-east-1c"]
    assert [s.inputs["availabilityZone"] for s in public] == ["us-east-1a", "us-east-1b", "us-east-1c"]
    cluster_tag = f"kubernetes.io/cluster/{CLUSTER}"
    for s in private:
        tags = s.inputs["tags"]
        assert tags["kubernetes.io/role/internal-elb"] == "1", s.urn
        assert "kubernetes.io/role/elb" not in tags, s.urn
        assert tags[cluster_tag] == "shared" and tags["Name"].startswith(f"{CLUSTER}-private-us-east-1"), s.urn
        assert tags["cost-center"] == "robotics-research"
    for s in public:
        tags = s.inputs["tags"]
        assert tags["kubernetes.io/role/elb"] == "1", s.urn
        assert "kubernetes.io/role/internal-elb" not in tags, s.urn
        assert tags[cluster_tag] == "shared" and s.inputs["mapPublicIpOnLaunch"] is False, s.urn


def test_single_nat_serves_every_private_subnet(pulumi_mocks) -> None:
    rec = build(pulumi_mocks, network(availabilityZones=3, natGateways="single"))
    by_urn = ids(rec)
    nats = rec.of_type(NAT)
    assert len(nats) == 1 and len(rec.of_type("aws:ec2/eip:Eip")) == 1
    first_public = next(s for s in subnets(rec, "public") if s.name == "net-public-0")
    assert nats[0].inputs["subnetId"] == by_urn[first_public.urn]
    private_defaults = [r for r in rec.of_type(ROUTE) if "private-default" in r.name]
    assert len(private_defaults) == 3
    assert {r.inputs["natGatewayId"] for r in private_defaults} == {by_urn[nats[0].urn]}


def test_per_az_nat_each_private_subnet_routes_to_its_own_az(pulumi_mocks) -> None:
    rec = build(pulumi_mocks, network(cidr="10.50.0.0/16", availabilityZones=3, natGateways="perAz"))
    by_urn = ids(rec)
    nats = sorted(rec.of_type(NAT), key=lambda r: r.name)
    assert len(nats) == 3 and len(rec.of_type("aws:ec2/eip:Eip")) == 3
    public_ids = [by_urn[s.urn] for s in subnets(rec, "public")]
    assert [n.inputs["subnetId"] for n in nats] == public_ids
    routes = {r.name: r.inputs for r in rec.of_type(ROUTE)}
    tables = {r.name: by_urn[r.urn] for r in rec.of_type("aws:ec2/routeTable:RouteTable")}
    assocs = {r.name: r.inputs for r in rec.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")}
    private_ids = [by_urn[s.urn] for s in subnets(rec, "private")]
    for i in range(3):
        route = routes[f"net-private-default-{i}"]
        assert route["destinationCidrBlock"] == "0.0.0.0/0"
        assert route["natGatewayId"] == by_urn[nats[i].urn]
        assert route["routeTableId"] == tables[f"net-private-rt-{i}"]
        assert assocs[f"net-private-assoc-{i}"] == {"subnetId": private_ids[i], "routeTableId": tables[f"net-private-rt-{i}"]}


def test_public_subnets_route_to_the_internet_gateway(pulumi_mocks) -> None:
    rec = build(pulumi_mocks, network())
    by_urn = ids(rec)
    igw = rec.one("aws:ec2/internetGateway:InternetGateway")
    route = rec.one(ROUTE, "net-public-default").inputs
    assert route["gatewayId"] == by_urn[igw.urn] and route["destinationCidrBlock"] == "0.0.0.0/0"
    public_rt = by_urn[rec.one("aws:ec2/routeTable:RouteTable", "net-public-rt").urn]
    public_assocs = [r for r in rec.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation") if "public" in r.name]
    assert len(public_assocs) == 2 and all(a.inputs["routeTableId"] == public_rt for a in public_assocs)
    # NAT gateways wait for the IGW: a NAT in a VPC without an attached IGW fails to create.
    for nat in rec.of_type(NAT):
        assert igw.urn in nat.options.get("dependsOn", []), nat.urn


def test_s3_gateway_endpoint_on_every_private_route_table_only(pulumi_mocks) -> None:
    rec = build(pulumi_mocks, network(availabilityZones=3))
    by_urn = ids(rec)
    endpoint = rec.one("aws:ec2/vpcEndpoint:VpcEndpoint").inputs
    assert endpoint["vpcEndpointType"] == "Gateway"
    assert endpoint["serviceName"] == "com.amazonaws.us-east-1.s3"
    private_rts = sorted(by_urn[r.urn] for r in rec.of_type("aws:ec2/routeTable:RouteTable") if "private" in r.name)
    assert len(private_rts) == 3
    assert sorted(endpoint["routeTableIds"]) == private_rts


def test_outputs_list_the_subnet_ids(pulumi_mocks) -> None:
    captured: dict[str, Any] = {}

    def program() -> None:
        net = Network("net", NetworkArgs(network(), CLUSTER, TAGS, "us-east-1"))
        net.private_subnet_ids.apply(lambda v: captured.__setitem__("private", v))
        net.public_subnet_ids.apply(lambda v: captured.__setitem__("public", v))
        net.vpc_id.apply(lambda v: captured.__setitem__("vpc", v))

    rec = pulumi_mocks(program)
    by_urn = ids(rec)
    assert captured["private"] == [by_urn[s.urn] for s in subnets(rec, "private")]
    assert captured["public"] == [by_urn[s.urn] for s in subnets(rec, "public")]
    assert captured["vpc"] == by_urn[rec.one("aws:ec2/vpc:Vpc").urn]


def test_every_child_is_parented_to_the_component(pulumi_mocks) -> None:
    rec = build(pulumi_mocks, network())
    component = rec.one("simfleet:network:Network")
    children = [r for r in rec.all if r is not component]
    assert children and all(r.parent == component.urn for r in children), [r.name for r in children if r.parent != component.urn]


def test_too_few_azs_in_the_region_fails_with_a_clear_message() -> None:
    assert first_zones(["us-east-1a", "us-east-1b", "us-east-1c"], 2, "us-east-1") == ["us-east-1a", "us-east-1b"]
    with pytest.raises(ValueError, match="availabilityZones is 3 but eu-north-1 has only 2 available AZs"):
        first_zones(["eu-north-1a", "eu-north-1b"], 3, "eu-north-1")


# ------------------------------------------------------------------ the deployer security group


def test_deployer_security_group_lives_in_the_vpc_with_https_egress_only(pulumi_mocks) -> None:
    rec = build(pulumi_mocks, network())
    vpc = rec.one("aws:ec2/vpc:Vpc")
    group = rec.one("aws:ec2/securityGroup:SecurityGroup", "net-deployer")
    assert group.inputs["vpcId"] == ids(rec)[vpc.urn]
    assert "ingress" not in group.inputs and "egress" not in group.inputs  # rules are separate resources
    assert group.inputs["tags"]["Name"] == f"{CLUSTER}-deployer"
    [egress] = rec.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    assert egress.inputs["securityGroupId"] == ids(rec)[group.urn]
    assert (egress.inputs["ipProtocol"], egress.inputs["fromPort"], egress.inputs["toPort"]) == ("tcp", 443, 443)
    assert egress.inputs["cidrIpv4"] == "0.0.0.0/0"
    assert rec.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") == []


def test_bootstrap_refuses_to_run_over_an_existing_cluster() -> None:
    import pulumi

    from components.network import refuse_bootstrap_over_cluster

    refuse_bootstrap_over_cluster("simfleet-prod", ["simfleet-dev"])
    with pytest.raises(pulumi.RunError, match="simfleet-prod already exists"):
        refuse_bootstrap_over_cluster("simfleet-prod", ["simfleet-prod"])
