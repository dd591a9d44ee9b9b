"""Mutation check: does some test fail for each mechanical defect in the security-deciding sources?

    python -m scripts.mutation_check                   # every target
    python -m scripts.mutation_check --only templates  # the Rego templates (what CI runs)
    python -m scripts.mutation_check --only policies/rules.py --json

Each mutant (scripts/mutation/rego.py, scripts/mutation/python.py) is applied alone to a scratch copy
of the repository and the behaviour tests of its file run against it (`TARGETS`; never the recorded
preview or other change detectors). A mutant is killed when a test fails (or the policy it makes would
not load in regorus), survived otherwise, and skipped when `tests/mutation_equivalents.toml` lists it
as equivalent, with the reason. Exit 1 while any mutant survives, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass

from scripts.mutation import Mutant, python, rego
from scripts.mutation.runner import REPO, Job, run, scratch, warm

EQUIVALENTS = REPO / "tests" / "mutation_equivalents.toml"
_CONFIG_TESTS = (
    "tests/test_trusted_config.py",
    "tests/test_config.py",
    "tests/test_azure_config.py",
    "tests/test_cluster_layer_config.py",
    "tests/test_bad_input.py",
    "tests/test_reference_value_expiry.py",  # expiration and --as-of
)  # not tests/test_config_fuzz.py: a random example that kills a mutant once may miss it the next run
# Source (file or glob) -> the behaviour tests that cover it. Every template under templates/ that
# ends in .rego.j2 must be listed (a test checks it).
TARGETS: dict[str, tuple[str, ...]] = {
    "templates/trustee/attestation-policy-cpu.rego.j2": ("tests/test_policies_rego.py",),
    "templates/trustee/attestation-policy-gpu.rego.j2": ("tests/test_policies_rego.py",),
    "templates/trustee/resource-policy.rego.j2": ("tests/test_policies_rego.py",),
    "templates/initdata/agent-policy.rego.j2": (
        "tests/test_agent_policy.py",
        "tests/test_agent_policy_allowlist.py",
        "tests/test_agent_policy_runtime_fields.py",
        "tests/test_agent_policy_redteam.py",
        "tests/test_agent_policy_mode.py",
        "tests/test_decryptor_policy.py",
        "tests/test_replay_agent_requests.py",
    ),
    "stacks/config/*.py": _CONFIG_TESTS,
    "components/sealed_secret.py": ("tests/test_sealed_secret.py",),
    "model_crypto/*.py": ("tests/test_model_crypto.py", "tests/test_model_jwe.py", "tests/test_model_manifest.py"),
    "scripts/verify_endpoint.py": ("tests/test_verify_endpoint.py",),
    "policies/rules.py": ("tests/test_policy_pack.py",),
    "policies/agent_policy_mode.py": ("tests/test_agent_policy_mode.py",),
    "components/trust_bundle.py": ("tests/test_trust_bundle.py", "tests/test_cloud_trust_bundle.py"),
    "stacks/trust_bundle.py": ("tests/test_trust_bundle.py", "tests/test_cloud_trust_bundle.py"),
    "scripts/custody.py": ("tests/test_custody.py",),
    "scripts/pin_workload.py": ("tests/test_pin_workload.py", "tests/test_registry_misbehaving.py"),
    "scripts/registry/*.py": ("tests/test_pin_workload.py", "tests/test_registry_misbehaving.py"),
}


@dataclass(frozen=True)
class Equivalent:
    file: str
    mutant: str
    reason: str


def targets(only: list[str]) -> dict[str, tuple[str, ...]]:
    """Repository-relative file -> covering tests, restricted to files under one of `only`."""
    found = {}
    for pattern, tests in TARGETS.items():
        for path in sorted(REPO.glob(pattern)):
            name = path.relative_to(REPO).as_posix()
            if not only or any(name == o.rstrip("/") or name.startswith(o.rstrip("/") + "/") for o in only):
                found[name] = tests
    return found


def mutants_of(file: str) -> list[Mutant]:
    text = (REPO / file).read_text()
    return rego.mutants(file, text) if file.endswith(".rego.j2") else python.mutants(file, text)


def equivalents() -> list[Equivalent]:
    document = tomllib.loads(EQUIVALENTS.read_text()) if EQUIVALENTS.is_file() else {}
    return [Equivalent(e["file"], e["mutant"], e["reason"]) for e in document.get("equivalent", [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.mutation_check", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=[], metavar="PATH", help="only files under these paths (repository-relative)")
    parser.add_argument("--json", action="store_true", help='print {"killed", "survived", "equivalent", "seconds"} only')
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--match", nargs="+", metavar="TEXT", help="only mutants whose description contains one of these (to show which test kills a mutant)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--verbose", action="store_true", help="also name the test that killed each mutant")
    args = parser.parse_args(argv)
    started = time.monotonic()
    chosen = targets(args.only)
    if not chosen:
        print(f"error: --only {' '.join(args.only)} matches no mutation target; see TARGETS in scripts/mutation_check.py", file=sys.stderr)
        return 2
    known = {(e.file, e.mutant) for e in equivalents()}
    all_mutants = {file: mutants_of(file) for file in chosen}
    if args.match:
        all_mutants = {file: [m for m in found if any(t in m.description for t in args.match)] for file, found in all_mutants.items()}
    if args.list:
        for file, found in all_mutants.items():
            for m in found:
                print(f"{file}:{m.line}: {m.description}{'  [equivalent]' if (file, m.description) in known else ''}")
        return 0
    stale = [f"{file}: {mutant}" for file, mutant in known
             if file in chosen and not args.match and mutant not in {m.description for m in all_mutants[file]}]
    if stale:
        print("error: tests/mutation_equivalents.toml names mutants that no longer exist:\n  " + "\n  ".join(sorted(stale)), file=sys.stderr)
        return 2
    to_run = [m for found in all_mutants.values() for m in found if (m.file, m.description) not in known]
    equivalent = sum(len(found) for found in all_mutants.values()) - len(to_run)
    log = (lambda *a: None) if args.json else (lambda text: print(text, file=sys.stderr, flush=True))

    warm()
    failures: list[str] = []
    counts: Counter[tuple[str, str]] = Counter()
    survivors: list[tuple[Mutant, str]] = []
    recheck: list[Job] = []

    def record(job: Job, outcome: str, by: str) -> None:
        m = job.mutant
        counts[(m.file, outcome)] += 1
        done = sum(counts.values())
        if args.verbose and outcome in ("killed", "unloadable"):
            log(f"killed {m.file}:{m.line}: {m.description}  by {by}")
        elif done % 25 == 0:
            log(f"{done}/{len(to_run)} mutants decided")
        if outcome in ("survived", "regopy-only"):
            survivors.append((m, by))
            log(f"SURVIVED {m.file}:{m.line}: {m.description}" + (f" ({by})" if by else ""))
        elif outcome == "unloadable" and not args.verbose:
            log(f"unloadable (killed: regorus would not load it) {m.file}:{m.line}: {m.description}")

    def on_fast(job: Job, outcome: str, by: str, seconds: float) -> None:
        if outcome == "error":
            failures.append(f"{job.mutant.file}:{job.mutant.line} {job.mutant.description}: {by}")
        elif outcome == "fresh" or (outcome == "survived" and job.mutant.file.endswith(".py")):
            recheck.append(job)  # confirmed (or decided) by a fresh import of the mutated file
            if outcome == "survived":
                log(f"survived the fast path, to confirm: {job.mutant.file}:{job.mutant.line}: {job.mutant.description}")
        else:
            record(job, outcome, by)

    def on_fresh(job: Job, outcome: str, by: str, seconds: float) -> None:
        if job.mutant is None:
            if outcome != "survived":
                failures.append(f"{' '.join(job.tests)} fail without any mutant: {outcome} {by}")
        elif outcome == "error":
            failures.append(f"{job.mutant.file}:{job.mutant.line} {job.mutant.description}: {by}")
        else:
            record(job, outcome, by)

    log(f"{len(to_run)} mutants ({equivalent} equivalent skipped)")
    with scratch(max(1, args.jobs)) as slots:
        run([Job(m, chosen[m.file]) for m in to_run], slots, on_fast)
        if recheck and not failures:
            log(f"{len(recheck)} mutants through fresh imports")
            baselines = [Job(None, tests) for tests in sorted({job.tests for job in recheck})]
            run(baselines + recheck, slots, on_fresh, fresh=True, timeout=240.0)
    if failures:
        print("error: the mutation check could not run:\n" + "\n".join(failures), file=sys.stderr)
        return 2
    seconds = round(time.monotonic() - started, 1)
    killed = sum(n for (_, outcome), n in counts.items() if outcome in ("killed", "unloadable"))
    survivors.sort(key=lambda s: (s[0].file, s[0].line))
    if args.json:
        print(json.dumps({
            "killed": killed,
            "survived": [{"file": m.file, "line": m.line, "mutant": m.description} for m, _ in survivors],
            "equivalent": equivalent,
            "seconds": seconds,
        }))
    else:
        print(_table(all_mutants, counts, known))
        for m, by in survivors:
            print(f"survived  {m.file}:{m.line}  {m.description}" + (f"  ({by})" if by else ""))
        total = killed + len(survivors)
        print(f"score: {killed}/{total} non-equivalent mutants killed ({100 * killed / max(total, 1):.1f}%), {equivalent} equivalent, {seconds}s")
    return 1 if survivors else 0


def _table(all_mutants: dict[str, list[Mutant]], counts: Counter, known: set[tuple[str, str]]) -> str:
    """Per file; `unloadable` (of `killed`): mutants regorus would not load, which the product refuses too,
    but which a correct generator rarely makes: each is worth a look."""
    rows = ["| file | mutants | killed | (unloadable) | survived | equivalent | score |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for file, found in all_mutants.items():
        killed = counts[(file, "killed")] + counts[(file, "unloadable")]
        survived = counts[(file, "survived")] + counts[(file, "regopy-only")]
        equivalent = sum((file, m.description) in known for m in found)
        score = f"{100 * killed / (killed + survived):.0f}%" if killed + survived else "-"
        rows.append(f"| {file} | {len(found)} | {killed} | {counts[(file, 'unloadable')]} | {survived} | {equivalent} | {score} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
