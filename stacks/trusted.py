"""The `<env>-trusted` stack: Trustee on the on-premises cluster, and the public hand-off to the cloud side."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_random as random
import pulumi_tls as tls

from components import nim
from components import trust_bundle as jws
from components.initdata import AgentPolicyArgs, DecryptorPolicy, Initdata, InitdataArgs, render_initdata
from components.kubernetes import cluster_provider
from components.olm import OperatorInstall, OperatorInstallArgs, OperatorPin
from components.sealed_secret import public_jwk, sealed_prefix, sealed_secret
from components.tls import InferenceCertificates, InferenceCertificatesArgs, SelfSignedServerCertificate, ServerCertificateArgs, SigningCertificate
from components.trustee import names, render
from components.trustee.kbs import Kbs, KbsArgs, KbsDocuments, KbsKeys, KbsSecretResources, SecretResource
from stacks import trust_bundle
from stacks.config import TrustedConfig
from stacks.config.base import secret_output
from stacks.config.trusted import ReferenceValues, Workload


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

    if config.agent_policy.mode == "audit":
        pulumi.log.info(
            "agentPolicy.mode is audit: pod VMs serve every request and their agent logs each one the enforcing policy "
            "refuses (`policy: ignoring error for <Request>`); replay them with `python -m scripts.replay_agent_requests`, "
            "then set mode: enforce (the policy pack refuses audit on production)"
        )
    if config.reference_values.expires_soon():
        pulumi.log.warn(
            f"referenceValues.expiration {config.reference_values.expiration} is within 30 days; after it the stack refuses "
            "these values: confirm them against evidence (python -m scripts.reference_values) and move it forward (docs/operations.md)"
        )
    if not config.reference_values.measurements:
        if reason := config.reference_values.unpinned_measurement_reason:
            pulumi.log.info(
                f"referenceValues.measurements is empty on purpose ({reason}): the CPU policy accepts any SNP launch "
                "measurement of Azure's paravisor"
            )
        else:
            pulumi.log.warn(
                "referenceValues.measurements is empty: the CPU policy does not check the SNP launch measurement of Azure's "
                "paravisor; list it (docs/trusted-cluster.md) and set referenceValues.requireMeasurement: true, or declare "
                "why this environment accepts any in referenceValues.unpinnedMeasurementReason"
            )
    for resource in config.kbs_resources:
        if not any(resource.name in w.resources for w in config.workloads):
            pulumi.log.warn(f"kbsResources {resource.name} is in no workload's resources: KBS holds it but releases it to no pod VM")
    https = _https_material(config, keys_provider)
    admin_key = tls.PrivateKey("kbs-admin-key", algorithm="ED25519", opts=pulumi.ResourceOptions(provider=keys_provider, protect=True))
    # The EAR token broker signs with a P-256 key (confidential-containers/trustee
    # attestation-service/src/token/ear_broker.rs).
    token = SigningCertificate("kbs-token", "Trustee attestation token signer", config.kbs.tls.validity_hours, keys_provider)

    # Model clients trust the inference CA; each serving key goes only to KBS, bound to its workload.
    inference = InferenceCertificates(
        "inference-tls",
        InferenceCertificatesArgs(
            organization="Confidential AI",
            validity_hours=config.inference_tls.validity_hours,
            servers={w.name: list(w.serving_hostnames) for w in config.workloads if w.serving_hostnames},
        ),
        keys_provider,
    )
    serving_keys = {w: s.private_key_pem for w, s in inference.servers.items()}
    serving_certificates = pulumi.Output.all(**{w: s.cert_pem for w, s in inference.servers.items()}) if inference.servers else pulumi.Output.from_input({})

    # Sealed secrets are signed here and verified in the guest with the public half, which KBS serves
    # as a resource (its URI is the signatures' `kid`). Protected: replacing it breaks every pointer.
    sealing_key = tls.PrivateKey(
        "sealed-secret-signing-key", algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(provider=keys_provider, protect=True)
    )
    verification_jwk = sealing_key.public_key_pem.apply(lambda pem: json.dumps(public_jwk(pem, names.SEALED_SECRET_KEY_URI), sort_keys=True))

    # Each workload's initdata embeds the KBS CA, so it is rendered once the certificate exists; the
    # PCR 8 reference values and the resource policy come from the same bytes, in the same `pulumi up`.
    initdata: pulumi.Output[dict[str, Initdata]] = https.ca_cert_pem.apply(lambda ca_pem: _workload_initdata(config, ca_pem))

    workload_secrets = KbsSecretResources(
        "kbs-resources",
        [
            *_secret_resources(config),
            SecretResource(names.SEALED_SECRET_KEY, {names.SEALED_SECRET_KEY_ENTRY: verification_jwk}),
            *([SecretResource(names.SERVING_KEYS, serving_keys)] if serving_keys else []),
        ],
        trustee.namespace_resource,
        kubernetes,
        random.Provider("random"),
    )
    Kbs(
        "kbs",
        KbsArgs(
            hostname=config.kbs.hostname,
            exposure=config.kbs.exposure,
            documents=KbsDocuments(
                kbs_config=render.kbs_config(config.kbs.nvidia_verifier.type, config.kbs.nvidia_verifier.url),
                cpu_policy=render.cpu_policy(pin_measurement=bool(config.reference_values.measurements)),
                gpu_policy=render.gpu_policy(),
                resource_policy=initdata.apply(lambda i: render.resource_policy([*_releases(config, i), *_serving_releases(config, i)])),
                reference_values=initdata.apply(lambda i: render.reference_values_document(reference_value_set(config.reference_values), _all_pcr8(config, i))),
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

    # Signing reads the private key (a secret), so the result is marked secret; the signed pointers
    # themselves are public (a signature and a KBS URI), and the cloud side must read them.
    sealed = pulumi.Output.unsecret(sealing_key.private_key_pem.apply(lambda pem: _sealed_pointers(config, pem)))

    # The only things the cloud side may read (stacks/contracts.py TRUSTED_OUTPUTS): all public.
    published: dict[str, Any] = {
        "kbsUrl": config.kbs.url,
        "kbsCaCert": https.ca_cert_pem,
        "kbsResources": {
            **{r.name: {"uri": r.uri, "gpuGated": r.gpu_gated, "minGpus": r.required_gpus} for r in config.kbs_resources},
            **{
                names.serving_key_resource(w.name): {"uri": names.serving_key_uri(w.name), "gpuGated": w.gpus > 0, "minGpus": w.gpus}
                for w in _serving(config)
            },
        },
        "workloads": pulumi.Output.all(initdata, sealed, serving_certificates).apply(lambda args: _workload_outputs(config, *args)),
        "sealedSecretKeyUri": names.SEALED_SECRET_KEY_URI,
        "inferenceCaCert": inference.ca_cert_pem,
    }
    if config.inference_tls.client_ca_certificate:
        published["inferenceClientCaCert"] = config.inference_tls.client_ca_certificate
    for name, value in published.items():
        pulumi.export(name, value)
    _export_trust_bundles(config, published, keys_provider)


def _export_trust_bundles(config: TrustedConfig, published: dict[str, Any], provider: tls.Provider) -> None:
    """`trustBundles`: each cloud stack's view of `published`, signed by a key made and kept here.

    The key is its own (not the sealed-secret key, which KBS hands to every pod VM), protected like it:
    replacing it breaks every cloud stack that pins it. Two slots let a rollover overlap old and new."""
    settings = config.trust_bundle
    keys = {
        slot: tls.PrivateKey(
            f"trust-bundle-key-{slot}", algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(provider=provider, protect=True)
        )
        for slot in settings.keys
    }
    signing = keys[settings.signing_key]
    env, version = config.stack.env, settings.version
    # Signing reads the private key (a secret); the bundles are public values and signatures.
    bundles = pulumi.Output.all(pulumi.Output.all(**published), signing.private_key_pem).apply(
        lambda args: trust_bundle.signed_bundles(env, version, args[0], args[1])
    )
    pulumi.export("trustBundles", pulumi.Output.unsecret(bundles))
    pulumi.export("trustBundleKey", signing.public_key_pem.apply(jws.public_jwk))
    pulumi.export("trustBundleKeys", pulumi.Output.all(*(keys[slot].public_key_pem for slot in settings.keys)).apply(lambda pems: [jws.public_jwk(p) for p in pems]))


def _workload_initdata(config: TrustedConfig, ca_pem: str) -> dict[str, Initdata]:
    uris = {r.name: r.uri for r in config.kbs_resources}
    return {
        w.name: render_initdata(
            InitdataArgs(
                kbs_url=config.kbs.url,
                kbs_ca_pem=ca_pem,
                policy=agent_policy_args(config, w),
                registry_credentials_uri=uris[w.registry_credentials] if w.registry_credentials else None,
            )
        )
        for w in config.workloads
    }


def agent_policy_args(config: TrustedConfig, workload: Workload) -> AgentPolicyArgs:
    """The agent policy of `workload`'s pod VMs: its image, process and image environment as pinned, and
    its container as components/nim.py renders it on the cloud side."""
    uris = {r.name: r.uri for r in config.kbs_resources}
    return AgentPolicyArgs(
        image=workload.image,
        allow_read_stream=config.agent_policy.allow_read_stream,
        args=tuple(workload.args) if workload.args is not None else None,
        decryptor=_decryptor_policy(workload, uris),
        image_env=tuple(workload.image_env),
        working_dir=workload.working_dir,
        container=nim.policy_container(_not_ngc_keys(workload, uris), config.inference_tls.client_ca_certificate is not None, workload.encrypted_model is not None),
        mode=config.agent_policy.mode,
    )


def _not_ngc_keys(workload: Workload, uris: dict[str, str]) -> tuple[str, ...] | None:
    """The sealed pointers NIM's NGC_API_KEY may not hold: the workload's secrets meant for something else (its
    TLS serving key, its registry credentials), which NIM would send to NGC as an API key; None for an encrypted
    model, whose NIM has no NGC key."""
    if workload.encrypted_model is not None:
        return None
    others = [names.serving_key_uri(workload.name)] if workload.serving_hostnames else []
    others += [uris[workload.registry_credentials]] if workload.registry_credentials else []
    return tuple(sealed_prefix(uri, names.SEALED_SECRET_KEY_URI) for uri in others)


def _decryptor_policy(workload: Workload, uris: dict[str, str]) -> DecryptorPolicy | None:
    model = workload.encrypted_model
    if model is None:
        return None
    return DecryptorPolicy(image=model.decryptor_image, key_uri=uris[model.key_resource], manifest_sha256=model.manifest_sha256)


def _measurements(workload: Workload, initdata: dict[str, Initdata]) -> list[str]:
    """The PCR 8 values a pod VM of `workload` may show: its current initdata's, then retiring ones."""
    return [initdata[workload.name].pcr8, *workload.retiring_pcr08]


