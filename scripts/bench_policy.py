"""Benchmark: one KBS decision at fleet scale, `python -m scripts.bench_policy --workloads 1000,2000 [--keep DIR]`.

For each count N it builds the prod trusted stack's config with N workloads spread over up to ten
cloud stacks, N distinct (cloud stack, workload) pairs (each with its own initdata, so its own PCR 8,
and its own TLS serving key; all sharing the NGC key), renders the
resource policy through the stack's own code (stacks/trusted.py resource_policy), and times what
Trustee does per request (confidential-containers/trustee deps/policy-engine/src/policy/rego.rs
evaluate_sync): a new regorus Engine, the policy added, the request's data and input set, one
`data.policy.allow` evaluation. It prints the policy's lines, its widest line (columns, as regorus counts them), its size, the median parse time
(new engine + add_policy) and the median decision time (the whole request), in milliseconds, wall
clock and this thread's CPU time (on a shared machine the wall clock includes waiting for a core),
beside the floor, a decision on the policy of one workload timed in turn with it, and their ratio.
Targets (issue 23): decision <= 5 ms at 1,000 workloads; within regorus' limits (1 MiB, 20,000 lines, 1,023
columns) up to 5,000. Nothing here asserts; docs/benchmarks.md says how to read it.

`--keep DIR` writes DIR/<N>/resource-policy.rego, input.json (the EAR token of one declared
workload's pod VM) and data.json (KBS's request data for one of that workload's resources), so
`regorus` or `opa eval` can replay the decision.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regorus

from components.initdata import Initdata
from components.trustee import names, render
from scripts.offline.stackfile import read_stack_file
from stacks import trusted
from stacks.config import TrustedConfig, load

ROOT = Path(__file__).resolve().parents[1]
# The EAR token of a pod VM whose CPU and GPU affirmed, derived from upstream's code and test data
# (tests/fixtures/attestation/SOURCES.md); its PCR 8 is set to the workload's.
EAR_TOKEN = ROOT / "tests" / "fixtures" / "attestation" / "ear_token.json"
STACK = "prod-trusted"
SHARED_RESOURCE = "ngc-api-key"
# The cloud stacks the pairs are spread over (a fleet of ten clusters).
SPOKES = 10


@dataclass(frozen=True)
class Fleet:
    config: TrustedConfig
    initdata: dict[str, Initdata]


def fleet(pairs: int) -> Fleet:
    """The prod trusted config with `pairs` (cloud stack, workload) pairs over up to SPOKES cloud stacks,
    each pair with its own initdata (so its own PCR 8) and serving key, all sharing the NGC key."""
    stack = read_stack_file(STACK)
    raw = {key.split(":", 1)[1]: value for key, value in stack.config.items() if key.startswith("confidential-ai:")}
    template = json.loads(raw["workloads"])[0]
    # Each workload runs the example's first image with its pinned process; only the name differs.
    pinned = {key: template[key] for key in ("image", "args", "imageEnv", "workingDir") if key in template}
    raw["workloads"] = json.dumps([{**pinned, "name": f"w{i}", "resources": [SHARED_RESOURCE], "gpus": 1} for i in range(pairs)])
    clouds = ["prod-cloud", *(f"prod-cloud-r{n}" for n in range(1, min(pairs, SPOKES)))]
    spokes: dict[str, dict[str, Any]] = {cloud: {} for cloud in clouds}
    for i in range(pairs):
        spokes[clouds[i % len(clouds)]][f"w{i}"] = {"servingHostnames": [f"w{i}.apps.{clouds[i % len(clouds)]}.example.com"]}
    raw["spokes"] = json.dumps(spokes)
    raw["kbsResources"] = json.dumps([r for r in json.loads(raw["kbsResources"]) if r["name"] == SHARED_RESOURCE])
    raw["kbsSecrets"] = json.dumps({SHARED_RESOURCE: "bench"})
    config = load(STACK, raw, [key.split(":", 1)[1] for key in stack.secret_keys])
    assert isinstance(config, TrustedConfig)
    # Each pair's own initdata document: what the policy needs of it is its PCR 8.
    initdata = {p.id: Initdata(f"bench initdata of {p.label}\n".encode()) for p in config.pairs}
    return Fleet(config, initdata)


@dataclass(frozen=True)
class Timing:
    wall_ms: float
    cpu_ms: float
    """This thread's CPU time: what the work costs, whatever else the machine runs."""


