"""The shipped Rego, evaluated by a real engine (regopy) against Trustee 1.2 shaped evidence.

Inputs start from ../shared/attestation-examples and are mutated one claim at a time; reference
values come from the rendered RVPS document, read through the examples' `query_reference_value` shim.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any

import pytest
from regopy import Interpreter

from components.initdata import render_agent_policy, render_initdata
from components.trustee import render
from stacks.config.trusted import KbsResource, ReferenceValues
from tests.conftest import SHARED
from tests.trusted_stack import example_trusted as run_example

EXAMPLES = SHARED / "attestation-examples"
# Builtin groups Trustee's regorus is built without (openshift/trustee v1.2.0 Cargo.toml).
FORBIDDEN_BUILTINS = re.compile(r"\b(crypto|hex|semver|glob|yaml|uuid)\.[a-z_0-9.]+\(")


def example(name: str) -> dict[str, Any]:
    path = EXAMPLES / name
    if not path.is_file():
        pytest.skip(f"attestation example {path} not found (clone outside the workspace)")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def cpu_input() -> dict[str, Any]:
    return example("cpu_input.json")


@pytest.fixture(scope="module")
def gpu_input() -> dict[str, Any]:
    return example("gpu_input.json")


@pytest.fixture(scope="module")
def ear() -> dict[str, Any]:
    return example("ear_cpu_gpu.json")


@pytest.fixture(scope="module")
def reference_values(cpu_input) -> ReferenceValues:
    """What the trusted side would configure for the example pod VM."""
    tpm = cpu_input["az-snp-vtpm"]["tpm"]
    return ReferenceValues.model_validate(
        {
            "expiration": "2027-01-01T00:00:00Z",
            "pcrs": {f"pcr{n}": [tpm[f"pcr{n}"]] for n in ("03", "09", "11", "12")},
            "minimumTcb": {"bootloader": 3, "tee": 0, "snp": 22, "microcode": 210},
            "allowedDriverVersions": ["570.124.06", "570.133.20"],
            "allowedVbiosVersions": ["96.00.9f.00.04"],
        }
    )


def rvps_data(values: ReferenceValues, pcr8: str) -> dict[str, Any]:
    """`data.rv` for the shim: the values of the rendered RVPS document, decoded as RVPS would."""
    records = json.loads(render.reference_values_document(values, pcr8))
    return {name: json.loads(base64.urlsafe_b64decode(record))["value"] for name, record in records.items()}


def evaluate(policy: str, query: str, input_: dict[str, Any], data: dict[str, Any]) -> Any:
    interpreter = Interpreter()
    interpreter.add_module("policy.rego", policy)
    interpreter.add_module("shim.rego", (EXAMPLES / "shim.rego").read_text())
    interpreter.add_data_json(json.dumps(data))
    interpreter.set_input(input_)
    # Bound to a variable: a bare query whose value is false reads as "undefined".
    output = interpreter.query(f"result := {query}")
    assert output.ok(), str(output)
    return json.loads(str(output))["bindings"]["result"]


AFFIRMING_CPU = {"executables": 3, "hardware": 2, "configuration": 2}
AFFIRMING_GPU = {"executables": 3, "hardware": 2, "configuration": 2}


def tiers(claims: dict[str, int]) -> dict[str, int]:
    return {k: claims[k] for k in ("executables", "hardware", "configuration")}


# --- CPU attestation policy (az-snp-vtpm) ----------------------------------------------------


@pytest.fixture(scope="module")
def cpu_claims(cpu_input, reference_values):
    data = {"rv": rvps_data(reference_values, cpu_input["az-snp-vtpm"]["tpm"]["pcr08"])}

    def claims(edit=lambda evidence: None, rv_edit=lambda rv: None) -> dict[str, int]:
        input_ = copy.deepcopy(cpu_input)
        edit(input_)
        rv = copy.deepcopy(data)
        rv_edit(rv["rv"])
        return tiers(evaluate(render.cpu_policy(), "data.policy.trust_claims", input_, rv))

    return claims


def snp(field: str, value: Any):
    def edit(evidence: dict[str, Any]) -> None:
        evidence["az-snp-vtpm"][field] = value

    return edit


def pcr(n: str, value: str):
    def edit(evidence: dict[str, Any]) -> None:
        evidence["az-snp-vtpm"]["tpm"][f"pcr{n}"] = value

    return edit


@pytest.fixture(scope="module")
def example_trusted():
    return run_example("dev-trusted")


def test_cpu_genuine_guest_affirms(cpu_claims):
    assert cpu_claims() == AFFIRMING_CPU


def test_cpu_debug_enabled_guest_is_not_configuration_approved(cpu_claims):
    assert cpu_claims(snp("policy_debug_allowed", "true"))["configuration"] == 36


def test_cpu_migration_agent_allowed_is_not_configuration_approved(cpu_claims):
    assert cpu_claims(snp("policy_migrate_ma", "true"))["configuration"] == 36


@pytest.mark.parametrize("n", ["03", "08", "09", "11", "12"])
def test_cpu_unexpected_pcr_is_unrecognised_executables(cpu_claims, n):
    assert cpu_claims(pcr(n, "ee" * 32))["executables"] == 33


@pytest.mark.parametrize("component, value", [("snp", "21"), ("microcode", "209"), ("bootloader", "2")])
def test_cpu_tcb_below_minimum_is_unrecognised_hardware(cpu_claims, component, value):
    assert cpu_claims(snp(f"reported_tcb_{component}", value))["hardware"] == 97


def test_cpu_missing_tcb_minimum_fails_closed(cpu_claims):
    assert cpu_claims(rv_edit=lambda rv: rv.pop("snp_min_tcb_snp"))["hardware"] == 97


def test_cpu_evidence_of_another_tee_fails_every_claim(cpu_claims):
    def as_sample(evidence):
        evidence["sample"] = evidence.pop("az-snp-vtpm")

    assert cpu_claims(as_sample) == {"executables": 33, "hardware": 97, "configuration": 36}


# --- GPU attestation policy (NRAS claims) ----------------------------------------------------


@pytest.fixture(scope="module")
def gpu_claims(gpu_input, reference_values):
    data = {"rv": rvps_data(reference_values, "00" * 32)}

    def claims(edit=lambda nvidia: None, rv_edit=lambda rv: None) -> dict[str, int]:
        input_ = copy.deepcopy(gpu_input)
        edit(input_["nvidia"])
        rv = copy.deepcopy(data)
        rv_edit(rv["rv"])
        return tiers(evaluate(render.gpu_policy(), "data.policy.trust_claims", input_, rv))

    return claims


def claim(name: str, value: Any, within: str | None = None):
    def edit(nvidia: dict[str, Any]) -> None:
        (nvidia[within] if within else nvidia)[name] = value

    return edit


def test_gpu_genuine_h100_affirms(gpu_claims):
    assert gpu_claims() == AFFIRMING_GPU


def test_gpu_policy_reads_only_claims_nras_sends(gpu_input):
    """A claim NRAS never emits (e.g. `x-nvidia-device-type`) would make every real GPU fail."""
    policy = "\n".join(line for line in render.gpu_policy().splitlines() if not line.lstrip().startswith("#"))
    read = set(re.findall(r'claims\["([a-z0-9-]+)"\]', policy)) | set(re.findall(r"claims\.([a-z_]+)\b", policy))
    assert read, "the scan found no claim reads"
    assert read <= set(gpu_input["nvidia"]), f"the GPU policy reads claims NRAS does not send: {read - set(gpu_input['nvidia'])}"


def test_gpu_vbios_versions_compare_case_insensitively(gpu_claims):
    # The reference lists 96.00.9f.00.04; NRAS reports 96.00.9F.00.04.
    assert gpu_claims()["configuration"] == 2


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(claim("dbgstat", "enabled"), id="debug-enabled"),
        pytest.param(claim("secboot", False), id="secure-boot-off"),
        pytest.param(claim("secboot", "true"), id="secure-boot-not-a-boolean"),
        pytest.param(claim("x-nvidia-gpu-driver-version", "535.104.05"), id="driver-not-listed"),
        pytest.param(claim("x-nvidia-gpu-vbios-version", "96.00.74.00.01"), id="vbios-not-listed"),
    ],
)
def test_gpu_unapproved_configuration_is_not_affirming(gpu_claims, edit):
    assert gpu_claims(edit)["configuration"] == 36


def test_gpu_missing_allowed_versions_fails_closed(gpu_claims):
    assert gpu_claims(rv_edit=lambda rv: rv.pop("allowed_driver_versions"))["configuration"] == 36


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(claim("measres", "fail"), id="measurements-mismatch"),
        pytest.param(claim("x-nvidia-gpu-driver-rim-signature-verified", False), id="driver-rim-signature"),
        pytest.param(claim("x-nvidia-gpu-vbios-rim-fetched", False), id="vbios-rim-missing"),
        pytest.param(claim("x-nvidia-cert-status", "revoked", "x-nvidia-gpu-driver-rim-cert-chain"), id="driver-rim-chain-revoked"),
    ],
)
def test_gpu_failed_rim_check_is_unrecognised_executables(gpu_claims, edit):
    assert gpu_claims(edit)["executables"] == 33


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(claim("x-nvidia-gpu-attestation-report-nonce-match", False), id="nonce-mismatch"),
        pytest.param(claim("x-nvidia-gpu-attestation-report-signature-verified", False), id="report-signature"),
        pytest.param(claim("x-nvidia-cert-ocsp-status", "revoked", "x-nvidia-gpu-attestation-report-cert-chain"), id="device-chain-revoked"),
    ],
)
def test_gpu_unverified_report_is_unrecognised_hardware(gpu_claims, edit):
    assert gpu_claims(edit)["hardware"] == 97


# --- Resource policy (KBS release decision) --------------------------------------------------

RESOURCES = [
    KbsResource(name="ngc-api-key", secret="ngc-api-key", key="api-key", gpu_gated=True),
    KbsResource(name="registry", secret="registry-auth", key="auth.json", gpu_gated=False),
    KbsResource(name="big-model-key", secret="big-model", key="key", gpu_gated=True, min_gpus=2),
]
GPU_PATH = ["default", "ngc-api-key", "api-key"]
CPU_PATH = ["default", "registry-auth", "auth.json"]
TWO_GPU_PATH = ["default", "big-model", "key"]


def allowed(token: dict[str, Any], path: list[str], resources=RESOURCES, plugin: str = "resource") -> bool:
    data = {"plugin": plugin, "resource-path": path, "query": {}}
    return evaluate(render.resource_policy(resources), "data.policy.allow", token, data) is True


def edited(ear: dict[str, Any], edit) -> dict[str, Any]:
    token = copy.deepcopy(ear)
    edit(token["submods"])
    return token


def test_cpu_and_gpu_affirming_releases_gpu_resource(ear):
    assert allowed(ear, GPU_PATH)


def test_cpu_only_evidence_does_not_release_gpu_resource(ear):
    assert not allowed(edited(ear, lambda s: s.pop("gpu0")), GPU_PATH)


def test_cpu_only_evidence_releases_cpu_only_resource(ear):
    assert allowed(edited(ear, lambda s: s.pop("gpu0")), CPU_PATH)


def test_unknown_resource_is_denied(ear):
    assert not allowed(ear, ["default", "kbsres1", "key1"])
    assert not allowed(ear, ["default", "ngc-api-key"])
    assert not allowed(ear, ["other", "ngc-api-key", "api-key"])


def test_a_declared_path_under_another_plugin_is_denied(ear):
    assert not allowed(ear, CPU_PATH, plugin="nebula-ca")


def test_nothing_is_released_without_declared_resources(ear):
    assert not allowed(ear, GPU_PATH, resources=[])


def test_failing_gpu_blocks_even_cpu_only_resource(ear):
    def contraindicated(submods):
        submods["gpu0"]["ear.status"] = "contraindicated"
        submods["gpu0"]["ear.trustworthiness-vector"]["configuration"] = 36

    assert not allowed(edited(ear, contraindicated), CPU_PATH)


def test_gpu_with_failing_claim_under_affirming_status_is_denied(ear):
    def hardware_unrecognised(submods):
        submods["gpu0"]["ear.trustworthiness-vector"]["hardware"] = 97

    assert not allowed(edited(ear, hardware_unrecognised), GPU_PATH)


def test_cpu_warning_denies_everything(ear):
    def warning(submods):
        submods["cpu0"]["ear.status"] = "warning"
        submods["cpu0"]["ear.trustworthiness-vector"]["configuration"] = 36

    assert not allowed(edited(ear, warning), CPU_PATH)
    assert not allowed(edited(ear, warning), GPU_PATH)


def test_missing_cpu_submodule_denies(ear):
    assert not allowed(edited(ear, lambda s: s.pop("cpu0")), GPU_PATH)


def test_cpu_evidence_must_be_azure_snp(ear):
    def other_tee(submods):
        evidence = submods["cpu0"]["ear.veraison.annotated-evidence"]
        evidence["sample"] = evidence.pop("az-snp-vtpm")

    assert not allowed(edited(ear, other_tee), CPU_PATH)


def test_gpu_submodule_without_nvidia_evidence_does_not_count(ear):
    def no_nvidia(submods):
        submods["gpu0"]["ear.veraison.annotated-evidence"] = {"sample": {}}

    assert not allowed(edited(ear, no_nvidia), GPU_PATH)


def test_resource_needing_two_gpus(ear):
    assert not allowed(ear, TWO_GPU_PATH)
    assert allowed(edited(ear, lambda s: s.update(gpu1=copy.deepcopy(s["gpu0"]))), TWO_GPU_PATH)


# --- End to end: the dev stack's own documents -----------------------------------------------


def test_dev_reference_values_affirm_a_guest_measuring_the_dev_initdata(cpu_input, example_trusted):
    """The PCR 8 the guest measures from the published initdata is what RVPS holds."""
    config, run = example_trusted
    reference = run.named("kbs-rvps-reference-values", "kubernetes:core/v1:ConfigMap").inputs["data"]["reference_value"]
    rv = {name: json.loads(base64.urlsafe_b64decode(record))["value"] for name, record in json.loads(reference).items()}
    initdata = render_initdata(config.kbs.url, run.outputs["kbsCaCert"], config.agent_policy.denied_requests)
    evidence = copy.deepcopy(cpu_input)
    tpm = evidence["az-snp-vtpm"]["tpm"]
    for n in ("03", "09", "11", "12"):
        tpm[f"pcr{n}"] = getattr(config.reference_values.pcrs, f"pcr{n}")[0]
    tpm["pcr08"] = initdata.pcr8
    policy = run.named("kbs-attestation-policy-cpu", "kubernetes:core/v1:ConfigMap").inputs["data"]["default_cpu.rego"]
    assert tiers(evaluate(policy, "data.policy.trust_claims", evidence, {"rv": rv}))["executables"] == 3


# --- What the shipped Rego may use -----------------------------------------------------------


def shipped_policies(example_trusted) -> dict[str, str]:
    config, run = example_trusted
    policies = {
        name: next(iter(run.named(f"kbs-{name}", "kubernetes:core/v1:ConfigMap").inputs["data"].values()))
        for name in ("attestation-policy-cpu", "attestation-policy-gpu", "resource-policy")
    }
    policies["agent-policy"] = render_agent_policy(config.agent_policy.denied_requests)
    return policies


def test_shipped_rego_uses_only_builtins_trustee_has(example_trusted):
    for name, text in shipped_policies(example_trusted).items():
        assert not FORBIDDEN_BUILTINS.findall(text), f"{name} calls a builtin regorus lacks in Trustee"


def test_forbidden_builtin_scan_catches_a_call():
    assert FORBIDDEN_BUILTINS.findall('x := semver.compare("1.0.0", v)\ny := crypto.sha256(z)')


