"""One NIM model served by KServe in a peer pod: an Azure confidential VM with an H100.

TLS ends inside the pod VM: NIM serves HTTPS with a key that KBS releases only to a pod VM measuring
the model's workload (the Secret holds a sealed pointer the kata agent resolves in the guest), and the
model is exposed only without termination (a passthrough Route or a LoadBalancer Service).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from components import encrypted_model
from components.encrypted_model import EncryptedModelArgs
from components.initdata import PodContainer, PodVolume
from components.sealed_secret import KBS_RESOURCE_LABEL

NIM_PORT = 8000
# The container port serving TLS, by name: the predictor Service port takes it (kserve/kserve
# pkg/controller/v1beta1/inferenceservice/reconcilers/service/service_reconciler.go), the Route and the
# LoadBalancer target it, and the policy pack allows external exposure only to it (policies/rules.py TLS_PORT_NAME).
TLS_PORT_NAME = "https"
# Marks the namespace and InferenceService of a model whose TLS ends in its pod VM: the policy pack then
# refuses any exposure that terminates TLS before it (policies/rules.py CONFIDENTIAL_MODEL_LABEL).
CONFIDENTIAL_MODEL_LABEL = "confidential-ai/confidential-model"
# Labels KServe puts on a RawDeployment predictor's pods (kserve/kserve pkg/constants/constants.go,
# InferenceServicePodLabelKey and KServiceComponentLabel, commit 000652d7).
PREDICTOR_POD_LABELS = ("serving.kserve.io/inferenceservice", "component")
# NIM for LLMs' own TLS settings: NIM_SSL_MODE (DISABLED, TLS, or MTLS to require client certificates),
# NIM_SSL_KEY_PATH, NIM_SSL_CERTS_PATH and NIM_SSL_CA_CERTS_PATH (names listed as built-in variables in
# docs.nvidia.com/nim/large-language-models/2.0.1/genindex.html, mode values per the 1.x configuration
# page). In 2.0.x a proxy on NIM_SERVER_PORT (default 8000) terminates TLS and serves the health endpoints
# (2.0.0 reference/architecture.html). docs/talking-to-a-model.md says which releases were checked and how.
# Host-delivered files (a Secret and a ConfigMap volume), so outside the code directories the workload's agent
# policy refuses volumes over (components/initdata.py CODE_DIRS): here they are data NIM reads, never code.
# The agent unseals the key wherever it is mounted: it picks Secret copies by their source under the shared
# directory, named after the mount path's last element, which must not be one it skips such as `hosts`
# (kata-containers src/agent/src/rpc.rs is_sealed_secret_path; src/runtime/virtcontainers/fs_share_linux.go
# shareFileName, commit 7c6ba40c).
TLS_KEY_DIR = "/run/nim-tls/key"
TLS_CERT_DIR = "/run/nim-tls/cert"
TLS_KEY_FILE = "tls.key"
TLS_CERT_FILE = "tls.crt"
CLIENT_CA_FILE = "client-ca.crt"
# NIM's health endpoints (NVIDIA NIM for LLMs API reference: /v1/health/ready, /v1/health/live).
READY_PATH = "/v1/health/ready"
LIVE_PATH = "/v1/health/live"
NIM_CACHE_PATH = "/opt/nim/.cache"
# NIM 2.x's image is read-only under /opt/nim; OpenShift AI's own NIM ServingRuntime template mounts a
# writable emptyDir at each of these (opendatahub-io/odh-model-controller
# internal/controller/utils/nim.go, commit 9a598c16). NIM_CACHE_PATH is the model cache, sized per model.
NIM_SCRATCH_DIRS = {
    "nim-workspace": "/opt/nim/workspace",
    "nim-home-cache": "/.cache",
    "nim-nginx": "/opt/nim/nginx",
    "nim-generated-configs": "/opt/nim/generated_configs",
    "nim-dot-config": "/opt/nim/.config",
    "nim-dot-triton": "/opt/nim/.triton",
}
WRITABLE_DIRS = (NIM_CACHE_PATH, *NIM_SCRATCH_DIRS.values())
"""Where NIM's container has emptyDirs: the only volumes its workload's agent policy allows under /opt."""
# Scratch directories hold generated configs and small caches; bounded so none can fill the pod VM disk.
SCRATCH_DIR_GI = 1
SCRATCH_GI = SCRATCH_DIR_GI * len(NIM_SCRATCH_DIRS)
"""Pod VM disk the scratch directories may fill, at most (GiB)."""
# /dev/shm is RAM of the pod VM (320 GiB on Standard_NCC40ads_H100_v5): bounded, as NCCL/Triton need some.
SHM_SIZE_LIMIT = "16Gi"
# Pod annotations the kata-remote runtime reads: the VM size CAA creates the pod VM with, and the
# initdata the guest measures (cloud-api-adaptor src/cloud-providers/util.go; kata-containers annotations).
MACHINE_TYPE_ANNOTATION = "io.katacontainers.config.hypervisor.machine_type"
INITDATA_ANNOTATION = "io.katacontainers.config.hypervisor.cc_init_data"
# Model download, pod VM boot, in-guest image pull and attestation all happen before Ready.
_READY_WAIT_SECONDS = "3600"


@dataclass(frozen=True)
class NimModelArgs:
    name: str
    namespace: str
    image: str
    """The workload's image pinned by digest: the only one its initdata's agent policy runs."""
    model_format: tuple[str, str]
    """(name, version) the ServingRuntime serves and the InferenceService asks for."""
    gpus: int
    machine_type: str
    model_cache_gi: int
    replicas: int
    runtime_class: str
    initdata: str
    """gzip+base64 initdata of the model's workload, from the trusted stack (public)."""
    ngc_api_key_sealed: str | None
    """The signed sealed pointer to the NGC API key in KBS, made by the trusted stack (public); None for
    an encrypted model, which NIM serves from a local directory without NGC."""
    serving_certificate: str
    """The workload's serving certificate from the trusted side's inference CA (public PEM)."""
    serving_key_sealed: str
    """The signed sealed pointer to the workload's TLS serving key in KBS (public)."""
    client_ca_certificate: str | None
    """PEM of the CA whose client certificates NIM requires (mutual TLS), or None for server-only TLS."""
    pull_secret: pulumi.Output[str] | None
    """A dockerconfigjson for nvcr.io (a Pulumi secret), or None when the guest gets it from KBS."""
    hostname: str
    """The host name clients reach the model by; the serving certificate names it."""
    exposure: Literal["route", "loadBalancer"]
    """`route`: a passthrough Route on `hostname`; `loadBalancer`: a LoadBalancer Service on 443 (point `hostname` at it)."""
    kata_config: pulumi.Resource
    """Creates the runtime class and CAA the pod runs with."""
    data_science_cluster: pulumi.Resource
    """Deploys KServe, which serves the ServingRuntime and InferenceService CRDs."""
    encrypted: EncryptedModelArgs | None = None
    """An encrypted model: decrypted by an init container inside the pod VM into a memory volume."""
    model_sas: pulumi.Output[str] | None = None
    """Read SAS of the encrypted model's blob container (a Pulumi secret), when the stack made the storage."""


