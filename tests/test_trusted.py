"""The trusted stack as planned: what it registers, what it renders, and what it lets the cloud side see."""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json
import tomllib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from jwcrypto import jwk, jws

from components import nim
from components.initdata import AgentPolicyArgs, InitdataArgs, render_initdata
from components.trustee import names
from scripts.offline import SECRET, Registered, StackRun
from scripts.plan import kubernetes_manifests
from stacks.contracts import TRUSTED_OUTPUTS, WORKLOAD_KEYS
from stacks.trusted import agent_policy_args
from tests.rego_engines import evaluate
from tests.test_sealed_secret import decode
from tests.tls_fixtures import private_lines
from tests.trusted_stack import example_trusted

CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SECRET_TYPE = "kubernetes:core/v1:Secret"
KBS_CONFIG = "kubernetes:confidentialcontainers.org/v1alpha1:KbsConfig"
ROUTE = "kubernetes:route.openshift.io/v1:Route"


@pytest.fixture(scope="module")
def dev():
    return example_trusted("dev-trusted")


@pytest.fixture(scope="module")
def prod():
    return example_trusted("prod-trusted")


def config_map_value(run: StackRun, name: str) -> str:
    (value,) = run.named(f"kbs-{name}", CONFIG_MAP).inputs["data"].values()
    return value


def secret_value(run: StackRun, resource_name: str, key: str) -> str:
    return run.named(resource_name, SECRET_TYPE).inputs["stringData"][key]


WORKLOAD = "llama-3-1-8b"
ARGS = ["/opt/nvidia/nvidia_entrypoint.sh", "/opt/nim/start-server.sh"]


def initdata_document(run: StackRun, workload: str = WORKLOAD) -> bytes:
    return gzip.decompress(base64.b64decode(run.outputs["workloads"][workload]["initdata"], validate=True))


def reference_value(run: StackRun, name: str):
    record = json.loads(config_map_value(run, names.REFERENCE_VALUES))[name]
    return json.loads(base64.urlsafe_b64decode(record))["value"]


# --- Outputs: the contract with the cloud side -----------------------------------------------


def test_outputs_are_exactly_the_contract_and_all_public(dev):
    _, run = dev
    assert set(run.outputs) == set(TRUSTED_OUTPUTS)
    assert run.secret_outputs == frozenset()


def test_workloads_output_the_contract_keys(dev):
    config, run = dev
    assert list(run.outputs["workloads"]) == [w.name for w in config.workloads] == ["llama-3-1-8b", "mistral-7b"]
    for workload in config.workloads:
        out = run.outputs["workloads"][workload.name]
        # A workload with servingHostnames also publishes its serving certificate and the name of its key,
        # which KBS releases to it like its declared resources.
        # Both examples pin each workload's process (args, optional in the contract) and working directory.
        assert tuple(out) == (*WORKLOAD_KEYS, "args", "workingDir", "servingCertificate", "servingKeyResource")
        assert (out["args"], out["imageEnv"], out["workingDir"]) == (workload.args, workload.image_env, workload.working_dir)
        received = [*workload.resources, f"{workload.name}-tls-key"]
        assert (out["image"], out["resources"], out["gpus"], out["servingKeyResource"]) == (workload.image, received, 1, received[-1])
        assert set(out["sealedSecrets"]) == set(received)
    assert run.outputs["workloads"]["mistral-7b"]["resources"] == ["ngc-api-key", "mistral-7b-tls-key"]
    assert run.outputs["sealedSecretKeyUri"] == "kbs:///default/sealed-secret-key/public-jwk"


def test_kbs_resources_output_names_uris_and_gpu_gating(dev, prod):
    assert dev[1].outputs["kbsResources"] == {
        "ngc-api-key": {"uri": "kbs:///default/ngc-api-key/api-key", "gpuGated": True, "minGpus": 1},
        "model-key": {"uri": "kbs:///default/model-decryption/key.bin", "gpuGated": True, "minGpus": 1},
        # Each workload's TLS serving key: released with as many attested GPUs as the workload has.
        "llama-3-1-8b-tls-key": {"uri": "kbs:///default/inference-tls-keys/llama-3-1-8b", "gpuGated": True, "minGpus": 1},
        "mistral-7b-tls-key": {"uri": "kbs:///default/inference-tls-keys/mistral-7b", "gpuGated": True, "minGpus": 1},
    }
    assert prod[1].outputs["kbsResources"]["registry-credentials"] == {
        "uri": "kbs:///default/registry-auth/auth.json", "gpuGated": False, "minGpus": 0,
    }


