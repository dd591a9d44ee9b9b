"""Models encrypted at source: encrypt with `scripts.encrypt_model`, decrypt with the init container's code
path (`model_crypto.decrypt`) against local stand-ins for the confidential data hub and the blob store, and
check the JWE files with independent implementations (joserfc; KServe's own decryptor)."""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import json
import os
import shutil
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwe as joserfc_jwe
from joserfc.jwk import OctKey
from jwcrypto import jwe as jwcrypto_jwe
from jwcrypto import jwk

from model_crypto import decrypt, jwe, manifest
from model_crypto.stage import Stage
from scripts import encrypt_model
from tests.model_server import Served, serve

KEY_RESOURCE = "kbs:///default/model-decryption/key.bin"  # kbsResources model-key of prod-trusted, workload llama-ft
SAS = "sv=2022-11-02&sr=c&sp=rl&sig=c2lnbmF0dXJl"
_BLOCK = os.urandom(1 << 20)


def _write_model(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _encrypt(src: Path, out: Path, key_text: str) -> str:
    """Run the CLI with the key in a file; return the manifest sha256 it prints."""
    key_file = out.parent / f"{out.name}.key"
    key_file.write_text(key_text)
    stdout = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(stdout):
        assert encrypt_model.main([str(src), "--env", "prod", "--workload", "llama-ft", "--out", str(out), "--key-file", str(key_file)]) == 0
    line = next(line for line in stdout.getvalue().splitlines() if line.startswith("manifest sha256: "))
    return line.removeprefix("manifest sha256: ")


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, str]:
    """A model directory with one shard over 64 MiB (and over several of the codec's chunks), encrypted once."""
    root = tmp_path_factory.mktemp("big")
    src = _write_model(root / "src", {
        "config.json": b'{"architectures": ["LlamaForCausalLM"], "hidden_size": 4096}\n',
        "tokenizer.json": os.urandom(200_000),
        "model-00001-of-00002.safetensors": _BLOCK * 64 + os.urandom(4097),
        "model-00002-of-00002.safetensors": _BLOCK * 2 + b"end",
        "nested/generation_config.json": b'{"temperature": 0.6}\n',
        "empty.txt": b"",
    })
    key_text = jwe.new_key_text()
    sha = _encrypt(src, root / "enc", key_text)
    return src, root / "enc", key_text, sha


@pytest.fixture(scope="module")
def _small_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, str]:
    root = tmp_path_factory.mktemp("small")
    src = _write_model(root / "src", {
        "a-config.json": b'{"a": 1}\n',
        "b-weights.safetensors": os.urandom(300_000),
        "c-tokenizer.json": os.urandom(50_000),
        "d-vocab.txt": b"hello world\n" * 100,
    })
    key_text = jwe.new_key_text()
    return src, root / "enc", key_text, _encrypt(src, root / "enc", key_text)


@pytest.fixture
def small_model(_small_model, tmp_path: Path) -> tuple[Path, Path, str, str]:
    """A small encrypted model each test may damage: a fresh copy of one encrypted once."""
    src, encrypted, key_text, sha = _small_model
    shutil.copytree(src, tmp_path / "src")
    shutil.copytree(encrypted, tmp_path / "enc")
    return tmp_path / "src", tmp_path / "enc", key_text, sha


@pytest.fixture(autouse=True)
def one_file_at_once(monkeypatch):
    """Files decrypt one at a time unless a test asks for more: which of two bad files is reported, and
    in what order progress lines come, then do not depend on the machine's core count."""
    monkeypatch.setattr(decrypt, "files_at_once", lambda: 1)


@pytest.fixture
def target() -> Iterator[Path]:
    """A directory on tmpfs, as the pod's memory-backed emptyDir is."""
    path = Path("/dev/shm") / f"model-crypto-test-{uuid.uuid4().hex}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _run_init(encrypted: Path, key_value: bytes, manifest_sha256: str, target: Path, sas: str | None = SAS,
              monkeypatch: pytest.MonkeyPatch | None = None, resources: dict[str, bytes] | None = None) -> tuple[int, Served]:
    served = Served(resources={KEY_RESOURCE: key_value} if resources is None else resources, blobs={"models": encrypted}, sas=SAS)
    if monkeypatch is not None:
        if sas is None:
            monkeypatch.delenv(decrypt.SAS_ENV, raising=False)
        else:
            monkeypatch.setenv(decrypt.SAS_ENV, sas)
    with serve(served) as url:
        code = decrypt.main(["--source", f"{url}/models/", "--key-resource", KEY_RESOURCE, "--manifest-sha256",
                             manifest_sha256, "--target", str(target), "--cdh-url", url])
    return code, served


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


# --- round trip ---


