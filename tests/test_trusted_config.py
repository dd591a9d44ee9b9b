"""Trusted stack config rules: each names its key, never echoes a secret, and stops before any resource."""

from __future__ import annotations

import json

import pytest

from stacks.config import ConfigError, load
from stacks.config.trusted import KbsResource
from tests.conftest import example_config
from tests.test_config import problems

GOOD_RESOURCE = {"name": "extra", "secret": "extra", "key": "value", "gpuGated": False}
# A real CA certificate (public): the one the prod example's KBS TLS names.
CA_PEM = json.loads(example_config("prod-trusted")[0]["confidential-ai:kbs"])["tls"]["caCertificate"]


def with_resource(**fields) -> list[dict]:
    config, _ = example_config("dev-trusted")
    resources = json.loads(config["confidential-ai:kbsResources"])
    return [*resources, {**GOOD_RESOURCE, **fields}]


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            {"set": {"kbs.nvidiaVerifier.type": "local"}},
            "dev-trusted: kbs.nvidiaVerifier.type: local is not supported: the local verifier emits different claims than NRAS "
            "and the shipped GPU policy checks NRAS claims; use remote",
        ),
        (
            {"set": {"kbs.url": "https://kbs.trusted-dev.example.com:8443"}},
            "dev-trusted: kbs.url: a Route serves on 443, not 8443: use https://kbs.trusted-dev.example.com",
        ),
        (
            {"set": {"kbs.url": "https://kbs.example.com:99999"}},
            "dev-trusted: kbs.url: 99999 is not a TCP port (1-65535)",
        ),
        (
            {"set": {"kbs.exposure": "loadBalancer"}},
            "dev-trusted: kbs.url: a LoadBalancer kbs-service listens on 8080: use https://kbs.trusted-dev.example.com:8080",
        ),
        (
            {"set": {"referenceValues.pcrs.pcr03": ["ABCD"]}},
            "dev-trusted: referenceValues.pcrs.pcr03[0]: 'ABCD' is not a PCR value (64 lowercase hex characters, SHA-256 bank)",
        ),
        (
            {"set": {"referenceValues.measurements": ["q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8BI0VniavN7wEj"]}},
            "dev-trusted: referenceValues.measurements[0]: 'q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8BI0VniavN7wEj' "
            "is not an SNP launch measurement (standard base64 of 48 bytes, 64 characters)",
        ),
        (
            {"set": {"referenceValues.allowedDriverVersions": ["latest"]}},
            "dev-trusted: referenceValues.allowedDriverVersions[0]: 'latest' is not a version like 570.124.06 or 96.00.9F.00.04",
        ),
        (
            {"set": {"referenceValues.expiration": "2027-01-01"}},
            "dev-trusted: referenceValues.expiration: '2027-01-01' is not a UTC timestamp like 2027-01-01T00:00:00Z",
        ),
        (
            {"set": {"workloads.0.imageEnv": ["LD_PRELOAD"]}},
            "dev-trusted: workloads[0].imageEnv[0]: 'LD_PRELOAD' is not an environment entry NAME=value as the image's config lists it",
        ),
        (
            {"set": {"agentPolicy.deniedRequests": ["ExecProcessRequest"]}},
            "dev-trusted: agentPolicy.deniedRequests: unknown key",
        ),
        (
            {"set": {"kbs.tls.mode": "provided"}},
            "dev-trusted: kbs.tls.caCertificate: provided mode needs the PEM CA certificate that issued kbsTlsCertificate",
        ),
        (
            {"set": {"kbs.tls.caCertificate": CA_PEM}},
            "dev-trusted: kbs.tls.caCertificate: is only used when mode is provided",
        ),
        (
            {"set": {"kbs.url": "kbs.trusted-dev.example.com"}},
            "dev-trusted: kbs.url: 'kbs.trusted-dev.example.com' is not a URL of the form https://host[:port]",
        ),
        (
            {"set": {"kbs.url": "https://kbs_1.example.com"}},
            "dev-trusted: kbs.url: 'kbs_1.example.com' is not a DNS hostname",
        ),
        # Both ends of the TCP port range (0 and 65536 parse as numbers but are no ports).
        ({"set": {"kbs.url": "https://kbs.example.com:0"}}, "dev-trusted: kbs.url: 0 is not a TCP port (1-65535)"),
        ({"set": {"kbs.url": "https://kbs.example.com:65536"}}, "dev-trusted: kbs.url: 65536 is not a TCP port (1-65535)"),
        (
            {"set": {"kbs.nvidiaVerifier.url": "http://nras.attestation.nvidia.com/v4/attest"}},
            "dev-trusted: kbs.nvidiaVerifier.url: 'http://nras.attestation.nvidia.com/v4/attest' is not an https URL",
        ),
        ({"set": {"kbs.nvidiaVerifier.url": "https:///v4/attest"}}, "dev-trusted: kbs.nvidiaVerifier.url: 'https:///v4/attest' is not an https URL"),
        ({"set": {"trustBundle.keys": ["a", "a"]}}, "dev-trusted: trustBundle.keys: lists a slot twice"),
        ({"set": {"trustBundle.signingKey": "b"}}, "dev-trusted: trustBundle.signingKey: 'b' is not in keys (a); add it there first"),
    ],
)
def test_section_rules_name_their_key(edit, expected):
    assert expected in problems("dev-trusted", **edit)


