"""The cloud stack reads its signed trust bundle, not the trusted state: verified before any value is used,
refused (exit 2, naming the bundle) when it does not verify, is for another stack, or is too old."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from components.nim import INITDATA_ANNOTATION
from scripts import plan
from scripts.offline import run_stack
from scripts.plan import with_bundle
from stacks.config import ConfigError
from tests.conftest import example_config, plan_once


def bundle_of(env: str) -> str:
    return plan_once(env)[0].outputs["trustBundles"][f"{env}-cloud"]


def _edit_payload(token: str, old: bytes, new: bytes) -> str:
    header, payload, signature = token.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert raw.count(old) >= 1
    return f"{header}.{base64.urlsafe_b64encode(raw.replace(old, new, 1)).decode().rstrip('=')}.{signature}"


def _plan(tmp_path: Path, env: str, token: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    bundle = tmp_path / "bundle.jws"
    bundle.write_text(token)
    status = plan.main([env, "--trust-bundle", str(bundle), "--out", str(tmp_path / "out")])
    return status, capsys.readouterr().err.splitlines()


def test_prod_cloud_reads_no_stack_reference_and_gets_the_values_the_trusted_run_signed() -> None:
    trusted, cloud = plan_once("prod")
    assert cloud.of_type("pulumi:pulumi:StackReference") == []
    initdata = {r.inputs["spec"]["predictor"]["annotations"][INITDATA_ANNOTATION]
                for r in cloud.resources if r.type == "kubernetes:serving.kserve.io/v1beta1:InferenceService"}
    assert initdata == {w["initdata"] for w in trusted.outputs["workloads"].values()}


def test_a_single_backend_lab_may_keep_its_stack_reference(runner) -> None:
    config, secret_keys = example_config("dev-cloud", delete=("trustBundle",))
    trusted = plan_once("dev")[0]
    run = runner("dev-cloud", config, secret_keys, {"dev-trusted": trusted.stack_outputs})
    assert len(run.of_type("pulumi:pulumi:StackReference")) == 1
    bundled = plan_once("dev")[1]
    assert [r.urn for r in run.resources if r.type != "pulumi:pulumi:StackReference"] == [r.urn for r in bundled.resources]


def test_planning_from_the_handed_bundle_gives_the_same_cloud_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = _plan(tmp_path, "prod", bundle_of("prod"), capsys)
    assert (status, err) == (0, [])
    cloud = plan_once("prod")[1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["prod-cloud", "topology.md"]
    written = json.loads((tmp_path / "out" / "prod-cloud" / "resources.json").read_text())
    assert [r["urn"] for r in written] == [r.urn for r in cloud.resources]


@pytest.mark.parametrize(("old", "new"), [
    (b"kbs.trusted.example.com", b"kbs.trusted.examplf.com"),  # one byte of the KBS URL
    (b'"version":1', b'"version":2'),  # a newer version claimed without the key
])
def test_one_changed_byte_of_the_payload_makes_the_plan_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], old: bytes, new: bytes) -> None:
    status, err = _plan(tmp_path, "prod", _edit_payload(bundle_of("prod"), old, new), capsys)
    assert status == 2
    assert err == [f"prod-cloud: trustBundle.file: {tmp_path / 'bundle.jws'}: refused: its signature does not verify with pinned key "
                   "f5Q6IhMpcxzfoWmYt1vehzM070L_mn6Bt3r43tszZ-g"]


def test_a_bundle_that_is_no_jws_makes_the_plan_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = _plan(tmp_path, "prod", "not a bundle", capsys)
    assert (status, err) == (2, [f"--trust-bundle {tmp_path / 'bundle.jws'}: not a trust bundle: it is not a compact JWS (three base64url parts joined by '.')"])


def test_another_environments_bundle_makes_the_plan_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = _plan(tmp_path, "prod", bundle_of("dev"), capsys)
    assert (status, err) == (2, [f"--trust-bundle {tmp_path / 'bundle.jws'}: it is for 'dev-cloud' of environment 'dev', not a cloud stack of prod"])


def _cloud_reading(token: str, tmp_path: Path, **settings: object) -> list[str]:
    """prod-cloud run on `token` as its bundle file: the program's own checks."""
    path = tmp_path / "handed.jws"
    path.write_text(token)
    config, secret_keys = example_config("prod-cloud", set={f"trustBundle.{k}": v for k, v in settings.items()})
    with pytest.raises(ConfigError) as err:
        run_stack("prod-cloud", with_bundle(config, path), secret_keys)
    assert err.value.registered == []  # refused before any resource is registered
    return err.value.lines()


def test_the_program_refuses_another_stacks_bundle_even_signed_by_the_pinned_key(tmp_path: Path) -> None:
    # The offline plan signs dev and prod with the same placeholder key: only the payload's names tell them apart.
    assert _cloud_reading(bundle_of("dev"), tmp_path) == [
        f"prod-cloud: trustBundle.file: {tmp_path / 'handed.jws'}: refused: it is for 'dev-cloud' of environment 'dev', not prod-cloud of prod"]


def test_the_program_refuses_a_bundle_below_the_minimum_version(tmp_path: Path) -> None:
    assert _cloud_reading(bundle_of("prod"), tmp_path, minimumVersion=2) == [
        f"prod-cloud: trustBundle.file: {tmp_path / 'handed.jws'}: refused: its version 1 is below the minimum 2 (trustBundle.minimumVersion): "
        "a replayed older bundle"]