def test_each_serving_workload_gets_a_certificate_from_the_protected_inference_ca(dev):
    config, run = dev
    ca = x509.load_pem_x509_certificate(run.outputs["inferenceCaCert"].encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert run.named("inference-tls-ca-key", PRIVATE_KEY).protect
    for workload in config.workloads:
        out = run.outputs["workloads"][workload.name]
        cert = x509.load_pem_x509_certificate(out["servingCertificate"].encode())
        cert.verify_directly_issued_by(ca)
        assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == list(workload.serving_hostnames)
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
        key = run.named(f"inference-tls-{workload.name}-key", PRIVATE_KEY)
        assert key.protect
        assert cert.public_key() == serialization.load_pem_public_key(key.outputs["publicKeyPem"].encode())


def test_a_route_host_longer_than_a_common_name_may_be_is_served(runner):
    # A 31-character model gives <model>-<namespace>.<domain> over the 64 characters RFC 5280 allows a
    # common name: the certificate's subject names the workload, its SAN the host.
    host = f"{'m' * 31}-{'m' * 31}.apps.confai-dev.eastus2.aroapp.io"
    run = runner.example("dev-trusted", set={"workloads.0.servingHostnames": [host]})
    cert = x509.load_pem_x509_certificate(run.outputs["workloads"][WORKLOAD]["servingCertificate"].encode())
    assert len(host) > 64
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [host]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == WORKLOAD


def test_the_serving_keys_are_kbs_resources_and_only_their_sealed_pointers_are_published(dev):
    config, run = dev
    served = run.named("kbs-resources-inference-tls-keys", SECRET_TYPE)
    assert set(served.inputs["stringData"]) == {w.name for w in config.workloads}
    for workload in config.workloads:
        out = run.outputs["workloads"][workload.name]
        key = run.named(f"inference-tls-{workload.name}-key", PRIVATE_KEY)
        assert served.is_secret("stringData", workload.name)
        assert served.inputs["stringData"][workload.name] == key.outputs["privateKeyPemPkcs8"]
        uri = run.outputs["kbsResources"][out["servingKeyResource"]]["uri"]
        assert uri == f"kbs:///default/inference-tls-keys/{workload.name}"
        assert decode(out["sealedSecrets"][out["servingKeyResource"]])["name"] == uri


def test_initdata_annotation_is_deterministic_gzip_base64_of_the_document(dev):
    _, run = dev
    out = run.outputs["workloads"][WORKLOAD]
    annotation = out["initdata"]
    assert "\n" not in annotation
    compressed = base64.b64decode(annotation, validate=True)
    assert compressed[4:8] == b"\x00\x00\x00\x00", "gzip mtime must be 0"
    assert not compressed[3] & 0x08, "gzip must carry no file name"
    document = gzip.decompress(compressed)
    digest = hashlib.sha256(document).hexdigest()
    assert out["initdataDigest"] == digest
    assert out["initdataPcr8"] == hashlib.sha256(bytes(32) + bytes.fromhex(digest)).hexdigest()


def test_initdata_points_guests_at_kbs_with_its_ca(dev):
    config, run = dev
    document = tomllib.loads(initdata_document(run).decode())
    assert (document["version"], document["algorithm"]) == ("0.1.0", "sha256")
    assert set(document["data"]) == {"aa.toml", "cdh.toml", "policy.rego"}
    aa = tomllib.loads(document["data"]["aa.toml"])
    cdh = tomllib.loads(document["data"]["cdh.toml"])
    ca = run.outputs["kbsCaCert"]
    assert aa["token_configs"]["kbs"] == {"url": config.kbs.url, "cert": ca}
    assert aa["token_configs"]["coco_as"]["url"] == config.kbs.url
    assert cdh["kbc"] == {"name": "cc_kbc", "url": config.kbs.url, "kbs_cert": ca}
    assert cdh["socket"] == "unix:///run/confidential-containers/cdh.sock"
    # Sealed secrets stay verified: nothing turns CDH's signature check off (FACTS 6), no image section.
    assert set(cdh) == {"socket", "credentials", "kbc"}


def test_registry_credentials_render_in_that_workloads_cdh_toml_only(runner):
    workloads = [
        {"name": "a", "image": "nvcr.io/nim/meta/a@sha256:" + "1" * 64, "resources": ["ngc-api-key", "model-key"], "registryCredentials": "model-key", "args": ARGS},
        {"name": "b", "image": "nvcr.io/nim/meta/b@sha256:" + "2" * 64, "resources": ["ngc-api-key"], "args": ARGS},
    ]
    run = runner.example("dev-trusted", set={"workloads": workloads})
    cdh = {w: tomllib.loads(tomllib.loads(initdata_document(run, w).decode())["data"]["cdh.toml"]) for w in ("a", "b")}
    assert cdh["a"]["image"] == {"authenticated_registry_credentials_uri": "kbs:///default/model-decryption/key.bin"}
    assert "image" not in cdh["b"]


def test_each_workload_has_its_own_initdata_policy_and_pcr8(runner):
    workloads = [
        {"name": "a", "image": "nvcr.io/nim/meta/a@sha256:" + "1" * 64, "resources": ["ngc-api-key"], "args": ARGS},
        {"name": "b", "image": "nvcr.io/nim/meta/b@sha256:" + "2" * 64, "resources": ["model-key"], "args": ARGS},
    ]
    run = runner.example("dev-trusted", set={"workloads": workloads})
    out = run.outputs["workloads"]
    assert out["a"]["initdataPcr8"] != out["b"]["initdataPcr8"]
    for name, workload in out.items():
        policy = tomllib.loads(initdata_document(run, name).decode())["data"]["policy.rego"]
        pinned = evaluate({"policy.rego": policy}, "data.agent_policy.policy_data", {})["containers"][0]
        assert f"{pinned['repository']}@{pinned['digest']}" == workload["image"]
    assert reference_value(run, "snp_pcr08") == [out["a"]["initdataPcr8"], out["b"]["initdataPcr8"]]


def test_initdata_render_is_pure_and_tracks_its_inputs(dev):
    config, run = dev
    workload = config.workloads[0]
    policy = agent_policy_args(config, workload)
    args = InitdataArgs(config.kbs.url, run.outputs["kbsCaCert"], policy)
    assert render_initdata(args).document == initdata_document(run)
    other_image = InitdataArgs(args.kbs_url, args.kbs_ca_pem, AgentPolicyArgs(workload.image.replace("bcf3", "0000"), True))
    assert render_initdata(other_image).pcr8 != run.outputs["workloads"][WORKLOAD]["initdataPcr8"]


# --- Keys and certificates -------------------------------------------------------------------


def test_kbs_ca_issues_the_served_certificate_for_the_hostname(dev):
    config, run = dev
    ca = x509.load_pem_x509_certificate(run.outputs["kbsCaCert"].encode())
    server = x509.load_pem_x509_certificate(secret_value(run, f"kbs-{names.HTTPS_CERT}", "certificate").encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [config.kbs.hostname]


def test_keys_come_from_pulumi_tls_resources(dev):
    _, run = dev
    algorithms = {r.name: r.inputs["algorithm"] for r in run.of_type("tls:index/privateKey:PrivateKey")}
    assert algorithms["kbs-admin-key"] == "ED25519"
    assert algorithms["kbs-token-key"] == "ECDSA"
    admin_public = run.named("kbs-admin-key", "tls:index/privateKey:PrivateKey").outputs["publicKeyPem"]
    assert secret_value(run, f"kbs-{names.AUTH_SECRET}", "publicKey") == admin_public
    token = x509.load_pem_x509_certificate(secret_value(run, f"kbs-{names.TOKEN_CERT}", "token.crt").encode())
    assert token.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Trustee attestation token signer"


def test_provided_tls_mode_uses_the_users_certificate_and_ca(prod):
    config, run = prod
    assert not run.of_type("confidential-ai:tls:SelfSignedServerCertificate")
    assert run.outputs["kbsCaCert"] == config.kbs.tls.ca_certificate
    for name in (names.HTTPS_KEY, names.HTTPS_CERT):
        assert run.named(f"kbs-{name}", SECRET_TYPE).is_secret("stringData")


# --- Trustee configuration -------------------------------------------------------------------


def test_kbs_config_is_the_restricted_profile_with_the_remote_gpu_verifier(dev):
    config, run = dev
    kbs = tomllib.loads(config_map_value(run, names.CONFIG_MAP))
    assert kbs["http_server"]["insecure_http"] is False
    assert kbs["admin"]["authorization_mode"] == "DenyAll"
    assert kbs["attestation_token"]["insecure_header_jwk"] is False
    assert kbs["attestation_service"]["verifier_config"]["nvidia_verifier"] == {
        "type": "Remote", "verifier_url": config.kbs.nvidia_verifier.url,
    }
    assert kbs["plugins"] == [{"name": "resource", "storage_backend_type": "kvstorage"}]


# Every table and key KBS 1.2 deserializes from kbs-config.toml. KBS ignores unknown keys instead of
# rejecting them, so a misspelt or stale key silently falls back to a default: only these may appear.
# confidential-containers/trustee: kbs/src/config.rs (KbsConfig, HttpServerConfig, TlsConfig),
# kbs/docs/config.md ([admin]), kbs/src/token/mod.rs, kbs/src/attestation/coco/builtin.rs,
# attestation-service/src/rvps/mod.rs (RvpsConfig::BuiltIn), attestation-service/src/token/ear_broker.rs,
# deps/verifier/src/lib.rs (VerifierConfig), deps/verifier/src/nvidia/mod.rs,
# deps/key-value-storage/src/local_json/mod.rs.
KBS_CONFIG_KEYS = {
    "": {"http_server", "admin", "attestation_token", "attestation_service", "storage_backend", "session_storage_type", "plugins"},
    "http_server": {
        "sockets", "insecure_http", "private_key", "certificate", "payload_request_size", "worker_count",
        "tls_profile", "tls_min_version", "tls_max_version", "tls_ciphers", "tls_groups",
    },
    "admin": {"authorization_mode"},
    "attestation_token": {"trusted_certs_paths", "trusted_jwk_sets", "extra_teekey_paths", "insecure_header_jwk"},
    "attestation_service": {"type", "timeout", "rvps_config", "attestation_token_broker", "verifier_config", "storage_type"},
    "attestation_service.rvps_config": {"type", "extractors", "storage_type"},
    "attestation_service.attestation_token_broker": {
        "duration_min", "issuer_name", "developer_name", "build_name", "profile_name", "signer", "policy_dir",
    },
    "attestation_service.attestation_token_broker.signer": {"key_path", "cert_url", "cert_path"},
    "attestation_service.verifier_config": {"nvidia_verifier", "snp_verifier", "tpm_verifier", "dcap_verifier"},
    "attestation_service.verifier_config.nvidia_verifier": {"type", "verifier_url"},
    "attestation_service.verifier_config.snp_verifier": {"vcek_sources"},
    "storage_backend": {"storage_type", "backends"},
    "storage_backend.backends": {"local_fs", "local_json", "postgres"},
    "storage_backend.backends.local_fs": {"dir_path"},
    "storage_backend.backends.local_json": {"file_dir_path"},
    "plugins": {"name", "storage_backend_type"},
}


def unknown_kbs_config_keys(table: dict, path: str = "") -> list[str]:
    unknown = [f"{path}.{key}".lstrip(".") for key in sorted(set(table) - KBS_CONFIG_KEYS.get(path, set()))]
    for key, value in table.items():
        child = f"{path}.{key}".lstrip(".")
        if isinstance(value, dict) and child in KBS_CONFIG_KEYS:
            unknown += unknown_kbs_config_keys(value, child)
        elif key == "plugins" and not path:
            unknown += [u for plugin in value for u in unknown_kbs_config_keys(plugin, "plugins")]
    return unknown


def test_kbs_config_uses_only_keys_kbs_reads(dev):
    _, run = dev
    kbs = tomllib.loads(config_map_value(run, names.CONFIG_MAP))
    assert unknown_kbs_config_keys(kbs) == []
    assert unknown_kbs_config_keys({"attestation_service": {"attestation_token_config": {}}}) == ["attestation_service.attestation_token_config"]
    assert kbs["attestation_service"]["attestation_token_broker"]["duration_min"] == 5


def test_kbs_config_paths_are_where_the_operator_mounts_the_stacks_objects(dev):
    """Secrets mount at /etc/<volume>/<key>; reference values at <local_json dir>/reference_value
    (openshift/trustee-operator internal/controller/kbsconfig_controller.go and common.go)."""
    _, run = dev
    kbs = tomllib.loads(config_map_value(run, names.CONFIG_MAP))
    http, service = kbs["http_server"], kbs["attestation_service"]
    signer = service["attestation_token_broker"]["signer"]
    mounted = {
        http["private_key"]: (names.HTTPS_KEY, "privateKey"),
        http["certificate"]: (names.HTTPS_CERT, "certificate"),
        signer["key_path"]: (names.TOKEN_KEY, "token.key"),
        signer["cert_path"]: (names.TOKEN_CERT, "token.crt"),
    }
    volumes = {"privateKey": "https-key", "certificate": "https-cert", "token.key": "attestation-key", "token.crt": "attestation-cert"}
    for path, (secret, key) in mounted.items():
        assert path == f"/etc/{volumes[key]}/{key}"
        assert key in run.named(f"kbs-{secret}", SECRET_TYPE).inputs["stringData"]
    assert kbs["attestation_token"]["trusted_certs_paths"] == [signer["cert_path"]]
    assert service["rvps_config"] == {"type": "BuiltIn", "storage_type": "LocalJson"}
    assert kbs["storage_backend"]["backends"]["local_json"]["file_dir_path"] == "/opt/confidential-containers/storage/local_json"
    assert kbs["storage_backend"]["backends"]["local_fs"]["dir_path"] == "/opt/confidential-containers/storage"


def test_reference_values_records_and_initdata_pcr8(dev):
    config, run = dev
    records = json.loads(config_map_value(run, names.REFERENCE_VALUES))
    assert all(isinstance(v, str) for v in records.values())
    decoded = {}
    for name, encoded in records.items():
        assert base64.urlsafe_b64encode(base64.urlsafe_b64decode(encoded)).decode() == encoded, "URL-safe, padded"
        record = json.loads(base64.urlsafe_b64decode(encoded))
        assert set(record) == {"version", "name", "expiration", "value"}
        assert (record["version"], record["name"], record["expiration"]) == ("0.1.0", name, config.reference_values.expiration)
        decoded[name] = record["value"]
    pcrs = config.reference_values.pcrs
    assert decoded["snp_pcr03"] == pcrs.pcr03 and decoded["snp_pcr12"] == pcrs.pcr12
    assert decoded["allowed_driver_versions"] == config.reference_values.allowed_driver_versions
    assert decoded["snp_min_tcb_microcode"] == config.reference_values.minimum_tcb.microcode
    recomputed = hashlib.sha256(bytes(32) + hashlib.sha256(initdata_document(run)).digest()).hexdigest()
    assert decoded["snp_pcr08"][0] == recomputed == run.outputs["workloads"][WORKLOAD]["initdataPcr8"]
    # Every workload's PCR 8, in the order they are declared.
    assert decoded["snp_pcr08"] == [w["initdataPcr8"] for w in run.outputs["workloads"].values()]


def test_initdata_change_updates_pcr8_reference_and_resource_policy_in_the_same_run(runner, dev):
    changed = runner.example("dev-trusted", set={"agentPolicy.allowReadStream": False})
    new_pcr8 = changed.outputs["workloads"][WORKLOAD]["initdataPcr8"]
    assert new_pcr8 != dev[1].outputs["workloads"][WORKLOAD]["initdataPcr8"]
    assert reference_value(changed, "snp_pcr08")[0] == new_pcr8
    assert {r["name"]: r["pcr08"] for r in releases(changed)}["model-key"] == [new_pcr8]


def test_previous_initdata_pcr8_stays_accepted_and_served_during_a_rollout(runner, dev):
    old_pcr8 = dev[1].outputs["workloads"][WORKLOAD]["initdataPcr8"]
    changed = runner.example("dev-trusted", set={"agentPolicy.allowReadStream": False, "workloads.0.retiringPcr08": [old_pcr8]})
    new_pcr8 = changed.outputs["workloads"][WORKLOAD]["initdataPcr8"]
    mistral = changed.outputs["workloads"]["mistral-7b"]["initdataPcr8"]
    assert reference_value(changed, "snp_pcr08") == [new_pcr8, mistral, old_pcr8]
    # The retiring PCR 8 keeps this workload's resources only: mistral-7b's VMs never had model-key.
    assert {r["name"]: r["pcr08"] for r in releases(changed)}["model-key"] == sorted([new_pcr8, old_pcr8])


def releases(run: StackRun) -> list[dict]:
    return evaluate({"policy.rego": config_map_value(run, names.RESOURCE_POLICY)}, "data.policy.releases", {})


def test_resource_policy_declares_each_configured_resource(dev):
    _, run = dev
    llama, mistral = (run.outputs["workloads"][w]["initdataPcr8"] for w in ("llama-3-1-8b", "mistral-7b"))
    both = tuple(sorted([llama, mistral]))
    assert sorted((r["name"], tuple(r["path"]), r["gpus"], tuple(r["pcr08"])) for r in releases(run)) == [
        ("llama-3-1-8b-tls-key", ("default", "inference-tls-keys", "llama-3-1-8b"), 1, (llama,)),
        ("mistral-7b-tls-key", ("default", "inference-tls-keys", "mistral-7b"), 1, (mistral,)),
        ("model-key", ("default", "model-decryption", "key.bin"), 1, (llama,)),
        ("ngc-api-key", ("default", "ngc-api-key", "api-key"), 1, both),
        # The sealed secrets' verification key: public, read by every workload's pod VMs.
        ("sealed-secret-key", ("default", "sealed-secret-key", "public-jwk"), 0, both),
    ]


def test_kbs_serves_the_public_jwk_of_the_protected_signing_key(dev):
    _, run = dev
    key = run.named("sealed-secret-signing-key", "tls:index/privateKey:PrivateKey")
    assert (key.inputs["algorithm"], key.inputs["ecdsaCurve"], key.protect) == ("ECDSA", "P256", True)
    served = run.named("kbs-resources-sealed-secret-key", SECRET_TYPE)
    public = json.loads(served.inputs["stringData"]["public-jwk"])
    assert public["kid"] == run.outputs["sealedSecretKeyUri"] and "d" not in public
    assert jwk.JWK(**public).export_to_pem().decode() == key.outputs["publicKeyPem"]
    for sealed in run.outputs["workloads"][WORKLOAD]["sealedSecrets"].values():
        token = jws.JWS()
        token.deserialize(sealed.removeprefix("sealed."))
        token.verify(jwk.JWK(**public), alg="ES256")


def test_kbs_config_names_every_object_and_waits_for_them(dev):
    _, run = dev
    kbs = run.named("kbs-kbsconfig", KBS_CONFIG)
    spec = kbs.inputs["spec"]
    by_name = {r.inputs["metadata"]["name"]: r for r in run.resources if r.type in (CONFIG_MAP, SECRET_TYPE)}
    referenced = [v for k, v in spec.items() if k.endswith("Name") and k != "kbsDeploymentType"] + spec["kbsSecretResources"]
    assert sorted(spec["kbsSecretResources"]) == ["inference-tls-keys", "model-decryption", "ngc-api-key", "sealed-secret-key"]
    for name in referenced:
        assert name in by_name, f"KbsConfig names {name}, which the stack does not create"
        assert by_name[name].urn in kbs.depends_on
    assert run.named("trustee-install-plan-approval").urn in kbs.depends_on, "KbsConfig waits for the pinned Trustee CSV"
    assert kbs.inputs["metadata"]["annotations"]["pulumi.com/waitFor"] == "jsonpath={.status.isReady}=true"
    keys = {name: set(by_name[name].inputs.get("data") or by_name[name].inputs["stringData"]) for name in referenced}
    assert keys[spec["kbsConfigMapName"]] == {"kbs-config.toml"}
    assert keys[spec["kbsAttestationPolicyConfigMapName"]] == {"default_cpu.rego"}
    assert keys[spec["kbsGpuAttestationPolicyConfigMapName"]] == {"default_gpu.rego"}
    assert keys[spec["kbsResourcePolicyConfigMapName"]] == {"resource-policy.rego"}
    assert keys[spec["kbsRvpsRefValuesConfigMapName"]] == {"reference_value"}
    assert keys[spec["kbsAuthSecretName"]] == {"publicKey"}
    assert keys[spec["kbsHttpsKeySecretName"]] == {"privateKey"}
    assert keys[spec["kbsAttestationKeySecretName"]] == {"token.key"}


# --- Rotation: a changed workload secret restarts KBS in the same run ------------------------


def revision(run: StackRun) -> str:
    return run.named(f"kbs-{names.RESOURCE_POLICY}", CONFIG_MAP).inputs["metadata"]["annotations"][names.SECRETS_REVISION_ANNOTATION]


def test_rotated_secret_restarts_kbs_and_changes_nothing_else(runner, dev):
    """KBS copies secret resources only at pod start; the operator restarts it when a ConfigMap it mounts changes."""
    _, before = dev
    after = runner.example("dev-trusted", set={"kbsSecrets.ngc-api-key": "nvapi-rotated-value"})
    old, new = {r.urn: r for r in before.resources}, {r.urn: r for r in after.resources}
    assert old.keys() == new.keys() and before.outputs == after.outputs
    changed = sorted(new[urn].name for urn in new if (old[urn].inputs, old[urn].depends_on) != (new[urn].inputs, new[urn].depends_on))
    assert changed == ["kbs-resource-policy", "kbs-resources-ngc-api-key", "kbs-resources-revision"]
    assert revision(after) != revision(before)
    policy_before, policy_after = (copy.deepcopy(run.named("kbs-resource-policy", CONFIG_MAP).inputs) for run in (before, after))
    for inputs in (policy_before, policy_after):
        del inputs["metadata"]["annotations"][names.SECRETS_REVISION_ANNOTATION]
    assert policy_before == policy_after, "only the restart trigger changes on the ConfigMap"
    kbs_config = after.named("kbs-kbsconfig").inputs["spec"]
    assert kbs_config["kbsResourcePolicyConfigMapName"] == names.RESOURCE_POLICY, "the trigger must be on a ConfigMap the operator tracks"


def test_restart_trigger_follows_the_secrets_and_reveals_nothing(dev):
    _, run = dev
    config_map = run.named(f"kbs-{names.RESOURCE_POLICY}", CONFIG_MAP)
    secrets = {r.urn for r in run.of_type(SECRET_TYPE) if r.name.startswith("kbs-resources-")}
    assert secrets and secrets <= set(config_map.depends_on), "KBS must restart after the new values are in place"
    trigger = run.named("kbs-resources-revision", "random:index/randomId:RandomId")
    assert trigger.provider == run.named("random", "pulumi:providers:random").urn
    # The verification JWK too: KBS copies it at start like any resource, so a new key restarts KBS.
    assert set(trigger.inputs["keepers"]) == {
        "ngc-api-key/api-key", "model-decryption/key.bin", "sealed-secret-key/public-jwk",
        "inference-tls-keys/llama-3-1-8b", "inference-tls-keys/mistral-7b",
    }
    assert trigger.is_secret("keepers") or all(trigger.is_secret("keepers", k) for k in trigger.inputs["keepers"])
    assert "keepers" in trigger.additional_secret_outputs
    # The offline stand-in is a digest of the keepers, so the plan must show it only as a secret.
    assert config_map.is_secret("metadata", "annotations", names.SECRETS_REVISION_ANNOTATION)


def test_unpinned_launch_measurement_is_one_warning(runner):
    run = runner.example("dev-trusted", delete=("referenceValues.unpinnedMeasurementReason",))
    assert len(run.warnings) == 1 and "referenceValues.measurements is empty" in run.warnings[0]
    assert "referenceValues.unpinnedMeasurementReason" in run.warnings[0]
    assert run.notes == []


def test_an_unpinned_launch_measurement_declared_on_purpose_is_a_note_that_says_so(dev, prod):
    # Both examples pin every workload's process: no warning about it (an unpinned one is a config error).
    assert dev[1].warnings == []
    assert dev[1].notes == [
        "referenceValues.measurements is empty on purpose (dev pod VMs not measured yet): the CPU policy accepts any SNP "
        "launch measurement of Azure's paravisor"
    ]
    assert prod[1].warnings == [] and prod[1].notes == []


def test_config_objects_wait_for_the_namespace_only(dev):
    _, run = dev
    namespace = run.named("trustee-namespace").urn
    subscription = run.named("trustee-subscription").urn
    for r in run.resources:
        if r.type in (CONFIG_MAP, SECRET_TYPE):
            assert namespace in r.depends_on and subscription not in r.depends_on, r.name


def test_manifests_validate_against_upstream_crds(dev, crd_validator):
    _, run = dev
    checked = 0
    for _, manifest in kubernetes_manifests(run):
        if manifest["kind"] in ("KbsConfig", "Route", "Subscription", "OperatorGroup"):
            assert crd_validator(manifest) == [], manifest["kind"]
            checked += 1
    assert checked == 4


def test_route_is_passthrough_to_kbs_service_on_the_kbs_host(dev):
    config, run = dev
    spec = run.named("kbs-route", ROUTE).inputs["spec"]
    assert spec["host"] == config.kbs.hostname == "kbs.trusted-dev.example.com"
    assert spec["tls"]["termination"] == "passthrough"
    assert spec["to"] == {"kind": "Service", "name": "kbs-service"}
    assert spec["port"] == {"targetPort": "kbs-port"}


def test_load_balancer_exposure_replaces_the_route(runner):
    run = runner.example("dev-trusted", set={"kbs.exposure": "loadBalancer", "kbs.url": "https://kbs.trusted-dev.example.com:8080"})
    assert not run.of_type(ROUTE)
    assert run.named("kbs-kbsconfig", KBS_CONFIG).inputs["spec"]["kbsServiceType"] == "LoadBalancer"


# --- Secrets and providers -------------------------------------------------------------------


def private_material(run: StackRun) -> list[str]:
    """Lines of every private key PEM and every workload secret value in the run (placeholders for config secrets)."""
    found = []
    for r in run.of_type("tls:index/privateKey:PrivateKey"):
        found += [line for pem in (r.outputs["privateKeyPem"], r.outputs["privateKeyPemPkcs8"]) for line in private_lines(pem)]
    for r in run.of_type(SECRET_TYPE):
        if r.name.startswith("kbs-resources-"):
            for value in r.inputs["stringData"].values():
                found += private_lines(value) if "PRIVATE KEY-----" in value else value.strip().splitlines()
    return found


def test_no_private_key_or_workload_secret_in_plaintext(dev, prod):
    for config, run in (dev, prod):
        material = private_material(run)
        assert len(material) >= 4
        public = json.dumps([r.redacted_inputs for r in run.resources]) + json.dumps(run.outputs)
        public += json.dumps([m for _, m in kubernetes_manifests(run)])
        for line in material:
            assert line not in public, f"{config.stack.name}: private material in plaintext"


def test_secret_bearing_inputs_are_pulumi_secrets(dev):
    _, run = dev
    for name in (names.HTTPS_KEY, names.TOKEN_KEY):
        secret = run.named(f"kbs-{name}", SECRET_TYPE)
        assert secret.is_secret("stringData") and secret.redacted_inputs["stringData"] == SECRET
    for secret in (run.named("kbs-resources-ngc-api-key", SECRET_TYPE), run.named("kbs-resources-model-decryption", SECRET_TYPE)):
        assert secret.is_secret("stringData")


def test_every_kubernetes_resource_uses_the_trusted_cluster_provider(dev, prod):
    for _, run in (dev, prod):
        kubernetes = [r for r in run.resources if r.custom and r.type.startswith("kubernetes:")]
        assert kubernetes and all(r.provider.endswith("::trusted-cluster") for r in kubernetes)
        keys: list[Registered] = [r for r in run.resources if r.type.startswith("tls:")]
        assert keys and all(r.provider.endswith("pulumi:providers:tls::tls") for r in keys)


def test_a_resource_no_workload_may_receive_is_one_warning(runner):
    run = runner.example("prod-trusted", set={"workloads.0.resources": ["ngc-api-key", "model-key"]}, delete=("workloads.0.registryCredentials",))
    assert run.warnings == ["kbsResources registry-credentials is in no workload's resources: KBS holds it but releases it to no pod VM"]


def test_prod_workload_pulls_its_image_with_kbs_registry_credentials(prod):
    _, run = prod
    cdh = tomllib.loads(tomllib.loads(initdata_document(run).decode())["data"]["cdh.toml"])
    assert cdh["image"] == {"authenticated_registry_credentials_uri": "kbs:///default/registry-auth/auth.json"}


def test_a_workloads_pinned_command_line_is_in_its_agent_policy_only(runner):
    args = ["/opt/nvidia/nvidia_entrypoint.sh", "/opt/nim/start_server.sh", "--verbose"]
    run = runner.example("dev-trusted", set={"workloads.0.args": args})
    pinned = {
        name: evaluate({"policy.rego": tomllib.loads(initdata_document(run, name).decode())["data"]["policy.rego"]}, "data.agent_policy.policy_data", {})["containers"][0]["args"]
        for name in run.outputs["workloads"]
    }
    assert pinned == {"llama-3-1-8b": args, "mistral-7b": ["/opt/nvidia/nvidia_entrypoint.sh", "/opt/nim/start-server.sh"]}


def test_a_workloads_image_env_and_nims_writable_dirs_are_in_its_agent_policy(runner):
    image_env = ["PYTHONPATH=/opt/nim/llm", "LD_LIBRARY_PATH=/opt/hpcx/ompi/lib"]
    run = runner.example("dev-trusted", set={"workloads.0.imageEnv": image_env})
    policies = {name: {"policy.rego": tomllib.loads(initdata_document(run, name).decode())["data"]["policy.rego"]} for name in run.outputs["workloads"]}
    workloads = {name: evaluate(p, "data.agent_policy.policy_data", {})["containers"][0] for name, p in policies.items()}
    assert workloads["llama-3-1-8b"]["image_env"] == image_env
    assert workloads["mistral-7b"]["image_env"] == run.outputs["workloads"]["mistral-7b"]["imageEnv"] != image_env
    guest_volumes = {v["destination"] for v in workloads["mistral-7b"]["volumes"] if v["kind"] in ("local", "memory")}
    assert set(nim.WRITABLE_DIRS) <= guest_volumes
