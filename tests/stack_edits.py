"""Copies of stacks/ with edits: the bad-input tests and the preview recording start from the real stack files."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from scripts.offline.stackfile import STACKS_DIR, environments

DELETE = object()
# The environment the "unknown environment" tests ask for: no one would name a real one so. Adding an
# environment by the README's checklist must never break a test, so none lists the environments either.
UNKNOWN_ENV = "no-such-env"


def known_environments() -> str:
    """The environments the tools list when asked for an unknown one (every stacks/ pair, sorted)."""
    return ", ".join(environments())


def set_path(document: dict[str, Any], path: str, value: Any) -> None:
    """Set (or, with DELETE, remove) `path` (`models.0.gpus`, without the project prefix) in a stack file's document."""
    first, *rest = path.split(".")
    node: Any = document["config"]
    key: str | int = f"confidential-ai:{first}"
    for part in rest:
        node = node[key]
        key = int(part) if isinstance(node, list) else part
    if value is DELETE:
        del node[key]
    else:
        node[key] = value


def stacks_with(directory: Path, edits: dict[str, dict[str, Any] | str]) -> Path:
    """stacks/ copied to `directory`, each stack's file edited by key path, or replaced by the given text."""
    shutil.copytree(STACKS_DIR, directory, ignore=shutil.ignore_patterns("*.py", "__pycache__", "config"))
    for stack, edit in edits.items():
        path = directory / f"Pulumi.{stack}.yaml"
        if isinstance(edit, str):
            path.write_bytes(edit.encode("utf-8", "surrogateescape"))
            continue
        document = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        for key, value in edit.items():
            set_path(document, key, value)
        path.write_text(yaml.safe_dump(document))
    return directory


@functools.cache
def single_backend_lab() -> Path:
    """A project root whose dev-cloud reads dev-trusted through a StackReference (its trustBundle removed),
    as a single-backend lab may: for the tests of that path through the scripts."""
    root = Path(tempfile.mkdtemp(prefix="single-backend-lab-"))
    atexit.register(shutil.rmtree, root, True)
    stacks_with(root / "stacks", {"dev-cloud": {"trustBundle": DELETE}})
    return root
