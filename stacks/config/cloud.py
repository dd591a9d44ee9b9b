"""Config of a `<env>-cloud` stack: the Azure OpenShift cluster that serves models in confidential VMs."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from stacks.config.base import (
    AzureRegion,
    Cidr,
    Guid,
    Model,
    Problem,
    StackId,
    confidential_size_problem,
    overlapping,
)


class AzureSettings(Model):
    subscription_id: Guid
    tenant_id: Guid
    location: AzureRegion
    resource_group: str = Field(pattern=r"^[-\w._()]{1,89}[-\w_()]$")


class NetworkSettings(Model):
    vnet_cidr: Cidr
    master_subnet_cidr: Cidr
    worker_subnet_cidr: Cidr
    pod_vm_subnet_cidr: Cidr
    vxlan_port: int = Field(default=9000, ge=1024, le=65535)

    def rules(self) -> Iterator[Problem]:
        subnets = {
            "masterSubnetCidr": self.master_subnet_cidr,
            "workerSubnetCidr": self.worker_subnet_cidr,
            "podVmSubnetCidr": self.pod_vm_subnet_cidr,
        }
        vnet = ipaddress.IPv4Network(self.vnet_cidr)
        for key, cidr in subnets.items():
            if not ipaddress.IPv4Network(cidr).subnet_of(vnet):
                yield Problem(key, f"{cidr} is not inside vnetCidr ({self.vnet_cidr})")
        yield from overlapping(subnets)


class PeerPodsSettings(Model):
    instance_sizes: list[str] = Field(min_length=1)
    """Every VM size a pod may ask for (AZURE_INSTANCE_SIZES)."""
    default_instance_size: str
    """The size of a pod that names none (AZURE_INSTANCE_SIZE)."""

    def rules(self) -> Iterator[Problem]:
        for i, size in enumerate(self.instance_sizes):
            if reason := confidential_size_problem(size):
                yield Problem(f"instanceSizes[{i}]", reason)
        if self.default_instance_size not in self.instance_sizes:
            yield Problem("defaultInstanceSize", f"{self.default_instance_size} is not in instanceSizes")


class CloudConfig(Model):
    stack: StackId
    role: Literal["cloud"]
    trusted_stack: str | None = None
    """StackReference name of this environment's trusted stack; default `organization/confidential-ai/<env>-trusted`."""
    azure: AzureSettings
    network: NetworkSettings
    peer_pods: PeerPodsSettings

    @property
    def trusted_stack_name(self) -> str:
        return self.trusted_stack or f"organization/confidential-ai/{self.stack.env}-trusted"
