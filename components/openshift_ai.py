"""OpenShift AI configured for model serving only: KServe (RawDeployment) with NIM support.

Two API generations: OpenShift AI 3.x serves DataScienceCluster/DSCInitialization v2 (KServe is
RawDeployment only); 2.25, the newest line for OpenShift 4.16-4.18, serves v1, where RawDeployment is
chosen with `kserve.defaultDeploymentMode` and the Serverless stack (`kserve.serving`, the DSCI's
`serviceMesh`) is Removed (opendatahub-io/opendatahub-operator v2.35.0 config/crd/bases).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
# Components that serving a model does not need, per DataScienceCluster API version (v2: CRD of
# opendatahub-operator 3.5.0; v1: opendatahub-operator v2.35.0, the OpenShift AI 2.25 generation).
UNUSED_COMPONENTS = {
    "v2": (
        "aipipelines", "dashboard", "feastoperator", "kueue", "llamastackoperator", "modelregistry",
        "ray", "trainingoperator", "trustyai", "workbenches",
    ),
    "v1": (
        "codeflare", "dashboard", "datasciencepipelines", "feastoperator", "kueue", "llamastackoperator",
        "modelmeshserving", "modelregistry", "ray", "trainingoperator", "trustyai", "workbenches",
    ),
}

ApiVersion = Literal["v1", "v2"]


@dataclass(frozen=True)
class OpenShiftAiArgs:
    operator: pulumi.Resource
    """The rhods-operator install: the DSC and DSCI CRDs exist only once its CSV succeeded."""
    api_version: ApiVersion
    """DataScienceCluster/DSCInitialization API version of the installed line (v2 for 3.x, v1 for 2.25)."""


def initialization_spec(api_version: ApiVersion) -> dict[str, object]:
    spec: dict[str, object] = {
        "applicationsNamespace": APPLICATIONS_NAMESPACE,
        "monitoring": {"managementState": "Removed", "namespace": MONITORING_NAMESPACE},
        "trustedCABundle": {"managementState": "Managed", "customCABundle": ""},
    }
    if api_version == "v1":
        # RawDeployment needs no Service Mesh; 2.x would otherwise install Istio for Serverless.
        spec["serviceMesh"] = {"managementState": "Removed"}
    return spec


def components_spec(api_version: ApiVersion) -> dict[str, object]:
    components: dict[str, object] = {component: {"managementState": "Removed"} for component in UNUSED_COMPONENTS[api_version]}
    kserve: dict[str, object] = {
        "managementState": "Managed",
        "nim": {"managementState": "Managed"},
        "rawDeploymentServiceConfig": "Headed",
    }
    if api_version == "v1":
        kserve["defaultDeploymentMode"] = "RawDeployment"
        kserve["serving"] = {"managementState": "Removed"}
    components["kserve"] = kserve
    return components


class OpenShiftAi(pulumi.ComponentResource):
    """DSCInitialization and DataScienceCluster (v2 or v1), each awaited until Ready.

    KServe in RawDeployment mode with NIM support; every other component Removed. A ClusterIP ("Headed") predictor Service gives each model a stable in-cluster URL.
    """

    data_science_cluster: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: OpenShiftAiArgs, provider: k8s.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("confidential-ai:openshift_ai:OpenShiftAi", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[args.operator])
        # A patch, not a create: the operator owns this object; on destroy the fields are released.
        initialization = k8s.apiextensions.CustomResourcePatch(
            f"{name}-initialization",
            api_version=f"dscinitialization.opendatahub.io/{args.api_version}",
            kind="DSCInitialization",
            metadata={
                "name": DEFAULT_DSCI,
                "annotations": {"pulumi.com/patchForce": "true", "pulumi.com/waitFor": PHASE_READY, "pulumi.com/timeoutSeconds": "1200"},
            },
            spec=initialization_spec(args.api_version),
            opts=child,
        )
        self.data_science_cluster = k8s.apiextensions.CustomResource(
            f"{name}-data-science-cluster",
            api_version=f"datasciencecluster.opendatahub.io/{args.api_version}",
            kind="DataScienceCluster",
            metadata={
                "name": DATA_SCIENCE_CLUSTER,
                "annotations": {"pulumi.com/waitFor": PHASE_READY, "pulumi.com/timeoutSeconds": "1800"},
            },
            spec={"components": components_spec(args.api_version)},
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[args.operator, initialization])),
        )
        self.register_outputs({"dataScienceCluster": DATA_SCIENCE_CLUSTER})
