"""A new Azure Red Hat OpenShift cluster and its admin kubeconfig."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure_native
from pulumi_azure_native import redhatopenshift

from components.azure import ids
from components.azure.identity import assign_role

# Built-in role "Network Contributor" (MicrosoftDocs azure-docs articles/role-based-access-control/built-in-roles/networking.md).
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"


@dataclass(frozen=True)
class AroClusterArgs:
    subscription: str
    resource_group: pulumi.Input[str]
    location: str
    cluster_name: str
    version: str
    domain: str
    managed_resource_group: str
    """Created by ARO; must not exist before."""
    fips_validated_modules: bool
    encryption_at_host: bool
    master_vm_size: str
    worker_vm_size: str
    worker_count: int
    worker_disk_size_gb: int
    api_visibility: str
    ingress_visibility: str
    pod_cidr: str
    service_cidr: str
    vnet: pulumi.Input[str]
    vnet_id: str
    """The ID `vnet` resolves to."""
    master_subnet: pulumi.Input[str]
    worker_subnet: pulumi.Input[str]
    client_id: str
    client_object_id: str
    client_secret: pulumi.Output[str]
    resource_provider_object_id: str
    pull_secret: pulumi.Output[str]
    tags: Mapping[str, str]
    vnet_settled: Sequence[pulumi.Resource] = ()
    """Other subnets of the VNet: ARO's resource provider updates the cluster subnets while creating the
    cluster, and Azure changes a VNet's subnets one at a time."""


class AroCluster(pulumi.ComponentResource):
    """The cluster (protected against deletion), after its two principals can manage the VNet.

    ARO's resource provider and the cluster's service principal both need Network Contributor on the
    VNet before creation (MicrosoftDocs azure-docs articles/openshift/create-cluster.md).
    `kubeconfig` is the admin kubeconfig, decoded, a Pulumi secret.
    """

    def __init__(self, name: str, args: AroClusterArgs, provider: azure_native.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("confidential-ai:azure:AroCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        network_contributor = ids.role_definition_id(args.subscription, NETWORK_CONTRIBUTOR)
        principals = {"cluster-principal": args.client_object_id, "resource-provider": args.resource_provider_object_id}
        assignments = [
            assign_role(
                f"{name}-{label}-network",
                scope=args.vnet,
                stable_scope=args.vnet_id,
                role_definition_id=network_contributor,
                stable_role=network_contributor,
                principal_id=principal,
                description=f"ARO {args.cluster_name}: {label.replace('-', ' ')} manages the cluster VNet",
                opts=child,
            )
            for label, principal in principals.items()
        ]
        self.cluster = redhatopenshift.OpenShiftCluster(
            name,
            resource_name_=args.cluster_name,
            resource_group_name=args.resource_group,
            location=args.location,
            cluster_profile={
                "domain": args.domain,
                "version": args.version,
                "resource_group_id": ids.resource_group_id(args.subscription, args.managed_resource_group),
                "pull_secret": args.pull_secret,
                "fips_validated_modules": "Enabled" if args.fips_validated_modules else "Disabled",
            },
            service_principal_profile={"client_id": args.client_id, "client_secret": args.client_secret},
            network_profile={"pod_cidr": args.pod_cidr, "service_cidr": args.service_cidr},
            master_profile={
                "vm_size": args.master_vm_size,
                "subnet_id": args.master_subnet,
                "encryption_at_host": "Enabled" if args.encryption_at_host else "Disabled",
            },
            worker_profiles=[
                {
                    "name": "worker",
                    "vm_size": args.worker_vm_size,
                    "disk_size_gb": args.worker_disk_size_gb,
                    "subnet_id": args.worker_subnet,
                    "count": args.worker_count,
                    "encryption_at_host": "Enabled" if args.encryption_at_host else "Disabled",
                }
            ],
            apiserver_profile={"visibility": args.api_visibility},
            ingress_profiles=[{"name": "default", "visibility": args.ingress_visibility}],
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(
                    protect=True,
                    depends_on=[*assignments, *args.vnet_settled],
                    additional_secret_outputs=["clusterProfile", "servicePrincipalProfile"],
                ),
            ),
        )
        credentials = redhatopenshift.list_open_shift_cluster_admin_credentials_output(
            resource_group_name=args.resource_group,
            resource_name=self.cluster.name,
            opts=pulumi.InvokeOutputOptions(parent=self, provider=provider),
        )
        self.kubeconfig: pulumi.Output[str] = pulumi.Output.secret(credentials.kubeconfig.apply(lambda encoded: base64.b64decode(encoded).decode()))
        self.api_url: pulumi.Output[str] = self.cluster.apiserver_profile.apply(lambda profile: profile.url)
        self.console_url: pulumi.Output[str] = self.cluster.console_profile.apply(lambda profile: profile.url)
        self.register_outputs({"clusterId": self.cluster.id, "apiUrl": self.api_url, "consoleUrl": self.console_url})
