"""`python -m scripts.up`: order of the stacks, refusal of the cloud stack, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from scripts import up
from scripts.pulumi_cli import AutomationPulumi, Preview, PulumiError
from tests import fake_pulumi
from tests.stack_edits import UNKNOWN_ENV, known_environments, single_backend_lab

ROOT = Path(__file__).resolve().parent.parent
TRUSTED_OUTPUTS = {
    "kbsUrl": "https://kbs.trusted.example.internal",
    "kbsCaCert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    "kbsResources": {"ngc-api-key": {"uri": "kbs:///default/ngc-api-key/api_key", "gpuGated": True, "minGpus": 1}},
    "workloads": {"llama": {"image": "nvcr.io/nim/meta/llama@sha256:" + "0" * 64, "initdata": "H4sIAAAAAAAA/6tWSs7PS8tMBwA="}},
    "sealedSecretKeyUri": "kbs:///default/sealed-secret-key/public-jwk",
}


@pytest.fixture(autouse=True)
def on_premises_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The trusted runner's backend (scripts/custody.py refuses any other for a trusted stack)."""
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{tmp_path}/state")


class FakePulumi:
    """A workspace that records every call; `up` gives a stack the outputs in `produces`."""

    def __init__(self, deployed: dict[str, dict[str, Any]] | None = None,
                 produces: dict[str, dict[str, Any]] | None = None, failing: tuple[str, ...] = ()) -> None:
        self.deployed = dict(deployed or {})
        self.produces = produces if produces is not None else {"dev-trusted": TRUSTED_OUTPUTS,
                                                               "prod-trusted": TRUSTED_OUTPUTS}
        self.failing = failing
        self.calls: list[tuple[str, str]] = []

    def preview(self, stack: str, *, refresh: bool = False, expect_no_changes: bool = False) -> Preview:
        raise AssertionError("scripts.up never previews")

    def up(self, stack: str) -> None:
        self.calls.append(("up", stack))
        if stack in self.failing:
            raise PulumiError(f"pulumi up failed on {stack}: error: 1 resource failed")
        self.deployed[stack] = self.produces.get(stack, {})

    def destroy(self, stack: str) -> None:
        self.calls.append(("destroy", stack))
        self.deployed.pop(stack, None)

    def outputs(self, stack: str) -> dict[str, Any] | None:
        self.calls.append(("outputs", stack))
        return self.deployed.get(stack)


def run(argv: list[str], fake: FakePulumi) -> int:
    """`scripts.up` in a single-backend lab, whose dev-cloud reads dev-trusted through a StackReference."""
    return up.main(argv, make_pulumi=lambda: fake, root=single_backend_lab())


def mutating(fake: FakePulumi) -> list[tuple[str, str]]:
    return [call for call in fake.calls if call[0] != "outputs"]


def test_up_deploys_trusted_then_cloud_after_checking_its_outputs() -> None:
    fake = FakePulumi()
    assert run(["dev"], fake) == 0
    # The deployed bundles' version is read first (trustBundle.version never goes down).
    assert fake.calls == [("outputs", "dev-trusted"), ("up", "dev-trusted"), ("outputs", "dev-trusted"), ("up", "dev-cloud")]


def test_destroy_goes_cloud_first_then_trusted() -> None:
    fake = FakePulumi(deployed={"prod-trusted": TRUSTED_OUTPUTS, "prod-cloud": {}, "prod-cloud-eastus": {}})
    assert run(["prod", "--destroy", "--yes"], fake) == 0
    assert fake.calls == [("destroy", "prod-cloud"), ("destroy", "prod-cloud-eastus"), ("destroy", "prod-trusted")]


