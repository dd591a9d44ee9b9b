"""Keys and certificates as stateful pulumi-tls resources: made once at `pulumi up`, kept in state."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_tls as tls

ALGORITHM = "ECDSA"
CURVE = "P256"
# Replacing a key invalidates every certificate and token it made: deleting one is a deliberate act
# (policy `critical-resources-protected`, docs/security-model.md).
PROTECTED = pulumi.ResourceOptions(protect=True)


@dataclass(frozen=True)
class ServerCertificateArgs:
    hostname: str
    organization: str
    validity_hours: int


class SelfSignedServerCertificate(pulumi.ComponentResource):
    """A private CA and a server certificate it issues for one hostname.

    Clients trust `ca_cert_pem` (public); `private_key_pem` is the server's key (a Pulumi secret).
    """

    def __init__(self, name: str, args: ServerCertificateArgs, provider: tls.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("confidential-ai:tls:SelfSignedServerCertificate", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        ca_key, ca = _certificate_authority(f"{name}-ca", f"{args.organization} CA", args.organization, args.validity_hours, child)
        server_key, server = _server_certificate(name, args.hostname, [args.hostname], args.organization, (ca_key, ca), args.validity_hours, child)
        self.ca_cert_pem: pulumi.Output[str] = ca.cert_pem
        self.cert_pem: pulumi.Output[str] = server.cert_pem
        self.private_key_pem: pulumi.Output[str] = pulumi.Output.secret(server_key.private_key_pem)
        self.register_outputs({"caCertPem": self.ca_cert_pem, "certPem": self.cert_pem})


class SigningCertificate(pulumi.ComponentResource):
    """A P-256 signing key and a self-signed certificate naming it (ES256 tokens)."""

    def __init__(self, name: str, common_name: str, validity_hours: int, provider: tls.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("confidential-ai:tls:SigningCertificate", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        key, cert = _self_signed(name, tls.SelfSignedCertSubjectArgs(common_name=common_name), validity_hours, ["digital_signature"], child)
        self.cert_pem: pulumi.Output[str] = cert.cert_pem
        self.private_key_pem: pulumi.Output[str] = pulumi.Output.secret(key.private_key_pem)
        self.register_outputs({"certPem": self.cert_pem})


def _self_signed(
    name: str, subject: tls.SelfSignedCertSubjectArgs, validity_hours: int, allowed_uses: list[str], opts: pulumi.ResourceOptions
) -> tuple[tls.PrivateKey, tls.SelfSignedCert]:
    """A P-256 key and a certificate it signs for itself; a CA when it may sign certificates."""
    key = tls.PrivateKey(f"{name}-key", algorithm=ALGORITHM, ecdsa_curve=CURVE, opts=pulumi.ResourceOptions.merge(opts, PROTECTED))
    cert = tls.SelfSignedCert(
        f"{name}-cert",
        private_key_pem=key.private_key_pem,
        subject=subject,
        is_ca_certificate="cert_signing" in allowed_uses,
        set_subject_key_id=True,
        validity_period_hours=validity_hours,
        allowed_uses=allowed_uses,
        opts=opts,
    )
    return key, cert


def _certificate_authority(
    name: str, common_name: str, organization: str, validity_hours: int, opts: pulumi.ResourceOptions
) -> tuple[tls.PrivateKey, tls.SelfSignedCert]:
    """A protected CA key and its self-signed CA certificate."""
    subject = tls.SelfSignedCertSubjectArgs(common_name=common_name, organization=organization)
    return _self_signed(name, subject, validity_hours, ["cert_signing", "crl_signing"], opts)


@dataclass(frozen=True)
class InferenceCertificatesArgs:
    organization: str
    validity_hours: int
    servers: dict[str, list[str]]
    """Workload name -> the host names its serving certificate names."""


@dataclass(frozen=True)
class ServingIdentity:
    cert_pem: pulumi.Output[str]
    """Public: clients check it (scripts/verify_endpoint.py) and the pod serves it."""
    private_key_pem: pulumi.Output[str]
    """A Pulumi secret, PKCS#8: it reaches only KBS, which releases it to the attested workload."""


class InferenceCertificates(pulumi.ComponentResource):
    """The inference CA and, per workload, a serving key and a certificate it issues for the workload's host names.

    The CA certificate is what model clients trust; each serving key is released by KBS only to a pod VM
    measuring its workload, so a handshake that verifies against this CA ends inside such a pod VM.
    """

    def __init__(self, name: str, args: InferenceCertificatesArgs, provider: tls.Provider, opts: pulumi.ResourceOptions | None = None):
        super().__init__("confidential-ai:tls:InferenceCertificates", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        ca_key, ca = _certificate_authority(f"{name}-ca", f"{args.organization} inference CA", args.organization, args.validity_hours, child)
        self.ca_cert_pem: pulumi.Output[str] = ca.cert_pem
        self.servers: dict[str, ServingIdentity] = {}
        for workload, hostnames in sorted(args.servers.items()):
            # The subject names the workload: a Route host (<model>-<namespace>.<domain>) can be longer than
            # the 64 characters a common name may have (RFC 5280 ub-common-name); clients match the SANs.
            key, cert = _server_certificate(f"{name}-{workload}", workload, hostnames, args.organization, (ca_key, ca), args.validity_hours, child)
            self.servers[workload] = ServingIdentity(cert.cert_pem, pulumi.Output.secret(key.private_key_pem_pkcs8))
        self.register_outputs({"caCertPem": self.ca_cert_pem, "servers": {w: s.cert_pem for w, s in self.servers.items()}})


def _server_certificate(
    name: str, common_name: str, hostnames: list[str], organization: str, issuer: tuple[tls.PrivateKey, tls.SelfSignedCert], validity_hours: int, opts: pulumi.ResourceOptions
) -> tuple[tls.PrivateKey, tls.LocallySignedCert]:
    """A protected P-256 server key and a certificate `issuer` (CA key, CA certificate) issues it for `hostnames` (SANs)."""
    ca_key, ca = issuer
    key = tls.PrivateKey(f"{name}-key", algorithm=ALGORITHM, ecdsa_curve=CURVE, opts=pulumi.ResourceOptions.merge(opts, PROTECTED))
    request = tls.CertRequest(
        f"{name}-request",
        private_key_pem=key.private_key_pem,
        subject=tls.CertRequestSubjectArgs(common_name=common_name, organization=organization),
        dns_names=list(hostnames),
        opts=opts,
    )
    cert = tls.LocallySignedCert(
        f"{name}-cert",
        cert_request_pem=request.cert_request_pem,
        ca_private_key_pem=ca_key.private_key_pem,
        ca_cert_pem=ca.cert_pem,
        validity_period_hours=validity_hours,
        allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
        opts=opts,
    )
    return key, cert
