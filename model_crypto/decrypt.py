"""The model pod's init container: encrypted model in, verified plaintext in the pod's memory volume out.

    python -m model_crypto.decrypt --source https://<account>.blob.core.windows.net/<container>/<model> \\
        --key-resource kbs:///default/<secret>/<key> --manifest-sha256 <hex> --target /models

It runs in the pod VM, after attestation, as one container of the model's pod:
1. fetches the model key from the confidential data hub (`GET /cdh/resource/<repo>/<type>/<tag>` on
   127.0.0.1:8006 in the pod's network namespace; guest-components confidential-data-hub
   docs/RESOURCES_SERVICES.md, the endpoint KServe's CDHSecretResolver calls, kserve/kserve commit
   2f9cbe81 python/storage/kserve_storage/confidential/cdh_client.py);
2. downloads `manifest.json.jwe` and accepts it only if it decrypts with that key and its sha256 is the
   pinned one;
3. streams every file: download, decrypt, hash, into a hidden `.partial` file next to its final name;
   renames it only when its tag, size and sha256 all match the manifest. Each file's chunks overlap
   (the next downloads, the previous is hashed and written, while one is decrypted), and several files
   go at once when the pod VM has the cores (`files_at_once`).
Plaintext is written only under `--target`, which must be a tmpfs (a memory-backed emptyDir). Anything
wrong ends with one line on stderr, exit status 1, and nothing this run wrote left in the target.
The Azure Blob read credential is a SAS in AZURE_STORAGE_SAS_TOKEN (it grants ciphertext only).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import io
import os
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import BinaryIO, NoReturn

from jwcrypto import jwk

from model_crypto import jwe
from model_crypto import manifest as manifests

PROG = "decrypt-model"
CDH_URL = "http://127.0.0.1:8006"
SAS_ENV = "AZURE_STORAGE_SAS_TOKEN"
_KBS_URI = re.compile(r"^kbs:///(?P<repo>[A-Za-z0-9_.-]+)/(?P<type>[A-Za-z0-9_.-]+)/(?P<tag>[A-Za-z0-9_.-]+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TIMEOUT_SECONDS = 120
_MANIFEST_LIMIT = 16 << 20
_KEY_LIMIT = 4096


class DecryptError(Exception):
    """Why the model cannot be made available; one line for the pod's log."""


class BlobSource:
    """Objects under one base URL (an Azure Blob container and prefix), read with an optional SAS."""

    def __init__(self, base_url: str, sas: str | None = None):
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("https", "http") or not parsed.netloc or parsed.query or parsed.fragment:
            raise DecryptError(f"--source: {base_url!r} is not an http(s) URL without query (the SAS goes in {SAS_ENV})")
        self.base_url = base_url.rstrip("/")
        self._query = (sas or "").lstrip("?")

    def open(self, name: str) -> BinaryIO:
        url = f"{self.base_url}/{urllib.parse.quote(name)}" + (f"?{self._query}" if self._query else "")
        try:
            return urllib.request.urlopen(url, timeout=_TIMEOUT_SECONDS)  # noqa: S310 (scheme checked above)
        except urllib.error.HTTPError as err:
            # The message names the object, never the URL: that carries the SAS.
            raise DecryptError(f"{name}: download refused by {urllib.parse.urlsplit(url).netloc} (HTTP {err.code} {err.reason})") from None
        except (urllib.error.URLError, OSError) as err:
            raise DecryptError(f"{name}: cannot reach {urllib.parse.urlsplit(url).netloc} ({getattr(err, 'reason', err)})") from None


def fetch_key(resource: str, cdh_url: str = CDH_URL) -> jwk.JWK:
    """The model key from the confidential data hub, which attests the pod VM to KBS first."""
    match = _KBS_URI.match(resource)
    if not match:
        raise DecryptError(f"--key-resource: {resource!r} is not kbs:///<repo>/<type>/<tag>")
    url = f"{cdh_url.rstrip('/')}/cdh/resource/{match['repo']}/{match['type']}/{match['tag']}"
    # The data hub listens in the pod's own network namespace: never through a proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=_TIMEOUT_SECONDS) as response:
            data = response.read(_KEY_LIMIT + 1)
    except urllib.error.HTTPError as err:
        raise DecryptError(
            f"the confidential data hub did not release {resource} (HTTP {err.code}): attestation failed "
            "or the resource policy does not release it to this workload"
        ) from None
    except (urllib.error.URLError, OSError) as err:
        raise DecryptError(f"cannot reach the confidential data hub at {cdh_url} ({getattr(err, 'reason', err)}): is this a confidential pod?") from None
    if len(data) > _KEY_LIMIT:
        raise DecryptError(f"{resource}: the resource is too large to be a model key")
    try:
        return jwe.parse_key(data)
    except jwe.KeyFormatError as err:
        raise DecryptError(f"{resource}: the key {err}") from None


