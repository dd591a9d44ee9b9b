"""`python -m scripts.reference_values`: Trustee's own evidence files read correctly, each value checked
against the evidence itself (tests/fixtures/az-snp-vtpm/SOURCES.md), and written into a stack file."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from components.trustee import render
from scripts import az_snp_evidence, reference_values
from scripts.az_snp_evidence import EvidenceError
from scripts.offline.stackfile import STACKS_DIR
from stacks.config import load
from stacks.config.trusted import ReferenceValues
from tests.conftest import example_config
from tests.fixtures.attestation.derive import quote_parts, snp_claims
from tests.test_policies_rego import AFFIRMING_CPU, CONFIGURED_PCRS, evaluate, rvps_data, tiers, upstream

EVIDENCE = Path(__file__).parent / "fixtures" / "az-snp-vtpm"
FILES = ["evidence-v0.json", "evidence-genoa.json", "evidence-v1.json", "evidence-v2.json"]
# pcr00 as upstream's verifier tests assert it (deps/verifier/src/az_snp_vtpm/mod.rs @ 78962cd4).
UPSTREAM_PCR0 = {
    "evidence-v0.json": "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced",
    "evidence-v1.json": "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced",
    "evidence-v2.json": "84275b2f4312cd4fc6cbe6b152ad3c3683e513d9f1e23c34fca160c8cca7a6a7",
    "evidence-genoa.json": "afd689d0bb1c5f36f023fbaf574135f555a28a10c1f6b938d2a25e70c7783338",
}
# The VCEK's TCB extensions (AMD VCEK specification; trustee deps/verifier/src/snp/mod.rs *_SPL_OID).
VCEK_TCB = {"bootloader": "1.3.6.1.4.1.3704.1.3.1", "tee": "1.3.6.1.4.1.3704.1.3.2", "snp": "1.3.6.1.4.1.3704.1.3.3", "microcode": "1.3.6.1.4.1.3704.1.3.8"}
GENOA_TCB = {"bootloader": 10, "tee": 0, "snp": 23, "microcode": 84}


def document(name: str) -> dict[str, Any]:
    return json.loads((EVIDENCE / name).read_text())


def raw_parts(doc: dict[str, Any]) -> tuple[list[bytes], bytes, bytes, x509.Certificate]:
    """(PCRs, quote message, HCL report, VCEK) straight from the file, per compat.rs's serde layouts."""
    if "version" in doc:
        hcl = base64.urlsafe_b64decode(doc["hcl_report"] + "=" * (-len(doc["hcl_report"]) % 4))
        vcek = x509.load_der_x509_certificate(base64.urlsafe_b64decode(doc["vcek"] + "=" * (-len(doc["vcek"]) % 4)))
        return [bytes.fromhex(p) for p in doc["tpm_quote"]["pcrs"]], bytes.fromhex(doc["tpm_quote"]["message"]), hcl, vcek
    return [bytes(p) for p in doc["quote"]["pcrs"]], bytes(doc["quote"]["message"]), bytes(doc["report"]), x509.load_pem_x509_certificate(doc["vcek"].encode())


@pytest.fixture(scope="module", params=FILES)
def read(request):
    doc = document(request.param)
    return request.param, doc, az_snp_evidence.read(doc)


@pytest.mark.filterwarnings("ignore:Parsed a serial number")
def test_every_value_is_the_evidence_s_own(read):
    name, doc, evidence = read
    pcrs, message, hcl, vcek = raw_parts(doc)
    assert evidence.layout == doc.get("version", 0)
    # PCRs: all 24, in list order, the ones the quote signed (its pcrDigest), pcr00 as upstream asserts.
    assert list(evidence.pcrs) == [p.hex() for p in pcrs] and len(pcrs) == 24
    assert hashlib.sha256(b"".join(pcrs)).digest() == quote_parts(message)[1]
    assert evidence.pcrs[0] == UPSTREAM_PCR0[name]
    # Reported TCB: the one the VCEK was issued for (the verifier requires them equal).
    issued_for = {field: vcek.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value.value[-1] for field, oid in VCEK_TCB.items()}
    assert evidence.reported_tcb.as_dict() == issued_for
    # Launch measurement and guest policy as derive.py reads the SNP report (parse_tee_evidence_az).
    claims = snp_claims(hcl[32 : 32 + 1184])
    assert evidence.measurement == claims["measurement"]
    assert (str(evidence.debug_allowed).lower(), str(evidence.migrate_ma).lower()) == (claims["policy_debug_allowed"], claims["policy_migrate_ma"])


