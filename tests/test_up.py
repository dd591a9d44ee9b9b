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
from tests.stack_edits import UNKNOWN_ENV, known_environments

ROOT = Path(__file__).resolve().parent.parent
TRUSTED_OUTPUTS = {
    "kbsUrl": "https://kbs.trusted.example.internal",
    "kbsCaCert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    "kbsResources": {"ngc-api-key": {"uri": "kbs:///default/ngc-api-key/api_key", "gpuGated": True, "minGpus": 1}},
    "workloads": {"llama": {"image": "nvcr.io/nim/meta/llama@sha256:" + "0" * 64, "initdata": "H4sIAAAAAAAA/6tWSs7PS8tMBwA="}},
    "sealedSecretKeyUri": "kbs:///default/sealed-secret-key/public-jwk",
}


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
    return up.main(argv, make_pulumi=lambda: fake)


def mutating(fake: FakePulumi) -> list[tuple[str, str]]:
    return [call for call in fake.calls if call[0] != "outputs"]


def test_up_deploys_trusted_then_cloud_after_checking_its_outputs() -> None:
    fake = FakePulumi()
    assert run(["dev"], fake) == 0
    assert fake.calls == [("up", "dev-trusted"), ("outputs", "dev-trusted"), ("up", "dev-cloud")]


def test_destroy_goes_cloud_first_then_trusted() -> None:
    fake = FakePulumi(deployed={"prod-trusted": TRUSTED_OUTPUTS, "prod-cloud": {}})
    assert run(["prod", "--destroy", "--yes"], fake) == 0
    assert fake.calls == [("destroy", "prod-cloud"), ("destroy", "prod-trusted")]


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
    assert fake.calls == [("up", "dev-trusted")]


def test_a_failed_trusted_up_stops_before_cloud(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakePulumi(failing=("dev-trusted",))
    assert run(["dev"], fake) == 1
    assert fake.calls == [("up", "dev-trusted")]
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
    bad_env = run_module(UNKNOWN_ENV, path=os.environ["PATH"])
    no_cli = run_module("dev", path=str(tmp_path))  # an empty PATH: no pulumi CLI
    assert (bad_env.returncode, bad_env.stderr) == (2, f"error: unknown environment '{UNKNOWN_ENV}': expected one of {known_environments()}\n")
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
    assert up.main(["dev"], make_pulumi=lambda: AutomationPulumi(ROOT)) == 0
    ups = [c for c in commands(log) if c[0] == "up"]
    assert ups == [("up", "dev-trusted"), ("up", "dev-cloud")]
    # the trusted outputs were read after the trusted up and before the cloud up
    calls = commands(log)
    assert ("stack output", "dev-trusted") in calls[calls.index(ups[0]):calls.index(ups[1])]


def test_adapter_refuses_cloud_on_missing_outputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    log = fake_pulumi.install(monkeypatch, tmp_path, recorded(tmp_path, {"kbsUrl": "https://kbs"}))
    assert up.main(["dev", "--only", "cloud"], make_pulumi=lambda: AutomationPulumi(ROOT)) == 2
    assert [c for c in commands(log) if c[0] == "up"] == []
    assert capsys.readouterr().err.endswith(
        "error: refusing dev-cloud: dev-trusted lacks the outputs kbsCaCert, kbsResources, workloads, sealedSecretKeyUri\n")


def test_adapter_treats_a_missing_trusted_stack_as_not_deployed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    fake_pulumi.install(monkeypatch, tmp_path, recorded(tmp_path, None))
    assert up.main(["dev", "--only", "cloud"], make_pulumi=lambda: AutomationPulumi(ROOT)) == 2
    assert "dev-trusted has not been deployed" in capsys.readouterr().err


def test_adapter_turns_a_failed_up_into_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    log = fake_pulumi.install(monkeypatch, tmp_path, recorded(tmp_path, TRUSTED_OUTPUTS))
    monkeypatch.setenv("FAKE_PULUMI_FAIL", "dev-trusted")
    assert up.main(["dev"], make_pulumi=lambda: AutomationPulumi(ROOT)) == 1
    assert commands(log) == [("up", "dev-trusted")]
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: pulumi up failed on dev-trusted: error: 1 resource failed on dev-trusted")
