"""The shipped Rego, evaluated by two engines (regorus, as Trustee runs it, and regopy) against Trustee 1.2 evidence.

Inputs start from ../shared/attestation-examples and from the upstream-derived fixtures in
tests/fixtures/attestation, and are mutated one claim at a time; reference values come from the
rendered RVPS document, read through the examples' `query_reference_value` shim.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from components.initdata import InitdataArgs, render_agent_policy, render_initdata
from components.trustee import render
from stacks.config.trusted import ReferenceValues
from stacks.trusted import agent_policy_args, reference_value_set
from tests.conftest import SHARED
from tests.fixtures.attestation.derive import nras_policy_input
from tests.rego_engines import ENGINES
from tests.rego_engines import evaluate as evaluate_modules
from tests.trusted_stack import example_trusted as run_example

EXAMPLES = SHARED / "attestation-examples"
# Derived from upstream code and test data (tests/fixtures/attestation/SOURCES.md).
UPSTREAM = Path(__file__).resolve().parent / "fixtures" / "attestation"
# PCRs of the pod VM image pinned in config (PCR 8 comes from the initdata).
CONFIGURED_PCRS = ("03", "04", "07", "09", "11", "12")
# Another paravisor's SNP launch measurement (standard base64 of 48 bytes).
OTHER_MEASUREMENT = base64.b64encode(bytes(range(48))).decode()
# Builtins regorus registers only under a cargo feature Trustee does not enable: Trustee builds it
# with regex, base64, time and std only (confidential-containers/trustee Cargo.toml at
# 78962cd416dcc8a32f9377e0066a28fe21420f69; openshift/trustee v1.2.0 likewise), and microsoft/regorus
# src/builtins/*.rs at 39f535e91392bc77a5f8367e35466be2366a2738 gates these.
FORBIDDEN_BUILTINS = re.compile(
    r"\b((crypto|hex|semver|glob|yaml|uuid|base64url|urlquery|net|http|graph|opa)\.[a-z_0-9.]+|walk|json\.(patch|match_schema|verify_schema))\("
)


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
            "pcrs": {f"pcr{n}": [tpm[f"pcr{n}"]] for n in CONFIGURED_PCRS},
            "minimumTcb": {"bootloader": 3, "tee": 0, "snp": 22, "microcode": 210},
            "allowedDriverVersions": ["570.124.06", "570.133.20"],
            "allowedVbiosVersions": ["96.00.9f.00.04"],
            "measurements": [OTHER_MEASUREMENT, cpu_input["az-snp-vtpm"]["measurement"]],
        }
    )


def rvps_data(values: ReferenceValues, pcr8: str) -> dict[str, Any]:
    """`data.rv` for the shim: the values of the rendered RVPS document, decoded as RVPS would."""
    records = json.loads(render.reference_values_document(reference_value_set(values), [pcr8]))
    return {name: json.loads(base64.urlsafe_b64decode(record))["value"] for name, record in records.items()}


def evaluate(policy: str, query: str, input_: dict[str, Any], data: dict[str, Any]) -> Any:
    """`query` under regorus and regopy with the examples' `query_reference_value` shim; both must agree."""
    return evaluate_modules({"policy.rego": policy, "shim.rego": (EXAMPLES / "shim.rego").read_text()}, query, input_, data)


AFFIRMING_CPU = {"executables": 3, "hardware": 2, "configuration": 2}
AFFIRMING_GPU = {"executables": 3, "hardware": 2, "configuration": 2}


def tiers(claims: dict[str, int]) -> dict[str, int]:
    return {k: claims[k] for k in ("executables", "hardware", "configuration")}


# --- CPU attestation policy (az-snp-vtpm) ----------------------------------------------------


@pytest.fixture(scope="module")
def cpu_claims(cpu_input, reference_values):
    def claims(edit=lambda evidence: None, rv_edit=lambda rv: None, values: ReferenceValues = reference_values) -> dict[str, int]:
        input_ = copy.deepcopy(cpu_input)
        edit(input_)
        rv = rvps_data(values, cpu_input["az-snp-vtpm"]["tpm"]["pcr08"])
        rv_edit(rv)
        return tiers(evaluate(render.cpu_policy(pin_measurement=bool(values.measurements)), "data.policy.trust_claims", input_, {"rv": rv}))

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


