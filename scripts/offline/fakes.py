"""Deterministic stand-ins for what providers compute: IDs, kubeconfigs, keys, stack outputs.

Every value is derived from the resource's type, name and inputs, so the same config always gives
the same plan. Components add entries here when they need a provider-computed value that matters
to the plan (an Azure resource ID, a certificate PEM), keyed by type token or invoke token.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import MockCallArgs, MockResourceArgs

FAKE_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class StackOutputs:
    """What a StackReference to a deployed stack sees: its outputs and which of them are secret."""

    values: dict[str, Any]
    secret_names: frozenset[str] = frozenset()


def digest(*parts: str, length: int = 32) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:length]


def fake_guid(*parts: str) -> str:
    h = digest(*parts)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def fake_pem(label: str, *parts: str) -> str:
    """A PEM-shaped placeholder; clearly not real key material, stable for the same inputs."""
    body = base64.b64encode(("offline-plan placeholder " + digest(label, *parts, length=64)).encode()).decode()
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


ResourceFake = Callable[[MockResourceArgs], tuple[str, dict[str, Any]]]
CallFake = Callable[[MockCallArgs], dict[str, Any]]

# Type token -> fake. A token missing here gets `<name>-id` and its inputs back as state.
RESOURCE_FAKES: dict[str, ResourceFake] = {}
# Invoke token -> fake result.
CALL_FAKES: dict[str, CallFake] = {}


def resource_fake(*tokens: str) -> Callable[[ResourceFake], ResourceFake]:
    def register(fn: ResourceFake) -> ResourceFake:
        for token in tokens:
            RESOURCE_FAKES[token] = fn
        return fn

    return register


def call_fake(*tokens: str) -> Callable[[CallFake], CallFake]:
    def register(fn: CallFake) -> CallFake:
        for token in tokens:
            CALL_FAKES[token] = fn
        return fn

    return register


@resource_fake("pulumi:providers:kubernetes")
def _kubernetes_provider(args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
    return fake_guid("provider", args.name), dict(args.inputs)


class OfflineMocks(pulumi.runtime.Mocks):
    def __init__(self, stack_outputs: Mapping[str, StackOutputs]):
        self.stack_outputs = stack_outputs

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.typ == "pulumi:pulumi:StackReference":
            return self._stack_reference(args)
        if args.typ.startswith("kubernetes:") and not args.typ.startswith("kubernetes:helm"):
            metadata = args.inputs.get("metadata") or {}
            namespace = metadata.get("namespace")
            name = metadata.get("name", args.name)
            return (f"{namespace}/{name}" if namespace else name), dict(args.inputs)
        fake = RESOURCE_FAKES.get(args.typ)
        if fake:
            return fake(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: MockCallArgs) -> dict[str, Any]:
        fake = CALL_FAKES.get(args.token)
        if fake is None:
            raise NotImplementedError(f"the offline plan has no fake for invoke {args.token}; add one in scripts/offline/fakes.py")
        return fake(args)

    def _stack_reference(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        name = args.inputs.get("name") or args.name
        short = name.rsplit("/", 1)[-1]
        outputs = self.stack_outputs.get(name) or self.stack_outputs.get(short)
        if outputs is None:
            # What a real StackReference to a stack never deployed sees: no outputs at all.
            return name, {**args.inputs, "name": name, "outputs": {}, "secretOutputNames": []}
        return name, {
            **args.inputs,
            "name": name,
            "outputs": dict(outputs.values),
            "secretOutputNames": sorted(outputs.secret_names),
        }


# --- Azure (azure-native) --------------------------------------------------------------------
# The explicit azure-native provider's fake ID is its subscription, so resources registered with it
# can build their Azure resource IDs (`args.provider` is "<provider URN>::<provider ID>").


@resource_fake("pulumi:providers:azure-native")
def _azure_native_provider(args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
    return args.inputs.get("subscriptionId") or FAKE_SUBSCRIPTION, dict(args.inputs)


def _subscription(args: MockResourceArgs) -> str:
    return (args.provider or "").rsplit("::", 1)[-1] if args.provider and "::" in args.provider else FAKE_SUBSCRIPTION


def _group_id(args: MockResourceArgs) -> str:
    return f"/subscriptions/{_subscription(args)}/resourceGroups/{args.inputs['resourceGroupName']}"


def _azure(args: MockResourceArgs, id_: str, name: str, **extra: Any) -> tuple[str, dict[str, Any]]:
    """Azure echoes the body back with the resource's id, name and a succeeded provisioning state."""
    state = {**args.inputs, "id": id_, "name": name, "provisioningState": "Succeeded", **extra}
    return id_, state


