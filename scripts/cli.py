"""What every command line of the toolkit shares: one-line usage errors and the environment argument."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, NoReturn

# Pulumi stack names: letters, digits, '-', '_' and '.'; ENV becomes ENV-trusted and ENV-cloud.
_ENVIRONMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (`PROG: error: MESSAGE (see --help)`), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def environment(value: str) -> str:
    """An environment name, checked before it becomes part of a stack name and a file name."""
    if not _ENVIRONMENT.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an environment name (letters, digits, '-', '_', '.'; e.g. dev)")
    return value


class OutputsFileError(Exception):
    """A `--...-outputs FILE` that is no readable JSON object of stack outputs; one line for the user."""


def read_outputs_file(option: str, path: Path, side: str) -> dict[str, Any]:
    """Stack outputs saved as JSON (`pulumi stack output --json`, or the offline plan's out/<env>-<side>/outputs.json)."""
    try:
        outputs = json.loads(path.read_text())
    except OSError as err:
        raise OutputsFileError(f"{option} {path}: {err.strerror or err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise OutputsFileError(f"{option} {path} is not JSON: {err}") from None
    if not isinstance(outputs, dict):
        raise OutputsFileError(f"{option} {path} is not a JSON object of stack outputs (like out/<env>-{side}/outputs.json)")
    return outputs


class CloudStackChoice(Exception):
    """`--cloud-stack` names no cloud stack of the environment, or is needed and missing; one line for the user."""


def choose_cloud_stack(env: str, chosen: str | None, stacks: list[str]) -> str:
    """The cloud stack to act on: `chosen` (`--cloud-stack`), else the environment's only one.

    `stacks`: the environment's cloud stacks with a stack file (scripts/offline/stackfile.py cloud_stacks).
    """
    if chosen is not None:
        if chosen not in stacks:
            raise CloudStackChoice(f"--cloud-stack {chosen} is not a cloud stack of {env} (its cloud stacks: {', '.join(stacks) or 'none'})")
        return chosen
    if len(stacks) == 1:
        return stacks[0]
    if not stacks:
        raise CloudStackChoice(f"{env} has no cloud stack file (stacks/Pulumi.{env}-cloud.yaml or Pulumi.{env}-cloud-<name>.yaml)")
    raise CloudStackChoice(f"{env} has {len(stacks)} cloud stacks ({', '.join(stacks)}): choose one with --cloud-stack NAME")