@pytest.mark.parametrize("n", ["03", "04", "07", "08", "09", "11", "12"])
def test_cpu_unexpected_pcr_is_unrecognised_executables(cpu_claims, n):
    assert cpu_claims(pcr(n, "ee" * 32))["executables"] == 33


def test_cpu_pcr4_and_pcr7_are_reference_values_from_config(reference_values, cpu_input):
    rv = rvps_data(reference_values, "00" * 32)
    assert rv["snp_pcr04"] == reference_values.pcrs.pcr04 == [cpu_input["az-snp-vtpm"]["tpm"]["pcr04"]]
    assert rv["snp_pcr07"] == reference_values.pcrs.pcr07 == [cpu_input["az-snp-vtpm"]["tpm"]["pcr07"]]


def test_cpu_13_pcr_quote_is_unrecognised_executables(cpu_claims):
    """A quote over 13 PCRs (names pcr00..pcr12) that still carries every pinned value (PCR 3/4/7/8/9/11/12)."""

    def thirteen_pcrs(evidence):
        tpm = evidence["az-snp-vtpm"]["tpm"]
        evidence["az-snp-vtpm"]["tpm"] = {f"pcr{i:02}": tpm[f"pcr{i:02}"] for i in range(13)}

    assert cpu_claims(thirteen_pcrs)["executables"] == 33


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda tpm: tpm.update(pcr24="00" * 32), id="a-25th-pcr"),
        pytest.param(lambda tpm: tpm.update(PCR23=tpm.pop("pcr23")), id="a-misnamed-pcr"),
        pytest.param(lambda tpm: tpm.pop("pcr17"), id="one-pcr-missing"),
    ],
)
def test_cpu_quote_not_over_exactly_pcr0_to_23_is_unrecognised_executables(cpu_claims, edit):
    assert cpu_claims(lambda evidence: edit(evidence["az-snp-vtpm"]["tpm"]))["executables"] == 33


def test_cpu_measurement_not_in_configured_list_is_unrecognised_executables(cpu_claims):
    assert cpu_claims(snp("measurement", base64.b64encode(bytes(48)).decode()))["executables"] == 33


def test_cpu_pinned_measurement_missing_from_rvps_fails_closed(cpu_claims):
    assert cpu_claims(rv_edit=lambda rv: rv.pop("measurement"))["executables"] == 33


def test_cpu_without_measurement_list_any_measurement_passes(cpu_claims, reference_values):
    unpinned = reference_values.model_copy(update={"measurements": []})
    assert "measurement" not in rvps_data(unpinned, "00" * 32)
    assert cpu_claims(snp("measurement", OTHER_MEASUREMENT[::-1]), values=unpinned) == AFFIRMING_CPU


@pytest.mark.parametrize("component, value", [("snp", "21"), ("microcode", "209"), ("bootloader", "2")])
def test_cpu_tcb_below_minimum_is_unrecognised_hardware(cpu_claims, component, value):
    assert cpu_claims(snp(f"reported_tcb_{component}", value))["hardware"] == 97


@pytest.mark.parametrize("value", ["", "0x18", 24, None])
def test_cpu_malformed_tcb_report_is_unrecognised_hardware(cpu_claims, value):
    assert cpu_claims(snp("reported_tcb_snp", value))["hardware"] == 97


def test_cpu_tee_tcb_below_its_minimum_is_unrecognised_hardware(cpu_claims):
    # The example reports TEE SVN 0, the configured minimum; a minimum of 1 must refuse it.
    assert cpu_claims(rv_edit=lambda rv: rv.update(snp_min_tcb_tee=1))["hardware"] == 97


def test_cpu_tcb_equal_to_its_minimum_is_genuine_hardware(cpu_claims, cpu_input):
    reported = int(cpu_input["az-snp-vtpm"]["reported_tcb_microcode"])
    assert cpu_claims(rv_edit=lambda rv: rv.update(snp_min_tcb_microcode=reported))["hardware"] == 2


