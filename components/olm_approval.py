"""Which InstallPlan holds an operator pin: pure functions over OLM API objects (as the API server returns them).

With `installPlanApproval: Manual` OLM creates InstallPlans and waits. One InstallPlan can bundle every
Subscription of a namespace, and once a newer CSV is in the channel OLM offers it in a new InstallPlan,
so a plan is chosen by its `spec.clusterServiceVersionNames` containing the pinned CSV, never by name
(operator-framework/olm-docs content/en/docs/concepts/crds/subscription.md; FACTS 0).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Action = Literal["approve", "approved", "wait", "refuse"]


@dataclass(frozen=True)
class Decision:
    action: Action
    """approve: patch `plan`'s spec.approved; approved: `plan` already is; wait: ask again later; refuse: stop."""
    plan: str | None
    reason: str


def _csvs(plan: Mapping[str, Any]) -> list[str]:
    return list((plan.get("spec") or {}).get("clusterServiceVersionNames") or [])


def _name(plan: Mapping[str, Any]) -> str:
    return str((plan.get("metadata") or {}).get("name", ""))


def _age_key(plan: Mapping[str, Any]) -> tuple[str, str]:
    """Oldest first (RFC 3339 timestamps sort as text), then by name: the same choice on every run."""
    return str((plan.get("metadata") or {}).get("creationTimestamp", "")), _name(plan)


def choose_install_plan(install_plans: Iterable[Mapping[str, Any]], package: str, csv: str) -> Decision:
    """The InstallPlan to approve so that exactly `csv` of `package` gets installed, or why none is.

    A plan qualifies when its CSV list contains `csv` and no other version of `package`. Other
    packages' CSVs in the same plan (bundled Subscriptions, dependencies) are installed with it: OLM
    approves plans whole.
    """
    plans = sorted(install_plans, key=_age_key)
    holding = [p for p in plans if csv in _csvs(p) and not _other_versions(p, package, csv)]
    approved = [p for p in holding if _approved(p)]
    if approved:
        return Decision("approved", _name(approved[0]), f"InstallPlan {_name(approved[0])} for {csv} is approved")
    if holding:
        return Decision("approve", _name(holding[0]), f"InstallPlan {_name(holding[0])} installs {csv}")
    offered = sorted({c for p in plans if not _approved(p) for c in _other_versions(p, package, csv)})
    if offered:
        return Decision(
            "refuse",
            None,
            f"OLM offers {', '.join(offered)}, not the pinned {csv}: pin the version it offers (OLM upgrades one step "
            "of the channel's upgrade graph at a time), or check that the channel still serves the pinned CSV",
        )
    return Decision("wait", None, f"no InstallPlan lists {csv} yet")


def _approved(plan: Mapping[str, Any]) -> bool:
    return (plan.get("spec") or {}).get("approved") is True


def _other_versions(plan: Mapping[str, Any], package: str, csv: str) -> list[str]:
    """CSVs in `plan` of the pinned package at another version than the pin."""
    return [c for c in _csvs(plan) if c != csv and c.startswith(f"{package}.")]


CsvState = Literal["succeeded", "failed", "pending"]


def csv_state(csv: Mapping[str, Any] | None) -> tuple[CsvState, str]:
    """Where an installing ClusterServiceVersion is: its phase (operator-framework/api
    pkg/operators/v1alpha1/clusterserviceversion_types.go, CSVPhaseSucceeded/CSVPhaseFailed)."""
    if csv is None:
        return "pending", "the ClusterServiceVersion does not exist yet"
    status = csv.get("status") or {}
    phase = status.get("phase") or "Pending"
    detail = f"phase {phase}" + (f" ({status['reason']}: {status.get('message', '')})" if status.get("reason") else "")
    if phase == "Succeeded":
        return "succeeded", detail
    if phase == "Failed":
        return "failed", detail
    return "pending", detail


@dataclass(frozen=True)
class Step:
    action: Literal["approve", "wait", "done", "fail"]
    plan: str | None
    reason: str


def approval_step(install_plans: Iterable[Mapping[str, Any]], cluster_service_version: Mapping[str, Any] | None, package: str, csv: str) -> Step:
    """What to do next to hold the pin, from the namespace's InstallPlans and the pinned CSV object (None: absent).

    A pinned CSV that already succeeded is done whatever plans exist: OLM garbage-collects old plans
    and keeps offering newer ones, which stay unapproved.
    """
    state, detail = csv_state(cluster_service_version)
    decision = choose_install_plan(install_plans, package, csv)
    if state == "succeeded":
        return Step("done", decision.plan if decision.action == "approved" else None, f"{csv} {detail}")
    if state == "failed":
        return Step("fail", decision.plan, f"{csv} {detail}")
    if decision.action == "approve":
        return Step("approve", decision.plan, decision.reason)
    if decision.action == "refuse":
        return Step("fail", None, decision.reason)
    return Step("wait", decision.plan, f"{decision.reason}; {csv} {detail}")


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name.rsplit(".v", 1)[-1] if ".v" in name else name))


def installed_csv(cluster_service_versions: Iterable[Mapping[str, Any]], package: str, pinned: str) -> str:
    """The CSV of `package` the namespace runs, as a refresh reads it: the pin when it succeeded there,
    else the package's newest succeeded CSV (OLM or someone moved it), else "" (none installed).

    CSVs labelled `olm.copiedFrom` are copies OLM places for operators of other namespaces.
    """
    own = [
        csv for csv in cluster_service_versions
        if "olm.copiedFrom" not in ((csv.get("metadata") or {}).get("labels") or {})
        and str((csv.get("metadata") or {}).get("name", "")).startswith(f"{package}.")
        and csv_state(csv)[0] == "succeeded"
    ]
    names = sorted((str(csv["metadata"]["name"]) for csv in own), key=_version_key)
    if pinned in names:
        return pinned
    return names[-1] if names else ""
