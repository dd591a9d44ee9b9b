"""The policy diff as JSON, as a short text report, and as the opening of the pull request comment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scripts.policy_diff.corpus import describe
from scripts.policy_diff.releases import Release

POLICY_NAMES = {"cpu": "CPU policy", "gpu": "GPU policy"}
ROWS = 50  # per table in the comment: a fleet-wide change would otherwise crowd out the rest


@dataclass(frozen=True)
class PolicyDiff:
    environment: str
    base: str
    gains: list[Release] = field(default_factory=list)
    losses: list[Release] = field(default_factory=list)
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    newly_refused: list[dict[str, Any]] = field(default_factory=list)
    newly_affirmed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.gains or self.losses or self.added or self.removed or self.newly_refused or self.newly_affirmed)

    @property
    def dangers(self) -> list[Release]:
        return [g for g in self.gains if g.dangerous]

    def as_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "base": self.base,
            "releases": {"gains": [g.as_json() for g in self.gains], "losses": [r.as_json() for r in self.losses]},
            "referenceValues": {"added": self.added, "removed": self.removed},
            "attestation": {"newly_refused": self.newly_refused, "newly_affirmed": self.newly_affirmed},
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> PolicyDiff:
        def releases(entries: list[dict[str, Any]]) -> list[Release]:
            return [Release(e.get("cloudStack", ""), e["workload"], e["resource"], e["gpus"]) for e in entries]

        return cls(
            value["environment"], value["base"], releases(value["releases"]["gains"]), releases(value["releases"]["losses"]),
            value["referenceValues"]["added"], value["referenceValues"]["removed"],
            value["attestation"]["newly_refused"], value["attestation"]["newly_affirmed"],
        )


def who(release: Release) -> str:
    if release.dangerous:
        return "a pod VM measuring no declared workload"
    return f"{release.workload} on {release.cloud_stack}" if release.cloud_stack else release.workload


def gpus(n: int) -> str:
    return "no GPU" if n == 0 else "1 GPU" if n == 1 else f"{n} GPUs"


def value(entry: dict[str, Any]) -> str:
    return str(entry["value"])


def attestation_line(entry: dict[str, Any], newly: str) -> str:
    head = f"{entry['case']} ({describe(entry['case'])}) by the {POLICY_NAMES[entry['policy']]}: {', '.join(entry['claims'])} now {newly}"
    if entry["verdict"] == "error":
        return f"{head} (the policy fails: {entry.get('error', '')})"
    if newly == "affirmed":
        return head + ("; the case passes" if entry["verdict"] == "affirmed" else " (still refused on another claim)")
    return head


def text(diff: PolicyDiff) -> str:
    lines = [f"Policy diff of {diff.environment} against {diff.base}"]
    if diff.empty:
        return lines[0] + ": no change in who receives which secret, in reference values or in attestation decisions.\n"
    for title, releases, verb in (("Gains", diff.gains, "now receives"), ("Losses", diff.losses, "no longer receives")):
        if releases:
            lines.append(f"{title} ({len(releases)}):")
            lines += [f"  {'DANGER ' if r.dangerous else ''}{who(r)} {verb} {r.resource} with {gpus(r.gpus)} attested" for r in releases]
    for title, entries, newly in (("Newly refused", diff.newly_refused, "refused"), ("Newly affirmed", diff.newly_affirmed, "affirmed")):
        if entries:
            lines.append(f"{title} ({len(entries)}):")
            lines += [f"  {attestation_line(e, newly)}" for e in entries]
    for title, entries in (("Reference values added", diff.added), ("Reference values removed", diff.removed)):
        if entries:
            lines.append(f"{title} ({len(entries)}):")
            lines += [f"  {e['name']}: {value(e)}" for e in entries]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def markdown(diff: PolicyDiff) -> list[str]:
    """The comment's section for one environment: gains (danger) first, then losses, then attestation; nothing when nothing changed."""
    if diff.empty:
        return []
    lines = [f"### Who gets which secret in `{diff.environment}`", "",
             f"Against {diff.base}: the planned policies decided by regorus, as Trustee runs them "
             f"(`python -m scripts.policy_diff {diff.environment}`).", ""]
    if diff.dangers:
        lines += ["> [!CAUTION]", f"> **A pod VM measuring no declared workload would receive {', '.join(sorted({f'`{d.resource}`' for d in diff.dangers}))}**: "
                  "any initdata the host boots gets it.", ""]
    elif diff.gains:
        lines += ["> [!WARNING]", f"> **{len(diff.gains)} new release{'s' if len(diff.gains) != 1 else ''}** of secrets: check each is meant.", ""]
    stack = any(r.cloud_stack for r in (*diff.gains, *diff.losses))
    for title, releases, sign in (("Gains", diff.gains, "+"), ("Losses (pod VMs that stop receiving a secret: an outage unless meant)", diff.losses, "−")):
        if not releases:
            continue
        head = "| | Cloud stack | Workload | Resource | GPUs attested |" if stack else "| | Workload | Resource | GPUs attested |"
        lines += [f"#### {title}", "", head, "|---|" + "---|" * (head.count("|") - 2)]
        for r in releases[:ROWS]:
            mark = "🚨" if r.dangerous and sign == "+" else sign
            cells = [mark, *([f"`{r.cloud_stack}`" if r.cloud_stack else "–"] if stack else []), _cell(f"`{r.workload}`"), f"`{r.resource}`", str(r.gpus)]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [*more(len(releases), diff.environment), ""]
    if diff.newly_refused or diff.newly_affirmed:
        lines += ["#### Attestation decisions that change", "", "| | Case | Policy | Claims | Now |", "|---|---|---|---|---|"]
        for entries, mark in ((diff.newly_refused, "refused"), (diff.newly_affirmed, "affirmed")):
            for e in entries[:ROWS]:
                now = e["verdict"] if e["verdict"] != "error" else f"error: {e.get('error', '')}"
                lines.append(f"| newly {mark} | `{e['case']}`: {_cell(describe(e['case']))} | {POLICY_NAMES[e['policy']]} | {', '.join(e['claims'])} | {_cell(now)} |")
        lines += [*more(max(len(diff.newly_refused), len(diff.newly_affirmed)), diff.environment), ""]
    if diff.added or diff.removed:
        lines += ["#### Reference values", ""]
        lines += [f"- added `{e['name']}`: `{value(e)}`" for e in diff.added[:ROWS]]
        lines += [f"- removed `{e['name']}`: `{value(e)}`" for e in diff.removed[:ROWS]]
        lines += [*more(max(len(diff.added), len(diff.removed)), diff.environment), ""]
    return lines


def more(count: int, environment: str) -> list[str]:
    """The note under a table cut at ROWS rows."""
    if count <= ROWS:
        return []
    return ["", f"_Only the first {ROWS} of {count} shown: `python -m scripts.policy_diff {environment}` lists all._"]
