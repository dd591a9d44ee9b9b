"""Resolve an image reference the way the pod VM's image pull does: the manifest its tag or digest names,
then, for an index, the one manifest of the pod's platform, then that manifest's config."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from scripts.registry import RegistryError
from scripts.registry.client import Fetched, Repository
from scripts.registry.reference import DIGEST, ImageReference

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEXES = (OCI_INDEX, DOCKER_LIST)
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = (*INDEXES, *MANIFESTS)


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"{text!r} is not a platform like linux/amd64 or linux/arm64/v8")
        return cls(*parts)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class ResolvedImage:
    digest: str
    """What the reference resolves to: the index's digest for a multi-platform image, else the manifest's."""
    manifest_digest: str
    """The platform's own manifest (equal to `digest` for a single-platform image)."""
    config: dict[str, Any]
    """The image config's `config` object (Entrypoint, Cmd, Env, WorkingDir, User, ...)."""


def resolve(repository: Repository, image: ImageReference, platform: Platform) -> ResolvedImage:
    top = repository.manifest(image.reference, ACCEPT)
    document, media_type = _manifest(top, image.reference)
    manifest, manifest_document = top, document
    for _ in range(2):  # an index may name another index (rare); two levels at most
        if media_type not in INDEXES:
            break
        digest = _choose(document, platform, image)
        manifest = repository.manifest(digest, ACCEPT)
        manifest_document, media_type = _manifest(manifest, digest)
        document = manifest_document
    if media_type not in MANIFESTS:
        raise RegistryError(f"{image}: {media_type or 'an untyped document'} is not an image manifest")
    descriptor = manifest_document.get("config")
    if not isinstance(descriptor, dict) or not DIGEST.match(str(descriptor.get("digest"))):
        raise RegistryError(f"{image}: its manifest names no sha256 config")
    try:
        config = json.loads(repository.blob(descriptor["digest"]).body)
    except ValueError:
        raise RegistryError(f"{image}: its config {descriptor['digest']} is not JSON") from None
    if not isinstance(config, dict):
        raise RegistryError(f"{image}: its config {descriptor['digest']} is not a JSON object")
    found = Platform(str(config.get("os", "")), str(config.get("architecture", "")), config.get("variant") or None)
    if not _fits(found, platform):
        raise RegistryError(f"{image} is a {found} image only, not {platform}; pin an image built for {platform}")
    return ResolvedImage(top.digest, manifest.digest, config.get("config") or {})


def _manifest(fetched: Fetched, reference: str) -> tuple[dict[str, Any], str]:
    try:
        document = json.loads(fetched.body)
    except ValueError:
        raise RegistryError(f"the manifest {reference} is not JSON") from None
    if not isinstance(document, dict):
        raise RegistryError(f"the manifest {reference} is not a JSON object")
    # The body's own mediaType is what its digest covers; the Content-Type header is only a hint.
    media_type = document.get("mediaType") or fetched.media_type
    if document.get("schemaVersion") == 1:  # every docker schema 1 manifest says so (its media types are only hints)
        raise RegistryError(f"the manifest {reference} is docker schema 1, which names no config digest; push the image as schema 2 or OCI")
    if media_type not in ACCEPT and "manifests" in document:
        media_type = OCI_INDEX  # an OCI index may omit mediaType (image-spec image-index.md)
    elif media_type not in ACCEPT and "config" in document:
        media_type = OCI_MANIFEST
    return document, media_type


def _choose(index: dict[str, Any], platform: Platform, image: ImageReference) -> str:
    entries = [m for m in index.get("manifests") or [] if isinstance(m, dict) and isinstance(m.get("platform"), dict)]
    offered = [(Platform(str(p.get("os")), str(p.get("architecture")), p.get("variant") or None), m) for m in entries for p in (m["platform"],)]
    matching = [m for found, m in offered if _fits(found, platform)]
    if not matching:
        listed = ", ".join(sorted({str(found) for found, _ in offered if found.os != "unknown"})) or "none"
        raise RegistryError(f"{image} has no {platform} image (platforms: {listed}); pass --platform")
    digest = str(matching[0].get("digest"))
    if not DIGEST.match(digest):
        raise RegistryError(f"{image}: its {platform} entry names no sha256 digest")
    return digest


def _fits(found: Platform, wanted: Platform) -> bool:
    """Same OS and architecture; a variant only when asked for (`linux/arm64` takes `linux/arm64/v8`)."""
    return (found.os, found.architecture) == (wanted.os, wanted.architecture) and (wanted.variant is None or found.variant == wanted.variant)
