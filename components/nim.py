"""One NIM model served by KServe in a peer pod: an Azure confidential VM with an H100."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.sealed_secret import KBS_RESOURCE_LABEL

NIM_PORT = 8000
HTTP_PORT_NAME = "http"
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
    ngc_api_key_sealed: str
    """The signed sealed pointer to the NGC API key in KBS, made by the trusted stack (public)."""
    pull_secret: pulumi.Output[str] | None
    """A dockerconfigjson for nvcr.io (a Pulumi secret), or None when the guest gets it from KBS."""
    ingress_domain: str
    kata_config: pulumi.Resource
    """Creates the runtime class and CAA the pod runs with."""
    data_science_cluster: pulumi.Resource
    """Deploys KServe, which serves the ServingRuntime and InferenceService CRDs."""


class NimModel(pulumi.ComponentResource):
    """Namespace, sealed NGC key, optional pull secret, NIM ServingRuntime and a confidential InferenceService."""

    in_cluster_url: str
    external_url: str

    def __init__(self, name: str, args: NimModelArgs, provider: k8s.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("confidential-ai:nim:NimModel", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        namespace = k8s.core.v1.Namespace(f"{name}-namespace", metadata={"name": args.namespace}, opts=child)
        in_namespace = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[namespace]))
        # Not secret: a pointer the confidential data hub resolves inside the TEE after attestation.
        ngc_key = k8s.core.v1.Secret(
            f"{name}-ngc-api-key",
            metadata={"name": f"{args.name}-ngc-api-key", "namespace": args.namespace, "labels": {KBS_RESOURCE_LABEL: "true"}},
            type="Opaque",
            string_data={"NGC_API_KEY": args.ngc_api_key_sealed},
            opts=in_namespace,
        )
        secrets: list[pulumi.Resource] = [ngc_key]
        pull_secrets: list[dict[str, str]] = []
        if args.pull_secret is not None:
            secrets.append(
                k8s.core.v1.Secret(
                    f"{name}-nvcr-pull",
                    metadata={"name": f"{args.name}-nvcr-pull", "namespace": args.namespace},
                    type="kubernetes.io/dockerconfigjson",
                    string_data={".dockerconfigjson": args.pull_secret},
                    opts=in_namespace,
                )
            )
            pull_secrets.append({"name": f"{args.name}-nvcr-pull"})

        model_name, model_version = args.model_format
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
                        # Named: KServe names the predictor Service port after it (kserve/kserve
                        # pkg/controller/v1beta1/inferenceservice/reconcilers/service/service_reconciler.go) and
                        # odh-model-controller points the Route at the port named "http"; an unnamed one makes it
                        # fall back to the Service port number 80, which matches no endpoint (pod port 8000) in the
                        # router (odh-model-controller kserve_raw_route_reconciler.go setRouteTargetPort;
                        # openshift/router pkg/router/template/router.go endpointsForAlias).
                        "ports": [{"name": HTTP_PORT_NAME, "containerPort": NIM_PORT, "protocol": "TCP"}],
                        "env": [
                            {"name": "NIM_CACHE_PATH", "value": NIM_CACHE_PATH},
                            {"name": "NGC_API_KEY", "valueFrom": {"secretKeyRef": {"name": f"{args.name}-ngc-api-key", "key": "NGC_API_KEY"}}},
                        ],
                        "readinessProbe": {"httpGet": {"path": READY_PATH, "port": NIM_PORT}, "periodSeconds": 10, "failureThreshold": 3},
                        "livenessProbe": {"httpGet": {"path": LIVE_PATH, "port": NIM_PORT}, "periodSeconds": 30, "failureThreshold": 3},
                        "startupProbe": {"httpGet": {"path": READY_PATH, "port": NIM_PORT}, "periodSeconds": 30, "failureThreshold": 120},
                        "volumeMounts": _volume_mounts(),
                    }
                ],
                "volumes": _volumes(args.model_cache_gi),
            },
            opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[namespace, args.data_science_cluster])),
        )
        gpu = str(args.gpus)
        k8s.apiextensions.CustomResource(
            f"{name}-inference-service",
            api_version="serving.kserve.io/v1beta1",
            kind="InferenceService",
            metadata={
                "name": args.name,
                "namespace": args.namespace,
                # odh-model-controller exposes an InferenceService with this label through a Route.
                "labels": {"networking.kserve.io/visibility": "exposed"},
                "annotations": {
                    "serving.kserve.io/deploymentMode": "RawDeployment",
                    "pulumi.com/waitFor": "condition=Ready",
                    "pulumi.com/timeoutSeconds": _READY_WAIT_SECONDS,
                },
            },
            spec={
                "predictor": {
                    "minReplicas": args.replicas,
                    "maxReplicas": args.replicas,
                    "runtimeClassName": args.runtime_class,
                    # Predictor annotations go onto the pod, where the kata-remote runtime reads them.
                    "annotations": {MACHINE_TYPE_ANNOTATION: args.machine_type, INITDATA_ANNOTATION: args.initdata},
                    "imagePullSecrets": pull_secrets,
                    "model": {
                        "modelFormat": {"name": model_name, "version": model_version},
                        "runtime": runtime_name,
                        # CAA's peer-pods webhook reads the GPU *request* into default_gpus, then replaces every
                        # container's resources with kata.peerpods.io/vm (cloud-api-adaptor
                        # src/webhook/pkg/mutating-webhook/remove-resourcespec.go): both are set, equal.
                        "resources": {"limits": {"nvidia.com/gpu": gpu}, "requests": {"nvidia.com/gpu": gpu}},
                    },
                }
            },
            opts=pulumi.ResourceOptions.merge(
                in_namespace, pulumi.ResourceOptions(depends_on=[namespace, runtime, *secrets, args.kata_config, args.data_science_cluster])
            ),
        )
        # KServe names the predictor Service <name>-predictor; "Headed" makes it a ClusterIP on port 80.
        self.in_cluster_url = f"http://{args.name}-predictor.{args.namespace}.svc.cluster.local"
        # The Route's default host is <route name>-<namespace>.<ingress domain>.
        self.external_url = f"https://{args.name}-{args.namespace}.{args.ingress_domain}"
        self.register_outputs({"inClusterUrl": self.in_cluster_url, "externalUrl": self.external_url})


def _volume_mounts() -> list[dict[str, str]]:
    """The model cache, /dev/shm and every writable directory NIM 2.x needs."""
    mounts = [{"name": "nim-cache", "mountPath": NIM_CACHE_PATH}, {"name": "shm", "mountPath": "/dev/shm"}]
    return mounts + [{"name": name, "mountPath": path} for name, path in NIM_SCRATCH_DIRS.items()]


def _volumes(model_cache_gi: int) -> list[dict[str, object]]:
    volumes: list[dict[str, object]] = [
        {"name": "nim-cache", "emptyDir": {"sizeLimit": f"{model_cache_gi}Gi"}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE_LIMIT}},
    ]
    return volumes + [{"name": name, "emptyDir": {"sizeLimit": f"{SCRATCH_DIR_GI}Gi"}} for name in NIM_SCRATCH_DIRS]
