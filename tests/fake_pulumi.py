"""A stand-in `pulumi` executable that replays recorded outputs, to drive the real Automation API
adapter (scripts/pulumi_cli.py) offline. It logs each invocation's arguments.

It reports version 3.200.0 so the Automation API reads the event log from a file (newer CLIs stream
it over gRPC; pulumi/pulumi sdk/python/lib/pulumi/automation/_stack.py, _setup_event_log).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

SCRIPT = '''#!{python}
import json, os, sys
from pathlib import Path

args = [a for a in sys.argv[1:] if a != "--non-interactive"]
with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
recorded = Path(os.environ["FAKE_PULUMI_RECORDED"])
stack = args[args.index("--stack") + 1] if "--stack" in args else ""

def fail(message):
    sys.stderr.write(message)
    sys.exit(255)

def events(extra):
    if "--event-log" not in args:
        return
    path = args[args.index("--event-log") + 1]
    lines = [extra] if extra else []
    with open(path, "a") as log:
        for line in lines + [json.dumps({{"sequence": 99, "timestamp": 0, "summaryEvent": {{
                "maybeCorrupt": False, "durationSeconds": 1, "resourceChanges": {{}}, "PolicyPacks": {{}}}}}}),
                json.dumps({{"sequence": 100, "timestamp": 0, "cancelEvent": {{}}}})]:
            log.write(line.rstrip("\\n") + "\\n")

if args[:1] == ["version"]:
    print("v3.200.0")
elif args[:2] == ["stack", "select"]:
    if not (recorded / f"{{stack}}.json").exists() and not (recorded / f"{{stack}}.outputs.json").exists():
        fail(f"error: no stack named '{{stack}}' found\\n")
elif args[:2] == ["stack", "output"]:
    outputs = recorded / f"{{stack}}.outputs.json"
    print(outputs.read_text() if outputs.exists() else "{{}}")
elif args[:2] == ["stack", "history"]:
    print(json.dumps([{{"kind": args[0], "startTime": "2026-11-28T03:00:00.000Z", "message": "", "environment": {{}},
                       "config": {{}}, "result": "succeeded", "endTime": "2026-11-28T03:01:00.000Z", "version": 1}}]))
elif args[:1] == ["preview"]:
    sys.stdout.write((recorded / f"{{stack}}.json").read_text())
    log = recorded / f"{{stack}}.events.jsonl"
    events(log.read_text() if log.exists() else "")
    err = recorded / f"{{stack}}.stderr.txt"
    if err.exists():
        fail(err.read_text())
elif args[:1] in (["up"], ["destroy"]):
    print(f"{{args[0]}} {{stack}}: done")
    events("")
    if os.environ.get("FAKE_PULUMI_FAIL") == stack:
        fail(f"error: update failed\\n    error: 1 resource failed on {{stack}}\\n")
else:
    fail(f"fake pulumi: unexpected arguments {{args}}\\n")
'''


def install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, recorded: Path) -> Path:
    """Put the fake `pulumi` first on PATH, replaying `recorded`; returns the invocation log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bin_dir / "pulumi"
    cli.write_text(SCRIPT.format(python=sys.executable))
    cli.chmod(0o755)
    log = tmp_path / "pulumi-calls.jsonl"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PULUMI_LOG", str(log))
    monkeypatch.setenv("FAKE_PULUMI_RECORDED", str(recorded))
    return log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]