class NimModel(pulumi.ComponentResource):
    """Namespace, sealed NGC and TLS keys, optional pull secret, NIM ServingRuntime, a confidential
    InferenceService serving HTTPS from inside its pod VM, and its exposure without TLS termination."""

    in_cluster_url: str
    external_url: str

    def __init__(self, name: str, args: NimModelArgs, provider: k8s.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("confidential-ai:nim:NimModel", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        confidential = {CONFIDENTIAL_MODEL_LABEL: "true"}
        namespace = k8s.core.v1.Namespace(f"{name}-namespace", metadata={"name": args.namespace, "labels": confidential}, opts=child)
        in_namespace = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[namespace]))
        def secret(suffix: str, data: dict[str, pulumi.Input[str]], sealed: bool = False, type_: str = "Opaque") -> k8s.core.v1.Secret:
            """Secret `<model>-<suffix>`; a sealed one holds only pointers the guest resolves (the policy pack checks them)."""
            labels = {"labels": {KBS_RESOURCE_LABEL: "true"}} if sealed else {}
            metadata = {"name": f"{args.name}-{suffix}", "namespace": args.namespace, **labels}
            return k8s.core.v1.Secret(f"{name}-{suffix}", metadata=metadata, type=type_, string_data=data, opts=in_namespace)

        secrets: list[pulumi.Resource] = []
        ngc_secret = f"{args.name}-ngc-api-key" if args.ngc_api_key_sealed is not None else None
        if args.ngc_api_key_sealed is not None:
            # Not secret: a pointer the confidential data hub resolves inside the TEE after attestation.
            secrets.append(secret("ngc-api-key", {"NGC_API_KEY": args.ngc_api_key_sealed}, sealed=True))
        if args.model_sas is not None:
            # A cloud-side credential that reads ciphertext only.
            secrets.append(secret("model-sas", {encrypted_model.SAS_SECRET_KEY: args.model_sas}))
        # The whole file is the sealed pointer: the kata agent unseals top-level files of Secret volumes
        # inside the guest and relinks the entry to the plaintext (kata-containers src/agent/src/rpc.rs).
        tls_key = secret("tls-key", {TLS_KEY_FILE: args.serving_key_sealed}, sealed=True)
        public_tls = {TLS_CERT_FILE: args.serving_certificate, **({CLIENT_CA_FILE: args.client_ca_certificate} if args.client_ca_certificate else {})}
        tls_certificate = k8s.core.v1.ConfigMap(
            f"{name}-tls-certificate",
            metadata={"name": f"{args.name}-tls", "namespace": args.namespace},
            data=public_tls,
            opts=in_namespace,
        )
        secrets += [tls_key, tls_certificate]
        pull_secrets: list[dict[str, str]] = []
        if args.pull_secret is not None:
            secrets.append(secret("nvcr-pull", {".dockerconfigjson": args.pull_secret}, type_="kubernetes.io/dockerconfigjson"))
            pull_secrets.append({"name": f"{args.name}-nvcr-pull"})

        model_name, model_version = args.model_format
        mutual = args.client_ca_certificate is not None
        runtime_name = f"{args.name}-nim"
        # The ServingRuntime's CRD comes with KServe, which the DataScienceCluster deploys.
        runtime = k8s.apiextensions.CustomResource(
            f"{name}-serving-runtime",
            api_version="serving.kserve.io/v1alpha1",
            kind="ServingRuntime",
            metadata={
                "name": runtime_name,
                "namespace": args.namespace,
                "annotations": {"opendatahub.io/recommended-accelerators": '["nvidia.com/gpu"]'},
            },
            spec={
                "multiModel": False,
                "protocolVersions": ["v2"],
                "supportedModelFormats": [{"name": model_name, "version": model_version, "autoSelect": True}],
                "imagePullSecrets": pull_secrets,
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": args.image,
                        # The only port, and it speaks TLS: nothing in plaintext leaves the pod VM.
                        "ports": [{"name": TLS_PORT_NAME, "containerPort": NIM_PORT, "protocol": "TCP"}],
                        "env": container_env(ngc_secret, mutual),
                        "readinessProbe": _probe(READY_PATH, mutual, period=10, failures=3),
                        "livenessProbe": _probe(LIVE_PATH, mutual, period=30, failures=3),
                        "startupProbe": _probe(READY_PATH, mutual, period=30, failures=120),
                        "volumeMounts": volume_mounts(),
                    }
                ],
                "volumes": volumes(args.name, args.model_cache_gi),
            },
            opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[namespace, args.data_science_cluster])),
        )
        gpu = str(args.gpus)
        model_spec: dict = {
            "modelFormat": {"name": model_name, "version": model_version},
            "runtime": runtime_name,
            # CAA's peer-pods webhook reads the GPU *request* into default_gpus, then replaces every
            # container's resources with kata.peerpods.io/vm (cloud-api-adaptor
            # src/webhook/pkg/mutating-webhook/remove-resourcespec.go): both are set, equal.
            "resources": {"limits": {"nvidia.com/gpu": gpu}, "requests": {"nvidia.com/gpu": gpu}},
        }
        predictor: dict = {
            "minReplicas": args.replicas,
            "maxReplicas": args.replicas,
            "runtimeClassName": args.runtime_class,
            # Predictor annotations go onto the pod, where the kata-remote runtime reads them.
            "annotations": {MACHINE_TYPE_ANNOTATION: args.machine_type, INITDATA_ANNOTATION: args.initdata},
            "imagePullSecrets": pull_secrets,
            "model": model_spec,
        }
        if args.encrypted is not None:
            # KServe merges predictor.model into the runtime's container and the predictor's pod fields
            # (initContainers, volumes) into the pod (serving.kserve.io_inferenceservices.yaml, predictor).
            predictor["initContainers"] = [encrypted_model.init_container(args.encrypted)]
            predictor["volumes"] = [encrypted_model.memory_volume(args.encrypted)]
            model_spec["env"] = encrypted_model.nim_env()
            model_spec["volumeMounts"] = [encrypted_model.nim_volume_mount()]
        k8s.apiextensions.CustomResource(
            f"{name}-inference-service",
            api_version="serving.kserve.io/v1beta1",
            kind="InferenceService",
            metadata={
                "name": args.name,
                "namespace": args.namespace,
                # Not `networking.kserve.io/visibility: exposed`: odh-model-controller would add an edge
                # Route, ending TLS at the cloud's router (kserve_raw_route_reconciler.go).
                "labels": confidential,
                "annotations": {
                    "serving.kserve.io/deploymentMode": "RawDeployment",
                    "pulumi.com/waitFor": "condition=Ready",
                    "pulumi.com/timeoutSeconds": _READY_WAIT_SECONDS,
                },
            },
            spec={"predictor": predictor},
            opts=pulumi.ResourceOptions.merge(
                in_namespace, pulumi.ResourceOptions(depends_on=[namespace, runtime, *secrets, args.kata_config, args.data_science_cluster])
            ),
        )
        self.exposure = self._expose(name, args, in_namespace)
        # KServe names the predictor Service <name>-predictor and serves it on port 80, forwarded to the
        # container's TLS port (opendatahub-io/kserve pkg/controller/v1beta1/inferenceservice/reconcilers/
        # service/service_reconciler.go): an https URL without a port would mean 443, so it names :80. The
        # certificate names only `hostname`, so in-cluster clients send that name (SNI) to this address.
        self.in_cluster_url = f"https://{args.name}-predictor.{args.namespace}.svc.cluster.local:80"
        self.external_url = f"https://{args.hostname}"
        self.register_outputs({"inClusterUrl": self.in_cluster_url, "externalUrl": self.external_url})

    @staticmethod
    def _expose(name: str, args: NimModelArgs, opts: pulumi.ResourceOptions) -> pulumi.Resource:
        """The model reachable from outside without TLS termination: the router or load balancer passes TLS through."""
        if args.exposure == "route":
            return k8s.apiextensions.CustomResource(
                f"{name}-route",
                api_version="route.openshift.io/v1",
                kind="Route",
                metadata={"name": args.name, "namespace": args.namespace, "labels": {CONFIDENTIAL_MODEL_LABEL: "true"}},
                spec={
                    "host": args.hostname,
                    "to": {"kind": "Service", "name": f"{args.name}-predictor"},
                    "port": {"targetPort": TLS_PORT_NAME},
                    "tls": {"termination": "passthrough", "insecureEdgeTerminationPolicy": "None"},
                    "wildcardPolicy": "None",
                },
                opts=opts,
            )
        return k8s.core.v1.Service(
            f"{name}-load-balancer",
            metadata={"name": f"{args.name}-tls", "namespace": args.namespace, "labels": {CONFIDENTIAL_MODEL_LABEL: "true"}},
            spec={
                "type": "LoadBalancer",
                "selector": dict(zip(PREDICTOR_POD_LABELS, (args.name, "predictor"), strict=True)),
                "ports": [{"name": TLS_PORT_NAME, "port": 443, "targetPort": TLS_PORT_NAME, "protocol": "TCP"}],
            },
            opts=opts,
        )


