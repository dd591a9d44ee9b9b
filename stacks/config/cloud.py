"""Config of a `<env>-cloud` stack: the Azure OpenShift cluster that serves models in confidential VMs."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field, SecretStr

from components import nim, trust_bundle
from components.azure import ids
from stacks import versions
from stacks.config.base import (
    AzureRegion,
    Cidr,
    Guid,
    Model,
    OpenShiftVersion,
    Problem,
    StackId,
    confidential_size_problem,
    matching,
    overlapping,
    pin_fits,
)
from stacks.config.workloads import ImagePullSettings, ModelSettings, OpenShiftAiSettings, OscSettings


VnetId = Annotated[str, matching(ids.VNET_ID, "a VNet ID (/subscriptions/<guid>/resourceGroups/<rg>/providers/Microsoft.Network/virtualNetworks/<name>)")]
SubnetId = Annotated[str, matching(ids.SUBNET_ID, "a subnet ID (<VNet ID>/subnets/<name>)")]
NsgId = Annotated[str, matching(ids.NSG_ID, "an NSG ID (/subscriptions/<guid>/resourceGroups/<rg>/providers/Microsoft.Network/networkSecurityGroups/<name>)")]
ImageVersionId = Annotated[
    str,
    matching(
        ids.IMAGE_VERSION_ID,
        "an image version ID: /subscriptions/<guid>/resourceGroups/<rg>/providers/Microsoft.Compute/galleries/<gallery>"
        "/images/<definition>/versions/<x.y.z> or /CommunityGalleries/<gallery>/Images/<definition>/Versions/<x.y.z>",
    ),
]
ApiUrl = Annotated[str, matching(re.compile(r"^https://[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$"), "an https://host[:port] URL")]
# An ARO domain: a DNS label (cluster at <label>.<region>.aroapp.io) or a custom DNS name you own.
AroDomain = Annotated[str, matching(re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"), "a DNS label or DNS name (lowercase)")]
ResourceGroupName = Annotated[str, Field(pattern=r"^[-\w._()]{1,89}[-\w_()]\Z")]
VmSize = Annotated[str, Field(pattern=r"^Standard_[A-Za-z0-9_]+\Z")]

# vCPU counts of the AMD SEV-SNP confidential sizes that exist (MicrosoftDocs azure-compute-docs,
# dcasv5-dcadsv5-series.md and ecasv5-ecadsv5-series.md): a size matching the naming scheme but not
# in this table is a typo, and CAA would fail VM creation only when a pod asks for it.
_SNP_VCPUS = {"DC": {2, 4, 8, 16, 32, 48, 64, 96}, "EC": {2, 4, 8, 16, 20, 32, 48, 64, 96}}
_SNP_SIZE = re.compile(r"^Standard_(?P<series>DC|EC)(?P<vcpus>\d+)a(d)?s_v5$")


def _unknown_size(size: str) -> str | None:
    match = _SNP_SIZE.match(size)
    if match and int(match["vcpus"]) not in _SNP_VCPUS[match["series"]]:
        return f"{size} is not an existing confidential VM size (the {match['series']}as_v5 series has {sorted(_SNP_VCPUS[match['series']])} vCPUs)"
    return None


class AzureSettings(Model):
    subscription_id: Guid
    tenant_id: Guid
    location: AzureRegion
    resource_group: ResourceGroupName
    """Created by this stack; holds the network, the ARO cluster resource, the gallery and the pod VMs."""


class NetworkSettings(Model):
    """The cluster's VNet. `aro` creates it from these CIDRs; `existing` describes the VNet you bring."""

    vnet_cidr: Cidr
    master_subnet_cidr: Cidr | None = None
    """Required for `aro`; for `existing`, given only to check the pod VM subnet does not overlap it."""
    worker_subnet_cidr: Cidr
    """Source of the only traffic the pod VM NSG admits (CAA's VXLAN tunnel and agent forwarder)."""
    pod_vm_subnet_cidr: Cidr
    vxlan_port: int = Field(default=9000, ge=1024, le=65535)
    pod_cidr: Cidr = "10.128.0.0/14"
    """OpenShift pod network (ARO networkProfile.podCidr); must not overlap the VNet."""
    service_cidr: Cidr = "172.30.0.0/16"

    def rules(self) -> Iterator[Problem]:
        subnets = {
            "masterSubnetCidr": self.master_subnet_cidr,
            "workerSubnetCidr": self.worker_subnet_cidr,
            "podVmSubnetCidr": self.pod_vm_subnet_cidr,
        }
        subnets = {key: cidr for key, cidr in subnets.items() if cidr is not None}
        vnet = ipaddress.IPv4Network(self.vnet_cidr)
        for key, cidr in subnets.items():
            if not ipaddress.IPv4Network(cidr).subnet_of(vnet):
                yield Problem(key, f"{cidr} is not inside vnetCidr ({self.vnet_cidr})")
        yield from overlapping(subnets)
        yield from overlapping({"vnetCidr": self.vnet_cidr, "podCidr": self.pod_cidr, "serviceCidr": self.service_cidr})


