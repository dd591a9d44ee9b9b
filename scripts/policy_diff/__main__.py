"""`python -m scripts.policy_diff ENV [--base REF] [--json]`: who gains and who loses which secret.

Plans the trusted side of ENV at REF (default: the merge base of HEAD with main) with REF's code and
in the working tree, and compares the decisions of their policies. Exit status 0 with the report
(also when something changed), 2 on bad input, one line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from scripts.cli import ArgumentParser, environment
from scripts.offline.stackfile import StackFileError
from scripts.policy_diff import compare
from scripts.policy_diff.planning import EMPTY, GitError, plan_at, plan_here, resolve
from scripts.policy_diff.plans import PlanError, TrustedPlan
from scripts.policy_diff.report import PolicyDiff, text
from stacks.config import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def policy_diff(env: str, root: Path, base: str | None = None, base_plan: Path | None = None, merge_base: bool = False) -> PolicyDiff:
    """The diff of `env` between `base` (its merge base with HEAD if `merge_base`; planned at that commit,
    or read from `base_plan`) and `root`'s working tree."""
    label, commit = resolve(root, base, merge_base)
    old = TrustedPlan.from_dir(base_plan, env) if base_plan else plan_at(root, commit, env)
    new = plan_here(env, root / "stacks")
    if old is EMPTY and new is EMPTY:
        raise PlanError(f"{env}: no stack file stacks/Pulumi.{env}-trusted.yaml, neither at {label} nor in the working tree")
    return compare(env, f"{label} ({commit[:12]})" if label != commit else commit[:12], old, new)


def main(argv: Sequence[str] | None = None, root: Path = REPO_ROOT) -> int:
    parser = ArgumentParser(prog="python -m scripts.policy_diff", description=__doc__.splitlines()[0])
    parser.add_argument("env", type=environment, help="environment: its trusted stack ENV-trusted is planned on both sides")
    parser.add_argument("--base", help="git ref to compare with (default: the merge base of HEAD with main)")
    parser.add_argument("--base-plan", type=Path, help="a plan of the base already made (`python -m scripts.plan ENV --out DIR` at --base): read, not planned")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a short report")
    args = parser.parse_args(argv)
    try:
        diff = policy_diff(args.env, root, args.base, args.base_plan)
    except (GitError, PlanError, ConfigError, StackFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(diff.as_json(), indent=2) + "\n" if args.json else text(diff))
    return 0


if __name__ == "__main__":
    sys.exit(main())