def test_genoa_and_milan_are_told_apart_and_report_their_tcb():
    genoa = az_snp_evidence.read(document("evidence-genoa.json"))
    milan = az_snp_evidence.read(document("evidence-v0.json"))
    assert (genoa.processor, genoa.reported_tcb.as_dict()) == ("family 0x19 model 0x11 stepping 1 (Genoa)", GENOA_TCB)
    assert (milan.processor, milan.reported_tcb.as_dict()) == ("family 0x19 model 0x1 stepping 1 (Milan)", {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 219})


def test_v2_values_match_the_claims_trustee_builds_from_them():
    """tests/fixtures/attestation/az_snp_vtpm_claims.json: evidence-v2 as the verifier turns it into claims."""
    claims = upstream("az_snp_vtpm_claims.json")["az-snp-vtpm"]
    evidence = az_snp_evidence.read(document("evidence-v2.json"))
    assert {f"pcr{i:02}": v for i, v in enumerate(evidence.pcrs)} == claims["tpm"]
    assert evidence.measurement == claims["measurement"]
    assert {k: str(v) for k, v in evidence.reported_tcb.as_dict().items()} == {k: claims[f"reported_tcb_{k}"] for k in GENOA_TCB}


def _hcl(doc: dict[str, Any]) -> bytearray:
    return bytearray(base64.urlsafe_b64decode(doc["hcl_report"]))


def _with_hcl(doc: dict[str, Any], hcl: bytearray) -> dict[str, Any]:
    return {**doc, "hcl_report": base64.urlsafe_b64encode(bytes(hcl)).decode()}


def _report_field(offset: int, fmt: str, value: int):
    def edit(doc):
        hcl = _hcl(doc)
        struct.pack_into(fmt, hcl, 32 + offset, value)
        return _with_hcl(doc, hcl)

    return edit


def _hcl_field(offset: int, value: int):
    def edit(doc):
        hcl = _hcl(doc)
        struct.pack_into("<I", hcl, offset, value)
        return _with_hcl(doc, hcl)

    return edit


def _quote(edit):
    def apply(doc):
        doc = copy.deepcopy(doc)
        edit(doc["tpm_quote"])
        return doc

    return apply


@pytest.mark.parametrize(
    "edit, message",
    [
        (_quote(lambda q: q["pcrs"].__setitem__(4, "ee" * 32)), "the PCR values do not hash to the digest the TPM quote signed"),
        (_quote(lambda q: q["pcrs"].pop()), "the quote carries 23 PCRs, not 24: the verifier names PCRs by list position, so these names would shift"),
        (lambda d: {**d, "version": 3}, "version 3 is not a layout the az-snp-vtpm verifier reads (1 or 2; v0 has no version)"),
        (lambda d: {k: v for k, v in d.items() if k != "version"}, "neither v1/v2 evidence ({version, hcl_report, tpm_quote, vcek}) nor v0 ({quote, report, vcek})"),
        (_hcl_field(0, 0), "the HCL report does not start with HCLA"),
        (_hcl_field(32 + 1184 + 8, 4), "the HCL report holds report type 4, not an SNP report (2)"),
        (lambda d: _with_hcl(d, _hcl(d)[:1000]), "the HCL report is 1000 bytes, shorter than its fixed part (1236)"),
        (_report_field(0x00, "<I", 4), "SNP report version 4 is not one whose layout is known here (2, 3, 5)"),
        (_report_field(0x30, "<I", 1), "the SNP report was issued at VMPL 1; the verifier accepts only VMPL 0 (the paravisor's)"),
        (_report_field(0x188, "<B", 0x1A), "CPUID family 0x1a model 0x1 is not Milan or Genoa: its TCB layout is not read here"),
        (_report_field(0x187, "<B", 250), "the SNP report is not signed by the VCEK in the evidence"),
        (_report_field(0x90, "<B", 0), "the SNP report is not signed by the VCEK in the evidence"),
    ],
)
@pytest.mark.filterwarnings("ignore:Parsed a serial number")
def test_what_cannot_be_read_or_does_not_hold_together_is_refused(edit, message):
    with pytest.raises(EvidenceError) as raised:
        az_snp_evidence.read(edit(document("evidence-v2.json")))
    assert str(raised.value) == message