@pytest.mark.parametrize("at_once", [1, 3])
def test_round_trip_through_the_data_hub_stand_in_is_byte_identical(big_model, target, monkeypatch, capsys, at_once):
    src, encrypted, key_text, sha = big_model
    monkeypatch.setattr(decrypt, "files_at_once", lambda: at_once)
    code, served = _run_init(encrypted, key_text.encode(), sha, target, monkeypatch=monkeypatch)
    assert code == 0, capsys.readouterr().err
    assert _tree(target) == _tree(src)
    for path in src.rglob("*"):
        if path.is_file():
            assert _sha256(target / path.relative_to(src)) == _sha256(path), path.name
    # The key came from the data hub's resource endpoint, as KServe's CDHSecretResolver asks for it.
    assert "/cdh/resource/default/model-decryption/key.bin" in served.requests
    # Only ciphertext was fetched from storage: the encrypted manifest and the non-empty files' objects.
    fetched = {p.removeprefix("/models/") for p in served.requests if p.startswith("/models/")}
    assert fetched == {"manifest.json.jwe"} | {p.relative_to(src).as_posix() + ".jwe" for p in src.rglob("*") if p.is_file() and p.stat().st_size}
    assert "verified into" in capsys.readouterr().out


def test_the_output_holds_only_ciphertext_and_the_manifest(big_model):
    src, encrypted, key_text, sha = big_model
    expected = {"manifest.json", "manifest.json.jwe", "config.json.jwe", "tokenizer.json.jwe", "model-00001-of-00002.safetensors.jwe",
                "model-00002-of-00002.safetensors.jwe", "nested", "nested/generation_config.json.jwe"}
    assert set(_tree(encrypted)) == expected
    config = (src / "config.json").read_bytes()
    for path in encrypted.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert key_text.encode() not in data and config not in data and b"LlamaForCausalLM" not in data, path.name
    document = json.loads((encrypted / "manifest.json").read_bytes())
    assert hashlib.sha256((encrypted / "manifest.json").read_bytes()).hexdigest() == sha
    assert document["keyResource"] == KEY_RESOURCE and document["env"] == "prod" and document["workload"] == "llama-ft"
    big = next(f for f in document["files"] if f["path"] == "model-00001-of-00002.safetensors")
    assert big["size"] == 64 * 2**20 + 4097 > 64 * 2**20
    assert big["sha256"] == _sha256(src / "model-00001-of-00002.safetensors")
    assert {f["path"]: f["object"] for f in document["files"]}["empty.txt"] is None
    assert document["totalSize"] == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())


# --- failures: one line, exit 1, nothing left in the target ---


def _one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("decrypt-model: error: ")
    return lines[0]


def test_a_wrong_key_fails_in_one_line_and_writes_nothing(small_model, target, monkeypatch, capsys):
    _, encrypted, _, sha = small_model
    code, _ = _run_init(encrypted, jwe.new_key_text().encode(), sha, target, monkeypatch=monkeypatch)
    assert code == 1
    assert "manifest.json.jwe: cannot be opened with this key" in _one_line(capsys.readouterr().err)
    assert _tree(target) == []


def test_a_truncated_file_fails_in_one_line_and_removes_what_was_decrypted(small_model, target, monkeypatch, capsys):
    _, encrypted, key_text, sha = small_model
    victim = encrypted / "c-tokenizer.json.jwe"  # the files before it decrypt first, then must go
    victim.write_bytes(victim.read_bytes()[:-100])
    code, _ = _run_init(encrypted, key_text.encode(), sha, target, monkeypatch=monkeypatch)
    assert code == 1
    line = _one_line(capsys.readouterr().err)
    assert "c-tokenizer.json.jwe: " in line and ("truncated" in line or "does not authenticate" in line)
    assert _tree(target) == []


@pytest.mark.parametrize("cut", [1, 40, 30_000])
def test_truncation_anywhere_is_caught(small_model, target, monkeypatch, capsys, cut):
    """Cut into the tag, at its dot, or deep in the ciphertext: never a verified file."""
    _, encrypted, key_text, sha = small_model
    victim = encrypted / "b-weights.safetensors.jwe"
    victim.write_bytes(victim.read_bytes()[:-cut])
    code, _ = _run_init(encrypted, key_text.encode(), sha, target, monkeypatch=monkeypatch)
    assert code == 1
    assert "b-weights.safetensors.jwe: " in _one_line(capsys.readouterr().err)
    assert _tree(target) == []


_SMALL_READ = 4096  # characters per read: b-weights' 400 kB of ciphertext text takes about 100 reads


def _ciphertext_span(token: bytes) -> tuple[int, int]:
    """Where the fourth part (the ciphertext) of a compact JWE starts and ends."""
    start = token.index(b".", token.index(b".", token.index(b".") + 1) + 1) + 1
    return start, token.rindex(b".")