def test_required_measurement_without_a_list_is_one_line():
    assert problems("prod-trusted", delete=("referenceValues.measurements",)) == [
        "prod-trusted: referenceValues.measurements: is empty but requireMeasurement is true: list the SNP launch "
        "measurement of your pod VMs (docs/trusted-cluster.md: Reading the SNP launch measurement)"
    ]


def test_a_declared_unpinned_measurement_needs_an_empty_list_and_no_requirement():
    measured = "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8BI0VniavN7wEjRWeJ"
    assert problems("dev-trusted", set={"referenceValues.measurements": [measured]}) == [
        "dev-trusted: referenceValues.unpinnedMeasurementReason: is only used while measurements is empty; remove it now that "
        "measurements are pinned"
    ]
    assert problems("dev-trusted", set={"referenceValues.requireMeasurement": True}) == [
        "dev-trusted: referenceValues.unpinnedMeasurementReason: contradicts requireMeasurement: true; keep one of the two",
        "dev-trusted: referenceValues.measurements: is empty but requireMeasurement is true: list the SNP launch "
        "measurement of your pod VMs (docs/trusted-cluster.md: Reading the SNP launch measurement)",
    ]


def test_pcr4_and_pcr7_are_required_reference_values():
    assert problems("dev-trusted", delete=("referenceValues.pcrs.pcr04", "referenceValues.pcrs.pcr07")) == [
        "dev-trusted: referenceValues.pcrs.pcr04: required key is missing",
        "dev-trusted: referenceValues.pcrs.pcr07: required key is missing",
    ]


def test_provided_tls_needs_certificate_and_key_secrets():
    lines = problems("prod-trusted", delete=("kbsTlsCertificate", "kbsTlsPrivateKey"))
    assert lines == [
        "prod-trusted: kbsTlsCertificate: is required when kbs.tls.mode is provided (store it as a secret)",
        "prod-trusted: kbsTlsPrivateKey: is required when kbs.tls.mode is provided (store it as a secret)",
    ]


def test_every_resource_needs_a_value_and_every_value_a_resource():
    lines = problems("dev-trusted", delete=("kbsSecrets.model-key",), set={"kbsSecrets.stray": "value-that-must-not-leak"})
    assert lines == [
        "dev-trusted: kbsSecrets: has no value for resource 'model-key': pulumi config set --secret --path 'kbsSecrets.model-key' <value> -s dev-trusted",
        "dev-trusted: kbsSecrets.stray: is not a declared kbsResources name; declare it or remove the value",
    ]
    assert not any("value-that-must-not-leak" in line for line in lines)


