"""The attestation corpus: evidence cases decided by the old and the new CPU and GPU attestation policies.

Cases (corpus/cases.json) start from upstream-derived evidence (corpus/SOURCES.md) made the
environment's own pod VM: PCRs 3/4/7/9/11/12, the launch measurement and the GPU driver and VBIOS
versions become the first value the base side's reference values list (the image and drivers running
today), PCR 8 a workload's on each side (initdata is the program's own output; which workload gets
which secret is the release matrix's question). A case's status is the set of appraised claims
(executables, hardware, configuration) its policy refuses: a change that stops checking something
shows even while another claim still refuses the case.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.policy_diff.plans import TrustedPlan
from scripts.policy_diff.rego import SHIM, Policy, RegoError
from scripts.policy_diff.releases import PROBE_PCR8

CORPUS = Path(__file__).resolve().parent / "corpus"
CASES = json.loads((CORPUS / "cases.json").read_text())
APPRAISED = ("executables", "hardware", "configuration")
# AR4SI affirming tiers (Trustee's EAR: 2..31 affirming, -1..1 none, 32..95 warning, else contraindicated).
AFFIRMING = range(2, 32)
PINNED_PCRS = ("03", "04", "07", "09", "11", "12")


@dataclass(frozen=True)
class Status:
    refused: frozenset[str]
    error: str | None = None

    @property
    def verdict(self) -> str:
        return "error" if self.error else "refused" if self.refused else "affirmed"


def _at(document: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    *parents, leaf = path.split(".")
    for part in parents:
        document = document[part]
    return document, leaf


def case_input(case: Mapping[str, Any], kind: str, base_values: Mapping[str, Any], pcr8: str) -> dict[str, Any]:
    """The case's policy input for this environment (see the module's docstring)."""
    evidence = json.loads((CORPUS / case["evidence"]).read_text())

    def first(name: str) -> Any:
        listed = base_values.get(name)
        return listed[0] if isinstance(listed, list) and listed else None

    if kind == "cpu":
        claims = evidence["az-snp-vtpm"]
        for n in PINNED_PCRS:
            if (value := first(f"snp_pcr{n}")) is not None:
                claims["tpm"][f"pcr{n}"] = value
        if (value := first("measurement")) is not None:
            claims["measurement"] = value
        claims["tpm"]["pcr08"] = evidence["init_data"] = pcr8
    else:
        claims = evidence["nvidia"]
        if (value := first("allowed_driver_versions")) is not None:
            claims["x-nvidia-gpu-driver-version"] = value
        if (value := first("allowed_vbios_versions")) is not None:
            claims["x-nvidia-gpu-vbios-version"] = str(value).upper()  # NRAS reports upper case
    for path, value in (case.get("set") or {}).items():
        parent, leaf = _at(evidence, path)
        parent[leaf] = copy.deepcopy(value)
    for path in case.get("drop") or ():
        parent, leaf = _at(evidence, path)
        del parent[leaf]
    return evidence


def statuses(plan: TrustedPlan, base_values: Mapping[str, Any], pcr8: str) -> dict[tuple[str, str], Status]:
    """(policy, case) -> what `plan`'s policy, with `plan`'s reference values, decides."""
    found = {}
    for kind, text in (("cpu", plan.cpu_policy), ("gpu", plan.gpu_policy)):
        policy = Policy(text, SHIM, data={"rv": dict(plan.reference_values)})
        for case in CASES[kind]:
            try:
                claims = policy.evaluate("data.policy.trust_claims", case_input(case, kind, base_values, pcr8))
                if not isinstance(claims, dict):
                    raise RegoError("no trust_claims object")
                refused = frozenset(c for c in APPRAISED if claims.get(c) not in AFFIRMING)
                found[kind, case["name"]] = Status(refused)
            except RegoError as err:  # Trustee fails the attestation
                found[kind, case["name"]] = Status(frozenset(APPRAISED), str(err))
    return found


def reference_pcr8(plan: TrustedPlan, other: TrustedPlan) -> str:
    """PCR 8 of the first pod VM both sides have, as `plan` measures it; else of `plan`'s first; else the probe's."""
    keys = {vm.key for vm in other.pod_vms}
    vms = sorted(plan.pod_vms, key=lambda vm: (vm.key not in keys, vm.key))
    return vms[0].pcr8 if vms else PROBE_PCR8


def attestation_changes(old: TrustedPlan, new: TrustedPlan) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(newly_refused, newly_affirmed): {"case", "policy", "claims", "verdict"} per case whose status changes."""
    before = statuses(old, old.reference_values, reference_pcr8(old, new))
    after = statuses(new, old.reference_values, reference_pcr8(new, old))
    refused, affirmed = [], []
    for key, now in after.items():
        then = before[key]
        entry = {"case": key[1], "policy": key[0], "verdict": now.verdict}
        if now.refused - then.refused:
            refused.append({**entry, "claims": sorted(now.refused - then.refused)} | ({"error": now.error} if now.error else {}))
        if then.refused - now.refused:
            affirmed.append({**entry, "claims": sorted(then.refused - now.refused)})
    return refused, affirmed


def describe(case: str) -> str:
    """What the case is, from cases.json."""
    return next((c["why"] for kind in ("cpu", "gpu") for c in CASES[kind] if c["name"] == case), case)
