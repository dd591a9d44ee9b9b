"""The `<env>-cloud` stack: the Azure OpenShift cluster serving models in confidential VMs."""

from __future__ import annotations

from stacks.cloud_azure import deploy_azure_layer
from stacks.cloud_cluster import deploy_cluster_layer, read_trusted_stack
from stacks.config import CloudConfig
from stacks.encrypted_models import plan_encrypted_models


def deploy(config: CloudConfig) -> None:
    # The trusted side first: an undeployed trusted stack stops the run before any Azure resource.
    trusted = read_trusted_stack(config)
    encrypted = plan_encrypted_models(config, trusted.workloads)
    azure = deploy_azure_layer(config)
    deploy_cluster_layer(config, azure, trusted, encrypted)
