"""The cloud stack's encrypted models: each one's manifest, checked against what its workload pins.

Runs before any resource is registered: a missing or altered manifest, or one the trusted side did not
pin for the model's workload, is a one-line config error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from components.encrypted_model import volume_size_gi
from model_crypto import manifest as manifests
from stacks.config import CloudConfig, ConfigError
from stacks.config.base import CONFIDENTIAL_GPU_SIZE, Problem
from stacks.config.workloads import ModelSettings

if TYPE_CHECKING:
    from stacks.cloud_cluster import TrustedWorkload

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Guest memory per confidential GPU size (MicrosoftDocs azure-compute-docs, nccadsh100v5-series.md:
# Standard_NCC40ads_H100_v5, 320 GiB). The decrypted model lives in it, beside NIM and the GPU driver.
VM_MEMORY_GI = {CONFIDENTIAL_GPU_SIZE: 320}
_RESERVED_MEMORY_GI = 64


@dataclass(frozen=True)
class EncryptedModelPlan:
    manifest: manifests.Manifest
    manifest_sha256: str
    decryptor_image: str
    key_uri: str
    url: str | None
    """Where the ciphertext is; None: the stack's model storage, `<container URL>/<model name>`."""


def plan_encrypted_models(config: CloudConfig, workloads: Mapping[str, TrustedWorkload], root: Path = PROJECT_ROOT) -> dict[str, EncryptedModelPlan]:
    """Every `source: encrypted` model's plan, by model name; ConfigError lists every problem."""
    plans: dict[str, EncryptedModelPlan] = {}
    problems: list[Problem] = []
    for i, model in enumerate(config.models):
        if model.source != "encrypted" or model.encrypted is None:
            continue
        workload = workloads.get(model.workload)
        if workload is None:
            continue  # reported by the trusted-stack checks
        found = list(_plan(model, workload, root, plans))
        problems += [Problem(f"models[{i}].{p.path}", p.message) for p in found]
    if problems:
        raise ConfigError(config.stack.name, problems)
    return plans


def _plan(model: ModelSettings, workload: TrustedWorkload, root: Path, plans: dict[str, EncryptedModelPlan]) -> Iterator[Problem]:
    pinned = workload.encrypted_model
    assert model.encrypted is not None  # the caller skips models without it
    if pinned is None:
        yield Problem("source", f"is encrypted but workload {model.workload} declares no encryptedModel on the trusted side (its agent policy would refuse the decryptor)")
        return
    path = root / model.encrypted.manifest
    try:
        data = path.read_bytes()
    except OSError as err:
        yield Problem("encrypted.manifest", f"cannot read {model.encrypted.manifest} ({err.strerror})")
        return
    try:
        manifest = manifests.parse(data)
    except manifests.ManifestError as err:
        yield Problem("encrypted.manifest", f"{model.encrypted.manifest}: {err}")
        return
    if manifest.sha256 != pinned["manifestSha256"]:
        yield Problem("encrypted.manifest", f"{model.encrypted.manifest} has sha256 {manifest.sha256}; workload {model.workload} pins {pinned['manifestSha256']} (encryptedModel.manifestSha256 on the trusted side)")
    if manifest.key_resource != pinned["keyUri"]:
        yield Problem("encrypted.manifest", f"the model was encrypted for {manifest.key_resource}; workload {model.workload} decrypts with {pinned['keyUri']}")
    if manifest.workload != model.workload:
        yield Problem("encrypted.manifest", f"the model was encrypted for workload {manifest.workload}, not {model.workload}")
    memory = VM_MEMORY_GI.get(model.machine_type)
    if memory is not None and volume_size_gi(manifest.total_size) > memory - _RESERVED_MEMORY_GI:
        yield Problem("encrypted.manifest", f"the model needs {volume_size_gi(manifest.total_size)} GiB of memory; a {model.machine_type} pod VM has {memory} GiB, {_RESERVED_MEMORY_GI} of them kept for NIM and the guest")
    plans[model.name] = EncryptedModelPlan(manifest, manifest.sha256, pinned["decryptorImage"], pinned["keyUri"], model.encrypted.url)
