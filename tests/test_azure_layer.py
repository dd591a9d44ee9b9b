"""The cloud stack's Azure layer: what it creates in each cluster mode, how it is wired, what stays secret."""

from __future__ import annotations

import json
import uuid

import pulumi
import pytest
import yaml

from components.azure.identity import POD_VM_OPERATOR_ACTIONS, REGION_READER_ACTIONS
from components.azure.network import AGENT_FORWARDER_PORT
from scripts.offline import StackRun, run_stack
from scripts.offline.stackfile import PLACEHOLDER_PREFIX
from stacks.cloud_azure import deploy_azure_layer
from stacks.config import load_from_pulumi
from stacks.contracts import AzureLayer
from tests.conftest import Runner, example_config

SUB = "3f2c8a1e-6b4d-4e2a-9c7f-1d5e8b0a4c21"
DEV_RG = f"/subscriptions/{SUB}/resourceGroups/confidential-ai-dev"
DEV_VNET = f"{DEV_RG}/providers/Microsoft.Network/virtualNetworks/confidential-ai-dev-vnet"
PROD_SUB = "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
PROD_VNET = f"/subscriptions/{PROD_SUB}/resourceGroups/ocp-prod-network/providers/Microsoft.Network/virtualNetworks/ocp-prod-vnet"
BROUGHT_SUBNET = f"{PROD_VNET}/subnets/peer-pods"
BROUGHT_NSG = f"/subscriptions/{PROD_SUB}/resourceGroups/ocp-prod-network/providers/Microsoft.Network/networkSecurityGroups/peer-pods"
ARO = "azure-native:redhatopenshift:OpenShiftCluster"
ASSIGNMENT = "azure-native:authorization:RoleAssignment"


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner()


@pytest.fixture(scope="module")
def dev(runner) -> StackRun:
    return runner.example("dev-cloud")


@pytest.fixture(scope="module")
def prod(runner) -> StackRun:
    return runner.example("prod-cloud")


def azure_resources(run: StackRun):
    return [r for r in run.resources if r.type.startswith("azure-native:")]


def urn_of(run: StackRun, name: str, type_: str | None = None) -> str:
    return run.named(name, type_).urn


def test_aro_mode_creates_network_cluster_identity_and_gallery(dev):
    counts: dict[str, int] = {}
    for r in azure_resources(dev):
        counts[r.type] = counts.get(r.type, 0) + 1
    assert counts == {
        "azure-native:resources:ResourceGroup": 1,
        "azure-native:network:VirtualNetwork": 1,
        "azure-native:network:Subnet": 3,
        "azure-native:network:PublicIPAddress": 1,
        "azure-native:network:NatGateway": 1,
        "azure-native:network:NetworkSecurityGroup": 1,
        ARO: 1,
        "azure-native:authorization:RoleDefinition": 2,
        ASSIGNMENT: 5,
        "azure-native:compute:Gallery": 1,
        "azure-native:compute:GalleryImage": 1,
    }


def test_existing_mode_creates_only_the_pod_vm_side(prod):
    types = {r.type for r in azure_resources(prod)}
    assert ARO not in types and "azure-native:network:VirtualNetwork" not in types
    assert "azure-native:compute:Gallery" not in types  # community gallery image
    subnet = prod.named("pod-vm-network-subnet")
    assert subnet.inputs["resourceGroupName"] == "ocp-prod-network"
    assert subnet.inputs["virtualNetworkName"] == "ocp-prod-vnet"
    assert prod.outputs["podVmSubnetId"] == f"{PROD_VNET}/subnets/pod-vm"


def test_every_azure_resource_uses_the_explicit_provider(dev, prod):
    for run, subscription, location in ((dev, SUB, "eastus2"), (prod, PROD_SUB, "westeurope")):
        provider = run.named("azure", "pulumi:providers:azure-native")
        assert provider.inputs["subscriptionId"] == subscription
        assert provider.inputs["location"] == location
        assert provider.inputs["tenantId"] == "9a7b6c5d-4e3f-4a1b-8c2d-0e1f2a3b4c5d"
        for r in azure_resources(run):
            assert r.provider == provider.urn, r.name
        for r in run.resources:
            if r.custom and r.type.startswith("kubernetes:"):
                assert r.provider == urn_of(run, "cloud-cluster"), r.name


