"""Fixtures for the cloud stack's cluster layer: the trusted stack's outputs and a hand-built Azure layer.

`run_cluster_layer` runs the cluster layer as the cloud stack will once the Azure layer is merged:
read the trusted stack first, then build on the Azure layer's provider and IDs.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pulumi
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from components.kubernetes import cluster_provider
from components.sealed_secret import sealed_secret
from scripts.offline import StackRun, run_stack
from scripts.offline.fakes import StackOutputs, fake_pem
from stacks.config import CloudConfig, load_from_pulumi
from stacks.cloud_cluster import deploy_cluster_layer, read_trusted_stack
from stacks.contracts import AzureLayer, ModelStorageHandOff
from stacks.encrypted_models import plan_encrypted_models
from tests.conftest import example_config
from tests.tls_fixtures import ca, server_certificate

KBS_URL = "https://kbs.trusted-dev.example.com"
KBS_CA_CERT = fake_pem("CERTIFICATE", "kbs-ca", "dev-trusted")
NGC_API_KEY_URI = "kbs:///default/nim-ngc/api-key"
NVCR_CREDENTIALS_URI = "kbs:///default/nvcr/credentials"
SUBSCRIPTION = "3f2c8a1e-6b4d-4e2a-9c7f-1d5e8b0a4c21"
RESOURCE_GROUP = "/subscriptions/3f2c8a1e-6b4d-4e2a-9c7f-1d5e8b0a4c21/resourceGroups/confidential-ai-dev"
POD_VM_SUBNET_ID = f"{RESOURCE_GROUP}/providers/Microsoft.Network/virtualNetworks/confidential-ai-dev/subnets/pod-vms"
POD_VM_NSG_ID = f"{RESOURCE_GROUP}/providers/Microsoft.Network/networkSecurityGroups/pod-vms"
POD_VM_IMAGE_ID = f"{RESOURCE_GROUP}/providers/Microsoft.Compute/galleries/PodVMGallery/images/podvm-gpu/versions/1.0.0"
PEER_PODS_CLIENT_ID = "5b1e2c3d-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
PEER_PODS_CLIENT_SECRET = "azure-client-secret:peer-pods:dev"
MODEL_STORAGE_SAS = "sv=2022-11-02&sr=c&sp=r&spr=https&se=2027-06-30T00:00:00Z&sig=model-storage-sas:dev"


def _toml_str(value: str) -> str:
    return json.dumps(value)


def initdata_toml(registry_credentials_uri: str | None = None, policy: str = "package agent_policy") -> str:
    """A small initdata document as the trusted side authors it (FACTS section 4)."""
    cdh = f'socket = "unix:///run/confidential-containers/cdh.sock"\ncredentials = []\n[kbc]\nname = "cc_kbc"\nurl = {_toml_str(KBS_URL)}\n'
    if registry_credentials_uri:
        cdh += f"[image]\nauthenticated_registry_credentials_uri = {_toml_str(registry_credentials_uri)}\n"
    aa = f"[token_configs.kbs]\nurl = {_toml_str(KBS_URL)}\n"
    return (
        'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n'
        f'"aa.toml" = {_toml_str(aa)}\n"cdh.toml" = {_toml_str(cdh)}\n"policy.rego" = {_toml_str(policy)}\n'
    )


# A P-256 key for the fixture's sealed pointers only (the trusted stack makes the real one).
SEALING_KEY_PEM = ec.derive_private_key(0x5EA1ED, ec.SECP256R1()).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
SEALED_SECRET_KEY_URI = "kbs:///default/sealed-secret-key/public-jwk"
WORKLOAD_IMAGE = "nvcr.io/nim/meta/llama-3.1-8b-instruct@sha256:" + "ab" * 32
MISTRAL_IMAGE = "nvcr.io/nim/mistralai/mistral-7b-instruct-v0.3@sha256:" + "cd" * 32
# What the trusted side issues a serving workload: a certificate from the inference CA for its model's
# Route host (dev: <name>-<namespace>.apps.<domain>.<region>.aroapp.io), its key a KBS resource.
INFERENCE_CA = ca("inference-tls-ca", "Confidential AI inference CA")


def model_hosts(model: str) -> tuple[str, str]:
    """The model's Route host in dev and in prod (namespace = model name)."""
    return f"{model}-{model}.apps.confai-dev.eastus2.aroapp.io", f"{model}-{model}.apps.ocp-prod.example.com"


