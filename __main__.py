"""Pulumi entry point (`pulumi up -s <env>-trusted|<env>-cloud`)."""

import sys

from stacks.config import ConfigError
from stacks.program import main

try:
    main()
except ConfigError as err:
    print("\n".join(err.lines()), file=sys.stderr)
    sys.exit(2)
