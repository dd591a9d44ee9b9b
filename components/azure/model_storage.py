"""Azure Blob storage for encrypted models: a private container and a read-only SAS for the model pods.

It only ever holds ciphertext (`scripts.encrypt_model` output), so a cloud-side credential is fine: the
SAS lets the init container read blobs of this one container, nothing else, until it expires. Upload
is the owner's job (`az storage blob upload-batch`, with their own Azure login).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure_native
from pulumi_azure_native import storage

# Service SAS fields (Azure Storage REST "Create a service SAS"): signed resource `c` (container),
# permission `r` (read blob content, no list/write/delete), HTTPS only.
SAS_RESOURCE = "c"
SAS_PERMISSIONS = "r"
SAS_PROTOCOLS = "https"


@dataclass(frozen=True)
class ModelStorageArgs:
    resource_group: pulumi.Input[str]
    location: str
    account_name: str
    """Globally unique, 3-24 lowercase letters and digits."""
    container_name: str
    sas_expiry: str
    """ISO 8601 UTC instant the read SAS stops working (from config, so plans stay identical)."""
    tags: Mapping[str, str]


class ModelStorage(pulumi.ComponentResource):
    """StorageV2 account (no public blob access, TLS 1.2, HTTPS only), a private container, a read SAS."""

    container_url: str
    read_sas: pulumi.Output[str]
    """A Pulumi secret."""

    def __init__(self, name: str, args: ModelStorageArgs, provider: azure_native.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("confidential-ai:azure:ModelStorage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        self.account = storage.StorageAccount(
            f"{name}-account",
            account_name=args.account_name,
            resource_group_name=args.resource_group,
            location=args.location,
            kind="StorageV2",
            sku={"name": "Standard_LRS"},
            allow_blob_public_access=False,
            minimum_tls_version="TLS1_2",
            enable_https_traffic_only=True,
            # A service SAS is signed with the account key (the pod reads with it); Entra ID uploads work too.
            allow_shared_key_access=True,
            tags=dict(args.tags),
            opts=child,
        )
        self.container = storage.BlobContainer(
            f"{name}-container",
            account_name=self.account.name,
            container_name=args.container_name,
            resource_group_name=args.resource_group,
            public_access="None",
            opts=child,
        )
        sas = storage.list_storage_account_service_sas_output(
            account_name=self.account.name,
            resource_group_name=args.resource_group,
            canonicalized_resource=f"/blob/{args.account_name}/{args.container_name}",
            resource=SAS_RESOURCE,
            permissions=SAS_PERMISSIONS,
            protocols=SAS_PROTOCOLS,
            shared_access_expiry_time=args.sas_expiry,
            opts=pulumi.InvokeOutputOptions(parent=self, provider=provider, depends_on=[self.container]),
        )
        self.read_sas = pulumi.Output.secret(sas.service_sas_token)
        self.container_url = f"https://{args.account_name}.blob.core.windows.net/{args.container_name}"
        self.register_outputs({"containerUrl": self.container_url})
