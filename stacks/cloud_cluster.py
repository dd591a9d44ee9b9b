"""The cloud stack's cluster layer: peer pods, OpenShift AI and NIM models on the Azure layer's cluster.

Reads the trusted stack's public outputs first (`read_trusted_stack`), before anything else is
registered, so an undeployed trusted side stops the run with one line instead of half a deployment.
"""

from __future__ import annotations

import base64
import gzip
import json
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from cryptography import x509
from pulumi.runtime.sync_await import _sync_await

from components import trust_bundle as jws

from components.encrypted_model import EncryptedModelArgs
from components.nim import NimModel, NimModelArgs
from components.olm import OperatorInstall, OperatorInstallArgs, OperatorPin
from components.openshift_ai import OpenShiftAi, OpenShiftAiArgs
from components.peerpods import OSC_NAMESPACE, PeerPods, PeerPodsArgs
from components.sealed_secret import KBS_URI_PREFIX
from stacks.config import CloudConfig, ConfigError
from stacks.config.workloads import ModelSettings
from stacks import trust_bundle, versions
from stacks.config.base import OperatorPin as OperatorPinSettings
from stacks.config.base import Problem, secret_output
from stacks.contracts import CLOUD_READS, OPTIONAL_TRUSTED_OUTPUTS, WORKLOAD_KEYS, AzureLayer
from stacks.encrypted_models import EncryptedModelPlan

NVCR = "nvcr.io"


@dataclass(frozen=True)
class KbsResource:
    uri: str
    gpu_gated: bool
    min_gpus: int


@dataclass(frozen=True)
class TrustedWorkload:
    """What may run with KBS's secrets, as the trusted side declared it (stacks/contracts.py WORKLOAD_KEYS)."""

    image: str
    """`repo@sha256:<digest>`: the only application image the workload's agent policy runs."""
    initdata: str
    resources: tuple[str, ...]
    gpus: int
    sealed_secrets: dict[str, str]
    """Resource name -> signed sealed pointer, used verbatim."""
    serving_certificate: str | None
    """Its TLS serving certificate from the inference CA (public PEM); None when it serves no model."""
    serving_key_resource: str | None
    """The kbsResources name of its serving key (a sealed pointer to it is in `sealed_secrets`)."""
    encrypted_model: dict[str, str] | None = None
    """{"decryptorImage", "keyUri", "manifestSha256"} when the workload serves an encrypted model."""

    @property
    def repository(self) -> str:
        return self.image.split("@", 1)[0]


@dataclass(frozen=True)
class TrustedSide:
    """The trusted stack's public outputs, as plain values (none of them is a secret)."""

    stack: str
    kbs_url: str
    kbs_ca_cert: str
    kbs_resources: dict[str, KbsResource]
    workloads: dict[str, TrustedWorkload]
    inference_client_ca: str | None
    """The CA whose client certificates the models require (mutual TLS), when the trusted side sets one."""


# Where Pulumi runs the program (Pulumi.yaml): a relative trustBundle.file is read from here, whatever the cwd.
PROJECT_DIR = Path(__file__).resolve().parents[1]


def read_trusted_stack(config: CloudConfig) -> TrustedSide:
    """The trusted side's public values, from its signed bundle (`trustBundle`) or, in a single-backend lab,
    a StackReference; checked for what the cluster layer needs. Raises ConfigError otherwise."""
    if config.trust_bundle is not None:
        return _trusted_side(config, "trustBundle.file", f"trust bundle {config.trust_bundle.file}", read_trust_bundle(config))
    ref = pulumi.StackReference("trusted-stack", stack_name=config.trusted_stack_name)
    # StackReference outputs are asynchronous; waiting here keeps every other resource from being
    # registered when the trusted side is missing. `_sync_await` is the SDK's own helper for
    # synchronous invokes (pulumi sdk/python/lib/pulumi/runtime/sync_await.py), private API.
    outputs: dict[str, Any] = _sync_await(ref.outputs.future()) or {}
    secret_names = set(_sync_await(ref.secret_output_names.future()) or ())
    stack = config.trusted_stack_name
    short = stack.rsplit("/", 1)[-1]
    missing = [name for name in CLOUD_READS if outputs.get(name) in (None, "", {})]
    if missing:
        raise ConfigError(config.stack.name, [Problem("trustedStack", f"{stack} has no output {', '.join(missing)} (deploy it first: pulumi up -s {short})")])
    secret = sorted(secret_names & {*CLOUD_READS, *OPTIONAL_TRUSTED_OUTPUTS})
    if secret:
        raise ConfigError(config.stack.name, [Problem("trustedStack", f"{stack} exports {', '.join(secret)} as secret; the cloud side reads only public values")])
    return _trusted_side(config, "trustedStack", stack, outputs)


