"""What the policy diff reads from a plan of the trusted side: Trustee's documents and who may ask KBS.

The documents are the ConfigMaps the plan's KbsConfig names, under the keys the Trustee operator mounts
(openshift/trustee-operator v1.2.1 internal/controller); the pod VMs and the resources come from the
trusted stack's outputs, which is what the cloud side reads too.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scripts.offline import SECRET, StackRun
from scripts.plan import kubernetes_manifests

# KbsConfig spec field naming each ConfigMap -> the key Trustee reads in it.
DOCUMENTS = {
    "resource_policy": ("kbsResourcePolicyConfigMapName", "resource-policy.rego"),
    "cpu_policy": ("kbsAttestationPolicyConfigMapName", "default_cpu.rego"),
    "gpu_policy": ("kbsGpuAttestationPolicyConfigMapName", "default_gpu.rego"),
    "reference_values": ("kbsRvpsRefValuesConfigMapName", "reference_value"),
}


CLOUD_STACK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*-cloud(-[a-z0-9-]+)?$")


class PlanError(Exception):
    """The plan lacks something the diff needs; the message is one line."""


@dataclass(frozen=True)
class PodVm:
    """A pod VM that may ask KBS for secrets: one workload (of one cloud stack, in a fleet) and its PCR 8."""

    workload: str
    pcr8: str
    gpus: int
    cloud_stack: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.cloud_stack or "", self.workload)


@dataclass(frozen=True)
class TrustedPlan:
    resource_policy: str
    cpu_policy: str
    gpu_policy: str
    reference_values: Mapping[str, Any]
    """Reference value name -> its value, decoded from the RVPS document as RVPS reads it."""
    pod_vms: tuple[PodVm, ...]
    resources: Mapping[str, list[str]]
    """KBS resource name -> its resource-path, ["default", <secret>, <key>]."""

    @classmethod
    def from_dir(cls, plan: Path, env: str) -> TrustedPlan:
        """From `python -m scripts.plan ENV --out DIR`'s files: DIR/ENV-trusted/{manifests/,outputs.json}."""
        stack = plan / f"{env}-trusted"
        if not (stack / "outputs.json").is_file():
            raise PlanError(f"no plan of {env}-trusted in {plan}")
        manifests = [yaml.safe_load(p.read_text()) for p in sorted((stack / "manifests").glob("*.yaml"))]
        return cls.from_manifests(manifests, json.loads((stack / "outputs.json").read_text()))

    @classmethod
    def from_run(cls, run: StackRun) -> TrustedPlan:
        """From an in-process run of the trusted stack: the same manifests and outputs the plan would write."""
        outputs = {k: SECRET if k in run.secret_outputs else v for k, v in run.outputs.items()}
        return cls.from_manifests([m for _, m in kubernetes_manifests(run)], outputs)

    @classmethod
    def from_manifests(cls, manifests: Iterable[Mapping[str, Any]], outputs: Mapping[str, Any]) -> TrustedPlan:
        manifests = list(manifests)
        kbs = next((m for m in manifests if m.get("kind") == "KbsConfig"), None)
        if kbs is None:
            raise PlanError("the plan has no KbsConfig")
        config_maps = {m["metadata"]["name"]: m.get("data") or {} for m in manifests if m.get("kind") == "ConfigMap"}
        documents = {}
        for field, (spec_key, data_key) in DOCUMENTS.items():
            name = kbs["spec"].get(spec_key)
            text = config_maps.get(name, {}).get(data_key)
            if not isinstance(text, str):
                raise PlanError(f"the plan's KbsConfig names no ConfigMap with {data_key} in {spec_key}")
            documents[field] = text
        return cls(
            resource_policy=documents["resource_policy"],
            cpu_policy=documents["cpu_policy"],
            gpu_policy=documents["gpu_policy"],
            reference_values=decode_reference_values(documents["reference_values"]),
            pod_vms=tuple(pod_vms(outputs)),
            resources=resources(outputs),
        )


def decode_reference_values(document: str) -> dict[str, Any]:
    """RVPS 1.2 `reference_value`: {name: URL-safe base64 of {"version", "name", "expiration", "value"}}."""
    records = json.loads(document)
    return {name: json.loads(base64.urlsafe_b64decode(record))["value"] for name, record in records.items()}


def pod_vms(outputs: Mapping[str, Any]) -> list[PodVm]:
    """Every (cloud stack, workload) pair the trusted side measured: each entry with an `initdataPcr8`
    under the `workloads` (or, in a fleet, `spokes`) output, named by its key; its cloud stack is its
    `cloudStack`, else the nearest enclosing key that is a cloud stack's name (`ENV-cloud[-NAME]`)."""
    found: list[PodVm] = []

    def walk(node: Any, name: str, cloud_stack: str | None) -> None:
        if not isinstance(node, Mapping):
            return
        if isinstance(node.get("initdataPcr8"), str):
            found.append(PodVm(name, node["initdataPcr8"], int(node.get("gpus") or 0), node.get("cloudStack") or cloud_stack))
            return
        for key, child in node.items():
            walk(child, key, key if CLOUD_STACK.match(key) else cloud_stack)

    for output in ("workloads", "spokes"):
        walk(outputs.get(output), output, None)
    return sorted(set(found), key=lambda vm: vm.key)


def resources(outputs: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every resource KBS holds: `kbsResources` (URIs kbs:///default/<secret>/<key>) and the sealed-secret verification key."""
    uris = {name: entry["uri"] for name, entry in (outputs.get("kbsResources") or {}).items()}
    if isinstance(outputs.get("sealedSecretKeyUri"), str):
        uri = outputs["sealedSecretKeyUri"]
        uris[uri.removeprefix("kbs:///").split("/")[1]] = uri
    return {name: uri.removeprefix("kbs:///").split("/") for name, uri in sorted(uris.items())}