MODEL_HOST = model_hosts("llama-3-1-8b")[0]
SERVING_KEY_RESOURCE = "llama-3-1-8b-tls-key"
KBS_RESOURCES = {
    **{f"{w}-tls-key": {"uri": f"kbs:///default/inference-tls-keys/{w}", "gpuGated": True, "minGpus": 1} for w in ("llama-3-1-8b", "mistral-7b", "llama-ft")},
    "ngc-api-key": {"uri": NGC_API_KEY_URI, "gpuGated": True, "minGpus": 1},
    "nvcr-credentials": {"uri": NVCR_CREDENTIALS_URI, "gpuGated": False, "minGpus": 0},
    "model-key": {"uri": "kbs:///default/model-decryption/key.bin", "gpuGated": True, "minGpus": 1},
}
# The prod example's encrypted model (stacks/Pulumi.prod-*.yaml, stacks/models/prod/llama-ft/manifest.json).
ENCRYPTED_WORKLOAD = "llama-ft"
ENCRYPTED_WORKLOAD_IMAGE = "nvcr.io/nim/nvidia/llm-nim@sha256:" + "5d" * 32
DECRYPTOR_IMAGE = "registry.example.com/confidential-ai/model-decryptor@sha256:" + "0c" * 32
PROD_MANIFEST = Path(__file__).resolve().parents[1] / "stacks" / "models" / "prod" / "llama-ft" / "manifest.json"


def encrypted_model_output(manifest_sha256: str | None = None) -> dict[str, str]:
    return {
        "decryptorImage": DECRYPTOR_IMAGE,
        "keyUri": KBS_RESOURCES["model-key"]["uri"],
        "manifestSha256": manifest_sha256 or hashlib.sha256(PROD_MANIFEST.read_bytes()).hexdigest(),
    }


