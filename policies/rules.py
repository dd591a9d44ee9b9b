"""The confidential-ai guardrails: CrossGuard policies over both stacks of an environment.

Importable on its own (tests and the offline runner call these policies with hand-built or plan-built
validation args); only `__main__.py` builds the `PolicyPack`, because constructing one starts the
analyzer's gRPC server. The pack is deliberately independent of the toolkit's code: it restates the
few facts it enforces (confidential sizes, sealed-secret format) so that a change to the code it
guards cannot quietly weaken it.

Props arrive as the engine sends them: camelCase input names, secret values unwrapped (the engine
marshals analyzer props with KeepSecrets; pulumi_policy unwraps them), unknown values raising
`UnknownValueError` on access, which the analyzer reports as "can't run during preview".
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

if __package__:  # imported as policies.rules (tests) or as the pack's own module (`pulumi preview --policy-pack`)
    from .agent_policy_mode import AGENT_POLICY_ENFORCED
else:
    from agent_policy_mode import AGENT_POLICY_ENFORCED
from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY

# --- Facts the policies enforce ---------------------------------------------------------------

# CAA reads these from the `peer-pods-cm` ConfigMap (confidential-containers/cloud-api-adaptor
# src/cloud-providers/azure/manager.go).
PEER_PODS_CONFIGMAP = "peer-pods-cm"
KATA_REMOTE = "kata-remote"
# The pod annotation that picks the pod VM size (cloud-api-adaptor src/cloud-providers/util.go).
MACHINE_TYPE_ANNOTATION = "io.katacontainers.config.hypervisor.machine_type"
GPU_RESOURCE = "nvidia.com/gpu"
# SEV-SNP + H100 (MicrosoftDocs azure-compute-docs, nccadsh100v5-series.md): the only confidential GPU size.
CONFIDENTIAL_GPU_SIZES = ("Standard_NCC40ads_H100_v5",)
# AMD SEV-SNP confidential sizes (DCasv5/DCadsv5/ECasv5/ECadsv5): the trusted side attests az-snp-vtpm only.
_SNP_SIZE = re.compile(r"^Standard_(DC|EC)\d+a(d)?s_v5$")
# Go's strconv.ParseBool, which CAA uses for DISABLECVM.
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

# A Secret on the cloud cluster carrying this label holds only sealed secrets (pointers into KBS).
KBS_RESOURCE_LABEL = "confidential-ai/kbs-resource"
# Keys whose values the toolkit keeps in KBS, whatever Secret or container env they appear in.
DEFAULT_KBS_MANAGED_KEYS = ("NGC_API_KEY", "NGC_CLI_API_KEY", "api_key")
# guest-components confidential-data-hub docs/SEALED_SECRET.md: sealed.<header>.<b64url JSON>.<signature>.
_SEALED = re.compile(r"^sealed\.(?P<header>[A-Za-z0-9_-]*)\.(?P<payload>[A-Za-z0-9_-]+=*)\.(?P<signature>[A-Za-z0-9_-]*)$")
# From guest-components v0.18.0 CDH verifies each one: header `alg` ES256 with a `kid`, a raw 64-byte
# r||s signature (confidential-data-hub hub/src/secret/mod.rs); unsigned ones are rejected.
_ES256_SIGNATURE_BYTES = 64

# Mounted file name the trustee operator expects (openshift/trustee-operator internal/controller).
KBS_CONFIG_KEY = "kbs-config.toml"
KBS_SERVICE = "kbs-service"
REFERENCE_VALUES_KEY = "reference_value"
# Reference value holding the accepted SNP launch measurements (confidential-containers/trustee
# attestation-service/src/ear_token/ear_default_policy_cpu.rego queries the same name).
MEASUREMENT_REFERENCE = "measurement"

ARO_CLUSTER = "azure-native:redhatopenshift:OpenShiftCluster"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
KUBERNETES_PROVIDER = "pulumi:providers:kubernetes"
STACK_REFERENCE = "pulumi:pulumi:StackReference"
# Providers that manage cloud resources: a trusted stack binds nothing to them.
CLOUD_PROVIDER_PACKAGES = ("azure-native", "azure", "azuread", "azapi")

POD = "kubernetes:core/v1:Pod"
POD_TEMPLATE_OWNERS = {
    "kubernetes:apps/v1:Deployment": ("spec", "template"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template"),
    "kubernetes:batch/v1:Job": ("spec", "template"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template"),
}
INFERENCE_SERVICE = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
NAMESPACE = "kubernetes:core/v1:Namespace"
SERVICE = "kubernetes:core/v1:Service"
ROUTE = "kubernetes:route.openshift.io/v1:Route"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
# A Namespace or InferenceService carrying this label holds a confidential model, as does the namespace
# of any kata-remote InferenceService: TLS must end inside its pod VM, so nothing in the namespace may
# terminate TLS in front of it (components/nim.py sets the label).
CONFIDENTIAL_MODEL_LABEL = "confidential-ai/confidential-model"
# odh-model-controller creates an edge-terminated Route for an InferenceService with this label
# (opendatahub-io/odh-model-controller internal/controller/serving/reconcilers/kserve_raw_route_reconciler.go).
KSERVE_VISIBILITY_LABEL = "networking.kserve.io/visibility"
# The container port a confidential model serves TLS on, by name (components/nim.py): a LoadBalancer
# or NodePort Service may only forward to it, never to a plaintext port.
TLS_PORT_NAME = "https"
# KServe components that run pods; each inlines a PodSpec plus `annotations` propagated to its pods
# (kserve/kserve config/crd/full/serving.kserve.io_inferenceservices.yaml).
INFERENCE_COMPONENTS = ("predictor", "transformer", "explainer")


# --- Reading props ----------------------------------------------------------------------------


def dig(value: Any, *path: str | int) -> Any:
    """The value at `path`, or None when any step is missing."""
    for part in path:
        if isinstance(part, int):
            if not _is_list(value) or part >= len(value):
                return None
        elif not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _items(value: Any) -> list[Any]:
    return list(value) if _is_list(value) else []


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def stack_of(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::<type>::<name>` -> `<stack>`."""
    return urn.split("::", 1)[0].split(":", 2)[-1]


