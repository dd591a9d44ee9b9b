"""Deterministic stand-ins for what providers compute: IDs, kubeconfigs, keys, stack outputs.

Every value is derived from the resource's type, name and inputs, so the same config always gives
the same plan. Components add entries here when they need a provider-computed value that matters
to the plan (an Azure resource ID, a certificate PEM), keyed by type token or invoke token.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pulumi.runtime import MockCallArgs, MockResourceArgs
from pulumi.runtime.rpc import unwrap_rpc_secret, wrap_rpc_secret

from stacks.config.cloud import aro_dns_zone

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


@resource_fake("pulumi:providers:kubernetes", "pulumi:providers:tls")
def _provider(args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
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


# --- pulumi-tls: real keys and certificates, derived from the resource name ----------------------
# Real PEMs (so a certificate in the plan parses and verifies) that are deterministic: each key's
# secret is sha256 of its resource name, signatures are Ed25519 or RFC 6979 ECDSA, validity starts
# at a fixed instant. They are for offline plans only: anyone can recompute these keys.

_TLS_EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
_CURVES = {"P224": ec.SECP224R1(), "P256": ec.SECP256R1(), "P384": ec.SECP384R1(), "P521": ec.SECP521R1()}
_CURVE_ORDERS = {
    "P224": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFF16A2E0B8F03E13DD29455C5C2A3D,
    "P256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "P384": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973,
    "P521": 0x01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409,
}
_KEY_USAGES = {
    "digital_signature": "digital_signature", "content_commitment": "content_commitment",
    "key_encipherment": "key_encipherment", "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement", "cert_signing": "key_cert_sign", "crl_signing": "crl_sign",
}
_EXTENDED_USAGES = {"server_auth": ExtendedKeyUsageOID.SERVER_AUTH, "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH}


def _fake_private_key(name: str, algorithm: str, curve: str) -> ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey:
    seed = hashlib.sha256(f"offline-plan-key\x00{name}".encode()).digest()
    if algorithm == "ED25519":
        return ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    if algorithm == "ECDSA":
        return ec.derive_private_key(int.from_bytes(seed, "big") % (_CURVE_ORDERS[curve] - 1) + 1, _CURVES[curve])
    raise NotImplementedError(f"offline fakes make ED25519 and ECDSA keys, not {algorithm} ({name})")


def placeholder_public_key_pem(name: str, algorithm: str = "ECDSA", curve: str = "P256") -> str:
    """The public half of the key the offline plan makes for the tls.PrivateKey `name`: anyone can
    recompute its private half, so a real deployment must never trust it (scripts/trust_bundles.py)."""
    public = _fake_private_key(name, algorithm, curve).public_key()
    return _pem_text(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _pem_text(data: bytes) -> str:
    return data.decode()


def _load_key(pem: Any) -> ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey:
    """A private key input, which arrives as a wrapped secret."""
    key = serialization.load_pem_private_key(unwrap_rpc_secret(pem).encode(), password=None)
    assert isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey))
    return key


def _sign_kwargs(key: Any) -> dict[str, Any]:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return {"algorithm": None}
    return {"algorithm": hashes.SHA256(), "ecdsa_deterministic": True}


def _name(subject: Mapping[str, Any] | None) -> x509.Name:
    subject = subject or {}
    attributes = [(NameOID.ORGANIZATION_NAME, subject.get("organization")), (NameOID.COMMON_NAME, subject.get("commonName"))]
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes if value])


def _certificate(name: str, inputs: Mapping[str, Any], subject: x509.Name, public_key: Any, issuer: x509.Name, issuer_key: Any, dns_names: list[str]) -> dict[str, Any]:
    hours = int(inputs["validityPeriodHours"])
    uses = list(inputs.get("allowedUses") or [])
    is_ca = bool(inputs.get("isCaCertificate"))
    usage = {flag: False for flag in (*_KEY_USAGES.values(), "encipher_only", "decipher_only")}
    usage.update({_KEY_USAGES[u]: True for u in uses if u in _KEY_USAGES})
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(int(digest("serial", name), 16))
        .not_valid_before(_TLS_EPOCH)
        .not_valid_after(_TLS_EPOCH + datetime.timedelta(hours=hours))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(**usage), critical=True)
    )
    extended = [_EXTENDED_USAGES[u] for u in uses if u in _EXTENDED_USAGES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns_names]), critical=False)
    cert = builder.sign(issuer_key, **_sign_kwargs(issuer_key))
    return {
        **inputs,
        "certPem": _pem_text(cert.public_bytes(serialization.Encoding.PEM)),
        "validityStartTime": _TLS_EPOCH.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "validityEndTime": (_TLS_EPOCH + datetime.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "readyForRenewal": False,
    }


@resource_fake("tls:index/privateKey:PrivateKey")
def _tls_private_key(args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
    algorithm = args.inputs.get("algorithm", "RSA")
    curve = args.inputs.get("ecdsaCurve", "P224")
    key = _fake_private_key(args.name, algorithm, curve)
    public = key.public_key()
    pkcs8 = _pem_text(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    # pulumi-tls writes ECDSA keys as SEC 1 ("EC PRIVATE KEY") and Ed25519 keys as PKCS#8.
    traditional = pkcs8 if algorithm == "ED25519" else _pem_text(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    )
    openssh_public = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return digest("tls-key", args.name, length=40), {
        **args.inputs,
        "algorithm": algorithm,
        "ecdsaCurve": curve,
        "privateKeyPem": traditional,
        "privateKeyPemPkcs8": pkcs8,
        "privateKeyOpenssh": _pem_text(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())),
        "publicKeyPem": _pem_text(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)),
        "publicKeyOpenssh": openssh_public + "\n",
        "publicKeyFingerprintSha256": "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(openssh_public.split()[1])).digest()).decode().rstrip("="),
    }


@resource_fake("tls:index/selfSignedCert:SelfSignedCert")
def _tls_self_signed_cert(args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
    key = _load_key(args.inputs["privateKeyPem"])
    subject = _name(args.inputs.get("subject"))
    state = _certificate(args.name, args.inputs, subject, key.public_key(), subject, key, list(args.inputs.get("dnsNames") or []))
    return digest("tls-cert", args.name, length=40), state


@resource_fake("tls:index/certRequest:CertRequest")
def _tls_cert_request(args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
    key = _load_key(args.inputs["privateKeyPem"])
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(args.inputs.get("subject")))
    dns_names = list(args.inputs.get("dnsNames") or [])
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns_names]), critical=False)
    request = builder.sign(key, **_sign_kwargs(key))
    return digest("tls-csr", args.name, length=40), {**args.inputs, "certRequestPem": _pem_text(request.public_bytes(serialization.Encoding.PEM))}


@resource_fake("tls:index/locallySignedCert:LocallySignedCert")
def _tls_locally_signed_cert(args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
    request = x509.load_pem_x509_csr(args.inputs["certRequestPem"].encode())
    ca_cert = x509.load_pem_x509_certificate(args.inputs["caCertPem"].encode())
    ca_key = _load_key(args.inputs["caPrivateKeyPem"])
    try:
        dns_names = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns_names = []
    state = _certificate(args.name, args.inputs, request.subject, request.public_key(), ca_cert.subject, ca_key, dns_names)
    return digest("tls-cert", args.name, length=40), {**state, "caKeyAlgorithm": "ECDSA" if isinstance(ca_key, ec.EllipticCurvePrivateKey) else "ED25519"}


# --- pulumi-random ----------------------------------------------------------------------------


@resource_fake("random:index/randomId:RandomId")
def _random_id(args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
    """Deterministic bytes that change when the keepers change, as a replacement would.

    The real value is random; this one is a digest of the keepers, which may be secrets, so every
    encoding of it is returned as a secret: a plan never shows a value an offline guess could test.
    """
    keepers = {k: unwrap_rpc_secret(v) for k, v in (unwrap_rpc_secret(args.inputs.get("keepers")) or {}).items()}
    seed = hashlib.sha256("\x00".join(["offline-plan-random-id", args.name, *(f"{k}={keepers[k]}" for k in sorted(keepers))]).encode())
    data = seed.digest()[: int(args.inputs["byteLength"])]
    prefix = args.inputs.get("prefix") or ""
    encodings = {
        "hex": data.hex(),
        "dec": str(int.from_bytes(data, "big")),
        "b64Std": base64.b64encode(data).decode(),
        "b64Url": base64.urlsafe_b64encode(data).decode().rstrip("="),
    }
    state = {**args.inputs, **{k: wrap_rpc_secret(prefix + v) for k, v in encodings.items()}}
    return digest("random-id", args.name), state


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
    "azure-native:storage:StorageAccount": "Microsoft.Storage/storageAccounts/{accountName}",
    "azure-native:storage:BlobContainer": "Microsoft.Storage/storageAccounts/{accountName}/blobServices/default/containers/{containerName}",
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


# API server URL of each faked ARO cluster by (resource group, name), for the admin kubeconfig invoke.
_ARO_API_URLS: dict[tuple[str, str], str] = {}


@resource_fake("azure-native:redhatopenshift:OpenShiftCluster")
def _aro_cluster(args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
    from scripts.offline import _decode_wire, plain  # the package imports this module

    name, group = args.inputs["resourceName"], args.inputs["resourceGroupName"]
    # The profile carries the pull secret, so it arrives wrapped as a secret.
    domain = plain(_decode_wire(args.inputs["clusterProfile"]))["domain"]
    zone = aro_dns_zone(domain, args.inputs["location"])
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


@call_fake("azure-native:storage:listStorageAccountServiceSAS")
def _service_sas(args: MockCallArgs) -> dict[str, Any]:
    """A SAS query string of the requested shape whose signature is a placeholder (no account key here)."""
    inputs = args.args
    fields = {"sv": "2022-11-02", "sr": inputs["resource"], "sp": inputs["permissions"], "spr": inputs.get("protocols", "https"),
              "se": inputs["sharedAccessExpiryTime"], "sig": f"offline-plan-placeholder-{digest('sas', inputs['canonicalizedResource'])}"}
    return {"serviceSasToken": "&".join(f"{key}={value}" for key, value in fields.items())}
