"""Role assignments with stable names, and the least-privilege roles of the peer-pod service principal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure_native
from pulumi_azure_native import authorization

from components.azure import ids

# What CAA does with the identity (cloud-api-adaptor src/cloud-providers/azure/provider.go): creates a
# NIC in the pod VM subnet with the pod VM NSG, creates a confidential VM from the gallery image with an
# implicit OS disk, deletes the VM, its disk and NIC, and reads VM sizes of the region at start-up.
POD_VM_OPERATOR_ACTIONS = (
    "Microsoft.Compute/virtualMachines/read",
    "Microsoft.Compute/virtualMachines/write",
    "Microsoft.Compute/virtualMachines/delete",
    "Microsoft.Compute/disks/read",
    "Microsoft.Compute/disks/write",
    "Microsoft.Compute/disks/delete",
    "Microsoft.Network/networkInterfaces/read",
    "Microsoft.Network/networkInterfaces/write",
    "Microsoft.Network/networkInterfaces/delete",
    "Microsoft.Network/networkInterfaces/join/action",
    "Microsoft.Network/networkSecurityGroups/read",
    "Microsoft.Network/networkSecurityGroups/join/action",
    "Microsoft.Network/virtualNetworks/subnets/read",
    "Microsoft.Network/virtualNetworks/subnets/join/action",
    "Microsoft.Compute/galleries/read",
    "Microsoft.Compute/galleries/images/read",
    "Microsoft.Compute/galleries/images/versions/read",
)
# Location-scoped reads exist only at subscription scope: the size list CAA loads at start-up
# (updateInstanceSizeSpecList) and the status of its long-running VM, disk and NIC operations.
REGION_READER_ACTIONS = (
    "Microsoft.Compute/locations/vmSizes/read",
    "Microsoft.Compute/locations/operations/read",
    "Microsoft.Network/locations/operations/read",
)


def assign_role(
    name: str,
    *,
    scope: pulumi.Input[str],
    stable_scope: str,
    role_definition_id: pulumi.Input[str],
    stable_role: str,
    principal_id: str,
    description: str,
    opts: pulumi.ResourceOptions,
) -> authorization.RoleAssignment:
    """A role assignment named uuid5(scope, role, principal), so previews never propose a replacement.

    `stable_scope`/`stable_role` are the IDs `scope`/`role_definition_id` will resolve to, known from
    config before the resources exist. `principal_type` avoids failures while a new principal replicates.
    """
    return authorization.RoleAssignment(
        name,
        role_assignment_name=ids.stable_guid(stable_scope.lower(), stable_role.lower(), principal_id),
        scope=scope,
        role_definition_id=role_definition_id,
        principal_id=principal_id,
        principal_type="ServicePrincipal",
        description=description,
        opts=opts,
    )


@dataclass(frozen=True)
class PeerPodIdentityArgs:
    subscription: str
    env: str
    principal_object_id: str
    resource_group: pulumi.Input[str]
    """ID of the pod VM resource group (VMs, disks, NICs, NSG), from the resource that creates it."""
    resource_group_id: str
    """The ID `resource_group` resolves to."""
    subnet: pulumi.Input[str]
    subnet_id: str
    """The ID `subnet` resolves to."""
    image_definition_id: str | None
    """A gallery image definition outside the pod VM resource group the VMs boot from; None otherwise."""


class PeerPodIdentity(pulumi.ComponentResource):
    """Custom roles listing exactly what CAA needs, assigned to its service principal at the narrowest scopes."""

    assignments: list[authorization.RoleAssignment]

    def __init__(self, name: str, args: PeerPodIdentityArgs, provider: azure_native.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("confidential-ai:azure:PeerPodIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        subscription_scope = ids.subscription_id(args.subscription)
        operator, operator_id = self._role(
            f"{name}-operator-role", args, "pod-vm-operator",
            f"confidential-ai peer pod VM operator ({args.env})",
            "Create and delete peer pod VMs, their disks and NICs in the pod VM subnet, from the pod VM image.",
            POD_VM_OPERATOR_ACTIONS, child,
        )
        reader, reader_id = self._role(
            f"{name}-region-reader-role", args, "region-reader",
            f"confidential-ai peer pod region reader ({args.env})",
            "Read the VM sizes of a region and the status of compute and network operations.",
            REGION_READER_ACTIONS, child,
        )
        scopes: list[tuple[str, pulumi.Input[str], str, authorization.RoleDefinition, str]] = [
            ("resource-group", args.resource_group, args.resource_group_id, operator, operator_id),
            ("subnet", args.subnet, args.subnet_id, operator, operator_id),
            ("subscription", subscription_scope, subscription_scope, reader, reader_id),
        ]
        if args.image_definition_id:
            scopes.append(("image", args.image_definition_id, args.image_definition_id, operator, operator_id))
        self.assignments = [
            assign_role(
                f"{name}-{label}",
                scope=scope,
                stable_scope=stable_scope,
                role_definition_id=role.id,
                stable_role=role_id,
                principal_id=args.principal_object_id,
                description=f"confidential-ai {args.env}: peer pods (CAA) on the {label.replace('-', ' ')}",
                opts=child,
            )
            for label, scope, stable_scope, role, role_id in scopes
        ]
        self.register_outputs({"roleAssignments": [a.id for a in self.assignments]})

    def _role(
        self, name: str, args: PeerPodIdentityArgs, key: str, role_name: str, description: str, actions: Sequence[str], opts: pulumi.ResourceOptions
    ) -> tuple[authorization.RoleDefinition, str]:
        guid = ids.stable_guid(args.subscription, args.env, key)
        subscription_scope = ids.subscription_id(args.subscription)
        role = authorization.RoleDefinition(
            name,
            role_definition_id=guid,
            role_name=role_name,
            description=description,
            role_type="CustomRole",
            scope=subscription_scope,
            assignable_scopes=[subscription_scope],
            permissions=[{"actions": list(actions)}],
            opts=opts,
        )
        return role, ids.role_definition_id(args.subscription, guid)
