"""Trust bundles: one per cloud stack, the exact view it reads, signed ES256 by a key of the trusted side's own;
checked with independent JOSE implementations (jwcrypto, joserfc)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from joserfc import jws as joserfc_jws
from joserfc.jwk import ECKey
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws

from components import trust_bundle as jws
from scripts.offline import StackRun
from stacks import trust_bundle
from stacks.contracts import CLOUD_READS
from tests.conftest import Runner, example_config, plan_once
from tests.test_config import problems

ENVS = ("dev", "prod")


def trusted_run(env: str) -> StackRun:
    return plan_once(env)[0]


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _tamper(token: str) -> str:
    """The same bundle with one byte of its payload changed (the version's digit)."""
    header, payload, signature = token.split(".")
    raw = _b64(payload).replace(b'"version":1', b'"version":9', 1)
    return f"{header}.{base64.urlsafe_b64encode(raw).decode().rstrip('=')}.{signature}"


@pytest.mark.parametrize("env", ENVS)
def test_the_trusted_outputs_carry_one_bundle_per_cloud_stack(env: str) -> None:
    outputs = trusted_run(env).outputs
    # One per spoke (prod: prod-cloud and prod-cloud-eastus).
    assert sorted(outputs["trustBundles"]) == sorted(outputs["spokes"]) and f"{env}-cloud" in outputs["trustBundles"]
    assert "trustBundles" not in trusted_run(env).secret_outputs and "trustBundleKey" not in trusted_run(env).secret_outputs


@pytest.mark.parametrize("env", ENVS)
def test_each_bundle_verifies_with_jwcrypto_against_trust_bundle_key(env: str) -> None:
    outputs = trusted_run(env).outputs
    key = jwcrypto_jwk.JWK(**outputs["trustBundleKey"])
    for stack, token in outputs["trustBundles"].items():
        verified = jwcrypto_jws.JWS()
        verified.deserialize(token)
        verified.verify(key, alg="ES256")
        assert verified.jose_header == {"alg": "ES256", "kid": outputs["trustBundleKey"]["kid"]}
        claims = json.loads(verified.payload)
        assert (claims["environment"], claims["cloudStack"], claims["version"]) == (env, stack, 1)


@pytest.mark.parametrize("env", ENVS)
def test_each_bundle_verifies_with_joserfc_and_carries_exactly_what_its_cloud_stack_reads(env: str) -> None:
    outputs = trusted_run(env).outputs
    key = ECKey.import_key(outputs["trustBundleKey"])
    for stack, token in outputs["trustBundles"].items():
        claims = json.loads(joserfc_jws.deserialize_compact(token, key, algorithms=["ES256"]).payload)
        # The shared values, and of `spokes` only this cloud stack's own resources and workloads.
        merged = {**outputs, **outputs["spokes"][stack]}
        expected = {key: merged[key] for key in (*CLOUD_READS, "inferenceCaCert", "inferenceClientCaCert") if key in merged}
        assert {k: v for k, v in claims.items() if k not in ("environment", "cloudStack", "version")} == expected
        assert "spokes" not in claims
        # Public values only: no key material, no config secret placeholder.
        assert "PRIVATE KEY" not in token and "plan-placeholder" not in json.dumps(claims)


def test_the_key_is_the_rfc7638_thumbprint_and_jwcrypto_agrees() -> None:
    key = trusted_run("prod").outputs["trustBundleKey"]
    assert key["kid"] == jwcrypto_jwk.JWK(**key).thumbprint() == jws.thumbprint(key)


@pytest.mark.parametrize("env", ENVS)
def test_the_signing_key_is_its_own_protected_p256_key(env: str) -> None:
    run = trusted_run(env)
    key = run.named("trust-bundle-key-a", "tls:index/privateKey:PrivateKey")
    assert (key.inputs["algorithm"], key.inputs["ecdsaCurve"], key.protect) == ("ECDSA", "P256", True)
    assert key.provider.endswith("::pulumi:providers:tls::tls")
    sealing = run.named("sealed-secret-signing-key", "tls:index/privateKey:PrivateKey").outputs["publicKeyPem"]
    assert jws.public_jwk(sealing)["kid"] != run.outputs["trustBundleKey"]["kid"]


def test_one_changed_byte_or_an_unpinned_key_fails_verification() -> None:
    outputs = trusted_run("prod").outputs
    token, pinned = outputs["trustBundles"]["prod-cloud"], [outputs["trustBundleKey"]]
    assert trust_bundle.open_bundle(token, pinned, "prod", "prod-cloud", 1)["kbsUrl"] == outputs["kbsUrl"]
    with pytest.raises(jws.BundleError, match="signature does not verify"):
        jws.verify(_tamper(token), pinned)
    other = json.loads(json.dumps(outputs["trustBundleKey"]))
    other["x"], other["y"] = outputs["trustBundleKeys"][0]["y"], outputs["trustBundleKeys"][0]["x"]
    with pytest.raises(jws.BundleError, match="not pinned"):
        jws.verify(token, [other])
    with pytest.raises(jwcrypto_jws.InvalidJWSSignature):
        tampered = jwcrypto_jws.JWS()
        tampered.deserialize(_tamper(token))
        tampered.verify(jwcrypto_jwk.JWK(**outputs["trustBundleKey"]), alg="ES256")


@pytest.mark.parametrize(("header", "reason"), [
    ({"alg": "none", "kid": "k"}, "algorithm is 'none'"),
    ({"alg": "HS256", "kid": "k"}, "algorithm is 'HS256'"),
    ({"alg": "ES256", "kid": "k", "crit": ["exp"]}, "critical extensions"),
])
def test_only_es256_without_extensions_is_accepted(header: dict[str, Any], reason: str) -> None:
    outputs = trusted_run("prod").outputs
    _, payload, signature = outputs["trustBundles"]["prod-cloud"].split(".")
    forged = base64.urlsafe_b64encode(json.dumps(header).encode()).decode().rstrip("=") + f".{payload}.{signature}"
    with pytest.raises(jws.BundleError, match=reason):
        jws.verify(forged, [outputs["trustBundleKey"]])


def test_another_stack_or_an_older_version_is_refused() -> None:
    outputs = trusted_run("prod").outputs
    token, pinned = outputs["trustBundles"]["prod-cloud"], [outputs["trustBundleKey"]]
    with pytest.raises(jws.BundleError, match="it is for 'prod-cloud' of environment 'prod', not dev-cloud of dev"):
        trust_bundle.open_bundle(token, pinned, "dev", "dev-cloud", 1)
    with pytest.raises(jws.BundleError, match="version 1 is below the minimum 2"):
        trust_bundle.open_bundle(token, pinned, "prod", "prod-cloud", 2)


def test_a_rollover_publishes_both_keys_and_signs_with_the_chosen_one(runner: Runner) -> None:
    config, secret_keys = example_config("prod-trusted", set={"trustBundle": {"version": 2, "keys": ["a", "b"], "signingKey": "b"}})
    run = runner("prod-trusted", config, secret_keys)
    outputs = run.outputs
    slots = {slot: jws.public_jwk(run.named(f"trust-bundle-key-{slot}").outputs["publicKeyPem"]) for slot in "ab"}
    assert outputs["trustBundleKeys"] == [slots["a"], slots["b"]] and outputs["trustBundleKey"] == slots["b"]
    token = outputs["trustBundles"]["prod-cloud"]
    assert trust_bundle.open_bundle(token, list(slots.values()), "prod", "prod-cloud", 2)["kbsUrl"]
    with pytest.raises(jws.BundleError, match="not pinned"):
        jws.verify(token, [slots["a"]])


def test_signatures_are_deterministic() -> None:
    outputs = trusted_run("prod").outputs
    run = trusted_run("prod")
    private = run.named("trust-bundle-key-a").outputs["privateKeyPem"]
    assert trust_bundle.signed_bundles("prod", 1, outputs, private) == outputs["trustBundles"]


@pytest.mark.parametrize(("value", "expected"), [
    ({"version": 0}, "prod-trusted: trustBundle.version: Input should be greater than or equal to 1"),
    ({"version": 1, "keys": ["a"], "signingKey": "b"}, "prod-trusted: trustBundle.signingKey: 'b' is not in keys (a); add it there first"),
    ({"version": 1, "keys": ["a", "a"]}, "prod-trusted: trustBundle.keys: lists a slot twice"),
])
def test_bad_trust_bundle_settings_are_one_line(value: dict[str, Any], expected: str) -> None:
    assert problems("prod-trusted", set={"trustBundle": value}) == [expected]


def test_the_version_is_required() -> None:
    assert problems("prod-trusted", delete=("trustBundle",)) == ["prod-trusted: trustBundle: required key is missing"]


# --- One malformed part, one refusal: what a forged or damaged bundle gets ---------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _prod_bundle() -> tuple[str, list[dict[str, Any]]]:
    outputs = trusted_run("prod").outputs
    return outputs["trustBundles"]["prod-cloud"], [outputs["trustBundleKey"]]


def _signed(claims: dict[str, Any]) -> str:
    """`claims` signed by the prod trusted stack's own bundle key (what a buggy or replayed trusted side could hand over)."""
    return jws.sign(claims, trusted_run("prod").named("trust-bundle-key-a").outputs["privateKeyPem"])


def test_a_character_outside_base64url_is_refused_though_lenient_decoders_skip_it() -> None:
    token, pinned = _prod_bundle()
    header, payload, signature = token.split(".")
    # Python's b64decode drops '!' and reads '+' and '/' as '-' and '_': each would verify the same signature bytes.
    assert "-" in signature and "_" in signature  # the deterministic signature of the prod example
    for changed in (signature[:20] + "!" + signature[20:], signature.replace("-", "+").replace("_", "/")):
        with pytest.raises(jws.BundleError, match="^its signature is not base64url$"):
            jws.verify(f"{header}.{payload}.{changed}", pinned)


def test_an_empty_header_is_not_base64url() -> None:
    token, pinned = _prod_bundle()
    with pytest.raises(jws.BundleError, match="^its header is not base64url$"):
        jws.verify("." + token.split(".", 1)[1], pinned)


def test_a_part_of_an_impossible_base64_length_is_refused() -> None:
    token, pinned = _prod_bundle()
    _, payload, signature = token.split(".")
    with pytest.raises(jws.BundleError, match="^its header is not base64url$"):  # 5 characters: no base64 has that length
        jws.verify(f"eyJhb.{payload}.{signature}", pinned)


@pytest.mark.parametrize(("header", "reason"), [(b'{"alg": "ES256"', "^its header is not JSON$"), (b'["ES256"]', "^its header is not a JSON object$")])
def test_a_header_that_is_no_json_object_is_refused(header: bytes, reason: str) -> None:
    token, pinned = _prod_bundle()
    with pytest.raises(jws.BundleError, match=reason):
        jws.verify(_b64url(header) + "." + token.split(".", 1)[1], pinned)


def test_a_der_encoded_signature_is_refused_as_not_es256() -> None:
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    token, pinned = _prod_bundle()
    header, payload, signature = token.split(".")
    raw = _b64(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))  # the same r, s as X.509 writes them
    with pytest.raises(jws.BundleError, match=r"^its signature is not an ES256 signature \(64 bytes r\|\|s\)$"):
        jws.verify(f"{header}.{payload}.{_b64url(der)}", pinned)


