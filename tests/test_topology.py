"""topology.md: readable (a summary, under 40 nodes, no provider nodes, one node more per cloud stack and
none per model), true to the plan (its arrows are
the registered dependencies; the cross-cluster arrow carries what the cloud stack reads), and valid
Mermaid by mermaid's own parser."""

from __future__ import annotations

import json
import pickle
import re
import shutil
import subprocess
from itertools import pairwise
from pathlib import Path

import pytest
import yaml

from scripts import topology
from scripts.topology import picture, render_topology
from stacks.contracts import CLOUD_READS
from scripts.bench import write_stacks
from scripts.offline.stackfile import stack_path
from scripts.plan import plan_environment
from tests.conftest import plan_once

ROOT = Path(__file__).resolve().parents[1]
MERMAID = ROOT / "tests" / "mermaid"
NODE = re.compile(r'^\s+(\w+)\["(.*)"\]$')
EDGE = re.compile(r'^\s+(\w+) (?:-- "([^"]*)" -->|-\. "([^"]*)" \.->|-->) (\w+)$')


FLEET_SPOKES, FLEET_MODELS = 10, 10


def write_fleet(into: Path, spokes: int, models: int, others: int = 2) -> Path:
    """prod's stack files with `spokes` cloud stacks: prod-cloud grown to `models` models by scripts.bench
    write_stacks, the others copies of prod-cloud-eastus serving its first `others` (prod's own two: an NGC and an encrypted model, so every spoke is built alike), each a spoke of
    prod-trusted with hostnames of its own. (Every spoke at full size shows nothing more: the diagram
    grows by no node per model, which prod-cloud proves, and would cost a plan of every model everywhere.)"""
    write_stacks("prod", models, into)
    trusted_path = stack_path("prod-trusted", into)
    trusted = yaml.load(trusted_path.read_text(), Loader=yaml.CSafeLoader)
    served = yaml.load(stack_path("prod-cloud", into).read_text(), Loader=yaml.CSafeLoader)["config"]["confidential-ai:models"]
    fleet = trusted["config"]["confidential-ai:spokes"]
    template = stack_path("prod-cloud-eastus", into).read_text()
    for i in range(2, spokes + 1):
        region = "eastus" if i == 2 else f"r{i:02d}"
        name = f"prod-cloud-{region}"
        # The cluster's own names (API, console: its ingress domain) follow the region.
        cloud = yaml.load(template.replace("prod-cloud-eastus", name).replace("ocp-prod-eastus", f"ocp-prod-{region}"), Loader=yaml.CSafeLoader)
        cloud["config"]["confidential-ai:models"] = served[:others]
        stack_path(name, into).write_text(yaml.safe_dump(cloud, sort_keys=False))
        domain = f"apps.ocp-prod-{region}.example.com"
        fleet[name] = {m["workload"]: {"servingHostnames": [f"{m['workload']}-{m['workload']}.{domain}"]} for m in served[:others]}
    trusted_path.write_text(yaml.safe_dump(trusted, sort_keys=False))
    return into


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> tuple[list, str]:
    """A fleet of 10 cloud stacks, one of them serving 10 models, planned once for the module."""
    runs = plan_environment("prod", write_fleet(tmp_path_factory.mktemp("fleet") / "stacks", FLEET_SPOKES, FLEET_MODELS))
    return runs, render_topology(runs)


@pytest.fixture(scope="module")
def topologies(fleet) -> dict[str, tuple[list, str]]:
    return {**{env: (runs, render_topology(runs)) for env in ("dev", "prod") for runs in [plan_once(env)]}, "fleet": fleet}


@pytest.fixture(params=["dev", "prod"])
def planned(request, topologies):
    return topologies[request.param]


def diagram(text: str) -> str:
    return re.search(r"^```mermaid\n(.*?)^```$", text, re.S | re.M)[1]


def parts(text: str) -> tuple[dict[str, str], list[tuple[str, str, str]], set[str]]:
    """Nodes (id -> label), edges (from, label, to) and subgraph ids of a generated diagram."""
    nodes, edges, subgraphs = {}, [], set()
    for line in diagram(text).splitlines()[1:]:
        if m := NODE.match(line):
            nodes[m[1]] = m[2]
        elif m := EDGE.match(line):
            edges.append((m[1], m[2] or m[3] or "", m[4]))
        elif m := re.match(r'^  subgraph (\w+)\["[^"]*"\]$', line):
            subgraphs.add(m[1])
        else:
            assert line.strip() == "end", f"a line neither node, edge nor subgraph: {line!r}"
    return nodes, edges, subgraphs


def path(edges: list[tuple[str, str, str]], *steps: str) -> None:
    """Each step leads to the next, by an arrow or a chain of them (an arrow a chain implies is left out)."""
    solid = {(a, b) for a, label, b in edges if not label}  # dependency arrows carry no label
    for a, b in pairwise(steps):
        assert b in reachable(solid, a), f"no way from {a} to {b}"