def read_trust_bundle(config: CloudConfig) -> dict[str, Any]:
    """The view in the bundle file `trustBundle.file`, once it verifies with a pinned key and is for this
    stack at the minimum version or above (stacks/trust_bundle.py); ConfigError naming the file otherwise."""
    settings = config.trust_bundle
    assert settings is not None

    def refused(reason: str) -> ConfigError:
        return ConfigError(config.stack.name, [Problem("trustBundle.file", f"{settings.file}: {reason}")])

    try:
        token = (PROJECT_DIR / settings.file).read_text()
    except OSError as err:
        raise refused(f"cannot read it ({err.strerror or err}): hand over the trusted stack's output trustBundles.{config.stack.name}") from None
    except UnicodeDecodeError:
        raise refused("refused: it is not a compact JWS") from None
    try:
        return trust_bundle.open_bundle(token, [key.model_dump() for key in settings.keys], config.stack.env, config.stack.name, settings.minimum_version)
    except jws.BundleError as err:
        raise refused(f"refused: {err}") from None


def _trusted_side(config: CloudConfig, key: str, source: str, outputs: dict[str, Any]) -> TrustedSide:
    resources, problems = _kbs_resources(key, source, outputs["kbsResources"])
    workloads, malformed = _workloads(key, source, outputs["workloads"])
    if malformed:
        raise ConfigError(config.stack.name, problems + malformed)
    trusted = TrustedSide(source, outputs["kbsUrl"], outputs["kbsCaCert"], resources, workloads, outputs.get("inferenceClientCaCert") or None)
    problems += list(_model_problems(config, trusted))
    if problems:
        raise ConfigError(config.stack.name, problems)
    return trusted


def _kbs_resources(key: str, stack: str, raw: Any) -> tuple[dict[str, KbsResource], list[Problem]]:
    resources: dict[str, KbsResource] = {}
    problems = []
    for name, entry in (raw or {}).items() if isinstance(raw, dict) else ():
        uri = entry.get("uri", "") if isinstance(entry, dict) else ""
        if not uri.startswith(KBS_URI_PREFIX):
            problems.append(Problem(key, f"{stack} output kbsResources.{name} has no kbs:/// uri"))
            continue
        resources[name] = KbsResource(uri, bool(entry.get("gpuGated", False)), int(entry.get("minGpus", 0)))
    if not isinstance(raw, dict):
        problems.append(Problem(key, f"{stack} output kbsResources is not a map of resources"))
    return resources, problems


def _workloads(key: str, stack: str, raw: Any) -> tuple[dict[str, TrustedWorkload], list[Problem]]:
    if not isinstance(raw, dict):
        return {}, [Problem(key, f"{stack} output workloads is not a map of workloads")]
    workloads: dict[str, TrustedWorkload] = {}
    problems = []
    for name, entry in raw.items():
        missing = [key for key in WORKLOAD_KEYS if not isinstance(entry, dict) or key not in entry]
        if missing:
            problems.append(Problem(key, f"{stack} output workloads.{name} lacks {', '.join(missing)} (update the trusted stack first)"))
            continue
        workloads[name] = TrustedWorkload(
            image=entry["image"],
            initdata=entry["initdata"],
            resources=tuple(entry["resources"]),
            gpus=int(entry["gpus"]),
            sealed_secrets=dict(entry["sealedSecrets"]),
            serving_certificate=entry.get("servingCertificate"),
            serving_key_resource=entry.get("servingKeyResource"),
            encrypted_model=dict(entry["encryptedModel"]) if entry.get("encryptedModel") else None,
        )
    return workloads, problems


