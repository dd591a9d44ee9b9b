"""Trust bundles: what the trusted side hands one cloud stack, as a compact JWS it signed.

ES256 (RFC 7518 section 3.4: P-256, SHA-256, raw r||s), the payload serialized with sorted keys and no
spaces, signed with deterministic ECDSA (RFC 6979) so the same outputs give the same bundle and plans
stay byte-identical. The header names the signing key by `kid`, the key's RFC 7638 thumbprint, so a
verifier can pin keys by value and a renamed key cannot pass for another. Verification accepts only
ES256, only a pinned key, and no `crit` extensions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

ALGORITHM = "ES256"
_COORDINATE_BYTES = 32
_ECDSA = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


class BundleError(ValueError):
    """A bundle that is malformed or does not verify; the message is one line."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64url(text: str, what: str) -> bytes:
    if not text or any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in text):
        raise BundleError(f"its {what} is not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BundleError(f"its {what} is not base64url") from None


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint of an EC public JWK (SHA-256 of crv, kty, x, y in that order, base64url)."""
    members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    return _b64url(hashlib.sha256(_canonical(members)).digest())


def public_jwk(public_key_pem: str) -> dict[str, str]:
    """The verification key as a public JWK whose `kid` is its thumbprint."""
    key = serialization.load_pem_public_key(public_key_pem.encode())
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("a trust bundle key must be an ECDSA P-256 key")
    numbers = key.public_numbers()
    jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64url(numbers.x.to_bytes(_COORDINATE_BYTES, "big")),
        "y": _b64url(numbers.y.to_bytes(_COORDINATE_BYTES, "big")),
    }
    return {**jwk, "alg": ALGORITHM, "use": "sig", "kid": thumbprint(jwk)}


def sign(payload: Mapping[str, Any], private_key_pem: str) -> str:
    """The compact JWS of `payload`, signed ES256 with `private_key_pem` under its thumbprint."""
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    header = {"alg": ALGORITHM, "kid": public_jwk(public_pem)["kid"]}  # public_jwk refuses any key but ECDSA P-256
    signing_input = f"{_b64url(_canonical(header))}.{_b64url(_canonical(payload))}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), _ECDSA))
    return f"{signing_input}.{_b64url(r.to_bytes(_COORDINATE_BYTES, 'big') + s.to_bytes(_COORDINATE_BYTES, 'big'))}"


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str, bytes]:
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise BundleError("it is not a compact JWS (three base64url parts joined by '.')")
    decoded = []
    for text, what in ((parts[0], "header"), (parts[1], "payload")):
        try:
            value = json.loads(_unb64url(text, what))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise BundleError(f"its {what} is not JSON") from None
        if not isinstance(value, dict):
            raise BundleError(f"its {what} is not a JSON object")
        decoded.append(value)
    return decoded[0], decoded[1], f"{parts[0]}.{parts[1]}", _unb64url(parts[2], "signature")


def unverified_payload(token: str) -> dict[str, Any]:
    """The payload without checking the signature: only to find which stack a bundle is for."""
    return _parts(token)[1]


def verify_key(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    """The public key of a pinned JWK; BundleError when it is not a P-256 point."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise BundleError(f"pinned key {jwk.get('kid')} is not an EC P-256 key")
    x = int.from_bytes(_unb64url(str(jwk.get("x", "")), "pinned key x"), "big")
    y = int.from_bytes(_unb64url(str(jwk.get("y", "")), "pinned key y"), "big")
    try:
        return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    except ValueError:
        raise BundleError(f"pinned key {jwk.get('kid')} is not a point on P-256") from None


def verify(token: str, pinned: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The payload of `token` once its ES256 signature verifies with one of the `pinned` JWKs."""
    header, payload, signing_input, signature = _parts(token)
    if header.get("alg") != ALGORITHM:
        raise BundleError(f"its algorithm is {header.get('alg')!r}, not {ALGORITHM}")
    if "crit" in header:
        raise BundleError("its header has critical extensions this verifier does not implement")
    keys = {thumbprint(jwk): jwk for jwk in pinned}
    kid = header.get("kid")
    if kid not in keys:
        raise BundleError(f"it is signed by key {kid!r}, which is not pinned (pinned: {', '.join(sorted(keys)) or 'none'})")
    if len(signature) != 2 * _COORDINATE_BYTES:
        raise BundleError("its signature is not an ES256 signature (64 bytes r||s)")
    der = encode_dss_signature(int.from_bytes(signature[:_COORDINATE_BYTES], "big"), int.from_bytes(signature[_COORDINATE_BYTES:], "big"))
    try:
        verify_key(keys[kid]).verify(der, signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise BundleError(f"its signature does not verify with pinned key {kid}") from None
    return payload
