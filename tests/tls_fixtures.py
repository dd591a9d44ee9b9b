"""Keys and certificates made by the offline plan's pulumi-tls fakes (scripts/offline/fakes.py): real,
deterministic PEMs, derived from a resource name, so a test builds the same chain the plan would; and
which lines of a private key PEM are actually private."""

from __future__ import annotations

import base64
import json
from http.server import BaseHTTPRequestHandler
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
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


def private_lines(pem: str) -> list[str]:
    """The base64 lines of a private key PEM that carry its private bytes.

    The rest is public: an EC key's DER ends with its public point, which a certificate or request for
    the same key carries too, and may happen to encode to an identical 64-character line.
    """
    lines = [line for line in pem.strip().splitlines() if not line.startswith("-----")]
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        secret = key.private_numbers().private_value.to_bytes((key.curve.key_size + 7) // 8, "big")
    else:
        secret = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    start = base64.b64decode("".join(lines)).find(secret)
    assert start >= 0, "the private bytes are in the key's DER"
    return lines[start // 48 : (start + len(secret) - 1) // 48 + 1]  # 48 bytes per 64-character line


class JsonHandler(BaseHTTPRequestHandler):
    """A test server's request handler that answers JSON and keeps its log off the test output."""

    def log_message(self, *args: Any) -> None:
        pass

    def send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