class AroSettings(Model):
    """A new Azure Red Hat OpenShift cluster (Microsoft.RedHatOpenShift/openShiftClusters, API 2023-11-22)."""

    version: OpenShiftVersion
    """An ARO install version (`az aro get-versions -l <region>`; stacks/versions.py ARO_INSTALL_VERSIONS), e.g. 4.20.15."""
    domain: AroDomain
    cluster_resource_group: ResourceGroupName | None = None
    """Resource group ARO creates for the cluster's VMs; must not exist. Default `aro-<first label of domain>`."""
    master_vm_size: VmSize = "Standard_D8s_v5"
    worker_vm_size: VmSize = "Standard_D4s_v5"
    worker_count: int = Field(default=3, ge=3, le=60)
    worker_disk_size_gb: int = Field(default=128, ge=128, le=2048)
    api_visibility: Literal["Public", "Private"] = "Public"
    ingress_visibility: Literal["Public", "Private"] = "Public"
    fips_validated_modules: bool = False
    encryption_at_host: bool = False
    client_id: Guid
    """Application (client) ID of the cluster's service principal; its secret is `aroClientSecret`."""
    client_object_id: Guid
    """Object ID of that service principal (`az ad sp show --id <clientId> --query id`): gets Network Contributor on the VNet."""
    resource_provider_object_id: Guid
    """Object ID, in your tenant, of the ARO resource provider principal
    (`az ad sp list --filter "appId eq 'f1dd0a37-89c6-4e07-bcd1-ffd3d43d8875'" --query [0].id`)."""

    @property
    def managed_resource_group(self) -> str:
        return self.cluster_resource_group or f"aro-{self.domain.split('.')[0]}"

    def dns_zone(self, location: str) -> str:
        return aro_dns_zone(self.domain, location)


def aro_dns_zone(domain: str, location: str) -> str:
    """ARO's DNS zone: `<domain>.<region>.aroapp.io` for a bare label, the domain itself when it is a DNS name."""
    return domain if "." in domain else f"{domain}.{location}.aroapp.io"


class ExistingClusterSettings(Model):
    """An OpenShift cluster on Azure that you bring; its kubeconfig is the secret `existingKubeconfig`."""

    api_url: ApiUrl
    openshift_version: OpenShiftVersion
    """The cluster's OpenShift version (`oc get clusterversion version -o jsonpath='{.status.desired.version}'`),
    checked against the version matrix (stacks/versions.py)."""
    console_url: ApiUrl | None = None
    vnet_id: VnetId
    """The cluster's VNet. Without podVmSubnetId a pod VM subnet (network.podVmSubnetCidr) is created in it."""
    pod_vm_subnet_id: SubnetId | None = None
    """A pod VM subnet you manage (with its own outbound route); give nsgId with it."""
    nsg_id: NsgId | None = None

    def rules(self) -> Iterator[Problem]:
        if (self.pod_vm_subnet_id is None) != (self.nsg_id is None):
            missing = "nsgId" if self.nsg_id is None else "podVmSubnetId"
            yield Problem(missing, "required with " + ("podVmSubnetId" if missing == "nsgId" else "nsgId") + ": bring both the pod VM subnet and its NSG, or neither")
        if self.pod_vm_subnet_id and not self.pod_vm_subnet_id.startswith(self.vnet_id + "/subnets/"):
            yield Problem("podVmSubnetId", f"is not a subnet of vnetId ({self.vnet_id})")