def _other_keys() -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    return {"Ed25519": ed25519.Ed25519PrivateKey.generate(), "P-384": ec.generate_private_key(ec.SECP384R1())}


@pytest.mark.parametrize("kind", ["Ed25519", "P-384"])
def test_only_a_p256_key_signs_or_is_published(kind: str) -> None:
    from cryptography.hazmat.primitives import serialization

    key = _other_keys()[kind]
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(ValueError, match="^a trust bundle key must be an ECDSA P-256 key$"):
        jws.sign({"environment": "prod"}, private)
    with pytest.raises(ValueError, match="^a trust bundle key must be an ECDSA P-256 key$"):
        jws.public_jwk(public)


@pytest.mark.parametrize("change", [{"kty": "RSA"}, {"crv": "P-384"}])
def test_a_pinned_key_labelled_other_than_ec_p256_is_refused_though_its_point_is_on_p256(change: dict[str, str]) -> None:
    key = {**trusted_run("prod").outputs["trustBundleKey"], **change}
    with pytest.raises(jws.BundleError, match=f"^pinned key {key['kid']} is not an EC P-256 key$"):
        jws.verify_key(key)


def test_a_bundle_for_the_same_stack_name_of_another_environment_is_refused() -> None:
    token, pinned = _prod_bundle()
    claims = jws.verify(token, pinned)
    with pytest.raises(jws.BundleError, match="^it is for 'prod-cloud' of environment 'staging', not prod-cloud of prod$"):
        trust_bundle.open_bundle(_signed({**claims, "environment": "staging"}), pinned, "prod", "prod-cloud", 1)