@pytest.mark.parametrize("damage, at_once", [("altered", 1), ("reordered", 1), ("dropped", 1), ("altered", 3)])
def test_a_damaged_chunk_deep_in_a_multi_chunk_stream_is_refused(small_model, target, monkeypatch, capsys, damage, at_once):
    """The file streams through about a hundred reads, each decrypted, hashed and written while the next
    downloads: one late chunk altered, two chunks swapped, or a whole chunk dropped is still refused by
    the tag, and every other file goes too, also those verified or decrypting beside it."""
    _, encrypted, key_text, sha = small_model
    monkeypatch.setattr(jwe, "_DECRYPT_CHUNK", _SMALL_READ)
    monkeypatch.setattr(decrypt, "files_at_once", lambda: at_once)
    victim = encrypted / "b-weights.safetensors.jwe"
    token = bytearray(victim.read_bytes())
    start, end = _ciphertext_span(bytes(token))
    assert (end - start) // _SMALL_READ > 90
    if damage == "altered":
        late = start + (end - start) * 9 // 10
        token[late] = ord("B") if token[late] == ord("A") else ord("A")
    elif damage == "reordered":  # whole base64 groups, so both chunks still decode
        a, b = start + 3 * _SMALL_READ, start + 70 * _SMALL_READ
        token[a : a + _SMALL_READ], token[b : b + _SMALL_READ] = token[b : b + _SMALL_READ], token[a : a + _SMALL_READ]
    else:
        del token[start + 50 * _SMALL_READ : start + 51 * _SMALL_READ]
    victim.write_bytes(bytes(token))
    code, _ = _run_init(encrypted, key_text.encode(), sha, target, monkeypatch=monkeypatch)
    assert code == 1
    assert "b-weights.safetensors.jwe: does not authenticate (truncated or altered)" in _one_line(capsys.readouterr().err)
    assert _tree(target) == []


def test_a_write_failing_mid_stream_stops_the_file_there():
    """The write runs in its own thread: its error reaches the caller, and nothing is written after it."""
    key = jwe.parse_key(jwe.new_key_text().encode())
    token = io.BytesIO()
    jwe.encrypt(io.BytesIO(os.urandom(200_000)), token, key)

    class FullVolume(io.BytesIO):
        writes = 0

        def write(self, data) -> int:
            self.writes += 1
            if self.writes == 3:
                raise OSError(28, "No space left on device")
            return super().write(data)

    sink = FullVolume()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jwe, "_DECRYPT_CHUNK", _SMALL_READ)
        with pytest.raises(OSError, match="No space left on device"):
            jwe.decrypt(io.BytesIO(token.getvalue()), sink, key)
    assert sink.writes == 3


def test_a_stage_finishes_its_call_before_the_caller_moves_on():
    """A failing caller still waits for the stage's outstanding call (a write must not outlive the
    decryption that removes its file); the stage's own error reaches the caller."""
    finished = []
    with pytest.raises(RuntimeError, match="caller"):
        with Stage("test") as stage:
            stage.start(lambda: finished.append(hashlib.sha256(_BLOCK * 8).hexdigest()))
            raise RuntimeError("caller")
    assert finished == [hashlib.sha256(_BLOCK * 8).hexdigest()]
    with pytest.raises(ZeroDivisionError):
        with Stage("test") as stage:
            stage.start(lambda: 1 / 0)
    assert stage.busy is False


def test_once_a_file_failed_another_one_writes_no_further_chunk():
    stop = threading.Event()
    sink = io.BytesIO()
    stoppable = decrypt._StoppableSink(sink, stop)
    stoppable.write(b"first chunk")
    stop.set()
    with pytest.raises(decrypt._Stopped):
        stoppable.write(b"second chunk")
    assert sink.getvalue() == b"first chunk"


def test_once_a_file_failed_a_file_not_yet_started_downloads_nothing(tmp_path):
    class Storage:
        def open(self, name: str):
            raise AssertionError(f"{name} downloaded after another file failed")

    stop = threading.Event()
    stop.set()
    with pytest.raises(decrypt._Stopped):
        decrypt._restore(Storage(), jwe.parse_key(jwe.new_key_text().encode()), manifest.ModelFile("w.bin", 1, "0" * 64), tmp_path / "w.bin", stop)
    assert list(tmp_path.iterdir()) == []


def test_a_swapped_file_fails_in_one_line_and_removes_what_was_decrypted(small_model, target, monkeypatch, capsys):
    """Both files decrypt with the model key and authenticate: only the manifest tells them apart."""
    _, encrypted, key_text, sha = small_model
    first, second = encrypted / "c-tokenizer.json.jwe", encrypted / "d-vocab.txt.jwe"
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    code, _ = _run_init(encrypted, key_text.encode(), sha, target, monkeypatch=monkeypatch)
    assert code == 1
    line = _one_line(capsys.readouterr().err)
    assert "c-tokenizer.json: " in line and "swapped or replaced" in line
    assert _tree(target) == []


def test_a_file_swapped_for_another_of_the_same_size_is_refused(tmp_path, target, monkeypatch, capsys):
    """Two files of one size swapped in storage: no size or length check tells them apart, only each
    file's sha256 in the manifest."""
    src = _write_model(tmp_path / "src", {"a.bin": os.urandom(4096), "b.bin": os.urandom(4096)})
    key_text = jwe.new_key_text()
    sha = _encrypt(src, tmp_path / "enc", key_text)
    first, second = tmp_path / "enc" / "a.bin.jwe", tmp_path / "enc" / "b.bin.jwe"
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    code, _ = _run_init(tmp_path / "enc", key_text.encode(), sha, target, monkeypatch=monkeypatch)
    assert code == 1
    line = _one_line(capsys.readouterr().err)
    assert "a.bin: " in line and "swapped or replaced" in line


