"""The cluster VNet for ARO, and the pod VM subnet with its own outbound route and NSG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure_native
from pulumi_azure_native import network

# The peer pod VM's agent-protocol-forwarder, which CAA on the worker dials
# (cloud-api-adaptor src/cloud-api-adaptor/pkg/forwarder/forwarder.go, DefaultListenPort).
AGENT_FORWARDER_PORT = 15150


@dataclass(frozen=True)
class ClusterNetworkArgs:
    resource_group: pulumi.Input[str]
    location: str
    vnet_name: str
    vnet_cidr: str
    master_subnet_cidr: str
    worker_subnet_cidr: str
    tags: Mapping[str, str]


class ClusterNetwork(pulumi.ComponentResource):
    """VNet with ARO's master and worker subnets.

    ARO's subnet settings (MicrosoftDocs azure-docs articles/openshift/create-cluster.md): both subnets
    carry the Microsoft.ContainerRegistry service endpoint, the master subnet has private link service
    network policies disabled so the ARO service can reach the cluster. ARO's resource provider attaches
    its own NSG to both subnets at creation (articles/openshift/howto-bring-nsg.md), so this stack
    ignores that field instead of detaching the NSG on the next update.
    """

    def __init__(self, name: str, args: ClusterNetworkArgs, provider: azure_native.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("confidential-ai:azure:ClusterNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        aro_owns_nsg = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(ignore_changes=["networkSecurityGroup"]))
        self.vnet = network.VirtualNetwork(
            f"{name}-vnet",
            virtual_network_name=args.vnet_name,
            resource_group_name=args.resource_group,
            location=args.location,
            address_space={"address_prefixes": [args.vnet_cidr]},
            tags=dict(args.tags),
            opts=child,
        )
        endpoints = [{"service": "Microsoft.ContainerRegistry"}]
        self.master_subnet = network.Subnet(
            f"{name}-master",
            subnet_name="master",
            virtual_network_name=self.vnet.name,
            resource_group_name=args.resource_group,
            address_prefix=args.master_subnet_cidr,
            service_endpoints=endpoints,
            private_link_service_network_policies="Disabled",
            opts=aro_owns_nsg,
        )
        # Azure rejects concurrent changes to subnets of one VNet (AnotherOperationInProgress): one at a time.
        self.worker_subnet = network.Subnet(
            f"{name}-worker",
            subnet_name="worker",
            virtual_network_name=self.vnet.name,
            resource_group_name=args.resource_group,
            address_prefix=args.worker_subnet_cidr,
            service_endpoints=endpoints,
            opts=pulumi.ResourceOptions.merge(aro_owns_nsg, pulumi.ResourceOptions(depends_on=[self.master_subnet])),
        )
        self.register_outputs({"vnetId": self.vnet.id, "masterSubnetId": self.master_subnet.id, "workerSubnetId": self.worker_subnet.id})


@dataclass(frozen=True)
class PodVmNetworkArgs:
    resource_group: pulumi.Input[str]
    """Where the NAT gateway, its public IP and the NSG live (the pod VM resource group)."""
    location: str
    name_prefix: str
    vnet_resource_group: pulumi.Input[str]
    vnet_name: pulumi.Input[str]
    subnet_cidr: str
    worker_subnet_cidr: str
    vxlan_port: int
    tags: Mapping[str, str]
    subnet_after: Sequence[pulumi.Resource] = ()
    """Subnets of the same VNet created before this one: Azure changes a VNet's subnets one at a time
    (AnotherOperationInProgress)."""


class PodVmNetwork(pulumi.ComponentResource):
    """The pod VM subnet: outbound through a NAT gateway with a static IP, inbound only from the workers.

    Pod VMs pull images and reach KBS over the internet; a NAT gateway gives them a route and one
    address the trusted side can allow-list (coco-pattern issue 42). The NSG admits only CAA's VXLAN
    tunnel and agent forwarder connections from the worker subnet.
    """

    def __init__(self, name: str, args: PodVmNetworkArgs, provider: azure_native.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("confidential-ai:azure:PodVmNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        self.public_ip = network.PublicIPAddress(
            f"{name}-nat-ip",
            public_ip_address_name=f"{args.name_prefix}-nat-ip",
            resource_group_name=args.resource_group,
            location=args.location,
            sku={"name": "Standard", "tier": "Regional"},
            public_ip_allocation_method="Static",
            public_ip_address_version="IPv4",
            tags=dict(args.tags),
            opts=child,
        )
        self.nat_gateway = network.NatGateway(
            f"{name}-nat",
            nat_gateway_name=f"{args.name_prefix}-nat",
            resource_group_name=args.resource_group,
            location=args.location,
            sku={"name": "Standard"},
            public_ip_addresses=[{"id": self.public_ip.id}],
            tags=dict(args.tags),
            opts=child,
        )
        self.nsg = network.NetworkSecurityGroup(
            f"{name}-nsg",
            network_security_group_name=f"{args.name_prefix}-nsg",
            resource_group_name=args.resource_group,
            location=args.location,
            security_rules=_pod_vm_rules(args),
            tags=dict(args.tags),
            opts=child,
        )
        self.subnet = network.Subnet(
            f"{name}-subnet",
            subnet_name="pod-vm",
            virtual_network_name=args.vnet_name,
            resource_group_name=args.vnet_resource_group,
            address_prefix=args.subnet_cidr,
            nat_gateway={"id": self.nat_gateway.id},
            network_security_group={"id": self.nsg.id},
            default_outbound_access=False,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(args.subnet_after))),
        )
        self.register_outputs({"subnetId": self.subnet.id, "nsgId": self.nsg.id, "natPublicIp": self.public_ip.ip_address})


def _pod_vm_rules(args: PodVmNetworkArgs) -> list[network.SecurityRuleArgsDict]:
    def rule(name: str, priority: int, direction: str, access: str, protocol: str, source: str, destination: str, port: str) -> network.SecurityRuleArgsDict:
        return {
            "name": name,
            "priority": priority,
            "direction": direction,
            "access": access,
            "protocol": protocol,
            "source_address_prefix": source,
            "source_port_range": "*",
            "destination_address_prefix": destination,
            "destination_port_range": port,
        }

    workers, pod_vms = args.worker_subnet_cidr, args.subnet_cidr
    return [
        rule("allow-vxlan-from-workers", 100, "Inbound", "Allow", "Udp", workers, pod_vms, str(args.vxlan_port)),
        rule("allow-agent-forwarder-from-workers", 110, "Inbound", "Allow", "Tcp", workers, pod_vms, str(AGENT_FORWARDER_PORT)),
        # Overrides Azure's default AllowVnetInBound/AllowAzureLoadBalancerInBound (priorities 65000+).
        rule("deny-all-other-inbound", 4096, "Inbound", "Deny", "*", "*", "*", "*"),
        rule("allow-vxlan-to-workers", 100, "Outbound", "Allow", "Udp", pod_vms, workers, str(args.vxlan_port)),
        # Image pulls and KBS, through the NAT gateway.
        rule("allow-internet-outbound", 110, "Outbound", "Allow", "*", pod_vms, "Internet", "*"),
        rule("deny-other-vnet-outbound", 4096, "Outbound", "Deny", "*", "*", "VirtualNetwork", "*"),
    ]