def _model_problems(config: CloudConfig, trusted: TrustedSide) -> Iterator[Problem]:
    """Each model against the workload it names, and image pulls against what the trusted side publishes."""
    published = ", ".join(sorted(trusted.kbs_resources)) or "none"
    exported = ", ".join(sorted(trusted.workloads)) or "none"
    for i, model in enumerate(config.models):
        workload = trusted.workloads.get(model.workload)
        if workload is None:
            yield Problem(f"models[{i}].workload", f"{model.workload} is not a workload of {trusted.stack} (it exports: {exported})")
            continue
        if model.repository != workload.repository:
            yield Problem(f"models[{i}].image", f"{model.repository} is not the repository of workload {model.workload}'s pinned image {workload.image}")
        if model.gpus != workload.gpus:
            yield Problem(f"models[{i}].gpus", f"workload {model.workload} is declared with {workload.gpus} GPUs; the model asks for {model.gpus}")
        if problem := _serving_problem(model_hostname(config, model), model.workload, workload, trusted.stack):
            yield Problem(f"models[{i}].hostname" if model.hostname else f"models[{i}].workload", problem)
        # An encrypted model is served locally, without NGC (stacks/encrypted_models.py checks it).
        if model.source == "ngc":
            yield from _ngc_key_problems(i, model, workload, trusted)
        if config.image_pull.mode == "kbs":
            credentials = trusted.kbs_resources.get(config.image_pull.kbs_resource)
            if credentials is not None and registry_credentials_uri(workload.initdata) != credentials.uri:
                yield Problem(
                    f"models[{i}].workload",
                    f"imagePull.mode kbs needs workload {model.workload} to set registryCredentials: {config.image_pull.kbs_resource} on "
                    f"{trusted.stack} (its cdh.toml has no authenticated_registry_credentials_uri = {credentials.uri!r})",
                )
    if config.image_pull.mode == "kbs" and config.image_pull.kbs_resource not in trusted.kbs_resources:
        yield Problem("imagePull.kbsResource", f"{config.image_pull.kbs_resource} is not a KBS resource of {trusted.stack} (it publishes: {published})")


def model_hostname(config: CloudConfig, model: ModelSettings) -> str:
    """The name clients reach a model by: set in config, or the Route default `<name>-<namespace>.<ingress domain>`."""
    return model.hostname or f"{model.name}-{model.namespace}.{config.ingress_domain}"


def _serving_problem(hostname: str, name: str, workload: TrustedWorkload, stack: str) -> str | None:
    """Why the workload cannot serve TLS for `hostname` from inside its pod VM, or None."""
    fix = f"list {hostname} in workload {name}'s servingHostnames on {stack}"
    if not workload.serving_certificate or not workload.serving_key_resource:
        return f"workload {name} has no TLS serving certificate: {fix}"
    if workload.serving_key_resource not in workload.sealed_secrets:
        return f"{stack} publishes no sealed pointer to workload {name}'s serving key {workload.serving_key_resource} (update the trusted stack)"
    try:
        certificate = x509.load_pem_x509_certificate(workload.serving_certificate.encode())
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except (ValueError, x509.ExtensionNotFound):
        return f"{stack} output workloads.{name}.servingCertificate is not a certificate with DNS names"
    if hostname not in names:
        return f"workload {name}'s serving certificate names {', '.join(names)}, not {hostname}: {fix}"
    return None


def _ngc_key_problems(i: int, model: ModelSettings, workload: TrustedWorkload, trusted: TrustedSide) -> Iterator[Problem]:
    resource = trusted.kbs_resources.get(model.ngc_api_key_resource)
    if resource is None:
        published = ", ".join(sorted(trusted.kbs_resources)) or "none"
        yield Problem(f"models[{i}].ngcApiKeyResource", f"{model.ngc_api_key_resource} is not a KBS resource of {trusted.stack} (it publishes: {published})")
    elif model.ngc_api_key_resource not in workload.sealed_secrets:
        yield Problem(f"models[{i}].ngcApiKeyResource", f"workload {model.workload} may not receive {model.ngc_api_key_resource} (its resources: {', '.join(workload.resources) or 'none'})")
    elif resource.gpu_gated and model.gpus < resource.min_gpus:
        yield Problem(f"models[{i}].gpus", f"KBS releases {model.ngc_api_key_resource} only to pod VMs attesting {resource.min_gpus} GPUs; the model asks for {model.gpus}")