def test_a_file_whose_authentication_tag_was_altered_is_refused(small_model, target, monkeypatch, capsys):
    """Ciphertext intact, so its plaintext still has the manifest's size and sha256: only the GCM tag,
    one bit flipped, says the file was altered."""
    _, encrypted, key_text, sha = small_model
    victim = encrypted / "d-vocab.txt.jwe"
    head, tag = victim.read_bytes().rsplit(b".", 1)
    raw = base64.urlsafe_b64decode(tag + b"=" * (-len(tag) % 4))
    victim.write_bytes(head + b"." + base64.urlsafe_b64encode(bytes([raw[0] ^ 1]) + raw[1:]).rstrip(b"="))
    code, _ = _run_init(encrypted, key_text.encode(), sha, target, monkeypatch=monkeypatch)
    assert code == 1
    assert "d-vocab.txt.jwe: does not authenticate" in _one_line(capsys.readouterr().err)


def test_a_model_encrypted_for_another_key_resource_is_refused(small_model, target, monkeypatch, capsys):
    """The data hub releases the same key under another resource name: the manifest's keyResource,
    which the pinned sha256 covers, must be the resource the pod asked for."""
    _, encrypted, key_text, sha = small_model
    other = "kbs:///default/other-model/key.bin"
    monkeypatch.setenv(decrypt.SAS_ENV, SAS)
    with serve(Served(resources={other: key_text.encode()}, blobs={"models": encrypted}, sas=SAS)) as url:
        code = decrypt.main(["--source", f"{url}/models/", "--key-resource", other, "--manifest-sha256", sha,
                             "--target", str(target), "--cdh-url", url])
    assert code == 1
    assert f"was encrypted for {KEY_RESOURCE}, not {other}" in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("ftp://acct.blob.core.windows.net/models/m", id="not-http"),
        pytest.param("https:///models/m", id="no-host"),
        pytest.param("https://acct.blob.core.windows.net/models/m?sv=2022-11-02&sig=x", id="sas-in-the-url"),
        pytest.param("https://acct.blob.core.windows.net/models/m#frag", id="fragment"),
    ],
)
def test_a_source_that_is_not_a_plain_http_url_is_refused_first(source, tmp_path, capsys):
    """Refused before the data hub is asked for the key: the SAS belongs in AZURE_STORAGE_SAS_TOKEN only."""
    code = decrypt.main(["--source", source, "--key-resource", KEY_RESOURCE, "--manifest-sha256", "0" * 64, "--target", str(tmp_path)])
    assert code == 1
    assert "--source: " in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize("resource", ["kbs:///default/model-key", "https://kbs.example.com/default/model-key/key.bin"])
def test_a_key_resource_that_is_not_a_kbs_resource_uri_is_refused_first(resource, tmp_path, capsys):
    code = decrypt.main(["--source", "https://acct.blob.core.windows.net/models/m", "--key-resource", resource,
                         "--manifest-sha256", "0" * 64, "--target", str(tmp_path), "--cdh-url", "http://127.0.0.1:9"])
    assert code == 1
    assert "--key-resource: " in _one_line(capsys.readouterr().err)


def test_an_unreachable_data_hub_is_one_line(tmp_path, capsys):
    code = decrypt.main(["--source", "https://acct.blob.core.windows.net/models/m", "--key-resource", KEY_RESOURCE,
                         "--manifest-sha256", "0" * 64, "--target", str(tmp_path), "--cdh-url", "http://127.0.0.1:9"])
    assert code == 1
    assert "cannot reach the confidential data hub at http://127.0.0.1:9" in _one_line(capsys.readouterr().err)


def test_an_unreachable_blob_store_is_one_line(small_model, target, monkeypatch, capsys):
    _, encrypted, key_text, sha = small_model
    with serve(Served(resources={KEY_RESOURCE: key_text.encode()}, blobs={}, sas=SAS)) as url:
        code = decrypt.main(["--source", "http://127.0.0.1:9/models/", "--key-resource", KEY_RESOURCE, "--manifest-sha256", sha,
                             "--target", str(target), "--cdh-url", url])
    assert code == 1
    assert "manifest.json.jwe: cannot reach 127.0.0.1:9" in _one_line(capsys.readouterr().err)


def test_a_manifest_download_cut_by_the_network_is_one_line(small_model, target, monkeypatch, capsys):
    _, encrypted, key_text, sha = small_model
    monkeypatch.setenv(decrypt.SAS_ENV, SAS)
    served = Served(resources={KEY_RESOURCE: key_text.encode()}, blobs={"models": encrypted}, sas=SAS, reset={manifest.ENCRYPTED_NAME: 100})
    with serve(served) as url:
        code = decrypt.main(["--source", f"{url}/models/", "--key-resource", KEY_RESOURCE, "--manifest-sha256", sha,
                             "--target", str(target), "--cdh-url", url])
    assert code == 1
    assert "manifest.json.jwe: download failed (ConnectionResetError(104, 'Connection reset by peer'))" in _one_line(capsys.readouterr().err)


def test_a_key_resource_as_large_as_the_limit_is_read(small_model, target, monkeypatch, capsys):
    """The data hub may serve up to 4096 bytes: a key padded with whitespace (which the parser strips) to the limit is read."""
    _, encrypted, key_text, sha = small_model
    padded = key_text.encode().ljust(4096)
    assert _run_init(encrypted, padded, sha, target, monkeypatch=monkeypatch)[0] == 0