def test_cpu_measurement_reference_value_not_a_list_fails_closed(cpu_claims, cpu_input):
    """A malformed RVPS record holding the accepted measurement in an object: Rego's `in` would look
    through the object's values, so only the list check keeps it from approving."""
    measurement = cpu_input["az-snp-vtpm"]["measurement"]
    assert cpu_claims(rv_edit=lambda rv: rv.update(measurement={"accepted": measurement}))["executables"] == 33


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
        pytest.param(claim("x-nvidia-gpu-driver-version", 570.12406), id="driver-version-not-a-string"),
        pytest.param(claim("x-nvidia-gpu-vbios-version", None), id="vbios-version-null"),
    ],
)
def test_gpu_unapproved_configuration_is_not_affirming(gpu_claims, edit):
    assert gpu_claims(edit)["configuration"] == 36


@pytest.mark.parametrize("name", ["allowed_driver_versions", "allowed_vbios_versions"])
def test_gpu_missing_allowed_versions_fails_closed(gpu_claims, name):
    assert gpu_claims(rv_edit=lambda rv: rv.pop(name))["configuration"] == 36


def test_gpu_allowed_versions_reference_value_not_a_list_fails_closed(gpu_claims, gpu_input):
    """A malformed RVPS record holding the driver version in an object: a comprehension over it would
    read its values, so only the list check keeps it from approving."""
    driver = gpu_input["nvidia"]["x-nvidia-gpu-driver-version"]
    assert gpu_claims(rv_edit=lambda rv: rv.update(allowed_driver_versions={"approved": driver}))["configuration"] == 36


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


# Each claim NRAS must affirm, alone set to what a failing GPU reports, fails its tier (the claims
# the tests above already break alone are not repeated).
HARDWARE_CLAIMS = [
    "x-nvidia-gpu-arch-check",
    "x-nvidia-overall-att-result",
    "x-nvidia-gpu-attestation-report-parsed",
    "x-nvidia-gpu-attestation-report-cert-chain-fwid-match",
]
EXECUTABLES_CLAIMS = [
    "x-nvidia-gpu-driver-rim-fetched",
    "x-nvidia-gpu-driver-rim-schema-validated",
    "x-nvidia-gpu-driver-rim-version-match",
    "x-nvidia-gpu-driver-rim-measurements-available",
    "x-nvidia-gpu-vbios-rim-schema-validated",
    "x-nvidia-gpu-vbios-rim-signature-verified",
    "x-nvidia-gpu-vbios-rim-version-match",
    "x-nvidia-gpu-vbios-rim-measurements-available",
    "x-nvidia-gpu-vbios-index-no-conflict",
]


@pytest.mark.parametrize("name", HARDWARE_CLAIMS)
def test_gpu_each_false_report_claim_is_unrecognised_hardware(gpu_claims, name):
    assert gpu_claims(claim(name, False)) == {**AFFIRMING_GPU, "hardware": 97}


@pytest.mark.parametrize("name", EXECUTABLES_CLAIMS)
def test_gpu_each_false_rim_claim_is_unrecognised_executables(gpu_claims, name):
    assert gpu_claims(claim(name, False)) == {**AFFIRMING_GPU, "executables": 33}


def test_gpu_invalid_vbios_rim_certificate_chain_is_unrecognised_executables(gpu_claims):
    assert gpu_claims(claim("x-nvidia-cert-status", "invalid", "x-nvidia-gpu-vbios-rim-cert-chain")) == {**AFFIRMING_GPU, "executables": 33}


# --- Upstream-shaped evidence (tests/fixtures/attestation) -----------------------------------


def upstream(name: str) -> dict[str, Any]:
    return json.loads((UPSTREAM / name).read_text())


@pytest.fixture(scope="module")
def upstream_cpu() -> dict[str, Any]:
    return upstream("az_snp_vtpm_claims.json")


@pytest.fixture(scope="module")
def upstream_gpu() -> dict[str, Any]:
    return nras_policy_input(upstream("nras_gpu_claims.json"))


@pytest.fixture(scope="module")
def upstream_values(upstream_cpu, upstream_gpu) -> ReferenceValues:
    """What an operator would configure after reading this pod VM's values (docs/trusted-cluster.md)."""
    evidence = upstream_cpu["az-snp-vtpm"]
    return ReferenceValues.model_validate(
        {
            "expiration": "2027-01-01T00:00:00Z",
            "pcrs": {f"pcr{n}": [evidence["tpm"][f"pcr{n}"]] for n in CONFIGURED_PCRS},
            "minimumTcb": {c: int(evidence[f"reported_tcb_{c}"]) for c in ("bootloader", "tee", "snp", "microcode")},
            "allowedDriverVersions": [upstream_gpu["nvidia"]["x-nvidia-gpu-driver-version"]],
            "allowedVbiosVersions": [upstream_gpu["nvidia"]["x-nvidia-gpu-vbios-version"].lower()],
            "measurements": [evidence["measurement"]],
        }
    )


