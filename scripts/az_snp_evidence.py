"""Azure SEV-SNP vTPM attestation evidence, read the way Trustee's az-snp-vtpm verifier reads it.

Layouts (confidential-containers/trustee deps/verifier/src/az_snp_vtpm/compat.rs, 78962cd4):
- v0, no `version`: `{quote: {signature, message, pcrs}, report, vcek}`, byte lists and a PEM VCEK;
- v1 and v2: `{version, hcl_report, tpm_quote: {signature, message, pcrs}, vcek}`, the HCL report and
  the DER VCEK in URL-safe base64, the quote's fields in hex (v2 adds the report data to the HCL
  report's user data).
The HCL report is a 32-byte header, the 1184-byte SNP attestation report, then the IGVM request data
whose report type is 2 for SNP (kinvolk/azure-cvm-tooling az-cvm-vtpm/src/hcl/mod.rs). Field offsets
in the SNP report follow AMD's SEV-SNP firmware ABI (ATTESTATION_REPORT). Only what the evidence
holds is returned; anything unexpected is an EvidenceError, never a guess.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cryptography import utils as crypto_utils
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

PCR_COUNT = 24
HCL_HEADER = 32
HCL_SIGNATURE = b"HCLA"
SNP_REPORT_SIZE = 1184
# IgvmRequestData after the report: data_size, version, report_type, report_data_hash_type, variable_data_size.
HCL_DATA = HCL_HEADER + SNP_REPORT_SIZE
HCL_FIXED_SIZE = HCL_DATA + 20
SNP_REPORT_TYPE = 2
# SNP attestation report versions with the layout read here (AMD SEV-SNP ABI: 2; 3 adds the CPUID
# fields; 5 adds launch mitigation fields after them).
REPORT_VERSIONS = (2, 3, 5)
SIGNED_LENGTH = 0x2A0  # the report's signature covers bytes [0, 0x2A0)
# VCEK extensions holding the TCB the VCEK was issued for (AMD VCEK spec; trustee deps/verifier/src/snp).
TCB_OIDS = {
    "bootloader": "1.3.6.1.4.1.3704.1.3.1",
    "tee": "1.3.6.1.4.1.3704.1.3.2",
    "snp": "1.3.6.1.4.1.3704.1.3.3",
    "microcode": "1.3.6.1.4.1.3704.1.3.8",
}


class EvidenceError(Exception):
    """Evidence that is not Azure SNP vTPM evidence as the verifier accepts it; one line."""


@dataclass(frozen=True)
class Tcb:
    bootloader: int
    tee: int
    snp: int
    microcode: int

    def as_dict(self) -> dict[str, int]:
        return {"bootloader": self.bootloader, "tee": self.tee, "snp": self.snp, "microcode": self.microcode}


@dataclass(frozen=True)
class Evidence:
    layout: int
    """0, 1 or 2: which of the verifier's layouts the evidence is in."""
    pcrs: tuple[str, ...]
    """All 24 SHA-256 PCRs as lowercase hex, index = PCR number (as the verifier names them)."""
    measurement: str
    """The SNP launch measurement, standard base64 (the verifier's `measurement` claim)."""
    reported_tcb: Tcb
    report_version: int
    cpuid: tuple[int, int, int] | None
    """(family, model, stepping) from a version 3+ report; None for version 2."""
    debug_allowed: bool
    migrate_ma: bool
    vmpl: int

    @property
    def processor(self) -> str:
        if self.cpuid is None:
            return "not reported (report version 2)"
        family, model, stepping = self.cpuid
        return f"family {family:#x} model {model:#x} stepping {stepping} ({generation(family, model)})"


def generation(family: int, model: int) -> str:
    """AMD EPYC generation by CPUID (as the `sev` crate's ProcessorGeneration maps them)."""
    if family == 0x19 and model <= 0x0F:
        return "Milan"
    if family == 0x19 and (0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF):
        return "Genoa"
    if family == 0x1A and model <= 0x11:
        return "Turin"
    return "unknown"