@pytest.mark.parametrize(
    "served, problem",
    [
        pytest.param(b"k" * 4097, "the resource is too large to be a model key", id="too-large"),
        pytest.param(b"not a key!", "the key is neither base64url text nor JWK JSON", id="not-a-key"),
    ],
)
def test_a_resource_that_is_no_model_key_is_one_line(small_model, target, monkeypatch, capsys, served, problem):
    _, encrypted, _, sha = small_model
    assert _run_init(encrypted, served, sha, target, monkeypatch=monkeypatch)[0] == 1
    assert f"{KEY_RESOURCE}: {problem}" in _one_line(capsys.readouterr().err)


def test_a_manifest_pin_that_is_not_a_sha256_is_refused(small_model, target, monkeypatch, capsys):
    _, encrypted, key_text, sha = small_model
    assert _run_init(encrypted, key_text.encode(), sha.upper(), target, monkeypatch=monkeypatch)[0] == 1
    assert "--manifest-sha256: " in _one_line(capsys.readouterr().err)


def test_a_target_that_is_not_a_directory_is_refused(small_model, monkeypatch, capsys):
    _, encrypted, key_text, sha = small_model
    assert _run_init(encrypted, key_text.encode(), sha, Path("/dev/shm") / f"missing-{uuid.uuid4().hex}", monkeypatch=monkeypatch)[0] == 1
    assert "is not a directory" in _one_line(capsys.readouterr().err)


def test_a_pinned_manifest_that_is_not_a_manifest_is_refused(small_model, target, monkeypatch, capsys):
    """It decrypts with the model key and has the pinned sha256, yet is no manifest of this format."""
    _, encrypted, key_text, _ = small_model
    bad = b'{"format": "another-format"}\n'
    with open(encrypted / manifest.ENCRYPTED_NAME, "wb") as sink:
        jwe.encrypt(io.BytesIO(bad), sink, jwe.parse_key(key_text.encode()))
    code, _ = _run_init(encrypted, key_text.encode(), hashlib.sha256(bad).hexdigest(), target, monkeypatch=monkeypatch)
    assert code == 1
    assert "manifest.json.jwe: format: must be" in _one_line(capsys.readouterr().err)


def test_a_file_replaced_by_a_larger_one_stops_at_the_recorded_size(small_model, target, monkeypatch, capsys):
    """Decryption stops once a file outgrows the manifest's size: storage cannot fill the memory volume."""
    _, encrypted, key_text, sha = small_model
    (encrypted / "d-vocab.txt.jwe").write_bytes((encrypted / "b-weights.safetensors.jwe").read_bytes())
    code, _ = _run_init(encrypted, key_text.encode(), sha, target, monkeypatch=monkeypatch)
    assert code == 1
    assert "d-vocab.txt.jwe: decrypts to more than the 1200 bytes the manifest records" in _one_line(capsys.readouterr().err)


def test_another_models_manifest_is_refused(small_model, tmp_path, target, monkeypatch, capsys):
    """Storage swaps in a whole other model encrypted with the same key: the pinned manifest sha256 refuses it."""
    src, encrypted, key_text, sha = small_model
    (src / "d-vocab.txt").write_bytes(b"changed\n")
    other = tmp_path / "other"
    _encrypt(src, other, key_text)
    shutil.rmtree(encrypted)
    shutil.copytree(other, encrypted)
    code, _ = _run_init(encrypted, key_text.encode(), sha, target, monkeypatch=monkeypatch)
    assert code == 1
    assert "is not the pinned" in _one_line(capsys.readouterr().err)
    assert _tree(target) == []


def test_a_tampered_plain_manifest_is_not_trusted(small_model, target, monkeypatch, capsys):
    """The init container never reads manifest.json from storage, only the encrypted copy."""
    _, encrypted, key_text, sha = small_model
    (encrypted / "manifest.json").write_text("{}")
    code, _ = _run_init(encrypted, key_text.encode(), sha, target, monkeypatch=monkeypatch)
    assert code == 0, capsys.readouterr().err


def test_the_data_hub_refusing_the_key_is_one_line(small_model, target, monkeypatch, capsys):
    _, encrypted, _, sha = small_model
    code, _ = _run_init(encrypted, b"", sha, target, monkeypatch=monkeypatch, resources={})
    assert code == 1
    assert "did not release kbs:///default/model-decryption/key.bin (HTTP 500)" in _one_line(capsys.readouterr().err)
    assert _tree(target) == []


def test_a_wrong_sas_is_refused_without_printing_it(small_model, target, monkeypatch, capsys):
    _, encrypted, key_text, sha = small_model
    code, _ = _run_init(encrypted, key_text.encode(), sha, target, sas="sig=not-the-right-one", monkeypatch=monkeypatch)
    assert code == 1
    line = _one_line(capsys.readouterr().err)
    assert "manifest.json.jwe: download refused" in line and "HTTP 403" in line and "not-the-right-one" not in line


