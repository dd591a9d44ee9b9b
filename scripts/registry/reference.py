"""Image references as docker and CRI-O read them (github.com/distribution/reference, normalize.go)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from scripts.registry import RegistryError

DOCKER_HUB = "docker.io"
# Docker Hub's registry API is served from another host than the name images use.
_DOCKER_HUB_API = "registry-1.docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageReference:
    registry: str
    """The registry host as the reference names it (`nvcr.io`, `127.0.0.1:5000`, `docker.io`)."""
    repository: str
    """The repository path in that registry (`nim/meta/llama-3.1-8b-instruct`, `library/busybox`)."""
    name: str
    """The reference as written, without its tag or digest: what a pinned `name@sha256:...` keeps."""
    tag: str | None
    digest: str | None

    @property
    def api_host(self) -> str:
        return _DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What the manifest is asked for by: the digest when given, else the tag."""
        return self.digest or self.tag or ""

    def pinned(self, digest: str) -> str:
        return f"{self.name}@{digest}"

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse(text: str) -> ImageReference:
    """`[registry/]repository(:tag|@sha256:<hex>|:tag@sha256:<hex>)`; a bare name is refused (which tag?)."""
    name, _, digest = text.partition("@")
    if digest and not DIGEST.match(digest):
        raise RegistryError(f"{text!r}: the digest must be sha256:<64 lowercase hex>")
    tag = None
    last_slash = name.rfind("/")
    if ":" in name[last_slash + 1:]:
        name, tag = name.rsplit(":", 1)
        if not _TAG.match(tag):
            raise RegistryError(f"{text!r}: {tag!r} is not a tag")
    if not tag and not digest:
        raise RegistryError(f"{text!r} names no tag or digest: give the release to pin, like {text}:1.3.3")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
        if not _DOMAIN.match(registry):
            raise RegistryError(f"{text!r}: {registry!r} is not a registry host")
    else:
        registry, repository = DOCKER_HUB, name if sep else f"library/{name}"
    if not _REPOSITORY.match(repository):
        raise RegistryError(f"{text!r}: {repository!r} is not a repository name (lowercase letters, digits, '.', '_', '-', '/')")
    return ImageReference(registry, repository, name, tag, digest or None)
