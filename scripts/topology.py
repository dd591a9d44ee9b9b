"""`topology.md`: what each cluster gets, in the order Pulumi builds it, and what crosses between them.

Drawn from the plan's data, never from a list kept here: one node per part of a stack (its top-level
components and resources; the KBS component split into policies, KBS and Route; a stack's models one
part), and an arrow from A to B when a resource of B depends on one of A (the registered `dependsOn`,
through providers too), leaving out arrows a longer path implies. Providers get no node. The cross-cluster arrow carries
what the cloud stack reads (`stacks/contracts.py` CLOUD_READS); inside the cloud stack each of those
values goes to the parts whose inputs hold it. At fleet scale the drawing grows by one node per cloud
stack and by none per model: cloud stacks built alike (same parts, arrows and reads) share one drawing,
each stack a node in it naming its models, and labels list a few names and how many more. Dotted
arrows are traffic at run time: a model's confidential VM attests to KBS, which then releases its secrets.
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
from stacks.trust_bundle import cloud_view

_TITLES = {"trusted": "trusted cluster, on premises", "cloud": "cloud cluster, Azure"}
_INFERENCE_SERVICE = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
_KBS_CONFIG = "kubernetes:confidentialcontainers.org/v1alpha1:KbsConfig"
_STACK_REFERENCE = "pulumi:pulumi:StackReference"
_NIM_MODEL = "confidential-ai:nim:NimModel"
# How many names a label lists before it says "+N more": labels stay short at any fleet size.
_NAMES_SHOWN = 3
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
    groups: dict[str, list[Registered]] = field(default_factory=dict)
    """The resources per top-level resource: a node holding several (the models) reads per model."""

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
        return _role(self.run.stack)

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
        node.title, node.detail = "policies", _few(sorted({_metadata_name(r) for r in members if r.custom}))
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
        shapes = sorted({_model_detail([r]) for r in members if r.type == _INFERENCE_SERVICE} - {""})
        node.title = "models"
        node.detail = shapes[0] if len(shapes) == 1 else f"{len(shapes)} machine shapes" if shapes else ""
    elif kind == "StackReference":
        node.title, node.detail = "trusted stack outputs", top.inputs.get("name", top.name)
    elif kind == "KbsSecretResources":
        node.title, node.detail = "workload secrets", _few(sorted({_metadata_name(r) for r in members if r.custom}))
    elif kind in _KINDS:
        node.title, held = _KINDS[kind]
        node.detail = held or top.name
    else:
        node.title, node.detail = top.name, kind


def _few(names: list[str]) -> str:
    """The first names and how many more: a label's length does not grow with the fleet."""
    rest = len(names) - _NAMES_SHOWN
    return ", ".join(names[:_NAMES_SHOWN]) + (f" +{rest} more" if rest > 0 else "")


def model_names(run: StackRun) -> list[str]:
    """The models a cloud stack serves, in the order it declares them."""
    return [r.name.removeprefix("model-") for r in run.resources if r.type == _NIM_MODEL]


def _model_detail(members: list[Registered]) -> str:
    for isvc in (r for r in members if r.type == _INFERENCE_SERVICE):
        predictor = isvc.inputs.get("spec", {}).get("predictor", {})
        gpus = predictor.get("model", {}).get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
        size = predictor.get("annotations", {}).get(MACHINE_TYPE_ANNOTATION, "")
        return ", ".join(x for x in (f"{gpus} GPU" if gpus else "", size, predictor.get("runtimeClassName", "")) if x)
    return ""


def _role(stack: str) -> str:
    return "trusted" if stack.endswith("-trusted") else "cloud"


def _prefix(stack: str) -> str:
    """Node ids' prefix: the role, and for a cloud stack `<env>-cloud-<name>` its name, so two cloud stacks' parts stay apart."""
    name = stack.split("-cloud-", 1)[1] if "-cloud-" in stack else ""
    return _slug(_role(stack), name) if name else _role(stack)


def picture(run: StackRun, prefix: str | None = None) -> Picture:
    by_urn = {r.urn: r for r in run.resources}
    role = prefix or _prefix(run.stack)
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
        # A stack's models share one node: one per model would grow the drawing with the fleet.
        node_id = _slug(role, "models") if top.type == _NIM_MODEL else _slug(role, _kind(top.type), top.name, part or "")
        node = nodes.setdefault(node_id, Node(node_id, top, part))
        node.resources.append(r)
        node.groups.setdefault(top.urn, []).append(r)
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
        # A node of several models names what every one of them reads.
        held = [_holds(members, reads) for members in node.groups.values()]
        names = [name for name in reads if all(name in h for h in held)]
        if names:
            found[node.id] = names
    return found


