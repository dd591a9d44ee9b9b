"""Deploy or destroy one environment: `python -m scripts.up ENV [--destroy --yes] [--only trusted|cloud]`.

`up` runs `ENV-trusted` then `ENV-cloud`. After the trusted stack it writes the trust bundle it signed
for the cloud stack to the file the cloud config names (`trustBundle.file`: what the pipeline hands over).
The cloud stack is refused unless that bundle verifies against the pinned key, which must not be the
offline plan's placeholder (or, for a cloud stack reading a StackReference, unless the trusted stack is
deployed and exports everything the cloud side reads). A trusted stack is refused unless its state and
secrets provider are on premises (scripts/custody.py). `--destroy` goes the other way round.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from components import trust_bundle as jws
from scripts import custody, trust_bundles
from scripts.cli import ArgumentParser
from scripts.offline.stackfile import environments as stack_environments
from scripts.offline.stackfile import read_stack_file
from scripts.pulumi_cli import REPO_ROOT, AutomationPulumi, Pulumi, PulumiError
from stacks.config import ConfigError
from stacks.contracts import CLOUD_READS

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


def check_trusted(pulumi: Pulumi, env: str) -> None:
    trusted, cloud = stack_name(env, "trusted"), stack_name(env, "cloud")
    outputs = pulumi.outputs(trusted)
    if not outputs:
        raise Refused(f"refusing {cloud}: {trusted} has not been deployed (run `python -m scripts.up {env}`)")
    missing = missing_outputs(outputs)
    if missing:
        raise Refused(f"refusing {cloud}: {trusted} lacks the outputs {', '.join(missing)}")


def check_custody(env: str, root: Path = REPO_ROOT) -> None:
    """The trusted stack's state and secrets provider are on the trusted side (scripts/custody.py)."""
    trusted = stack_name(env, "trusted")
    refusal = custody.trusted_stack_refusal(trusted, root / "stacks" / f"Pulumi.{trusted}.yaml", custody.current_backend(root))
    if refusal:
        raise Refused(refusal)


def hand_over_bundles(pulumi: Pulumi, env: str, root: Path) -> None:
    """Write the bundle the trusted stack signed for the cloud stack to the file its config names (the
    file the pipeline hands over as an artifact)."""
    cloud = trust_bundles.cloud_config(stack_name(env, "cloud"), root / "stacks")
    if cloud.trust_bundle is None:
        return
    trusted = stack_name(env, "trusted")
    token = ((pulumi.outputs(trusted) or {}).get("trustBundles") or {}).get(cloud.stack.name)
    if not isinstance(token, str):
        raise Refused(f"{trusted} has no output trustBundles.{cloud.stack.name}: update the trusted stack")
    path = trust_bundles.bundle_path(cloud, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token)
    print(f"wrote {path.relative_to(root) if path.is_relative_to(root) else path}: the trust bundle for {cloud.stack.name}")


def check_cloud_reads(pulumi: Pulumi, env: str, root: Path) -> None:
    """The cloud stack's source of trusted values is there and verifies: its bundle, or the trusted outputs."""
    cloud = trust_bundles.cloud_config(stack_name(env, "cloud"), root / "stacks")
    if cloud.trust_bundle is None:
        check_trusted(pulumi, env)
        return
    try:
        trust_bundles.verified_view(cloud, root)
    except trust_bundles.BundleRefused as err:
        raise Refused(f"refusing {cloud.stack.name}: {err}") from None


def check_bundle_version(pulumi: Pulumi, env: str, root: Path) -> None:
    """`trustBundle.version` never goes down: a lower one would sign bundles the cloud side refuses, or,
    below its minimum, re-open a replay of older ones."""
    trusted = stack_name(env, "trusted")
    stack_file = read_stack_file(trusted, root / "stacks")
    settings = json.loads(stack_file.config.get("confidential-ai:trustBundle", "{}"))
    version = settings.get("version") if isinstance(settings, dict) else None
    deployed = [_bundle_version(token) for token in ((pulumi.outputs(trusted) or {}).get("trustBundles") or {}).values()]
    highest = max((v for v in deployed if v is not None), default=None)
    if isinstance(version, int) and highest is not None and version < highest:
        raise Refused(f"refusing {trusted}: trustBundle.version {version} is below the deployed bundles' version {highest}; raise it above {highest}")


def _bundle_version(token: object) -> int | None:
    try:
        version = jws.unverified_payload(str(token)).get("version")
    except jws.BundleError:
        return None
    return version if isinstance(version, int) else None


def deploy(pulumi: Pulumi, env: str, sides: Sequence[str] = SIDES, root: Path = REPO_ROOT) -> None:
    if "trusted" in sides:
        check_bundle_version(pulumi, env, root)
        pulumi.up(stack_name(env, "trusted"))
        hand_over_bundles(pulumi, env, root)
    if "cloud" in sides:
        check_cloud_reads(pulumi, env, root)
        pulumi.up(stack_name(env, "cloud"))


def destroy(pulumi: Pulumi, env: str, sides: Sequence[str] = SIDES) -> None:
    for side in reversed(SIDES):
        if side in sides:
            pulumi.destroy(stack_name(env, side))


def environments(root: Path = REPO_ROOT) -> list[str]:
    """Environments with both stack files in `stacks/`."""
    return stack_environments(root / "stacks")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m scripts.up", description=__doc__)
    parser.add_argument("env", help=f"environment: {', '.join(environments())}")
    parser.add_argument("--destroy", action="store_true", help="destroy instead (cloud first, then trusted)")
    parser.add_argument("--yes", action="store_true", help="confirm --destroy")
    parser.add_argument("--only", choices=SIDES, help="act on one side only")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, make_pulumi: Callable[[], Pulumi] = AutomationPulumi, root: Path = REPO_ROOT) -> int:
    args = parse_args(argv)
    sides = (args.only,) if args.only else SIDES
    try:
        if args.env not in (known := environments(root)):
            raise Refused(f"unknown environment {args.env!r}: expected one of {', '.join(known)}")
        if args.destroy and not args.yes:
            raise Refused(f"--destroy deletes every resource of {args.env}: add --yes to confirm")
        if "trusted" in sides:
            check_custody(args.env, root)
        pulumi = make_pulumi()
        if args.destroy:
            destroy(pulumi, args.env, sides)
        else:
            deploy(pulumi, args.env, sides, root)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print("\n".join(exc.lines()), file=sys.stderr)
        return 2
    except PulumiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