def filesystem_type(path: Path) -> str:
    """The type of the filesystem `path` is on, from /proc/self/mountinfo (the longest mount point wins)."""
    resolved = str(path.resolve())
    best, best_type = "", ""
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split(" - ", 1)
            mount_point = _unescape(fields[0].split()[4])
            under = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
            if under and len(mount_point) >= len(best):
                best, best_type = mount_point, fields[1].split()[0]
    return best_type


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def decrypt_model(source: BlobSource, key: jwk.JWK, key_resource: str, manifest_sha256: str, target: Path,
                  progress: Callable[[str], None] = lambda line: None) -> manifests.Manifest:
    """Decrypt and verify every file of the model into `target`; on any failure remove what this run wrote.

    Several files download and decrypt at once when the pod VM has the cores (`files_at_once`); the
    first failure stops the others at their next chunk before anything is removed.
    """
    if not _SHA256.match(manifest_sha256):
        raise DecryptError(f"--manifest-sha256: {manifest_sha256!r} is not 64 lowercase hex digits")
    if not target.is_dir():
        raise DecryptError(f"--target: {target} is not a directory")
    if (kind := filesystem_type(target)) != "tmpfs":
        raise DecryptError(f"--target: {target} is on {kind or 'an unknown filesystem'}, not tmpfs: mount a memory-backed emptyDir (medium: Memory)")
    manifest = _verified_manifest(source, key, key_resource, manifest_sha256)
    created: list[Path] = []
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=files_at_once(), thread_name_prefix="decrypt-file")
    try:
        for entry in manifest.files:
            destination = target / entry.path
            for parent in reversed(destination.relative_to(target).parents):
                if not (target / parent).is_dir():
                    (target / parent).mkdir()
                    created.append(target / parent)
            for leftover in (destination, _partial(destination)):  # from a run that was killed before it could clean up
                leftover.unlink(missing_ok=True)
        pending = {pool.submit(_restore, source, key, entry, target / entry.path, stop): index
                   for index, entry in enumerate(manifest.files)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=pending.__getitem__):  # the first failure in manifest order is reported
                entry = manifest.files[pending.pop(future)]
                future.result()
                progress(f"{entry.path}: {entry.size} bytes verified")
    except BaseException:
        # Only now do the other files stop (_Stopped), so the failure raised here is never theirs.
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        for entry in manifest.files:
            for path in (target / entry.path, _partial(target / entry.path)):
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # a file where its directory should be
                    path.unlink()
        for directory in reversed(created):
            directory.rmdir()
        raise
    finally:
        pool.shutdown(wait=True)
    return manifest


