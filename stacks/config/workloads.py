"""Config of the cloud cluster's workloads: peer pods (OSC), OpenShift AI, the NIM models, image pulls."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from stacks.config.base import (
    CONFIDENTIAL_GPU_SIZE,
    DnsLabel,
    Hostname,
    Model,
    OperatorPin,
    Problem,
    azure_spelling,
    confidential_size_problem,
    is_gpu_size,
    matching,
)

# GPUs per confidential GPU size (MicrosoftDocs azure-compute-docs, nccadsh100v5-series.md: 1x H100 NVL).
GPUS_PER_SIZE = {CONFIDENTIAL_GPU_SIZE: 1}
# A Go duration as CAA parses PROXY_TIMEOUT (time.ParseDuration), restricted to h/m/s.
_GO_DURATION = re.compile(r"^(?=\d)(\d+h)?(\d+m)?(\d+s)?$")
_GO_DURATION_PARTS = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
_TAG_PART = re.compile(r"^[A-Za-z0-9_.:/@+-]{1,256}$")
_NIM_IMAGE = re.compile(r"^nvcr\.io/nim/(?P<path>[a-z0-9._/-]+)/(?P<model>[a-z0-9._-]+):(?P<tag>[A-Za-z0-9._-]+)$")


def _nim_image(value: str) -> str:
    """a pinned NIM image reference, like nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3 (not :latest)"""
    if not _NIM_IMAGE.match(value):
        raise ValueError(f"{value!r} is not a NIM image reference like nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3 (a tag is required)")
    if value.endswith(":latest"):
        raise ValueError(f"{value} uses the moving tag latest; pin a NIM release tag")
    return value


GoDuration = Annotated[str, matching(_GO_DURATION, "a duration like 30m or 1h30m")]
# The kata shim waits at most this long (seconds) for the remote hypervisor (CAA) to start a pod VM
# (kata-containers src/runtime/config/configuration-remote.toml.in, remote_hypervisor_timeout;
# src/runtime/virtcontainers/remote.go StartVM).
KATA_REMOTE_HYPERVISOR_TIMEOUT = 600


def go_duration_seconds(value: str) -> int:
    """Seconds of a validated h/m/s Go duration (`1h30m` -> 5400)."""
    match = _GO_DURATION_PARTS.match(value)
    assert match
    return sum(int(match[unit] or 0) * factor for unit, factor in (("h", 3600), ("m", 60), ("s", 1)))
NimImage = Annotated[str, AfterValidator(_nim_image)]


class OscSettings(Model):
    """OpenShift sandboxed containers: the operator, the KataConfig and peer-pods-cm tuning."""

    operator: OperatorPin
    kata_config_pool_selector: dict[str, str] | None = None
    """Node labels (matchLabels) of the workers that run the CAA; all workers when unset."""
    caa_update_strategy: Literal["RollingUpdate", "OnDelete"]
    """`caaUpdateStrategy` in osc-feature-gates: how OSC rolls CAA (osc-caa-ds) after a peer-pods-cm change.
    RollingUpdate: CAA restarts on each worker at once, which can strand the peer pods running there;
    OnDelete: running peer pods are untouched and the change applies only as CAA pods are deleted.
    Required, so every environment chooses."""
    proxy_timeout: GoDuration = "5m"
    """PROXY_TIMEOUT: how long CAA waits for the pod VM's agent; at most remoteHypervisorTimeout."""
    remote_hypervisor_timeout: int = Field(default=KATA_REMOTE_HYPERVISOR_TIMEOUT, ge=60, le=7200)
    """Seconds the kata shim on the workers waits for a pod VM (`remote_hypervisor_timeout` in the kata
    remote configuration, 600 by default). Set it here only after raising it on the workers."""
    root_volume_size_gb: int = Field(default=300, ge=30, le=4095)
    """ROOT_VOLUME_SIZE (GB): the pod VM disk holds the pulled NIM image and the model cache."""
    peer_pods_limit_per_node: int = Field(default=10, ge=1, le=100)
    secure_boot: bool = True
    tags: dict[str, str] = {}
    """TAGS on every pod VM (Azure tags)."""

    def rules(self) -> Iterator[Problem]:
        if go_duration_seconds(self.proxy_timeout) > self.remote_hypervisor_timeout:
            yield Problem(
                "proxyTimeout",
                f"{self.proxy_timeout} exceeds remoteHypervisorTimeout ({self.remote_hypervisor_timeout} s): the kata shim gives up on the pod VM first; "
                "use at most that, or raise remote_hypervisor_timeout on the workers and set remoteHypervisorTimeout to match",
            )
        for key, value in self.tags.items():
            # Azure rejects tag names containing < > % & \ ? / (MicrosoftDocs azure-docs
            # articles/azure-resource-manager/management/tag-resources.md, Limitations): every pod VM would fail.
            if "/" in key:
                yield Problem(f"tags.{key}", "Azure tag names may not contain '/' (tag values may)")
            elif not _TAG_PART.match(key) or not _TAG_PART.match(value):
                yield Problem(f"tags.{key}", "tag keys and values may not contain ',', '=' or spaces (CAA reads TAGS as k=v,k2=v2)")