def test_aro_cluster_inputs(dev):
    cluster = dev.named("aro", ARO)
    inputs = cluster.inputs
    assert inputs["resourceName"] == "confidential-ai-dev"
    assert inputs["resourceGroupName"] == "confidential-ai-dev"
    profile = inputs["clusterProfile"]
    assert (profile["version"], profile["domain"], profile["fipsValidatedModules"]) == ("4.20.15", "confai-dev", "Disabled")
    # ARO creates this group itself; it must be another group than the one holding the cluster resource.
    assert profile["resourceGroupId"] == f"/subscriptions/{SUB}/resourceGroups/aro-confai-dev"
    assert inputs["servicePrincipalProfile"]["clientId"] == "5b8e2c1d-7f3a-4e6b-9d2c-8a1f0e3b7c64"
    assert inputs["masterProfile"] == {"vmSize": "Standard_D8s_v5", "subnetId": f"{DEV_VNET}/subnets/master", "encryptionAtHost": "Disabled"}
    assert inputs["workerProfiles"] == [
        {"name": "worker", "vmSize": "Standard_D4s_v5", "diskSizeGB": 128, "subnetId": f"{DEV_VNET}/subnets/worker", "count": 3, "encryptionAtHost": "Disabled"}
    ]
    assert inputs["networkProfile"] == {"podCidr": "10.128.0.0/14", "serviceCidr": "172.30.0.0/16"}
    assert inputs["apiserverProfile"] == {"visibility": "Public"}
    assert inputs["ingressProfiles"] == [{"name": "default", "visibility": "Public"}]


def test_aro_cluster_is_protected_and_waits_for_its_network_permissions(dev):
    cluster = dev.named("aro", ARO)
    assert cluster.protect
    network_roles = [dev.named(f"aro-{who}-network", ASSIGNMENT) for who in ("cluster-principal", "resource-provider")]
    assert {r.urn for r in network_roles} <= set(cluster.depends_on)
    assert urn_of(dev, "pod-vm-network-subnet") in cluster.depends_on  # no concurrent subnet changes
    principals = {r.inputs["principalId"] for r in network_roles}
    assert principals == {"0c4d9e7a-2b6f-4a83-b1e5-6f7d8c9a0b12", "2e9f4b6c-8d1a-4c37-a5e2-3b7c6d8e9f01"}
    for role in network_roles:
        assert role.inputs["scope"] == DEV_VNET
        assert role.inputs["roleDefinitionId"].endswith("/roleDefinitions/4d97b98b-1d4f-4787-a291-c67834d212e7")
        assert role.inputs["principalType"] == "ServicePrincipal"
    assert [r.name for r in dev.resources if r.protect] == ["aro"]


def test_aro_subnets_follow_aro_requirements(dev):
    master, worker = dev.named("cluster-network-master"), dev.named("cluster-network-worker")
    assert master.inputs["privateLinkServiceNetworkPolicies"] == "Disabled"
    for subnet, cidr in ((master, "10.10.0.0/23"), (worker, "10.10.2.0/23")):
        assert subnet.inputs["addressPrefix"] == cidr
        assert subnet.inputs["serviceEndpoints"] == [{"service": "Microsoft.ContainerRegistry"}]
        assert "networkSecurityGroup" not in subnet.inputs
    assert master.urn in worker.depends_on
    assert dev.named("cluster-network-vnet").inputs["addressSpace"] == {"addressPrefixes": ["10.10.0.0/16"]}


def test_pod_vm_subnet_has_nat_and_nsg(dev):
    subnet = dev.named("pod-vm-network-subnet")
    nat, ip, nsg = (dev.named(f"pod-vm-network-{n}") for n in ("nat", "nat-ip", "nsg"))
    assert subnet.inputs["addressPrefix"] == "10.10.8.0/22"
    assert subnet.inputs["natGateway"] == {"id": nat.id}
    assert subnet.inputs["networkSecurityGroup"] == {"id": nsg.id}
    assert subnet.inputs["defaultOutboundAccess"] is False
    assert urn_of(dev, "cluster-network-worker") in subnet.depends_on
    assert nat.inputs["publicIpAddresses"] == [{"id": ip.id}]
    assert ip.inputs["publicIPAllocationMethod"] == "Static" and ip.inputs["sku"]["name"] == "Standard"
    assert dev.outputs["natPublicIp"] == ip.outputs["ipAddress"]


def rules_by_name(run: StackRun) -> dict[str, dict]:
    return {rule["name"]: rule for rule in run.named("pod-vm-network-nsg").inputs["securityRules"]}


def test_pod_vm_nsg_admits_only_caa_from_workers(dev):
    rules = rules_by_name(dev)
    inbound = sorted((r for r in rules.values() if r["direction"] == "Inbound"), key=lambda r: r["priority"])
    assert [(r["access"], r["protocol"], r["sourceAddressPrefix"], r["destinationPortRange"]) for r in inbound] == [
        ("Allow", "Udp", "10.10.2.0/23", "9000"),
        ("Allow", "Tcp", "10.10.2.0/23", str(AGENT_FORWARDER_PORT)),
        ("Deny", "*", "*", "*"),
    ]
    assert rules["allow-internet-outbound"]["destinationAddressPrefix"] == "Internet"


