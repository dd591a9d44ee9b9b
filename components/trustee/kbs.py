"""Trustee on the trusted cluster: its configuration objects, the KbsConfig naming them, and its exposure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.trustee import names

# KbsConfig.status.isReady turns true once the Trustee deployment is available
# (openshift/trustee-operator internal/controller/kbsconfig_controller.go, updateKbsConfigStatus).
KBS_READY = "jsonpath={.status.isReady}=true"


@dataclass(frozen=True)
class SecretResource:
    """One Kubernetes Secret whose keys KBS serves as `kbs:///default/<name>/<key>`."""

    name: str
    data: Mapping[str, pulumi.Output[str]]
    """Key -> value, each a Pulumi secret."""


class KbsSecretResources(pulumi.ComponentResource):
    """The workload secrets KBS releases after attestation, as Secrets in Trustee's namespace, and
    `revision`: a random value that changes whenever one of their values changes."""

    def __init__(
        self,
        name: str,
        resources: Sequence[SecretResource],
        namespace: k8s.core.v1.Namespace,
        provider: k8s.Provider,
        random_provider: random.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("confidential-ai:trustee:KbsSecretResources", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[namespace])
        self.secrets = [
            k8s.core.v1.Secret(
                f"{name}-{resource.name}",
                metadata={"name": resource.name, "namespace": names.NAMESPACE},
                type="Opaque",
                string_data={key: pulumi.Output.secret(value) for key, value in resource.data.items()},
                opts=child,
            )
            for resource in resources
        ]
        self.names = [resource.name for resource in resources]
        # Random, not a digest: nothing derived from a secret value leaves the encrypted state. The
        # keepers (the values, as secrets) replace it, and so change it, when any value changes.
        revision = random.RandomId(
            f"{name}-revision",
            byte_length=16,
            keepers={f"{r.name}/{key}": pulumi.Output.secret(value) for r in resources for key, value in sorted(r.data.items())},
            opts=pulumi.ResourceOptions(parent=self, provider=random_provider, additional_secret_outputs=["keepers"]),
        )
        self.revision: pulumi.Output[str] = revision.hex
        self.register_outputs({"names": self.names, "revision": self.revision})


@dataclass(frozen=True)
class KbsDocuments:
    """Rendered configuration: KBS config TOML, Rego policies and the RVPS reference values file."""

    kbs_config: str
    cpu_policy: str
    gpu_policy: str
    resource_policy: pulumi.Input[str]
    reference_values: pulumi.Input[str]


@dataclass(frozen=True)
class KbsKeys:
    """Public halves in the clear; `*_private_key_pem` are Pulumi secrets."""

    admin_public_key_pem: pulumi.Input[str]
    https_cert_pem: pulumi.Input[str]
    https_private_key_pem: pulumi.Output[str]
    token_cert_pem: pulumi.Input[str]
    token_private_key_pem: pulumi.Output[str]


@dataclass(frozen=True)
class KbsArgs:
    hostname: str
    exposure: Literal["route", "loadBalancer"]
    documents: KbsDocuments
    keys: KbsKeys
    secret_resources: KbsSecretResources
    namespace: k8s.core.v1.Namespace
    operator: pulumi.Resource
    """What serves the KbsConfig CRD (the trustee-operator install, once its CSV succeeded)."""


class Kbs(pulumi.ComponentResource):
    """ConfigMaps and Secrets Trustee reads, the KbsConfig that names them all, and how KBS is reached."""

    def __init__(self, name: str, args: KbsArgs, provider: k8s.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("confidential-ai:trustee:Kbs", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[args.namespace])

        def config_map(object_name: str, key: str, value: pulumi.Input[str], restarts_on: KbsSecretResources | None = None) -> k8s.core.v1.ConfigMap:
            # Without the migration annotation the operator deletes the ConfigMap on every reconcile.
            annotations: dict[str, pulumi.Input[str]] = {names.MIGRATED_ANNOTATION: names.MIGRATED_VALUE}
            opts = child
            if restarts_on is not None:
                # Changed after the Secrets, so the restarted KBS pod copies their new values.
                annotations[names.SECRETS_REVISION_ANNOTATION] = restarts_on.revision
                opts = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(restarts_on.secrets)))
            metadata = {"name": object_name, "namespace": names.NAMESPACE, "annotations": annotations}
            return k8s.core.v1.ConfigMap(f"{name}-{object_name}", metadata=metadata, data={key: value}, opts=opts)

        def secret(object_name: str, key: str, value: pulumi.Input[str]) -> k8s.core.v1.Secret:
            return k8s.core.v1.Secret(
                f"{name}-{object_name}",
                metadata={"name": object_name, "namespace": names.NAMESPACE},
                type="Opaque",
                string_data={key: value},
                opts=child,
            )

        docs, keys = args.documents, args.keys
        named = [
            # Keys the operator mounts: kbs-config.toml, default_cpu.rego, default_gpu.rego,
            # resource-policy.rego, reference_value; secrets at /etc/<volume>/<key> as kbs-config.toml reads them.
            config_map(names.CONFIG_MAP, "kbs-config.toml", docs.kbs_config),
            config_map(names.CPU_POLICY, "default_cpu.rego", docs.cpu_policy),
            config_map(names.GPU_POLICY, "default_gpu.rego", docs.gpu_policy),
            config_map(names.RESOURCE_POLICY, "resource-policy.rego", docs.resource_policy, restarts_on=args.secret_resources),
            config_map(names.REFERENCE_VALUES, "reference_value", docs.reference_values),
            secret(names.AUTH_SECRET, "publicKey", keys.admin_public_key_pem),
            secret(names.HTTPS_KEY, "privateKey", keys.https_private_key_pem),
            secret(names.HTTPS_CERT, "certificate", keys.https_cert_pem),
            secret(names.TOKEN_KEY, "token.key", keys.token_private_key_pem),
            secret(names.TOKEN_CERT, "token.crt", keys.token_cert_pem),
        ]
        # A Secret listed in kbsSecretResources that does not exist blocks the whole KBS deployment,
        # so the KbsConfig waits for every object it names.
        self.kbs_config = k8s.apiextensions.CustomResource(
            f"{name}-kbsconfig",
            api_version="confidentialcontainers.org/v1alpha1",
            kind="KbsConfig",
            metadata={
                "name": names.KBS_CONFIG,
                "namespace": names.NAMESPACE,
                "annotations": {"pulumi.com/waitFor": KBS_READY, "pulumi.com/timeoutSeconds": "900"},
            },
            spec={
                "kbsDeploymentType": "AllInOneDeployment",
                "kbsConfigMapName": names.CONFIG_MAP,
                "kbsAuthSecretName": names.AUTH_SECRET,
                "kbsAttestationPolicyConfigMapName": names.CPU_POLICY,
                "kbsGpuAttestationPolicyConfigMapName": names.GPU_POLICY,
                "kbsResourcePolicyConfigMapName": names.RESOURCE_POLICY,
                "kbsRvpsRefValuesConfigMapName": names.REFERENCE_VALUES,
                "kbsHttpsKeySecretName": names.HTTPS_KEY,
                "kbsHttpsCertSecretName": names.HTTPS_CERT,
                "kbsAttestationKeySecretName": names.TOKEN_KEY,
                "kbsAttestationCertSecretName": names.TOKEN_CERT,
                "kbsSecretResources": list(args.secret_resources.names),
                "kbsServiceType": "LoadBalancer" if args.exposure == "loadBalancer" else "ClusterIP",
            },
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=[args.operator, *named, *args.secret_resources.secrets])
            ),
        )
        self.route = None
        if args.exposure == "route":
            # TLS ends in KBS (passthrough): the router never holds the KBS key.
            self.route = k8s.apiextensions.CustomResource(
                f"{name}-route",
                api_version="route.openshift.io/v1",
                kind="Route",
                metadata={"name": "kbs", "namespace": names.NAMESPACE},
                spec={
                    "host": args.hostname,
                    "to": {"kind": "Service", "name": names.SERVICE},
                    "port": {"targetPort": names.SERVICE_PORT},
                    "tls": {"termination": "passthrough", "insecureEdgeTerminationPolicy": "None"},
                    "wildcardPolicy": "None",
                },
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.kbs_config])),
            )
        self.register_outputs({"kbsConfig": self.kbs_config.metadata["name"]})
