"""What every command line of the toolkit shares: one-line usage errors and the environment argument."""

from __future__ import annotations

import argparse
import re
from typing import NoReturn

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
