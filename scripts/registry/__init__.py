"""A small client of the OCI distribution API: resolve an image reference to its digest, its platform's
manifest and its config, with the credentials a user already has (`scripts.pin_workload` uses it)."""

from __future__ import annotations


class RegistryError(Exception):
    """The image could not be resolved; the message is one line for the user and carries no secret."""