def test_vxlan_port_comes_from_config(runner):
    run = runner.example("dev-cloud", set={"network.vxlanPort": 4789})
    rules = rules_by_name(run)
    assert rules["allow-vxlan-from-workers"]["destinationPortRange"] == "4789"
    assert rules["allow-vxlan-to-workers"]["destinationPortRange"] == "4789"


def test_peer_pod_roles_list_exact_actions(dev):
    operator = dev.named("peer-pods-operator-role").inputs
    reader = dev.named("peer-pods-region-reader-role").inputs
    assert operator["permissions"] == [{"actions": list(POD_VM_OPERATOR_ACTIONS)}]
    assert reader["permissions"] == [{"actions": list(REGION_READER_ACTIONS)}]
    for role in (operator, reader):
        assert role["roleType"] == "CustomRole"
        assert role["assignableScopes"] == [f"/subscriptions/{SUB}"]
        assert not any("*" in action for action in role["permissions"][0]["actions"])
    assert "Microsoft.Network/virtualNetworks/subnets/join/action" in POD_VM_OPERATOR_ACTIONS
    assert not any(a.startswith("Microsoft.Network/publicIPAddresses") for a in POD_VM_OPERATOR_ACTIONS)  # USE_PUBLIC_IP off


def test_peer_pod_assignments_are_scoped_narrowly(dev):
    operator_id = dev.named("peer-pods-operator-role").id
    reader_id = dev.named("peer-pods-region-reader-role").id
    scopes = {r.name: (r.inputs["scope"], r.inputs["roleDefinitionId"]) for r in dev.of_type(ASSIGNMENT) if r.name.startswith("peer-pods-")}
    assert scopes == {
        "peer-pods-resource-group": (DEV_RG, operator_id),
        "peer-pods-subnet": (f"{DEV_VNET}/subnets/pod-vm", operator_id),
        "peer-pods-subscription": (f"/subscriptions/{SUB}", reader_id),
    }
    for r in dev.of_type(ASSIGNMENT):
        if r.name.startswith("peer-pods-"):
            assert r.inputs["principalId"] == "1a7c5e3d-9b2f-4d60-8e4a-7c3b2d1f0e95"
            assert r.inputs["principalType"] == "ServicePrincipal"


def test_role_assignment_names_are_stable_guids(dev, runner):
    names = {r.name: r.inputs["roleAssignmentName"] for r in dev.of_type(ASSIGNMENT)}
    for value in names.values():
        assert str(uuid.UUID(value)) == value
    again = runner.example("dev-cloud", set={"network.vxlanPort": 9001, "cluster.aro.workerCount": 4})
    assert {r.name: r.inputs["roleAssignmentName"] for r in again.of_type(ASSIGNMENT)} == names
    other_principal = runner.example("dev-cloud", set={"peerPods.objectId": "00000000-1111-4222-8333-444444444444"})
    changed = {r.name: r.inputs["roleAssignmentName"] for r in other_principal.of_type(ASSIGNMENT)}
    assert changed["peer-pods-subnet"] != names["peer-pods-subnet"]
    assert changed["aro-resource-provider-network"] == names["aro-resource-provider-network"]


def test_hosted_gallery_image_definition_admits_confidential_vms(dev):
    gallery = dev.named("pod-vm-gallery-gallery")
    image = dev.named("pod-vm-gallery-image").inputs
    assert gallery.inputs["galleryName"] == "PodVMGallery"
    assert image["galleryImageName"] == "podvm-image"
    assert image["hyperVGeneration"] == "V2"
    assert image["osType"] == "Linux"
    assert image["features"] == [{"name": "SecurityType", "value": "ConfidentialVmSupported"}]
    assert image["identifier"] == {"publisher": "RedHat", "offer": "OSC-PodVM", "sku": "OSC-PodVM"}
    assert dev.outputs["podVmImageId"].startswith(f"{DEV_RG}/providers/Microsoft.Compute/galleries/PodVMGallery/images/podvm-image/versions/")


def test_image_in_another_resource_group_gets_a_read_grant(runner):
    image = f"/subscriptions/{SUB}/resourceGroups/images/providers/Microsoft.Compute/galleries/gpu/images/podvm-gpu/versions/2.0.1"
    run = runner.example("dev-cloud", set={"peerPods.imageId": image, "peerPods.image.hostGallery": False})
    grant = run.named("peer-pods-image", ASSIGNMENT)
    assert grant.inputs["scope"] == image.rsplit("/versions/", 1)[0]
    assert not run.of_type("azure-native:compute:Gallery")