# --- The examples' CPU policy and Genoa hosts ------------------------------------------------


def example_reference_values(stack: str, claims: dict[str, Any]) -> ReferenceValues:
    """The example's referenceValues, with the PCRs and measurement of the pod VM whose claims these are."""
    config, _ = example_config(stack)
    values = json.loads(config["confidential-ai:referenceValues"])
    values["pcrs"] = {f"pcr{n}": [claims["tpm"][f"pcr{n}"]] for n in CONFIGURED_PCRS}
    values["measurements"] = [claims["measurement"]]
    return ReferenceValues.model_validate(values)


def genoa_claims() -> dict[str, Any]:
    """Trustee's claims for a genuine pod VM, on a host reporting Genoa's TCB (read from its VCEK)."""
    claims = upstream("az_snp_vtpm_claims.json")
    _, _, _, vcek = raw_parts(document("evidence-genoa.json"))
    for field, oid in VCEK_TCB.items():
        claims["az-snp-vtpm"][f"reported_tcb_{field}"] = str(vcek.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value.value[-1])
    return claims


@pytest.mark.filterwarnings("ignore:Parsed a serial number")
@pytest.mark.parametrize("stack", ["dev-trusted", "prod-trusted"])
def test_the_examples_cpu_policy_affirms_a_genoa_host(stack):
    claims = genoa_claims()
    assert {k: claims["az-snp-vtpm"][f"reported_tcb_{k}"] for k in GENOA_TCB} == {k: str(v) for k, v in GENOA_TCB.items()}
    values = example_reference_values(stack, claims["az-snp-vtpm"])
    decided = evaluate(render.cpu_policy(pin_measurement=True), "data.policy.trust_claims", claims, {"rv": rvps_data(values, claims["init_data"])})
    assert tiers(decided) == AFFIRMING_CPU
    # A Milan-derived floor (microcode 209, the examples' earlier one) refuses every Genoa host.
    milan_floor = values.model_copy(update={"minimum_tcb": values.minimum_tcb.model_copy(update={"microcode": 209})})
    decided = evaluate(render.cpu_policy(pin_measurement=True), "data.policy.trust_claims", claims, {"rv": rvps_data(milan_floor, claims["init_data"])})
    assert decided["hardware"] != 2


# --- The command ----------------------------------------------------------------------------


@pytest.fixture
def stacks(tmp_path) -> Path:
    shutil.copy(STACKS_DIR / "Pulumi.dev-trusted.yaml", tmp_path)
    return tmp_path