def test_empty_secret_value_is_named_not_shown():
    assert problems("dev-trusted", set={"kbsSecrets.ngc-api-key": ""}) == ["dev-trusted: kbsSecrets.ngc-api-key: is empty"]


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"gpuGated": True, "minGpus": 0}, "minGpus: a gpuGated resource needs at least 1 GPU; set gpuGated: false for a CPU-only resource"),
        ({"minGpus": 2}, "minGpus: is only meaningful with gpuGated: true"),
        ({"secret": "kbs-https-key"}, "secret: 'kbs-https-key' is a name the stack uses for Trustee's own configuration; pick another"),
        ({"name": "ngc-api-key"}, "name: 'ngc-api-key' is declared more than once"),
        # Another name for the same KBS path: both would be one secret in Trustee.
        ({"secret": "ngc-api-key", "key": "api-key"}, "key: kbs:///default/ngc-api-key/api-key is declared more than once"),
        ({"key": "certs/tls.key"}, "key: 'certs/tls.key' is not a Secret key (letters, digits, '-', '_', '.')"),
        ({"key": ".."}, "key: '..' is not a Secret key (letters, digits, '-', '_', '.')"),
    ],
)
def test_resource_rules(fields, expected):
    lines = problems("dev-trusted", set={"kbsResources": with_resource(**fields), "kbsSecrets.extra": "x"})
    assert f"dev-trusted: kbsResources[2].{expected}" in lines


def test_a_gpu_gated_resource_without_min_gpus_needs_one_gpu():
    """minGpus left out: the resource policy must ask for one attested GPU; 0 would release a GPU
    workload's secret to a pod VM on its CPU evidence alone."""
    assert KbsResource.model_validate({**GOOD_RESOURCE, "gpuGated": True}).required_gpus == 1


def test_resource_names_must_be_dns_labels():
    lines = problems("dev-trusted", set={"kbsResources": with_resource(secret="Bad_Name"), "kbsSecrets.extra": "x"})
    assert lines == ["dev-trusted: kbsResources[2].secret: 'Bad_Name' is not a DNS label (lowercase letters, digits and '-', at most 63)"]


def test_workload_secrets_must_be_stored_as_secrets():
    config, _ = example_config("dev-trusted")
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("confidential-ai:")}
    with pytest.raises(ConfigError) as err:
        load("dev-trusted", raw, ["kubeconfig"])
    assert err.value.lines() == ["dev-trusted: kbsSecrets: must be stored as a secret: pulumi config set --secret kbsSecrets ... -s dev-trusted"]


def test_bad_trusted_config_registers_nothing(runner):
    config, secret_keys = example_config("dev-trusted", set={"kbs.tls.mode": "provided"})
    with pytest.raises(ConfigError) as err:
        runner("dev-trusted", config, secret_keys)
    assert err.value.registered == []


def test_nvidia_verifier_url_is_the_base_url():
    assert problems("dev-trusted", set={"kbs.nvidiaVerifier.url": "https://nras.attestation.nvidia.com/v4/attest/gpu"}) == [
        "dev-trusted: kbs.nvidiaVerifier.url: https://nras.attestation.nvidia.com/v4/attest/gpu ends in /gpu; give the base attestation URL, the verifier adds /gpu"
    ]


IMAGE = "nvcr.io/nim/meta/llama-3.1-8b-instruct@sha256:" + "ab" * 32


def workload(**fields) -> list[dict]:
    return [{"name": "llama-3-1-8b", "image": IMAGE, "resources": ["ngc-api-key"], "gpus": 1, **fields}]


@pytest.mark.parametrize(
    "workloads, expected",
    [
        (
            workload(image="nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3"),
            "workloads[0].image: 'nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3' is not an image pinned by digest like "
            "nvcr.io/nim/meta/llama-3.1-8b-instruct@sha256:<64 hex> (a tag is not a pin: the registry can move it)",
        ),
        (
            workload(image="nvcr.io/nim/meta/llama-3.1-8b-instruct@sha256:abc"),
            "workloads[0].image: 'nvcr.io/nim/meta/llama-3.1-8b-instruct@sha256:abc' is not an image pinned by digest like "
            "nvcr.io/nim/meta/llama-3.1-8b-instruct@sha256:<64 hex>",
        ),
        (workload(resources=["hf-token"]), "workloads[0].resources[0]: 'hf-token' is not a kbsResources name (declared: model-key, ngc-api-key)"),
        (workload(gpus=0), "workloads[0].gpus: 0 GPUs cannot receive 'ngc-api-key': KBS releases it only to pod VMs attesting 1"),
        (workload(registryCredentials="model-key"), "workloads[0].registryCredentials: 'model-key' is not in this workload's resources; list it there so KBS releases it to the workload"),
        (workload(resources=["ngc-api-key", "ngc-api-key"]), "workloads[0].resources[1]: 'ngc-api-key' is listed twice"),
        (workload() + workload(), "workloads[1].name: 'llama-3-1-8b' is declared more than once"),
        (workload(args=[]), "workloads[0].args: List should have at least 1 item after validation, not 0"),
        (workload(servingHostnames=["llm.example.com"]), "workloads[0].servingHostnames: unknown key"),
    ],
)
def test_workload_errors_are_one_line_naming_the_key(workloads, expected):
    assert f"dev-trusted: {expected}" in problems("dev-trusted", set={"workloads": workloads, "spokes": {}})