def reference_value_set(values: ReferenceValues) -> render.ReferenceValueSet:
    """The config's reference values as the renderer takes them."""
    return render.ReferenceValueSet(
        expiration=values.expiration,
        pcrs=values.pcrs.model_dump(),
        minimum_tcb=values.minimum_tcb.model_dump(),
        allowed_driver_versions=values.allowed_driver_versions,
        allowed_vbios_versions=values.allowed_vbios_versions,
        measurements=values.measurements,
    )


def _all_pcr8(config: TrustedConfig, initdata: dict[str, Initdata]) -> list[str]:
    """Every workload's current PCR 8, then every retiring one: the `snp_pcr08` reference values."""
    return [initdata[w.name].pcr8 for w in config.workloads] + [v for w in config.workloads for v in w.retiring_pcr08]


def _releases(config: TrustedConfig, initdata: dict[str, Initdata]) -> list[render.Release]:
    """Each resource, released to the workloads that list it; the verification key to every workload."""
    releases = [
        render.Release(
            name=r.name,
            path=("default", r.secret, r.key),
            gpus=r.required_gpus,
            pcr08=[v for w in config.workloads if r.name in w.resources for v in _measurements(w, initdata)],
        )
        for r in config.kbs_resources
    ]
    every_workload = _all_pcr8(config, initdata)
    releases.append(render.Release(names.SEALED_SECRET_KEY, ("default", names.SEALED_SECRET_KEY, names.SEALED_SECRET_KEY_ENTRY), 0, every_workload))
    return releases


