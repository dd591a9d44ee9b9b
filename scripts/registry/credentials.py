"""The registry credentials a user already has: NGC's API key for nvcr.io, then the auth files of
containers-auth.json(5) and docker's config.json, in the order podman and skopeo read them."""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from scripts.registry import RegistryError
from scripts.registry.reference import DOCKER_HUB, ImageReference

NGC_REGISTRY = "nvcr.io"
# nvcr.io takes an NGC API key as the password of this literal user (docs.nvidia.com/ngc, "Accessing NGC
# registry": docker login nvcr.io, Username: $oauthtoken).
NGC_USER = "$oauthtoken"
# How docker's config.json names Docker Hub (docker/cli registry.IndexServer).
_DOCKER_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    source: str
    """Where they came from (an environment variable or a file), to name in messages; never the values."""


def auth_files(env: Mapping[str, str]) -> list[Path]:
    """The files to look in, most specific first: REGISTRY_AUTH_FILE, then containers' and docker's defaults."""
    home = Path(env.get("HOME") or Path.home())
    files = []
    if env.get("REGISTRY_AUTH_FILE"):
        files.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("XDG_RUNTIME_DIR"):
        files.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files.append(Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "containers" / "auth.json")
    files.append(Path(env["DOCKER_CONFIG"]) / "config.json" if env.get("DOCKER_CONFIG") else home / ".docker" / "config.json")
    return files


def find(image: ImageReference, env: Mapping[str, str] | None = None) -> Credentials | None:
    """Credentials for `image`'s registry, or None for anonymous access."""
    env = os.environ if env is None else env
    if image.registry == NGC_REGISTRY and env.get("NGC_API_KEY"):
        return Credentials(NGC_USER, env["NGC_API_KEY"], "NGC_API_KEY")
    for path in auth_files(env):
        if path.is_file() and (found := _from_file(path, image)):
            return found
    return None


def _from_file(path: Path, image: ImageReference) -> Credentials | None:
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RegistryError(f"cannot read registry credentials from {path}: {getattr(err, 'strerror', None) or type(err).__name__}") from None
    auths = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(auths, dict):
        return None
    by_key = {_normalised(key): entry for key, entry in auths.items() if isinstance(entry, dict)}
    # containers-auth.json allows a key per namespace or repository; the longest match wins.
    parts = f"{image.registry}/{image.repository}".split("/")
    for end in range(len(parts), 0, -1):
        entry = by_key.get("/".join(parts[:end]))
        if entry is not None:
            return _decoded(entry, path, "/".join(parts[:end]))
    return None


def _normalised(key: str) -> str:
    """`https://index.docker.io/v1/` -> `docker.io`; `http://host:5000` -> `host:5000`."""
    key = key.removeprefix("https://").removeprefix("http://").rstrip("/")
    for suffix in ("/v1", "/v2"):
        key = key.removesuffix(suffix)
    host, _, rest = key.partition("/")
    host = DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host
    return f"{host}/{rest}" if rest else host


def _decoded(entry: dict, path: Path, key: str) -> Credentials | None:
    where = f"{path} (auths {key})"
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            username, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise RegistryError(f"{where}: 'auth' is not base64 of user:password") from None
        if not sep or not username:
            raise RegistryError(f"{where}: 'auth' is not base64 of user:password")
        return Credentials(username, password, where)
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return Credentials(entry["username"], entry["password"], where)
    return None
