"""Where `scripts.preview_pr` gets its stacks, the changed files, the previews and the policy diffs:
the repository (git, the Pulumi CLI, `scripts.policy_diff`) or a recorded run."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from scripts.offline.stackfile import StackFileError
from scripts.policy_diff import policy_diff
from scripts.policy_diff.planning import GitError
from scripts.policy_diff.plans import PlanError
from scripts.policy_diff.report import PolicyDiff
from scripts.pulumi_cli import AutomationPulumi, Preview, one_line, parse_digest, read_event_log
from scripts.up import SIDES
from stacks.config import ConfigError

# Files that feed every stack's program; a stack's own config file feeds only that stack.
SHARED_PATTERNS = (
    "components/*", "templates/*", "stacks/*.py", "stacks/config/*", "policies/*",
    "__main__.py", "Pulumi.yaml", "requirements*.txt",
)  # fnmatch's `*` also matches `/`, so directory patterns cover subdirectories
# A recorded run's policy diff of one environment: ENV.policy-diff.json.
POLICY_DIFF_SUFFIX = ".policy-diff.json"
STACK_FILE = re.compile(r"^stacks/Pulumi\.(?P<stack>[^/]+)\.yaml$")


class UsageError(Exception):
    """Bad input; the message is one line for the user."""


class Source(Protocol):
    """Where a run gets its stacks, the changed files and the previews."""

    def stacks(self) -> list[str]: ...

    def changed(self, base: str) -> list[str]: ...

    def uncommitted(self) -> list[str]:
        """Paths changed in the working tree but not committed: `changed` compares commits only."""
        ...

    def preview(self, stack: str, *, refresh: bool = False, expect_no_changes: bool = False) -> Preview: ...

    def policy_diff(self, env: str, base: str, merge_base: bool = True) -> PolicyDiff | None:
        """The policy diff of `env` against `base`; None when there is none to show (not recorded); PolicyDiffError when it fails."""


# --- which stacks -------------------------------------------------------------------------------


def stack_order(stack: str) -> tuple[str, int, str]:
    env, _, side = stack.rpartition("-")
    return (env, SIDES.index(side), "") if side in SIDES else ("~", 0, stack)


def discover_stacks(root: Path) -> list[str]:
    names = (STACK_FILE.match(p.relative_to(root).as_posix()) for p in root.glob("stacks/Pulumi.*.yaml"))
    return sorted((m["stack"] for m in names if m), key=stack_order)


def changed_files(base: str, root: Path) -> list[str]:
    # --no-renames lists both paths of a rename, so a renamed stack file counts for both stacks.
    try:
        result = subprocess.run(
            ["git", "diff", "--name-only", "--no-renames", f"{base}...HEAD"],
            cwd=root, capture_output=True, text=True, check=False,
        )
    except FileNotFoundError as exc:
        raise UsageError("git is not installed") from exc
    if result.returncode != 0:
        raise UsageError(f"cannot diff against {base}: {(result.stderr.strip() or 'git failed').splitlines()[0]}")
    return sorted(set(result.stdout.splitlines()))


def uncommitted_files(root: Path) -> list[str]:
    """Tracked files changed and untracked files not ignored, in the working tree of `root`."""
    try:
        result = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--no-renames"],
                                cwd=root, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise UsageError("git is not installed") from exc
    if result.returncode != 0:
        raise UsageError(f"cannot read the working tree's status: {(result.stderr.strip() or 'git failed').splitlines()[0]}")
    return sorted({line[3:] for line in result.stdout.splitlines() if len(line) > 3})


def affected_stacks(changed: Iterable[str], stacks: Sequence[str]) -> dict[str, list[str]]:
    """Each affected stack with the changed files that affect it, in stack order."""
    why: dict[str, list[str]] = {}
    for path in changed:
        own = STACK_FILE.match(path)
        if own:
            targets = [own["stack"]] if own["stack"] in stacks else []
        elif any(fnmatch.fnmatch(path, pattern) for pattern in SHARED_PATTERNS):
            targets = list(stacks)
        else:
            targets = []
        for stack in targets:
            why.setdefault(stack, []).append(path)
    return {stack: why[stack] for stack in stacks if stack in why}



class PolicyDiffError(Exception):
    """The policy diff could not be made; the message is one line."""


def environments_of(stacks: Iterable[str]) -> list[str]:
    """The environments whose trusted stack is among `stacks`: the side whose policies decide."""
    return [stack.removesuffix("-trusted") for stack in stacks if stack.endswith("-trusted")]


# --- sources ------------------------------------------------------------------------------------


class LiveSource:
    """The repository's stacks, `git diff` and real previews."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pulumi = AutomationPulumi(root)

    def preview(self, stack: str, *, refresh: bool = False, expect_no_changes: bool = False) -> Preview:
        return self.pulumi.preview(stack, refresh=refresh, expect_no_changes=expect_no_changes)

    def stacks(self) -> list[str]:
        return discover_stacks(self.root)

    def changed(self, base: str) -> list[str]:
        return changed_files(base, self.root)

    def uncommitted(self) -> list[str]:
        return uncommitted_files(self.root)

    def policy_diff(self, env: str, base: str, merge_base: bool = True) -> PolicyDiff | None:
        try:
            return policy_diff(env, self.root, base, merge_base=merge_base)
        except (GitError, PlanError, ConfigError, StackFileError) as err:
            raise PolicyDiffError(str(err)) from None


class RecordedSource:
    """A recorded run: `changed-files.txt` (`git diff --name-only`), optional `uncommitted-files.txt`, and per stack `STACK.json`
    (`pulumi preview --json` stdout), optional `STACK.events.jsonl` (its `--event-log`, for policy
    events) and `STACK.stderr.txt` (present when the preview failed), and per environment an optional
    `ENV.policy-diff.json` (`python -m scripts.policy_diff ENV --json`)."""

    def __init__(self, directory: Path) -> None:
        if not directory.is_dir():
            raise UsageError(f"no recorded run in {directory}")
        self.directory = directory

    def _text(self, name: str) -> str | None:
        path = self.directory / name
        return path.read_text() if path.exists() else None

    def stacks(self) -> list[str]:
        names = (p.name.removesuffix(".json") for p in self.directory.glob("*.json") if not p.name.endswith(POLICY_DIFF_SUFFIX))
        return sorted(names, key=stack_order)

    def changed(self, base: str) -> list[str]:
        return sorted(set((self._text("changed-files.txt") or "").split()))

    def uncommitted(self) -> list[str]:
        return sorted(set((self._text("uncommitted-files.txt") or "").split()))

    def policy_diff(self, env: str, base: str, merge_base: bool = True) -> PolicyDiff | None:
        recorded = self._text(f"{env}{POLICY_DIFF_SUFFIX}")
        return PolicyDiff.from_json(json.loads(recorded)) if recorded is not None else None

    def preview(self, stack: str, *, refresh: bool = False, expect_no_changes: bool = False) -> Preview:
        stderr = self._text(f"{stack}.stderr.txt")
        return Preview(parse_digest(self._text(f"{stack}.json") or ""),
                       read_event_log(self._text(f"{stack}.events.jsonl") or ""),
                       one_line(stderr) if stderr is not None else None)