def container_env(ngc_secret: str | None, mutual: bool) -> list[dict]:
    """NIM's environment in the ServingRuntime: its model cache, unless the model is encrypted the NGC key's
    sealed pointer, and its TLS settings."""
    env: list[dict] = [{"name": "NIM_CACHE_PATH", "value": NIM_CACHE_PATH}]
    if ngc_secret is not None:
        env.append({"name": "NGC_API_KEY", "valueFrom": {"secretKeyRef": {"name": ngc_secret, "key": "NGC_API_KEY"}}})
    return env + _tls_env(mutual)


def _tls_env(mutual: bool) -> list[dict[str, str]]:
    env = [
        {"name": "NIM_SSL_MODE", "value": "MTLS" if mutual else "TLS"},
        {"name": "NIM_SSL_KEY_PATH", "value": f"{TLS_KEY_DIR}/{TLS_KEY_FILE}"},
        {"name": "NIM_SSL_CERTS_PATH", "value": f"{TLS_CERT_DIR}/{TLS_CERT_FILE}"},
    ]
    if mutual:
        env.append({"name": "NIM_SSL_CA_CERTS_PATH", "value": f"{TLS_CERT_DIR}/{CLIENT_CA_FILE}"})
    return env


def _probe(path: str, mutual: bool, period: int, failures: int) -> dict[str, object]:
    """HTTPS health checks (the kubelet does not verify the certificate); with mutual TLS the kubelet has
    no client certificate, so the probe only checks that the TLS port accepts connections."""
    check: dict[str, object] = {"tcpSocket": {"port": NIM_PORT}} if mutual else {"httpGet": {"path": path, "port": NIM_PORT, "scheme": "HTTPS"}}
    return {**check, "periodSeconds": period, "failureThreshold": failures}