def test_dev_reads_in_the_order_of_the_work(planned):
    runs, text = planned
    _, edges, _ = parts(text)
    if runs[0].stack == "dev-trusted":
        path(edges, "cloud_clusternetwork_cluster_network", "cloud_podvmnetwork_pod_vm_network", "cloud_arocluster_aro",
             "cloud_operatorinstall_sandboxed_containers", "cloud_peerpods_peer_pods", "cloud_models")
        path(edges, "cloud_arocluster_aro", "cloud_operatorinstall_openshift_ai", "cloud_openshiftai_openshift_ai", "cloud_models")
    else:
        path(edges, "cloud_resourcegroup_resource_group", "cloud_podvmnetwork_pod_vm_network", "cloud_peerpods_peer_pods", "cloud_models")
    path(edges, "trusted_operatorinstall_trustee", "trusted_kbs_kbs_policies", "trusted_kbs_kbs_kbs", "trusted_kbs_kbs_route")


def reachable(edges: set[tuple[str, str]], start: str) -> set[str]:
    found, todo = set(), [start]
    while todo:
        node = todo.pop()
        for a, b in edges:
            if a == node and b not in found:
                found.add(b)
                todo.append(b)
    return found


def test_every_arrow_is_a_registered_dependency_and_none_is_implied(planned):
    runs, _ = planned
    for run in runs:
        drawn = picture(run)
        by_urn = {r.urn: r for r in run.resources}
        node_of = {r.urn: node.id for node in drawn.nodes.values() for r in node.resources}
        for a, b in drawn.edges:
            needed = {d for r in drawn.nodes[b].resources for d in r.depends_on}
            needed |= {d for r in drawn.nodes[b].resources if r.provider in by_urn for d in by_urn[r.provider].depends_on}
            assert a in {node_of.get(d) for d in needed}, f"{a} --> {b} is no dependency"
            assert b not in reachable(drawn.edges - {(a, b)}, a), f"{a} --> {b} is implied by a longer path"


def test_small_enough_to_read_with_no_provider_and_no_lone_node(planned):
    runs, text = planned
    nodes, edges, subgraphs = parts(text)
    assert len(nodes) < 40
    assert not [label for label in nodes.values() if "provider" in label.lower()]
    linked = {a for a, _, _ in edges} | {b for _, _, b in edges}
    assert set(nodes) - linked == set(), "nodes without an arrow"
    assert linked <= set(nodes) | subgraphs, "an arrow to nothing"


def test_the_cross_cluster_arrows_carry_what_each_cloud_stack_reads(planned, monkeypatch):
    runs, text = planned
    trusted, *clouds = runs
    _, edges, _ = parts(text)
    source = trusted.stack.replace("-", "_")
    crossing = [(label, b) for a, label, b in edges if a == source]

    def entry_of(run) -> str:
        """Through the StackReference, or through the signed trust bundle the trusted stack's key signs."""
        return "cloud_stackreference_trusted_stack" if run.of_type("pulumi:pulumi:StackReference") else "cloud_bundle"

    # One arrow into each cloud stack's node (prod: prod-cloud and prod-cloud-eastus), which reads through the shared entry.
    entry = entry_of(clouds[0])
    assert crossing == [(", ".join(CLOUD_READS), run.stack.replace("-", "_")) for run in clouds]
    assert [(a, b) for a, label, b in edges if label in ("its bundle", "read")] == [(run.stack.replace("-", "_"), entry) for run in clouds]
    if entry == "cloud_bundle":
        assert [(a, label) for a, label, b in edges if b == entry and label == "signs"] == [("trusted_privatekey_trust_bundle_key_a", "signs")]
    assert "initdataPcr8" not in text
    # Every model reads its own workload (initdata, signed pointers); peer-pods-cm carries no default initdata.
    assert {b: label for a, label, b in edges if a == entry} == {"cloud_models": "kbsResources, workloads"}
    # Derived from the contract, not written down twice.
    monkeypatch.setattr(topology, "CLOUD_READS", ("kbsUrl", "workloads"))
    assert f'{source} -- "kbsUrl, workloads" --> {clouds[-1].stack.replace("-", "_")}' in render_topology(runs)


def test_a_model_node_names_only_what_every_model_reads(planned):
    runs, _ = planned
    cloud = runs[1]
    drawn = picture(cloud)
    models = drawn.nodes["cloud_models"]
    assert len(models.groups) == len(topology.model_names(cloud)) == 2
    view = topology.cloud_view(runs[0].outputs, cloud.stack)
    assert topology._consumers(drawn, view)["cloud_models"] == ["kbsResources", "workloads"]
    # A model that read nothing from the trusted side would take the arrow off, though the other model reads both.
    models.groups[next(iter(models.groups))] = []
    assert "cloud_models" not in topology._consumers(drawn, view)


