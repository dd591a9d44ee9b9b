"""The cloud stack's Azure layer: network, the cluster (new ARO or brought), peer-pod identity, pod VM image.

Turns the typed config into component args, exports what operators and the trusted side need, and
hands the cluster layer an `AzureLayer`.
"""

from __future__ import annotations

import pulumi
import pulumi_azure_native as azure_native
from pulumi_azure_native import resources

from components.azure import ids
from components.azure.aro import AroCluster, AroClusterArgs
from components.azure.gallery import PodVmGallery, PodVmGalleryArgs
from components.azure.identity import PeerPodIdentity, PeerPodIdentityArgs
from components.azure.model_storage import ModelStorage, ModelStorageArgs
from components.azure.network import ClusterNetwork, ClusterNetworkArgs, PodVmNetwork, PodVmNetworkArgs
from components.kubernetes import cluster_provider
from stacks.config import CloudConfig
from stacks.config.base import secret_output
from stacks.contracts import AzureLayer, ModelStorageHandOff


def deploy_azure_layer(config: CloudConfig) -> AzureLayer:
    env, azure, net = config.stack.env, config.azure, config.network
    prefix = f"confidential-ai-{env}"
    tags = {"env": env, "managed-by": "confidential-ai"}
    provider = azure_native.Provider(
        "azure",
        subscription_id=azure.subscription_id,
        tenant_id=azure.tenant_id,
        location=azure.location,
    )
    in_azure = pulumi.ResourceOptions(provider=provider)
    group = resources.ResourceGroup(
        "resource-group",
        resource_group_name=azure.resource_group,
        location=azure.location,
        tags=tags,
        opts=in_azure,
    )
    group_id = ids.resource_group_id(azure.subscription_id, azure.resource_group)
    pod_vm_ready: list[pulumi.Resource] = []

    aro = config.cluster.aro
    existing = config.cluster.existing
    cluster: AroCluster | None = None
    nat_public_ip: pulumi.Output[str] | None = None
    if aro is not None:
        assert net.master_subnet_cidr is not None and config.aro_pull_secret and config.aro_client_secret  # config rules
        vnet_name = f"{prefix}-vnet"
        network = ClusterNetwork(
            "cluster-network",
            ClusterNetworkArgs(group.name, azure.location, vnet_name, net.vnet_cidr, net.master_subnet_cidr, net.worker_subnet_cidr, tags),
            provider,
        )
        vnet_id = ids.network_id(azure.subscription_id, azure.resource_group, "virtualNetworks", vnet_name)
        pod_vm_net = _pod_vm_network(config, prefix, group.name, group.name, network.vnet.name, provider, tags, after=[network.worker_subnet])
        cluster = AroCluster(
            "aro",
            AroClusterArgs(
                subscription=azure.subscription_id,
                resource_group=group.name,
                location=azure.location,
                cluster_name=prefix,
                version=aro.version,
                domain=aro.domain,
                managed_resource_group=aro.managed_resource_group,
                fips_validated_modules=aro.fips_validated_modules,
                encryption_at_host=aro.encryption_at_host,
                master_vm_size=aro.master_vm_size,
                worker_vm_size=aro.worker_vm_size,
                worker_count=aro.worker_count,
                worker_disk_size_gb=aro.worker_disk_size_gb,
                api_visibility=aro.api_visibility,
                ingress_visibility=aro.ingress_visibility,
                pod_cidr=net.pod_cidr,
                service_cidr=net.service_cidr,
                vnet=network.vnet.id,
                vnet_id=vnet_id,
                master_subnet=network.master_subnet.id,
                worker_subnet=network.worker_subnet.id,
                client_id=aro.client_id,
                client_object_id=aro.client_object_id,
                client_secret=secret_output(config.aro_client_secret),
                resource_provider_object_id=aro.resource_provider_object_id,
                pull_secret=secret_output(config.aro_pull_secret),
                tags=tags,
                vnet_settled=[pod_vm_net.subnet],
            ),
            provider,
        )
        kubeconfig, api_url, console_url = cluster.kubeconfig, cluster.api_url, cluster.console_url
        subnet, subnet_id = pod_vm_net.subnet.id, ids.subnet_id(vnet_id, "pod-vm")
        nsg = pod_vm_net.nsg.id
        nat_public_ip = pod_vm_net.public_ip.ip_address
        pod_vm_ready += [pod_vm_net]
    else:
        assert existing is not None and config.existing_kubeconfig  # config rules
        kubeconfig = secret_output(config.existing_kubeconfig)
        api_url, console_url = pulumi.Output.from_input(existing.api_url), pulumi.Output.from_input(existing.console_url)
        if existing.pod_vm_subnet_id and existing.nsg_id:
            subnet_id = existing.pod_vm_subnet_id
            subnet, nsg = pulumi.Output.from_input(subnet_id), pulumi.Output.from_input(existing.nsg_id)
        else:
            vnet = ids.VNET_ID.match(existing.vnet_id)
            assert vnet is not None  # validated by the config model
            pod_vm_net = _pod_vm_network(config, prefix, group.name, vnet["resource_group"], vnet["vnet"], provider, tags, after=[])
            subnet, subnet_id = pod_vm_net.subnet.id, ids.subnet_id(existing.vnet_id, "pod-vm")
            nsg = pod_vm_net.nsg.id
            nat_public_ip = pod_vm_net.public_ip.ip_address
            pod_vm_ready += [pod_vm_net]

    image = config.peer_pods.image
    if image.host_gallery:
        gallery = PodVmGallery(
            "pod-vm-gallery",
            PodVmGalleryArgs(group.name, azure.location, image.gallery_name, image.definition, image.publisher, image.offer, image.sku, tags),
            provider,
        )
        pod_vm_ready.append(gallery)
    identity = PeerPodIdentity(
        "peer-pods",
        PeerPodIdentityArgs(
            subscription=azure.subscription_id,
            env=env,
            principal_object_id=config.peer_pods.object_id,
            resource_group=group.id,
            resource_group_id=group_id,
            subnet=subnet,
            subnet_id=subnet_id,
            image_definition_id=_image_outside(config.peer_pods.image_id, azure.resource_group),
        ),
        provider,
    )
    pod_vm_ready.append(identity)

    kubernetes = cluster_provider("cloud-cluster", kubeconfig, f"{env}-cloud")
    pulumi.export("clusterApiUrl", api_url)
    pulumi.export("clusterConsoleUrl", console_url)
    pulumi.export("kubeconfig", pulumi.Output.secret(kubeconfig))
    pulumi.export("resourceGroup", group.name)
    pulumi.export("region", azure.location)
    pulumi.export("subscriptionId", azure.subscription_id)
    pulumi.export("podVmSubnetId", subnet)
    pulumi.export("podVmNsgId", nsg)
    pulumi.export("natPublicIp", nat_public_ip)
    pulumi.export("podVmImageId", config.peer_pods.image_id)
    model_storage = None
    if config.model_storage:
        settings = config.model_storage
        storage = ModelStorage(
            "model-storage",
            ModelStorageArgs(group.name, azure.location, settings.account_name, settings.container_name, settings.sas_expiry, tags),
            provider,
        )
        model_storage = ModelStorageHandOff(storage.container_url, storage.read_sas)
        # Where to upload the encrypted models (az storage blob upload-batch -d <container> --destination-path <model>).
        pulumi.export("modelStorageContainerUrl", storage.container_url)
    return AzureLayer(
        kubernetes=kubernetes,
        kubeconfig=pulumi.Output.secret(kubeconfig),
        cluster_ready=[cluster.cluster] if cluster else [],
        subscription_id=azure.subscription_id,
        tenant_id=azure.tenant_id,
        region=azure.location,
        pod_vm_resource_group=group.name,
        pod_vm_subnet_id=subnet,
        pod_vm_nsg_id=nsg,
        pod_vm_image_id=config.peer_pods.image_id,
        peer_pods_client_id=config.peer_pods.client_id,
        peer_pods_client_secret=secret_output(config.peer_pods_client_secret),
        pod_vm_ready=pod_vm_ready,
        model_storage=model_storage,
    )


