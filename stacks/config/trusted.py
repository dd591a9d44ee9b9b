"""Config of a `<env>-trusted` stack: the on-premises cluster that runs Trustee."""

from __future__ import annotations

import datetime
import re
from collections import Counter
from collections.abc import Iterator
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr

from components.initdata import PINNED_IMAGE
from components.trustee.names import RESERVED as RESERVED_NAMES
from components.trustee.names import serving_key_resource
from stacks import versions
from stacks.config import clock
from stacks.config.base import DnsLabel, Hostname, HttpsUrl, Model, OpenShiftVersion, OperatorPin, Problem, StackId, matching, nested, pin_fits

def _verifier_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{value!r} is not an https URL")
    return value


def _secret_key(value: str) -> str:
    """a Kubernetes Secret key (letters, digits, '-', '_', '.')"""
    # Kubernetes Secret data keys (k8s.io/apimachinery pkg/util/validation IsConfigMapKey).
    if not re.fullmatch(r"[-._a-zA-Z0-9]{1,253}", value) or value in (".", ".."):
        raise ValueError(f"{value!r} is not a Secret key (letters, digits, '-', '_', '.')")
    return value


Pcr = Annotated[str, matching(r"^[0-9a-f]{64}$", "a PCR value (64 lowercase hex characters, SHA-256 bank)")]
Version = Annotated[str, matching(r"^[0-9A-Fa-f]+(\.[0-9A-Fa-f]+)+$", "a version like 570.124.06 or 96.00.9F.00.04")]
# The SNP launch digest (SHA-384) as the az-snp-vtpm verifier reports it: standard base64 of 48 bytes.
SnpMeasurement = Annotated[str, matching(r"^[A-Za-z0-9+/]{64}$", "an SNP launch measurement (standard base64 of 48 bytes, 64 characters)")]
Timestamp = Annotated[str, matching(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$", "a UTC timestamp like 2027-01-01T00:00:00Z")]
SecretKey = Annotated[str, AfterValidator(_secret_key)]


class NvidiaVerifier(Model):
    type: Literal["remote", "local"] = "remote"
    """`remote` sends GPU evidence to NVIDIA's NRAS (needs an agreement with NVIDIA)."""
    url: Annotated[str, AfterValidator(_verifier_url)] = "https://nras.attestation.nvidia.com/v4/attest"

    def rules(self) -> Iterator[Problem]:
        if self.type == "local":
            yield Problem(
                "type",
                "local is not supported: the local verifier emits different claims than NRAS and the shipped GPU policy "
                "checks NRAS claims; use remote",
            )
        if self.url.rstrip("/").endswith("/gpu"):
            # The verifier appends /gpu itself (openshift/trustee deps/verifier/src/nvidia/mod.rs).
            yield Problem("url", f"{self.url} ends in /gpu; give the base attestation URL, the verifier adds /gpu")


class KbsTls(Model):
    mode: Literal["selfSigned", "provided"] = "selfSigned"
    """`selfSigned`: a CA and a server certificate made by the stack; `provided`: kbsTlsCertificate/kbsTlsPrivateKey."""
    ca_certificate: str | None = None
    """`provided` mode: PEM of the CA that issued kbsTlsCertificate; the guests trust it (public)."""
    validity_hours: int = Field(default=17520, ge=24)
    """`selfSigned` mode: lifetime of the CA and server certificate."""

    def rules(self) -> Iterator[Problem]:
        if self.mode == "provided" and not _is_pem(self.ca_certificate, "CERTIFICATE"):
            yield Problem("caCertificate", "provided mode needs the PEM CA certificate that issued kbsTlsCertificate")
        if self.mode == "selfSigned" and self.ca_certificate is not None:
            yield Problem("caCertificate", "is only used when mode is provided")


class KbsSettings(Model):
    url: HttpsUrl
    """Public URL of the KBS as the pod VMs reach it; its host is the Route's hostname."""
    operator: OperatorPin
    openshift_version: OpenShiftVersion
    """The trusted cluster's OpenShift version (`oc get clusterversion version -o jsonpath='{.status.desired.version}'`),
    checked against the Trustee rows of the version matrix (stacks/versions.py)."""
    exposure: Literal["route", "loadBalancer"] = "route"
    """`route`: passthrough Route on the URL's host (port 443); `loadBalancer`: kbs-service as a LoadBalancer (8080)."""
    nvidia_verifier: NvidiaVerifier = NvidiaVerifier()
    tls: KbsTls = KbsTls()

    @property
    def hostname(self) -> str:
        return urlsplit(self.url).hostname or ""

    def rules(self) -> Iterator[Problem]:
        yield from pin_fits("operator", self.operator, versions.TRUSTEE, "kbs.openshiftVersion", self.openshift_version)
        port = urlsplit(self.url).port
        if self.exposure == "route" and port not in (None, 443):
            yield Problem("url", f"a Route serves on 443, not {port}: use https://{self.hostname}")
        if self.exposure == "loadBalancer" and port != 8080:
            yield Problem("url", f"a LoadBalancer kbs-service listens on 8080: use https://{self.hostname}:8080")


class PcrReferenceValues(Model):
    """Accepted values of the vTPM PCRs of the pod VM image (PCR 8 is computed from the initdata)."""

    pcr03: list[Pcr] = Field(min_length=1)
    pcr04: list[Pcr] = Field(min_length=1)
    """Boot manager code (shim, grub or UKI): PCR 9/11/12 are extended by what it measures."""
    pcr07: list[Pcr] = Field(min_length=1)
    """Secure Boot policy (db/dbx/PK/KEK)."""
    pcr09: list[Pcr] = Field(min_length=1)
    pcr11: list[Pcr] = Field(min_length=1)
    pcr12: list[Pcr] = Field(min_length=1)


class MinimumTcb(Model):
    """Lowest accepted SEV-SNP reported TCB component versions (firmware, microcode)."""

    bootloader: int = Field(ge=0, le=255)
    tee: int = Field(ge=0, le=255)
    snp: int = Field(ge=0, le=255)
    microcode: int = Field(ge=0, le=255)


# How long before `referenceValues.expiration` the plan starts warning.
EXPIRY_WARNING = datetime.timedelta(days=30)


class ReferenceValues(Model):
    expiration: Timestamp
    """When these values stop being accepted. Trustee's RVPS stores it but never enforces it (trustee
    rvps/src: `ReferenceValue::expired` has no caller), so the stack does: a config whose values have
    expired is refused, and one expiring within 30 days warns (judged today, or at `--as-of`)."""
    pcrs: PcrReferenceValues
    minimum_tcb: MinimumTcb
    allowed_driver_versions: list[Version] = Field(min_length=1)
    allowed_vbios_versions: list[Version] = Field(min_length=1)
    measurements: list[SnpMeasurement] = []
    """Accepted SNP launch measurements of Azure's paravisor firmware, read from running confidential VMs;
    empty: not checked (any paravisor passes)."""
    require_measurement: bool = False
    """Refuse a config whose `measurements` is empty."""
    unpinned_measurement_reason: str | None = Field(default=None, min_length=1)
    """Why this environment accepts any paravisor while `measurements` is empty (a dev environment whose pod VMs
    are not measured yet): declared, the plan reports it as a note instead of warning about it."""

    @property
    def expires(self) -> datetime.datetime | None:
        """The expiration instant, or None when the timestamp names no real date and time."""
        try:
            return datetime.datetime.strptime(self.expiration, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
        except ValueError:
            return None

    def expires_soon(self) -> bool:
        """Within EXPIRY_WARNING of the day config is judged at (clock.today)."""
        expires = self.expires
        return expires is not None and expires.date() - clock.today() <= EXPIRY_WARNING

    def rules(self) -> Iterator[Problem]:
        expires = self.expires
        if expires is None:
            yield Problem("expiration", f"{self.expiration!r} is not a date and time that exists")
        elif expires.date() <= clock.today():
            yield Problem(
                "expiration",
                f"{self.expiration} has passed (as of {clock.today()}): Trustee would keep matching these values, so the stack "
                "refuses them; read current values from evidence (python -m scripts.reference_values) and move expiration forward",
            )
        if self.unpinned_measurement_reason is not None and self.measurements:
            yield Problem("unpinnedMeasurementReason", "is only used while measurements is empty; remove it now that measurements are pinned")
        if self.unpinned_measurement_reason is not None and self.require_measurement:
            yield Problem("unpinnedMeasurementReason", "contradicts requireMeasurement: true; keep one of the two")
        if self.require_measurement and not self.measurements:
            yield Problem(
                "measurements",
                "is empty but requireMeasurement is true: list the SNP launch measurement of your pod VMs "
                "(docs/trusted-cluster.md: Reading the SNP launch measurement)",
            )


class AgentPolicy(Model):
    """What every workload's agent policy allows beyond running its own image (components/initdata.py)."""

    allow_read_stream: bool = True
    """Serve the container's stdout/stderr to the host (kubectl logs). Refusing it blocks the container on
    kata agents older than 3.15.0, whose log pipe then fills (kata-containers PR #10818, commit 937fd907)."""
    mode: Literal["enforce", "audit"] = "enforce"
    """`audit`: the agent serves every request and logs `policy: ignoring error for <Request>` for each one the
    enforcing policy would refuse (a trial on a new cluster; `python -m scripts.replay_agent_requests` names the
    field). Never on production: the policy pack refuses it there."""


class KbsResource(Model):
    """One secret KBS releases, as `kbs:///default/<secret>/<key>`; its value is `kbsSecrets.<name>`."""

    name: DnsLabel
    """Logical name the cloud side refers to (`ngc-api-key`)."""
    secret: DnsLabel
    key: SecretKey
    gpu_gated: bool = True
    """Released only to pod VMs whose GPUs attested too (for GPU workloads)."""
    min_gpus: int | None = Field(default=None, ge=0, le=8)
    """GPUs that must attest; defaults to 1 when gpuGated, 0 otherwise."""

    @property
    def required_gpus(self) -> int:
        if self.min_gpus is not None:
            return self.min_gpus
        return 1 if self.gpu_gated else 0

    @property
    def uri(self) -> str:
        return f"kbs:///default/{self.secret}/{self.key}"

    def rules(self) -> Iterator[Problem]:
        if self.gpu_gated and self.min_gpus == 0:
            yield Problem("minGpus", "a gpuGated resource needs at least 1 GPU; set gpuGated: false for a CPU-only resource")
        if not self.gpu_gated and self.min_gpus:
            yield Problem("minGpus", "is only meaningful with gpuGated: true")
        if self.secret in RESERVED_NAMES:
            yield Problem("secret", f"{self.secret!r} is a name the stack uses for Trustee's own configuration; pick another")


def _pinned_image(value: str) -> str:
    """an image pinned by digest, `<repository>@sha256:<64 hex>`, like nvcr.io/nim/meta/llama-3.1-8b-instruct@sha256:bcf3...c220 (a tag alone is not a pin)"""
    if not PINNED_IMAGE.match(value):
        hint = " (a tag is not a pin: the registry can move it)" if "@" not in value else ""
        raise ValueError(f"{value!r} is not an image pinned by digest like nvcr.io/nim/meta/llama-3.1-8b-instruct@sha256:<64 hex>{hint}")
    return value


PinnedImage = Annotated[str, AfterValidator(_pinned_image)]
ImageEnvEntry = Annotated[str, matching(r"^[A-Za-z_][A-Za-z0-9_]*=[^\n]*\Z", "an environment entry NAME=value as the image's config lists it")]
AbsolutePath = Annotated[str, matching(r"^(?:/|(?:/(?!\.\.?(?:/|\Z))[^/\x00\n]+)+)\Z", "a normal absolute path like /opt/nim (no trailing or doubled /, no . or ..)")]
Sha256Hex = Annotated[str, matching(r"^[0-9a-f]{64}$", "a sha256 (64 lowercase hex characters)")]


class EncryptedModel(Model):
    """The encrypted model a workload serves: its pod's init container decrypts it inside the pod VM
    (components/encrypted_model.py), and the workload's agent policy runs that container exactly."""

    decryptor_image: PinnedImage
    """The decryptor image (images/model-decryptor) pinned by digest."""
    key_resource: DnsLabel
    """The kbsResources name of the model key (listed in the workload's `resources`)."""
    manifest_sha256: Sha256Hex
    """sha256 of the model's manifest.json (`python -m scripts.encrypt_model` prints it): the one model
    this workload may decrypt, pinned in its agent policy."""


class Workload(Model):
    """A container the trusted side lets run with secrets: its own initdata, agent policy and PCR 8."""

    name: DnsLabel
    """What a cloud-side model names in `workload`."""
    image: PinnedImage
    """The only application image its agent policy lets the pod VM run, `repo@sha256:<digest>`."""
    resources: list[DnsLabel] = []
    """kbsResources names released to a pod VM measuring this workload's initdata."""
    gpus: int = Field(default=1, ge=0, le=8)
    """GPUs the workload's pod VM attests; each resource's minGpus must fit."""
    args: list[str] | None = Field(default=None, min_length=1)
    """The container's full command line, the image's Entrypoint then Cmd (`python -m scripts.pin_workload` reads
    them from the registry), pinned in the agent policy so the host cannot run the image with another command.
    Required for a workload that receives any KBS resource."""
    working_dir: AbsolutePath | None = None
    """The image's WorkingDir (`skopeo inspect --config`, `.config.WorkingDir`; `python -m scripts.pin_workload`
    writes it): the only working directory the agent policy lets the container have. Unset: any outside
    host-written files."""
    image_env: list[ImageEnvEntry] = []
    """The image's own `NAME=value` environment entries (its config's `Env`, as `scripts.pin_workload` writes them):
    the runtime passes them to the container, and the agent policy allows exactly these, beside the pod spec's and
    the runtime's own (service links, HOSTNAME); the same name with another value (PATH, LD_LIBRARY_PATH,
    REQUESTS_CA_BUNDLE) is refused, so an image whose environment is not listed does not start."""
    registry_credentials: DnsLabel | None = None
    """A kbsResources name (listed in `resources`) holding the registry credentials the guest pulls
    `image` with: rendered as cdh.toml `[image] authenticated_registry_credentials_uri`."""
    serving_hostnames: list[Hostname] = []
    """Host names clients reach the workload's model by (the cloud side's Route host): the stack issues
    it a certificate for them from the inference CA, and its key is a KBS resource only this workload
    receives, so TLS ends inside its attested pod VM. Empty: the workload serves no model."""
    retiring_pcr08: list[Pcr] = []
    """PCR 8 of this workload's previous initdata (its old `workloads.<name>.initdataPcr8` output), still
    accepted, and still given its resources, while running pod VMs restart onto the new one; empty it once they have."""
    encrypted_model: EncryptedModel | None = None
    """Set when the workload serves a model encrypted at source instead of one NIM downloads."""

    def rules(self) -> Iterator[Problem]:
        for i, name in enumerate(self.resources):
            if name in self.resources[:i]:
                yield Problem(f"resources[{i}]", f"{name!r} is listed twice")
        if self.registry_credentials and self.registry_credentials not in self.resources:
            yield Problem("registryCredentials", f"{self.registry_credentials!r} is not in this workload's resources; list it there so KBS releases it to the workload")
        if self.encrypted_model and self.encrypted_model.key_resource not in self.resources:
            yield Problem("encryptedModel.keyResource", f"{self.encrypted_model.key_resource!r} is not in this workload's resources; list it there so KBS releases it to the workload")
        if self.encrypted_model and self.encrypted_model.decryptor_image == self.image:
            yield Problem("encryptedModel.decryptorImage", "is the workload's own image; the decryptor is a separate image (images/model-decryptor)")


class InferenceTls(Model):
    """The inference CA that issues each serving workload's certificate (what model clients trust)."""

    validity_hours: int = Field(default=8760, ge=24)
    """Lifetime of the inference CA and the serving certificates."""
    client_ca_certificate: str | None = None
    """PEM of a CA whose client certificates the models require (mutual TLS); public. Unset: any client
    may connect (authenticate them in front of the model, or here)."""

    def rules(self) -> Iterator[Problem]:
        if self.client_ca_certificate is not None and not _is_pem(self.client_ca_certificate, "CERTIFICATE"):
            yield Problem("clientCaCertificate", "is not a PEM certificate")


KeySlot = Literal["a", "b"]


class TrustBundleSettings(Model):
    """The signed bundles the cloud stacks read (output `trustBundles`, docs/security-model.md)."""

    version: int = Field(ge=1)
    """Raise it with every change the cloud side must take: a cloud stack refuses a bundle below its
    trustBundle.minimumVersion, so an older bundle cannot be replayed."""
    keys: list[KeySlot] = Field(default=["a"], min_length=1, max_length=2)
    """The signing keys kept in this stack (`trust-bundle-key-<slot>`, protected); two only during a rollover."""
    signing_key: KeySlot = "a"
    """The slot that signs; output `trustBundleKey` is its public JWK."""

    def rules(self) -> Iterator[Problem]:
        if len(set(self.keys)) != len(self.keys):
            yield Problem("keys", "lists a slot twice")
        if self.signing_key not in self.keys:
            yield Problem("signingKey", f"{self.signing_key!r} is not in keys ({', '.join(self.keys)}); add it there first")


class TrustedConfig(Model):
    stack: StackId
    role: Literal["trusted"]
    kubeconfig: SecretStr
    """Admin kubeconfig of the trusted cluster (secret config)."""
    kbs: KbsSettings
    reference_values: ReferenceValues
    agent_policy: AgentPolicy = AgentPolicy()
    kbs_resources: list[KbsResource] = []
    workloads: list[Workload] = []
    """What may run in a pod VM with KBS's secrets; the cloud stack's models name one each."""
    inference_tls: InferenceTls = InferenceTls()
    trust_bundle: TrustBundleSettings
    kbs_secrets: dict[str, SecretStr] = {}
    """Secret config: the value of each KBS resource, by its logical name."""
    kbs_tls_certificate: SecretStr | None = None
    """`kbs.tls.mode: provided`: PEM server certificate for the KBS hostname."""
    kbs_tls_private_key: SecretStr | None = None
    """`kbs.tls.mode: provided`: PEM private key of kbsTlsCertificate."""

    def rules(self) -> Iterator[Problem]:
        yield from self._resource_rules()
        yield from self._workload_rules()
        yield from self._serving_rules()
        yield from self._tls_rules()

    def _resource_rules(self) -> Iterator[Problem]:
        names = Counter(r.name for r in self.kbs_resources)
        model_keys = {w.encrypted_model.key_resource for w in self.workloads if w.encrypted_model}
        uris = Counter(r.uri for r in self.kbs_resources)
        for i, resource in enumerate(self.kbs_resources):
            # The loader collects nested rules of top-level models only; list items' rules run here.
            yield from nested(f"kbsResources[{i}]", resource.problems())
            if names[resource.name] > 1:
                yield Problem(f"kbsResources[{i}].name", f"{resource.name!r} is declared more than once")
            if uris[resource.uri] > 1:
                yield Problem(f"kbsResources[{i}].key", f"{resource.uri} is declared more than once")
            value = self.kbs_secrets.get(resource.name)
            if value is None:
                yield Problem("kbsSecrets", f"has no value for resource {resource.name!r}: "
                                            f"pulumi config set --secret --path 'kbsSecrets.{resource.name}' <value> -s {self.stack.name}")
            elif not value.get_secret_value():
                yield Problem(f"kbsSecrets.{resource.name}", "is empty")
            elif resource.name in model_keys and _raw_key_with_whitespace(value.get_secret_value()):
                yield Problem(
                    f"kbsSecrets.{resource.name}",
                    "is a model key with a newline or spaces around it: KServe's decryptor reads a raw key as UTF-8 text "
                    "without stripping it (kserve-storage 0.21.0 confidential/jwe_decryptor.py) and fails; store the key text "
                    f"alone: pulumi config set --secret --path 'kbsSecrets.{resource.name}' \"$(cat KEY_FILE)\" -s {self.stack.name}",
                )
        for name in sorted(set(self.kbs_secrets) - set(names)):
            yield Problem(f"kbsSecrets.{name}", "is not a declared kbsResources name; declare it or remove the value")

    def _workload_rules(self) -> Iterator[Problem]:
        resources = {r.name: r for r in self.kbs_resources}
        names = Counter(w.name for w in self.workloads)
        for i, workload in enumerate(self.workloads):
            if names[workload.name] > 1:
                yield Problem(f"workloads[{i}].name", f"{workload.name!r} is declared more than once")
            for j, name in enumerate(workload.resources):
                resource = resources.get(name)
                if resource is None:
                    yield Problem(f"workloads[{i}].resources[{j}]", f"{name!r} is not a kbsResources name (declared: {', '.join(sorted(resources)) or 'none'})")
                elif resource.required_gpus > workload.gpus:
                    yield Problem(f"workloads[{i}].gpus", f"{workload.gpus} GPUs cannot receive {name!r}: KBS releases it only to pod VMs attesting {resource.required_gpus}")
            if workload.args is None and (workload.resources or workload.serving_hostnames):
                # Fail closed: with an unpinned process the host picks what runs next to the released secrets.
                yield Problem(
                    f"workloads[{i}].args",
                    f"is unset, but workload {workload.name} receives KBS resources: pin its image's process with "
                    f"`python -m scripts.pin_workload {workload.image} --env {self.stack.env} --workload {workload.name} --write`",
                )

    def _serving_rules(self) -> Iterator[Problem]:
        """Each serving key is a KBS resource named after its workload; each host name serves one workload."""
        generated = {serving_key_resource(w.name): w.name for w in self.workloads if w.serving_hostnames}
        for i, resource in enumerate(self.kbs_resources):
            if resource.name in generated:
                yield Problem(f"kbsResources[{i}].name", f"{resource.name!r} is the name of workload {generated[resource.name]}'s TLS serving key; pick another")
        owners: dict[str, str] = {}
        for i, workload in enumerate(self.workloads):
            for j, hostname in enumerate(workload.serving_hostnames):
                if owners.setdefault(hostname, workload.name) != workload.name:
                    yield Problem(f"workloads[{i}].servingHostnames[{j}]", f"{hostname} is already served by workload {owners[hostname]}")

    def _tls_rules(self) -> Iterator[Problem]:
        provided = {"kbsTlsCertificate": self.kbs_tls_certificate, "kbsTlsPrivateKey": self.kbs_tls_private_key}
        for key, value in provided.items():
            if self.kbs.tls.mode == "provided":
                if value is None:
                    yield Problem(key, "is required when kbs.tls.mode is provided (store it as a secret)")
            elif value is not None:
                yield Problem(key, "is only used when kbs.tls.mode is provided")


def _raw_key_with_whitespace(value: str) -> bool:
    """A model key given as base64url text (not JWK JSON, which JSON parsing trims) with whitespace around it."""
    return not value.lstrip().startswith("{") and value != value.strip()


def _is_pem(value: str | None, label: str) -> bool:
    return bool(value and f"-----BEGIN {label}-----" in value and f"-----END {label}-----" in value)