def test_aro_kubeconfig_feeds_the_cluster_provider_as_a_secret(dev):
    provider = dev.named("cloud-cluster", "pulumi:providers:kubernetes")
    assert provider.is_secret("kubeconfig")
    assert provider.inputs["clusterIdentifier"] == "dev-cloud"
    kubeconfig = yaml.safe_load(provider.inputs["kubeconfig"])  # decoded from ARO's base64
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://api.confai-dev.eastus2.aroapp.io:6443"
    assert urn_of(dev, "aro", ARO) in provider.depends_on
    assert "kubeconfig" in dev.secret_outputs


def test_existing_kubeconfig_feeds_the_cluster_provider(prod):
    provider = prod.named("cloud-cluster", "pulumi:providers:kubernetes")
    assert provider.is_secret("kubeconfig")
    assert provider.inputs["kubeconfig"] == f"{PLACEHOLDER_PREFIX}:prod-cloud:existingKubeconfig"
    assert provider.inputs["clusterIdentifier"] == "prod-cloud"


def test_secrets_never_plaintext(dev, prod):
    for run in (dev, prod):
        for r in run.resources:
            assert PLACEHOLDER_PREFIX not in json.dumps(r.redacted_inputs), r.name
        public = {k: v for k, v in run.outputs.items() if k not in run.secret_outputs}
        assert PLACEHOLDER_PREFIX not in json.dumps(public)
    cluster = dev.named("aro", ARO)
    assert cluster.is_secret("clusterProfile", "pullSecret")
    assert cluster.is_secret("servicePrincipalProfile", "clientSecret")
    assert cluster.inputs["clusterProfile"]["pullSecret"] == f"{PLACEHOLDER_PREFIX}:dev-cloud:aroPullSecret"
    assert {"clusterProfile", "servicePrincipalProfile"} <= set(cluster.additional_secret_outputs)


def test_outputs_for_operators_and_the_cluster_layer(dev, prod):
    assert dev.outputs["clusterApiUrl"] == "https://api.confai-dev.eastus2.aroapp.io:6443/"
    assert dev.outputs["clusterConsoleUrl"] == "https://console-openshift-console.apps.confai-dev.eastus2.aroapp.io/"
    assert (dev.outputs["resourceGroup"], dev.outputs["region"], dev.outputs["subscriptionId"]) == ("confidential-ai-dev", "eastus2", SUB)
    assert dev.outputs["podVmNsgId"] == dev.named("pod-vm-network-nsg").id
    assert prod.outputs["clusterApiUrl"] == "https://api.ocp-prod.example.com:6443"
    assert prod.outputs["podVmImageId"].startswith("/CommunityGalleries/")


def test_brought_subnet_and_nsg_are_used_as_given(runner):
    run = runner.example("prod-cloud", set={"cluster.existing.podVmSubnetId": BROUGHT_SUBNET, "cluster.existing.nsgId": BROUGHT_NSG})
    assert not [r for r in run.resources if r.type.startswith("azure-native:network:")]
    assert (run.outputs["podVmSubnetId"], run.outputs["podVmNsgId"], run.outputs["natPublicIp"]) == (BROUGHT_SUBNET, BROUGHT_NSG, None)
    assert run.named("peer-pods-subnet", ASSIGNMENT).inputs["scope"] == BROUGHT_SUBNET


def capture_layer(stack: str) -> tuple[StackRun, AzureLayer]:
    """Run only the Azure layer and keep the hand-off; its client secret is exported to see its secrecy."""
    captured: list[AzureLayer] = []

    def program() -> None:
        layer = deploy_azure_layer(load_from_pulumi())  # type: ignore[arg-type]
        pulumi.export("peerPodsClientSecret", layer.peer_pods_client_secret)
        captured.append(layer)

    config, secret_keys = example_config(stack)
    return run_stack(stack, config, secret_keys, program=program), captured[0]


@pytest.mark.parametrize(
    "stack, cluster_ready, client_id",
    [("dev-cloud", ["aro"], "8d3f1a6b-4c2e-4b9d-a7f0-5e6c1b2d3a48"), ("prod-cloud", [], "4f6a8c2e-1d3b-4e5f-9a7c-2b4d6e8f0a13")],
)
def test_layer_hands_the_cluster_layer_what_it_needs(stack, cluster_ready, client_id):
    run, layer = capture_layer(stack)
    assert [r._name for r in layer.cluster_ready] == cluster_ready  # type: ignore[attr-defined]
    assert layer.peer_pods_client_id == client_id
    assert {r._name for r in layer.pod_vm_ready} >= {"peer-pods", "pod-vm-network"}  # type: ignore[attr-defined]
    assert (layer.region, layer.subscription_id) == (run.outputs["region"], run.outputs["subscriptionId"])
    assert layer.pod_vm_image_id == run.outputs["podVmImageId"]
    assert "peerPodsClientSecret" in run.secret_outputs
    assert run.outputs["peerPodsClientSecret"] == f"{PLACEHOLDER_PREFIX}:{stack}:peerPodsClientSecret"
