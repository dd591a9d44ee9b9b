"""The `<env>-cloud` stack: the Azure OpenShift cluster serving models in confidential VMs."""

from __future__ import annotations

import pulumi

from stacks.cloud_azure import deploy_azure_layer
from stacks.config import CloudConfig


def deploy(config: CloudConfig) -> None:
    trusted = pulumi.StackReference("trusted-stack", stack_name=config.trusted_stack_name)
    pulumi.export("kbsUrl", trusted.get_output("kbsUrl"))
    azure = deploy_azure_layer(config)  # noqa: F841 (the cluster layer takes it)
