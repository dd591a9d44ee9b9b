"""The signed sealed-secret pointer: the format CDH parses and verifies, and nothing but a KBS URI inside.

Signatures are checked with an independent JOSE implementation (jwcrypto) against the JWK the trusted
side publishes, as CDH does (guest-components confidential-data-hub hub/src/secret/mod.rs at
8246e5e0977f6322f0a1b0f77e0739cf1c3e1f74: `kid` fetched from KBS, ES256 only, raw r||s over
`header.payload`).
"""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwcrypto import jwk, jws
from jwcrypto.common import JWException

from components.sealed_secret import pointer_target, public_jwk, sealed_secret

KID = "kbs:///default/sealed-secret-key/public-jwk"
KEY = ec.derive_private_key(0xC0FFEE, ec.SECP256R1())
PRIVATE_PEM = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()).decode()
PUBLIC_PEM = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def b64url_json(part: str) -> dict:
    assert "=" not in part and "+" not in part and "/" not in part, "parts must be URL-safe base64 without padding"
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def decode(value: str) -> dict:
    """The payload of a signed sealed secret, after checking its shape (not its signature)."""
    prefix, header, body, signature = value.split(".")
    assert prefix == "sealed"
    assert set(b64url_json(header)) == {"alg", "kid"} and b64url_json(header)["alg"] == "ES256"
    assert len(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))) == 64, "raw r||s, not DER"
    return b64url_json(body)


def verify(value: str, public_key: dict) -> dict:
    """Verify like CDH: the JWS after `sealed.`, with the published JWK; returns the payload."""
    assert value.startswith("sealed.")
    token = jws.JWS()
    token.deserialize(value.removeprefix("sealed."))
    token.verify(jwk.JWK(**public_key), alg="ES256")
    return json.loads(token.payload)


def test_signature_verifies_with_the_published_jwk_in_another_jose_library():
    value = sealed_secret("kbs:///default/nim-ngc/api-key", PRIVATE_PEM, KID)
    assert verify(value, public_jwk(PUBLIC_PEM, KID)) == {
        "version": "0.1.0",
        "type": "vault",
        "name": "kbs:///default/nim-ngc/api-key",
        "provider": "kbs",
        "provider_settings": {},
        "annotations": {},
    }
    assert b64url_json(value.split(".")[1]) == {"alg": "ES256", "kid": KID}


def test_published_jwk_is_the_public_p256_key_only():
    key = public_jwk(PUBLIC_PEM, KID)
    assert set(key) == {"kty", "crv", "x", "y", "alg", "use", "kid"} and "d" not in key
    assert (key["kty"], key["crv"], key["alg"], key["kid"]) == ("EC", "P-256", "ES256", KID)
    assert jwk.JWK(**key).export_to_pem() == PUBLIC_PEM.encode()


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda p, h, b, s: (p, h, sealed_secret("kbs:///default/other/key", PRIVATE_PEM, KID).split(".")[2], s), id="payload-swapped"),
        pytest.param(lambda p, h, b, s: (p, h, b[:-2] + ("A" if b[-2] != "A" else "B") + b[-1], s), id="payload-byte"),
        pytest.param(lambda p, h, b, s: (p, base64.urlsafe_b64encode(b'{"alg":"ES256","kid":"kbs:///default/x/y"}').decode().rstrip("="), b, s), id="header-kid"),
        pytest.param(lambda p, h, b, s: (p, h, b, ("A" if s[0] != "A" else "B") + s[1:]), id="signature"),
    ],
)
def test_a_tampered_pointer_fails_verification(tamper):
    value = sealed_secret("kbs:///default/nim-ngc/api-key", PRIVATE_PEM, KID)
    tampered = ".".join(tamper(*value.split(".")))
    assert tampered != value
    with pytest.raises(JWException):
        verify(tampered, public_jwk(PUBLIC_PEM, KID))


def test_a_pointer_signed_by_another_key_fails_verification():
    other = ec.derive_private_key(0xBAD, ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    with pytest.raises(JWException):
        verify(sealed_secret("kbs:///default/nim-ngc/api-key", other, KID), public_jwk(PUBLIC_PEM, KID))


@pytest.mark.parametrize("uri", ["kbs:///default/a/b", "kbs:///default/nvcr/credentials", "kbs:///repo/x-y/z_1"])
def test_parts_never_need_padding_or_unsafe_characters(uri):
    assert decode(sealed_secret(uri, PRIVATE_PEM, KID))["name"] == uri


def test_same_key_and_uri_give_the_same_value():
    """Deterministic ECDSA (RFC 6979): plans stay byte-identical."""
    assert sealed_secret("kbs:///default/a/b", PRIVATE_PEM, KID) == sealed_secret("kbs:///default/a/b", PRIVATE_PEM, KID)


@pytest.mark.parametrize("uri", ["https://kbs.example.com/default/a/b", "kbs:///default/a", "kbs:///default/a/b/c", "nim-ngc-api-key"])
def test_rejects_anything_but_a_kbs_resource_uri(uri):
    with pytest.raises(ValueError, match="is not a KBS resource URI"):
        sealed_secret(uri, PRIVATE_PEM, KID)


def test_rejects_a_key_that_is_not_p256():
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    with pytest.raises(ValueError, match="P-256"):
        sealed_secret("kbs:///default/a/b", p384, KID)


def _pem(private_key) -> tuple[str, str]:
    """(private PEM, public PEM) of `private_key`."""
    private = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    public = private_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def test_rejects_a_signing_key_that_is_not_ecdsa():
    ed25519_private, _ = _pem(ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(ValueError, match="must be an ECDSA P-256 key"):
        sealed_secret("kbs:///default/a/b", ed25519_private, KID)


def test_publishes_no_jwk_for_a_p384_key():
    _, p384_public = _pem(ec.derive_private_key(0xC0FFEE, ec.SECP384R1()))
    with pytest.raises(ValueError, match="must be an ECDSA P-256 key"):
        public_jwk(p384_public, KID)


def test_publishes_no_jwk_for_a_key_that_is_not_ecdsa():
    _, ed25519_public = _pem(ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(ValueError, match="must be an ECDSA P-256 key"):
        public_jwk(ed25519_public, KID)


def test_pointer_target_names_the_resource_of_a_pointer_and_nothing_else():
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    pointer = sealed_secret("kbs:///default/ngc-api-key/api-key", pem, "kbs:///default/k/jwk")
    assert pointer_target(pointer) == "kbs:///default/ngc-api-key/api-key"
    # A value that only looks like one, or points elsewhere, is not shown as a pointer.
    header, payload, signature = pointer.removeprefix("sealed.").split(".")
    other = base64.urlsafe_b64encode(json.dumps({"provider": "vault", "name": "kbs:///default/a/b"}).encode()).decode().rstrip("=")
    for value in ("sealed.not-a-jws", f"sealed.{header}.{other}.{signature}", f"sealed.{header}.!!.{signature}", "nvapi-secret"):
        assert pointer_target(value) is None, value