def volume_mounts() -> list[dict[str, object]]:
    """The model cache, /dev/shm, every writable directory NIM 2.x needs, and the TLS key and certificate."""
    mounts: list[dict[str, object]] = [{"name": "nim-cache", "mountPath": NIM_CACHE_PATH}, {"name": "shm", "mountPath": "/dev/shm"}]
    mounts += [{"name": name, "mountPath": path} for name, path in NIM_SCRATCH_DIRS.items()]
    return mounts + [
        {"name": "tls-key", "mountPath": TLS_KEY_DIR, "readOnly": True},
        {"name": "tls-certificate", "mountPath": TLS_CERT_DIR, "readOnly": True},
    ]


def policy_container(not_ngc_keys: tuple[str, ...] | None, mutual: bool, encrypted: bool) -> PodContainer:
    """The kserve-container as its workload's agent policy expects it: the environment `container_env` (and
    an encrypted model's) sets, the NGC key's variable holding a sealed pointer but none starting with one of
    `not_ngc_keys` (None: an encrypted model, no NGC key), and every volume of `volume_mounts`."""
    env = container_env("ngc-api-key" if not_ngc_keys is not None else None, mutual) + (encrypted_model.nim_env() if encrypted else [])
    mounts = volume_mounts() + ([encrypted_model.nim_volume_mount()] if encrypted else [])
    pod_volumes = {v["name"]: v for v in volumes("model", 1)} | {encrypted_model.VOLUME: {"emptyDir": {"medium": "Memory"}}}
    return PodContainer(
        env=tuple(f"{e['name']}={e['value']}" for e in env if "value" in e),
        sealed_env=tuple((e["name"], not_ngc_keys) for e in env if "valueFrom" in e and not_ngc_keys is not None),
        volumes=tuple(PodVolume(m["mountPath"], _volume_kind(pod_volumes[m["name"]]), m["name"], bool(m.get("readOnly"))) for m in mounts),
    )


def _volume_kind(volume: dict) -> str:
    if "emptyDir" in volume:
        return "memory" if volume["emptyDir"].get("medium") == "Memory" else "local"
    return "files"


def volumes(model: str, model_cache_gi: int) -> list[dict[str, object]]:
    """emptyDirs for the model cache, /dev/shm and the writable directories; the TLS key (sealed) and certificate."""
    volumes: list[dict[str, object]] = [
        {"name": "nim-cache", "emptyDir": {"sizeLimit": f"{model_cache_gi}Gi"}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE_LIMIT}},
    ]
    volumes += [{"name": name, "emptyDir": {"sizeLimit": f"{SCRATCH_DIR_GI}Gi"}} for name in NIM_SCRATCH_DIRS]
    return volumes + [
        {"name": "tls-key", "secret": {"secretName": f"{model}-tls-key"}},
        {"name": "tls-certificate", "configMap": {"name": f"{model}-tls"}},
    ]
