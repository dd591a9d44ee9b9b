"""OpenShift AI configured for model serving only: KServe (RawDeployment) with NIM support."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

APPLICATIONS_NAMESPACE = "redhat-ods-applications"
MONITORING_NAMESPACE = "redhat-ods-monitoring"
# The operator creates this DSCInitialization itself at start unless DISABLE_DSC_CONFIG is set
# (opendatahub-io/opendatahub-operator pkg/upgrade, CreateDefaultDSCI); creating another one fails.
DEFAULT_DSCI = "default-dsci"
DATA_SCIENCE_CLUSTER = "default-dsc"
# DSCI and DSC report status.phase "Ready" once every managed component is deployed.
PHASE_READY = "jsonpath={.status.phase}=Ready"
# Components of DataScienceCluster v2 that serving a model does not need (CRD of opendatahub-operator 3.5.0).
UNUSED_COMPONENTS = (
    "aipipelines", "dashboard", "feastoperator", "kueue", "llamastackoperator", "modelregistry",
    "ray", "trainingoperator", "trustyai", "workbenches",
)


@dataclass(frozen=True)
class OpenShiftAiArgs:
    operator: pulumi.Resource
    """The rhods-operator Subscription: the DSC and DSCI CRDs exist only once it settled."""


class OpenShiftAi(pulumi.ComponentResource):
    """DSCInitialization and DataScienceCluster v2, each awaited until Ready.

    KServe in RawDeployment mode (the only mode of OpenShift AI 3.x) with NIM support; every other
    component Removed. A ClusterIP ("Headed") predictor Service gives each model a stable in-cluster URL.
    """

    data_science_cluster: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: OpenShiftAiArgs, provider: k8s.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("confidential-ai:openshift_ai:OpenShiftAi", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[args.operator])
        # A patch, not a create: the operator owns this object; on destroy the fields are released.
        initialization = k8s.apiextensions.CustomResourcePatch(
            f"{name}-initialization",
            api_version="dscinitialization.opendatahub.io/v2",
            kind="DSCInitialization",
            metadata={
                "name": DEFAULT_DSCI,
                "annotations": {"pulumi.com/patchForce": "true", "pulumi.com/waitFor": PHASE_READY, "pulumi.com/timeoutSeconds": "1200"},
            },
            spec={
                "applicationsNamespace": APPLICATIONS_NAMESPACE,
                "monitoring": {"managementState": "Removed", "namespace": MONITORING_NAMESPACE},
                "trustedCABundle": {"managementState": "Managed", "customCABundle": ""},
            },
            opts=child,
        )
        components: dict[str, object] = {component: {"managementState": "Removed"} for component in UNUSED_COMPONENTS}
        components["kserve"] = {
            "managementState": "Managed",
            "nim": {"managementState": "Managed"},
            "rawDeploymentServiceConfig": "Headed",
        }
        self.data_science_cluster = k8s.apiextensions.CustomResource(
            f"{name}-data-science-cluster",
            api_version="datasciencecluster.opendatahub.io/v2",
            kind="DataScienceCluster",
            metadata={
                "name": DATA_SCIENCE_CLUSTER,
                "annotations": {"pulumi.com/waitFor": PHASE_READY, "pulumi.com/timeoutSeconds": "1800"},
            },
            spec={"components": components},
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[args.operator, initialization])),
        )
        self.register_outputs({"dataScienceCluster": DATA_SCIENCE_CLUSTER})
