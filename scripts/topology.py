"""`topology.md`: what each cluster gets, in the order Pulumi builds it, and what crosses between them.

Drawn from the plan's data, never from a list kept here: one node per part of a stack (its top-level
components and resources; the KBS component split into policies, KBS and Route), and an arrow from
A to B when a resource of B depends on one of A (the registered `dependsOn`, through providers too),
leaving out arrows a longer path implies. Providers get no node. The cross-cluster arrow carries
what the cloud stack reads (`stacks/contracts.py` CLOUD_READS); inside the cloud stack each of those
values goes to the parts whose inputs hold it. Dotted arrows are traffic at run time: a model's
confidential VM attests to KBS, which then releases its secrets.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from components.nim import MACHINE_TYPE_ANNOTATION
from components.peerpods import RUNTIME_CLASS
from scripts.offline import Registered, StackRun
from stacks.contracts import CLOUD_READS

_TITLES = {"trusted": "trusted cluster, on premises", "cloud": "cloud cluster, Azure"}
_INFERENCE_SERVICE = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
_KBS_CONFIG = "kubernetes:confidentialcontainers.org/v1alpha1:KbsConfig"
_STACK_REFERENCE = "pulumi:pulumi:StackReference"
# The trusted stack's trust bundle signing keys (stacks/trusted.py): the source of the signed hand-off.
_BUNDLE_KEY = re.compile(r"^trust-bundle-key-[a-z]$")
# What a reader calls each kind of part, and what it holds; other kinds go by their resource name.
_KINDS = {
    "ResourceGroup": ("resource group", ""),
    "ClusterNetwork": ("cluster network", "VNet, master and worker subnets"),
    "PodVmNetwork": ("pod VM network", "subnet, NSG, NAT gateway"),
    "PeerPodIdentity": ("peer-pod identity", "Azure roles for CAA"),
    "PodVmGallery": ("pod VM image gallery", ""),
    "AroCluster": ("ARO cluster", ""),
    "PeerPods": ("peer pods", "KataConfig, CAA settings"),
    "OpenShiftAi": ("OpenShift AI", "DataScienceCluster"),
    "SelfSignedServerCertificate": ("KBS HTTPS certificate", ""),
    "SigningCertificate": ("token signing key", ""),
    "InferenceCertificates": ("inference certificates", "CA, each model's TLS serving certificate"),
    "ModelStorage": ("encrypted model storage", "storage account, private container"),
}


@dataclass
class Node:
    id: str
    top: Registered
    """The stack's top-level resource this part belongs to."""
    part: str | None = None
    """Which part of a component drawn in parts (`_SPLIT`)."""
    title: str = ""
    detail: str = ""
    resources: list[Registered] = field(default_factory=list)

    def mermaid(self) -> str:
        label = _text(self.title) + (f"<br/><small>{_text(self.detail)}</small>" if self.detail else "")
        return f'{self.id}["{label}"]'


@dataclass
class Picture:
    """One stack's parts and the dependency arrows between them (already reduced)."""

    run: StackRun
    nodes: dict[str, Node]
    edges: set[tuple[str, str]]

    @property
    def role(self) -> str:
        return self.run.stack.rsplit("-", 1)[-1]

    def ordered(self) -> list[Node]:
        """The parts in the order Pulumi can build them (ties by id, so the file is deterministic)."""
        waiting = {node: {a for a, b in self.edges if b == node} for node in self.nodes}
        order: list[Node] = []
        while waiting:
            ready = sorted(node for node, needs in waiting.items() if not needs)
            for node in ready:
                del waiting[node]
                order.append(self.nodes[node])
            for needs in waiting.values():
                needs.difference_update(ready)
        return order

    def holding(self, type_: str) -> list[Node]:
        return [node for node in self.ordered() if any(r.type == type_ for r in node.resources)]


# --- parts ---------------------------------------------------------------------------------------


def _kbs_part(child: Registered) -> str:
    """Trustee's KBS component in three parts: the policies it is given, KBS itself, its Route."""
    if child.type.endswith(":Route"):
        return "route"
    if child.type == "kubernetes:core/v1:ConfigMap" and ("policy" in child.name or child.name.endswith("reference-values")):
        return "policies"
    return "kbs"


