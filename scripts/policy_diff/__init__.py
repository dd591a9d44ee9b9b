"""Policy diff: what a change does to who receives which secret, and to what attests.

`python -m scripts.policy_diff ENV [--base REF] [--json]` plans the trusted side of ENV at REF and in
the working tree, and compares the decisions of the rendered policies, evaluated with regorus as
Trustee runs them: the release matrix (releases.py), the reference values (reference_values.py) and
the attestation corpus (corpus.py). docs/pipelines.md shows it in the pull request comment.
"""

from __future__ import annotations

from pathlib import Path

from scripts.policy_diff.corpus import attestation_changes
from scripts.policy_diff.planning import EMPTY, plan_at, plan_here, resolve
from scripts.policy_diff.plans import PlanError, TrustedPlan
from scripts.policy_diff.reference_values import reference_value_changes
from scripts.policy_diff.releases import release_changes
from scripts.policy_diff.report import PolicyDiff


def compare(environment: str, base: str, old: TrustedPlan, new: TrustedPlan) -> PolicyDiff:
    gains, losses = release_changes(old, new)
    added, removed = reference_value_changes(old.reference_values, new.reference_values)
    newly_refused, newly_affirmed = attestation_changes(old, new)
    return PolicyDiff(environment, base, gains, losses, added, removed, newly_refused, newly_affirmed)


def policy_diff(env: str, root: Path, base: str | None = None, merge_base: bool = False) -> PolicyDiff:
    """The diff of `env` between `base` (its merge base with HEAD if `merge_base`), planned at that commit
    with its own code, and `root`'s working tree."""
    label, commit = resolve(root, base, merge_base)
    old = plan_at(root, commit, env)
    new = plan_here(env, root / "stacks")
    if old is EMPTY and new is EMPTY:
        raise PlanError(f"{env}: no stack file stacks/Pulumi.{env}-trusted.yaml, neither at {label} nor in the working tree")
    return compare(env, f"{label} ({commit[:12]})" if label != commit else commit[:12], old, new)
