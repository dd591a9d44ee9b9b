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


# regorus refuses a policy of more bytes or lines, or a token whose end would take the lexer's
# 1-based column past 1,024, a tab counting 4 (microsoft/regorus src/lexer.rs
# Source::from_contents_with_limits and Lexer::advance_col at 39f535e9): a line at most 1,023 columns
# wide. Checked at each edge against celine-regorus 0.9.1 (tests/test_policies_rego.py). Trustee
# would then release nothing. A ConfigMap holds at most 1 MiB too.
REGORUS_MAX_BYTES = 1_048_576
REGORUS_MAX_LINES = 20_000
REGORUS_MAX_COLUMNS = 1_023


class PolicyTooLarge(ValueError):
    """A rendered policy regorus would refuse to parse."""


def resource_policy(releases: Sequence[Release], labels: Mapping[str, str] | None = None) -> str:
    """The KBS resource policy: per PCR 8, the resources a pod VM measuring it may receive.

    `labels`: PCR 8 -> who measures it (such as `<cloud stack>/<workload>`), written as a comment
    beside its grants so a reviewer reads the diff by workload.
    """
    granted: dict[str, set[str]] = {}
    paths: dict[str, str] = {}
    entries: dict[str, tuple[str, set[str]]] = {}
    for release in releases:
        repository, secret, key = release.path
        if repository != "default" or any(c in secret + key for c in "/ :"):
            raise ValueError(f"resource policy: {release.name} has path {'/'.join(release.path)}, not default/<secret>/<key> of Secret names and keys")
        path = f"{secret}/{key}"
        if paths.setdefault(path, release.name) != release.name:
            raise ValueError(f"resource policy: {release.name} and {paths[path]} are both kbs:///default/{path}")
        entries[release.name] = (f"{path}:{release.gpus}", set(release.pcr08))
    measured = set().union(*(pcr08s for _, pcr08s in entries.values()))
    # What every measured workload receives is said once, not on every row.
    common = sorted(entry for entry, pcr08s in entries.values() if measured and pcr08s == measured)
    granted = {pcr08: set() for pcr08 in measured}
    for entry, pcr08s in entries.values():
        if entry not in common:
            for pcr08 in pcr08s:
                granted[pcr08].add(entry)
    labels = labels or {}
    grants = [
        {"pcr08": pcr08, "releases": " ".join(sorted(entries)), "comment": f" # {_comment(labels[pcr08])}" if pcr08 in labels else ""}
        # By label first: a workload's row stays in place when its initdata changes.
        for pcr08, entries in sorted(granted.items(), key=lambda item: (labels.get(item[0], ""), item[0]))
    ]
    document = render("trustee/resource-policy.rego.j2", grants=grants, every_workload=" ".join(common))
    return within_regorus_limits("resource policy", document)


def _comment(text: str) -> str:
    if not text.isprintable():
        raise ValueError(f"resource policy: label {text!r} cannot be a Rego comment")
    return text


@dataclass(frozen=True)
class PolicyExtent:
    """A policy's size as regorus measures it against its limits."""

    bytes: int
    lines: int
    """Lines, counting the one after the last newline, empty or not, as regorus does."""
    widest: int
    """Columns of the widest line, a tab counting 4."""
    widest_line: int


def extent(policy: str) -> PolicyExtent:
    lines = policy.split("\n")
    widths = [len(line) + 3 * line.count("\t") for line in lines]
    widest = max(range(len(widths)), key=widths.__getitem__)
    return PolicyExtent(len(policy.encode()), len(lines), widths[widest], widest + 1)


def within_regorus_limits(what: str, policy: str) -> str:
    """`policy`, if regorus can parse it (comments measured too); else PolicyTooLarge."""
    size = extent(policy)
    if size.bytes > REGORUS_MAX_BYTES:
        raise PolicyTooLarge(f"{what}: {size.bytes:,} bytes, over the {REGORUS_MAX_BYTES:,} regorus parses")
    if size.lines > REGORUS_MAX_LINES:
        raise PolicyTooLarge(f"{what}: {size.lines:,} lines, over the {REGORUS_MAX_LINES:,} regorus parses")
    if size.widest > REGORUS_MAX_COLUMNS:
        raise PolicyTooLarge(f"{what}: line {size.widest_line} is {size.widest:,} columns wide, over the {REGORUS_MAX_COLUMNS:,} regorus parses")
    return policy


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
