"""Explicit Kubernetes providers: every Kubernetes resource names the cluster it belongs to."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s


def cluster_provider(name: str, kubeconfig: pulumi.Input[str], cluster_identifier: str) -> k8s.Provider:
    """A provider for one cluster.

    `cluster_identifier` keeps resources from being replaced when the kubeconfig rotates
    (pulumi/pulumi-kubernetes provider/pkg/provider/provider.go, `clusterIdentifier`).
    """
    return k8s.Provider(
        name,
        kubeconfig=pulumi.Output.secret(kubeconfig),
        cluster_identifier=cluster_identifier,
        enable_server_side_apply=True,
    )