LLAMA = "llama-3-1-8b"


@pytest.mark.parametrize(
    "spokes, expected",
    [
        ({"dev-cloud": {LLAMA: {"retiringPcr08": ["ABC"]}}}, f"spokes.dev-cloud.{LLAMA}.retiringPcr08[0]: 'ABC' is not a PCR value (64 lowercase hex characters, SHA-256 bank)"),
        ({"dev-cloud": {LLAMA: {"servingHostnames": ["llm_1.example.com"]}}}, f"spokes.dev-cloud.{LLAMA}.servingHostnames[0]: 'llm_1.example.com' is not a DNS name"),
        (
            {"dev-cloud": {LLAMA: {"servingHostnames": ["llm.example.com"]}}, "dev-cloud-eu": {LLAMA: {"servingHostnames": ["llm.example.com"]}}},
            f"spokes.dev-cloud-eu.{LLAMA}.servingHostnames[0]: llm.example.com is already served by dev-cloud/{LLAMA}",
        ),
        ({"prod-cloud": {}}, "spokes.prod-cloud: is not a cloud stack of dev: name it dev-cloud or dev-cloud-<name> (<name> lowercase letters, digits and '-', at most 12)"),
        ({"dev-cloud-West": {}}, "spokes.dev-cloud-West: is not a cloud stack of dev"),
        ({"dev-cloud-abcdefghijklm": {}}, "spokes.dev-cloud-abcdefghijklm: is not a cloud stack of dev"),
        ({"dev-cloud": {"mistral": {}}}, f"spokes.dev-cloud.mistral: is not a declared workload (declared: {LLAMA})"),
    ],
)
def test_spoke_errors_are_one_line_naming_the_key(spokes, expected):
    found = problems("dev-trusted", set={"workloads": workload(), "spokes": spokes})
    assert any(line.startswith(f"dev-trusted: {expected}") for line in found), found


def test_a_resource_may_not_take_the_name_of_a_serving_key():
    resources = with_resource(name="llama-3-1-8b-tls-key")
    assert problems("dev-trusted", set={"kbsResources": resources, "kbsSecrets.llama-3-1-8b-tls-key": "x"}) == [
        "dev-trusted: kbsResources[2].name: 'llama-3-1-8b-tls-key' is the name of dev-cloud/llama-3-1-8b's TLS serving key; pick another"
    ]


def test_the_client_ca_must_be_a_pem_certificate():
    assert problems("dev-trusted", set={"inferenceTls.clientCaCertificate": "not a certificate"}) == [
        "dev-trusted: inferenceTls.clientCaCertificate: is not a PEM certificate"
    ]


def test_global_retiring_pcr08_moved_to_each_workload():
    assert problems("dev-trusted", set={"referenceValues.pcrs.retiringPcr08": ["00" * 32]}) == [
        "dev-trusted: referenceValues.pcrs.retiringPcr08: unknown key"
    ]


PIN = "/opt/nvidia/nvidia_entrypoint.sh"


def test_a_workload_receiving_secrets_without_a_pinned_process_is_a_config_error():
    # Fail closed: with an unpinned process the host chooses what runs beside the released secrets.
    expected = (
        "dev-trusted: workloads[0].args: is unset, but workload llama-3-1-8b receives KBS resources: pin its image's process with "
        f"`python -m scripts.pin_workload {IMAGE} --env dev --workload llama-3-1-8b --write`"
    )
    runs = {"spokes": {"dev-cloud": {"llama-3-1-8b": {}}}}
    assert problems("dev-trusted", set={"workloads": workload(), **runs}) == [expected]
    # A serving key is a KBS resource too.
    serves = {"spokes": {"dev-cloud": {"llama-3-1-8b": {"servingHostnames": ["llm.example.com"]}}}}
    assert problems("dev-trusted", set={"workloads": workload(resources=[]), **serves}) == [expected]
    assert loads("dev-trusted", set={"workloads": workload(args=[PIN]), **runs}).workloads[0].args == [PIN]


