"""Install an operator through OLM and wait until it serves its CRDs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from stacks.config.base import OperatorPin

# Subscription.status.state reaches AtLatestKnown once the pinned CSV's InstallPlan completed
# (operator-framework/api pkg/operators/v1alpha1/subscription_types.go, SubscriptionStateAtLatest).
SUBSCRIPTION_SETTLED = "jsonpath={.status.state}=AtLatestKnown"
# Manual approval blocks here until someone approves the InstallPlan; give them time.
_WAIT_SECONDS = {"Automatic": "900", "Manual": "3600"}


@dataclass(frozen=True)
class OperatorInstallArgs:
    namespace: str
    package: str
    """The OLM package, also the Subscription's name."""
    pin: OperatorPin
    own_namespace: bool = True
    """OperatorGroup targets only `namespace`; False leaves its spec empty (all namespaces)."""
    source_namespace: str = "openshift-marketplace"


class OperatorInstall(pulumi.ComponentResource):
    """Namespace, OperatorGroup and a Subscription pinned to one CSV, awaited until settled.

    Custom resources served by the operator depend on `subscription`, so they never race the CRD;
    plain objects placed in the namespace depend only on `namespace_resource`.
    """

    subscription: k8s.apiextensions.CustomResource
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
                "annotations": {
                    "pulumi.com/waitFor": SUBSCRIPTION_SETTLED,
                    "pulumi.com/timeoutSeconds": _WAIT_SECONDS[args.pin.install_plan_approval],
                },
            },
            spec={
                "name": args.package,
                "channel": args.pin.channel,
                "source": args.pin.source,
                "sourceNamespace": args.source_namespace,
                "startingCSV": args.pin.starting_csv,
                "installPlanApproval": args.pin.install_plan_approval,
            },
            opts=pulumi.ResourceOptions.merge(in_namespace, pulumi.ResourceOptions(depends_on=[group])),
        )
        self.namespace = args.namespace
        self.namespace_resource = namespace
        self.register_outputs({"namespace": args.namespace, "subscription": self.subscription.metadata["name"]})
