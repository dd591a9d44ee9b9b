"""Deploy or destroy one environment: `python -m scripts.up ENV [--cloud-stack NAME] [--destroy --yes] [--only trusted|cloud]`.

`up` runs `ENV-trusted` then the cloud stack (`ENV-cloud`, or `--cloud-stack`, needed when the environment
has more than one); the cloud stack is refused unless the trusted stack is deployed and exports
everything that cloud stack reads. `--destroy` goes the other way round.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from scripts.cli import ArgumentParser, CloudStackChoice, choose_cloud_stack
from scripts.offline.stackfile import cloud_stacks
from scripts.offline.stackfile import environments as stack_environments
from scripts.pulumi_cli import REPO_ROOT, AutomationPulumi, Pulumi, PulumiError
from stacks.contracts import CLOUD_READS, cloud_view

REQUIRED_TRUSTED_OUTPUTS = CLOUD_READS
SIDES = ("trusted", "cloud")


class Refused(Exception):
    """The operation must not go on; the message is one line for the user."""


def stack_name(env: str, side: str) -> str:
    return f"{env}-{side}"


def missing_outputs(outputs: Mapping[str, Any] | None) -> list[str]:
    """Required trusted outputs that are absent or empty (all of them when not deployed)."""
    present = outputs or {}
    return [key for key in REQUIRED_TRUSTED_OUTPUTS if present.get(key) in (None, "", [], {})]


def check_trusted(pulumi: Pulumi, env: str, cloud: str) -> None:
    trusted = stack_name(env, "trusted")
    outputs = pulumi.outputs(trusted)
    if not outputs:
        raise Refused(f"refusing {cloud}: {trusted} has not been deployed (run `python -m scripts.up {env}`)")
    missing = missing_outputs(cloud_view(outputs, cloud))
    if missing:
        raise Refused(f"refusing {cloud}: {trusted} lacks the outputs {', '.join(missing)}")


def deploy(pulumi: Pulumi, env: str, sides: Sequence[str] = SIDES, cloud: str | None = None) -> None:
    if "trusted" in sides:
        pulumi.up(stack_name(env, "trusted"))
    if "cloud" in sides:
        cloud = cloud or stack_name(env, "cloud")
        check_trusted(pulumi, env, cloud)
        pulumi.up(cloud)


def destroy(pulumi: Pulumi, env: str, sides: Sequence[str] = SIDES, cloud: str | None = None) -> None:
    """The cloud stack `cloud`, or every cloud stack of `env` and then its trusted stack."""
    if "cloud" in sides:
        for stack in [cloud] if cloud else cloud_stacks(env, REPO_ROOT / "stacks"):
            pulumi.destroy(stack)
    if "trusted" in sides and cloud is None:
        pulumi.destroy(stack_name(env, "trusted"))


def environments(root: Path = REPO_ROOT) -> list[str]:
    """Environments with both stack files in `stacks/`."""
    return stack_environments(root / "stacks")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m scripts.up", description=__doc__)
    parser.add_argument("env", help=f"environment: {', '.join(environments())}")
    parser.add_argument("--destroy", action="store_true", help="destroy instead: every cloud stack, then trusted (with --cloud-stack, that cloud stack only)")
    parser.add_argument("--yes", action="store_true", help="confirm --destroy")
    parser.add_argument("--only", choices=SIDES, help="act on one side only")
    parser.add_argument("--list-cloud-stacks", action="store_true", help="print ENV's cloud stacks as a JSON list and exit (the deploy pipeline's matrix)")
    parser.add_argument("--cloud-stack", metavar="NAME", help="the cloud stack to act on (ENV-cloud or ENV-cloud-<name>); needed when ENV has more than one")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, make_pulumi: Callable[[], Pulumi] = AutomationPulumi) -> int:
    args = parse_args(argv)
    sides = (args.only,) if args.only else SIDES
    try:
        if args.env not in (known := environments()):
            raise Refused(f"unknown environment {args.env!r}: expected one of {', '.join(known)}")
        if args.list_cloud_stacks:
            print(json.dumps(cloud_stacks(args.env, REPO_ROOT / "stacks")))
            return 0
        if args.destroy and not args.yes:
            raise Refused(f"--destroy deletes every resource of {args.env}: add --yes to confirm")
        choosing = "cloud" in sides and (not args.destroy or args.cloud_stack)
        cloud = choose_cloud_stack(args.env, args.cloud_stack, cloud_stacks(args.env, REPO_ROOT / "stacks")) if choosing else None
        pulumi = make_pulumi()
        (destroy if args.destroy else deploy)(pulumi, args.env, sides, cloud)
    except (Refused, CloudStackChoice) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PulumiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
