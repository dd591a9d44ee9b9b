"""The cloud-side pieces of an encrypted model: Azure storage with a read-only SAS, and the pod's init
container, memory volume and NIM settings."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pulumi
import pulumi_azure_native as azure_native
import pytest

from components import encrypted_model
from components.azure.model_storage import ModelStorage, ModelStorageArgs
from model_crypto import decrypt
from scripts.offline import run_stack

ROOT = Path(__file__).resolve().parents[1]
SUB = "3f2c8a1e-6b4d-4e2a-9c7f-1d5e8b0a4c21"
DECRYPTOR = "ghcr.io/example/model-decryptor@sha256:" + "ab" * 32
KEY_URI = "kbs:///default/model-decryption/key.bin"


def _storage_program() -> None:
    provider = azure_native.Provider("azure", subscription_id=SUB, location="westeurope")
    storage = ModelStorage(
        "model-storage",
        ModelStorageArgs("confidential-ai-dev", "westeurope", "caidevmodels", "models", "2027-06-30T00:00:00Z", {"env": "dev"}),
        provider,
    )
    pulumi.export("containerUrl", storage.container_url)
    pulumi.export("readSas", storage.read_sas)


@pytest.fixture(scope="module")
def storage_run():
    return run_stack("dev-cloud", {}, program=_storage_program)


def test_the_account_is_private_and_https_only(storage_run):
    account = storage_run.named("model-storage-account").inputs
    assert account["allowBlobPublicAccess"] is False
    assert account["minimumTlsVersion"] == "TLS1_2" and account["enableHttpsTrafficOnly"] is True
    assert account["accountName"] == "caidevmodels" and account["kind"] == "StorageV2"
    container = storage_run.named("model-storage-container").inputs
    assert container["publicAccess"] == "None" and container["containerName"] == "models"
    for resource in (storage_run.named("model-storage-account"), storage_run.named("model-storage-container")):
        assert resource.provider.endswith("::pulumi:providers:azure-native::azure")


def test_the_pod_gets_a_read_only_https_sas_for_one_container_as_a_secret(storage_run):
    assert storage_run.outputs["containerUrl"] == "https://caidevmodels.blob.core.windows.net/models"
    assert "readSas" in storage_run.secret_outputs
    sas = dict(field.split("=", 1) for field in storage_run.outputs["readSas"].split("&"))
    assert (sas["sr"], sas["sp"], sas["spr"], sas["se"]) == ("c", "r", "https", "2027-06-30T00:00:00Z")


def _args(**overrides) -> encrypted_model.EncryptedModelArgs:
    values = dict(source_url="https://caidevmodels.blob.core.windows.net/models/llama-ft", manifest_sha256="0" * 64,
                  total_size=16 * 2**30 + 1, key_uri=KEY_URI, decryptor_image=DECRYPTOR, sas_secret_name="llama-ft-model-sas")
    values.update(overrides)
    return encrypted_model.EncryptedModelArgs(**values)


def test_the_init_container_runs_the_decryptor_the_image_ships():
    container = encrypted_model.init_container(_args())
    assert container["image"] == DECRYPTOR
    # The Containerfile's entrypoint and the pod's command are the same process.
    entrypoint = re.search(r'^ENTRYPOINT (\[.*\])$', (ROOT / "images/model-decryptor/Containerfile").read_text(), re.M)
    assert entrypoint and eval(entrypoint[1]) == container["command"]  # noqa: S307 (a JSON list literal)
    assert container["volumeMounts"] == [{"name": encrypted_model.VOLUME, "mountPath": encrypted_model.MODEL_DIR}]
    assert container["env"] == [{"name": decrypt.SAS_ENV, "valueFrom": {"secretKeyRef": {"name": "llama-ft-model-sas", "key": "sas"}}}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_init_container_arguments_parse_as_the_decryptor_reads_them(monkeypatch):
    """The args the pod passes are exactly what model_crypto.decrypt's parser accepts (no drift between them)."""
    container = encrypted_model.init_container(_args())
    seen = {}
    monkeypatch.setattr(decrypt, "decrypt_model", lambda source, key, key_resource, sha, target, progress: seen.update(
        source=source.base_url, key_resource=key_resource, sha=sha, target=str(target)) or (_ for _ in ()).throw(decrypt.DecryptError("stop")))
    monkeypatch.setattr(decrypt, "fetch_key", lambda resource, cdh_url: None)
    assert decrypt.main(container["args"]) == 1
    assert seen == {"source": "https://caidevmodels.blob.core.windows.net/models/llama-ft", "key_resource": KEY_URI, "sha": "0" * 64,
                    "target": encrypted_model.MODEL_DIR}
    assert shlex.join(container["command"]).endswith("-m model_crypto.decrypt")


def test_the_memory_volume_fits_the_model():
    assert encrypted_model.memory_volume(_args()) == {"name": "decrypted-model", "emptyDir": {"medium": "Memory", "sizeLimit": "18Gi"}}
    assert encrypted_model.volume_size_gi(16 * 2**30) == 17
    assert encrypted_model.volume_size_gi(1) == 2


def test_nim_serves_the_local_directory_read_only():
    assert encrypted_model.nim_env() == [{"name": "NIM_MODEL_PATH", "value": "/mnt/models"}]
    assert encrypted_model.nim_volume_mount() == {"name": "decrypted-model", "mountPath": "/mnt/models", "readOnly": True}


def test_the_image_installs_what_the_project_pins():
    """The init image's hashed requirements name the versions requirements.txt pins."""
    pinned = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    image = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "images/model-decryptor/requirements.txt").read_text(), re.M))
    for name in ("jwcrypto", "cryptography", "pybase64"):
        assert image[name] == pinned[name], name
    assert all("--hash=sha256:" in block for block in (ROOT / "images/model-decryptor/requirements.txt").read_text().split("==")[1:])