def test_destroy_needs_confirmation(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakePulumi()
    assert run(["prod", "--destroy"], fake) == 2
    assert fake.calls == []
    assert capsys.readouterr().err == "error: --destroy deletes every resource of prod: add --yes to confirm\n"


@pytest.mark.parametrize("missing", up.REQUIRED_TRUSTED_OUTPUTS)
def test_cloud_is_refused_when_a_trusted_output_is_missing(missing: str, capsys: pytest.CaptureFixture[str]) -> None:
    produced = {k: v for k, v in TRUSTED_OUTPUTS.items() if k != missing}
    fake = FakePulumi(produces={"dev-trusted": produced})
    assert run(["dev"], fake) == 2
    assert ("up", "dev-cloud") not in fake.calls
    assert mutating(fake) == [("up", "dev-trusted")]
    assert capsys.readouterr().err == f"error: refusing dev-cloud: dev-trusted lacks the outputs {missing}\n"


def test_empty_outputs_count_as_missing() -> None:
    assert up.missing_outputs({**TRUSTED_OUTPUTS, "kbsUrl": "", "kbsResources": []}) == ["kbsUrl", "kbsResources"]
    assert up.missing_outputs(TRUSTED_OUTPUTS) == []
    assert up.missing_outputs(None) == list(up.REQUIRED_TRUSTED_OUTPUTS)


def test_cloud_only_is_refused_when_trusted_was_never_deployed(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakePulumi()
    assert run(["dev", "--only", "cloud"], fake) == 2
    assert mutating(fake) == []
    assert capsys.readouterr().err == (
        "error: refusing dev-cloud: dev-trusted has not been deployed (run `python -m scripts.up dev`)\n")


def test_cloud_only_runs_against_a_deployed_trusted_stack() -> None:
    fake = FakePulumi(deployed={"dev-trusted": TRUSTED_OUTPUTS})
    assert run(["dev", "--only", "cloud"], fake) == 0
    assert mutating(fake) == [("up", "dev-cloud")]


def test_trusted_only_never_touches_cloud() -> None:
    fake = FakePulumi()
    assert run(["dev", "--only", "trusted"], fake) == 0
    assert fake.calls == [("outputs", "dev-trusted"), ("up", "dev-trusted")]


def test_a_failed_trusted_up_stops_before_cloud(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakePulumi(failing=("dev-trusted",))
    assert run(["dev"], fake) == 1
    assert fake.calls == [("outputs", "dev-trusted"), ("up", "dev-trusted")]
    assert capsys.readouterr().err == "error: pulumi up failed on dev-trusted: error: 1 resource failed\n"


def test_unknown_environment_is_one_line_before_any_pulumi_call(capsys: pytest.CaptureFixture[str]) -> None:
    def never() -> FakePulumi:
        raise AssertionError("no workspace for a bad environment")

    assert up.main([UNKNOWN_ENV], make_pulumi=never) == 2
    assert capsys.readouterr().err == f"error: unknown environment '{UNKNOWN_ENV}': expected one of {known_environments()}\n"


def run_module(*args: str, path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path}
    return subprocess.run([sys.executable, "-m", "scripts.up", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)


def test_command_line_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    # An unknown environment through a real interpreter: tests/test_bad_input.py (up-unknown-environment).
    no_cli = run_module("dev", path=str(tmp_path))  # an empty PATH: no pulumi CLI
    assert (no_cli.returncode, no_cli.stderr) == (1, "error: the pulumi CLI is not installed (pulumi not found)\n")


# --- the same, through the real Automation API adapter and a recorded CLI ----------------------


def recorded(tmp_path: Path, trusted_outputs: dict[str, Any] | None) -> Path:
    directory = tmp_path / "recorded"
    directory.mkdir()
    if trusted_outputs is not None:
        (directory / "dev-trusted.outputs.json").write_text(json.dumps(trusted_outputs))
    (directory / "dev-cloud.outputs.json").write_text("{}")
    return directory


def commands(log: Path) -> list[tuple[str, str]]:
    """The state-changing or state-reading CLI calls, as (command, stack)."""
    return [(" ".join(a[:2]) if a[0] == "stack" else a[0], a[a.index("--stack") + 1])
            for a in fake_pulumi.calls(log) if a[0] in ("up", "destroy") or a[:2] == ["stack", "output"]]


def test_adapter_deploys_in_order_through_the_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    log = fake_pulumi.install(monkeypatch, tmp_path, recorded(tmp_path, TRUSTED_OUTPUTS))
    assert up.main(["dev"], make_pulumi=lambda: AutomationPulumi(ROOT), root=single_backend_lab()) == 0
    ups = [c for c in commands(log) if c[0] == "up"]
    assert ups == [("up", "dev-trusted"), ("up", "dev-cloud")]
    # the trusted outputs were read after the trusted up and before the cloud up
    calls = commands(log)
    assert ("stack output", "dev-trusted") in calls[calls.index(ups[0]):calls.index(ups[1])]


def test_adapter_refuses_cloud_on_missing_outputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    log = fake_pulumi.install(monkeypatch, tmp_path, recorded(tmp_path, {"kbsUrl": "https://kbs"}))
    assert up.main(["dev", "--only", "cloud"], make_pulumi=lambda: AutomationPulumi(ROOT), root=single_backend_lab()) == 2
    assert [c for c in commands(log) if c[0] == "up"] == []
    assert capsys.readouterr().err.endswith(
        "error: refusing dev-cloud: dev-trusted lacks the outputs kbsCaCert, kbsResources, workloads, sealedSecretKeyUri\n")


def test_adapter_treats_a_missing_trusted_stack_as_not_deployed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    fake_pulumi.install(monkeypatch, tmp_path, recorded(tmp_path, None))
    assert up.main(["dev", "--only", "cloud"], make_pulumi=lambda: AutomationPulumi(ROOT), root=single_backend_lab()) == 2
    assert "dev-trusted has not been deployed" in capsys.readouterr().err


def test_adapter_turns_a_failed_up_into_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    log = fake_pulumi.install(monkeypatch, tmp_path, recorded(tmp_path, TRUSTED_OUTPUTS))
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "dev-trusted")
    assert up.main(["dev"], make_pulumi=lambda: AutomationPulumi(ROOT), root=single_backend_lab()) == 1
    calls = commands(log)  # the deployed outputs are read first (the Automation API reads them twice)
    assert set(calls[:-1]) == {("stack output", "dev-trusted")} and calls[-1] == ("up", "dev-trusted")
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: pulumi up failed on dev-trusted: error: 1 resource failed on dev-trusted")


@pytest.mark.parametrize("backend", ["azblob://pulumi-state?storage_account=stpulumi", "s3://state", "https://api.pulumi.com"])
def test_a_trusted_stack_in_a_cloud_backend_is_refused_before_any_pulumi_call(
        backend: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PULUMI_BACKEND_URL", backend)
    fake = FakePulumi()
    assert run(["prod"], fake) == 2
    assert fake.calls == []
    err = capsys.readouterr().err
    assert err.startswith("error: refusing prod-trusted: its state backend ") and err.count("\n") == 1


def test_the_cloud_side_alone_may_use_a_cloud_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_BACKEND_URL", "azblob://pulumi-state?storage_account=stpulumi")
    fake = FakePulumi(deployed={"dev-trusted": TRUSTED_OUTPUTS})
    assert run(["dev", "--only", "cloud"], fake) == 0


# --- the trust bundle hand-over (a cloud stack that reads a bundle: prod) -------------------------


def _root_with(tmp_path: Path, pinned: dict[str, Any] | None = None) -> Path:
    """A project root whose stack files are the examples, prod-cloud pinning `pinned` when given."""
    import shutil

    import yaml

    root = tmp_path / "project"
    shutil.copytree(ROOT / "stacks", root / "stacks", ignore=shutil.ignore_patterns("*.py", "__pycache__", "config", "models"))
    if pinned is not None:
        path = root / "stacks" / "Pulumi.prod-cloud.yaml"
        document = yaml.safe_load(path.read_text())
        document["config"]["confidential-ai:trustBundle"]["keys"] = [pinned]
        path.write_text(yaml.safe_dump(document))
    return root


def _real_key() -> tuple[str, dict[str, Any]]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from components.trust_bundle import public_jwk

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return pem, public_jwk(public)


def _prod_trusted_outputs(private_pem: str | None = None) -> dict[str, Any]:
    from stacks.trust_bundle import signed_bundles
    from tests.conftest import plan_once

    outputs = dict(plan_once("prod")[0].outputs)
    if private_pem is not None:
        outputs["trustBundles"] = signed_bundles("prod", 1, outputs, private_pem)
    return outputs


def test_the_trusted_up_writes_the_bundle_the_cloud_config_names(tmp_path: Path) -> None:
    root = _root_with(tmp_path)
    outputs = _prod_trusted_outputs()
    fake = FakePulumi(produces={"prod-trusted": outputs})
    up.deploy(fake, "prod", ("trusted",), root)
    assert (root / "trust-bundles" / "prod-cloud.jws").read_text() == outputs["trustBundles"]["prod-cloud"]


def test_the_cloud_up_runs_on_a_bundle_that_verifies_with_a_real_pinned_key(tmp_path: Path) -> None:
    private, public = _real_key()
    root = _root_with(tmp_path, pinned=public)
    fake = FakePulumi(produces={"prod-trusted": _prod_trusted_outputs(private)})
    up.deploy(fake, "prod", up.SIDES, root)
    assert mutating(fake) == [("up", "prod-trusted"), ("up", "prod-cloud")]


def test_the_cloud_up_is_refused_on_a_changed_bundle(tmp_path: Path) -> None:
    private, public = _real_key()
    root = _root_with(tmp_path, pinned=public)
    fake = FakePulumi(produces={"prod-trusted": _prod_trusted_outputs(private)})
    up.deploy(fake, "prod", ("trusted",), root)
    bundle = root / "trust-bundles" / "prod-cloud.jws"
    header, payload, signature = bundle.read_text().split(".")
    bundle.write_text(f"{header}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{signature}")
    with pytest.raises(up.Refused, match=r"^refusing prod-cloud: prod-cloud: trust bundle .*prod-cloud.jws: refused: "):
        up.deploy(fake, "prod", ("cloud",), root)
    assert ("up", "prod-cloud") not in fake.calls


def test_the_cloud_up_is_refused_while_the_offline_placeholder_key_is_pinned(tmp_path: Path) -> None:
    root = _root_with(tmp_path)
    fake = FakePulumi(produces={"prod-trusted": _prod_trusted_outputs()})
    up.deploy(fake, "prod", ("trusted",), root)
    with pytest.raises(up.Refused, match=r"trustBundle.keys\[0\] is the offline plan's placeholder key f5Q6IhMpcxzfoWmYt1vehzM070L_mn6Bt3r43tszZ-g"):
        up.deploy(fake, "prod", ("cloud",), root)


def test_a_trusted_up_is_refused_below_the_deployed_bundle_version(tmp_path: Path) -> None:
    outputs = _prod_trusted_outputs()  # bundles at version 1
    root = _root_with(tmp_path)
    trusted_file = root / "stacks" / "Pulumi.prod-trusted.yaml"
    trusted_file.write_text(trusted_file.read_text().replace("    version: 1\n", "    version: 0\n", 1))
    fake = FakePulumi(deployed={"prod-trusted": outputs})
    with pytest.raises(up.Refused, match=r"^refusing prod-trusted: trustBundle.version 0 is below the deployed bundles' version 1; raise it above 1$"):
        up.deploy(fake, "prod", ("trusted",), root)
    assert mutating(fake) == []


# --- a fleet: several cloud stacks ---------------------------------------------------------------


def test_destroying_one_cloud_stack_leaves_the_others_and_the_trusted_stack() -> None:
    fake = FakePulumi(deployed={"prod-trusted": TRUSTED_OUTPUTS, "prod-cloud": {}, "prod-cloud-eastus": {}})
    assert run(["prod", "--destroy", "--yes", "--cloud-stack", "prod-cloud-eastus"], fake) == 0
    assert fake.calls == [("destroy", "prod-cloud-eastus")]


def test_a_fleet_needs_the_cloud_stack_named(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakePulumi()
    assert run(["prod"], fake) == 2
    assert fake.calls == []
    assert capsys.readouterr().err == "error: prod has 2 cloud stacks (prod-cloud, prod-cloud-eastus): choose one with --cloud-stack NAME\n"
    assert run(["prod", "--cloud-stack", "prod-cloud-west"], fake) == 2
    assert capsys.readouterr().err == "error: --cloud-stack prod-cloud-west is not a cloud stack of prod (its cloud stacks: prod-cloud, prod-cloud-eastus)\n"


def test_a_cloud_stack_is_refused_until_the_trusted_stack_gives_it_a_spoke(capsys: pytest.CaptureFixture[str]) -> None:
    """The trusted stack exports each cloud stack's own view under `spokes`: a cloud stack it runs nothing on is refused."""
    spoke = {key: TRUSTED_OUTPUTS[key] for key in ("kbsResources", "workloads")}
    shared = {k: v for k, v in TRUSTED_OUTPUTS.items() if k not in spoke}
    # dev-cloud reads a StackReference (prod's cloud stacks read signed bundles, tested above).
    fake = FakePulumi(produces={"dev-trusted": {**shared, "spokes": {"dev-cloud-other": spoke}}})
    assert run(["dev", "--cloud-stack", "dev-cloud"], fake) == 2
    assert ("up", "dev-cloud") not in fake.calls
    assert capsys.readouterr().err.endswith("error: refusing dev-cloud: dev-trusted lacks the outputs kbsResources, workloads\n")
    fake = FakePulumi(produces={"dev-trusted": {**shared, "spokes": {"dev-cloud": spoke}}})
    assert run(["dev", "--cloud-stack", "dev-cloud"], fake) == 0
    assert fake.calls[-1] == ("up", "dev-cloud")
