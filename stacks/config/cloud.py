"""Config of a `<env>-cloud` stack: the Azure OpenShift cluster that serves models in confidential VMs."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Literal

from pydantic import Field, SecretStr

from stacks.config.base import (
    AzureRegion,
    Cidr,
    Guid,
    Model,
    Problem,
    StackId,
    confidential_size_problem,
    nested,
    overlapping,
)
from stacks.config.workloads import ImagePullSettings, ModelSettings, OpenShiftAiSettings, OscSettings


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

    # --- cluster layer (stacks/config/workloads.py) ---
    osc: OscSettings
    openshift_ai: OpenShiftAiSettings
    models: list[ModelSettings] = []
    image_pull: ImagePullSettings = ImagePullSettings()
    nvcr_pull_key: SecretStr | None = None
    """nvcr.io pull key (an NGC key, ideally pull-only) for `imagePull.mode: pullSecret`; a cloud-side credential."""

    def rules(self) -> Iterator[Problem]:
        return workload_rules(self)


def workload_rules(config: CloudConfig) -> Iterator[Problem]:
    """Cross-section rules of the cluster layer: models against peer pods, image pulls and each other."""
    sizes = config.peer_pods.instance_sizes
    names: set[str] = set()
    for i, model in enumerate(config.models):
        yield from nested(f"models[{i}]", model.problems())
        if model.name in names:
            yield Problem(f"models[{i}].name", f"{model.name} is used by another model")
        names.add(model.name)
        if model.machine_type not in sizes:
            yield Problem(f"models[{i}].machineType", f"{model.machine_type} is not in peerPods.instanceSizes ({', '.join(sizes)}); CAA refuses sizes not listed there")
        # ROOT_VOLUME_SIZE is in GB (CAA azure provider, DiskSizeGB); image and cache sizes are GiB.
        needed_gi = model.image_size_gi + model.model_cache_gi
        if config.osc.root_volume_size_gb * 10**9 < needed_gi * 2**30:
            yield Problem("osc.rootVolumeSizeGb", f"{config.osc.root_volume_size_gb} GB cannot hold model {model.name}: image {model.image_size_gi} GiB + cache {model.model_cache_gi} GiB")
    needs_pull_key = config.image_pull.mode == "pullSecret" and config.models
    if needs_pull_key and config.nvcr_pull_key is None:
        yield Problem("nvcrPullKey", f"is required with imagePull.mode pullSecret: pulumi config set --secret nvcrPullKey <pull-only NGC key> -s {config.stack.name}")
    if config.image_pull.mode == "kbs" and config.nvcr_pull_key is not None:
        yield Problem("nvcrPullKey", "is not used with imagePull.mode kbs (KBS holds the registry credential); remove it so the cloud side holds none")
