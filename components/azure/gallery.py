"""The Azure Compute Gallery and image definition that host the pod VM image."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure_native
from pulumi_azure_native import compute


@dataclass(frozen=True)
class PodVmGalleryArgs:
    resource_group: pulumi.Input[str]
    location: str
    gallery_name: str
    definition: str
    publisher: str
    offer: str
    sku: str
    tags: Mapping[str, str]


class PodVmGallery(pulumi.ComponentResource):
    """Gallery plus a Gen2 Linux image definition that admits confidential VMs.

    CAA boots pod VMs as ConfidentialVM, which needs a `V2` definition with feature
    `SecurityType=ConfidentialVmSupported` (FACTS section 2; OSC image job defaults for the names).
    Image versions are published by the image build, not by this stack.
    """

    def __init__(self, name: str, args: PodVmGalleryArgs, provider: azure_native.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("confidential-ai:azure:PodVmGallery", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        self.gallery = compute.Gallery(
            f"{name}-gallery",
            gallery_name=args.gallery_name,
            resource_group_name=args.resource_group,
            location=args.location,
            description="confidential-ai peer pod VM images",
            tags=dict(args.tags),
            opts=child,
        )
        self.image = compute.GalleryImage(
            f"{name}-image",
            gallery_image_name=args.definition,
            gallery_name=self.gallery.name,
            resource_group_name=args.resource_group,
            location=args.location,
            os_type="Linux",
            os_state="Generalized",
            hyper_v_generation="V2",
            architecture="x64",
            features=[{"name": "SecurityType", "value": "ConfidentialVmSupported"}],
            identifier={"publisher": args.publisher, "offer": args.offer, "sku": args.sku},
            tags=dict(args.tags),
            opts=child,
        )
        self.register_outputs({"imageDefinitionId": self.image.id})
