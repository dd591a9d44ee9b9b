"""The manifest of an encrypted model: every file's name, size and plaintext sha256, and the key it needs.

Written next to the ciphertext twice: `manifest.json` (public: the cloud stack sizes the pod's memory
volume from it) and `manifest.json.jwe` (the same bytes encrypted with the model key). The init container
trusts only the encrypted one, and only when its sha256 is the one the stack config pins: the storage
cannot swap, replace or drop a file, nor substitute another model's manifest.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

FORMAT = "confidential-ai/encrypted-model/v1"
PLAIN_NAME = "manifest.json"
ENCRYPTED_NAME = "manifest.json.jwe"
CIPHERTEXT_SUFFIX = ".jwe"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KBS_URI = re.compile(r"^kbs:///[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_RESERVED = {PLAIN_NAME, ENCRYPTED_NAME}


class ManifestError(ValueError):
    """The manifest is malformed; the message is one line naming the field."""


@dataclass(frozen=True)
class ModelFile:
    path: str
    """Relative POSIX path inside the model directory."""
    size: int
    sha256: str
    """Of the plaintext."""

    @property
    def ciphertext(self) -> str | None:
        """The stored object's name; an empty file is not stored (jwcrypto, so KServe, cannot decrypt an
        empty JWE payload), the decryptor creates it."""
        return self.path + CIPHERTEXT_SUFFIX if self.size else None


@dataclass(frozen=True)
class Manifest:
    env: str
    workload: str
    key_resource: str
    """The KBS resource URI of the model key, `kbs:///<repo>/<type>/<tag>`."""
    files: tuple[ModelFile, ...]

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def to_bytes(self) -> bytes:
        """Canonical JSON: the same manifest always gives the same bytes, so the same sha256."""
        document = {
            "format": FORMAT,
            "env": self.env,
            "workload": self.workload,
            "keyResource": self.key_resource,
            "jwe": {"alg": "A256KW", "enc": "A256GCM"},
            "totalSize": self.total_size,
            "files": [
                {"path": f.path, "size": f.size, "sha256": f.sha256, "object": f.ciphertext} for f in self.files
            ],
        }
        return (json.dumps(document, indent=2) + "\n").encode()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()


def check_path(path: str) -> str | None:
    """Why `path` cannot name a model file, or None when it can."""
    pure = PurePosixPath(path)
    # PurePosixPath normalizes "", "a//b", "a/./b", "a/" to another spelling; "." (the target directory
    # itself) and ".." it keeps.
    if str(pure) != path or pure.is_absolute() or not pure.parts or ".." in pure.parts:
        return "must be a normalized relative path"
    if path in _RESERVED:
        return f"is reserved for the manifest ({PLAIN_NAME}, {ENCRYPTED_NAME})"
    if any(not part.isprintable() or part.startswith(".") and part.endswith(".partial") for part in pure.parts):
        return "has an unprintable or reserved (.partial) name"
    return None


def parse(data: bytes) -> Manifest:
    """A manifest from its JSON bytes; ManifestError names the first problem."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise ManifestError("is not JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ManifestError(f"format: must be {FORMAT!r}")
    for field in ("env", "workload", "keyResource"):
        if not isinstance(document.get(field), str) or not document[field]:
            raise ManifestError(f"{field}: must be a non-empty string")
    if not _KBS_URI.match(document["keyResource"]):
        raise ManifestError("keyResource: must be kbs:///<repo>/<type>/<tag>")
    entries = document.get("files")
    if not isinstance(entries, list) or not entries:
        raise ManifestError("files: must be a non-empty list")
    files = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ManifestError(f"files[{i}]: must be an object")
        path, size, sha256 = entry.get("path"), entry.get("size"), entry.get("sha256")
        if not isinstance(path, str) or (problem := check_path(path)):
            raise ManifestError(f"files[{i}].path: {problem if isinstance(path, str) else 'must be a string'}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError(f"files[{i}].size: must be a non-negative integer")
        if not isinstance(sha256, str) or not _SHA256.match(sha256):
            raise ManifestError(f"files[{i}].sha256: must be 64 lowercase hex digits")
        files.append(ModelFile(path, size, sha256))
    manifest = Manifest(document["env"], document["workload"], document["keyResource"], tuple(files))
    paths = [f.path for f in files]
    if paths != sorted(set(paths)):
        raise ManifestError("files: paths must be unique and sorted")
    prefixes = {str(parent) for f in files for parent in PurePosixPath(f.path).parents}
    if clash := sorted(prefixes.intersection(paths)):
        raise ManifestError(f"files: {clash[0]} is both a file and a directory")
    if manifest.to_bytes() != data:
        raise ManifestError("is not in canonical form (written by scripts.encrypt_model)")
    return manifest
