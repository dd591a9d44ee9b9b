"""The release matrix: which pod VM the resource policy gives which KBS resource, with how many GPUs attested.

For every pod VM the trusted side measured, plus a probe whose PCR 8 is no workload's, and every
resource of either side, the policy decides on the EAR token KBS would hand it: the corpus' upstream-
shaped EAR (corpus/ear.json, trustee attestation-service/src/ear_token/broker.rs `issue`) with that
PCR 8 in cpu0's claims and 0 up to the workload's GPUs, each a distinct device (`ueid`), all affirming.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.policy_diff.plans import PodVm, TrustedPlan
from scripts.policy_diff.rego import Policy, RegoError

EAR = json.loads((Path(__file__).resolve().parent / "corpus" / "ear.json").read_text())
UNKNOWN = "<unknown>"
# A PCR 8 no initdata measures to: sha256 preimages of an all-0xee digest are unknown.
PROBE_PCR8 = "ee" * 32


@dataclass(frozen=True, order=True)
class Release:
    """The resource policy releases `resource` to the pod VM of `workload` when `gpus` GPUs attested."""

    cloud_stack: str
    workload: str
    resource: str
    gpus: int

    def as_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"workload": self.workload, "resource": self.resource, "gpus": self.gpus}
        return {"cloudStack": self.cloud_stack, **entry} if self.cloud_stack else entry

    @property
    def dangerous(self) -> bool:
        """A pod VM measuring no declared workload would receive it: anything that boots gets it."""
        return self.workload == UNKNOWN


def ear_for(pcr8: str, gpus: int) -> dict[str, Any]:
    """The EAR of a genuine pod VM measuring `pcr8` with `gpus` affirming GPUs (gpu0..), each its own device."""
    token = copy.deepcopy(EAR)
    submods = token["submods"]
    gpu = submods.pop("gpu0")
    cpu = submods["cpu0"]["ear.veraison.annotated-evidence"]
    cpu["az-snp-vtpm"]["tpm"]["pcr08"] = pcr8
    cpu["init_data"] = pcr8  # broker.rs transform_claims: init_data is PCR 8 on az-snp-vtpm
    for i in range(gpus):
        device = copy.deepcopy(gpu)
        device["ear.veraison.annotated-evidence"]["nvidia"]["ueid"] = f"{i + 1}{device['ear.veraison.annotated-evidence']['nvidia']['ueid']}"
        submods[f"gpu{i}"] = device
    return token


# Asks the resource policy about every resource at once, each as KBS would ask: `data.policy.allow`
# with the resource's path as `data["resource-path"]` (anything but true denies).
_EVERY_RESOURCE = """package policy_diff

import rego.v1

released contains name if {
	some name, path in paths
	data.policy.allow == true with data["resource-path"] as path
}

paths := %s
"""


def released(plan: TrustedPlan, matrix: Iterable[tuple[PodVm, int]], resources: dict[str, list[str]]) -> set[Release]:
    """What `plan`'s resource policy releases, over `matrix` (each pod VM of this side with a GPU count)."""
    every = Policy(plan.resource_policy, _EVERY_RESOURCE % json.dumps(resources), data={"plugin": "resource", "query": {}})
    one = Policy(plan.resource_policy)
    found = set()
    for vm, gpus in matrix:
        token = ear_for(vm.pcr8, gpus)
        try:
            names = every.evaluate("data.policy_diff.released", token) or []
        except RegoError:  # the policy fails on some request: ask one resource at a time, as KBS would
            names = [name for name, path in resources.items() if _allowed(one, token, path)]
        found |= {Release(vm.cloud_stack or "", vm.workload, name, gpus) for name in names}
    return found


def _allowed(policy: Policy, token: dict[str, Any], path: list[str]) -> bool:
    try:
        return policy.evaluate("data.policy.allow", token, {"plugin": "resource", "resource-path": path, "query": {}}) is True
    except RegoError:
        return False  # KBS denies when the policy fails


def release_changes(old: TrustedPlan, new: TrustedPlan) -> tuple[list[Release], list[Release]]:
    """(gains, losses): releases the new plan makes that the old did not, and the reverse; the probe's first.

    Both sides decide over the same matrix: a pod VM is tried with 0 up to the most GPUs either side
    gives its workload, the probe with up to the most of any workload; each side uses its own PCR 8 of
    a workload (a change of initdata moves the workload, not its secrets)."""
    resources = {**old.resources, **new.resources}
    ranges: dict[tuple[str, str], int] = {}
    for vm in (*old.pod_vms, *new.pod_vms):
        ranges[vm.key] = max(ranges.get(vm.key, 0), vm.gpus)
    probe = PodVm(UNKNOWN, PROBE_PCR8, max(ranges.values(), default=0))

    def matrix(plan: TrustedPlan) -> list[tuple[PodVm, int]]:
        return [(vm, n) for vm in plan.pod_vms for n in range(ranges[vm.key] + 1)] + [(probe, n) for n in range(probe.gpus + 1)]

    before, after = released(old, matrix(old), resources), released(new, matrix(new), resources)
    return sorted(after - before, key=_danger_first), sorted(before - after, key=_danger_first)


def _danger_first(release: Release) -> tuple[bool, Release]:
    return (not release.dangerous, release)