def test_plaintext_goes_only_to_tmpfs(small_model, tmp_path, monkeypatch, capsys):
    _, encrypted, key_text, sha = small_model
    on_disk = tmp_path / "models"
    on_disk.mkdir()
    if decrypt.filesystem_type(on_disk) == "tmpfs":
        pytest.skip("the temporary directory is itself on tmpfs here")
    code, served = _run_init(encrypted, key_text.encode(), sha, on_disk, monkeypatch=monkeypatch)
    assert code == 1
    assert "not tmpfs: mount a memory-backed emptyDir" in _one_line(capsys.readouterr().err)
    assert _tree(on_disk) == []
    assert not [p for p in served.requests if p.startswith("/models/")]


def test_a_full_memory_volume_is_one_line_and_cleans_up(small_model, target, monkeypatch, capsys):
    _, encrypted, key_text, sha = small_model
    real, calls = jwe.decrypt, []

    def filling(source, sink, key, max_size=None):
        calls.append(1)
        if len(calls) == 4:  # the manifest and two files decrypt; the third file hits a full tmpfs
            raise OSError(28, "No space left on device")
        return real(source, sink, key, max_size)

    monkeypatch.setattr(jwe, "decrypt", filling)
    code, _ = _run_init(encrypted, key_text.encode(), sha, target, monkeypatch=monkeypatch)
    assert code == 1
    assert "c-tokenizer.json.jwe: download or write failed (No space left on device)" in _one_line(capsys.readouterr().err)
    assert _tree(target) == []


def test_a_file_where_the_model_needs_a_directory_is_one_line(tmp_path, target, monkeypatch, capsys):
    """The target itself fails (an OSError, not the model's fault): exit 1, one line naming the path."""
    src = _write_model(tmp_path / "src", {"sub/w.bin": b"w"})
    key_text = jwe.new_key_text()
    sha = _encrypt(src, tmp_path / "enc", key_text)
    (target / "sub").write_bytes(b"in the way")
    code, _ = _run_init(tmp_path / "enc", key_text.encode(), sha, target, monkeypatch=monkeypatch)
    assert code == 1
    assert _one_line(capsys.readouterr().err) == (
        f"decrypt-model: error: {target}: File exists ({target / 'sub'}); nothing was left in {target}")


def test_leftovers_of_a_killed_run_are_replaced(small_model, target, monkeypatch, capsys):
    _, encrypted, key_text, sha = small_model
    (target / ".b-weights.safetensors.partial").write_bytes(b"half")
    (target / "a-config.json").write_bytes(b"stale")
    code, _ = _run_init(encrypted, key_text.encode(), sha, target, monkeypatch=monkeypatch)
    assert code == 0, capsys.readouterr().err
    assert _tree(target) == ["a-config.json", "b-weights.safetensors", "c-tokenizer.json", "d-vocab.txt"]
    assert (target / "a-config.json").read_bytes() == b'{"a": 1}\n'


# --- interoperability: independent implementations read what we write, and we read theirs ---


def _joserfc_registry() -> joserfc_jwe.JWERegistry:
    registry = joserfc_jwe.JWERegistry(algorithms=["A256KW", "A256GCM"])
    registry.max_ciphertext_length = 1 << 30  # joserfc caps ciphertext at 64 KiB by default (a DoS guard)
    return registry


def test_every_file_decrypts_with_joserfc(big_model):
    """joserfc (authlib's author; its own JWE code, sharing only the `cryptography` primitives)."""
    src, encrypted, key_text, _ = big_model
    key = OctKey.import_key({"kty": "oct", "k": key_text})
    for path in encrypted.rglob("*.jwe"):
        token = joserfc_jwe.decrypt_compact(path.read_bytes(), key, registry=_joserfc_registry())
        assert token.protected == {"alg": "A256KW", "enc": "A256GCM"}
        name = path.relative_to(encrypted).as_posix().removesuffix(".jwe")
        expected = (encrypted / "manifest.json").read_bytes() if name == "manifest.json" else (src / name).read_bytes()
        assert token.plaintext == expected, name


@pytest.fixture(scope="module")
def kserve_confidential():
    """KServe's storage-initializer decryptor (kserve-storage on PyPI, installed without its cloud SDKs:
    requirements-interop.txt). Missing it is a failure in CI."""
    try:
        from kserve_storage import confidential
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("kserve-storage is not installed: pip install --no-deps -r requirements-interop.txt")
        pytest.skip("kserve-storage not installed (pip install --no-deps -r requirements-interop.txt)")
    return confidential


def test_kserves_storage_initializer_decrypts_the_model_with_the_same_kbs_resource(big_model, tmp_path, kserve_confidential):
    """What KServe's `confidential` mode runs after its download (kserve-storage 0.21.0,
    kserve_storage/confidential): CDHSecretResolver asks the data hub, JWEDecryptor decrypts every `.jwe`
    in place. The same resource value works: switching to KServe later needs no re-encryption."""
    src, encrypted, key_text, _ = big_model
    copy = tmp_path / "mnt-models"
    shutil.copytree(encrypted, copy)
    with serve(Served(resources={KEY_RESOURCE: key_text.encode()})) as url:
        resolver = kserve_confidential.CDHSecretResolver(cdh_addr=url)
        decrypted = kserve_confidential.JWEDecryptor(resolver, resource_id=KEY_RESOURCE).decrypt_directory(copy)
    assert len(decrypted) == len(list(encrypted.rglob("*.jwe")))
    for path in src.rglob("*"):
        if path.is_file() and path.stat().st_size:
            assert _sha256(copy / path.relative_to(src)) == _sha256(path), path.name
    assert (copy / "manifest.json").read_bytes() == (encrypted / "manifest.json").read_bytes()


