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
from scripts.policy_diff import policy_diff
from scripts.policy_diff.planning import GitError
from scripts.policy_diff.plans import PlanError
from scripts.policy_diff.report import text
from stacks.config import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def main(argv: Sequence[str] | None = None, root: Path = REPO_ROOT) -> int:
    parser = ArgumentParser(prog="python -m scripts.policy_diff", description=__doc__.splitlines()[0])
    parser.add_argument("env", type=environment, help="environment: its trusted stack ENV-trusted is planned on both sides")
    parser.add_argument("--base", help="git ref to compare with (default: the merge base of HEAD with main)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a short report")
    args = parser.parse_args(argv)
    try:
        diff = policy_diff(args.env, root, args.base)
    except (GitError, PlanError, ConfigError, StackFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(diff.as_json(), indent=2) + "\n" if args.json else text(diff))
    return 0


if __name__ == "__main__":
    sys.exit(main())