def _serving(config: TrustedConfig) -> list[Workload]:
    """The workloads that serve a model over TLS, each with its own serving key in KBS."""
    return [w for w in config.workloads if w.serving_hostnames]


def _received(workload: Workload) -> list[str]:
    """kbsResources names KBS releases to `workload`: its declared resources, then its serving key."""
    return [*workload.resources, *([names.serving_key_resource(workload.name)] if workload.serving_hostnames else [])]


def _serving_releases(config: TrustedConfig, initdata: dict[str, Initdata]) -> list[render.Release]:
    """Each serving key, released only to its own workload's measurement and with its GPUs attested."""
    return [
        render.Release(names.serving_key_resource(w.name), ("default", names.SERVING_KEYS, w.name), w.gpus, _measurements(w, initdata))
        for w in _serving(config)
    ]


def _sealed_pointers(config: TrustedConfig, private_key_pem: str) -> dict[str, dict[str, str]]:
    uris = {r.name: r.uri for r in config.kbs_resources} | {names.serving_key_resource(w.name): names.serving_key_uri(w.name) for w in _serving(config)}
    return {
        w.name: {name: sealed_secret(uris[name], private_key_pem, names.SEALED_SECRET_KEY_URI) for name in _received(w)}
        for w in config.workloads
    }