def test_we_decrypt_kserves_test_fixture_format(target):
    """A JWE built exactly as KServe's tests build them (kserve/kserve commit 2f9cbe81,
    python/storage/test/test_confidential.py `_encrypt_jwe`: jwcrypto, protected A256KW/A256GCM), with a
    payload spanning several of our decoder's chunks."""
    key_bytes = os.urandom(32)
    symmetric_key = jwk.JWK(kty="oct", k=jwk.base64url_encode(key_bytes))
    plaintext = _BLOCK * 13 + b"tail"
    token = jwcrypto_jwe.JWE(plaintext, protected={"alg": "A256KW", "enc": "A256GCM"})
    token.add_recipient(symmetric_key)
    sink = io.BytesIO()
    got = jwe.decrypt(io.BytesIO(token.serialize(compact=True).encode()), sink, jwe.parse_key(jwk.base64url_encode(key_bytes).encode()))
    assert sink.getvalue() == plaintext and got == jwe.Plaintext(len(plaintext), hashlib.sha256(plaintext).hexdigest())


class _Dribble(io.RawIOBase):
    """A stream that returns at most `most` bytes a read, as a socket may."""

    def __init__(self, data: bytes, most: int):
        self._data, self._most, self._at = data, most, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        piece = self._data[self._at : self._at + min(self._most, size if size >= 0 else self._most)]
        self._at += len(piece)
        return piece


@settings(max_examples=80, deadline=None)
@given(data=st.binary(min_size=1, max_size=200), chunk=st.sampled_from([3, 6, 9, 30]), read=st.sampled_from([4, 7, 8, 12, 40]),
       dribble=st.sampled_from([None, 1, 5]))
def test_chunk_boundaries_never_change_the_bytes(data, chunk, read, dribble):
    """Tiny chunks and short reads put every boundary (base64 quanta, parts' dots) everywhere; jwcrypto
    is the oracle."""
    key = jwe.parse_key(jwe.new_key_text().encode())
    out, sink = io.BytesIO(), io.BytesIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jwe, "_ENCRYPT_CHUNK", chunk)
        patch.setattr(jwe, "_DECRYPT_CHUNK", read)
        jwe.encrypt(io.BytesIO(data) if dribble is None else _Dribble(data, dribble), out, key)
        token = out.getvalue()
        assert len(token) == jwe.serialized_size(len(data))
        jwe.decrypt(io.BytesIO(token) if dribble is None else _Dribble(token, dribble), sink, key)
    oracle = jwcrypto_jwe.JWE()
    oracle.deserialize(out.getvalue().decode(), key)
    assert oracle.payload == data
    assert sink.getvalue() == data


# --- the encrypt command line ---


def _cli(args: list[str], capsys, stdin: bytes | None = None, monkeypatch=None) -> tuple[int, str]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = encrypt_model.main(args)
    return code, capsys.readouterr().err