def workload_output(
    registry_credentials_uri: str | None = None, image: str = WORKLOAD_IMAGE, resources: tuple[str, ...] = ("ngc-api-key", "model-key"), gpus: int = 1, policy: str = "",
    encrypted_model: dict[str, str] | None = None, name: str = "llama-3-1-8b", serving_hostnames: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """One entry of the trusted stack's `workloads` output (stacks/contracts.py WORKLOAD_KEYS)."""
    document = initdata_toml(registry_credentials_uri, f"package agent_policy\npinned_image := {json.dumps(image)}\n{policy}").encode()
    digest = hashlib.sha256(document).hexdigest()
    if registry_credentials_uri:
        resources = (*resources, "nvcr-credentials")
    serving = {}
    hostnames = model_hosts(name) if serving_hostnames is None else serving_hostnames
    if hostnames:
        resources = (*resources, f"{name}-tls-key")
        serving = {"servingCertificate": server_certificate(f"inference-tls-{name}", INFERENCE_CA, list(hostnames))[0], "servingKeyResource": f"{name}-tls-key"}
    return {
        "image": image,
        "initdata": base64.b64encode(gzip.compress(document, mtime=0)).decode(),
        "initdataDigest": digest,
        "initdataPcr8": hashlib.sha256(bytes(32) + bytes.fromhex(digest)).hexdigest(),
        "resources": list(resources),
        "gpus": gpus,
        "sealedSecrets": {name: sealed_secret(KBS_RESOURCES[name]["uri"], SEALING_KEY_PEM, SEALED_SECRET_KEY_URI) for name in resources},
        "imageEnv": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "args": ["/opt/nvidia/nvidia_entrypoint.sh", "/opt/nim/start-server.sh"],
        **serving,
        **({"encryptedModel": encrypted_model} if encrypted_model else {}),
    }


def encrypted_workload_output(registry_credentials_uri: str | None = None, **encrypted: str) -> dict[str, Any]:
    """The prod example's llama-ft workload: an encrypted model, its own initdata."""
    return workload_output(
        registry_credentials_uri, ENCRYPTED_WORKLOAD_IMAGE, ("model-key",),
        encrypted_model=encrypted_model_output(**encrypted), name=ENCRYPTED_WORKLOAD,
    )


def trusted_outputs(registry_credentials_uri: str | None = None, encrypted_workload: bool = True, **overrides: Any) -> StackOutputs:
    values = {
        "kbsUrl": KBS_URL,
        "kbsCaCert": KBS_CA_CERT,
        "kbsResources": KBS_RESOURCES,
        "workloads": {
            "llama-3-1-8b": workload_output(registry_credentials_uri),
            "mistral-7b": workload_output(registry_credentials_uri, MISTRAL_IMAGE, ("ngc-api-key",), name="mistral-7b"),
            **({ENCRYPTED_WORKLOAD: encrypted_workload_output(registry_credentials_uri)} if encrypted_workload else {}),
        },
        "sealedSecretKeyUri": SEALED_SECRET_KEY_URI,
        "inferenceCaCert": INFERENCE_CA[0],
        **overrides,
    }
    return StackOutputs({k: v for k, v in values.items() if v is not None})


def azure_layer(config: CloudConfig) -> AzureLayer:
    kubeconfig = pulumi.Output.secret("apiVersion: v1\nkind: Config\n")
    return AzureLayer(
        kubernetes=cluster_provider("cloud-cluster", kubeconfig, config.stack.name),
        kubeconfig=kubeconfig,
        cluster_ready=[],
        subscription_id=SUBSCRIPTION,
        tenant_id=config.azure.tenant_id,
        region=config.azure.location,
        pod_vm_resource_group=pulumi.Output.from_input("confidential-ai-dev-podvms"),
        pod_vm_subnet_id=pulumi.Output.from_input(POD_VM_SUBNET_ID),
        pod_vm_nsg_id=pulumi.Output.from_input(POD_VM_NSG_ID),
        pod_vm_image_id=POD_VM_IMAGE_ID,
        peer_pods_client_id=PEER_PODS_CLIENT_ID,
        peer_pods_client_secret=pulumi.Output.secret(PEER_PODS_CLIENT_SECRET),
        model_storage=ModelStorageHandOff(
            f"https://{config.model_storage.account_name}.blob.core.windows.net/{config.model_storage.container_name}",
            pulumi.Output.secret(MODEL_STORAGE_SAS),
        ) if config.model_storage else None,
    )


def cluster_layer_program() -> None:
    config = load_from_pulumi()
    assert isinstance(config, CloudConfig)
    trusted = read_trusted_stack(config)
    deploy_cluster_layer(config, azure_layer(config), trusted, plan_encrypted_models(config, trusted.workloads))


def run_cluster_layer(stack: str = "dev-cloud", trusted: StackOutputs | None = None, set: dict[str, Any] | None = None, delete: tuple[str, ...] = ()) -> StackRun:
    """The cluster layer reading `trusted` through the StackReference (a stack that reads a trust bundle
    reads these outputs that way here: tests/test_cloud_trust_bundle.py tests the bundle path)."""
    config, secret_keys = example_config(stack, set=set, delete=delete)
    config.pop("confidential-ai:trustBundle", None)
    trusted_stack = stack.rsplit("-", 1)[0] + "-trusted"
    references = {} if trusted is None else {trusted_stack: trusted}
    return run_stack(stack, config, secret_keys, references, program=cluster_layer_program)
