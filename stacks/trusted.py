"""The `<env>-trusted` stack: Trustee on the on-premises cluster, and the public hand-off to the cloud side."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pulumi
import pulumi_random as random
import pulumi_tls as tls

from components.initdata import Initdata, render_initdata
from components.kubernetes import cluster_provider
from components.olm import OperatorInstall, OperatorInstallArgs, OperatorPin
from components.tls import SelfSignedServerCertificate, ServerCertificateArgs, SigningCertificate
from components.trustee import names, render
from components.trustee.kbs import Kbs, KbsArgs, KbsDocuments, KbsKeys, KbsSecretResources, SecretResource
from stacks.config import TrustedConfig
from stacks.config.base import secret_output


@dataclass(frozen=True)
class HttpsMaterial:
    ca_cert_pem: pulumi.Output[str]
    """What the guests trust to reach KBS (public)."""
    cert_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]


def deploy(config: TrustedConfig) -> None:
    kubeconfig = secret_output(config.kubeconfig)
    kubernetes = cluster_provider("trusted-cluster", kubeconfig, f"{config.stack.env}-trusted")
    keys_provider = tls.Provider("tls")
    trustee = OperatorInstall(
        "trustee",
        OperatorInstallArgs(
            namespace=names.NAMESPACE,
            package=names.PACKAGE,
            pin=OperatorPin(config.kbs.operator.channel, config.kbs.operator.source, config.kbs.operator.starting_csv),
            kubeconfig=kubeconfig,
        ),
        kubernetes,
    )

    if not config.reference_values.measurements:
        pulumi.log.warn(
            "referenceValues.measurements is empty: the CPU policy does not check the SNP launch measurement of Azure's "
            "paravisor; list it (docs/trusted-cluster.md) and set referenceValues.requireMeasurement: true"
        )
    https = _https_material(config, keys_provider)
    admin_key = tls.PrivateKey("kbs-admin-key", algorithm="ED25519", opts=pulumi.ResourceOptions(provider=keys_provider, protect=True))
    # The EAR token broker signs with a P-256 key (confidential-containers/trustee
    # attestation-service/src/token/ear_broker.rs).
    token = SigningCertificate("kbs-token", "Trustee attestation token signer", config.kbs.tls.validity_hours, keys_provider)

    # The initdata embeds the KBS CA, so it is rendered once the certificate exists; PCR 8's
    # reference value comes from the same bytes, in the same `pulumi up`.
    initdata: pulumi.Output[Initdata] = https.ca_cert_pem.apply(
        lambda ca_pem: render_initdata(config.kbs.url, ca_pem, config.agent_policy.denied_requests)
    )

    workload_secrets = KbsSecretResources(
        "kbs-resources", _secret_resources(config), trustee.namespace_resource, kubernetes, random.Provider("random")
    )
    Kbs(
        "kbs",
        KbsArgs(
            hostname=config.kbs.hostname,
            exposure=config.kbs.exposure,
            documents=KbsDocuments(
                kbs_config=render.kbs_config(config.kbs.nvidia_verifier),
                cpu_policy=render.cpu_policy(config.reference_values),
                gpu_policy=render.gpu_policy(),
                resource_policy=render.resource_policy(config.kbs_resources),
                reference_values=initdata.apply(lambda i: render.reference_values_document(config.reference_values, i.pcr8)),
            ),
            keys=KbsKeys(
                admin_public_key_pem=admin_key.public_key_pem,
                https_cert_pem=https.cert_pem,
                https_private_key_pem=https.private_key_pem,
                token_cert_pem=token.cert_pem,
                token_private_key_pem=token.private_key_pem,
            ),
            secret_resources=workload_secrets,
            namespace=trustee.namespace_resource,
            operator=trustee.installed,
        ),
        kubernetes,
    )

    # The only things the cloud side may read (stacks/contracts.py TRUSTED_OUTPUTS): all public.
    pulumi.export("kbsUrl", config.kbs.url)
    pulumi.export("kbsCaCert", https.ca_cert_pem)
    pulumi.export("initdata", initdata.apply(lambda i: i.annotation))
    pulumi.export("initdataDigest", initdata.apply(lambda i: i.digest))
    pulumi.export("initdataPcr8", initdata.apply(lambda i: i.pcr8))
    pulumi.export(
        "kbsResources",
        {r.name: {"uri": r.uri, "gpuGated": r.gpu_gated, "minGpus": r.required_gpus} for r in config.kbs_resources},
    )


def _https_material(config: TrustedConfig, provider: tls.Provider) -> HttpsMaterial:
    """The KBS HTTPS certificate: made by the stack (selfSigned), or the user's (provided)."""
    if config.kbs.tls.mode == "provided":
        assert config.kbs_tls_certificate and config.kbs_tls_private_key and config.kbs.tls.ca_certificate  # config rules
        return HttpsMaterial(
            ca_cert_pem=pulumi.Output.from_input(config.kbs.tls.ca_certificate),
            cert_pem=secret_output(config.kbs_tls_certificate),
            private_key_pem=secret_output(config.kbs_tls_private_key),
        )
    certificate = SelfSignedServerCertificate(
        "kbs-https",
        ServerCertificateArgs(hostname=config.kbs.hostname, organization="Trustee KBS", validity_hours=config.kbs.tls.validity_hours),
        provider,
    )
    return HttpsMaterial(certificate.ca_cert_pem, certificate.cert_pem, certificate.private_key_pem)


def _secret_resources(config: TrustedConfig) -> list[SecretResource]:
    """One Secret per `secret` name, holding the keys of every resource that names it."""
    data: dict[str, dict[str, pulumi.Output[str]]] = defaultdict(dict)
    for resource in config.kbs_resources:
        data[resource.secret][resource.key] = secret_output(config.kbs_secrets[resource.name])
    return [SecretResource(name, keys) for name, keys in sorted(data.items())]