def test_a_workload_receiving_nothing_may_leave_its_process_to_the_image():
    assert loads("dev-trusted", set={"workloads": workload(resources=[]), "spokes": {"dev-cloud": {"llama-3-1-8b": {}}}}).workloads[0].args is None


def loads(stack: str, **edits):
    config, secret_keys = example_config(stack, **edits)
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("confidential-ai:")}
    return load(stack, raw, [k.split(":", 1)[1] for k in secret_keys])


def test_an_unpinned_process_stops_the_stack_before_any_resource(runner):
    config, secret_keys = example_config("dev-trusted", delete=("workloads.0.args",))
    with pytest.raises(ConfigError) as err:
        runner("dev-trusted", config, secret_keys)
    assert err.value.registered == []
    assert [line.split(": ")[1] for line in err.value.lines()] == ["workloads[0].args"]


def test_a_load_balancer_kbs_on_8080_is_accepted():
    kbs = loads("dev-trusted", set={"kbs.exposure": "loadBalancer", "kbs.url": "https://kbs.trusted-dev.example.com:8080"}).kbs
    assert (kbs.exposure, kbs.url) == ("loadBalancer", "https://kbs.trusted-dev.example.com:8080")


def test_a_resource_released_on_cpu_evidence_may_say_min_gpus_0():
    config = loads("dev-trusted", set={"kbsResources": with_resource(minGpus=0), "kbsSecrets.extra": "x"})
    assert config.kbs_resources[2].required_gpus == 0


@pytest.mark.parametrize(
    "field, problem",
    [
        ("keyResource", "'ngc-api-key' is not in this workload's resources; list it there so KBS releases it to the workload"),
        ("decryptorImage", "is the workload's own image; the decryptor is a separate image (images/model-decryptor)"),
    ],
)
def test_an_encrypted_model_needs_its_key_released_and_a_decryptor_of_its_own(field, problem):
    config, _ = example_config("prod-trusted")
    llama_ft = json.loads(config["confidential-ai:workloads"])[1]
    value = {"keyResource": "ngc-api-key", "decryptorImage": llama_ft["image"]}[field]
    assert problems("prod-trusted", set={f"workloads.1.encryptedModel.{field}": value}) == [
        f"prod-trusted: workloads[1].encryptedModel.{field}: {problem}"
    ]


def test_a_model_key_with_a_trailing_newline_is_refused_and_other_secrets_are_taken_as_given():
    [line] = problems("prod-trusted", set={"kbsSecrets.model-key": "k3y\n"})
    assert line.startswith("prod-trusted: kbsSecrets.model-key: is a model key with a newline or spaces around it:")
    # A PEM file ends in a newline; only the raw model key is read without stripping.
    assert CA_PEM.endswith("\n")
    config = loads("dev-trusted", set={"kbsResources": with_resource(), "kbsSecrets.extra": CA_PEM})
    assert config.kbs_secrets["extra"].get_secret_value() == CA_PEM


def test_a_client_ca_certificate_is_accepted_and_inference_tls_needs_none():
    assert loads("dev-trusted", set={"inferenceTls.clientCaCertificate": CA_PEM}).inference_tls.client_ca_certificate == CA_PEM
    assert loads("dev-trusted", set={"inferenceTls.validityHours": 48}).inference_tls.client_ca_certificate is None


def test_a_provided_certificate_is_refused_while_the_stack_makes_its_own():
    config, secret_keys = example_config("dev-trusted", set={"kbsTlsCertificate": "-----BEGIN CERTIFICATE-----"})
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("confidential-ai:")}
    with pytest.raises(ConfigError) as err:
        load("dev-trusted", raw, [*(k.split(":", 1)[1] for k in secret_keys), "kbsTlsCertificate"])
    assert err.value.lines() == ["dev-trusted: kbsTlsCertificate: is only used when kbs.tls.mode is provided"]
