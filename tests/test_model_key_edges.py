"""Model encryption edge cases where KServe's decryptor and ours differ (docs/encrypted-models.md):
empty files (recorded in the manifest, restored by our decryptor, which KServe's cannot do), and a raw
model key with a newline around it (KServe's decryptor reads it unstripped: refused where it is stored)."""

from __future__ import annotations

import io
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from jwcrypto import jwk

from model_crypto import jwe
from scripts import encrypt_model
from stacks.config import ConfigError, load
from tests.conftest import example_config
from tests.test_model_crypto import _encrypt, _run_init, _write_model


@pytest.fixture
def tmpfs_target() -> Iterator[Path]:
    path = Path("/dev/shm") / f"model-key-edges-{uuid.uuid4().hex}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_our_decryptor_restores_empty_files_recorded_in_the_manifest(tmp_path, tmpfs_target, monkeypatch):
    src = _write_model(tmp_path / "src", {"config.json": b"{}", "empty.txt": b"", "nested/.keep": b""})
    key_text = jwe.new_key_text()
    sha = _encrypt(src, tmp_path / "enc", key_text)
    recorded = {f["path"]: f for f in json.loads((tmp_path / "enc" / "manifest.json").read_bytes())["files"]}
    assert {p: (f["size"], f["object"]) for p, f in recorded.items() if f["size"] == 0} == {"empty.txt": (0, None), "nested/.keep": (0, None)}
    assert not (tmp_path / "enc" / "empty.txt.jwe").exists(), "nothing is stored for an empty file (KServe's decryptor cannot decrypt one)"
    code, served = _run_init(tmp_path / "enc", key_text.encode(), sha, tmpfs_target, monkeypatch=monkeypatch)
    assert code == 0
    assert (tmpfs_target / "empty.txt").read_bytes() == b"" and (tmpfs_target / "nested" / ".keep").read_bytes() == b""
    assert (tmpfs_target / "config.json").read_bytes() == b"{}"
    assert not any("empty" in path or ".keep" in path for path in served.requests)


# --- a raw key with a newline --------------------------------------------------------------------


def encrypt_with(tmp_path: Path, key_bytes: bytes, monkeypatch, capsys, stdin: bool = False) -> tuple[int, str]:
    src = _write_model(tmp_path / "src", {"w.bin": b"w"})
    argv = [str(src), "--env", "prod", "--workload", "llama-ft", "--out", str(tmp_path / "out")]
    if stdin:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(key_bytes)))
    else:
        (tmp_path / "key").write_bytes(key_bytes)
        argv += ["--key-file", str(tmp_path / "key")]
    code = encrypt_model.main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("stdin", [False, True], ids=["key-file", "stdin"])
@pytest.mark.parametrize("padding", [b"\n", b"\r\n", b" "])
def test_encrypt_model_refuses_a_raw_key_with_a_newline(tmp_path, monkeypatch, capsys, stdin, padding):
    code, err = encrypt_with(tmp_path, jwe.new_key_text().encode() + padding, monkeypatch, capsys, stdin)
    assert code == 2 and err.count("\n") == 1
    assert "has a newline or spaces around the key: KServe's decryptor would read them as part of the key" in err
    assert not (tmp_path / "out").exists()


def test_a_jwk_json_key_file_may_end_with_a_newline(tmp_path, monkeypatch, capsys):
    key = jwk.JWK(kty="oct", k=jwe.new_key_text())
    code, err = encrypt_with(tmp_path, key.export().encode() + b"\n", monkeypatch, capsys)
    assert code == 0, err


def trusted_problems(model_key: str) -> list[str]:
    config, secret_keys = example_config("prod-trusted", set={"kbsSecrets.model-key": model_key})
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("confidential-ai:")}
    try:
        load("prod-trusted", raw, [k.split(":", 1)[1] for k in secret_keys])
    except ConfigError as err:
        return err.lines()
    return []


def test_the_trusted_config_refuses_a_model_key_with_a_newline():
    key = jwe.new_key_text()
    (line,) = trusted_problems(key + "\n")
    assert line.startswith("prod-trusted: kbsSecrets.model-key: is a model key with a newline or spaces around it: KServe's decryptor")
    assert key not in line, "the secret is never echoed"
    assert trusted_problems(key) == []
    assert trusted_problems(jwk.JWK(kty="oct", k=key).export() + "\n") == [], "JSON parsing trims a JWK"


def test_only_model_keys_are_held_to_it():
    """ngc-api-key is not named by any workload's encryptedModel.keyResource."""
    config, secret_keys = example_config("prod-trusted", set={"kbsSecrets.ngc-api-key": "nvapi-example\n"})
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("confidential-ai:")}
    load("prod-trusted", raw, [k.split(":", 1)[1] for k in secret_keys])
