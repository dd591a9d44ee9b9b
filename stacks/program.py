"""The one Pulumi program: parse this stack's config, then deploy its side of the topology."""

from __future__ import annotations

from stacks.config import CloudConfig, load_from_pulumi


def main() -> None:
    config = load_from_pulumi()
    if isinstance(config, CloudConfig):
        from stacks import cloud

        cloud.deploy(config)
    else:
        from stacks import trusted

        trusted.deploy(config)
