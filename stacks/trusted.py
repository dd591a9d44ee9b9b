"""The `<env>-trusted` stack: Trustee on the on-premises cluster."""

from __future__ import annotations

import pulumi

from components.kubernetes import cluster_provider
from stacks.config import TrustedConfig
from stacks.config.base import secret_output


def deploy(config: TrustedConfig) -> None:
    cluster_provider("trusted-cluster", secret_output(config.kubeconfig), f"{config.stack.env}-trusted")
    pulumi.export("kbsUrl", config.kbs.url)
