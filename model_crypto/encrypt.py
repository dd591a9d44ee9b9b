"""Encrypt a model directory at source: one JWE per file, the manifest in the clear and encrypted.

Only ciphertext and the manifest are written, into an output directory that must be new or empty and
apart from the source; a failure removes everything this run wrote.
"""

from __future__ import annotations

import errno
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from jwcrypto import jwk

from model_crypto import jwe
from model_crypto import manifest as manifests


class EncryptError(Exception):
    """The model directory or the output directory cannot be used; one line naming the path."""


@dataclass(frozen=True)
class Identity:
    """Whose model this is: recorded in the manifest, checked by the init container (key resource)."""

    env: str
    workload: str
    key_resource: str


def model_files(src: Path) -> list[str]:
    """Relative paths of every regular file under `src` (symlinks to files followed), sorted."""
    if not src.is_dir():
        raise EncryptError(f"{src}: not a directory")
    found = []
    for directory, subdirectories, names in os.walk(src):
        here = Path(directory)
        for name in subdirectories:
            if (here / name).is_symlink():
                raise EncryptError(f"{here / name}: a symlinked directory; copy its files into the model directory")
        for name in names:
            path = here / name
            if not path.is_file():
                raise EncryptError(f"{path}: not a regular file (a dangling link, a socket or a device)")
            relative = path.relative_to(src).as_posix()
            if problem := manifests.check_path(relative):
                raise EncryptError(f"{path}: the name {problem}")
            found.append(relative)
    if not found:
        raise EncryptError(f"{src}: no files to encrypt")
    return sorted(found)


def prepare_output(src: Path, out: Path) -> bool:
    """Check `out` is usable; create it. Returns whether it was created (so a failure removes it)."""
    source, target = src.resolve(), out.resolve()
    if target == source or source in target.parents or target in source.parents:
        raise EncryptError(f"--out: {out} overlaps the model directory {src}; write the ciphertext elsewhere")
    if out.exists():
        if not out.is_dir() or any(out.iterdir()):
            raise EncryptError(f"--out: {out} exists and is not an empty directory")
        return False
    try:
        out.mkdir(parents=True)
    except OSError as err:
        raise EncryptError(f"--out: cannot create {out} ({err.strerror})") from None
    return True


def encrypt_model(src: Path, out: Path, key: jwk.JWK, identity: Identity) -> manifests.Manifest:
    """Encrypt every file of `src` into `out`; return the manifest written beside them."""
    paths = model_files(src)
    created_out = prepare_output(src, out)
    written: list[Path] = []
    try:
        files = []
        for relative in paths:
            destination = out / (relative + manifests.CIPHERTEXT_SUFFIX)
            destination.parent.mkdir(parents=True, exist_ok=True)
            written.append(destination)
            with open(src / relative, "rb") as source, open(destination, "xb") as sink:
                _reserve(sink, jwe.serialized_size(os.fstat(source.fileno()).st_size))
                plaintext = jwe.encrypt(source, sink, key)
                sink.truncate()  # at what was written, should the source have shrunk while read
            if not plaintext.size:
                destination.unlink()  # an empty file is recorded, not stored (manifest.ModelFile.ciphertext)
            files.append(manifests.ModelFile(relative, plaintext.size, plaintext.sha256))
        manifest = manifests.Manifest(identity.env, identity.workload, identity.key_resource, tuple(files))
        document = manifest.to_bytes()
        written.append(out / manifests.PLAIN_NAME)
        (out / manifests.PLAIN_NAME).write_bytes(document)
        written.append(out / manifests.ENCRYPTED_NAME)
        with open(out / manifests.ENCRYPTED_NAME, "xb") as sink:
            jwe.encrypt(io.BytesIO(document), sink, key)
    except BaseException:
        _remove(out, written, created_out)
        raise
    return manifest


def _reserve(sink: BinaryIO, size: int) -> None:
    """Allocate the output file whole before writing it: on this project's ext4 build machine appending
    cost up to 15 times the CPU of writing into the reserved file, and varied from run to run
    (docs/benchmarks.md). Filesystems without it just append."""
    try:
        os.posix_fallocate(sink.fileno(), 0, size)
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise


def _remove(out: Path, written: list[Path], remove_out: bool) -> None:
    for path in written:
        path.unlink(missing_ok=True)
    for directory in sorted({p.parent for p in written if p.parent != out}, key=lambda p: len(p.parts), reverse=True):
        for candidate in (directory, *directory.parents):
            if candidate == out or out not in candidate.parents:
                break
            if not any(candidate.iterdir()):
                candidate.rmdir()
    if remove_out and not any(out.iterdir()):
        out.rmdir()
