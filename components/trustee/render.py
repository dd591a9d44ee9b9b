"""Trustee's configuration documents: pure functions of the arguments the stack maps its config into, no resources."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from components.templating import render

# Reference value names the attestation policies query (templates/trustee/attestation-policy-*.rego.j2).
RV_PCR08 = "snp_pcr08"
# Upstream's name for the SNP launch measurement (confidential-containers/trustee
# attestation-service/src/ear_token/ear_default_policy_cpu.rego, Azure vTPM SNP).
RV_MEASUREMENT = "measurement"
RV_VERSION = "0.1.0"
# The NVIDIA verifier `type` in kbs-config.toml (trustee deps/verifier nvidia: Remote | Local).
_VERIFIER_TYPES = {"remote": "Remote", "local": "Local"}


@dataclass(frozen=True)
class ReferenceValueSet:
    """What Trustee trusts besides each workload's PCR 8: the pod VM image's PCRs, firmware minimums,
    GPU driver and VBIOS versions, and the SNP launch measurements (empty: not checked)."""

    expiration: str
    """UTC timestamp like 2027-01-01T00:00:00Z."""
    pcrs: Mapping[str, Sequence[str]]
    """`pcr03` -> accepted values, for every pinned PCR but 8."""
    minimum_tcb: Mapping[str, int]
    """Reported TCB component (`bootloader`, `tee`, `snp`, `microcode`) -> lowest accepted version."""
    allowed_driver_versions: Sequence[str]
    allowed_vbios_versions: Sequence[str]
    measurements: Sequence[str] = ()


def kbs_config(verifier_type: Literal["remote", "local"], verifier_url: str) -> str:
    return render("trustee/kbs-config.toml.j2", nvidia_verifier_type=_VERIFIER_TYPES[verifier_type], nvidia_verifier_url=verifier_url)


def cpu_policy(pin_measurement: bool) -> str:
    """The CPU policy checks the launch measurement only when an allow-list is configured."""
    return render("trustee/attestation-policy-cpu.rego.j2", pin_measurement=pin_measurement)


def gpu_policy() -> str:
    return render("trustee/attestation-policy-gpu.rego.j2")


@dataclass(frozen=True)
class Release:
    """One resource KBS may release, and to which measured workloads."""

    name: str
    path: tuple[str, str, str]
    """["default", <secret>, <key>], the resource-path KBS hands the policy."""
    gpus: int
    """GPUs (distinct gpu* submodules) that must affirm alongside cpu0."""
    pcr08: Sequence[str]
    """PCR 8 values of the workloads allowed this resource (their initdata, current and retiring)."""


def resource_policy(releases: Sequence[Release]) -> str:
    table = [
        {"name": r.name, "path": list(r.path), "gpus": r.gpus, "pcr08": sorted(set(r.pcr08))}
        for r in sorted(releases, key=lambda r: r.name)
    ]
    return render("trustee/resource-policy.rego.j2", releases=table)


def reference_value_entries(values: ReferenceValueSet, pcr08: Sequence[str]) -> dict[str, Any]:
    """Reference value name -> value: lists for `in` checks, numbers for minimums.

    `pcr08`: every workload's PCR 8, current and retiring, in order; duplicates dropped.
    """
    entries: dict[str, Any] = {f"snp_{pcr}": list(accepted) for pcr, accepted in values.pcrs.items()}
    entries[RV_PCR08] = list(dict.fromkeys(pcr08))
    entries["allowed_driver_versions"] = list(values.allowed_driver_versions)
    entries["allowed_vbios_versions"] = list(values.allowed_vbios_versions)
    for component, minimum in values.minimum_tcb.items():
        entries[f"snp_min_tcb_{component}"] = minimum
    if values.measurements:
        entries[RV_MEASUREMENT] = list(values.measurements)
    return entries


def reference_values_document(values: ReferenceValueSet, pcr08: Sequence[str]) -> str:
    """The RVPS `reference_value` file of Trustee 1.2: {name: URL-safe padded base64 of a JSON record}."""
    records = {
        name: base64.urlsafe_b64encode(
            json.dumps(
                {"version": RV_VERSION, "name": name, "expiration": values.expiration, "value": value},
                sort_keys=True,
                separators=(",", ":"),
            ).encode()
        ).decode()
        for name, value in reference_value_entries(values, pcr08).items()
    }
    return json.dumps(records, indent=2, sort_keys=True) + "\n"