_SPLIT: dict[str, Callable[[Registered], str]] = {"confidential-ai:trustee:Kbs": _kbs_part}


def _slug(*parts: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", "_".join(parts).lower()).strip("_")


def _kind(type_: str) -> str:
    return type_.rsplit(":", 1)[-1].rsplit("/", 1)[-1]


def _metadata_name(r: Registered) -> str:
    return r.inputs.get("metadata", {}).get("name", r.name)


def _describe(node: Node) -> None:
    members, top, part = node.resources, node.top, node.part
    kind = _kind(top.type)
    if part == "policies":
        node.title, node.detail = "policies", ", ".join(sorted(_metadata_name(r) for r in members if r.custom))
    elif part == "kbs":
        node.title, node.detail = "KBS", "KbsConfig, kbs-config, keys"
    elif part == "route":
        route = next(r for r in members if r.type.endswith(":Route"))
        node.title, node.detail = "Route", route.inputs.get("spec", {}).get("host", _metadata_name(route))
    elif kind == "OperatorInstall":
        subscription = next((r for r in members if r.type.endswith(":Subscription")), None)
        spec = subscription.inputs.get("spec", {}) if subscription else {}
        node.title, node.detail = f"operator {spec.get('name', top.name)}", spec.get("startingCSV", "")
    elif kind == "NimModel":
        node.title, node.detail = f"model {top.name.removeprefix('model-')}", _model_detail(members)
    elif kind == "StackReference":
        node.title, node.detail = "trusted stack outputs", top.inputs.get("name", top.name)
    elif kind == "KbsSecretResources":
        node.title, node.detail = "workload secrets", ", ".join(sorted(_metadata_name(r) for r in members if r.custom))
    elif kind in _KINDS:
        node.title, held = _KINDS[kind]
        node.detail = held or top.name
    else:
        node.title, node.detail = top.name, kind


def _model_detail(members: list[Registered]) -> str:
    for isvc in (r for r in members if r.type == _INFERENCE_SERVICE):
        predictor = isvc.inputs.get("spec", {}).get("predictor", {})
        gpus = predictor.get("model", {}).get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
        size = predictor.get("annotations", {}).get(MACHINE_TYPE_ANNOTATION, "")
        return ", ".join(x for x in (f"{gpus} GPU" if gpus else "", size, predictor.get("runtimeClassName", "")) if x)
    return ""


def picture(run: StackRun) -> Picture:
    by_urn = {r.urn: r for r in run.resources}
    role = run.stack.rsplit("-", 1)[-1]
    nodes: dict[str, Node] = {}
    node_of: dict[str, str] = {}

    def place(r: Registered) -> str | None:
        if r.urn in node_of:
            return node_of[r.urn]
        chain = [r]
        while chain[-1].parent in by_urn:
            chain.append(by_urn[chain[-1].parent])
        top = chain[-1]
        if top.type.startswith("pulumi:providers:"):
            return None
        split = _SPLIT.get(top.type)
        if split and r is top:
            return None  # drawn as its parts
        part = split(chain[-2]) if split else None
        node_id = _slug(role, _kind(top.type), top.name, part or "")
        node = nodes.setdefault(node_id, Node(node_id, top, part))
        node.resources.append(r)
        node_of[r.urn] = node_id
        return node_id

    for r in run.resources:
        place(r)
    for node in nodes.values():
        _describe(node)

    def needs(r: Registered, seen: frozenset[str] = frozenset()) -> Iterator[str]:
        """What `r` waits for: its dependencies, and its provider's (a provider gets no node)."""
        for urn in (*r.depends_on, r.provider):
            dependency = by_urn.get(urn)
            if dependency is None or urn in seen:
                continue
            if dependency.type.startswith("pulumi:providers:"):
                yield from needs(dependency, seen | {urn})
            else:
                yield urn

    edges = set()
    for r in run.resources:
        target = node_of.get(r.urn)
        for urn in needs(r):
            source = node_of.get(urn)
            if source and target and source != target:
                edges.add((source, target))
    return Picture(run, nodes, _reduced(edges))


def _reduced(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Transitive reduction: drop A -> C when A -> ... -> C runs through another part."""
    after: dict[str, set[str]] = {}
    for a, b in edges:
        after.setdefault(a, set()).add(b)

    def longer_path(a: str, b: str) -> bool:
        seen, todo = set(), [n for n in after.get(a, ()) if n != b]
        while todo:
            node = todo.pop()
            if node == b:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(after.get(node, ()))
        return False

    return {(a, b) for a, b in edges if not longer_path(a, b)}


# --- what crosses ----------------------------------------------------------------------------------


def _strings(value: Any, found: list[str] | None = None) -> list[str]:
    """Every string in `value`, depth first (appended to `found`, without a generator per level)."""
    found = [] if found is None else found
    if isinstance(value, str):
        found.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, found)
    elif isinstance(value, list):
        for v in value:
            _strings(v, found)
    return found


def _readable(value: Any) -> Iterator[str]:
    """Every string in `value`, sealed-secret pointers also decoded (their body names a KBS URI)."""
    for text in _strings(value):
        yield text
        if text.startswith("sealed."):
            body = text.split(".")[2] if text.count(".") >= 3 else ""
            try:
                yield base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
            except (binascii.Error, UnicodeDecodeError):
                pass


def _consumers(cloud: Picture, outputs: dict[str, Any]) -> dict[str, list[str]]:
    """Per cloud part, which of the read trusted outputs its resources' inputs hold."""
    found: dict[str, list[str]] = {}
    # Each output's strings once, not once per part: an output may hold every model's values.
    reads = {name: [v for v in _strings(outputs.get(name)) if len(v) >= 8] for name in CLOUD_READS}
    for node in cloud.ordered():
        if any(r.type == _STACK_REFERENCE for r in node.resources):
            continue
        texts = [t for r in node.resources for t in _readable(r.inputs)]
        # One search per value in all the part's strings, NUL-separated (a value holding NUL searches each).
        joined = "\x00".join(texts)
        for name, values in reads.items():
            if any(v in joined if "\x00" not in v else any(v in t for t in texts) for v in values):
                found.setdefault(node.id, []).append(name)
    return found


# --- the file ------------------------------------------------------------------------------------


def _text(value: str) -> str:
    """Label text as Mermaid reads it inside quotes."""
    return value.replace('"', "#quot;")


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _attestation(trusted: Picture, cloud: Picture, edges: list[str], summary: list[str]) -> None:
    """The run-time arrows: each confidential model attests to KBS, which then releases its secrets."""
    kbs = trusted.holding(_KBS_CONFIG)
    for model in cloud.holding(_INFERENCE_SERVICE):
        confidential = any(r.inputs.get("spec", {}).get("predictor", {}).get("runtimeClassName") == RUNTIME_CLASS
                           for r in model.resources if r.type == _INFERENCE_SERVICE)
        if kbs and confidential:
            edges += [f'  {model.id} -. "CPU + GPU evidence" .-> {kbs[0].id}',
                      f'  {kbs[0].id} -. "secrets, after attestation" .-> {model.id}']
    if kbs:
        summary.append(f"- **At run time** each model pod runs in its own confidential VM ({RUNTIME_CLASS}); KBS releases "
                       "its secrets only after that VM's CPU and GPU evidence passes attestation.")


def _bundle_keys(p: Picture) -> list[Node]:
    return [node for node in p.ordered() if any(_BUNDLE_KEY.match(r.name) and r.custom for r in node.resources)]


def render_topology(runs: list[StackRun]) -> str:
    pictures = [picture(run) for run in runs]
    by_stack = {p.run.stack: p for p in pictures}
    # A cloud stack without a StackReference reads the signed bundle its trusted stack made; where every
    # cloud stack reads through a StackReference, the signing keys feed nothing drawn and are left out.
    bundle_readers = [p for p in pictures if p.role == "cloud" and not p.holding(_STACK_REFERENCE)]
    bundle_edges: list[str] = []
    bundle_summary: list[str] = []
    for p in (p for p in pictures if p.role == "trusted"):
        keys = _bundle_keys(p)
        readers = [c for c in bundle_readers if c.run.stack.startswith(p.run.stack.rsplit("-", 1)[0] + "-")]
        if not readers:
            for node in keys:
                del p.nodes[node.id]
            continue
        read = [name for name in CLOUD_READS if name in p.run.outputs]
        for cloud in readers:
            consumers = _consumers(cloud, p.run.outputs)
            bundle = f"{_slug(cloud.run.stack)}_bundle"
            bundle_edges.append(f'  {_slug(p.run.stack)} -- "{", ".join(read)}" --> {bundle}')
            bundle_edges += [f'  {key.id} -- "signs" --> {bundle}' for key in keys]
            bundle_edges += [f'  {_slug(cloud.run.stack)}_bundle -- "{", ".join(names)}" --> {node_id}' for node_id, names in consumers.items()]
            _attestation(p, cloud, bundle_edges, bundle_summary)
            bundle_summary.insert(len(bundle_summary) - (1 if p.holding(_KBS_CONFIG) else 0), 
                f"- **Between the clusters**: {cloud.run.stack} reads {_and([f'`{n}`' for n in read])} from {p.run.stack}, as the "
                "trust bundle it signed (output `trustBundles`), all public, verified against the pinned `trustBundleKey` before use"
                + "".join(f"; {_and(names)} go{'es' if len(names) == 1 else ''} to {cloud.nodes[node_id].title}" for node_id, names in consumers.items())
                + "."
            )
    lines = ["flowchart LR"]
    edges: list[str] = []
    summary: list[str] = []
    for p in pictures:
        ordered = p.ordered()
        lines.append(f'  subgraph {_slug(p.run.stack)}["{p.run.stack}: {_TITLES.get(p.role, p.role)}"]')
        if p in bundle_readers:
            lines.append(f'    {_slug(p.run.stack)}_bundle["trust bundle<br/><small>verified against the pinned key</small>"]')
        lines += [f"    {node.mermaid()}" for node in ordered]
        lines.append("  end")
        edges += [f"  {a} --> {b}" for a, b in sorted(p.edges, key=lambda e: ([n.id for n in ordered].index(e[0]), e[1]))]
        if ordered:
            summary.append(f"- **{p.run.stack}** ({_TITLES.get(p.role, p.role)}), {len(p.run.resources)} resources, built in this order: "
                           + ", ".join(node.title for node in ordered) + ".")
    edges += bundle_edges
    summary += bundle_summary
    for p in pictures:
        for ref in p.holding(_STACK_REFERENCE):
            stack_name = next(r for r in ref.resources if r.type == _STACK_REFERENCE).inputs.get("name", "")
            source = by_stack.get(stack_name.rsplit("/", 1)[-1])
            if source is None:
                continue
            read = [name for name in CLOUD_READS if name in source.run.outputs]
            if not read:
                summary.append(f"- **Between the clusters**: {source.run.stack} publishes nothing {p.run.stack} reads.")
                continue
            edges.append(f'  {_slug(source.run.stack)} -- "{", ".join(read)}" --> {ref.id}')
            consumers = _consumers(p, source.run.outputs)
            edges += [f'  {ref.id} -- "{", ".join(names)}" --> {node_id}' for node_id, names in consumers.items()]
            summary.append(f"- **Between the clusters**: {p.run.stack} reads {_and([f'`{n}`' for n in read])} from {source.run.stack}, "
                           "all public" + "".join(f"; {_and(names)} go{'es' if len(names) == 1 else ''} to {p.nodes[node_id].title}"
                                                  for node_id, names in consumers.items()) + ".")
            _attestation(source, p, edges, summary)
    stacks = ", ".join(p.run.stack for p in pictures)
    return (
        f"# Topology: {stacks}\n\n"
        "Generated by `python -m scripts.plan` from the plan itself.\n\n"
        + "\n".join(summary) + "\n\n"
        "A solid arrow from A to B: B needs A, so Pulumi creates A first (arrows a longer path implies are left out).\n"
        "A dotted arrow: traffic at run time.\n\n"
        "```mermaid\n" + "\n".join(lines + edges) + "\n```\n"
    )