def _test_net_address(*parts: str) -> str:
    """A documentation address (RFC 5737 TEST-NET-3), stable for the same parts."""
    return f"203.0.113.{int(digest(*parts, length=4), 16) % 254 + 1}"


# The Azure ID path below the resource group, from the resource's inputs, per azure-native token.
_AZURE_PATHS = {
    "azure-native:network:VirtualNetwork": "Microsoft.Network/virtualNetworks/{virtualNetworkName}",
    "azure-native:network:Subnet": "Microsoft.Network/virtualNetworks/{virtualNetworkName}/subnets/{subnetName}",
    "azure-native:network:NatGateway": "Microsoft.Network/natGateways/{natGatewayName}",
    "azure-native:network:NetworkSecurityGroup": "Microsoft.Network/networkSecurityGroups/{networkSecurityGroupName}",
    "azure-native:network:PublicIPAddress": "Microsoft.Network/publicIPAddresses/{publicIpAddressName}",
    "azure-native:compute:Gallery": "Microsoft.Compute/galleries/{galleryName}",
    "azure-native:compute:GalleryImage": "Microsoft.Compute/galleries/{galleryName}/images/{galleryImageName}",
}


@resource_fake("azure-native:resources:ResourceGroup")
def _resource_group(args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
    return _azure(args, _group_id(args), args.inputs["resourceGroupName"])


@resource_fake(*_AZURE_PATHS)
def _azure_resource(args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
    id_ = f"{_group_id(args)}/providers/{_AZURE_PATHS[args.typ].format(**args.inputs)}"
    name = id_.rsplit("/", 1)[-1]
    extra = {"ipAddress": _test_net_address("public-ip", id_)} if args.typ == "azure-native:network:PublicIPAddress" else {}
    return _azure(args, id_, name, **extra)


@resource_fake("azure-native:authorization:RoleDefinition")
def _role_definition(args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
    guid = args.inputs["roleDefinitionId"]
    return _azure(args, f"{args.inputs['scope']}/providers/Microsoft.Authorization/roleDefinitions/{guid}", guid)


@resource_fake("azure-native:authorization:RoleAssignment")
def _role_assignment(args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
    guid = args.inputs["roleAssignmentName"]
    return _azure(args, f"{args.inputs['scope']}/providers/Microsoft.Authorization/roleAssignments/{guid}", guid)


def _aro_domain_names(domain: str, location: str) -> str:
    """ARO's DNS zone: `<domain>.<region>.aroapp.io` for a bare label, the domain itself when it is a DNS name."""
    return domain if "." in domain else f"{domain}.{location}.aroapp.io"


# API server URL of each faked ARO cluster by (resource group, name), for the admin kubeconfig invoke.
_ARO_API_URLS: dict[tuple[str, str], str] = {}


@resource_fake("azure-native:redhatopenshift:OpenShiftCluster")
def _aro_cluster(args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
    from scripts.offline import _decode_wire, plain  # the package imports this module

    name, group = args.inputs["resourceName"], args.inputs["resourceGroupName"]
    # The profile carries the pull secret, so it arrives wrapped as a secret.
    domain = plain(_decode_wire(args.inputs["clusterProfile"]))["domain"]
    zone = _aro_domain_names(domain, args.inputs["location"])
    api_url = f"https://api.{zone}:6443/"
    _ARO_API_URLS[(group, name)] = api_url
    return _azure(
        args,
        f"{_group_id(args)}/providers/Microsoft.RedHatOpenShift/openShiftClusters/{name}",
        name,
        apiserverProfile={**args.inputs.get("apiserverProfile", {}), "url": api_url, "ip": _test_net_address("aro-api", zone)},
        consoleProfile={"url": f"https://console-openshift-console.apps.{zone}/"},
        ingressProfiles=[{**profile, "ip": _test_net_address("aro-ingress", zone)} for profile in args.inputs.get("ingressProfiles", [])],
    )


@call_fake("azure-native:redhatopenshift:listOpenShiftClusterAdminCredentials")
def _aro_admin_kubeconfig(args: MockCallArgs) -> dict[str, Any]:
    name, group = args.args["resourceName"], args.args["resourceGroupName"]
    server = _ARO_API_URLS.get((group, name), f"https://api.{name}.offline.invalid:6443/").rstrip("/")
    kubeconfig = (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: {name}\n  cluster:\n    server: {server}\n"
        f"contexts:\n- name: admin\n  context:\n    cluster: {name}\n    user: admin\n"
        "current-context: admin\n"
        f"users:\n- name: admin\n  user:\n    token: offline-plan-placeholder-{digest('aro-admin', group, name)}\n"
    )
    return {"kubeconfig": base64.b64encode(kubeconfig.encode()).decode()}