def upstream_tiers(policy: str, input_: dict[str, Any], values: ReferenceValues, pcr8: str) -> dict[str, int]:
    return evaluate(policy, "data.policy.trust_claims", input_, {"rv": rvps_data(values, pcr8)})


def test_upstream_az_snp_vtpm_evidence_affirms(upstream_cpu, upstream_values):
    """Trustee's own genuine evidence, turned into claims as its verifier does, affirms once its values are configured."""
    claims = upstream_tiers(render.cpu_policy(pin_measurement=bool(upstream_values.measurements)), upstream_cpu, upstream_values, upstream_cpu["init_data"])
    assert tiers(claims) == AFFIRMING_CPU


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda e: e.update(tpm={f"pcr{i:02}": e["tpm"][f"pcr{i:02}"] for i in range(13)}), id="13-pcr-quote"),
        pytest.param(lambda e: e["tpm"].update(pcr04="ee" * 32), id="pcr4-changed"),
        pytest.param(lambda e: e["tpm"].update(pcr07="ee" * 32), id="pcr7-changed"),
        pytest.param(lambda e: e.update(measurement=OTHER_MEASUREMENT), id="measurement-not-listed"),
    ],
)
def test_upstream_az_snp_vtpm_bypasses_are_unrecognised_executables(upstream_cpu, upstream_values, edit):
    evidence = copy.deepcopy(upstream_cpu)
    edit(evidence["az-snp-vtpm"])
    claims = upstream_tiers(render.cpu_policy(pin_measurement=bool(upstream_values.measurements)), evidence, upstream_values, upstream_cpu["init_data"])
    assert claims["executables"] == 33 and claims["hardware"] == 2 and claims["configuration"] == 2


def test_nras_v3_claims_affirm(upstream_gpu, upstream_values):
    assert tiers(upstream_tiers(render.gpu_policy(), upstream_gpu, upstream_values, "00" * 32)) == AFFIRMING_GPU


def test_gpu_policy_reads_only_claims_the_nras_v3_claim_set_has(upstream_gpu):
    policy = "\n".join(line for line in render.gpu_policy().splitlines() if not line.lstrip().startswith("#"))
    read = set(re.findall(r'claims\["([a-z0-9-]+)"\]', policy)) | set(re.findall(r"claims\.([a-z_]+)\b", policy))
    assert read and read <= set(upstream_gpu["nvidia"]), f"not in the NRAS claims v3.0 set: {read - set(upstream_gpu['nvidia'])}"


def test_upstream_ear_token_vectors_are_what_the_shipped_policies_decide(upstream_values):
    """The EAR fixture's trust vectors are exactly what Trustee would compute with our policies."""
    token = upstream("ear_token.json")
    for name, policy in (("cpu0", render.cpu_policy(pin_measurement=bool(upstream_values.measurements))), ("gpu0", render.gpu_policy())):
        submod = token["submods"][name]
        evidence = submod["ear.veraison.annotated-evidence"]
        decided = upstream_tiers(policy, evidence, upstream_values, evidence.get("init_data", "00" * 32))
        assert decided == submod["ear.trustworthiness-vector"], name


# --- Resource policy (KBS release decision) --------------------------------------------------

# PCR 8 of the example EAR's pod VM (shared/attestation-examples/ear_cpu_gpu.json, cpu0 tpm.pcr08): the
# measured initdata of workload A; workload B is another initdata.
WORKLOAD_A = "3ecb4fec478b0b9272109c6184a93f5535908294ff059d882da7cce1cd5362de"
WORKLOAD_B = "5d1b0e0fbb1c3f7a9e4a6c2d8b0f1e3a5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f"
RESOURCES = [
    render.Release("ngc-api-key", ("default", "ngc-api-key", "api-key"), 1, [WORKLOAD_A, WORKLOAD_B]),
    render.Release("registry", ("default", "registry-auth", "auth.json"), 0, [WORKLOAD_A]),
    render.Release("big-model-key", ("default", "big-model", "key"), 2, [WORKLOAD_A]),
    render.Release("b-model-key", ("default", "b-model", "key"), 1, [WORKLOAD_B]),
]
GPU_PATH = ["default", "ngc-api-key", "api-key"]
CPU_PATH = ["default", "registry-auth", "auth.json"]
TWO_GPU_PATH = ["default", "big-model", "key"]
B_PATH = ["default", "b-model", "key"]


