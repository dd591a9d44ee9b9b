"""Trustee's configuration documents, rendered from the stack config: pure functions, no resources."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from components.templating import render
from stacks.config.trusted import NvidiaVerifier, ReferenceValues

# Reference value names the attestation policies query (templates/trustee/attestation-policy-*.rego.j2).
RV_PCR08 = "snp_pcr08"
# Upstream's name for the SNP launch measurement (confidential-containers/trustee
# attestation-service/src/ear_token/ear_default_policy_cpu.rego, Azure vTPM SNP).
RV_MEASUREMENT = "measurement"
RV_VERSION = "0.1.0"
# The NVIDIA verifier `type` in kbs-config.toml (trustee deps/verifier nvidia: Remote | Local).
_VERIFIER_TYPES = {"remote": "Remote", "local": "Local"}


def kbs_config(verifier: NvidiaVerifier) -> str:
    return render("trustee/kbs-config.toml.j2", nvidia_verifier_type=_VERIFIER_TYPES[verifier.type], nvidia_verifier_url=verifier.url)


def cpu_policy(values: ReferenceValues) -> str:
    """The CPU policy checks the launch measurement only when an allow-list is configured."""
    return render("trustee/attestation-policy-cpu.rego.j2", pin_measurement=bool(values.measurements))


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


def reference_value_entries(values: ReferenceValues, pcr08: Sequence[str]) -> dict[str, Any]:
    """Reference value name -> value: lists for `in` checks, numbers for minimums.

    `pcr08`: every workload's PCR 8, current and retiring, in order; duplicates dropped.
    """
    entries: dict[str, Any] = {
        "snp_pcr03": values.pcrs.pcr03,
        "snp_pcr04": values.pcrs.pcr04,
        "snp_pcr07": values.pcrs.pcr07,
        RV_PCR08: list(dict.fromkeys(pcr08)),
        "snp_pcr09": values.pcrs.pcr09,
        "snp_pcr11": values.pcrs.pcr11,
        "snp_pcr12": values.pcrs.pcr12,
        "allowed_driver_versions": values.allowed_driver_versions,
        "allowed_vbios_versions": values.allowed_vbios_versions,
    }
    for component, minimum in values.minimum_tcb.model_dump().items():
        entries[f"snp_min_tcb_{component}"] = minimum
    if values.measurements:
        entries[RV_MEASUREMENT] = values.measurements
    return entries


def reference_values_document(values: ReferenceValues, pcr08: Sequence[str]) -> str:
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
