"""Keys and certificates made by the offline plan's pulumi-tls fakes (scripts/offline/fakes.py): real,
deterministic PEMs, derived from a resource name, so a test builds the same chain the plan would."""

from __future__ import annotations

from typing import Any

from pulumi.runtime import MockResourceArgs

from scripts.offline.fakes import RESOURCE_FAKES

TEN_YEARS = 87600  # hours: the fakes' certificates start 2026-01-01


def _fake(token: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    _, state = RESOURCE_FAKES[token](MockResourceArgs(token, name, inputs))
    return state


def private_key(name: str) -> str:
    return _fake("tls:index/privateKey:PrivateKey", name, {"algorithm": "ECDSA", "ecdsaCurve": "P256"})["privateKeyPem"]


def ca(name: str, common_name: str) -> tuple[str, str]:
    """(certificate PEM, key PEM) of a self-signed CA."""
    key = private_key(f"{name}-key")
    cert = _fake(
        "tls:index/selfSignedCert:SelfSignedCert",
        f"{name}-cert",
        {"privateKeyPem": key, "subject": {"commonName": common_name}, "isCaCertificate": True,
         "validityPeriodHours": TEN_YEARS, "allowedUses": ["cert_signing", "crl_signing"]},
    )["certPem"]
    return cert, key


def server_certificate(name: str, issuer: tuple[str, str], dns_names: list[str], use: str = "server_auth") -> tuple[str, str]:
    """(certificate PEM, key PEM) of a certificate `issuer` issued for `dns_names` (`use`: server_auth or client_auth)."""
    key = private_key(f"{name}-key")
    request = _fake("tls:index/certRequest:CertRequest", f"{name}-request", {"privateKeyPem": key, "subject": {"commonName": dns_names[0]}, "dnsNames": dns_names})
    cert = _fake(
        "tls:index/locallySignedCert:LocallySignedCert",
        f"{name}-cert",
        {"certRequestPem": request["certRequestPem"], "caCertPem": issuer[0], "caPrivateKeyPem": issuer[1],
         "validityPeriodHours": TEN_YEARS, "allowedUses": ["digital_signature", "key_encipherment", use]},
    )["certPem"]
    return cert, key
