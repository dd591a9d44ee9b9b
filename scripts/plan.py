"""Offline plan of one environment: `python -m scripts.plan ENV [--out DIR]`.

Runs the real program for `ENV-trusted`, then `ENV-cloud`, under Pulumi's mock runtime. A cloud stack
that reads a trust bundle (config `trustBundle`) is handed the bundle the trusted run signed for it;
one that reads a StackReference sees the trusted run's real outputs. `--trust-bundle FILE` plans only
the cloud stack the bundle names, from that file (as the deploy pipeline hands it over). Writes, per stack, `resources.json`,
`manifests/` and `outputs.json`, plus `topology.md` for the environment, and prints a preview-like
tree. Secrets appear only as "[secret]". Exit status 2 on bad input (config, stack file, arguments,
an --out that cannot be written), with one line per problem.
"""

from __future__ import annotations

import base64
import binascii
import gc
import io
import json
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from components import trust_bundle as jws
from components.sealed_secret import pointer_target
from scripts.cli import ArgumentParser, environment
from scripts.offline import SECRET, Registered, StackRun, collector_paused, run_stack
from scripts.offline.stackfile import STACKS_DIR, StackFileError, cloud_stacks, read_stack_file
from scripts.topology import render_topology
from stacks.config import ConfigError, clock


def plan_environment(env: str, stacks_dir: Path = STACKS_DIR, secret_values: dict[str, dict[str, str]] | None = None) -> list[StackRun]:
    """Run the trusted stack of `env`, then each of its cloud stacks; `secret_values` maps stack -> key path ->
    value for secure entries."""
    runs: list[StackRun] = []
    with tempfile.TemporaryDirectory(prefix="trust-bundles-") as handed:
        for stack in [f"{env}-trusted", *cloud_stacks(env, stacks_dir)]:
            stack_file = read_stack_file(stack, stacks_dir, (secret_values or {}).get(stack))
            config = stack_file.config
            if stack != f"{env}-trusted" and reads_bundle(config):
                config = with_bundle(config, _handed_bundle(runs[0], stack, Path(handed)))
            references = {run.stack: run.stack_outputs for run in runs}
            runs.append(run_stack(stack, config, tuple(stack_file.secret_keys), references))
    return runs


def plan_from_bundle(env: str, bundle: Path, stacks_dir: Path = STACKS_DIR, secret_values: dict[str, dict[str, str]] | None = None) -> list[StackRun]:
    """Plan the cloud stack `bundle` names, reading the trusted side from that file (the program verifies it)."""
    try:
        claims = jws.unverified_payload(bundle.read_text())
    except OSError as err:
        raise BundleFileError(f"--trust-bundle {bundle}: {err.strerror or err}") from None
    except (UnicodeDecodeError, jws.BundleError) as err:
        raise BundleFileError(f"--trust-bundle {bundle}: not a trust bundle: {err if isinstance(err, jws.BundleError) else 'not text'}") from None
    stack = claims.get("cloudStack")
    if claims.get("environment") != env or not isinstance(stack, str) or not stack.startswith(f"{env}-cloud"):
        raise BundleFileError(f"--trust-bundle {bundle}: it is for {stack!r} of environment {claims.get('environment')!r}, not a cloud stack of {env}")
    stack_file = read_stack_file(stack, stacks_dir, (secret_values or {}).get(stack))
    if not reads_bundle(stack_file.config):
        raise BundleFileError(f"--trust-bundle {bundle}: {stack} reads no trust bundle (set trustBundle in its stack file)")
    config = with_bundle(stack_file.config, bundle.resolve())
    return [run_stack(stack, config, tuple(stack_file.secret_keys), {})]


class BundleFileError(Exception):
    """A `--trust-bundle` file that cannot be planned from; one line."""


_TRUST_BUNDLE = "confidential-ai:trustBundle"


def reads_bundle(config: dict[str, str]) -> bool:
    """A cloud stack's config that sets `trustBundle` (a trusted stack's `trustBundle` is what it signs)."""
    return config.get("confidential-ai:role") == "cloud" and _TRUST_BUNDLE in config


