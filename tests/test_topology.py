"""topology.md: readable (a summary, under 40 nodes, no provider nodes), true to the plan (its arrows are
the registered dependencies; the cross-cluster arrow carries what the cloud stack reads), and valid
Mermaid by mermaid's own parser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from itertools import pairwise
from pathlib import Path

import pytest

from scripts import topology
from scripts.topology import picture, render_topology
from stacks.contracts import CLOUD_READS
from tests.conftest import plan_once

ROOT = Path(__file__).resolve().parents[1]
MERMAID = ROOT / "tests" / "mermaid"
NODE = re.compile(r'^\s+(\w+)\["(.*)"\]$')
EDGE = re.compile(r'^\s+(\w+) (?:-- "([^"]*)" -->|-\. "([^"]*)" \.->|-->) (\w+)$')


@pytest.fixture(scope="module")
def topologies() -> dict[str, tuple[list, str]]:
    return {env: (runs, render_topology(runs)) for env in ("dev", "prod") for runs in [plan_once(env)]}


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
             "cloud_operatorinstall_sandboxed_containers", "cloud_peerpods_peer_pods", "cloud_nimmodel_model_llama_3_1_8b")
        path(edges, "cloud_arocluster_aro", "cloud_operatorinstall_openshift_ai", "cloud_openshiftai_openshift_ai", "cloud_nimmodel_model_llama_3_1_8b")
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


def test_the_cross_cluster_arrow_carries_what_the_cloud_stack_reads(planned, monkeypatch):
    runs, text = planned
    trusted, cloud = runs
    _, edges, _ = parts(text)
    crossing = [(label, b) for a, label, b in edges if a == trusted.stack.replace("-", "_")]
    # Through the StackReference, or through the signed trust bundle the trusted stack's key signs.
    reader = "cloud_stackreference_trusted_stack" if cloud.of_type("pulumi:pulumi:StackReference") else f"{cloud.stack.replace('-', '_')}_bundle"
    assert crossing == [(", ".join(CLOUD_READS), reader)]
    if reader.endswith("_bundle"):
        assert [(a, label) for a, label, b in edges if b == reader and a != trusted.stack.replace("-", "_")] == [("trusted_privatekey_trust_bundle_key_a", "signs")]
    assert "initdataPcr8" not in text
    into = {b: label for a, label, b in edges if a == reader}
    # Each model reads its own workload (initdata, signed pointers); peer-pods-cm carries no default initdata.
    models = {r.name.removeprefix("model-") for r in cloud.resources if r.type == "confidential-ai:nim:NimModel"}
    assert into == {f"cloud_nimmodel_model_{m.replace('-', '_')}": "kbsResources, workloads" for m in models}
    # Derived from the contract, not written down twice.
    monkeypatch.setattr(topology, "CLOUD_READS", ("kbsUrl", "workloads"))
    assert f'-- "kbsUrl, workloads" --> {reader}' in render_topology(runs)


def test_attestation_is_drawn_between_the_model_and_kbs(planned):
    _, text = planned
    _, edges, _ = parts(text)
    assert ("cloud_nimmodel_model_llama_3_1_8b", "CPU + GPU evidence", "trusted_kbs_kbs_kbs") in edges
    assert ("trusted_kbs_kbs_kbs", "secrets, after attestation", "cloud_nimmodel_model_llama_3_1_8b") in edges


def test_a_plain_text_summary_comes_first(planned):
    runs, text = planned
    summary = text[:text.index("```mermaid")]
    for run in runs:
        assert f"**{run.stack}**" in summary and f"{len(run.resources)} resources, built in this order: " in summary
    assert f"reads {', '.join(f'`{n}`' for n in CLOUD_READS[:-1])} and `{CLOUD_READS[-1]}` from {runs[0].stack}" in summary
    assert "model llama-3-1-8b" in summary and "<br/>" not in summary


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