def test_the_program_refuses_a_bundle_signed_by_a_key_it_does_not_pin(tmp_path: Path) -> None:
    other = dict(json.loads(json.dumps(plan_once("prod")[0].outputs["trustBundleKey"])))
    config, _ = example_config("prod-cloud")
    # Another valid P-256 key: the sealed-secret key's public half.
    from components.trust_bundle import public_jwk

    sealing = public_jwk(plan_once("prod")[0].named("sealed-secret-signing-key").outputs["publicKeyPem"])
    lines = _cloud_reading(bundle_of("prod"), tmp_path, keys=[sealing])
    assert lines == [f"prod-cloud: trustBundle.file: {tmp_path / 'handed.jws'}: refused: it is signed by key {other['kid']!r}, "
                     f"which is not pinned (pinned: {sealing['kid']})"]


def test_a_missing_bundle_file_is_one_line_naming_it(tmp_path: Path) -> None:
    config, secret_keys = example_config("prod-cloud")
    with pytest.raises(ConfigError) as err:
        run_stack("prod-cloud", config, secret_keys)
    assert err.value.lines() == ["prod-cloud: trustBundle.file: trust-bundles/prod-cloud.jws: cannot read it (No such file or directory): "
                                 "hand over the trusted stack's output trustBundles.prod-cloud"]


@pytest.mark.parametrize(("settings", "expected"), [
    ({"keys": []}, "prod-cloud: trustBundle.keys: List should have at least 1 item after validation, not 0"),
    ({"minimumVersion": 0}, "prod-cloud: trustBundle.minimumVersion: Input should be greater than or equal to 1"),
    ({"keys.0.kid": "not-the-thumbprint"}, "prod-cloud: trustBundle.keys[0].kid: is not the key's RFC 7638 thumbprint "
                                           "(f5Q6IhMpcxzfoWmYt1vehzM070L_mn6Bt3r43tszZ-g): copy the trustBundleKey output as it is"),
    ({"keys.0.x": "AAAA"}, "prod-cloud: trustBundle.keys[0].x: pinned key f5Q6IhMpcxzfoWmYt1vehzM070L_mn6Bt3r43tszZ-g is not a point on P-256"),
])
def test_bad_trust_bundle_settings_are_one_line(settings: dict[str, object], expected: str) -> None:
    from tests.test_config import problems

    assert problems("prod-cloud", set={f"trustBundle.{k}": v for k, v in settings.items()}) == [expected]


def test_trusted_stack_and_trust_bundle_do_not_mix() -> None:
    from tests.test_config import problems

    assert problems("prod-cloud", set={"trustedStack": "organization/confidential-ai/prod-trusted"}) == [
        "prod-cloud: trustedStack: is not used with trustBundle (the bundle replaces the StackReference); remove it"]


# --- preflight verifies the bundle too, and refuses the offline placeholder pin ------------------


def test_preflight_refuses_the_offline_placeholder_pin(capsys: pytest.CaptureFixture[str]) -> None:
    from scripts import preflight

    assert preflight.main(["prod"], clients=lambda config: None) == 2
    assert capsys.readouterr().err.splitlines() == [
        "prod-cloud: trustBundle.keys[0] is the offline plan's placeholder key f5Q6IhMpcxzfoWmYt1vehzM070L_mn6Bt3r43tszZ-g "
        "(its private half is public): pin the trustBundleKey output of the deployed trusted stack"]


def _real_pin(tmp_path: Path) -> tuple[Path, str]:
    """A stacks dir whose prod-cloud pins a fresh key, and the prod bundle that key signs."""
    import shutil

    import yaml
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from components.trust_bundle import public_jwk
    from stacks.trust_bundle import signed_bundles

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    stacks = tmp_path / "stacks"
    shutil.copytree(Path(plan.STACKS_DIR), stacks, ignore=shutil.ignore_patterns("*.py", "__pycache__", "config", "models"))
    path = stacks / "Pulumi.prod-cloud.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"]["confidential-ai:trustBundle"]["keys"] = [public_jwk(public)]
    path.write_text(yaml.safe_dump(document))
    return stacks, signed_bundles("prod", 1, plan_once("prod")[0].outputs, private)["prod-cloud"]


def test_preflight_reads_the_kbs_from_a_verified_bundle_and_refuses_a_changed_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from scripts import preflight

    stacks, token = _real_pin(tmp_path)
    bundle = tmp_path / "prod-cloud.jws"
    bundle.write_text(token)
    config = preflight.load_config("prod", stacks)
    args = argparse.Namespace(trust_bundle=bundle, trusted_outputs=None, stacks_dir=stacks)
    assert preflight.trusted_values(config, args)["kbsUrl"] == "https://kbs.trusted.example.com"
    bundle.write_text(_edit_payload(token, b"kbs.trusted.example.com", b"kbs.trusted.examplf.com"))
    assert preflight.main(["prod", "--stacks-dir", str(stacks), "--trust-bundle", str(bundle)], clients=lambda c: None) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"prod-cloud: trust bundle {bundle}: refused: its signature does not verify with pinned key ")