def _handed_bundle(trusted: StackRun, stack: str, directory: Path) -> Path:
    """The bundle the trusted run signed for `stack`, as the file the pipeline would hand over."""
    bundles = trusted.outputs.get("trustBundles")
    if not isinstance(bundles, dict) or not isinstance(bundles.get(stack), str):
        raise BundleFileError(f"{trusted.stack} made no trust bundle for {stack} (output trustBundles.{stack})")
    path = directory / f"{trusted.stack}.trustBundles.{stack}.jws"
    path.write_text(bundles[stack])
    return path


def with_bundle(config: dict[str, str], path: Path) -> dict[str, str]:
    """`config` with trustBundle.file pointing at `path` (the setting is an object, passed as JSON text)."""
    settings = json.loads(config[_TRUST_BUNDLE]) if config[_TRUST_BUNDLE][:1] == "{" else {}
    return {**config, _TRUST_BUNDLE: json.dumps({**settings, "file": str(path)}, separators=(",", ":"))}


def write_plan(runs: list[StackRun], out: Path) -> None:
    with collector_paused():
        _write_plan(runs, out)


def _write_plan(runs: list[StackRun], out: Path) -> None:
    for run in runs:
        stack_dir = out / run.stack
        manifests = stack_dir / "manifests"
        manifests.mkdir(parents=True, exist_ok=True)
        written = kubernetes_manifests(run)
        # Files this plan writes again are overwritten; only those of objects gone are deleted.
        names = {filename for filename, _ in written}
        for stale in manifests.glob("*.yaml"):
            if stale.name not in names:
                stale.unlink()
        _write_json(stack_dir / "resources.json", [_resource_entry(r) for r in run.resources])
        _write_json(stack_dir / "outputs.json", {k: SECRET if k in run.secret_outputs else v for k, v in run.outputs.items()})
        for filename, manifest in written:
            (manifests / filename).write_text(dump_manifest(manifest))
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
                    manifest[field] = {key: _secret_value_shown(field, value) for key, value in sorted(r.inputs[field].items())}
        metadata = manifest.get("metadata", {})
        scope = metadata.get("namespace", "cluster")
        filename = f"{scope}--{manifest['kind']}--{metadata.get('name', r.name)}.yaml".lower()
        found.append((filename, manifest))
    return sorted(found)