def test_attestation_is_drawn_between_the_models_and_kbs(planned):
    _, text = planned
    _, edges, _ = parts(text)
    assert ("cloud_models", "CPU + GPU evidence", "trusted_kbs_kbs_kbs") in edges
    assert ("trusted_kbs_kbs_kbs", "secrets, after attestation", "cloud_models") in edges


def test_a_plain_text_summary_comes_first(planned):
    runs, text = planned
    summary = text[:text.index("```mermaid")]
    for run in runs:
        assert f"**{run.stack}**" in summary and f"{len(run.resources)} resources" in summary
    assert "built in this order: " in summary
    assert f"{', '.join(f'`{n}`' for n in CLOUD_READS[:-1])} and `{CLOUD_READS[-1]}` from {runs[0].stack}" in summary
    assert "2 models: llama-3-1-8b, " in summary and "<br/>" not in summary


# --- at fleet scale --------------------------------------------------------------------------------

LONGEST_LABEL = 110  # characters of a node's label text, markup left out


def label_text(label: str) -> str:
    return re.sub(r"<[^>]+>", " ", label)


def test_the_fleet_grows_by_one_node_per_cloud_stack_and_none_per_model(fleet, topologies):
    runs, text = fleet
    served = {run.stack: len(topology.model_names(run)) for run in runs[1:]}
    assert len(runs) == 1 + FLEET_SPOKES and served["prod-cloud"] == FLEET_MODELS and set(served.values()) == {2, FLEET_MODELS}
    nodes, edges, subgraphs = parts(text)
    small_nodes, small_edges, small_subgraphs = parts(topologies["prod"][1])
    extra = FLEET_SPOKES - 2  # prod has two cloud stacks
    assert len(nodes) == len(small_nodes) + extra
    assert len(edges) == len(small_edges) + 2 * extra  # per cloud stack: what crosses, and into its bundle
    assert subgraphs == small_subgraphs == {"prod_trusted", "cloud_stacks"}
    longest = max(len(label_text(label)) for label in [*nodes.values(), *(label for _, label, _ in edges)])
    assert longest <= LONGEST_LABEL
    assert max(len(line) for line in diagram(text).splitlines()) <= 2 * LONGEST_LABEL
    # Each cloud stack is there by name, with its model count; the models are not drawn one by one.
    for run in runs[1:]:
        count = served[run.stack]
        assert nodes[run.stack.replace("-", "_")].startswith(f"{run.stack}<br/><small>{count} model{'s' if count > 1 else ''}: "), nodes[run.stack.replace("-", "_")]
    assert not [node for node in nodes if "nimmodel" in node or "llama" in node]


def test_cloud_stacks_built_differently_get_a_drawing_each(topologies):
    (prod_trusted, prod_cloud, prod_eastus), (_, dev_cloud) = topologies["prod"][0], topologies["dev"][0]
    nodes, edges, subgraphs = parts(render_topology([prod_trusted, prod_cloud, dev_cloud, prod_eastus]))
    assert subgraphs == {"prod_trusted", "cloud_stacks", "cloud2_stacks"}
    # dev-cloud (a new ARO cluster) has its own parts; prod-cloud-eastus joins prod-cloud's drawing.
    assert "cloud2_arocluster_aro" in nodes and "cloud_arocluster_aro" not in nodes
    assert ("prod_cloud_eastus", "its bundle", "cloud_bundle") in edges and ("dev_cloud", "its bundle", "cloud2_bundle") in edges


def test_rendering_is_byte_identical(fleet):
    runs, text = fleet
    assert render_topology(runs).encode() == text.encode()
    assert render_topology(pickle.loads(pickle.dumps(runs))).encode() == text.encode()


def test_every_mermaid_diagram_parses_with_mermaids_own_parser(topologies):
    if shutil.which("node") is None or not (MERMAID / "node_modules" / "mermaid").is_dir():
        pytest.skip("mermaid's parser is not installed: npm ci --prefix tests/mermaid (.ci/run does)")
    documents = [text for _, text in topologies.values()] + [p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]]
    diagrams = [d for doc in documents for d in re.findall(r"^```mermaid\n(.*?)^```$", doc, re.S | re.M)]
    broken = "flowchart LR\n  a[x --> b"  # the check itself must be able to fail
    done = subprocess.run(["node", str(MERMAID / "parse.mjs")], input=json.dumps([*diagrams, broken]), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    *parsed, refused = json.loads(done.stdout)
    assert parsed == ["flowchart-v2"] * len(diagrams)
    assert refused.startswith("error: Parse error")
