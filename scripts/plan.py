"""Offline plan of one environment: `python -m scripts.plan ENV [--out DIR]`.

Runs the real program for `ENV-trusted`, then `ENV-cloud`, under Pulumi's mock runtime. The cloud
stack's StackReference sees the trusted run's real outputs. Writes, per stack, `resources.json`,
`manifests/` and `outputs.json`, plus `topology.md` for the environment, and prints a preview-like
tree. Secrets appear only as "[secret]". Exit status 2 on bad input (config, stack file, arguments,
an --out that cannot be written), with one line per problem.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from scripts.cli import ArgumentParser, environment
from scripts.offline import SECRET, Registered, StackRun, run_stack
from scripts.offline.stackfile import STACKS_DIR, StackFileError, read_stack_file
from scripts.topology import render_topology
from stacks.config import ConfigError

ROLES = ("trusted", "cloud")


def plan_environment(env: str, stacks_dir: Path = STACKS_DIR, secret_values: dict[str, dict[str, str]] | None = None) -> list[StackRun]:
    """Run both stacks of `env`; `secret_values` maps stack -> key path -> value for secure entries."""
    runs: list[StackRun] = []
    for role in ROLES:
        stack = f"{env}-{role}"
        stack_file = read_stack_file(stack, stacks_dir, (secret_values or {}).get(stack))
        references = {run.stack: run.stack_outputs for run in runs}
        runs.append(run_stack(stack, stack_file.config, tuple(stack_file.secret_keys), references))
    return runs


def write_plan(runs: list[StackRun], out: Path) -> None:
    for run in runs:
        stack_dir = out / run.stack
        manifests = stack_dir / "manifests"
        manifests.mkdir(parents=True, exist_ok=True)
        for stale in manifests.glob("*.yaml"):
            stale.unlink()
        _write_json(stack_dir / "resources.json", [_resource_entry(r) for r in run.resources])
        _write_json(stack_dir / "outputs.json", {k: SECRET if k in run.secret_outputs else v for k, v in run.outputs.items()})
        for filename, manifest in kubernetes_manifests(run):
            (manifests / filename).write_text(yaml.dump(manifest, Dumper=_ManifestDumper, sort_keys=False, width=120))
    (out / "topology.md").write_text(render_topology(runs))


def kubernetes_manifests(run: StackRun) -> list[tuple[str, dict[str, Any]]]:
    """Each Kubernetes object as it would be sent to the cluster: apiVersion, kind, metadata, then the rest."""
    found = []
    for r in run.resources:
        if not r.custom or not r.type.startswith("kubernetes:") or r.type.startswith("pulumi:providers"):
            continue
        body = _sorted(r.redacted_inputs)
        if "kind" not in body:
            continue
        manifest = {k: body[k] for k in ("apiVersion", "kind", "metadata") if k in body}
        manifest.update({k: body[k] for k in sorted(body) if k not in manifest})
        if manifest["kind"] == "Secret":
            # Key names from the plain inputs: when the whole map is a secret, the redacted one is a string.
            for field in ("data", "stringData"):
                if field in manifest:
                    manifest[field] = {key: SECRET for key in sorted(r.inputs[field])}
        metadata = manifest.get("metadata", {})
        scope = metadata.get("namespace", "cluster")
        filename = f"{scope}--{manifest['kind']}--{metadata.get('name', r.name)}.yaml".lower()
        found.append((filename, manifest))
    return sorted(found)


class _ManifestDumper(yaml.SafeDumper):
    """Multi-line strings (TOML, Rego, PEM) as literal blocks, the way people write manifests."""

    def analyze_scalar(self, scalar: str) -> yaml.emitter.ScalarAnalysis:
        # PyYAML refuses block style for any tab; YAML allows tabs in block content (Rego indents with them).
        analysis = super().analyze_scalar(scalar.replace("\t", " "))
        analysis.scalar = scalar
        return analysis


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_ManifestDumper.add_representer(str, _represent_str)


def _sorted(value: Any) -> Any:
    """Mappings with their keys sorted, at every depth, so manifests diff cleanly."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def render_tree(run: StackRun) -> str:
    """A `pulumi preview`-like summary: top-level resources, their children counted by kind."""
    children: dict[str, list[Registered]] = {}
    for r in run.resources:
        children.setdefault(r.parent, []).append(r)

    def descendants(urn: str) -> list[Registered]:
        found = []
        for child in children.get(urn, []):
            found.append(child)
            found.extend(descendants(child.urn))
        return found

    lines = [f"{run.stack}: {len(run.resources)} resources, {len(run.outputs)} outputs"]
    top = [r for r in run.resources if r.parent.split("::")[2:3] == ["pulumi:pulumi:Stack"] or not r.parent]
    for i, r in enumerate(top):
        branch = "└─" if i == len(top) - 1 else "├─"
        below = [d for d in descendants(r.urn) if d.custom]
        kinds = Counter(_kind(d.type) for d in below)
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        lines.append(f"  {branch} {r.type} {r.name}" + (f"  ({len(below)}: {summary})" if below else ""))
    return "\n".join(lines)


def _kind(type_: str) -> str:
    return type_.rsplit(":", 1)[-1].rsplit("/", 1)[-1]


def _resource_entry(r: Registered) -> dict[str, Any]:
    return {
        "urn": r.urn,
        "type": r.type,
        "name": r.name,
        "parent": r.parent,
        "provider": r.provider,
        "dependsOn": r.depends_on,
        "protect": r.protect,
        "inputs": r.redacted_inputs,
    }


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m scripts.plan", description=__doc__.splitlines()[0])
    parser.add_argument("env", type=environment, help="environment name: plans stacks ENV-trusted and ENV-cloud")
    parser.add_argument("--out", type=Path, default=Path("out"), help="output directory (default: out/)")
    parser.add_argument("--stacks-dir", type=Path, default=STACKS_DIR, help="where the Pulumi.<stack>.yaml files are (default: stacks/)")
    args = parser.parse_args(argv)
    if problem := _out_problem(args.out):
        print(f"--out {args.out}: {problem}", file=sys.stderr)
        return 2
    try:
        runs = plan_environment(args.env, args.stacks_dir)
    except (ConfigError, StackFileError) as err:
        print(str(err), file=sys.stderr)
        return 2
    try:
        write_plan(runs, args.out)
    except OSError as err:
        print(f"--out {args.out}: cannot write {err.filename}: {err.strerror or err}", file=sys.stderr)
        return 2
    for run in runs:
        print(render_tree(run))
        for warning in run.warnings:
            print(f"warning: {run.stack}: {warning}", file=sys.stderr)
    print(f"\nwrote {args.out}/ ({', '.join(run.stack for run in runs)}, topology.md)")
    return 0


def _out_problem(out: Path) -> str | None:
    """Why the plan cannot be written under `out`, found before the run and without creating anything."""
    nearest = next(p for p in (out, *out.parents) if p.exists())
    if not nearest.is_dir():
        return f"{nearest} is not a directory"
    if not os.access(nearest, os.W_OK | os.X_OK):
        return f"{nearest} is not writable"
    return None


if __name__ == "__main__":
    sys.exit(main())
