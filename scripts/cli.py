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