@pytest.mark.filterwarnings("ignore:Parsed a serial number")
def test_write_appends_pinned_pcrs_and_the_measurement(stacks, capsys):
    path = stacks / "Pulumi.dev-trusted.yaml"
    before = path.read_text()
    genoa = az_snp_evidence.read(document("evidence-genoa.json"))
    assert reference_values.main([str(EVIDENCE / "evidence-genoa.json"), "--env", "dev", "--write", "--stacks-dir", str(stacks)]) == 0
    out = capsys.readouterr().out
    after = path.read_text()
    config, _ = example_config("dev-trusted")
    old = json.loads(config["confidential-ai:referenceValues"])
    written = yaml.safe_load(after)
    new = written["config"]["confidential-ai:referenceValues"]
    for n in CONFIGURED_PCRS:
        expected = old["pcrs"][f"pcr{n}"] + ([genoa.pcrs[int(n)]] if genoa.pcrs[int(n)] not in old["pcrs"][f"pcr{n}"] else [])
        assert new["pcrs"][f"pcr{n}"] == expected
    assert set(new["pcrs"]) == set(old["pcrs"])  # no PCR 8, nor any PCR the config did not pin
    assert genoa.pcrs[8] not in after
    assert "pcr08 " + genoa.pcrs[8] + "  (initdata: computed per workload, never written)" in out
    assert new["measurements"] == [genoa.measurement]
    assert new["minimumTcb"] == GENOA_TCB == old["minimumTcb"], "the examples' floor is Genoa's already"
    assert {k: v for k, v in new.items() if k not in ("pcrs", "measurements")} == {k: v for k, v in old.items() if k != "pcrs"}
    # Comments and every other line kept.
    kept = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert kept and all(line in after.splitlines() for line in kept)
    # dev declared why it pinned no measurement; that reason must go now (StackFileEdit deletes nothing) ...
    assert "referenceValues.unpinnedMeasurementReason: delete this line by hand, the measurement is pinned now" in out
    # ... and once the reviewer has deleted it, the written values are a valid config.
    del new["unpinnedMeasurementReason"]
    config, secret_keys = example_config("dev-trusted", set={"referenceValues": new})
    load("dev-trusted", {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("confidential-ai:")}, [k.split(":", 1)[1] for k in secret_keys])
    # A second run finds nothing to add and leaves the file as it is.
    assert reference_values.main([str(EVIDENCE / "evidence-genoa.json"), "--env", "dev", "--write", "--stacks-dir", str(stacks)]) == 0
    assert path.read_text() == after
    assert "already lists these values" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:Parsed a serial number")
def test_write_replaces_the_floor_with_the_evidence_s_tcb(stacks, capsys):
    assert reference_values.main([str(EVIDENCE / "evidence-v2.json"), "--env", "dev", "--write", "--stacks-dir", str(stacks)]) == 0
    new = yaml.safe_load((stacks / "Pulumi.dev-trusted.yaml").read_text())["config"]["confidential-ai:referenceValues"]
    assert new["minimumTcb"] == {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 219}
    assert ("referenceValues.minimumTcb: bootloader 10, tee 0, snp 23, microcode 84 -> bootloader 4, tee 0, snp 24, microcode 219"
            in capsys.readouterr().out)


@pytest.mark.filterwarnings("ignore:Parsed a serial number")
def test_several_sizes_get_the_weaker_floor_of_them_all(stacks, capsys):
    files = [str(EVIDENCE / "evidence-genoa.json"), str(EVIDENCE / "evidence-v2.json")]
    assert reference_values.main([*files, "--env", "dev", "--stacks-dir", str(stacks)]) == 0
    out = capsys.readouterr().out
    assert "lowest reported TCB: bootloader 4, tee 0, snp 23, microcode 84" in out
    assert "would change (--write to apply)" in out
    assert (stacks / "Pulumi.dev-trusted.yaml").read_text() == (STACKS_DIR / "Pulumi.dev-trusted.yaml").read_text()


def test_write_without_an_environment_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        reference_values.main([str(EVIDENCE / "evidence-v2.json"), "--write"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == "python -m scripts.reference_values: error: --write needs --env ENV (see --help)\n"


def test_a_file_that_is_not_evidence_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "evidence.json"
    bad.write_text(json.dumps({"quote": {}, "report": [1, 2], "vcek": "x"}))
    assert reference_values.main([str(bad)]) == 2
    assert capsys.readouterr().err == f"python -m scripts.reference_values: error: {bad}: quote.pcrs is not a list\n"