def _holds(members: list[Registered], reads: dict[str, list[str]]) -> set[str]:
    texts = [t for r in members for t in _readable(r.inputs)]
    # One search per value in all the part's strings, NUL-separated (a value holding NUL searches each).
    joined = "\x00".join(texts)
    return {name for name, values in reads.items() if any(v in joined if "\x00" not in v else any(v in t for t in texts) for v in values)}


# --- the file ------------------------------------------------------------------------------------


def _text(value: str) -> str:
    """Label text as Mermaid reads it inside quotes."""
    return value.replace('"', "#quot;")


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]



def _bundle_keys(p: Picture) -> list[Node]:
    return [node for node in p.ordered() if any(_BUNDLE_KEY.match(r.name) and r.custom for r in node.resources)]


@dataclass
class Spoke:
    """One cloud stack and what it reads from the trusted stack."""

    run: StackRun
    read: list[str]


def _kinds(trusted: Picture | None, clouds: list[StackRun]) -> list[tuple[str, Picture, dict[str, list[str]], list[Spoke]]]:
    """Group the cloud stacks by how they are drawn; the first of each group's drawing stands for all."""
    groups: dict[Any, tuple[str, Picture, dict[str, list[str]], list[Spoke]]] = {}
    for run in clouds:
        prefix = "cloud" if not groups else f"cloud{len(groups) + 1}"
        drawing = picture(run, "cloud")
        view = cloud_view(trusted.run.outputs, run.stack) if trusted else {}
        read = [name for name in CLOUD_READS if name in view]
        consumers = _consumers(drawing, view)
        key = (tuple((n.id, n.title, n.detail) for n in drawing.ordered()), tuple(sorted(drawing.edges)),
               tuple(sorted((k, tuple(v)) for k, v in consumers.items())), tuple(read), bool(drawing.holding(_STACK_REFERENCE)))
        if key not in groups:
            if prefix != "cloud":
                drawing = picture(run, prefix)
                consumers = _consumers(drawing, view)
            groups[key] = (prefix, drawing, consumers, [])
        groups[key][3].append(Spoke(run, read))
    return list(groups.values())


def _sorted_edges(p: Picture) -> list[str]:
    ids = [n.id for n in p.ordered()]
    return [f"  {a} --> {b}" for a, b in sorted(p.edges, key=lambda e: (ids.index(e[0]), e[1]))]


def _spoke_label(spoke: Spoke) -> str:
    models = model_names(spoke.run)
    held = f"{len(models)} model{'' if len(models) == 1 else 's'}: {_few(models)}" if models else "no models"
    return f"{spoke.run.stack}<br/><small>{_text(held)}</small>"


