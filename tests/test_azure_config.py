"""Config errors of the Azure layer: one line naming the key, and nothing registered."""

from __future__ import annotations

import json

import pytest

from stacks.config import ConfigError
from tests.conftest import Runner, example_config
from tests.test_config import problems
from tests.test_trusted_config import loads

DEV_SUB = "3f2c8a1e-6b4d-4e2a-9c7f-1d5e8b0a4c21"
OTHER_SUB = "11111111-2222-4333-8444-555555555555"
PROD_SUB = "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"


@pytest.mark.parametrize(
    "edit, expected",
    [
        ({"network.podCidr": "10.8.0.0/14"}, "dev-cloud: network.podCidr: 10.8.0.0/14 overlaps vnetCidr (10.10.0.0/16)"),
        ({"network.serviceCidr": "10.10.64.0/18"}, "dev-cloud: network.serviceCidr: 10.10.64.0/18 overlaps vnetCidr (10.10.0.0/16)"),
        ({"network.masterSubnetCidr": "10.10.9.0/24"}, "dev-cloud: network.podVmSubnetCidr: 10.10.8.0/22 overlaps masterSubnetCidr (10.10.9.0/24)"),
    ],
)
def test_overlapping_cidrs(edit, expected):
    assert expected in problems("dev-cloud", set=edit)


def test_pod_cidr_must_be_a_network_address():
    assert problems("dev-cloud", set={"network.podCidr": "10.10.0.0/14"})[0].startswith("dev-cloud: network.podCidr: '10.10.0.0/14' is not an IPv4 CIDR")


def test_a_size_in_the_wrong_case_is_told_its_spelling():
    lines = problems("dev-cloud", set={"peerPods.instanceSizes": ["Standard_NCC40ads_H100_v5", "standard_dc4as_v5", "standard_dc4es_v5"]})
    assert lines[:2] == [
        "dev-cloud: peerPods.instanceSizes[1]: standard_dc4as_v5 is written in the wrong case: write Standard_DC4as_v5",
        "dev-cloud: peerPods.instanceSizes[2]: Standard_DC4es_v5 is an Intel TDX size; the trusted side attests AMD SEV-SNP (az-snp-vtpm) only",
    ]


def test_non_confidential_and_unknown_sizes():
    lines = problems("dev-cloud", set={"peerPods.instanceSizes": ["Standard_NCC40ads_H100_v5", "Standard_NC40ads_H100_v5", "Standard_DC6as_v5"], "peerPods.defaultInstanceSize": "Standard_NCC40ads_H100_v5"})
    assert lines == [
        "dev-cloud: peerPods.instanceSizes[1]: Standard_NC40ads_H100_v5 is not a confidential VM size",
        "dev-cloud: peerPods.instanceSizes[2]: Standard_DC6as_v5 is not an existing confidential VM size (the DCas_v5 series has [2, 4, 8, 16, 32, 48, 64, 96] vCPUs)",
    ]


@pytest.mark.parametrize(
    "image_id",
    [
        "/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/i/versions/1.0.0",
        f"/subscriptions/{DEV_SUB}/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/i/versions/latest",
        f"/subscriptions/{DEV_SUB}/resourceGroups/rg/providers/Microsoft.Compute/images/podvm",
        "/communityGalleries/g/images/i/versions/1.0.0",
        "podvm-image:1.0.0",
    ],
)
def test_malformed_image_id(image_id):
    lines = problems("dev-cloud", set={"peerPods.imageId": image_id})
    assert len(lines) == 1
    assert lines[0].startswith(f"dev-cloud: peerPods.imageId: {image_id!r} is not an image version ID: /subscriptions/<guid>/")


def test_hosted_gallery_image_must_be_the_hosted_definition():
    other = f"/subscriptions/{DEV_SUB}/resourceGroups/confidential-ai-dev/providers/Microsoft.Compute/galleries/Other/images/podvm-image/versions/1.0.0"
    assert problems("dev-cloud", set={"peerPods.imageId": other}) == [
        f"dev-cloud: peerPods.imageId: must be a version of the hosted image definition /subscriptions/{DEV_SUB}/resourceGroups/confidential-ai-dev"
        "/providers/Microsoft.Compute/galleries/PodVMGallery/images/podvm-image (peerPods.image.hostGallery is true)"
    ]


