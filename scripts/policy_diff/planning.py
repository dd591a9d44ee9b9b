"""Planning the trusted side of an environment at a git ref (with that ref's own code) and in the working tree.

At a ref: the ref's tracked files are extracted (`git archive`) to a temporary directory and its own
`python -m scripts.plan ENV --out DIR` runs there with this interpreter, so a template or code change
shows. The working tree is this checkout: its trusted stack runs in this process.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from scripts.offline import run_stack
from scripts.offline.stackfile import read_stack_file, stack_path
from scripts.policy_diff.plans import PlanError, TrustedPlan

# What a side without the environment (not yet, or no longer, in the repository) decides: nothing.
EMPTY = TrustedPlan("package policy\n\ndefault allow := false\n", "package policy\n", "package policy\n", {}, (), {})


class GitError(Exception):
    """A git command failed; the message is one line."""


def git(root: Path, *args: str) -> str:
    try:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise GitError("git is not installed") from None
    if result.returncode:
        raise GitError(f"git {args[0]}: {(result.stderr.strip() or 'failed').splitlines()[0]}")
    return result.stdout.strip()


def resolve(root: Path, ref: str | None, merge_base: bool = False) -> tuple[str, str]:
    """(label, commit) of `ref` (with `merge_base`, of the merge base of HEAD with it), or of the merge
    base of HEAD with main (origin/main in a CI checkout)."""
    if ref is not None and merge_base:
        return f"merge base with {ref}", git(root, "merge-base", "HEAD", ref)
    if ref is not None:
        try:
            return ref, git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
        except GitError:
            raise GitError(f"--base {ref} names no commit in {root} (a tag deployed/ENV exists once the deploy workflow ran)") from None
    for main in ("main", "origin/main"):
        try:
            return f"merge base with {main}", git(root, "merge-base", "HEAD", main)
        except GitError:
            continue
    raise GitError("no merge base of HEAD with main or origin/main: name one with --base")


def plan_at(root: Path, commit: str, env: str) -> TrustedPlan:
    """The trusted side of `env` as `commit`'s own code plans it; EMPTY where `commit` has no such stack."""
    with tempfile.TemporaryDirectory(prefix="policy-diff-") as scratch:
        source, out = Path(scratch) / "src", Path(scratch) / "plan"
        source.mkdir()
        archive = subprocess.Popen(["git", "archive", "--format=tar", commit], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert archive.stdout is not None
        with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
            tar.extractall(source, filter="data")
        if archive.wait():
            raise GitError(f"git archive {commit}: {archive.stderr.read().decode().strip().splitlines()[0]}")  # type: ignore[union-attr]
        if not stack_path(f"{env}-trusted", source / "stacks").is_file():
            return EMPTY
        result = subprocess.run([sys.executable, "-m", "scripts.plan", env, "--out", str(out)], cwd=source, capture_output=True, text=True, check=False)
        if result.returncode:
            reason = (result.stderr.strip() or result.stdout.strip() or "failed").splitlines()[-1]
            raise PlanError(f"planning {env} at {commit[:12]} failed: {reason}")
        return TrustedPlan.from_dir(out, env)


def plan_here(env: str, stacks_dir: Path) -> TrustedPlan:
    """The trusted side of `env` as this checkout plans it (ConfigError or StackFileError on bad input)."""
    if not stack_path(f"{env}-trusted", stacks_dir).is_file():
        return EMPTY
    stack = f"{env}-trusted"
    stack_file = read_stack_file(stack, stacks_dir)
    return TrustedPlan.from_run(run_stack(stack, stack_file.config, tuple(stack_file.secret_keys), {}))
