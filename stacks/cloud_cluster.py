"""The cloud stack's cluster layer: peer pods, OpenShift AI and NIM models on the Azure layer's cluster.

Reads the trusted stack's public outputs first (`read_trusted_stack`), before anything else is
registered, so an undeployed trusted side stops the run with one line instead of half a deployment.
"""

from __future__ import annotations

import base64
import gzip
import json
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime.sync_await import _sync_await

from components.nim import NimModel, NimModelArgs
from components.olm import OperatorInstall, OperatorInstallArgs, OperatorPin
from components.openshift_ai import OpenShiftAi, OpenShiftAiArgs
from components.peerpods import OSC_NAMESPACE, PeerPods, PeerPodsArgs
from components.sealed_secret import KBS_URI_PREFIX
from stacks.config import CloudConfig, ConfigError
from stacks import versions
from stacks.config.base import OperatorPin as OperatorPinSettings
from stacks.config.base import Problem, secret_output
from stacks.contracts import CLOUD_READS, AzureLayer

NVCR = "nvcr.io"


@dataclass(frozen=True)
class KbsResource:
    uri: str
    gpu_gated: bool
    min_gpus: int


@dataclass(frozen=True)
class TrustedSide:
    """The trusted stack's public outputs, as plain values (none of them is a secret)."""

    stack: str
    kbs_url: str
    kbs_ca_cert: str
    initdata: str
    initdata_digest: str
    kbs_resources: dict[str, KbsResource]


def read_trusted_stack(config: CloudConfig) -> TrustedSide:
    """Reference the trusted stack and check what the cluster layer needs from it; raise ConfigError otherwise."""
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
    secret = sorted(secret_names & set(CLOUD_READS))
    if secret:
        raise ConfigError(config.stack.name, [Problem("trustedStack", f"{stack} exports {', '.join(secret)} as secret; the cloud side reads only public values")])
    resources, problems = _kbs_resources(stack, outputs["kbsResources"])
    trusted = TrustedSide(stack, outputs["kbsUrl"], outputs["kbsCaCert"], outputs["initdata"], outputs["initdataDigest"], resources)
    problems += list(_workload_problems(config, trusted))
    if problems:
        raise ConfigError(config.stack.name, problems)
    return trusted


def _kbs_resources(stack: str, raw: Any) -> tuple[dict[str, KbsResource], list[Problem]]:
    resources: dict[str, KbsResource] = {}
    problems = []
    for name, entry in (raw or {}).items() if isinstance(raw, dict) else ():
        uri = entry.get("uri", "") if isinstance(entry, dict) else ""
        if not uri.startswith(KBS_URI_PREFIX):
            problems.append(Problem("trustedStack", f"{stack} output kbsResources.{name} has no kbs:/// uri"))
            continue
        resources[name] = KbsResource(uri, bool(entry.get("gpuGated", False)), int(entry.get("minGpus", 0)))
    if not isinstance(raw, dict):
        problems.append(Problem("trustedStack", f"{stack} output kbsResources is not a map of resources"))
    return resources, problems


def _workload_problems(config: CloudConfig, trusted: TrustedSide) -> Iterator[Problem]:
    """What the models and image pulls ask of KBS, checked against what the trusted side publishes."""
    published = ", ".join(sorted(trusted.kbs_resources)) or "none"
    for i, model in enumerate(config.models):
        resource = trusted.kbs_resources.get(model.ngc_api_key_resource)
        if resource is None:
            yield Problem(f"models[{i}].ngcApiKeyResource", f"{model.ngc_api_key_resource} is not a KBS resource of {trusted.stack} (it publishes: {published})")
        elif resource.gpu_gated and model.gpus < resource.min_gpus:
            yield Problem(f"models[{i}].gpus", f"KBS releases {model.ngc_api_key_resource} only to pod VMs attesting {resource.min_gpus} GPUs; the model asks for {model.gpus}")
    if config.image_pull.mode == "kbs":
        name = config.image_pull.kbs_resource
        resource = trusted.kbs_resources.get(name)
        if resource is None:
            yield Problem("imagePull.kbsResource", f"{name} is not a KBS resource of {trusted.stack} (it publishes: {published})")
        elif registry_credentials_uri(trusted.initdata) != resource.uri:
            yield Problem("imagePull.mode", f"kbs needs the trusted initdata's cdh.toml to set [image] authenticated_registry_credentials_uri = {resource.uri!r}")


def registry_credentials_uri(initdata: str) -> str | None:
    """The registry-credential resource the guest's CDH fetches from KBS, per the (public) initdata."""
    document = tomllib.loads(gzip.decompress(base64.b64decode(initdata)).decode())
    cdh = tomllib.loads(document.get("data", {}).get("cdh.toml", ""))
    return cdh.get("image", {}).get("authenticated_registry_credentials_uri")


def peer_pods_config(config: CloudConfig, azure: AzureLayer, trusted: TrustedSide) -> dict[str, pulumi.Input[str]]:
    """peer-pods-cm for Azure (cloud-api-adaptor src/cloud-providers/azure/manager.go and cmd flags)."""
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
        "INITDATA": trusted.initdata,
    }


def operator_pin(pin: OperatorPinSettings) -> OperatorPin:
    return OperatorPin(channel=pin.channel, source=pin.source, starting_csv=pin.starting_csv)


def nvcr_pull_secret(key: pulumi.Output[str]) -> pulumi.Output[str]:
    """A dockerconfigjson for nvcr.io; NGC keys authenticate as user `$oauthtoken`."""

    def render(password: str) -> str:
        auth = base64.b64encode(f"$oauthtoken:{password}".encode()).decode()
        return json.dumps({"auths": {NVCR: {"username": "$oauthtoken", "password": password, "auth": auth}}}, sort_keys=True)

    return pulumi.Output.secret(key.apply(render))


def deploy_cluster_layer(config: CloudConfig, azure: AzureLayer, trusted: TrustedSide) -> None:
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
            config=peer_pods_config(config, azure, trusted),
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
        served = NimModel(
            f"model-{model.name}",
            NimModelArgs(
                name=model.name,
                namespace=model.namespace,
                image=model.image,
                model_format=model.model_format,
                gpus=model.gpus,
                machine_type=model.machine_type,
                model_cache_gi=model.model_cache_gi,
                replicas=model.replicas,
                runtime_class=peer_pods.runtime_class,
                initdata=trusted.initdata,
                ngc_api_key_uri=trusted.kbs_resources[model.ngc_api_key_resource].uri,
                pull_secret=pull_secret,
                ingress_domain=config.ingress_domain,
                kata_config=peer_pods.kata_config,
                data_science_cluster=openshift_ai.data_science_cluster,
            ),
            provider,
        )
        urls[model.name] = {"inClusterUrl": served.in_cluster_url, "externalUrl": served.external_url}
    pulumi.export("kbsUrl", trusted.kbs_url)
    pulumi.export("models", urls)
    pulumi.export("runtimeClass", peer_pods.runtime_class)
    pulumi.export("kbsResourcesReferenced", referenced_kbs_resources(config, trusted))


def referenced_kbs_resources(config: CloudConfig, trusted: TrustedSide) -> list[str]:
    names = {model.ngc_api_key_resource for model in config.models}
    if config.image_pull.mode == "kbs":
        names.add(config.image_pull.kbs_resource)
    return sorted(trusted.kbs_resources[name].uri for name in names)
