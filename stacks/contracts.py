"""What one part of the program hands the next: the trusted stack's outputs and the cloud stack's layers."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

# The trusted stack's outputs: everything the cloud side may read, all public.
# - `kbsResources`: logical name -> {"uri": "kbs:///default/<secret>/<key>", "gpuGated": bool, "minGpus": int}.
# - `workloads`: workload name -> WORKLOAD_KEYS: "image" (`repo@sha256:<64 hex>`, the only image its
#   agent policy runs), "initdata" (gzip+base64 pod annotation), "initdataDigest" and "initdataPcr8"
#   (hex), "resources" (kbsResources names KBS releases to it), "gpus" (int), "sealedSecrets"
#   (resource name -> "sealed.<ES256 JWS>", signed on the trusted side, used verbatim), "imageEnv" (the
#   image config's `NAME=value` entries its agent policy allows verbatim); and, only for a
#   workload serving an encrypted model, "encryptedModel": {"decryptorImage" (pinned), "keyUri" (the
#   model key's kbs:/// URI), "manifestSha256"}: the init container its agent policy runs. The pinned
#   process (public, for audit and for the cloud side): "args" (the command line, image Entrypoint then
#   Cmd; absent only for a workload that receives no secret) and "workingDir" (when pinned).
# - `sealedSecretKeyUri`: the kbs:/// URI of the public JWK the sealed secrets name as `kid`.
# - `inferenceCaCert`: PEM of the inference CA, what model clients trust (scripts/verify_endpoint.py).
#   A workload that serves a model also has "servingCertificate" (PEM, issued by that CA
#   for its servingHostnames) and "servingKeyResource" (the kbsResources name of its TLS key, bound to
#   its PCR 8; the signed pointer to it is in its "sealedSecrets").
# - `inferenceClientCaCert`, only when models require client certificates: that CA's PEM.
# - `trustBundles`: cloud stack name -> compact JWS (ES256) of the outputs that stack reads
#   (stacks/trust_bundle.py cloud_view) with its environment, name and `version`; `trustBundleKey`: the
#   signing key's public JWK (kid = RFC 7638 thumbprint), which cloud stacks pin; `trustBundleKeys`: every
#   key kept (two during a rollover).
TRUSTED_OUTPUTS = (
    "kbsUrl", "kbsCaCert", "kbsResources", "workloads", "sealedSecretKeyUri", "inferenceCaCert", "trustBundles", "trustBundleKey", "trustBundleKeys",
)
OPTIONAL_TRUSTED_OUTPUTS = ("inferenceClientCaCert",)
WORKLOAD_KEYS = ("image", "initdata", "initdataDigest", "initdataPcr8", "resources", "gpus", "sealedSecrets", "imageEnv")
# Present only for the workloads they concern.
OPTIONAL_WORKLOAD_KEYS = ("args", "workingDir", "encryptedModel")
# What the cloud stack needs; model clients, not the cloud stack, read `inferenceCaCert`.
CLOUD_READS = ("kbsUrl", "kbsCaCert", "kbsResources", "workloads", "sealedSecretKeyUri")


@dataclass(frozen=True)
class ModelStorageHandOff:
    """The encrypted models' blob container, when the cloud stack creates it (config `modelStorage`)."""

    container_url: str
    read_sas: pulumi.Output[str]
    """A Pulumi secret: read-only SAS for the container (ciphertext only)."""


@dataclass(frozen=True)
class AzureLayer:
    """The Azure layer's hand-off to the cluster layer of the cloud stack."""

    kubernetes: k8s.Provider
    """Explicit provider for the cloud cluster (ARO admin kubeconfig, or the one you bring)."""
    kubeconfig: pulumi.Output[str]
    """That kubeconfig, a Pulumi secret: the OLM InstallPlan approvals reach the API server with it."""
    cluster_ready: list[pulumi.Resource]
    """What must exist before anything runs on the cluster (the ARO cluster; empty for `existing`)."""
    subscription_id: str
    tenant_id: str
    region: str
    pod_vm_resource_group: pulumi.Output[str]
    pod_vm_subnet_id: pulumi.Output[str]
    pod_vm_nsg_id: pulumi.Output[str]
    pod_vm_image_id: str
    peer_pods_client_id: str
    peer_pods_client_secret: pulumi.Output[str]
    """A Pulumi secret."""
    pod_vm_ready: list[pulumi.Resource] = field(default_factory=list)
    """What must exist before CAA creates a pod VM: the peer-pod role assignments, the pod VM subnet,
    its NSG and NAT gateway, the hosted image definition. Depend on it from what starts CAA."""
    model_storage: ModelStorageHandOff | None = None
    """The encrypted models' container and its read SAS, when the stack creates the storage."""