def test_gallery_image_in_another_subscription_rejected():
    image = f"/subscriptions/{OTHER_SUB}/resourceGroups/img/providers/Microsoft.Compute/galleries/g/images/i/versions/1.0.0"
    lines = problems("dev-cloud", set={"peerPods.imageId": image, "peerPods.image.hostGallery": False})
    assert lines == [f"dev-cloud: peerPods.imageId: is in subscription {OTHER_SUB}: use a gallery in azure.subscriptionId (the peer-pod identity is granted read on it there) or a community gallery"]


def test_mode_needs_its_secrets():
    assert problems("dev-cloud", delete=("aroPullSecret",)) == [
        "dev-cloud: aroPullSecret: required when cluster.mode is aro: pulumi config set --secret aroPullSecret ... -s dev-cloud"
    ]
    assert problems("prod-cloud", delete=("existingKubeconfig",)) == [
        "prod-cloud: existingKubeconfig: required when cluster.mode is existing: pulumi config set --secret existingKubeconfig ... -s prod-cloud"
    ]


def test_mode_needs_its_section_and_only_it():
    assert problems("dev-cloud", set={"cluster.mode": "existing"}) == [
        "dev-cloud: cluster.aro: must not be set when mode is existing",
        "dev-cloud: cluster.existing: required key is missing (mode is existing)",
    ]


def test_aro_needs_master_subnet_and_a_fresh_cluster_resource_group():
    assert problems("dev-cloud", delete=("network.masterSubnetCidr",)) == [
        "dev-cloud: network.masterSubnetCidr: required key is missing (cluster.mode aro creates the master subnet)"
    ]
    assert problems("dev-cloud", set={"cluster.aro.clusterResourceGroup": "confidential-ai-dev"}) == [
        "dev-cloud: cluster.aro.clusterResourceGroup: must differ from azure.resourceGroup: ARO creates confidential-ai-dev itself and it must not exist"
    ]


@pytest.mark.parametrize(
    "edit, expected",
    [
        ({"cluster.aro.version": "4.16"}, "dev-cloud: cluster.aro.version: '4.16' is not an OpenShift version like 4.20.15"),
        # Field patterns run on Python's re (search): \Z, unlike $, refuses a trailing newline.
        ({"azure.resourceGroup": "confidential-ai-dev\n"}, "dev-cloud: azure.resourceGroup: String should match pattern '^[-\\w._()]{1,89}[-\\w_()]\\Z'"),
        ({"cluster.aro.workerCount": 2}, "dev-cloud: cluster.aro.workerCount: Input should be greater than or equal to 3"),
        ({"cluster.aro.resourceProviderObjectId": "f1dd0a37"}, "dev-cloud: cluster.aro.resourceProviderObjectId: 'f1dd0a37' is not a GUID (lowercase, 8-4-4-4-12)"),
        ({"cluster.aro.apiVisibility": "Internal"}, "dev-cloud: cluster.aro.apiVisibility: Input should be 'Public' or 'Private'"),
    ],
)
def test_aro_settings_validated(edit, expected):
    assert problems("dev-cloud", set=edit) == [expected]


def test_brought_subnet_needs_its_nsg_and_must_be_in_the_vnet():
    subnet = f"/subscriptions/{OTHER_SUB}/resourceGroups/n/providers/Microsoft.Network/virtualNetworks/v/subnets/s"
    assert problems("prod-cloud", set={"cluster.existing.podVmSubnetId": subnet}) == [
        "prod-cloud: cluster.existing.nsgId: required with podVmSubnetId: bring both the pod VM subnet and its NSG, or neither",
        "prod-cloud: cluster.existing.podVmSubnetId: is not a subnet of vnetId (/subscriptions/7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f/resourceGroups/ocp-prod-network/providers/Microsoft.Network/virtualNetworks/ocp-prod-vnet)",
    ]


