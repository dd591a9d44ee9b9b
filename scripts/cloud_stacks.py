"""An environment's cloud stacks as a JSON list, `python -m scripts.cloud_stacks ENV`: the deploy pipeline's matrix.

`ENV-cloud` and every `ENV-cloud-<name>` with a stack file in stacks/, by name; no Pulumi call.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from scripts.cli import ArgumentParser, environment
from scripts.offline.stackfile import STACKS_DIR, cloud_stacks


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m scripts.cloud_stacks", description=__doc__.splitlines()[0])
    parser.add_argument("env", type=environment, help="environment")
    args = parser.parse_args(argv)
    stacks = cloud_stacks(args.env, STACKS_DIR)
    if not stacks:
        print(f"error: {args.env} has no cloud stack file (stacks/Pulumi.{args.env}-cloud.yaml or Pulumi.{args.env}-cloud-<name>.yaml)", file=sys.stderr)
        return 2
    print(json.dumps(stacks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
