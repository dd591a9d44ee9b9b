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
    assert sorted(outputs["trustBundles"]) == [f"{env}-cloud"]
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
    token = outputs["trustBundles"][f"{env}-cloud"]
    claims = json.loads(joserfc_jws.deserialize_compact(token, key, algorithms=["ES256"]).payload)
    expected = {key: outputs[key] for key in (*CLOUD_READS, "inferenceCaCert", "inferenceClientCaCert") if key in outputs}
    assert {k: v for k, v in claims.items() if k not in ("environment", "cloudStack", "version")} == expected
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