def _secret_value_shown(field: str, value: Any) -> str:
    """A Secret value as the plan shows it: a sealed pointer as the KBS resource it names (it is public,
    and `[secret]` would read as if the secret itself went to the cluster); anything else redacted."""
    text = value if isinstance(value, str) else ""
    if field == "data":
        try:
            text = base64.b64decode(text, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return SECRET
    target = pointer_target(text)
    return f"sealed pointer -> {target}" if target else SECRET


def dump_manifest(manifest: dict[str, Any]) -> str:
    """The manifest as YAML: libyaml's emitter where it writes what PyYAML's does, PyYAML's otherwise.

    libyaml is about six times faster, but differs from PyYAML on tabs (our block-style override below),
    non-ASCII and control characters, empty or multi-line keys and kept trailing newlines; a manifest with
    any of those is written by PyYAML, so the files are the same whichever emitter wrote them
    (tests/test_plan.py fuzzes that)."""
    if _CManifestDumper is None or not _libyaml_safe(manifest):
        return yaml.dump(manifest, Dumper=_ManifestDumper, sort_keys=False, width=120)
    try:
        node = _node(manifest, set())
    except _NotPlainYaml:
        return yaml.dump(manifest, Dumper=_CManifestDumper, sort_keys=False, width=120)
    # What yaml.dump does with the node its representer would have built.
    stream = io.StringIO()
    dumper = _CManifestDumper(stream, default_flow_style=False, width=120, sort_keys=False)
    try:
        dumper.open()
        dumper.serialize(node)
        dumper.close()
    finally:
        dumper.dispose()
    return stream.getvalue()


class _NotPlainYaml(Exception):
    pass


_STR, _NULL, _BOOL, _INT = (f"tag:yaml.org,2002:{kind}" for kind in ("str", "null", "bool", "int"))


def _node(value: Any, containers: set[int]) -> yaml.Node:
    """The node PyYAML's safe representer (with `_represent_str`) builds for `value`, in one plain walk
    instead of its per-value dispatch: about a third of a manifest's writing. Types other than exactly
    str, bool, int, float, None, dict and list, and a container met twice (an alias), are left to it."""
    kind = type(value)
    if kind is str:
        return yaml.ScalarNode(_STR, value, style="|" if "\n" in value else None)
    if kind is dict or kind is list:
        if id(value) in containers:
            raise _NotPlainYaml
        containers.add(id(value))
        if kind is dict:
            return yaml.MappingNode(_MAP, [(_node(k, containers), _node(v, containers)) for k, v in value.items()], flow_style=False)
        return yaml.SequenceNode(_SEQ, [_node(v, containers) for v in value], flow_style=False)
    if value is None:
        return yaml.ScalarNode(_NULL, "null")
    if kind is bool:
        return yaml.ScalarNode(_BOOL, "true" if value else "false")
    if kind is int:
        return yaml.ScalarNode(_INT, str(value))
    if kind is float:
        return yaml.SafeDumper.represent_float(_FLOATS, value)
    raise _NotPlainYaml


_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


def _libyaml_safe(value: Any, key: bool = False) -> bool:
    if isinstance(value, str):
        return value.isascii() and value.isprintable() if key else _LIBYAML_SAFE_TEXT.fullmatch(value) is not None
    if isinstance(value, dict):
        return all(isinstance(k, str) and k and _libyaml_safe(k, key=True) and _libyaml_safe(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_libyaml_safe(v) for v in value)
    return value is None or isinstance(value, bool | int | float)


# Printable ASCII lines, no tab, not ending in a blank line (a kept `|+` block).
_LIBYAML_SAFE_TEXT = re.compile(r"(?:[ -~]*\n)*[ -~]*(?<!\n\n)\Z")


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
# A representer only to call `represent_float` with: no default style, no aliases.
_FLOATS = yaml.SafeDumper(io.StringIO())
_CManifestDumper: type | None = None
if hasattr(yaml, "CSafeDumper"):  # PyYAML built with libyaml (the PyPI wheels are)

    class _CManifestDumper(yaml.CSafeDumper):  # type: ignore[no-redef]
        pass

    _CManifestDumper.add_representer(str, _represent_str)


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
    parser.add_argument("env", type=environment, help="environment name: plans ENV-trusted and every cloud stack of ENV (ENV-cloud, ENV-cloud-<name>)")
    parser.add_argument("--out", type=Path, default=Path("out"), help="output directory (default: out/)")
    parser.add_argument("--trust-bundle", type=Path, help="plan only the cloud stack this bundle file names, reading the trusted side from it")
    parser.add_argument("--stacks-dir", type=Path, default=STACKS_DIR, help="where the Pulumi.<stack>.yaml files are (default: stacks/)")
    parser.add_argument("--as-of", type=clock.as_of_argument, metavar="YYYY-MM-DD", help="judge expiry dates as of this day (default: today, UTC)")
    args = parser.parse_args(argv)
    if problem := _out_problem(args.out):
        print(f"--out {args.out}: {problem}", file=sys.stderr)
        return 2
    try:
        with clock.as_of(args.as_of):
            runs = plan_from_bundle(args.env, args.trust_bundle, args.stacks_dir) if args.trust_bundle else plan_environment(args.env, args.stacks_dir)
    except (ConfigError, StackFileError, BundleFileError) as err:
        print(str(err), file=sys.stderr)
        return 2
    try:
        write_plan(runs, args.out)
    except OSError as err:
        print(f"--out {args.out}: cannot write {err.filename}: {err.strerror or err}", file=sys.stderr)
        return 2
    for run in runs:
        print(render_tree(run))
        for note in run.notes:
            print(f"note: {run.stack}: {note}", file=sys.stderr)
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
    # A one-shot process: what it allocates lives until it exits, so collector passes would only
    # rescan it (scripts.bench: a tenth of the plan's CPU). Not in main(), which tests call in-process.
    gc.disable()
    status = main()
    # Shutting down, the interpreter still runs a full collection (collector disabled or not), which
    # rescans all that is left and frees the modules' cycles object by object. Frozen objects are out
    # of its reach; the process's memory goes back at once (scripts.bench: a quarter of the CPU of a
    # one-model plan). Output is flushed and files closed as before.
    gc.freeze()
    sys.exit(status)
