"""Azure resource IDs: built from names known at plan time, and parsed from config.

Pure functions, no Pulumi: the config models validate IDs with them, components derive stable
role assignment scopes from them before the resources exist.
"""

from __future__ import annotations

import re
import uuid

_GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_RG = r"[-\w._()]{1,90}"
_NAME = r"[-\w.]{1,80}"
_VERSION = r"\d+\.\d+\.\d+"

RESOURCE_GROUP_ID = re.compile(rf"^/subscriptions/(?P<subscription>{_GUID})/resourceGroups/(?P<resource_group>{_RG})$")
VNET_ID = re.compile(
    rf"^/subscriptions/(?P<subscription>{_GUID})/resourceGroups/(?P<resource_group>{_RG})"
    rf"/providers/Microsoft\.Network/virtualNetworks/(?P<vnet>{_NAME})$"
)
SUBNET_ID = re.compile(VNET_ID.pattern[:-1] + rf"/subnets/(?P<subnet>{_NAME})$")
NSG_ID = re.compile(
    rf"^/subscriptions/(?P<subscription>{_GUID})/resourceGroups/(?P<resource_group>{_RG})"
    rf"/providers/Microsoft\.Network/networkSecurityGroups/(?P<nsg>{_NAME})$"
)
# An image version in an Azure Compute Gallery of a subscription, or in a community gallery (CAA treats
# IDs starting /CommunityGalleries/ as community images: cloud-api-adaptor src/cloud-providers/azure/provider.go).
GALLERY_IMAGE_VERSION_ID = re.compile(
    rf"^/subscriptions/(?P<subscription>{_GUID})/resourceGroups/(?P<resource_group>{_RG})"
    rf"/providers/Microsoft\.Compute/galleries/(?P<gallery>[\w.]{{1,80}})/images/(?P<image>{_NAME})/versions/(?P<version>{_VERSION})$"
)
COMMUNITY_IMAGE_VERSION_ID = re.compile(
    rf"^/CommunityGalleries/(?P<gallery>{_NAME})/Images/(?P<image>{_NAME})/Versions/(?P<version>{_VERSION})$"
)


class _AnyOf:
    """Matches when one of the patterns does (their group names may repeat)."""

    def __init__(self, *patterns: re.Pattern[str]):
        self.patterns = patterns

    def match(self, value: str) -> re.Match[str] | None:
        return next((m for p in self.patterns if (m := p.match(value))), None)

    def fullmatch(self, value: str) -> re.Match[str] | None:
        return next((m for p in self.patterns if (m := p.fullmatch(value))), None)


IMAGE_VERSION_ID = _AnyOf(GALLERY_IMAGE_VERSION_ID, COMMUNITY_IMAGE_VERSION_ID)

# Fixed namespace of this toolkit's role assignment and role definition names (uuid5).
NAMESPACE = uuid.UUID("6f1c3c2e-5d0a-4f55-9a57-2b8e0c6d7a41")


def subscription_id(subscription: str) -> str:
    return f"/subscriptions/{subscription}"


def resource_group_id(subscription: str, resource_group: str) -> str:
    return f"{subscription_id(subscription)}/resourceGroups/{resource_group}"


def network_id(subscription: str, resource_group: str, kind: str, name: str) -> str:
    """`kind` is the Microsoft.Network type path: virtualNetworks, networkSecurityGroups, natGateways."""
    return f"{resource_group_id(subscription, resource_group)}/providers/Microsoft.Network/{kind}/{name}"


def subnet_id(vnet_id: str, subnet: str) -> str:
    return f"{vnet_id}/subnets/{subnet}"


def gallery_image_id(subscription: str, resource_group: str, gallery: str, image: str) -> str:
    return f"{resource_group_id(subscription, resource_group)}/providers/Microsoft.Compute/galleries/{gallery}/images/{image}"


def role_definition_id(subscription: str, role: str) -> str:
    return f"{subscription_id(subscription)}/providers/Microsoft.Authorization/roleDefinitions/{role}"


def stable_guid(*parts: str) -> str:
    """A GUID that is the same for the same parts on every run (role assignment and definition names)."""
    return str(uuid.uuid5(NAMESPACE, "|".join(parts)))
