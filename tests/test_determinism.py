"""Determinism: the same config gives byte-identical plans, even across processes with different hash
seeds; a change to one config value changes only the resources (and outputs) that depend on it.

"Depends on it" is checked without naming every resource: a resource may change when its new inputs
carry the new value (directly or encoded: see `tests.test_trust_boundary.revealed`), when only its
annotations change (restart triggers and digests), when a `Change` declares it as derived (e.g.
reference values hold a digest of initdata, which holds the KBS URL), when it reads a changed stack,
or when its inputs come from such a resource (its recorded dependencies). Anything else that changes
is an unexpected dependency. Each change also names the resource that must change once the stack registers
it, so a value that stops being wired fails too.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from scripts.offline import Registered, StackRun, run_stack
from scripts.offline.stackfile import STACKS_DIR, stack_path
from scripts.plan import plan_environment, write_plan
from tests.test_trust_boundary import canaries_for, leaked

ROOT = Path(__file__).resolve().parents[1]
ANNOTATION_PATHS = (("metadata",), ("spec", "template", "metadata"), ("spec", "predictor"), ("spec", "jobTemplate", "spec", "template", "metadata"))


def tree(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


_PLAN_BOTH = "import sys; from pathlib import Path; from scripts.plan import plan_environment, write_plan\nfor env in ('dev', 'prod'): write_plan(plan_environment(env), Path(sys.argv[1]) / env)"


def test_plans_are_byte_identical_across_processes_and_hash_seeds(tmp_path, example_plan):
    """Set or dict-order dependence on str hashing shows up only between processes with different seeds:
    this one's (random unless PYTHONHASHSEED is set) and a child's with another fixed seed."""
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    out = tmp_path / f"seed-{seed}"
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", _PLAN_BOTH, str(out)], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    in_process = tmp_path / "in-process"
    for name in ("dev", "prod"):
        write_plan(example_plan(name), in_process / name)
    assert tree(out) == tree(in_process)
    assert any(name.endswith("resources.json") for name in tree(out))


# --- One value changed ------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    stack_role: str
    key: str
    """Dotted path below `confidential-ai:` in the stack file, or a secure key path when `secret`."""
    value: Any
    must_change: Callable[[Registered], bool]
    """The resources that must change once the stack registers one of them."""
    derived: Callable[[Registered], bool] = lambda r: False
    """Resources that hold a value derived from this one without carrying it (digests)."""
    derived_outputs: tuple[str, ...] = ()
    secret: bool = False


def _configmap_with(key: str) -> Callable[[Registered], bool]:
    return lambda r: r.type == "kubernetes:core/v1:ConfigMap" and key in (r.inputs.get("data") or {})


def _peer_pods_cm(r: Registered) -> bool:
    return r.type == "kubernetes:core/v1:ConfigMap" and (r.inputs.get("metadata") or {}).get("name") == "peer-pods-cm"


CHANGES = {
    "trusted-kubeconfig": Change("trusted", "kubeconfig", "canary-rotated-kubeconfig", lambda r: r.type == "pulumi:providers:kubernetes", secret=True),
    # A rotated workload secret: its Secret, and the restart trigger on the resource-policy ConfigMap.
    "workload-secret": Change(
        "trusted",
        "kbsSecrets.ngc-api-key",
        "canary-rotated-ngc-api-key",
        lambda r: r.type == "kubernetes:core/v1:Secret" and r.name == "kbs-resources-ngc-api-key"
        or (r.type == "kubernetes:core/v1:ConfigMap" and r.name == "kbs-resource-policy"),
        secret=True,
    ),
    "vxlan-port": Change("cloud", "network.vxlanPort", 47813, _peer_pods_cm),
    "instance-sizes": Change("cloud", "peerPods.instanceSizes", ["Standard_NCC40ads_H100_v5", "Standard_DC4as_v5", "Standard_DC96as_v5"], _peer_pods_cm),
    "trustee-csv": Change(
        "trusted",
        "kbs.operator.startingCSV",
        "trustee-operator.v1.2.97",
        lambda r: r.type == "kubernetes:operators.coreos.com/v1alpha1:Subscription" and (r.inputs.get("spec") or {}).get("name") == "trustee-operator",
    ),
    "kbs-url": Change(
        "trusted",
        "kbs.url",
        "https://kbs-moved.example.org",
        lambda r: r.type == "kubernetes:route.openshift.io/v1:Route",
        # Reference values and the resource policy pin each workload's PCR8, a digest of its initdata,
        # which holds the KBS URL (FACTS 4).
        derived=lambda r: _configmap_with("reference_value")(r) or _configmap_with("resource-policy.rego")(r),
        # The KBS certificate names the host; initdata and the cloud side embed it.
        derived_outputs=("workloads", "kbsCaCert"),
    ),
}


def _set(node: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def plan_with(env: str, change: Change, stacks_dir: Path, example_plan: Callable[..., list[StackRun]]) -> tuple[list[StackRun], list[StackRun]]:
    """The environment's plan before (the session's baseline) and after the change."""
    stack = f"{env}-{change.stack_role}"
    if change.secret:
        secrets = canaries_for(env)
        base = example_plan(env, secret_values=secrets)
        secrets[stack][change.key] = change.value
        return base, plan_environment(env, secret_values=secrets)
    shutil.copytree(STACKS_DIR, stacks_dir, ignore=shutil.ignore_patterns("*.py", "config", "__pycache__"))
    document = yaml.load(stack_path(stack, stacks_dir).read_text(), Loader=yaml.CSafeLoader)
    top, *rest = change.key.split(".")
    config = document["config"]
    if rest:
        _set(config[f"confidential-ai:{top}"], rest, change.value)
    else:
        config[f"confidential-ai:{top}"] = change.value
    stack_path(stack, stacks_dir).write_text(yaml.safe_dump(document, sort_keys=False))
    return example_plan(env), plan_environment(env, stacks_dir)


def entries(runs: list[StackRun]) -> dict[str, Any]:
    """Everything a preview would diff: each resource's plain inputs and options, each stack output."""
    found: dict[str, Any] = {}
    for run in runs:
        for r in run.resources:
            found[r.urn] = {"inputs": r.inputs, "provider": r.provider, "dependsOn": r.depends_on, "protect": r.protect, "parent": r.parent}
        for name, value in run.outputs.items():
            found[f"output:{run.stack}:{name}"] = value
    return found