def read(document: Any) -> Evidence:
    """Parse and check evidence as the verifier's untagged `Evidence` enum does (v2, then v1, then v0)."""
    if not isinstance(document, dict):
        raise EvidenceError("evidence is not a JSON object")
    if "version" in document:
        version = document["version"]
        if version not in (1, 2) or isinstance(version, bool):
            raise EvidenceError(f"version {version!r} is not a layout the az-snp-vtpm verifier reads (1 or 2; v0 has no version)")
        hcl = _base64url(document, "hcl_report")
        quote = _object(document, "tpm_quote")
        pcrs = [_hex(value, f"tpm_quote.pcrs[{i}]") for i, value in enumerate(_list(quote, "pcrs", "tpm_quote"))]
        message = _hex(quote.get("message"), "tpm_quote.message")
        vcek = _vcek_der(_base64url(document, "vcek"))
        layout = version
    elif "report" in document and "quote" in document:
        hcl = _byte_list(document.get("report"), "report")
        quote = _object(document, "quote")
        pcrs = [_byte_list(value, f"quote.pcrs[{i}]") for i, value in enumerate(_list(quote, "pcrs", "quote"))]
        message = _byte_list(quote.get("message"), "quote.message")
        vcek = _vcek_pem(document.get("vcek"))
        layout = 0
    else:
        raise EvidenceError("neither v1/v2 evidence ({version, hcl_report, tpm_quote, vcek}) nor v0 ({quote, report, vcek})")
    _check_pcrs(pcrs, message)
    report = _snp_report(hcl)
    evidence = _from_report(layout, [p.hex() for p in pcrs], report)
    _check_vcek(vcek, report, evidence.reported_tcb)
    return evidence


def _check_pcrs(pcrs: list[bytes], message: bytes) -> None:
    if len(pcrs) != PCR_COUNT:
        raise EvidenceError(f"the quote carries {len(pcrs)} PCRs, not {PCR_COUNT}: the verifier names PCRs by list position, so these names would shift")
    for i, pcr in enumerate(pcrs):
        if len(pcr) != 32:
            raise EvidenceError(f"PCR {i} is {len(pcr)} bytes, not a SHA-256 value")
    # verify_tpm_pcrs: the quote signs the digest of the PCR list (TPMS_ATTEST, TPMS_QUOTE_INFO.pcrDigest).
    if hashlib.sha256(b"".join(pcrs)).digest() != _quote_pcr_digest(message):
        raise EvidenceError("the PCR values do not hash to the digest the TPM quote signed")


def _quote_pcr_digest(message: bytes) -> bytes:
    """pcrDigest of a TPMS_ATTEST quote (TPM 2.0 Library Part 2, 10.12.1 and 10.12.12)."""
    try:
        magic, kind = struct.unpack_from(">IH", message, 0)
        if magic != 0xFF544347 or kind != 0x8018:  # TPM_GENERATED_VALUE, TPM_ST_ATTEST_QUOTE
            raise EvidenceError("the TPM quote message is not a TPM-generated quote")
        offset = 6
        for _ in range(2):  # qualifiedSigner, extraData
            (size,) = struct.unpack_from(">H", message, offset)
            offset += 2 + size
        offset += 17 + 8  # clockInfo, firmwareVersion
        (count,) = struct.unpack_from(">I", message, offset)
        offset += 4
        for _ in range(count):
            offset += 2
            offset += 1 + message[offset]
        (size,) = struct.unpack_from(">H", message, offset)
    except (struct.error, IndexError):
        raise EvidenceError("the TPM quote message is truncated") from None
    digest = message[offset + 2 : offset + 2 + size]
    if len(digest) != size:
        raise EvidenceError("the TPM quote message is truncated")
    return digest


def _snp_report(hcl: bytes) -> bytes:
    """The SNP report inside an HCL report, after checking the HCL report's shape."""
    if len(hcl) < HCL_FIXED_SIZE:
        raise EvidenceError(f"the HCL report is {len(hcl)} bytes, shorter than its fixed part ({HCL_FIXED_SIZE})")
    if hcl[:4] != HCL_SIGNATURE:
        raise EvidenceError(f"the HCL report does not start with {HCL_SIGNATURE.decode()}")
    _size, _version, report_type, _hash_type, var_size = struct.unpack_from("<5I", hcl, HCL_DATA)
    if report_type != SNP_REPORT_TYPE:
        raise EvidenceError(f"the HCL report holds report type {report_type}, not an SNP report ({SNP_REPORT_TYPE})")
    if len(hcl) < HCL_FIXED_SIZE + var_size:
        raise EvidenceError("the HCL report's variable data is truncated")
    return hcl[HCL_HEADER:HCL_DATA]