def medians(*runs: Callable[[], Any], repeat: int) -> list[Timing]:
    """The median wall and CPU milliseconds of each of `runs`, timed in turn `repeat` times, so load hits them alike."""
    samples: list[list[tuple[float, float]]] = [[] for _ in runs]
    for _ in range(repeat):
        for run, taken in zip(runs, samples, strict=False):
            wall, cpu = time.perf_counter(), time.thread_time()
            run()
            taken.append((time.perf_counter() - wall, time.thread_time() - cpu))
    return [Timing(statistics.median(w for w, _ in taken) * 1000, statistics.median(c for _, c in taken) * 1000) for taken in samples]


def parse(policy: str) -> regorus.Engine:
    engine = regorus.Engine()
    engine.add_policy("resource-policy.rego", policy)
    return engine


def decide(policy: str, token: str, data: str) -> bool:
    """One KBS request, as Trustee evaluates it: a new engine, the policy, the data, the input, the rule."""
    engine = parse(policy)
    engine.add_data_json(data)
    engine.set_input_json(token)
    return engine.eval_rule("data.policy.allow") is True


def request(fleet: Fleet) -> tuple[dict[str, Any], dict[str, Any]]:
    """The EAR token of the last pair's pod VM, and KBS's data for its serving key."""
    pair = fleet.config.pairs[-1]
    token = json.loads(EAR_TOKEN.read_text())
    token["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["az-snp-vtpm"]["tpm"]["pcr08"] = fleet.initdata[pair.id].pcr8
    data = {"plugin": "resource", "resource-path": ["default", names.SERVING_KEYS, pair.id], "query": {}}
    return token, data


def prepared(count: int) -> tuple[Fleet, str, dict[str, Any], dict[str, Any]]:
    bench = fleet(count)
    return bench, trusted.resource_policy(bench.config, bench.initdata), *request(bench)


def measure(count: int, repeat: int, keep: Path | None, floor: tuple[str, str, str]) -> str:
    bench, policy, token, data = prepared(count)
    token_json, data_json = json.dumps(token), json.dumps(data)
    if not decide(policy, token_json, data_json):
        raise SystemExit(f"bench_policy: at {count} workloads the declared workload's serving key is refused")
    other = json.loads(token_json)
    # Another workload's pod VM (the first's), or with one workload a pod VM measuring none.
    foreign = bench.initdata[bench.config.pairs[0].id].pcr8 if count > 1 else "ee" * 32
    other["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["az-snp-vtpm"]["tpm"]["pcr08"] = foreign
    if decide(policy, json.dumps(other), data_json):
        raise SystemExit(f"bench_policy: at {count} workloads another workload's pod VM gets the serving key")
    if keep:
        out = keep / str(count)
        out.mkdir(parents=True, exist_ok=True)
        (out / "resource-policy.rego").write_text(policy)
        (out / "input.json").write_text(json.dumps(token, indent=2, sort_keys=True) + "\n")
        (out / "data.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    size = render.extent(policy)
    (parsing,) = medians(lambda: parse(policy), repeat=repeat)
    decision, one = medians(lambda: decide(policy, token_json, data_json), lambda: decide(*floor), repeat=repeat)
    return (f"{count:>9,} {size.lines:>8,} {size.widest:>8,} {size.bytes / 1024:>6.0f} {parsing.cpu_ms:>6.2f} "
            f"{decision.wall_ms:>8.2f} {decision.cpu_ms:>8.2f} {one.cpu_ms:>8.2f} {decision.cpu_ms / one.cpu_ms:>6.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_policy", description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="1,100,1000,2000,5000", help="comma-separated workload counts (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=31, help="decisions timed per count; the median is printed (default %(default)s)")
    parser.add_argument("--keep", type=Path, help="write DIR/<n>/resource-policy.rego, input.json and data.json")
    args = parser.parse_args(argv)
    try:
        counts = [int(part) for part in args.workloads.split(",")]
    except ValueError:
        parser.error(f"--workloads: {args.workloads!r} is not a comma-separated list of counts")
    if not counts or min(counts) < 1 or args.repeat < 1:
        parser.error("--workloads and --repeat need positive counts")
    print(f"celine-regorus {importlib.metadata.version('celine-regorus')}, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    # The floor: a decision on the policy of one workload, timed in turn with each count's.
    _, floor_policy, floor_token, floor_data = prepared(1)
    floor = (floor_policy, json.dumps(floor_token), json.dumps(floor_data))
    print(f"{'':>9} {'':>8} {'':>8} {'':>6} {'parse':>6} {'decision':>17} {'floor':>8} {'':>6}")
    print(f"{'workloads':>9} {'lines':>8} {'widest':>8} {'KiB':>6} {'cpu ms':>6} {'wall ms':>8} {'cpu ms':>8} {'cpu ms':>8} {'ratio':>6}")
    for count in counts:
        print(measure(count, args.repeat, args.keep, floor), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