def without_annotations(inputs: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(inputs)
    for path in ANNOTATION_PATHS:
        node: Any = stripped
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop("annotations", None)
    return stripped


def unexpected_changes(before_runs: list[StackRun], after_runs: list[StackRun], change: Change) -> tuple[list[str], list[str]]:
    """(what changed, what changed without depending on the value); resources added or removed are unexpected."""
    before, after = entries(before_runs), entries(after_runs)
    by_urn = {r.urn: r for run in after_runs for r in run.resources}
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    explained = set()
    for key in changed:
        if key not in before or key not in after:
            continue
        if key.startswith("output:"):
            if leaked(str(change.value), after[key]) or key.rsplit(":", 1)[1] in change.derived_outputs:
                explained.add(key)
            continue
        r = by_urn[key]
        carries = leaked(_marker(change.value), after[key]["inputs"])
        annotations_only = without_annotations(before[key]["inputs"]) == without_annotations(after[key]["inputs"])
        if carries or annotations_only or change.derived(r) or r.type == "pulumi:pulumi:StackReference":
            explained.add(key)
    # A resource whose inputs come from a changed, explained resource depends on the value through it.
    while True:
        through = {k for k in changed if k not in explained and k in by_urn and explained & set(by_urn[k].depends_on)}
        if not through:
            break
        explained |= through
    return changed, [k for k in changed if k not in explained]


def _marker(value: Any) -> str:
    """The most specific text of a new value to look for in a resource."""
    if isinstance(value, list):
        return str(value[-1])
    return str(value).removeprefix("https://")


@pytest.mark.parametrize("env", ["dev", "prod"])
@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_value_changes_only_what_depends_on_it(env, name, tmp_path, example_plan):
    change = CHANGES[name]
    before_runs, after_runs = plan_with(env, change, tmp_path / "stacks", example_plan)
    changed, unexpected = unexpected_changes(before_runs, after_runs, change)
    assert unexpected == [], f"changing {change.key} changed resources that do not depend on it"
    must = [r.urn for run in after_runs if run.stack.endswith(change.stack_role) for r in run.resources if change.must_change(r)]
    assert set(must) <= set(changed), f"{change.key} is not wired to {sorted(set(must) - set(changed))}"
    if must or change.secret:
        assert changed, f"changing {change.key} changed nothing"


def _port_program() -> None:
    port = int(pulumi.Config().require("port"))
    provider = k8s.Provider("cloud-cluster", kubeconfig="fake", cluster_identifier="dev-cloud")
    opts = pulumi.ResourceOptions(provider=provider)
    carrier = k8s.core.v1.ConfigMap("carrier", metadata={"name": "carrier"}, data={"VXLAN_PORT": str(port)}, opts=opts)
    k8s.core.v1.ConfigMap("dependent", metadata={"name": "dependent"}, data={"digest": carrier.data.apply(lambda d: str(hash(d["VXLAN_PORT"])))}, opts=opts)
    k8s.core.v1.ConfigMap("restarted", metadata={"name": "restarted", "annotations": {"checksum": str(port * 3)}}, opts=opts)
    k8s.core.v1.ConfigMap("bystander", metadata={"name": "bystander"}, data={"derived": str(port * 2)}, opts=opts)


def test_an_undeclared_dependency_is_reported():
    change = Change("cloud", "port", 47813, lambda r: r.name == "carrier")
    before = [run_stack("dev-cloud", {"port": "9000"}, program=_port_program)]
    after = [run_stack("dev-cloud", {"port": "47813"}, program=_port_program)]
    changed, unexpected = unexpected_changes(before, after, change)
    assert [urn.rsplit("::", 1)[1] for urn in changed] == ["bystander", "carrier", "dependent", "restarted"]
    assert [urn.rsplit("::", 1)[1] for urn in unexpected] == ["bystander"]
