"""Sealed secrets: the signed pointer a Kubernetes Secret holds instead of a secret value.

The confidential data hub in the pod VM recognises the `sealed.` prefix, checks the ES256 signature
with the public key named by `kid` (fetched from KBS), attests to KBS and replaces the value with the
resource it names (guest-components confidential-data-hub docs/SEALED_SECRET.md, hub/src/secret/mod.rs).
The pointer is public: it names a KBS resource, never its value. Only the trusted side signs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

KBS_URI_PREFIX = "kbs:///"
# Marks a Secret whose every value is a sealed secret; the policy pack refuses plaintext in it
# (policies/rules.py KBS_RESOURCE_LABEL, docs/security-model.md).
KBS_RESOURCE_LABEL = "confidential-ai/kbs-resource"
# The only algorithm CDH accepts (hub/src/secret/mod.rs validate_es256): P-256, SHA-256, raw r||s.
ALGORITHM = "ES256"
_COORDINATE_BYTES = 32
_SEALED = re.compile(r"^sealed\.[A-Za-z0-9_-]+\.(?P<payload>[A-Za-z0-9_-]+)\.[A-Za-z0-9_-]+$")


def _b64url(data: bytes) -> str:
    """URL-safe base64 without padding, as CDH decodes every part (URL_SAFE_NO_PAD)."""
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _check_uri(resource_uri: str) -> None:
    if not resource_uri.startswith(KBS_URI_PREFIX) or resource_uri.count("/") != 5:
        raise ValueError(f"{resource_uri!r} is not a KBS resource URI like kbs:///default/<secret>/<key>")


def _signing_key(private_key_pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the sealed-secret signing key must be an ECDSA P-256 key")
    return key


def public_jwk(public_key_pem: str, kid: str) -> dict[str, Any]:
    """The verification key as the JWK CDH reads (jose-jwk `Key::Ec`, crv P-256): public part only."""
    key = serialization.load_pem_public_key(public_key_pem.encode())
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the sealed-secret verification key must be an ECDSA P-256 key")
    numbers = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64url(numbers.x.to_bytes(_COORDINATE_BYTES, "big")),
        "y": _b64url(numbers.y.to_bytes(_COORDINATE_BYTES, "big")),
        "alg": ALGORITHM,
        "use": "sig",
        "kid": kid,
    }


def sealed_secret(resource_uri: str, private_key_pem: str, kid: str) -> str:
    """`sealed.` + the compact JWS of a `vault` secret served by KBS, signed ES256 under `kid`.

    Deterministic ECDSA (RFC 6979) gives the same string for the same key and URI, so plans stay
    byte-identical. The signature is raw r||s over `header.payload`, not DER (RFC 7518 section 3.4).
    """
    signing_input = sealed_prefix(resource_uri, kid)[len("sealed.") : -1]
    der = _signing_key(private_key_pem).sign(signing_input.encode(), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(_COORDINATE_BYTES, "big") + s.to_bytes(_COORDINATE_BYTES, "big")
    return f"sealed.{signing_input}.{_b64url(signature)}"


def sealed_prefix(resource_uri: str, kid: str) -> str:
    """`sealed.<header>.<payload>.`: every pointer to `resource_uri` under `kid` starts so, whatever key signs it.
    What an agent policy pins where the pod spec puts a sealed pointer (components/initdata.py PodContainer)."""
    _check_uri(resource_uri)
    header = {"alg": ALGORITHM, "kid": kid}
    payload = {
        "version": "0.1.0",
        "type": "vault",
        "name": resource_uri,
        "provider": "kbs",
        "provider_settings": {},
        "annotations": {},
    }
    return "sealed." + ".".join(_b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)) + "."


def pointer_target(value: str) -> str | None:
    """The KBS resource URI a sealed pointer names, or None when `value` is not a sealed pointer into KBS.

    For showing a pointer as what it is (the plan's manifests); it checks no signature: CDH does that in the guest.
    """
    match = _SEALED.match(value)
    if not match:
        return None
    payload = match["payload"]
    try:
        document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    name = document.get("name") if isinstance(document, dict) else None
    if document.get("provider") != "kbs" or not isinstance(name, str) or not name.startswith(KBS_URI_PREFIX):
        return None
    return name