def render_topology(runs: list[StackRun]) -> str:
    """The fleet: the trusted stack once, the cloud stacks built alike drawn once with a node per stack,
    a stack's models as one part; its size grows by one node per cloud stack and never per model."""
    trusted_runs = [run for run in runs if _role(run.stack) == "trusted"]
    trusted = picture(trusted_runs[0]) if trusted_runs else None
    kinds = _kinds(trusted, [run for run in runs if _role(run.stack) == "cloud"])
    bundle_kinds = [k for k in kinds if not k[1].holding(_STACK_REFERENCE)]
    keys = _bundle_keys(trusted) if trusted else []
    if trusted and not bundle_kinds:
        # Where every cloud stack reads through a StackReference, the signing keys feed nothing drawn.
        for node in keys:
            del trusted.nodes[node.id]
        keys = []
    lines = ["flowchart LR"]
    edges: list[str] = []
    summary: list[str] = []
    kbs = trusted.holding(_KBS_CONFIG) if trusted else []
    if trusted:
        ordered = trusted.ordered()
        lines.append(f'  subgraph {_slug(trusted.run.stack)}["{trusted.run.stack}: {_TITLES["trusted"]}"]')
        lines += [f"    {node.mermaid()}" for node in ordered]
        lines.append("  end")
        edges += _sorted_edges(trusted)
        if ordered:
            summary.append(f"- **{trusted.run.stack}** ({_TITLES['trusted']}), {len(trusted.run.resources)} resources, built in this order: "
                           + ", ".join(node.title for node in ordered) + ".")
    for prefix, drawing, consumers, spokes in kinds:
        ordered = drawing.ordered()
        stacks = [s.run.stack for s in spokes]
        reads_bundle = not drawing.holding(_STACK_REFERENCE)
        entry = f"{prefix}_bundle" if reads_bundle else drawing.holding(_STACK_REFERENCE)[0].id
        lines.append(f'  subgraph {prefix}_stacks["{_text(_few(stacks))}: {_TITLES["cloud"]}"]')
        lines += [f'    {_slug(s.run.stack)}["{_spoke_label(s)}"]' for s in spokes]
        if reads_bundle:
            lines.append(f'    {entry}["trust bundle<br/><small>verified against the pinned key</small>"]')
        lines += [f"    {node.mermaid()}" for node in ordered]
        lines.append("  end")
        edges += _sorted_edges(drawing)
        for spoke in spokes:
            summary.append(f"- **{spoke.run.stack}** ({_TITLES['cloud']}), {len(spoke.run.resources)} resources, "
                           f"{_spoke_label(spoke).split('<small>')[1].removesuffix('</small>')}.")
        summary.append(f"- **{_few(stacks)}** {'is' if len(stacks) == 1 else 'are each'} built in this order: "
                       + ", ".join(node.title for node in ordered) + ".")
        if trusted:
            for spoke in spokes:
                if spoke.read:
                    edges.append(f'  {_slug(trusted.run.stack)} -- "{", ".join(spoke.read)}" --> {_slug(spoke.run.stack)}')
                    edges.append(f'  {_slug(spoke.run.stack)} -- "{"its bundle" if reads_bundle else "read"}" --> {entry}')
            if reads_bundle:
                edges += [f'  {key.id} -- "signs" --> {entry}' for key in keys]
            edges += [f'  {entry} -- "{", ".join(names)}" --> {node_id}' for node_id, names in consumers.items()]
            read = spokes[0].read
            how = (", as the trust bundle it signed for that stack (output `trustBundles`), all public, verified against the pinned "
                   "`trustBundleKey` before use" if reads_bundle else " through a StackReference, all public")
            if read:
                summary.append(f"- **Between the clusters**: {_and(stacks) if len(stacks) <= _NAMES_SHOWN else _few(stacks)} "
                               f"{'reads' if len(stacks) == 1 else 'each read'} {_and([f'`{n}`' for n in read])} from {trusted.run.stack}{how}"
                               + "".join(f"; {_and(names)} go{'es' if len(names) == 1 else ''} to {drawing.nodes[node_id].title}"
                                         for node_id, names in consumers.items()) + ".")
            else:
                summary.append(f"- **Between the clusters**: {trusted.run.stack} publishes nothing {_few(stacks)} reads.")
            # The run-time arrows: each confidential model attests to KBS, which then releases its secrets.
            confidential = [node for node in drawing.holding(_INFERENCE_SERVICE)
                            if any(r.inputs.get("spec", {}).get("predictor", {}).get("runtimeClassName") == RUNTIME_CLASS
                                   for r in node.resources if r.type == _INFERENCE_SERVICE)]
            if kbs and confidential:
                for model in confidential:
                    edges += [f'  {model.id} -. "CPU + GPU evidence" .-> {kbs[0].id}',
                              f'  {kbs[0].id} -. "secrets, after attestation" .-> {model.id}']
                summary.append(f"- **At run time** each model pod runs in its own confidential VM ({RUNTIME_CLASS}); KBS releases "
                               "its secrets only after that VM's CPU and GPU evidence passes attestation.")
    stacks = ", ".join(run.stack for run in runs) if len(runs) <= 2 + _NAMES_SHOWN else \
        f"{trusted_runs[0].stack if trusted_runs else ''} and {len(runs) - len(trusted_runs)} cloud stacks"
    return (
        f"# Topology: {stacks}\n\n"
        "Generated by `python -m scripts.plan` from the plan itself. Cloud stacks built alike share one drawing, each\n"
        "stack a node in it; a stack's models are one part (its node names them).\n\n"
        + "\n".join(summary) + "\n\n"
        "A solid arrow from A to B: B needs A, so Pulumi creates A first (arrows a longer path implies are left out).\n"
        "A labelled arrow: what crosses. A dotted arrow: traffic at run time.\n\n"
        "```mermaid\n" + "\n".join(lines + edges) + "\n```\n"
    )