def allowed(token: dict[str, Any], path: list[str], resources=RESOURCES, plugin: str = "resource", policy: str | None = None) -> bool:
    data = {"plugin": plugin, "resource-path": path, "query": {}}
    return evaluate(policy or render.resource_policy(resources), "data.policy.allow", token, data) is True


def measuring(pcr8: str):
    def edit(submods):
        submods["cpu0"]["ear.veraison.annotated-evidence"]["az-snp-vtpm"]["tpm"]["pcr08"] = pcr8

    return edit


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


@pytest.mark.parametrize(
    "path",
    [
        ["default", "ngc-api-key/api-key"],
        ["default", "ngc-api-key", "api-key", "extra"],
        ["default", "ngc-api-key/api-key", ""],
        ["default", "registry-auth", "auth.json:0"],
        [1, 2, 3],
        ["default", 7, "api-key"],
        ["default", "ngc-api-key", 7],
        "default/ngc-api-key/api-key",
        None,
    ],
    ids=["two-segments-joined", "four-segments", "slash-in-segment", "gpus-suffix", "numbers", "number-secret", "number-key", "string", "null"],
)
def test_a_malformed_resource_path_is_denied(ear, path):
    """The grants are looked up by `<secret>/<key>`: no spelling of a path but the exact three segments matches."""
    assert not allowed(ear, path)


@pytest.mark.parametrize("pcr8", [7, None, [WORKLOAD_A], {"sha256": WORKLOAD_A}], ids=["number", "null", "list", "object"])
def test_a_pcr8_that_is_no_string_receives_nothing(ear, pcr8):
    assert not allowed(edited(ear, measuring(pcr8)), CPU_PATH)


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


def test_gpu_whose_status_is_not_affirming_is_denied_though_its_claims_affirm(ear):
    """The EAR status alone: every claim of gpu0 in the affirming tiers, its status `warning`."""

    def warning(submods):
        submods["gpu0"]["ear.status"] = "warning"

    assert ear["submods"]["gpu0"]["ear.trustworthiness-vector"]["hardware"] == 2
    assert not allowed(edited(ear, warning), GPU_PATH)


def test_a_claim_at_the_top_of_the_affirming_tier_still_affirms(ear):
    """AR4SI affirming tiers run 2..31 (draft-ietf-rats-ar4si, trustworthiness claims): 31 affirms."""

    def top_tier(submods):
        submods["gpu0"]["ear.trustworthiness-vector"]["executables"] = 31

    assert allowed(edited(ear, top_tier), GPU_PATH)


def test_a_claim_the_verifier_did_not_make_is_not_affirming(ear):
    """Tier 0 is "no claim" (AR4SI): a GPU whose hardware claim is absent does not affirm."""

    def no_claim(submods):
        submods["gpu0"]["ear.trustworthiness-vector"]["hardware"] = 0

    assert not allowed(edited(ear, no_claim), GPU_PATH)


def test_only_gpu_submodules_count_as_gpus(ear):
    """Another, affirming submodule carrying NVIDIA claims of a second device is not a second GPU
    unless the verifier named it gpu<N>."""

    def other_submodule(submods):
        second = copy.deepcopy(submods["gpu0"])
        second["ear.veraison.annotated-evidence"]["nvidia"]["ueid"] = "987654321"
        submods["cpu1"] = second

    assert not allowed(edited(ear, other_submodule), TWO_GPU_PATH)


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