def _pod_vm_network(
    config: CloudConfig,
    prefix: str,
    resource_group: pulumi.Input[str],
    vnet_resource_group: pulumi.Input[str],
    vnet_name: pulumi.Input[str],
    provider: azure_native.Provider,
    tags: dict[str, str],
    after: list[pulumi.Resource],
) -> PodVmNetwork:
    net = config.network
    return PodVmNetwork(
        "pod-vm-network",
        PodVmNetworkArgs(
            resource_group=resource_group,
            location=config.azure.location,
            name_prefix=f"{prefix}-pod-vm",
            vnet_resource_group=vnet_resource_group,
            vnet_name=vnet_name,
            subnet_cidr=net.pod_vm_subnet_cidr,
            worker_subnet_cidr=net.worker_subnet_cidr,
            vxlan_port=net.vxlan_port,
            tags=tags,
            subnet_after=after,
        ),
        provider,
    )


def _image_outside(image_id: str, resource_group: str) -> str | None:
    """The gallery image definition to grant read on, when it is not in the pod VM resource group."""
    gallery = ids.GALLERY_IMAGE_VERSION_ID.match(image_id)
    if gallery is None or gallery["resource_group"].lower() == resource_group.lower():
        return None
    return image_id.rsplit("/versions/", 1)[0]