class ClusterSettings(Model):
    mode: Literal["aro", "existing"]
    aro: AroSettings | None = None
    existing: ExistingClusterSettings | None = None

    def rules(self) -> Iterator[Problem]:
        for mode in ("aro", "existing"):
            present = getattr(self, mode) is not None
            if mode == self.mode and not present:
                yield Problem(mode, f"required key is missing (mode is {self.mode})")
            elif mode != self.mode and present:
                yield Problem(mode, f"must not be set when mode is {self.mode}")


class PodVmImageSettings(Model):
    """The gallery image definition this stack creates when it hosts the pod VM image (OSC's image job defaults)."""

    host_gallery: bool = False
    gallery_name: str = Field(default="PodVMGallery", pattern=r"^[A-Za-z0-9][\w.]{0,78}[A-Za-z0-9]\Z")
    definition: str = Field(default="podvm-image", pattern=r"^[A-Za-z0-9][-\w.]{0,78}[A-Za-z0-9]\Z")
    publisher: str = "RedHat"
    offer: str = "OSC-PodVM"
    sku: str = "OSC-PodVM"


class PeerPodsSettings(Model):
    instance_sizes: list[str] = Field(min_length=1)
    """Every VM size a pod may ask for (AZURE_INSTANCE_SIZES)."""
    default_instance_size: str
    """The size of a pod that names none (AZURE_INSTANCE_SIZE)."""
    client_id: Guid
    """Application (client) ID of the service principal CAA uses; its secret is `peerPodsClientSecret`."""
    object_id: Guid
    """Object ID of that service principal: the principal of its role assignments."""
    image_id: ImageVersionId
    """The GPU-capable pod VM image version (AZURE_IMAGE_ID), pinned: its measurements are reference values."""
    max_gpu_pod_vms: int = Field(default=1, ge=0, le=100)
    """How many GPU pod VMs may run at once; preflight checks the quota for them when the GPU size is in instanceSizes."""
    image: PodVmImageSettings = PodVmImageSettings()

    def rules(self) -> Iterator[Problem]:
        for i, size in enumerate(self.instance_sizes):
            if reason := confidential_size_problem(size) or _unknown_size(size):
                yield Problem(f"instanceSizes[{i}]", reason)
        if self.default_instance_size not in self.instance_sizes:
            yield Problem("defaultInstanceSize", f"{self.default_instance_size} is not in instanceSizes")


