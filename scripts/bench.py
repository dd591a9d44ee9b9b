"""Benchmark: the offline plan against the SDK floor, `python -m scripts.bench [--models 1,10,100] [--pairs N]`.

For each model count it writes a copy of the environment's stack files whose cloud stack serves that
many models (the environment's own first, then copies of its first under other names), then runs,
as paired A/B in fresh child processes of this one, alternating which goes first:

- plan: `python -m scripts.plan ENV --stacks-dir COPY --out TMP`, the real command, files written;
- floor: a program that imports the same SDK modules the plan imported and registers, under Pulumi's
  mocks, as many resources of the same types per stack (empty inputs, explicit providers), and
  writes nothing: what any program of this size pays to the SDK.

It prints wall and CPU medians, peak memory (max RSS), the median of the per-pair plan/floor ratios
and the per-model marginal cost. Targets (issue 16): plan/floor <= 1.15 at 1 model, marginal plan
cost <= 20 ms per model at 100 models. Nothing here asserts; docs/benchmarks.md says how to read it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Top-level packages that are the Pulumi SDK and what it imports to talk to the engine.
SDK_PACKAGES = ("pulumi", "pulumi_kubernetes", "pulumi_azure_native", "pulumi_tls", "grpc", "google")


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float
    max_rss_kib: int


def run_child(args: list[str]) -> Sample:
    """Run `python ARGS` from the repository root; wall clock, CPU (user + system) and peak RSS of the child."""
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            stderr.seek(0)
            last = stderr.read().decode(errors="replace").strip().splitlines()[-1:]
            raise SystemExit(f"bench: python {' '.join(args)} exited {child.returncode}: {''.join(last)}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def write_stacks(env: str, models: int, into: Path) -> Path:
    """A copy of stacks/*.yaml whose ENV-cloud serves `models` models: the example's own first, then
    copies of its first model under other names, each with its own copy of that model's workload on
    ENV-trusted (one initdata and one serving certificate per model, as a real deployment has)."""
    import yaml

    from scripts.offline.stackfile import STACKS_DIR, stack_path

    into.mkdir(parents=True)
    for path in STACKS_DIR.glob("Pulumi.*.yaml"):
        shutil.copy(path, into / path.name)
    cloud_path, trusted_path = stack_path(f"{env}-cloud", into), stack_path(f"{env}-trusted", into)
    cloud, trusted = yaml.safe_load(cloud_path.read_text()), yaml.safe_load(trusted_path.read_text())
    own = cloud["config"]["confidential-ai:models"]
    workloads = trusted["config"]["confidential-ai:workloads"]
    first = own[0]
    workload = next(w for w in workloads if w["name"] == first["workload"])
    # The Route host is <model>-<namespace>.<ingress domain>, the namespace named after the model.
    domain = workload["servingHostnames"][0].split(".", 1)[1]
    copies = [f"{first['name'][:24]}-{i:03d}" for i in range(len(own) + 1, models + 1)]
    cloud["config"]["confidential-ai:models"] = [*own[:models], *({**first, "name": name, "workload": name} for name in copies)]
    workloads += [{**workload, "name": name, "servingHostnames": [f"{name}-{name}.{domain}"]} for name in copies]
    cloud_path.write_text(yaml.safe_dump(cloud, sort_keys=False))
    trusted_path.write_text(yaml.safe_dump(trusted, sort_keys=False))
    return into


def probe(env: str, stacks_dir: Path) -> dict[str, Any]:
    """What the floor must match: the SDK modules the plan imports, each stack's resources (type, custom)."""
    from scripts.plan import plan_environment

    runs = plan_environment(env, stacks_dir)
    modules = sorted(name for name in sys.modules if name.split(".")[0] in SDK_PACKAGES)
    return {"modules": modules, "stacks": [{"stack": run.stack, "resources": [[r.type, r.custom] for r in run.resources]} for run in runs]}


def floor(spec: dict[str, Any]) -> list[int]:
    """Import the SDK modules, then register the same resources per stack under mocks; write nothing.
    Returns how many resources each stack registered (besides the stack itself)."""
    import asyncio
    import importlib

    for module in spec["modules"]:
        importlib.import_module(module)
    import pulumi
    from pulumi.runtime import mocks, settings
    from pulumi.runtime.stack import run_pulumi_func

    class Echo(pulumi.runtime.Mocks):
        def new_resource(self, args):
            return f"{args.name}-id", dict(args.inputs)

        def call(self, args):
            return {}

    registered = []
    for stack in spec["stacks"]:
        resources = stack["resources"]

        def program(resources: list[list[Any]] = resources) -> None:
            providers: dict[str, pulumi.ProviderResource] = {}
            for i, (type_, _custom) in enumerate(resources):
                if type_.startswith("pulumi:providers:"):
                    providers[type_.split(":")[2]] = pulumi.ProviderResource(type_.split(":")[2], f"p{i}", {})
            for i, (type_, custom) in enumerate(resources):
                if type_.startswith("pulumi:providers:"):
                    continue
                if custom:
                    provider = providers.get(type_.split(":")[0])
                    pulumi.CustomResource(type_, f"r{i}", {}, pulumi.ResourceOptions(provider=provider))
                else:
                    pulumi.ComponentResource(type_, f"r{i}")

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        settings.set_root_resource(None)
        echo = Echo()
        monitor = mocks.MockMonitor(echo)
        # The collector keeps its default thresholds: the floor is what any program pays.
        mocks.set_mocks(echo, project="confidential-ai", stack=stack["stack"], preview=False, monitor=monitor)
        loop.run_until_complete(run_pulumi_func(program))
        loop.close()
        registered.append(sum(1 for urn in monitor.resources if "::pulumi:pulumi:Stack::" not in urn))
    return registered


def median(values: list[float]) -> float:
    return statistics.median(values)


def bench(env: str, model_counts: list[int], pairs: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        for models in model_counts:
            stacks_dir = write_stacks(env, models, work / f"stacks-{models}")
            spec_path = work / f"floor-{models}.json"
            spec_path.write_text(json.dumps(probe_in_child(env, stacks_dir)))
            spec = json.loads(spec_path.read_text())
            out = work / f"out-{models}"
            # Each plan writes into a fresh directory, removed outside the timing.
            plan_args = ["-m", "scripts.plan", env, "--stacks-dir", str(stacks_dir), "--out", str(out)]
            floor_args = ["-m", "scripts.bench", "--floor", str(spec_path)]
            plan: list[Sample] = []
            base: list[Sample] = []
            for pair in range(pairs):
                for which in ("floor", "plan") if pair % 2 else ("plan", "floor"):
                    if which == "plan":
                        plan.append(run_child(plan_args))
                        shutil.rmtree(out)
                    else:
                        base.append(run_child(floor_args))
            rows.append({
                "models": models,
                "resources": sum(len(s["resources"]) for s in spec["stacks"]),
                "plan": plan,
                "floor": base,
                "wall_ratio": median([p.wall / f.wall for p, f in zip(plan, base, strict=True)]),
                "cpu_ratio": median([p.cpu / f.cpu for p, f in zip(plan, base, strict=True)]),
            })
            print(f"  {models} models: {_count(pairs, 'pair')} done", file=sys.stderr)
    return rows


def probe_in_child(env: str, stacks_dir: Path) -> dict[str, Any]:
    """The probe runs in its own process so this one imports nothing the children pay for."""
    code = "import json, sys; from pathlib import Path; from scripts.bench import probe; print(json.dumps(probe(sys.argv[1], Path(sys.argv[2]))))"
    result = subprocess.run([sys.executable, "-c", code, env, str(stacks_dir)], cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"bench: probe of {env} failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def render(rows: list[dict[str, Any]], env: str, pairs: int) -> str:
    lines = [
        f"scripts.bench: {env}, {_count(pairs, 'pair')} per size, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end",
        "",
        "| models | resources | plan wall s | floor wall s | plan CPU s | floor CPU s | plan/floor wall | plan/floor CPU | plan max RSS MiB | floor max RSS MiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        plan, base = row["plan"], row["floor"]
        lines.append(
            f"| {row['models']} | {row['resources']} "
            f"| {median([s.wall for s in plan]):.2f} | {median([s.wall for s in base]):.2f} "
            f"| {median([s.cpu for s in plan]):.2f} | {median([s.cpu for s in base]):.2f} "
            f"| {row['wall_ratio']:.2f} | {row['cpu_ratio']:.2f} "
            f"| {max(s.max_rss_kib for s in plan) / 1024:.0f} | {max(s.max_rss_kib for s in base) / 1024:.0f} |"
        )
    if len(rows) > 1:
        lines += ["", "Per-model marginal cost (difference of medians over the difference of models), ms:", ""]
        lines += ["| models | plan wall | floor wall | plan CPU | floor CPU |", "| --- | ---: | ---: | ---: | ---: |"]
        first = rows[0]
        for low, high in [*zip(rows, rows[1:], strict=False), *([(first, rows[-1])] if len(rows) > 2 else [])]:
            span = high["models"] - low["models"]

            def slope(kind: str, attr: str, low=low, high=high, span=span) -> str:
                return f"{1000 * (median([getattr(s, attr) for s in high[kind]]) - median([getattr(s, attr) for s in low[kind]])) / span:.1f}"

            lines.append(f"| {low['models']} -> {high['models']} | {slope('plan', 'wall')} | {slope('floor', 'wall')} | {slope('plan', 'cpu')} | {slope('floor', 'cpu')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from scripts.cli import ArgumentParser, environment

    parser = ArgumentParser(prog="python -m scripts.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--env", type=environment, default="dev", help="environment to plan (default: dev)")
    parser.add_argument("--models", default="1,10,100", help="comma-separated model counts (default: 1,10,100)")
    parser.add_argument("--pairs", type=int, default=5, help="plan/floor pairs per model count (default: 5)")
    # The floor's own entry point (a child of the benchmark), with the probe's JSON spec.
    parser.add_argument("--floor", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor:
        print(json.dumps(floor(json.loads(args.floor.read_text()))))
        return 0
    try:
        counts = [int(n) for n in args.models.split(",")]
    except ValueError:
        parser.error(f"--models {args.models}: expected comma-separated integers, e.g. 1,10,100")
    if any(n < 1 for n in counts) or args.pairs < 1:
        parser.error("--models and --pairs must be at least 1")
    rows = bench(args.env, sorted(set(counts)), args.pairs)
    print(render(rows, args.env, args.pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