def role_of(urn: str) -> str | None:
    """`trusted` or `cloud` from the stack name `<env>-<role>`; None for other stacks."""
    role = stack_of(urn).rsplit("-", 1)[-1]
    return role if role in ("trusted", "cloud") else None


def confidential_size_problem(size: str) -> str | None:
    if size in CONFIDENTIAL_GPU_SIZES or _SNP_SIZE.match(size):
        return None
    return f"{size!r} is not an AMD SEV-SNP confidential VM size"


def config_list(config: Mapping[str, Any], key: str, default: Sequence[str]) -> list[str]:
    value = config.get(key)
    return [str(v) for v in value] if _is_list(value) else list(default)


# --- Workloads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """One pod template of a resource: where it is, what runs it, which VM it asks for."""

    where: str
    runtime_class: str | None
    machine_type: str | None
    gpus: bool
    containers: list[Mapping[str, Any]]


def workloads(resource_type: str, props: Mapping[str, Any]) -> Iterator[Workload]:
    """Every pod template of a Pod, a pod-owning workload or an InferenceService."""
    if resource_type == POD:
        yield _workload("spec", _mapping(dig(props, "metadata", "annotations")), _mapping(props.get("spec")))
    elif resource_type in POD_TEMPLATE_OWNERS:
        path = POD_TEMPLATE_OWNERS[resource_type]
        template = _mapping(dig(props, *path))
        annotations = _mapping(dig(template, "metadata", "annotations"))
        yield _workload(".".join(path) + ".spec", annotations, _mapping(template.get("spec")))
    elif resource_type == INFERENCE_SERVICE:
        # KServe copies the InferenceService's annotations to its pods; a component's own win.
        outer = _mapping(dig(props, "metadata", "annotations"))
        for component in INFERENCE_COMPONENTS:
            spec = dig(props, "spec", component)
            if isinstance(spec, Mapping):
                annotations = {**outer, **_mapping(spec.get("annotations"))}
                yield _workload(f"spec.{component}", annotations, spec, model=spec.get("model"))


