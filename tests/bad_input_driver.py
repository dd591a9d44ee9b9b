"""Runs many bad-input command lines in one interpreter, as `python -m tests.bad_input_driver CASES.json`.

Each case is `{"id", "prog", "argv"}`. Before each one it writes `=== <id>` to stderr, at the end
`=== exit`; stdout gets the exit statuses as JSON. Whatever the interpreter prints while it shuts
down lands after `=== exit`, so the caller sees it. One process for every case keeps the suite fast.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import sys
from pathlib import Path

MARK = "=== "
MODULES = {
    "python -m scripts.plan": "scripts.plan",
    "python -m scripts.preflight": "scripts.preflight",
    "python -m scripts.offline.policy": "scripts.offline.policy",
    "python -m scripts.preview_pr": "scripts.preview_pr",
    "python -m scripts.up": "scripts.up",
    "python -m scripts.verify_endpoint": "scripts.verify_endpoint",
    "python -m scripts.pin_workload": "scripts.pin_workload",
}


def run(prog: str, argv: list[str]) -> int:
    main = importlib.import_module(MODULES[prog]).main
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return main(argv)
    except SystemExit as exited:  # argparse's usage errors
        return exited.code if isinstance(exited.code, int) else 1


def main() -> None:
    cases = json.loads(Path(sys.argv[1]).read_text())
    statuses = {}
    for case in cases:
        print(f"{MARK}{case['id']}", file=sys.stderr, flush=True)
        statuses[case["id"]] = run(case["prog"], case["argv"])
        sys.stderr.flush()
    print(f"{MARK}exit", file=sys.stderr, flush=True)
    print(json.dumps(statuses))


if __name__ == "__main__":
    main()