def test_workload_a_vm_cannot_get_workload_b_secret(ear):
    """Perfect CPU and GPU evidence, but the initdata of workload A: B's secret stays in KBS."""
    assert ear["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["az-snp-vtpm"]["tpm"]["pcr08"] == WORKLOAD_A
    assert not allowed(ear, B_PATH)
    assert allowed(edited(ear, measuring(WORKLOAD_B)), B_PATH)


def test_a_shared_resource_goes_to_each_workload_allowed_it(ear):
    assert allowed(ear, GPU_PATH)
    assert allowed(edited(ear, measuring(WORKLOAD_B)), GPU_PATH)
    assert not allowed(edited(ear, measuring(WORKLOAD_B)), CPU_PATH)


def test_a_pod_vm_measuring_no_workload_gets_nothing(ear):
    other = edited(ear, measuring("ee" * 32))
    assert not [path for path in (GPU_PATH, CPU_PATH, TWO_GPU_PATH, B_PATH) if allowed(other, path)]


def test_missing_pcr8_claim_denies(ear):
    def no_pcr8(submods):
        del submods["cpu0"]["ear.veraison.annotated-evidence"]["az-snp-vtpm"]["tpm"]["pcr08"]

    assert not allowed(edited(ear, no_pcr8), GPU_PATH)


def second_gpu(ueid: str | None):
    """gpu1: gpu0's affirming appraisal, for the GPU whose NVIDIA device identifier is `ueid`."""

    def edit(submods):
        gpu1 = copy.deepcopy(submods["gpu0"])
        gpu1["ear.veraison.annotated-evidence"]["nvidia"]["ueid"] = ueid
        submods["gpu1"] = gpu1

    return edit


def test_resource_needing_two_gpus(ear):
    assert not allowed(ear, TWO_GPU_PATH)
    assert allowed(edited(ear, second_gpu("987654321")), TWO_GPU_PATH)


def test_one_gpus_evidence_sent_twice_does_not_meet_min_gpus_2(ear):
    ueid = ear["submods"]["gpu0"]["ear.veraison.annotated-evidence"]["nvidia"]["ueid"]
    assert not allowed(edited(ear, second_gpu(ueid)), TWO_GPU_PATH)
    assert allowed(edited(ear, second_gpu(ueid)), GPU_PATH)


@pytest.mark.parametrize("ueid", [None, "", 987654321], ids=["null", "empty", "number"])
def test_gpu_without_a_string_ueid_does_not_count(ear, ueid):
    assert not allowed(edited(ear, second_gpu(ueid)), TWO_GPU_PATH)


@pytest.mark.parametrize("source", ["examples", "upstream"])
@pytest.mark.parametrize("stack", ["dev-trusted", "prod-trusted"])
def test_good_cpu_and_gpu_evidence_releases_every_resource_of_the_example_stacks(ear, stack, source):
    token = ear if source == "examples" else upstream("ear_token.json")
    config, run = run_example(stack)
    policy = run.named("kbs-resource-policy", "kubernetes:core/v1:ConfigMap").inputs["data"]["resource-policy.rego"]
    assert any(r.gpu_gated for r in config.kbs_resources)
    for resource in config.kbs_resources:
        path = ["default", resource.secret, resource.key]
        receivers = [w.name for w in config.workloads if resource.name in w.resources]
        # Released to the pod VM of each workload allowed it (its PCR 8), and to no other.
        for workload in receivers:
            assert allowed(edited(token, measuring(run.outputs["spokes"][stack.replace("trusted", "cloud")]["workloads"][workload]["initdataPcr8"])), path, policy=policy), resource.name
        if not receivers:
            assert not allowed(token, path, policy=policy), f"{resource.name} is no workload's, yet released"


def test_upstream_gpu_evidence_sent_twice_does_not_meet_min_gpus_2():
    # Upstream's pod VM measured no initdata (PCR 8 zero): give it workload A's, which may have the resource.
    token = edited(upstream("ear_token.json"), measuring(WORKLOAD_A))
    assert allowed(token, TWO_GPU_PATH) is False
    twice = edited(token, lambda s: s.update(gpu1=copy.deepcopy(s["gpu0"])))
    assert not allowed(twice, TWO_GPU_PATH)
    assert allowed(edited(token, second_gpu("1" + token["submods"]["gpu0"]["ear.veraison.annotated-evidence"]["nvidia"]["ueid"])), TWO_GPU_PATH)


# --- End to end: the dev stack's own documents -----------------------------------------------


def test_dev_reference_values_affirm_a_guest_measuring_the_dev_initdata(cpu_input, example_trusted):
    """The PCR 8 the guest measures from the published initdata is what RVPS holds."""
    config, run = example_trusted
    reference = run.named("kbs-rvps-reference-values", "kubernetes:core/v1:ConfigMap").inputs["data"]["reference_value"]
    rv = {name: json.loads(base64.urlsafe_b64decode(record))["value"] for name, record in json.loads(reference).items()}
    workload = config.workloads[0]
    initdata = render_initdata(InitdataArgs(config.kbs.url, run.outputs["kbsCaCert"], agent_policy_args(config, config.pairs[0]), cloud_stack="dev-cloud"))
    assert initdata.pcr8 == run.outputs["spokes"]["dev-cloud"]["workloads"][workload.name]["initdataPcr8"]
    evidence = copy.deepcopy(cpu_input)
    tpm = evidence["az-snp-vtpm"]["tpm"]
    for n in CONFIGURED_PCRS:
        tpm[f"pcr{n}"] = getattr(config.reference_values.pcrs, f"pcr{n}")[0]
    tpm["pcr08"] = initdata.pcr8
    policy = run.named("kbs-attestation-policy-cpu", "kubernetes:core/v1:ConfigMap").inputs["data"]["default_cpu.rego"]
    assert tiers(evaluate(policy, "data.policy.trust_claims", evidence, {"rv": rv}))["executables"] == 3


def test_the_dev_serving_key_goes_only_to_a_pod_vm_measuring_its_workload_with_its_gpu(ear, example_trusted):
    """The TLS key a model serves with: the dev stack's own resource policy releases it to the workload's
    PCR 8 with CPU and GPU evidence, and to nothing else, so only that workload's pod VM can answer TLS."""
    config, run = example_trusted
    workload, other = config.workloads
    policy = run.named("kbs-resource-policy", "kubernetes:core/v1:ConfigMap").inputs["data"]["resource-policy.rego"]
    pcr8 = run.outputs["spokes"]["dev-cloud"]["workloads"][workload.name]["initdataPcr8"]
    data = {"plugin": "resource", "resource-path": ["default", "inference-tls-keys", workload.name], "query": {}}
    genuine = edited(ear, measuring(pcr8))
    assert evaluate(policy, "data.policy.allow", genuine, data) is True
    other_pcr8 = run.outputs["spokes"]["dev-cloud"]["workloads"][other.name]["initdataPcr8"]
    assert evaluate(policy, "data.policy.allow", edited(ear, measuring(other_pcr8)), data) is False  # another model's pod VM
    assert evaluate(policy, "data.policy.allow", edited(genuine, lambda s: s.pop("gpu0")), data) is False


# --- What the shipped Rego may use -----------------------------------------------------------


def shipped_policies(example_trusted) -> dict[str, str]:
    config, run = example_trusted
    policies = {
        name: next(iter(run.named(f"kbs-{name}", "kubernetes:core/v1:ConfigMap").inputs["data"].values()))
        for name in ("attestation-policy-cpu", "attestation-policy-gpu", "resource-policy")
    }
    policies["agent-policy"] = render_agent_policy(agent_policy_args(config, config.pairs[0]))
    return policies


def test_shipped_rego_uses_only_builtins_trustee_has(example_trusted):
    for name, text in shipped_policies(example_trusted).items():
        assert not FORBIDDEN_BUILTINS.findall(text), f"{name} calls a builtin regorus lacks in Trustee"


def test_forbidden_builtin_scan_catches_a_call():
    found = FORBIDDEN_BUILTINS.findall('x := semver.compare("1.0.0", v)\ny := crypto.sha256(z)\nz := base64url.decode(a)\nw := base64.decode(a)')
    assert [call for call, *_ in found] == ["semver.compare", "crypto.sha256", "base64url.decode"]




def test_dev_resource_policy_gives_each_workload_only_its_own_secrets(ear, example_trusted):
    """The dev stack's rendered resource policy: mistral-7b's pod VM gets the NGC key but never
    llama-3-1-8b's model key, and a pod VM measuring no workload's initdata gets nothing."""
    _, run = example_trusted
    policy = run.named("kbs-resource-policy", "kubernetes:core/v1:ConfigMap").inputs["data"]["resource-policy.rego"]
    workloads = run.outputs["spokes"]["dev-cloud"]["workloads"]

    def released(pcr8: str, path: list[str]) -> bool:
        data = {"plugin": "resource", "resource-path": path, "query": {}}
        return evaluate(policy, "data.policy.allow", edited(ear, measuring(pcr8)), data) is True

    model_key, ngc_key, jwk = ["default", "model-decryption", "key.bin"], ["default", "ngc-api-key", "api-key"], ["default", "sealed-secret-key", "public-jwk"]
    llama, mistral = workloads["llama-3-1-8b"]["initdataPcr8"], workloads["mistral-7b"]["initdataPcr8"]
    assert released(llama, model_key) and released(llama, ngc_key) and released(llama, jwk)
    assert released(mistral, ngc_key) and released(mistral, jwk)
    assert not released(mistral, model_key)
    assert not [path for path in (model_key, ngc_key, jwk) if released("ee" * 32, path)]


# --- At fleet scale: what regorus parses --------------------------------------------------------


def fleet_releases(pairs: int) -> tuple[list[render.Release], list[str]]:
    """`pairs` (cloud stack, workload) pairs, each with its own PCR 8 and serving key, sharing the NGC key."""
    pcr8s = [hashlib.sha256(f"pair {i}".encode()).hexdigest() for i in range(pairs)]
    serving = [render.Release(f"serving-{i}", ("default", "inference-tls-keys", f"prod-cloud-westeurope.llama-3-1-8b-{i:04}"), 1, [p]) for i, p in enumerate(pcr8s)]
    shared = [render.Release("ngc-api-key", ("default", "ngc-api-key", "api-key"), 1, pcr8s),
              render.Release("sealed-secret-key", ("default", "sealed-secret-key", "public-jwk"), 0, pcr8s)]
    return [*shared, *serving], pcr8s


def test_a_policy_for_5000_pairs_parses_in_regorus_and_binds_each_serving_key():
    releases, pcr8s = fleet_releases(5000)
    policy = render.resource_policy(releases, {p: f"prod-cloud-westeurope/llama-3-1-8b-{i:04}" for i, p in enumerate(pcr8s)})
    size = render.extent(policy)
    assert size.bytes <= render.REGORUS_MAX_BYTES and size.lines <= render.REGORUS_MAX_LINES and size.widest <= render.REGORUS_MAX_COLUMNS
    path = ["default", "inference-tls-keys", "prod-cloud-westeurope.llama-3-1-8b-4999"]
    data = {"plugin": "resource", "resource-path": path, "query": {}}
    token = edited(upstream("ear_token.json"), measuring(pcr8s[4999]))
    assert ENGINES["regorus"]({"policy.rego": policy}, "data.policy.allow", token, data) is True
    assert ENGINES["regorus"]({"policy.rego": policy}, "data.policy.allow", edited(token, measuring(pcr8s[0])), data) is False


def at_and_past(limit: str) -> tuple[str, str]:
    """A policy exactly at one of regorus' limits, and the same one character past it."""
    head = "package policy\n"
    if limit == "bytes":
        line = "#" + "a" * 1022 + "\n"
        lines, rest = divmod(render.REGORUS_MAX_BYTES - len(head), len(line))
        at = head + line * lines + "#" * rest
        return at, at + "#"
    if limit == "lines":
        at = head + "\n" * (render.REGORUS_MAX_LINES - 2)
        return at, at + "\n"
    # A tab counts 4 columns; the closing quote is the last column.
    at = head + "\tx := \"" + "a" * (render.REGORUS_MAX_COLUMNS - 11) + "\"\n"
    return at, at.replace("\tx", "\t x")


@pytest.mark.parametrize("limit", ["bytes", "lines", "columns"])
def test_the_limits_checked_are_where_regorus_refuses(limit):
    """A policy at each limit parses in regorus and passes the check; one past it is refused by both."""
    at, past = at_and_past(limit)
    assert render.within_regorus_limits("p", at) == at
    regorus_parses(at)
    with pytest.raises(render.PolicyTooLarge, match=limit.rstrip("s")):
        render.within_regorus_limits("p", past)
    with pytest.raises(RuntimeError, match="maximum"):
        regorus_parses(past)


def regorus_parses(policy: str) -> None:
    import regorus

    regorus.Engine().add_policy("policy.rego", policy)