def files_at_once() -> int:
    """How many files decrypt at once: one per two cores the process may use (each file keeps about two
    busy: its SHA-256 and the rest), at most four, so memory stays within 64 MiB (docs/benchmarks.md)."""
    return max(1, min(4, len(os.sched_getaffinity(0)) // 2))


def _partial(destination: Path) -> Path:
    return destination.with_name(f".{destination.name}.partial")


class _Stopped(Exception):
    """Another file failed: this one stops at its next chunk."""


class _StoppableSink:
    def __init__(self, sink: BinaryIO, stop: threading.Event):
        self._sink, self._stop = sink, stop

    def write(self, data: bytes) -> int:
        if self._stop.is_set():
            raise _Stopped
        return self._sink.write(data)


def _restore(source: BlobSource, key: jwk.JWK, entry: manifests.ModelFile, destination: Path, stop: threading.Event) -> None:
    """One file: decrypt into its hidden partial file, rename it only when size and sha256 are the manifest's."""
    if stop.is_set():
        raise _Stopped
    partial = _partial(destination)
    with open(partial, "xb") as sink:
        got = _decrypt_entry(source, entry, key, _StoppableSink(sink, stop))
    if got != jwe.Plaintext(entry.size, entry.sha256):
        raise DecryptError(
            f"{entry.path}: decrypts to {got.size} bytes with sha256 {got.sha256[:16]}..., the manifest "
            f"records {entry.size} bytes with sha256 {entry.sha256[:16]}... (file swapped or replaced in storage)"
        )
    os.replace(partial, destination)


def _verified_manifest(source: BlobSource, key: jwk.JWK, key_resource: str, expected_sha256: str) -> manifests.Manifest:
    buffer = io.BytesIO()
    with source.open(manifests.ENCRYPTED_NAME) as src:
        try:
            jwe.decrypt(src, buffer, key, max_size=_MANIFEST_LIMIT)
        except jwe.JweError as err:
            raise DecryptError(f"{manifests.ENCRYPTED_NAME}: {err}") from None
        except (OSError, http.client.HTTPException) as err:
            raise DecryptError(f"{manifests.ENCRYPTED_NAME}: download failed ({err!r})") from None
    data = buffer.getvalue()
    if (found := hashlib.sha256(data).hexdigest()) != expected_sha256:
        raise DecryptError(
            f"{manifests.ENCRYPTED_NAME}: sha256 {found[:16]}... is not the pinned {expected_sha256[:16]}... "
            "(another model's or an older manifest, or the stack config pins the wrong one)"
        )
    try:
        manifest = manifests.parse(data)
    except manifests.ManifestError as err:
        raise DecryptError(f"{manifests.ENCRYPTED_NAME}: {err}") from None
    if manifest.key_resource != key_resource:
        raise DecryptError(f"{manifests.ENCRYPTED_NAME}: the model was encrypted for {manifest.key_resource}, not {key_resource}")
    return manifest


def _decrypt_entry(source: BlobSource, entry: manifests.ModelFile, key: jwk.JWK, sink: BinaryIO) -> jwe.Plaintext:
    if entry.ciphertext is None:
        return jwe.Plaintext(0, hashlib.sha256(b"").hexdigest())
    with source.open(entry.ciphertext) as src:
        try:
            return jwe.decrypt(src, sink, key, max_size=entry.size)
        except jwe.JweError as err:
            raise DecryptError(f"{entry.ciphertext}: {err}") from None
        except (OSError, http.client.HTTPException) as err:
            raise DecryptError(f"{entry.ciphertext}: download or write failed ({getattr(err, 'strerror', None) or repr(err)})") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog=PROG, description="Decrypt an encrypted model into a memory-backed directory, inside the pod VM.")
    parser.add_argument("--source", required=True, help="base URL of the encrypted model (its manifest.json.jwe and *.jwe objects)")
    parser.add_argument("--key-resource", required=True, help="KBS resource of the model key, kbs:///<repo>/<type>/<tag>")
    parser.add_argument("--manifest-sha256", required=True, help="sha256 of the model's manifest.json, as the stack config pins it")
    parser.add_argument("--target", required=True, type=Path, help="tmpfs directory for the plaintext model")
    parser.add_argument("--cdh-url", default=CDH_URL, help=f"confidential data hub (default {CDH_URL})")
    args = parser.parse_args(argv)
    # Kubelet stops a container with SIGTERM: unwind through the cleanup instead of dying in place.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    try:
        source = BlobSource(args.source, os.environ.get(SAS_ENV))
        key = fetch_key(args.key_resource, args.cdh_url)
        manifest = decrypt_model(source, key, args.key_resource, args.manifest_sha256, args.target,
                                 progress=lambda line: print(f"{PROG}: {line}", flush=True))
    except DecryptError as err:
        print(f"{PROG}: error: {err}; nothing was left in {args.target}", file=sys.stderr)
        return 1
    except OSError as err:  # the target itself: not writable, full
        print(f"{PROG}: error: {args.target}: {err.strerror or err}{f' ({err.filename})' if err.filename else ''}; nothing was left in {args.target}", file=sys.stderr)
        return 1
    seconds = max(time.monotonic() - started, 1e-9)
    mib = manifest.total_size / 2**20
    print(f"{PROG}: {len(manifest.files)} files, {mib:.1f} MiB verified into {args.target} in {seconds:.1f} s ({mib / seconds:.0f} MiB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
