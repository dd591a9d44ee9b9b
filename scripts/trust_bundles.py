"""The cloud side's trust bundle, checked outside the program: by `scripts.up`, `scripts.preflight` and
`scripts.verify_endpoint`, with the same verification the program does (stacks/trust_bundle.py), plus one
check the offline plan must not make: that the pinned key is not the offline plan's placeholder, whose
private half anyone can recompute (scripts/offline/fakes.py)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, get_args

from components import trust_bundle as jws
from scripts.offline.fakes import placeholder_public_key_pem
from scripts.offline.stackfile import STACKS_DIR, read_stack_file
from stacks import trust_bundle
from stacks.config import CloudConfig, load
from stacks.config.cloud import TrustBundleSettings
from stacks.config.trusted import KeySlot


class BundleRefused(Exception):
    """The bundle or its pin may not be used; one line naming it."""


def cloud_config(stack: str, stacks_dir: Path = STACKS_DIR) -> CloudConfig:
    """A cloud stack's config from its stack file (secure values as placeholders); ConfigError when invalid."""
    stack_file = read_stack_file(stack, stacks_dir)
    prefix = "confidential-ai:"
    raw = {k[len(prefix):]: v for k, v in stack_file.config.items() if k.startswith(prefix)}
    config = load(stack, raw, [k[len(prefix):] for k in stack_file.secret_keys])
    assert isinstance(config, CloudConfig)
    return config


@cache
def placeholder_kids() -> frozenset[str]:
    """`kid`s of the keys the offline plan makes for every trust bundle key slot."""
    return frozenset(jws.public_jwk(placeholder_public_key_pem(f"trust-bundle-key-{slot}"))["kid"] for slot in get_args(KeySlot))


def placeholder_refusal(settings: TrustBundleSettings) -> str | None:
    for i, key in enumerate(settings.keys):
        if key.kid in placeholder_kids():
            return (f"trustBundle.keys[{i}] is the offline plan's placeholder key {key.kid} (its private half is public): "
                    "pin the trustBundleKey output of the deployed trusted stack")
    return None


def bundle_path(config: CloudConfig, root: Path, override: Path | None = None) -> Path:
    assert config.trust_bundle is not None
    return override if override is not None else root / config.trust_bundle.file


def verified_view(config: CloudConfig, root: Path, override: Path | None = None) -> dict[str, Any]:
    """The view in the cloud stack's bundle (or `override`), verified as the program does, its pin not a
    placeholder; BundleRefused (one line, naming the bundle) otherwise."""
    settings = config.trust_bundle
    assert settings is not None
    stack = config.stack.name
    if refusal := placeholder_refusal(settings):
        raise BundleRefused(f"{stack}: {refusal}")
    path = bundle_path(config, root, override)
    try:
        token = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise BundleRefused(f"{stack}: trust bundle {path}: cannot read it ({getattr(err, 'strerror', None) or err})") from None
    try:
        return trust_bundle.open_bundle(token, [key.model_dump() for key in settings.keys], config.stack.env, stack, settings.minimum_version)
    except jws.BundleError as err:
        raise BundleRefused(f"{stack}: trust bundle {path}: refused: {err}") from None


def main(argv: list[str] | None = None) -> int:
    """`python -m scripts.trust_bundles ENV...`: write the bundles the deployed trusted stacks signed to the
    files their cloud stacks name (what a preview or drift check of the cloud side needs), on the trusted runner."""
    import sys

    from scripts.cli import ArgumentParser, environment
    from scripts.pulumi_cli import REPO_ROOT, AutomationPulumi, PulumiError
    from scripts.up import Refused, hand_over_bundles
    from stacks.config import ConfigError

    parser = ArgumentParser(prog="python -m scripts.trust_bundles", description=main.__doc__.splitlines()[0] if main.__doc__ else None)
    parser.add_argument("envs", nargs="+", type=environment, metavar="ENV", help="environments whose deployed ENV-trusted bundles to write")
    args = parser.parse_args(argv)
    pulumi = AutomationPulumi(REPO_ROOT)
    try:
        for env in args.envs:
            hand_over_bundles(pulumi, env, REPO_ROOT)
    except (Refused, PulumiError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        print("\n".join(err.lines()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
