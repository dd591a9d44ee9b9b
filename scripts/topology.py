"""`topology.md`: a Mermaid picture of both clusters, what each stack creates, and what crosses over.

Drawn from the plan's data: the top-level resources of each stack, the trusted outputs the cloud
stack's StackReference reads, and, where the cloud stack serves models, the confidential flow:
each workload's initdata into its InferenceService, its signed sealed pointers into Secrets, each NIM
pod in its confidential VM, and the attestation back to KBS that releases that workload's secrets.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from components.nim import INITDATA_ANNOTATION, MACHINE_TYPE_ANNOTATION
from components.peerpods import RUNTIME_CLASS
from scripts.offline import Registered, StackRun

_TITLES = {
    "trusted": "trusted cluster, on premises",
    "cloud": "cloud cluster, Azure",
}
_INFERENCE_SERVICE = "kubernetes:serving.kserve.io/v1beta1:InferenceService"


def _node_id(urn: str) -> str:
    """A short Mermaid id, unique per URN (readers see the labels, not the ids)."""
    return "n_" + hashlib.sha256(urn.encode()).hexdigest()[:12]


def _subgraph_id(stack: str) -> str:
    return stack.replace("-", "_")


def _top_level(run: StackRun) -> list[Registered]:
    return [r for r in run.resources if r.parent.split("::")[2:3] == ["pulumi:pulumi:Stack"]]


def _label(r: Registered) -> str:
    return f'{r.name}<br/><small>{r.type}</small>'


def _object(r: Registered) -> str:
    metadata = r.inputs.get("metadata", {})
    return f'{r.inputs.get("kind", r.type)} {metadata.get("namespace", "")}/{metadata.get("name", r.name)}'.replace(" /", " ")


def _confidential_flow(run: StackRun, ref: Registered, source: StackRun, nodes: dict[str, list[str]]) -> list[str]:
    """Nodes (added to `nodes` per stack) and edges of the trusted outputs' way into the TEE and back."""
    edges: list[str] = []
    ref_id = _node_id(ref.urn)
    kbs = f"kbs_{_subgraph_id(source.stack)}"
    nodes[source.stack].append(f'    {kbs}(["KBS {source.outputs.get("kbsUrl", "")}<br/><small>attestation, resource policy</small>"])')
    workloads = source.outputs.get("workloads") or {}
    by_initdata = {w.get("initdata"): name for name, w in workloads.items()}
    workload_by_namespace: dict[str, str] = {}
    pods_by_namespace: dict[str, list[str]] = defaultdict(list)
    for isvc in run.of_type(_INFERENCE_SERVICE):
        predictor = isvc.inputs.get("spec", {}).get("predictor", {})
        annotations = predictor.get("annotations", {})
        isvc_id = _node_id(isvc.urn)
        nodes[run.stack].append(f'    {isvc_id}["{_object(isvc)}"]')
        if INITDATA_ANNOTATION in annotations:
            workload = by_initdata.get(annotations[INITDATA_ANNOTATION], "?")
            workload_by_namespace[isvc.inputs["metadata"].get("namespace", "")] = workload
            edges.append(f'  {ref_id} -- "workloads.{workload}.initdata: cc_init_data" --> {isvc_id}')
        if predictor.get("runtimeClassName") != RUNTIME_CLASS:
            continue
        pod = f"pod_{isvc_id}"
        nodes[run.stack] += [
            f'    subgraph vm_{isvc_id}["confidential VM (SEV-SNP + H100): {annotations.get(MACHINE_TYPE_ANNOTATION, "")}"]',
            f'      {pod}["NIM pod {isvc.inputs["metadata"]["name"]}<br/><small>{RUNTIME_CLASS}, confidential data hub</small>"]',
            "    end",
        ]
        pods_by_namespace[isvc.inputs["metadata"].get("namespace", "")].append(pod)
        edges += [
            f"  {isvc_id} --> {pod}",
            f'  {pod} -. "CPU + GPU evidence (attestation)" .-> {kbs}',
            f'  {kbs} -. "secrets of its workload, only to its PCR 8" .-> {pod}',
        ]
    for secret in run.of_type("kubernetes:core/v1:Secret"):
        sealed = [v for v in (secret.inputs.get("stringData") or {}).values() if isinstance(v, str) and v.startswith("sealed.")]
        if not sealed:
            continue
        secret_id = _node_id(secret.urn)
        nodes[run.stack].append(f'    {secret_id}["sealed secret {_object(secret)}"]')
        namespace = secret.inputs["metadata"].get("namespace", "")
        edges.append(f'  {ref_id} -- "workloads.{workload_by_namespace.get(namespace, "?")}.sealedSecrets: signed pointer" --> {secret_id}')
        edges += [f'  {secret_id} -- "pointer, unsealed in the TEE" --> {pod}' for pod in pods_by_namespace[namespace]]
    return edges


def render_topology(runs: list[StackRun]) -> str:
    by_stack = {run.stack: run for run in runs}
    nodes: dict[str, list[str]] = defaultdict(list)
    edges: list[str] = []
    for run in runs:
        for ref in run.of_type("pulumi:pulumi:StackReference"):
            source = by_stack.get(ref.inputs.get("name", "").rsplit("/", 1)[-1])
            if source is None:
                continue
            names = [n + (" (secret)" if n in source.secret_outputs else "") for n in sorted(source.outputs)]
            edges.append(f'  {_subgraph_id(source.stack)} -- "{", ".join(names)}" --> {_node_id(ref.urn)}')
            edges += _confidential_flow(run, ref, source, nodes)
    lines = ["flowchart LR"]
    for run in runs:
        role = run.stack.rsplit("-", 1)[-1]
        lines.append(f'  subgraph {_subgraph_id(run.stack)}["{run.stack}: {_TITLES.get(role, role)}"]')
        lines += [f'    {_node_id(r.urn)}["{_label(r)}"]' for r in _top_level(run)]
        lines += nodes[run.stack]
        lines.append("  end")
    body = "\n".join(lines + edges)
    stacks = ", ".join(run.stack for run in runs)
    return (
        f"# Topology: {stacks}\n\n"
        "Generated by `python -m scripts.plan`. Only the trusted stack's outputs cross between the clusters;\n"
        "secrets reach a model pod only from KBS, after its confidential VM attested CPU and GPU.\n\n"
        f"```mermaid\n{body}\n```\n"
    )
