"""Peer pods on Azure: OSC's feature gates, peer-pods-cm/-secret and the KataConfig."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

OSC_NAMESPACE = "openshift-sandboxed-containers-operator"
RUNTIME_CLASS = "kata-remote"
KATA_CONFIG = "cluster-kataconfig"
FEATURE_GATES = "osc-feature-gates"
# KataConfig reports progress in its InProgress condition: True while installing (MachineConfig
# rollout, node reboots), reset to False when done (controllers/kataconfig_conditions.go,
# resetInProgressCondition). The condition is absent until installation starts.
KATA_CONFIG_DONE = "condition=InProgress=False"
_KATA_CONFIG_WAIT_SECONDS = "5400"


@dataclass(frozen=True)
class PeerPodsArgs:
    config: Mapping[str, pulumi.Input[str]]
    """peer-pods-cm data: CAA's settings (cloud-api-adaptor src/cloud-providers/azure/manager.go)."""
    credentials: Mapping[str, pulumi.Input[str]]
    """peer-pods-secret data: the identity CAA creates pod VMs with (AZURE_CLIENT_SECRET a Pulumi secret)."""
    pool_selector: Mapping[str, str] | None
    """matchLabels of the workers running CAA; None selects every worker."""
    operator: pulumi.Resource
    """The OSC Subscription: KataConfig's CRD exists only once it settled."""
    caa_update_strategy: Literal["RollingUpdate", "OnDelete"]
    """How OSC rolls its CAA DaemonSet (osc-caa-ds) when peer-pods-cm changes: RollingUpdate restarts CAA
    at once, which can strand running peer pods; OnDelete applies the change only as CAA pods are deleted."""
    pod_vm_ready: Sequence[pulumi.Resource] = ()
    """Azure resources CAA needs to create pod VMs (identity roles, pod-VM network, image gallery)."""


class PeerPods(pulumi.ComponentResource):
    """Everything OSC needs to run pods in Azure confidential VMs, awaited until `kata-remote` exists.

    CAA's DaemonSet belongs to the operator, which rewrites it on every reconcile and rolls CAA itself
    when peer-pods-cm changes (openshift/sandboxed-containers-operator controllers/peerpods.go, PR 1950):
    this component never touches it. `caaUpdateStrategy` in osc-feature-gates says how that roll happens.
    """

    kata_config: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: PeerPodsArgs, provider: k8s.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("confidential-ai:peerpods:PeerPods", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[args.operator])
        feature_gates = k8s.core.v1.ConfigMap(
            f"{name}-feature-gates",
            metadata={"name": FEATURE_GATES, "namespace": OSC_NAMESPACE},
            data={"confidential": "true", "caaUpdateStrategy": args.caa_update_strategy},
            opts=child,
        )
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata={"name": "peer-pods-cm", "namespace": OSC_NAMESPACE},
            data=dict(args.config),
            opts=child,
        )
        credentials = k8s.core.v1.Secret(
            f"{name}-credentials",
            metadata={"name": "peer-pods-secret", "namespace": OSC_NAMESPACE},
            type="Opaque",
            string_data=dict(args.credentials),
            opts=child,
        )
        spec: dict[str, object] = {"enablePeerPods": True, "checkNodeEligibility": False, "logLevel": "info"}
        if args.pool_selector is not None:
            spec["kataConfigPoolSelector"] = {"matchLabels": dict(args.pool_selector)}
        # CAA reads the ConfigMap and Secret at start, so both exist before KataConfig creates it; on
        # destroy they (and the Azure side CAA uses) outlive KataConfig, whose uninstall needs CAA to
        # delete the pod VMs.
        self.kata_config = k8s.apiextensions.CustomResource(
            f"{name}-kata-config",
            api_version="kataconfiguration.openshift.io/v1",
            kind="KataConfig",
            metadata={
                "name": KATA_CONFIG,
                "annotations": {"pulumi.com/waitFor": KATA_CONFIG_DONE, "pulumi.com/timeoutSeconds": _KATA_CONFIG_WAIT_SECONDS},
            },
            spec=spec,
            opts=pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(
                    depends_on=[args.operator, feature_gates, config_map, credentials, *args.pod_vm_ready],
                    custom_timeouts=pulumi.CustomTimeouts(delete="90m"),
                ),
            ),
        )
        self.runtime_class = RUNTIME_CLASS
        self.register_outputs({"runtimeClass": RUNTIME_CLASS, "kataConfig": KATA_CONFIG})