class OpenShiftAiSettings(Model):
    operator: OperatorPin
    ingress_domain: Hostname | None = None
    """The cluster's ingress domain (`oc get ingresses.config cluster -o jsonpath='{.spec.domain}'`);
    derived from cluster.aro.domain when the stack creates the cluster."""


# What the decryptor's agent policy accepts as the ciphertext's place (components/initdata.py template).
BlobUrl = Annotated[str, matching(r"^https://[a-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~%/-]*)?$", "an https URL without query (like https://<account>.blob.core.windows.net/<container>/<model>)")]


class EncryptedSource(Model):
    """An encrypted model (`python -m scripts.encrypt_model` output): where its ciphertext is, which manifest describes it."""

    manifest: str = Field(min_length=1)
    """Path of the model's manifest.json, relative to the project root: the plan sizes the pod's memory
    volume from it and checks it is the manifest the model's workload pins on the trusted side."""
    url: BlobUrl | None = None
    """Base URL of the uploaded ciphertext (its manifest.json.jwe and *.jwe); default
    `<modelStorage container URL>/<model name>`, read with the stack's SAS."""


class ModelSettings(Model):
    """One NIM model served by an InferenceService in its own namespace (named after the model)."""

    name: DnsLabel
    workload: DnsLabel
    """The trusted stack's workload this model runs as: its pinned image, initdata and sealed secrets."""
    image: NimImage
    """The NIM release, by tag: names the model format. The pod runs the workload's pinned digest of
    this repository (a different repository is a config error)."""
    gpus: int = Field(default=1, ge=1)
    machine_type: str = CONFIDENTIAL_GPU_SIZE
    model_cache_gi: int = Field(ge=1)
    """Size limit of the NIM cache (model weights), an emptyDir on the pod VM disk."""
    image_size_gi: int = Field(default=30, ge=1)
    """Unpacked size of the NIM image; with the cache it must fit osc.rootVolumeSizeGb."""
    replicas: int = Field(default=1, ge=1, le=16)
    exposure: Literal["route", "loadBalancer"] = "route"
    """How clients outside the cluster reach the model, TLS passing through to the pod VM: `route`, a
    passthrough Route on `hostname`; `loadBalancer`, a LoadBalancer Service on port 443 (point `hostname`'s
    DNS at its address)."""
    hostname: Hostname | None = None
    """The name clients use; default `<name>-<namespace>.<ingress domain>`. The trusted side's workload
    must list it in `spokes.<this cloud stack>.<workload>.servingHostnames` (its certificate names it)."""
    ngc_api_key_resource: str = "ngc-api-key"
    """Logical name, in the trusted stack's kbsResources, of the NGC API key NIM downloads the model with."""
    source: Literal["ngc", "encrypted"] = "ngc"
    """`ngc`: NIM downloads the model with the NGC key. `encrypted`: an init container decrypts it inside
    the pod VM into memory and NIM serves that directory; no NGC key at run time."""
    encrypted: EncryptedSource | None = None
    """With source encrypted: the ciphertext's place and manifest."""

    @property
    def namespace(self) -> str:
        return self.name

    @property
    def repository(self) -> str:
        return self.image.rsplit(":", 1)[0]

    @property
    def model_format(self) -> tuple[str, str]:
        """(model name, NIM release) from the image reference."""
        match = _NIM_IMAGE.match(self.image)
        assert match
        return match["model"], match["tag"]

    def rules(self) -> Iterator[Problem]:
        if self.source == "encrypted" and self.encrypted is None:
            yield Problem("encrypted", "is required with source encrypted (manifest, and url unless modelStorage holds the model)")
        if self.source == "ngc" and self.encrypted is not None:
            yield Problem("encrypted", "is only used with source encrypted")
        if len(self.name) > 31:
            yield Problem("name", f"{self.name} is longer than 31 characters; its Route host <name>-<namespace> must fit one DNS label")
        if reason := confidential_size_problem(self.machine_type):
            needs = "" if azure_spelling(self.machine_type) == CONFIDENTIAL_GPU_SIZE else f"; a NIM model needs {CONFIDENTIAL_GPU_SIZE}"
            yield Problem("machineType", f"{reason}{needs}")
        elif not is_gpu_size(self.machine_type):
            yield Problem("machineType", f"{self.machine_type} is a confidential CPU size without a GPU; a NIM model needs {CONFIDENTIAL_GPU_SIZE}")
        elif self.gpus > GPUS_PER_SIZE[self.machine_type]:
            yield Problem("gpus", f"{self.gpus} GPUs do not fit {self.machine_type} ({GPUS_PER_SIZE[self.machine_type]} GPU)")


class ImagePullSettings(Model):
    """How the pod VM authenticates to nvcr.io when it pulls the NIM image inside the guest.

    `pullSecret` (default): a dockerconfigjson Secret built from the cloud stack's own secret
    `nvcrPullKey`, referenced by the predictor. Works on the pinned OSC; the cloud cluster holds that
    pull credential. `kbs`: the guest's CDH fetches the registry credential from KBS: each model's
    workload sets `registryCredentials` on the trusted side, which renders cdh.toml `[image]
    authenticated_registry_credentials_uri` in its initdata; the cloud cluster holds nothing.
    """

    mode: Literal["pullSecret", "kbs"] = "pullSecret"
    kbs_resource: str = "nvcr-credentials"
    """In `kbs` mode: logical name, in the trusted stack's kbsResources, of the registry credential."""