def test_key_on_stdin_and_a_new_key_file(tmp_path, capsys, monkeypatch):
    src = _write_model(tmp_path / "src", {"w.bin": b"w" * 1000})
    key_text = jwe.new_key_text()
    code, err = _cli([str(src), "--env", "prod", "--workload", "llama-ft", "--out", str(tmp_path / "a")], capsys, key_text.encode(), monkeypatch)
    assert code == 0, err
    plaintext = joserfc_jwe.decrypt_compact((tmp_path / "a" / "w.bin.jwe").read_bytes(), OctKey.import_key({"kty": "oct", "k": key_text})).plaintext
    assert plaintext == b"w" * 1000
    new_key = tmp_path / "model.key"
    code, err = _cli([str(src), "--env", "prod", "--workload", "llama-ft", "--out", str(tmp_path / "b"), "--new-key", str(new_key)], capsys)
    assert code == 0, err
    assert stat.S_IMODE(new_key.stat().st_mode) == 0o600
    jwe.parse_key(new_key.read_bytes())
    code, err = _cli([str(src), "--env", "prod", "--workload", "llama-ft", "--out", str(tmp_path / "c"), "--new-key", str(new_key)], capsys)
    assert code == 2 and "--new-key: cannot create" in err and "must not exist yet" in err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("extra, setup, problem", [
    (["--key-resource", "nope"], None, "prod-trusted declares no kbsResources entry 'nope' (declared: model-key, ngc-api-key, registry-credentials)"),
    (["--key-resource", "ngc-api-key"], None, "workload llama-ft may not receive 'ngc-api-key' (its resources: model-key); KBS would never release the key to it"),
    (["--workload", "phi-3"], None, "--workload: prod-trusted declares no workload 'phi-3' (declared: llama-3-1-8b, llama-ft); declare it first"),
    ([], "nonempty-out", "exists and is not an empty directory"),
    ([], "out-in-src", "overlaps the model directory"),
    ([], "out-is-src", "overlaps the model directory"),
    ([], "out-is-a-file", "exists and is not an empty directory"),
    ([], "out-under-a-file", "--out: cannot create"),
    ([], "src-in-out", "overlaps the model directory"),
    ([], "short-key", "the key is 16 bytes; A256KW needs 32"),
    ([], "no-src", "not a directory"),
    ([], "symlinked-dir", "a symlinked directory"),
    ([], "dangling-link", "not a regular file"),
    ([], "reserved-name", "the name is reserved for the manifest"),
    ([], "empty-src", "no files to encrypt"),
])
def test_encrypt_refuses_in_one_line(tmp_path, capsys, monkeypatch, extra, setup, problem):
    src = _write_model(tmp_path / "src", {"w.bin": b"w"})
    out = tmp_path / "out"
    key_text = jwe.new_key_text()
    if setup == "nonempty-out":
        _write_model(out, {"x": b"x"})
    elif setup == "out-in-src":
        out = src / "enc"
    elif setup == "short-key":
        key_text = jwk.base64url_encode(os.urandom(16))
    elif setup == "no-src":
        src = tmp_path / "missing"
    elif setup == "out-under-a-file":
        (tmp_path / "file").write_bytes(b"x")
        out = tmp_path / "file" / "out"
    elif setup == "out-is-a-file":
        out.write_bytes(b"x")
    elif setup == "out-is-src":
        out = src
    elif setup == "src-in-out":
        out = tmp_path
    elif setup == "dangling-link":
        (src / "gone.bin").symlink_to(tmp_path / "nowhere")
    elif setup == "reserved-name":
        _write_model(src, {manifest.PLAIN_NAME: b"{}"})
    elif setup == "empty-src":
        (src / "w.bin").unlink()
    elif setup == "symlinked-dir":
        _write_model(tmp_path / "elsewhere", {"x.bin": b"x"})
        (src / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    code, err = _cli([str(src), "--env", "prod", "--workload", "llama-ft", "--out", str(out), *extra], capsys, key_text.encode(), monkeypatch)
    assert code == 2
    assert err.count("\n") == 1 and problem in err, err
    if setup not in ("nonempty-out", "out-is-src", "src-in-out", "out-is-a-file", "out-under-a-file"):
        assert not out.exists() or not any(out.iterdir())


def test_encrypt_writes_into_an_existing_empty_directory(tmp_path, capsys, monkeypatch):
    src = _write_model(tmp_path / "src", {"w.bin": b"w"})
    (tmp_path / "out").mkdir()
    code, err = _cli([str(src), "--env", "prod", "--workload", "llama-ft", "--out", str(tmp_path / "out")], capsys, jwe.new_key_text().encode(), monkeypatch)
    assert code == 0, err


def test_a_failed_encryption_is_one_line(tmp_path, capsys, monkeypatch):
    src = _write_model(tmp_path / "src", {"a.bin": b"a", "b.bin": b"b"})
    monkeypatch.setattr(jwe, "encrypt", lambda source, sink, key: (_ for _ in ()).throw(OSError(28, "No space left on device", str(tmp_path / "out" / "a.bin.jwe"))))
    code, err = _cli([str(src), "--env", "prod", "--workload", "llama-ft", "--out", str(tmp_path / "out")], capsys, jwe.new_key_text().encode(), monkeypatch)
    assert code == 1 and err.count("\n") == 1 and "a.bin.jwe: No space left on device; nothing was left in" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("error, code", [(errno.ENOSPC, 1), (errno.EOPNOTSUPP, 0)], ids=["disk-full", "no-fallocate"])
def test_a_file_that_cannot_be_reserved_stops_before_it_is_encrypted(tmp_path, capsys, monkeypatch, error, code):
    """Each ciphertext file is allocated whole first: a disk that cannot hold it fails before a byte is
    encrypted; a filesystem without fallocate just appends."""
    src = _write_model(tmp_path / "src", {"w.bin": b"w" * 1000})
    encrypted = []
    monkeypatch.setattr(os, "posix_fallocate", lambda fd, offset, size: (_ for _ in ()).throw(OSError(error, os.strerror(error))))
    monkeypatch.setattr(jwe, "encrypt", lambda source, sink, key, real=jwe.encrypt: encrypted.append(sink.name) or real(source, sink, key))
    status, err = _cli([str(src), "--env", "prod", "--workload", "llama-ft", "--out", str(tmp_path / "out")], capsys, jwe.new_key_text().encode(), monkeypatch)
    assert status == code, err
    if code:
        assert err.count("\n") == 1 and "No space left on device" in err and encrypted == []
    else:
        assert len(encrypted) == 2  # w.bin and the manifest


def test_a_failed_encryption_leaves_no_partial_output(tmp_path, monkeypatch):
    src = _write_model(tmp_path / "src", {"a.bin": b"a" * 100, "b/c.bin": b"c" * 100, "d.bin": b"d"})
    calls = []

    def failing_encrypt(source, sink, key, real=jwe.encrypt):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(source, sink, key)

    monkeypatch.setattr(jwe, "encrypt", failing_encrypt)
    from model_crypto.encrypt import Identity, encrypt_model as run

    with pytest.raises(OSError):
        run(src, tmp_path / "out", jwe.parse_key(jwe.new_key_text().encode()), Identity("dev", "w", KEY_RESOURCE))
    assert not (tmp_path / "out").exists()
