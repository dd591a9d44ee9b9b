"""The trusted stacks' state and secrets key stay on premises: the allow-list, and every place that sets them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scripts import custody, preflight
from tests.stack_edits import single_backend_lab

ROOT = Path(__file__).resolve().parent.parent
STACKS = ROOT / "stacks"
TRUSTED_STACK_FILES = sorted(STACKS.glob("Pulumi.*-trusted.yaml"))


@pytest.mark.parametrize("url", [
    "file:///var/lib/pulumi/trusted",
    "s3://pulumi-trusted?endpoint=minio.trusted.example.internal:9000&s3ForcePathStyle=true&region=us-east-1",
    "s3://pulumi-trusted?endpoint=https://rgw.dc1.example.com",
])
def test_on_premises_backends_are_allowed(url: str) -> None:
    assert custody.backend_problem(url) is None


@pytest.mark.parametrize(("url", "reason"), [
    (None, "Pulumi Cloud service"),
    ("", "Pulumi Cloud service"),
    ("https://api.pulumi.com", "not on the trusted side"),
    ("azblob://pulumi-state?storage_account=stpulumistate", "not on the trusted side"),
    ("gs://pulumi-state", "not on the trusted side"),
    ("s3://pulumi-state", "that is AWS S3"),
    ("s3://pulumi-state?region=eu-west-1", "that is AWS S3"),
    ("s3://pulumi-state?endpoint=s3.eu-west-1.amazonaws.com", "public cloud's object store"),
    ("s3://pulumi-state?endpoint=https://acct.blob.core.windows.net", "public cloud's object store"),
    ("s3://pulumi-state?endpoint=storage.googleapis.com", "public cloud's object store"),
    ("s3://pulumi-state?endpoint=minio.example.internal&disableSSL=true", "disableSSL=true"),
])
def test_every_other_backend_is_refused(url: str | None, reason: str) -> None:
    problem = custody.backend_problem(url)
    assert problem is not None and reason in problem and "\n" not in problem


@pytest.mark.parametrize(("provider", "salt"), [("hashivault://confidential-ai", False), ("passphrase", False), (None, True)])
def test_on_premises_secrets_providers_are_allowed(provider: str | None, salt: bool) -> None:
    assert custody.secrets_provider_problem(provider, salt) is None


@pytest.mark.parametrize(("provider", "reason"), [
    (None, "Pulumi Cloud service would hold the key"),
    ("azurekeyvault://kv.vault.azure.net/keys/pulumi-secrets", "secrets provider azurekeyvault keeps the key outside"),
    ("awskms://alias/pulumi?region=eu-west-1", "secrets provider awskms"),
    ("gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k", "secrets provider gcpkms"),
    ("default", "secrets provider default"),
    ("hashivault://", "secrets provider hashivault"),
])
def test_every_other_secrets_provider_is_refused(provider: str | None, reason: str) -> None:
    problem = custody.secrets_provider_problem(provider)
    assert problem is not None and reason in problem


@pytest.mark.parametrize("path", TRUSTED_STACK_FILES, ids=lambda p: p.name)
def test_the_trusted_stack_files_name_an_on_premises_secrets_provider(path: Path) -> None:
    assert custody.stack_file_problem(path) is None


@pytest.mark.parametrize(("lines", "refused"), [
    ("secretsprovider: azurekeyvault://kv.vault.azure.net/keys/pulumi-secrets\nencryptedkey: ZW5j\n", "azurekeyvault"),
    ("", "names no secrets provider"),
    ("secretsprovider: hashivault://confidential-ai-prod-trusted\nencryptedkey: ZW5j\n", None),
])
def test_a_trusted_stack_file_is_judged_by_its_secretsprovider_lines(tmp_path: Path, lines: str, refused: str | None) -> None:
    body = re.sub(r"^(secretsprovider|encryptedkey|encryptionsalt): .*\n", "", (STACKS / "Pulumi.prod-trusted.yaml").read_text(), flags=re.M)
    path = tmp_path / "Pulumi.prod-trusted.yaml"
    path.write_text(lines + body)
    refusal = custody.trusted_stack_refusal("prod-trusted", path, "file:///srv/pulumi")
    assert (refusal is None) if refused is None else (refusal is not None and refused in refusal)


def test_a_missing_trusted_stack_file_is_refused_by_name(tmp_path: Path) -> None:
    assert custody.trusted_stack_refusal("prod-trusted", tmp_path / "Pulumi.prod-trusted.yaml", "file:///srv/pulumi") == (
        "refusing prod-trusted: no stack file Pulumi.prod-trusted.yaml")


def test_the_backend_is_not_judged_when_the_trusted_stack_is_read_from_its_bundle() -> None:
    # A cloud stack that reads a trust bundle never opens the trusted stack's state, wherever its own lives.
    path = STACKS / "Pulumi.prod-trusted.yaml"
    assert custody.trusted_stack_refusal("prod-trusted", path, "azblob://pulumi-state?storage_account=st", check_backend=False) is None


# Every `pulumi stack init` of a trusted stack, and every `pulumi login` printed for it, in the scripts and docs.
INSTRUCTIONS = [ROOT / "scripts" / "bootstrap_state.sh", *sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]


def _trusted_inits(text: str) -> list[str]:
    return re.findall(r"pulumi stack init \S*-?trusted\S*[^\n]*--secrets-provider[ =]'?([^'\s]+)", text)


def test_bootstrap_and_docs_put_trusted_stacks_on_premises_only() -> None:
    found = {path.name: _trusted_inits(path.read_text()) for path in INSTRUCTIONS}
    assert found["bootstrap_state.sh"], "the bootstrap script initialises the trusted stacks"
    for name, providers in found.items():
        for provider in providers:
            assert custody.secrets_provider_problem(provider) is None, f"{name}: trusted stack encrypted with {provider}"
    script = (ROOT / "scripts" / "bootstrap_state.sh").read_text()
    start = script.index("trusted() {")
    trusted_part = script[start:script.index("\n}\n", start)]
    assert "az " not in trusted_part and "azblob" not in trusted_part and "azurekeyvault" not in trusted_part
    cloud_part = script[script.index("cloud() {"):]
    assert "-trusted" not in cloud_part


def test_the_guard_catches_a_cloud_provider_for_a_trusted_stack() -> None:
    assert _trusted_inits("pulumi stack init prod-trusted --secrets-provider 'azurekeyvault://kv.vault.azure.net/keys/k'") == [
        "azurekeyvault://kv.vault.azure.net/keys/k"]


def test_preflight_refuses_a_trusted_stack_read_from_a_cloud_backend(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PULUMI_BACKEND_URL", "azblob://pulumi-state?storage_account=stpulumistate")
    lab = single_backend_lab() / "stacks"  # dev-cloud reads dev-trusted through the CLI
    assert preflight.main(["dev", "--stacks-dir", str(lab)], clients=lambda config: None) == 2
    assert capsys.readouterr().err.splitlines() == [
        "dev-cloud: refusing dev-trusted: its state backend azblob://pulumi-state?storage_account=stpulumistate is not on the trusted "
        f"side; use {custody.ALLOWED_BACKENDS}"]


def test_current_backend_follows_the_cli_order(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: p\nbackend:\n  url: file:///from/project\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / "credentials.json").write_text('{"current": "https://api.pulumi.com"}')
    assert custody.current_backend(tmp_path, {"PULUMI_BACKEND_URL": "s3://b?endpoint=m", "PULUMI_HOME": str(home)}) == "s3://b?endpoint=m"
    assert custody.current_backend(tmp_path, {"PULUMI_HOME": str(home)}) == "file:///from/project"
    (tmp_path / "Pulumi.yaml").write_text("name: p\n")
    assert custody.current_backend(tmp_path, {"PULUMI_HOME": str(home)}) == "https://api.pulumi.com"
    assert custody.current_backend(tmp_path, {"PULUMI_HOME": str(tmp_path / "none")}) is None