def registry_credentials_uri(initdata: str) -> str | None:
    """The registry-credential resource the guest's CDH fetches from KBS, per the (public) initdata."""
    document = tomllib.loads(gzip.decompress(base64.b64decode(initdata)).decode())
    cdh = tomllib.loads(document.get("data", {}).get("cdh.toml", ""))
    return cdh.get("image", {}).get("authenticated_registry_credentials_uri")


def peer_pods_config(config: CloudConfig, azure: AzureLayer) -> dict[str, pulumi.Input[str]]:
    """peer-pods-cm for Azure (cloud-api-adaptor src/cloud-providers/azure/manager.go and cmd flags).

    No INITDATA default: each model's pod carries its workload's initdata in its annotation, and a pod
    without one measures no workload's PCR 8, so KBS releases it nothing.
    """
    tags = {"confidential-ai-stack": config.stack.name, **config.osc.tags}
    return {
        "CLOUD_PROVIDER": "azure",
        "AZURE_SUBSCRIPTION_ID": azure.subscription_id,
        "AZURE_REGION": azure.region,
        "AZURE_RESOURCE_GROUP": azure.pod_vm_resource_group,
        "AZURE_SUBNET_ID": azure.pod_vm_subnet_id,
        "AZURE_NSG_ID": azure.pod_vm_nsg_id,
        "AZURE_IMAGE_ID": azure.pod_vm_image_id,
        "AZURE_INSTANCE_SIZE": config.peer_pods.default_instance_size,
        "AZURE_INSTANCE_SIZES": ",".join(config.peer_pods.instance_sizes),
        "DISABLECVM": "false",
        "ENABLE_SECURE_BOOT": str(config.osc.secure_boot).lower(),
        "USE_PUBLIC_IP": "false",
        "ROOT_VOLUME_SIZE": str(config.osc.root_volume_size_gb),
        "PROXY_TIMEOUT": config.osc.proxy_timeout,
        "PEERPODS_LIMIT_PER_NODE": str(config.osc.peer_pods_limit_per_node),
        "VXLAN_PORT": str(config.network.vxlan_port),
        "TAGS": ",".join(f"{k}={v}" for k, v in sorted(tags.items())),
    }


def operator_pin(pin: OperatorPinSettings) -> OperatorPin:
    return OperatorPin(channel=pin.channel, source=pin.source, starting_csv=pin.starting_csv)


def nvcr_pull_secret(key: pulumi.Output[str]) -> pulumi.Output[str]:
    """A dockerconfigjson for nvcr.io; NGC keys authenticate as user `$oauthtoken`."""

    def render(password: str) -> str:
        auth = base64.b64encode(f"$oauthtoken:{password}".encode()).decode()
        return json.dumps({"auths": {NVCR: {"username": "$oauthtoken", "password": password, "auth": auth}}}, sort_keys=True)

    return pulumi.Output.secret(key.apply(render))