class ModelStorageSettings(Model):
    """An Azure Storage account and private container for encrypted models (components/azure/model_storage.py)."""

    account_name: Annotated[str, matching(r"^[a-z0-9]{3,24}$", "a storage account name (3-24 lowercase letters and digits, globally unique)")]
    """The storage account to create (globally unique in Azure)."""
    container_name: Annotated[str, matching(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$", "a blob container name (3-63 lowercase letters, digits, single '-')")] = "models"
    """Its private container; each model's ciphertext goes under `<container>/<model name>/`."""
    sas_expiry: Annotated[str, matching(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$", "a UTC instant like 2027-06-30T00:00:00Z")]
    """When the pods' read-only SAS stops working: renew it (change this, pulumi up) before then."""


class PinnedKey(Model):
    """A trust bundle verification key: the trusted stack's `trustBundleKey` output, copied as it is (public)."""

    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: str
    y: str
    kid: str
    """The key's RFC 7638 thumbprint; the bundle's header names it."""
    alg: Literal["ES256"] = "ES256"
    use: Literal["sig"] = "sig"

    def rules(self) -> Iterator[Problem]:
        try:
            trust_bundle.verify_key(self.model_dump())
        except trust_bundle.BundleError as err:
            yield Problem("x", str(err))
            return
        if self.kid != (expected := trust_bundle.thumbprint(self.model_dump())):
            yield Problem("kid", f"is not the key's RFC 7638 thumbprint ({expected}): copy the trustBundleKey output as it is")


class TrustBundleSettings(Model):
    """Read the trusted side's public values from a bundle it signed instead of its state (docs/security-model.md)."""

    file: str = Field(min_length=1)
    """The bundle file the pipeline hands over (the trusted stack's `trustBundles.<this stack>`), relative to the project directory."""
    keys: list[PinnedKey] = Field(min_length=1, max_length=2)
    """The trusted stack's `trustBundleKey`: one key, two only while a rollover overlaps old and new."""
    minimum_version: int = Field(ge=1)
    """The lowest bundle `version` accepted: raise it to the version deployed so an older bundle cannot be replayed."""

    def rules(self) -> Iterator[Problem]:
        if len({key.kid for key in self.keys}) != len(self.keys):
            yield Problem("keys", "pins the same key twice")


class CloudConfig(Model):
    stack: StackId
    role: Literal["cloud"]
    trusted_stack: Annotated[str, matching(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", "a stack name like <org>/confidential-ai/<env>-trusted")] | None = None
    """StackReference name of this environment's trusted stack; default `organization/confidential-ai/<env>-trusted`.
    Only for a single-backend lab: with `trustBundle` the cloud stack reads no trusted state."""
    trust_bundle: TrustBundleSettings | None = None
    """Read the trusted side from its signed bundle (required when the trusted state is on premises)."""
    azure: AzureSettings
    network: NetworkSettings
    cluster: ClusterSettings
    peer_pods: PeerPodsSettings
    aro_pull_secret: SecretStr | None = None
    """Red Hat pull secret (JSON) for `aro`."""
    aro_client_secret: SecretStr | None = None
    """Secret of the ARO cluster service principal (cluster.aro.clientId)."""
    existing_kubeconfig: SecretStr | None = None
    """Admin kubeconfig of the cluster you bring (`existing`)."""
    peer_pods_client_secret: SecretStr
    """Secret of the peer-pod service principal (peerPods.clientId)."""

    # --- cluster layer (stacks/config/workloads.py) ---
    osc: OscSettings
    openshift_ai: OpenShiftAiSettings
    models: list[ModelSettings] = []
    image_pull: ImagePullSettings = ImagePullSettings()
    nvcr_pull_key: SecretStr | None = None
    """nvcr.io pull key (an NGC key, ideally pull-only) for `imagePull.mode: pullSecret`; a cloud-side credential."""
    model_storage: ModelStorageSettings | None = None
    """Create the blob storage for encrypted models (models with `source: encrypted`)."""

    @property
    def ingress_domain(self) -> str:
        """Where Routes are served: configured, or the ARO cluster's `apps.<zone>`."""
        if self.openshift_ai.ingress_domain:
            return self.openshift_ai.ingress_domain
        assert self.cluster.aro is not None, "rules() require openshiftAi.ingressDomain for existing clusters"
        return f"apps.{self.cluster.aro.dns_zone(self.azure.location)}"

    @property
    def openshift_version(self) -> tuple[str, str]:
        """(config key, version) of the cloud cluster's OpenShift."""
        if self.cluster.aro:
            return "cluster.aro.version", self.cluster.aro.version
        assert self.cluster.existing is not None
        return "cluster.existing.openshiftVersion", self.cluster.existing.openshift_version

    @property
    def trusted_stack_name(self) -> str:
        return self.trusted_stack or f"organization/confidential-ai/{self.stack.env}-trusted"

    def rules(self) -> Iterator[Problem]:
        if self.trust_bundle is not None and self.trusted_stack is not None:
            yield Problem("trustedStack", "is not used with trustBundle (the bundle replaces the StackReference); remove it")
        yield from workload_rules(self)
        needed = {"aro": ("aroPullSecret", "aroClientSecret"), "existing": ("existingKubeconfig",)}[self.cluster.mode]
        for key in needed:
            if getattr(self, _field(key)) is None:
                yield Problem(key, f"required when cluster.mode is {self.cluster.mode}: pulumi config set --secret {key} ... -s {self.stack.name}")
        if self.cluster.aro:
            yield from self._aro_rules(self.cluster.aro)
        if self.cluster.existing:
            yield from self._existing_rules(self.cluster.existing)
            if self.openshift_ai.ingress_domain is None:
                yield Problem("openshiftAi.ingressDomain", "required when cluster.mode is existing (oc get ingresses.config cluster -o jsonpath='{.spec.domain}')")
        yield from self._image_rules()
        yield from version_rules(self)

    def _aro_rules(self, aro: AroSettings) -> Iterator[Problem]:
        if self.network.master_subnet_cidr is None:
            yield Problem("network.masterSubnetCidr", "required key is missing (cluster.mode aro creates the master subnet)")
        if aro.managed_resource_group.lower() == self.azure.resource_group.lower():
            yield Problem("cluster.aro.clusterResourceGroup", f"must differ from azure.resourceGroup: ARO creates {aro.managed_resource_group} itself and it must not exist")

    def _existing_rules(self, existing: ExistingClusterSettings) -> Iterator[Problem]:
        for key in ("vnetId", "podVmSubnetId", "nsgId"):
            value = getattr(existing, _field(key))
            if value and value.split("/")[2] != self.azure.subscription_id:
                yield Problem(f"cluster.existing.{key}", f"is in subscription {value.split('/')[2]}, not azure.subscriptionId ({self.azure.subscription_id}): pod VMs are created in azure.subscriptionId")

    def _image_rules(self) -> Iterator[Problem]:
        gallery = ids.GALLERY_IMAGE_VERSION_ID.match(self.peer_pods.image_id)
        if gallery and gallery["subscription"] != self.azure.subscription_id:
            yield Problem("peerPods.imageId", f"is in subscription {gallery['subscription']}: use a gallery in azure.subscriptionId (the peer-pod identity is granted read on it there) or a community gallery")
        image = self.peer_pods.image
        if not image.host_gallery:
            return
        hosted = ids.gallery_image_id(self.azure.subscription_id, self.azure.resource_group, image.gallery_name, image.definition)
        if not self.peer_pods.image_id.lower().startswith(hosted.lower() + "/versions/"):
            yield Problem("peerPods.imageId", f"must be a version of the hosted image definition {hosted} (peerPods.image.hostGallery is true)")


def _field(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def workload_rules(config: CloudConfig) -> Iterator[Problem]:
    """Cross-section rules of the cluster layer: models against peer pods, image pulls and each other."""
    sizes = config.peer_pods.instance_sizes
    names: set[str] = set()
    for i, model in enumerate(config.models):
        if model.name in names:
            yield Problem(f"models[{i}].name", f"{model.name} is used by another model")
        names.add(model.name)
        if model.machine_type not in sizes:
            yield Problem(f"models[{i}].machineType", f"{model.machine_type} is not in peerPods.instanceSizes ({', '.join(sizes)}); CAA refuses sizes not listed there")
        # ROOT_VOLUME_SIZE is in GB (CAA azure provider, DiskSizeGB); image, cache and scratch sizes are GiB.
        needed_gi = model.image_size_gi + model.model_cache_gi + nim.SCRATCH_GI
        if config.osc.root_volume_size_gb * 10**9 < needed_gi * 2**30:
            yield Problem(
                "osc.rootVolumeSizeGb",
                f"{config.osc.root_volume_size_gb} GB cannot hold model {model.name}: image {model.image_size_gi} GiB + cache {model.model_cache_gi} GiB + NIM scratch {nim.SCRATCH_GI} GiB",
            )
        # ModelSettings.rules already refused `encrypted` on a model whose source is not encrypted.
        if model.encrypted and model.encrypted.url is None and config.model_storage is None:
            yield Problem(f"models[{i}].encrypted.url", "is required unless modelStorage is set (the stack then serves the model from its container)")
    needs_pull_key = config.image_pull.mode == "pullSecret" and config.models
    if needs_pull_key and config.nvcr_pull_key is None:
        yield Problem("nvcrPullKey", f"is required with imagePull.mode pullSecret: pulumi config set --secret nvcrPullKey <pull-only NGC key> -s {config.stack.name}")
    if config.image_pull.mode == "kbs" and config.nvcr_pull_key is not None:
        yield Problem("nvcrPullKey", "is not used with imagePull.mode kbs (KBS holds the registry credential); remove it so the cloud side holds none")


def version_rules(config: CloudConfig) -> Iterator[Problem]:
    """The cluster's OpenShift, OpenShift AI and OSC against the version matrix (stacks/versions.py)."""
    if config.cluster.aro and config.cluster.aro.version not in versions.ARO_INSTALL_VERSIONS:
        offered = ", ".join(versions.ARO_INSTALL_VERSIONS)
        yield Problem("cluster.aro.version", f"{config.cluster.aro.version} is not an ARO install version (offered: {offered}; {versions.ARO_VERSIONS_SOURCE})")
        return
    cluster_key, cluster_version = config.openshift_version
    yield from pin_fits("openshiftAi.operator", config.openshift_ai.operator, versions.OPENSHIFT_AI, cluster_key, cluster_version, config.cluster.aro is not None)
    yield from pin_fits("osc.operator", config.osc.operator, versions.OSC, cluster_key, cluster_version, config.cluster.aro is not None)