def test_a_brought_subnet_of_the_vnet_with_its_nsg_is_accepted():
    vnet = f"/subscriptions/{PROD_SUB}/resourceGroups/ocp-prod-network/providers/Microsoft.Network/virtualNetworks/ocp-prod-vnet"
    subnet, nsg = f"{vnet}/subnets/pod-vms", f"/subscriptions/{PROD_SUB}/resourceGroups/ocp-prod-network/providers/Microsoft.Network/networkSecurityGroups/pod-vms"
    existing = loads("prod-cloud", set={"cluster.existing.podVmSubnetId": subnet, "cluster.existing.nsgId": nsg}).cluster.existing
    assert (existing.vnet_id, existing.pod_vm_subnet_id, existing.nsg_id) == (vnet, subnet, nsg)


def test_existing_vnet_must_be_in_the_subscription():
    vnet = f"/subscriptions/{OTHER_SUB}/resourceGroups/n/providers/Microsoft.Network/virtualNetworks/v"
    assert problems("prod-cloud", set={"cluster.existing.vnetId": vnet}) == [
        f"prod-cloud: cluster.existing.vnetId: is in subscription {OTHER_SUB}, not azure.subscriptionId (7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f): pod VMs are created in azure.subscriptionId"
    ]


def test_malformed_vnet_id():
    assert problems("prod-cloud", set={"cluster.existing.vnetId": "ocp-prod-vnet"})[0].startswith(
        "prod-cloud: cluster.existing.vnetId: 'ocp-prod-vnet' is not a VNet ID (/subscriptions/<guid>/"
    )


# The prod example's pinned trust bundle key (the offline plan's placeholder, public).
[PINNED_KEY] = json.loads(example_config("prod-cloud")[0]["confidential-ai:trustBundle"])["keys"]


@pytest.mark.parametrize(
    ("edit", "line"),
    [
        ({"trustBundle.keys.0.x": "AAAA"}, f"trustBundle.keys[0].x: pinned key {PINNED_KEY['kid']} is not a point on P-256"),
        (
            {"trustBundle.keys.0.kid": "not-the-thumbprint"},
            f"trustBundle.keys[0].kid: is not the key's RFC 7638 thumbprint ({PINNED_KEY['kid']}): copy the trustBundleKey output as it is",
        ),
        ({"trustBundle.keys": [PINNED_KEY, PINNED_KEY]}, "trustBundle.keys: pins the same key twice"),
        (
            {"trustedStack": "organization/confidential-ai/prod-trusted"},
            "trustedStack: is not used with trustBundle (the bundle replaces the StackReference); remove it",
        ),
    ],
)
def test_the_trust_bundle_pins_each_key_once_and_replaces_the_stack_reference(edit, line):
    assert problems("prod-cloud", set=edit) == [f"prod-cloud: {line}"]


def test_a_single_backend_lab_may_name_its_trusted_stack():
    name = "acme/confidential-ai/dev-trusted"
    assert loads("dev-cloud", set={"trustedStack": name}, delete=("trustBundle",)).trusted_stack_name == name


def test_secret_never_echoed_in_errors():
    lines = problems("dev-cloud", set={"aroPullSecret": {"auths": {"cloud.openshift.com": {"auth": "c2VjcmV0"}}}})
    assert lines == ["dev-cloud: aroPullSecret: Input should be a valid string"]


@pytest.mark.parametrize(
    "stack, edit",
    [
        ("dev-cloud", {"set": {"peerPods.imageId": "latest"}}),
        ("dev-cloud", {"delete": ("aroClientSecret",)}),
        ("prod-cloud", {"set": {"cluster.existing.nsgId": "nsg"}}),
    ],
)
def test_nothing_registered_on_config_error(stack, edit):
    config, secret_keys = example_config(stack, **edit)
    with pytest.raises(ConfigError) as err:
        Runner()(stack, config, secret_keys)
    assert err.value.registered == []
