"""What a model pod needs to serve an encrypted model: the init container that decrypts it inside the pod
VM, the memory volume it decrypts into, and NIM's local-model settings.

The init container runs `python3 -I -m model_crypto.decrypt` (images/model-decryptor) in the same pod VM
as NIM, after attestation: it fetches the model key from the confidential data hub, downloads and
verifies the ciphertext, and writes plaintext only to a memory-backed emptyDir, which NIM mounts
read-only and serves from a local path. Nothing here is secret: the SAS grants ciphertext only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MODEL_DIR = "/mnt/models"
"""Where the plaintext model lives in the pod: the init container's target, NIM's NIM_MODEL_PATH."""
VOLUME = "decrypted-model"
INIT_CONTAINER = "decrypt-model"
# Absolute: PATH (host-controlled environment) must not choose the interpreter. The UBI Python image
# keeps its virtualenv at /opt/app-root (images/model-decryptor/Containerfile).
COMMAND = ("/opt/app-root/bin/python3", "-I", "-m", "model_crypto.decrypt")
SAS_ENV = "AZURE_STORAGE_SAS_TOKEN"
SAS_SECRET_KEY = "sas"
_GIB = 2**30
# tmpfs rounds every file up to a page and the decryptor holds one `.partial` file at a time, which is
# renamed, not copied: 1 GiB over the model's bytes is ample.
_VOLUME_HEADROOM_GIB = 1


@dataclass(frozen=True)
class EncryptedModelArgs:
    source_url: str
    """Base URL of the encrypted model: its `manifest.json.jwe` and `<file>.jwe` objects."""
    manifest_sha256: str
    """Of the model's manifest.json: the init container accepts only that manifest."""
    total_size: int
    """Plaintext bytes of the whole model (the manifest's totalSize)."""
    key_uri: str
    """The workload's model-key KBS resource, `kbs:///<repo>/<type>/<tag>`."""
    decryptor_image: str
    """The init container image pinned by digest (`repo@sha256:<64 hex>`), as the workload's agent policy allows it."""
    sas_secret_name: str | None
    """Secret in the model's namespace holding the read SAS under key `sas`, or None for a public source."""


def decryptor_args(source_url: str, key_uri: str, manifest_sha256: str) -> list[str]:
    """The init container's process arguments, after COMMAND: what the agent policy pins."""
    return ["--source", source_url, "--key-resource", key_uri, "--manifest-sha256", manifest_sha256, "--target", MODEL_DIR]


def volume_size_gi(total_size: int) -> int:
    return math.ceil(total_size / _GIB) + _VOLUME_HEADROOM_GIB


def memory_volume(args: EncryptedModelArgs) -> dict:
    """A memory-backed emptyDir: inside the pod VM its pages are guest RAM, encrypted by SEV-SNP."""
    return {"name": VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": f"{volume_size_gi(args.total_size)}Gi"}}


def init_container(args: EncryptedModelArgs) -> dict:
    env = []
    if args.sas_secret_name is not None:
        env.append({"name": SAS_ENV, "valueFrom": {"secretKeyRef": {"name": args.sas_secret_name, "key": SAS_SECRET_KEY}}})
    return {
        "name": INIT_CONTAINER,
        "image": args.decryptor_image,
        "command": list(COMMAND),
        "args": decryptor_args(args.source_url, args.key_uri, args.manifest_sha256),
        "env": env,
        "volumeMounts": [{"name": VOLUME, "mountPath": MODEL_DIR}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def nim_env() -> list[dict]:
    """NIM 2.x serves a local model directory named by NIM_MODEL_PATH, and then needs no NGC_API_KEY
    (docs.nvidia.com/nim/large-language-models/2.0.9/reference/environment-variables.html, NIM_MODEL_PATH;
    2.0.13/deployment/model-free-nim.html; 2.0.2/deployment/air-gap-deployment.html: "do not set NGC_API_KEY")."""
    return [{"name": "NIM_MODEL_PATH", "value": MODEL_DIR}]


def nim_volume_mount() -> dict:
    return {"name": VOLUME, "mountPath": MODEL_DIR, "readOnly": True}
