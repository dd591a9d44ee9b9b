"""Thin adapter between the toolkit's scripts and the Pulumi CLI (through the Automation API).

Everything above this module talks to the `Pulumi` protocol, so tests drive it with a fake and
recorded outputs; only `AutomationPulumi` needs the real CLI.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pulumi import automation as auto
from pulumi.automation.events import EngineEvent

REPO_ROOT = Path(__file__).resolve().parent.parent


class PulumiError(Exception):
    """A Pulumi operation failed; the message is one line meant for the user."""


@dataclass(frozen=True)
class PolicyViolation:
    policy: str
    pack: str
    enforcement: str  # "mandatory", "advisory", "remediate" or "disabled"
    message: str
    urn: str | None


@dataclass(frozen=True)
class Preview:
    """One stack's preview: the `pulumi preview --json` document plus the policy violations.

    `preview --json` leaves policy events out of its document (pulumi/pulumi
    pkg/backend/display/json.go, ShowPreviewDigest: "we don't handle policy events in JSON
    serialization"), so they are collected from the engine event log instead.
    """

    digest: dict[str, Any]
    violations: tuple[PolicyViolation, ...] = ()
    error: str | None = None  # one line, set when the CLI exited non-zero


class Pulumi(Protocol):
    def preview(self, stack: str, *, refresh: bool = False, expect_no_changes: bool = False) -> Preview: ...

    def up(self, stack: str) -> None: ...

    def destroy(self, stack: str) -> None: ...

    def outputs(self, stack: str) -> dict[str, Any] | None:
        """The stack's outputs, or None when the stack does not exist."""
        ...


def violations_from_events(events: Iterable[EngineEvent]) -> tuple[PolicyViolation, ...]:
    return tuple(
        PolicyViolation(
            policy=e.policy_event.policy_name,
            pack=e.policy_event.policy_pack_name,
            enforcement=e.policy_event.enforcement_level,
            message=e.policy_event.message.strip(),
            urn=e.policy_event.resource_urn,
        )
        for e in events
        if e.policy_event is not None
    )


def read_event_log(text: str) -> tuple[PolicyViolation, ...]:
    """Policy violations from a recorded `--event-log` file (one JSON engine event a line)."""
    events = (EngineEvent.from_json(json.loads(line)) for line in text.splitlines() if line.strip())
    return violations_from_events(events)


def parse_digest(stdout: str) -> dict[str, Any]:
    """The `preview --json` document, or {} when the CLI printed none (it failed before)."""
    try:
        digest = json.loads(stdout)
    except json.JSONDecodeError:
        return {}
    return digest if isinstance(digest, dict) else {}


def one_line(text: str) -> str:
    """The most telling line of CLI error output: the last `error:` line, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["no output"])[-1]


class AutomationPulumi:
    """`Pulumi` over pulumi.automation, running the project in `work_dir` (a local program)."""

    def __init__(self, work_dir: Path = REPO_ROOT) -> None:
        self.work_dir = work_dir
        pack = work_dir / "policies"
        self.policy_packs = [str(pack)] if (pack / "PulumiPolicy.yaml").exists() else []

    def _select(self, name: str) -> auto.Stack | None:
        try:
            return auto.select_stack(stack_name=name, work_dir=str(self.work_dir))
        except auto.StackNotFoundError:
            return None
        except FileNotFoundError as exc:
            raise PulumiError(f"the pulumi CLI is not installed ({exc.filename} not found)") from exc

    def _stack(self, name: str) -> auto.Stack:
        stack = self._select(name)
        if stack is None:
            raise PulumiError(f"stack {name} does not exist: run `pulumi stack init {name}` first")
        return stack

    def preview(self, stack: str, *, refresh: bool = False, expect_no_changes: bool = False) -> Preview:
        events: list[EngineEvent] = []
        stdout: list[str] = []
        stderr: list[str] = []
        error = None
        selected = self._select(stack)
        if selected is None:
            return Preview({}, (), f"stack {stack} does not exist yet: run `pulumi stack init {stack}`")
        try:
            selected.preview(
                json=True,
                refresh=refresh,
                expect_no_changes=expect_no_changes,
                policy_packs=self.policy_packs,
                on_event=events.append,
                on_output=stdout.append,
                on_error=stderr.append,
            )
        except auto.CommandError:
            error = one_line("\n".join(stderr))
        return Preview(parse_digest("\n".join(stdout)), violations_from_events(events), error)

    def up(self, stack: str) -> None:
        stderr: list[str] = []
        try:
            self._stack(stack).up(policy_packs=self.policy_packs, on_output=print, on_error=stderr.append)
        except auto.CommandError as exc:
            raise PulumiError(f"pulumi up failed on {stack}: {one_line(chr(10).join(stderr))}") from exc

    def destroy(self, stack: str) -> None:
        stderr: list[str] = []
        try:
            self._stack(stack).destroy(on_output=print, on_error=stderr.append)
        except auto.CommandError as exc:
            raise PulumiError(f"pulumi destroy failed on {stack}: {one_line(chr(10).join(stderr))}") from exc

    def outputs(self, stack: str) -> dict[str, Any] | None:
        selected = self._select(stack)
        return None if selected is None else {key: out.value for key, out in selected.outputs().items()}
