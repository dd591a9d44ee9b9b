"""Install an operator through OLM, pinned to one CSV that the program approves, and wait until it succeeded."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from components.olm_approval import approval_step, installed_csv

OLM_GROUP, OLM_VERSION = "operators.coreos.com", "v1alpha1"
# InstallPlan resolution, node-level image pulls and the operator's own start fit in this; a CSV not
# Succeeded by then stops `pulumi up` with the CSV's phase and reason.
INSTALL_TIMEOUT_SECONDS = 1800
_POLL_SECONDS = 10


@dataclass(frozen=True)
class OperatorPin:
    """The one CSV to install from a channel of a catalog."""

    channel: str
    source: str
    starting_csv: str


@dataclass(frozen=True)
class OperatorInstallArgs:
    namespace: str
    package: str
    """The OLM package, also the Subscription's name."""
    pin: OperatorPin
    kubeconfig: pulumi.Input[str]
    """The cluster's kubeconfig (a Pulumi secret): the InstallPlan approval talks to the API server at `up` time."""
    own_namespace: bool = True
    """OperatorGroup targets only `namespace`; False leaves its spec empty (all namespaces)."""
    source_namespace: str = "openshift-marketplace"


class _OlmApi:
    """The few Kubernetes API calls the approval makes (kubernetes-client, at `up` time only)."""

    def __init__(self, kubeconfig: str):
        import yaml
        from kubernetes import client, config

        self._objects = client.CustomObjectsApi(config.new_client_from_config_dict(yaml.safe_load(kubeconfig)))

    def install_plans(self, namespace: str) -> list[dict[str, Any]]:
        return self._objects.list_namespaced_custom_object(OLM_GROUP, OLM_VERSION, namespace, "installplans")["items"]

    def cluster_service_version(self, namespace: str, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._objects.get_namespaced_custom_object(OLM_GROUP, OLM_VERSION, namespace, "clusterserviceversions", name)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def cluster_service_versions(self, namespace: str) -> list[dict[str, Any]]:
        return self._objects.list_namespaced_custom_object(OLM_GROUP, OLM_VERSION, namespace, "clusterserviceversions")["items"]

    def approve(self, namespace: str, name: str) -> None:
        self._objects.patch_namespaced_custom_object(
            OLM_GROUP, OLM_VERSION, namespace, "installplans", name, {"spec": {"approved": True}}, _content_type="application/merge-patch+json"
        )


def hold_pin(api: Any, namespace: str, package: str, csv: str, timeout_seconds: int, sleep: Any = time.sleep) -> str:
    """Approve the InstallPlan that installs `csv`, then wait until the CSV succeeded; the approved plan's name."""
    deadline = time.monotonic() + timeout_seconds
    approved = ""
    while True:
        step = approval_step(api.install_plans(namespace), api.cluster_service_version(namespace, csv), package, csv)
        if step.action == "approve" and step.plan:
            api.approve(namespace, step.plan)
            approved = step.plan
        elif step.action == "done":
            return step.plan or approved
        elif step.action == "fail":
            raise RuntimeError(f"{namespace}/{package}: {step.reason}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{namespace}/{package}: {csv} not installed after {timeout_seconds} s: {step.reason}")
        sleep(_POLL_SECONDS)


class _InstallPlanApprover(ResourceProvider):
    """Dynamic provider: holds the pin at create and whenever the pinned CSV changes (an upgrade); a
    refresh reads which CSV of the package the namespace really runs, so a CSV that moved is drift."""

    def _hold(self, props: dict[str, Any]) -> dict[str, Any]:
        api = _OlmApi(props["kubeconfig"])
        plan = hold_pin(api, props["namespace"], props["package"], props["csv"], int(props["timeoutSeconds"]))
        # The kubeconfig stays in the outputs (a secret, additional_secret_outputs) for `read`.
        return {"namespace": props["namespace"], "package": props["package"], "csv": props["csv"], "installPlan": plan,
                "kubeconfig": props["kubeconfig"], "timeoutSeconds": props["timeoutSeconds"]}

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        api = _OlmApi(props["kubeconfig"])
        running = installed_csv(api.cluster_service_versions(props["namespace"]), props["package"], props["csv"])
        return ReadResult(id_=id_, outs={**props, "csv": running})

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"{props['namespace']}/{props['package']}", outs=self._hold(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [key for key in ("namespace", "package", "csv") if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changed), replaces=[k for k in changed if k != "csv"], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._hold(news))


class InstallPlanApproval(pulumi.dynamic.Resource):
    """Approves exactly the InstallPlan that installs the pinned CSV, and waits until that CSV succeeded.

    pulumi-kubernetes cannot patch "the InstallPlan whose CSV list contains X": the plan's name is made
    by OLM at install time. This dynamic resource does it during `up` (and never during preview); its
    decisions are the pure functions of components/olm_approval.py. Its provider is pickled by reference,
    so the program's modules and `kubernetes` must be importable where Pulumi runs it (the project venv).
    """

    install_plan: pulumi.Output[str]

    def __init__(self, name: str, namespace: str, package: str, csv: str, kubeconfig: pulumi.Input[str], opts: pulumi.ResourceOptions):
        props = {
            "namespace": namespace,
            "package": package,
            "csv": csv,
            "kubeconfig": pulumi.Output.secret(kubeconfig),
            "timeoutSeconds": INSTALL_TIMEOUT_SECONDS,
            "installPlan": None,
        }
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["kubeconfig"]))
        super().__init__(_InstallPlanApprover(), name, props, opts)