def deploy_cluster_layer(config: CloudConfig, azure: AzureLayer, trusted: TrustedSide, encrypted: Mapping[str, EncryptedModelPlan]) -> None:
    """Everything on the cloud cluster, wired to the trusted stack's public outputs."""
    provider = azure.kubernetes
    after_cluster = pulumi.ResourceOptions(depends_on=azure.cluster_ready)
    # Operators install in parallel; each custom resource waits only for the operator serving its CRD.
    osc = OperatorInstall(
        "sandboxed-containers",
        OperatorInstallArgs(namespace=OSC_NAMESPACE, package="sandboxed-containers-operator", pin=operator_pin(config.osc.operator), kubeconfig=azure.kubeconfig),
        provider,
        after_cluster,
    )
    rhoai = OperatorInstall(
        "openshift-ai",
        OperatorInstallArgs(
            namespace="redhat-ods-operator",
            package="rhods-operator",
            pin=operator_pin(config.openshift_ai.operator),
            kubeconfig=azure.kubeconfig,
            own_namespace=False,
        ),
        provider,
        after_cluster,
    )
    peer_pods = PeerPods(
        "peer-pods",
        PeerPodsArgs(
            config=peer_pods_config(config, azure),
            credentials={
                "AZURE_CLIENT_ID": azure.peer_pods_client_id,
                "AZURE_CLIENT_SECRET": azure.peer_pods_client_secret,
                "AZURE_TENANT_ID": azure.tenant_id,
                "AZURE_SUBSCRIPTION_ID": azure.subscription_id,
            },
            pool_selector=config.osc.kata_config_pool_selector,
            operator=osc.installed,
            caa_update_strategy=config.osc.caa_update_strategy,
            pod_vm_ready=azure.pod_vm_ready,
        ),
        provider,
    )
    dsc_api = versions.openshift_ai_line(config.openshift_ai.operator.starting_csv).dsc_api
    assert dsc_api is not None
    openshift_ai = OpenShiftAi("openshift-ai", OpenShiftAiArgs(operator=rhoai.installed, api_version=dsc_api), provider)
    pull_secret = None
    if config.image_pull.mode == "pullSecret" and config.nvcr_pull_key is not None:
        pull_secret = nvcr_pull_secret(secret_output(config.nvcr_pull_key))
    urls = {}
    for model in config.models:
        workload = trusted.workloads[model.workload]
        assert workload.serving_certificate and workload.serving_key_resource  # read_trusted_stack checked them
        served = NimModel(
            f"model-{model.name}",
            NimModelArgs(
                name=model.name,
                namespace=model.namespace,
                image=workload.image,
                model_format=model.model_format,
                gpus=model.gpus,
                machine_type=model.machine_type,
                model_cache_gi=model.model_cache_gi,
                replicas=model.replicas,
                runtime_class=peer_pods.runtime_class,
                initdata=workload.initdata,
                ngc_api_key_sealed=None if model.name in encrypted else workload.sealed_secrets[model.ngc_api_key_resource],
                serving_certificate=workload.serving_certificate,
                serving_key_sealed=workload.sealed_secrets[workload.serving_key_resource],
                client_ca_certificate=trusted.inference_client_ca,
                pull_secret=pull_secret,
                hostname=model_hostname(config, model),
                exposure=model.exposure,
                kata_config=peer_pods.kata_config,
                data_science_cluster=openshift_ai.data_science_cluster,
                **_encrypted_model_args(model.name, encrypted.get(model.name), azure),
            ),
            provider,
        )
        urls[model.name] = {"inClusterUrl": served.in_cluster_url, "externalUrl": served.external_url, "workload": model.workload}
    pulumi.export("kbsUrl", trusted.kbs_url)
    pulumi.export("models", urls)
    pulumi.export("runtimeClass", peer_pods.runtime_class)
    pulumi.export("kbsResourcesReferenced", referenced_kbs_resources(config, trusted))


def _encrypted_model_args(name: str, plan: EncryptedModelPlan | None, azure: AzureLayer) -> dict[str, Any]:
    """NimModelArgs' encrypted-model fields: the decryptor as the workload pins it, the ciphertext's place."""
    if plan is None:
        return {}
    storage = azure.model_storage if plan.url is None else None
    if plan.url is None:
        assert storage is not None  # config rules: no url needs modelStorage
    url = plan.url or f"{storage.container_url}/{name}"
    args = EncryptedModelArgs(
        source_url=url,
        manifest_sha256=plan.manifest_sha256,
        total_size=plan.manifest.total_size,
        key_uri=plan.key_uri,
        decryptor_image=plan.decryptor_image,
        sas_secret_name=f"{name}-model-sas" if storage else None,
    )
    return {"encrypted": args, "model_sas": storage.read_sas if storage else None}


def referenced_kbs_resources(config: CloudConfig, trusted: TrustedSide) -> list[str]:
    uris = set()
    for model in config.models:
        pinned = trusted.workloads[model.workload].encrypted_model
        if model.source == "encrypted" and pinned:
            uris.add(pinned["keyUri"])
        else:
            uris.add(trusted.kbs_resources[model.ngc_api_key_resource].uri)
    if config.image_pull.mode == "kbs":
        uris.add(trusted.kbs_resources[config.image_pull.kbs_resource].uri)
    return sorted(uris)