def _workload_outputs(
    config: TrustedConfig, initdata: dict[str, Initdata], sealed: dict[str, dict[str, str]], certificates: dict[str, str]
) -> dict[str, Any]:
    return {
        w.name: {
            "image": w.image,
            "initdata": initdata[w.name].annotation,
            "initdataDigest": initdata[w.name].digest,
            "initdataPcr8": initdata[w.name].pcr8,
            "resources": _received(w),
            "gpus": w.gpus,
            "sealedSecrets": sealed[w.name],
            **_pinned_process(w),
            **(
                {"servingCertificate": certificates[w.name], "servingKeyResource": names.serving_key_resource(w.name)}
                if w.serving_hostnames
                else {}
            ),
            **_encrypted_model_output(w, config),
        }
        for w in config.workloads
    }


def _pinned_process(workload: Workload) -> dict[str, Any]:
    """What the agent policy runs in the workload's container, from its image config: public, for audit and
    for the cloud side (`args` is absent only for a workload that receives no secret)."""
    return {
        "imageEnv": list(workload.image_env),
        **({"args": list(workload.args)} if workload.args is not None else {}),
        **({"workingDir": workload.working_dir} if workload.working_dir is not None else {}),
    }


def _encrypted_model_output(workload: Workload, config: TrustedConfig) -> dict[str, dict[str, str]]:
    """`encryptedModel`, for a workload that has one: what the cloud side needs to start the decryptor
    exactly as the workload's agent policy pins it."""
    model = workload.encrypted_model
    if model is None:
        return {}
    uri = next(r.uri for r in config.kbs_resources if r.name == model.key_resource)
    return {"encryptedModel": {"decryptorImage": model.decryptor_image, "keyUri": uri, "manifestSha256": model.manifest_sha256}}


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