class OperatorInstall(pulumi.ComponentResource):
    """Namespace, OperatorGroup, a Manual Subscription pinned to one CSV, and the approval of that CSV.

    Custom resources served by the operator depend on `installed`, so they never race the CRD; plain
    objects placed in the namespace depend only on `namespace_resource`. Changing the pin is an upgrade:
    the preview shows the Subscription's startingCSV and the approval's csv change.
    """

    subscription: k8s.apiextensions.CustomResource
    installed: InstallPlanApproval
    namespace_resource: k8s.core.v1.Namespace

    def __init__(self, name: str, args: OperatorInstallArgs, provider: k8s.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("confidential-ai:olm:OperatorInstall", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        # The component's own dependencies (e.g. the cluster) hold back its first child; the rest follow it.
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": args.namespace},
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=opts.depends_on if opts else None)),
        )
        in_namespace = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[namespace]))
        group = k8s.apiextensions.CustomResource(
            f"{name}-operator-group",
            api_version="operators.coreos.com/v1",
            kind="OperatorGroup",
            metadata={"name": args.package, "namespace": args.namespace},
            spec={"targetNamespaces": [args.namespace]} if args.own_namespace else {},
            opts=in_namespace,
        )
        self.subscription = k8s.apiextensions.CustomResource(
            f"{name}-subscription",
            api_version="operators.coreos.com/v1alpha1",
            kind="Subscription",
            metadata={
                "name": args.package,
                "namespace": args.namespace,
                # A Manual Subscription settles only after its InstallPlan is approved, which the
                # approval below does: awaiting it here would wait forever.
                "annotations": {"pulumi.com/skipAwait": "true"},
            },
            spec={
                "name": args.package,
                "channel": args.pin.channel,
                "source": args.pin.source,
                "sourceNamespace": args.source_namespace,
                "startingCSV": args.pin.starting_csv,
                "installPlanApproval": "Manual",
            },
            opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[group])),
        )
        self.installed = InstallPlanApproval(
            f"{name}-install-plan-approval",
            args.namespace,
            args.package,
            args.pin.starting_csv,
            args.kubeconfig,
            pulumi.ResourceOptions(parent=self, depends_on=[self.subscription]),
        )
        self.namespace = args.namespace
        self.namespace_resource = namespace
        self.register_outputs({"namespace": args.namespace, "subscription": self.subscription.metadata["name"], "csv": args.pin.starting_csv})