def test_the_other_spokes_bundle_is_refused() -> None:
    outputs = trusted_run("prod").outputs
    with pytest.raises(jws.BundleError, match="^it is for 'prod-cloud-eastus' of environment 'prod', not prod-cloud of prod$"):
        trust_bundle.open_bundle(outputs["trustBundles"]["prod-cloud-eastus"], [outputs["trustBundleKey"]], "prod", "prod-cloud", 1)


@pytest.mark.parametrize("version", ["9", True])
def test_a_version_that_is_no_integer_is_refused(version: object) -> None:
    token, pinned = _prod_bundle()
    claims = jws.verify(token, pinned)
    with pytest.raises(jws.BundleError, match=f"^its version {version!r} is below the minimum 1 "):
        trust_bundle.open_bundle(_signed({**claims, "version": version}), pinned, "prod", "prod-cloud", 1)


def test_a_bundle_without_a_value_its_cloud_stack_reads_is_refused() -> None:
    token, pinned = _prod_bundle()
    claims = {k: v for k, v in jws.verify(token, pinned).items() if k != "kbsUrl"}
    with pytest.raises(jws.BundleError, match="^it lacks kbsUrl$"):
        trust_bundle.open_bundle(_signed(claims), pinned, "prod", "prod-cloud", 1)