def _from_report(layout: int, pcrs: list[str], report: bytes) -> Evidence:
    (version,) = struct.unpack_from("<I", report, 0x00)
    if version not in REPORT_VERSIONS:
        raise EvidenceError(f"SNP report version {version} is not one whose layout is known here ({', '.join(map(str, REPORT_VERSIONS))})")
    cpuid = (report[0x188], report[0x189], report[0x18A]) if version >= 3 else None
    if cpuid is not None and generation(cpuid[0], cpuid[1]) not in ("Milan", "Genoa"):
        # Turin and later lay the TCB out differently (an FMC field first): refuse rather than misread it.
        raise EvidenceError(f"CPUID family {cpuid[0]:#x} model {cpuid[1]:#x} is not Milan or Genoa: its TCB layout is not read here")
    (policy,) = struct.unpack_from("<Q", report, 0x08)
    (vmpl,) = struct.unpack_from("<I", report, 0x30)
    if vmpl != 0:
        raise EvidenceError(f"the SNP report was issued at VMPL {vmpl}; the verifier accepts only VMPL 0 (the paravisor's)")
    tcb = report[0x180:0x188]  # Milan/Genoa TCB_VERSION: bootloader, tee, 4 reserved, snp, microcode
    return Evidence(
        layout=layout,
        pcrs=tuple(pcrs),
        measurement=base64.b64encode(report[0x90:0xC0]).decode(),
        reported_tcb=Tcb(bootloader=tcb[0], tee=tcb[1], snp=tcb[6], microcode=tcb[7]),
        report_version=version,
        cpuid=cpuid,
        debug_allowed=bool(policy >> 19 & 1),
        migrate_ma=bool(policy >> 18 & 1),
        vmpl=vmpl,
    )


def _check_vcek(vcek: x509.Certificate, report: bytes, tcb: Tcb) -> None:
    """The report is signed by the evidence's VCEK, issued for the TCB the report names (as the verifier
    requires). Whether the VCEK chains to AMD is checked by Trustee at attestation, not here."""
    key = vcek.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise EvidenceError("the VCEK's key is not an ECDSA key")
    # Signature: r and s as 72-byte little-endian integers at 0x2A0 and 0x2E8 (ABI, SIGNATURE).
    r = int.from_bytes(report[SIGNED_LENGTH : SIGNED_LENGTH + 72], "little")
    s = int.from_bytes(report[SIGNED_LENGTH + 72 : SIGNED_LENGTH + 144], "little")
    try:
        key.verify(utils.encode_dss_signature(r, s), report[:SIGNED_LENGTH], ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise EvidenceError("the SNP report is not signed by the VCEK in the evidence") from None
    for name, oid in TCB_OIDS.items():
        try:
            issued_for = _der_integer(vcek.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value.value)
        except x509.ExtensionNotFound:
            raise EvidenceError(f"the VCEK has no {name} TCB extension ({oid})") from None
        if issued_for != getattr(tcb, name):
            raise EvidenceError(f"the report's reported TCB {name} {getattr(tcb, name)} is not the VCEK's ({issued_for})")


def _der_integer(value: bytes) -> int:
    """An extension's DER INTEGER (the VCEK's TCB values are small integers)."""
    if len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2:
        raise EvidenceError("a VCEK TCB extension is not a DER integer")
    return int.from_bytes(value[2:], "big", signed=True)


def _object(document: dict[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key)
    if not isinstance(value, dict):
        raise EvidenceError(f"{key} is not an object")
    return value


def _list(document: dict[str, Any], key: str, where: str) -> list[Any]:
    value = document.get(key)
    if not isinstance(value, list):
        raise EvidenceError(f"{where}.{key} is not a list")
    return value


def _hex(value: Any, where: str) -> bytes:
    try:
        if isinstance(value, str):
            return bytes.fromhex(value)
    except ValueError:
        pass
    raise EvidenceError(f"{where} is not hex")


def _byte_list(value: Any, where: str) -> bytes:
    if isinstance(value, list) and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value):
        return bytes(value)
    raise EvidenceError(f"{where} is not a list of bytes")


def _base64url(document: dict[str, Any], key: str) -> bytes:
    value = document.get(key)
    try:
        if isinstance(value, str):
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        pass
    raise EvidenceError(f"{key} is not URL-safe base64")


def _vcek_der(der: bytes) -> x509.Certificate:
    try:
        with _vcek_serial_zero():
            return x509.load_der_x509_certificate(der)
    except ValueError:
        raise EvidenceError("vcek is not a DER certificate") from None


def _vcek_pem(pem: Any) -> x509.Certificate:
    try:
        if isinstance(pem, str):
            with _vcek_serial_zero():
                return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        pass
    raise EvidenceError("vcek is not a PEM certificate")



@contextmanager
def _vcek_serial_zero() -> Iterator[None]:
    """AMD issues VCEKs with serial number 0, which cryptography warns about (RFC 5280 wants it positive)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", crypto_utils.CryptographyDeprecationWarning)
        yield