def _workload(where: str, annotations: Mapping[str, Any], spec: Mapping[str, Any], model: Any = None) -> Workload:
    containers = [c for c in [*_items(spec.get("containers")), *_items(spec.get("initContainers")), model] if isinstance(c, Mapping)]
    resources = [_mapping(c.get("resources")) for c in containers] + [_mapping(spec.get("resources"))]
    gpus = any(_positive(dig(r, section, GPU_RESOURCE)) for r in resources for section in ("limits", "requests"))
    machine_type = annotations.get(MACHINE_TYPE_ANNOTATION)
    return Workload(where, spec.get("runtimeClassName"), None if machine_type is None else str(machine_type), gpus, containers)


def _positive(quantity: Any) -> bool:
    try:
        return quantity is not None and float(str(quantity)) > 0
    except ValueError:
        return True  # an unparseable GPU quantity is still a request for GPUs


# --- Policy: peer pods keep confidential VMs --------------------------------------------------


def peer_pods_confidential(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != "kubernetes:core/v1:ConfigMap" or dig(args.props, "metadata", "name") != PEER_PODS_CONFIGMAP:
        return
    data = _mapping(args.props.get("data"))
    disable = data.get("DISABLECVM")
    if disable is not None and str(disable) not in _GO_FALSE:
        report_violation(f"peer-pods-cm sets DISABLECVM={disable!r}: pod VMs must be confidential VMs; remove it or set it to \"false\"", None)
    sizes = str(data.get("AZURE_INSTANCE_SIZES") or "")
    listed = [s for s in sizes.split(",") if s]
    if not listed:
        report_violation("peer-pods-cm has no AZURE_INSTANCE_SIZES: without the list a pod may ask for any VM size; list the confidential sizes", None)
    for size in listed:
        if reason := confidential_size_problem(size):
            report_violation(f"peer-pods-cm AZURE_INSTANCE_SIZES: {reason}; list only confidential sizes", None)
    default = data.get("AZURE_INSTANCE_SIZE")
    if default is not None:
        if reason := confidential_size_problem(str(default)):
            report_violation(f"peer-pods-cm AZURE_INSTANCE_SIZE: {reason}", None)
        elif listed and str(default) not in listed:
            report_violation(f"peer-pods-cm AZURE_INSTANCE_SIZE {default!r} is not in AZURE_INSTANCE_SIZES", None)


# --- Policy: confidential workloads, GPU workloads on a confidential GPU size -----------------


def confidential_workloads(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    gpu_sizes = config_list(args.get_config(), "gpuMachineTypes", CONFIDENTIAL_GPU_SIZES)
    for w in workloads(args.resource_type, args.props):
        if w.runtime_class == KATA_REMOTE and w.machine_type is not None:
            if reason := confidential_size_problem(w.machine_type):
                report_violation(f"{w.where}: {MACHINE_TYPE_ANNOTATION} {reason}", None)
        if not w.gpus:
            continue
        if w.runtime_class != KATA_REMOTE:
            report_violation(
                f"{w.where} asks for {GPU_RESOURCE} but runtimeClassName is {w.runtime_class!r}: GPU workloads run only in "
                f"confidential pod VMs (runtimeClassName: {KATA_REMOTE})",
                None,
            )
        elif w.machine_type is None:
            report_violation(
                f"{w.where} asks for {GPU_RESOURCE} but names no pod VM size: set the annotation {MACHINE_TYPE_ANNOTATION} "
                f"to one of {', '.join(gpu_sizes)} (CAA cannot infer a GPU size on Azure)",
                None,
            )
        elif w.machine_type not in gpu_sizes:
            report_violation(
                f"{w.where} asks for {GPU_RESOURCE} on pod VM size {w.machine_type!r}, which is not an allowed confidential "
                f"GPU size ({', '.join(gpu_sizes)})",
                None,
            )


def machine_types_listed(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Every size a kata-remote workload names is in the AZURE_INSTANCE_SIZES of the stack's peer-pods-cm."""
    listed: set[str] | None = None
    for r in args.resources:
        if r.resource_type == "kubernetes:core/v1:ConfigMap" and dig(r.props, "metadata", "name") == PEER_PODS_CONFIGMAP:
            listed = (listed or set()) | {s for s in str(dig(r.props, "data", "AZURE_INSTANCE_SIZES") or "").split(",") if s}
    for r in args.resources:
        for w in workloads(r.resource_type, r.props):
            if w.runtime_class != KATA_REMOTE or (w.machine_type is None and not w.gpus):
                continue
            size = w.machine_type or "(none)"
            if listed is None:
                report_violation(f"{r.name} {w.where} runs in a pod VM but this stack has no {PEER_PODS_CONFIGMAP} listing its size {size}", r.urn)
            elif size not in listed:
                report_violation(
                    f"{r.name} {w.where} asks for pod VM size {size}, which {PEER_PODS_CONFIGMAP} AZURE_INSTANCE_SIZES "
                    f"({','.join(sorted(listed))}) does not allow: CAA would refuse to create the VM",
                    r.urn,
                )


# --- Policy: KBS-managed values reach the cloud cluster only sealed ---------------------------


def sealed_secret_problem(value: Any) -> str | None:
    """Why `value` is not a sealed secret pointing into KBS, or None when it is one."""
    match = _SEALED.match(str(value))
    if not match:
        return "is not a sealed secret (sealed.<header>.<payload>.<signature>)"
    payload = match["payload"]
    try:
        document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return "is a sealed secret whose payload is not base64url JSON"
    if not isinstance(document, dict) or document.get("provider") != "kbs" or not str(document.get("name", "")).startswith("kbs:///"):
        return "is a sealed secret that does not point into KBS (provider kbs, name kbs:///...)"
    header, signature = _b64url_json(match["header"]), _b64url_bytes(match["signature"])
    if not isinstance(header, dict) or header.get("alg") != "ES256" or not header.get("kid") or len(signature or b"") != _ES256_SIGNATURE_BYTES:
        return "is an unsigned sealed secret (needs an ES256 header with a kid and a 64-byte signature, made on the trusted side)"
    return None


def _b64url_bytes(part: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        return None


def _b64url_json(part: str) -> Any:
    try:
        return json.loads(_b64url_bytes(part) or b"")
    except ValueError:
        return None


def kbs_secrets_sealed(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if role_of(args.urn) != "cloud":
        return
    managed = set(config_list(args.get_config(), "kbsManagedKeys", DEFAULT_KBS_MANAGED_KEYS))
    if args.resource_type == "kubernetes:core/v1:Secret":
        name = dig(args.props, "metadata", "name")
        labelled = _mapping(dig(args.props, "metadata", "labels")).get(KBS_RESOURCE_LABEL) is not None
        for field, encoded in (("stringData", False), ("data", True)):
            for key, value in _mapping(args.props.get(field)).items():
                if not (labelled or key in managed):
                    continue
                if reason := sealed_secret_problem(_base64_text(value) if encoded else value):
                    why = f"it is labelled {KBS_RESOURCE_LABEL}" if labelled else "the toolkit keeps that key in KBS"
                    report_violation(f"Secret {name} {field}.{key} {reason}: {why}, so the cloud cluster may only hold the sealed pointer", None)
    for w in workloads(args.resource_type, args.props):
        for container in w.containers:
            for env in _items(container.get("env")):
                if isinstance(env, Mapping) and env.get("name") in managed and env.get("value") is not None:
                    if reason := sealed_secret_problem(env["value"]):
                        report_violation(f"{w.where} container {container.get('name')} env {env['name']} {reason}: the value lives in KBS", None)


def _base64_text(value: Any) -> str:
    try:
        return base64.b64decode(str(value), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return str(value)


# --- Policy: KBS configuration and exposure ---------------------------------------------------


def kbs_config_hardened(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != "kubernetes:core/v1:ConfigMap":
        return
    text = _mapping(args.props.get("data")).get(KBS_CONFIG_KEY)
    if text is None:
        return
    try:
        config = tomllib.loads(str(text))
    except tomllib.TOMLDecodeError as err:
        report_violation(f"{KBS_CONFIG_KEY} is not valid TOML ({err}): KBS would not start with a checked configuration", None)
        return
    # Key names: openshift/trustee-operator config/templates/kbs-config-restricted.toml; admin backends
    # InsecureAllowAll | Simple | DenyAll (trustee kbs/src/admin/mod.rs).
    if dig(config, "http_server", "insecure_http") is not False:
        report_violation(f"{KBS_CONFIG_KEY} [http_server] insecure_http must be false: KBS serves only HTTPS", None)
    admin = _mapping(config.get("admin"))
    mode = admin.get("authorization_mode", admin.get("type"))
    if mode != "DenyAll" or admin.get("insecure_api") is True:
        report_violation(f"{KBS_CONFIG_KEY} [admin] authorization_mode is {mode!r}: the admin API must be closed (\"DenyAll\"); resources come from Secrets", None)
    if dig(config, "attestation_token", "insecure_header_jwk") is not False:
        report_violation(f"{KBS_CONFIG_KEY} [attestation_token] insecure_header_jwk must be false: tokens must be verified against trusted certs", None)


def kbs_route_passthrough(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != ROUTE:
        return
    if role_of(args.urn) != "trusted" and dig(args.props, "spec", "to", "name") != KBS_SERVICE:
        return
    termination = dig(args.props, "spec", "tls", "termination")
    if termination != "passthrough":
        report_violation(f"Route {dig(args.props, 'metadata', 'name')} tls.termination is {termination!r}: it must be \"passthrough\" so TLS ends in KBS", None)
    if dig(args.props, "spec", "tls", "insecureEdgeTerminationPolicy") == "Allow":
        report_violation("Route tls.insecureEdgeTerminationPolicy must not be \"Allow\": KBS is never reached over plain HTTP", None)


def launch_measurement_pinned(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != "kubernetes:core/v1:ConfigMap" or role_of(args.urn) != "trusted":
        return
    text = _mapping(args.props.get("data")).get(REFERENCE_VALUES_KEY)
    if text is None:
        return
    if not _reference_value(str(text), MEASUREMENT_REFERENCE):
        report_violation(
            f"{REFERENCE_VALUES_KEY} pins no SNP launch measurement: any paravisor firmware passes CPU attestation; "
            "set referenceValues.measurements (and requireMeasurement) to the value read from a running confidential VM",
            None,
        )


def _reference_value(document: str, name: str) -> Any:
    """The value of one RVPS record ({name: URL-safe base64 of {"value": ...}}), or None when absent or unreadable."""
    try:
        record = json.loads(document).get(name)
        return json.loads(base64.urlsafe_b64decode(str(record))).get("value") if record else None
    except (AttributeError, binascii.Error, ValueError):
        return None


# --- Policy: a confidential model's TLS ends in its pod VM -------------------------------------


def _namespace_of(props: Mapping[str, Any]) -> str:
    return str(dig(props, "metadata", "namespace") or "default")


def _labelled_confidential(props: Mapping[str, Any]) -> bool:
    return str(_mapping(dig(props, "metadata", "labels")).get(CONFIDENTIAL_MODEL_LABEL, "")).lower() == "true"


def confidential_namespaces(resources: Sequence[Any]) -> set[str]:
    """Namespaces holding a confidential model: marked so (the Namespace or an InferenceService in it), or
    running an InferenceService in a confidential pod VM (kata-remote), whatever its labels say."""
    found = set()
    for r in resources:
        if r.resource_type == NAMESPACE and _labelled_confidential(r.props):
            found.add(str(dig(r.props, "metadata", "name") or r.name))
        elif r.resource_type == INFERENCE_SERVICE and (
            _labelled_confidential(r.props) or any(w.runtime_class == KATA_REMOTE for w in workloads(r.resource_type, r.props))
        ):
            found.add(_namespace_of(r.props))
    return found


def exposure_problem(resource_type: str, props: Mapping[str, Any]) -> str | None:
    """Why this object would end a confidential model's TLS outside its pod VM, or None."""
    name = dig(props, "metadata", "name")
    if resource_type == INFERENCE_SERVICE:
        if str(_mapping(dig(props, "metadata", "labels")).get(KSERVE_VISIBILITY_LABEL, "")) == "exposed":
            return (f"InferenceService {name} is labelled {KSERVE_VISIBILITY_LABEL}=exposed: OpenShift AI would create an edge Route, "
                    "ending TLS at the cloud's router; expose it through a passthrough Route instead")
    elif resource_type == ROUTE:
        termination = dig(props, "spec", "tls", "termination")
        if termination is None:
            return f"Route {name} has no TLS: prompts would cross the cloud's network in plain HTTP; use tls.termination passthrough"
        if termination != "passthrough":
            return f"Route {name} tls.termination is {termination!r}: TLS would end at the cloud's router, not in the pod VM; use passthrough"
        if dig(props, "spec", "tls", "insecureEdgeTerminationPolicy") == "Allow":
            return f"Route {name} allows plain HTTP (insecureEdgeTerminationPolicy Allow)"
    elif resource_type == SERVICE and dig(props, "spec", "type") in ("LoadBalancer", "NodePort"):
        plain = [str(port.get("name") or port.get("port")) for port in _items(dig(props, "spec", "ports"))
                 if isinstance(port, Mapping) and str(port.get("targetPort")) != TLS_PORT_NAME]
        if plain:
            return (f"Service {name} of type {dig(props, 'spec', 'type')} forwards port {', '.join(plain)} to something other than "
                    f"the model's TLS port {TLS_PORT_NAME!r}: a plain-HTTP port outside the cluster")
    elif resource_type == INGRESS:
        return f"Ingress {name}: an ingress controller terminates TLS outside the pod VM; use a passthrough Route"
    return None


def confidential_model_exposure(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    confidential = confidential_namespaces(args.resources)
    for r in args.resources:
        if r.resource_type in (INFERENCE_SERVICE, ROUTE, SERVICE, INGRESS) and _namespace_of(r.props) in confidential:
            if problem := exposure_problem(r.resource_type, r.props):
                report_violation(f"{problem} (namespace {_namespace_of(r.props)} holds a confidential model)", r.urn)


# --- Policy: critical resources are protected -------------------------------------------------


def critical_resources_protected(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    critical = args.resource_type == ARO_CLUSTER or (args.resource_type == PRIVATE_KEY and role_of(args.urn) == "trusted")
    if not critical or args.opts.protect:
        return
    if {args.name, args.urn} & set(config_list(args.get_config(), "allowUnprotected", ())):
        return
    what = "the ARO cluster" if args.resource_type == ARO_CLUSTER else "a KBS key (signing, admin or HTTPS)"
    report_violation(
        f"{args.name} is {what} and must be protected (ResourceOptions(protect=True)): deleting or replacing it "
        f"loses the cluster or invalidates every issued token and pinned certificate. To remove protection "
        f"deliberately, list {args.name!r} in this policy's allowUnprotected config for that one run",
        None,
    )


# --- Policy: each stack manages only its own cluster ------------------------------------------


def provider_side(resource_type: str, name: str, props: Mapping[str, Any]) -> str | None:
    """Which cluster a provider manages: `trusted`, `cloud`, or None for local-only providers (tls, random)."""
    package = resource_type.removeprefix("pulumi:providers:")
    if package in CLOUD_PROVIDER_PACKAGES:
        return "cloud"
    if resource_type != KUBERNETES_PROVIDER:
        return None
    identifier = str(props.get("clusterIdentifier") or "")
    trusted = "trusted" in name or identifier.endswith("-trusted")
    return "trusted" if trusted else "cloud"


def cluster_trust_boundary(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    role = role_of(args.urn)
    if role is None:
        return
    stack = stack_of(args.urn)
    if args.resource_type.startswith("pulumi:providers:"):
        side = provider_side(args.resource_type, args.name, args.props)
        if side is not None and side != role:
            report_violation(f"{stack} declares provider {args.name} for the {side} side: a {role} stack never holds {side}-side credentials", None)
        return
    if args.resource_type == STACK_REFERENCE and role == "trusted" and str(args.props.get("name", "")).endswith("-cloud"):
        report_violation(f"{stack} reads stack {args.props.get('name')}: the trusted side takes nothing from the cloud side (reference values are its own decision)", None)
    if args.provider is None:
        if args.resource_type.startswith("kubernetes:"):
            report_violation(f"{args.name} has no explicit provider: every Kubernetes object names its cluster's provider", None)
        return
    package = args.resource_type.split(":", 1)[0]
    if args.provider.name.startswith("default") and package in ("kubernetes", *CLOUD_PROVIDER_PACKAGES):
        # A default provider acts on ambient credentials (kubeconfig, az login): whichever cluster those name.
        report_violation(f"{args.name} uses the default provider {args.provider.name}: bind it to its cluster's explicit provider", None)
    side = provider_side(args.provider.resource_type, args.provider.name, args.provider.props)
    if side is not None and side != role:
        report_violation(f"{args.name} in {stack} is bound to provider {args.provider.name} of the {side} side: each stack manages only its own cluster", None)


# --- Advisory policies ------------------------------------------------------------------------


def aro_api_server_private(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type == ARO_CLUSTER and dig(args.props, "apiserverProfile", "visibility") != "Private":
        report_violation("the ARO API server is public: fine for a lab, but a production cluster's API belongs on a private endpoint", None)


def operator_upgrades_reviewed(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != "kubernetes:operators.coreos.com/v1alpha1:Subscription":
        return
    spec = _mapping(args.props.get("spec"))
    if not spec.get("startingCSV"):
        report_violation(f"Subscription {spec.get('name')} pins no startingCSV: the installed operator version is whatever the channel serves", None)
    if spec.get("installPlanApproval", "Automatic") == "Automatic":
        report_violation(f"Subscription {spec.get('name')} approves install plans automatically: operator upgrades land without review", None)


def inference_in_confidential_vm(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != INFERENCE_SERVICE:
        return
    for w in workloads(args.resource_type, args.props):
        if w.runtime_class != KATA_REMOTE:
            report_violation(f"{w.where} runs on an ordinary worker (runtimeClassName {w.runtime_class!r}): its model and prompts are visible to the cloud's operators", None)


# --- The policies -----------------------------------------------------------------------------

_STRING_LIST = {"type": "array", "items": {"type": "string"}}

POLICIES = [
    ResourceValidationPolicy(
        name="peer-pods-confidential-vms",
        description="peer-pods-cm keeps pod VMs confidential: DISABLECVM not true, every listed size an SEV-SNP confidential size.",
        enforcement_level=MANDATORY,
        validate=peer_pods_confidential,
    ),
    ResourceValidationPolicy(
        name="confidential-gpu-workloads",
        description="Pod VMs name confidential sizes; a GPU workload runs in kata-remote on an allowed confidential GPU size.",
        enforcement_level=MANDATORY,
        validate=confidential_workloads,
        config_schema=PolicyConfigSchema({"gpuMachineTypes": {**_STRING_LIST, "default": list(CONFIDENTIAL_GPU_SIZES)}}),
    ),
    StackValidationPolicy(
        name="pod-vm-sizes-listed",
        description="Every pod VM size a kata-remote workload names is listed in the stack's peer-pods-cm AZURE_INSTANCE_SIZES.",
        enforcement_level=MANDATORY,
        validate=machine_types_listed,
    ),
    ResourceValidationPolicy(
        name="kbs-secrets-sealed",
        description="On the cloud cluster, values the toolkit keeps in KBS appear only as sealed secrets.",
        enforcement_level=MANDATORY,
        validate=kbs_secrets_sealed,
        config_schema=PolicyConfigSchema({"kbsManagedKeys": {**_STRING_LIST, "default": list(DEFAULT_KBS_MANAGED_KEYS)}}),
    ),
    ResourceValidationPolicy(
        name="kbs-config-hardened",
        description="kbs-config.toml: no insecure_http, admin API closed (DenyAll), insecure_header_jwk false.",
        enforcement_level=MANDATORY,
        validate=kbs_config_hardened,
    ),
    ResourceValidationPolicy(
        name="kbs-route-passthrough",
        description="The Route exposing KBS uses TLS passthrough and never allows plain HTTP.",
        enforcement_level=MANDATORY,
        validate=kbs_route_passthrough,
    ),
    StackValidationPolicy(
        name="confidential-model-tls-in-tee",
        description="A confidential model is never exposed through an edge or re-encrypt Route, a plain-HTTP LoadBalancer or NodePort Service, or an Ingress.",
        enforcement_level=MANDATORY,
        validate=confidential_model_exposure,
    ),
    ResourceValidationPolicy(
        name="critical-resources-protected",
        description="The ARO cluster and the trusted side's KBS keys are protected; unprotecting one needs an explicit allowUnprotected entry.",
        enforcement_level=MANDATORY,
        validate=critical_resources_protected,
        config_schema=PolicyConfigSchema({"allowUnprotected": {**_STRING_LIST, "default": []}}),
    ),
    ResourceValidationPolicy(
        name="cluster-trust-boundary",
        description="Each stack manages only its own cluster through an explicit provider; the trusted stack reads nothing from the cloud.",
        enforcement_level=MANDATORY,
        validate=cluster_trust_boundary,
    ),
    AGENT_POLICY_ENFORCED,
    ResourceValidationPolicy(
        name="aro-api-server-private",
        description="The ARO API server is private (advisory: a public one is a legitimate choice for a lab).",
        enforcement_level=ADVISORY,
        validate=aro_api_server_private,
    ),
    ResourceValidationPolicy(
        name="operator-upgrades-reviewed",
        description="Operator subscriptions pin a CSV and approve install plans manually (advisory).",
        enforcement_level=ADVISORY,
        validate=operator_upgrades_reviewed,
    ),
    ResourceValidationPolicy(
        name="snp-launch-measurement-pinned",
        description="The trusted side's reference values pin the SNP launch measurement (advisory: no published list exists; read it from a running confidential VM).",
        enforcement_level=ADVISORY,
        validate=launch_measurement_pinned,
    ),
    ResourceValidationPolicy(
        name="inference-in-confidential-vm",
        description="InferenceServices run in confidential pod VMs (advisory: a CPU-only model may run on workers by choice).",
        enforcement_level=ADVISORY,
        validate=inference_in_confidential_vm,
    ),
]
