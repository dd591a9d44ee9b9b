"""Preview the stacks a change affects and render one Markdown comment for the pull request, opened by
the policy diff (scripts.policy_diff) of each environment whose trusted stack the change affects.

    python -m scripts.preview_pr [--base REF] [--output FILE]     # pull request
    python -m scripts.preview_pr --drift [--output FILE]          # nightly drift check, all stacks
    python -m scripts.preview_pr --recorded DIR ...               # render recorded previews

Exit status: 0 rendered; 1 a preview failed (or, with --drift, a stack drifted); 2 bad input.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.cli import ArgumentParser
from scripts.policy_diff.report import PolicyDiff, markdown
from scripts.preview_sources import (
    LiveSource, PolicyDiffError, RecordedSource, Source, UsageError, affected_stacks, environments_of,
)
from scripts.pulumi_cli import REPO_ROOT, PolicyViolation, Preview, PulumiError

MARKER = "<!-- confidential-ai-preview -->"
DRIFT_MARKER = "<!-- confidential-ai-drift -->"
COMMENT_LIMIT = 65_536  # GitHub's maximum issue/pull request comment body, in characters
SIDE_LABELS = {"trusted": "trusted cluster (Trustee)", "cloud": "cloud cluster (ARO)"}


CONFIGMAP = "kubernetes:core/v1:ConfigMap"


@dataclass(frozen=True)
class Critical:
    """A kind of resource whose replacement or deletion (or update, if `on_update`) needs attention."""

    label: str
    type: str
    consequence: str
    names: tuple[str, ...] = ()  # the resource name must contain one of these
    on_update: bool = False


# Ranked: what matters most comes first in the comment.
CRITICAL: tuple[Critical, ...] = (
    Critical("ARO cluster", "azure-native:redhatopenshift:OpenShiftCluster",
             "a replacement deletes the cluster and every workload on it", on_update=True),
    Critical("KBS key", "tls:index/privateKey:PrivateKey",
             "rotates a KBS key: whatever trusts or holds the old key breaks"),
    Critical("inference CA", "tls:index/selfSignedCert:SelfSignedCert",
             "a new inference CA: every model client must trust it before it talks to the models again", names=("inference-tls",)),
    Critical("model certificate", "tls:index/locallySignedCert:LocallySignedCert",
             "a new serving certificate: run the cloud stack and restart the model pods; clients re-read the trusted outputs",
             names=("inference-tls",)),
    Critical("KBS certificate", "tls:index/selfSignedCert:SelfSignedCert",
             "a new KBS CA: initdata, its digest and the PCR8 reference value change"),
    Critical("KBS certificate", "tls:index/locallySignedCert:LocallySignedCert",
             "a new KBS certificate: the cloud side must trust its issuer"),
    Critical("KataConfig", "kubernetes:kataconfiguration.openshift.io/v1:KataConfig",
             "reboots the selected workers (MachineConfig rollout)", on_update=True),
    Critical("KbsConfig", "kubernetes:confidentialcontainers.org/v1alpha1:KbsConfig",
             "redeploys Trustee; a listed Secret that is missing blocks KBS", on_update=True),
    Critical("reference values", CONFIGMAP, "changes which measurements Trustee trusts",
             names=("rvps", "reference-values"), on_update=True),
    Critical("policy", CONFIGMAP, "changes what attests and which secrets KBS releases",
             names=("policy",), on_update=True),
    Critical("virtual network", "azure-native:network:VirtualNetwork", "cuts the cluster and pod VMs off their network"),
    Critical("subnet", "azure-native:network:Subnet", "cuts the nodes or pod VMs on it off the network"),
    Critical("role definition", "azure-native:authorization:RoleDefinition",
             "changes what the cluster's identities may do in Azure", on_update=True),
)

# Step ops (pulumi/pulumi pkg/resource/deploy/step.go). `preview --json` shows the physical
# replacement steps only with --show-replacement-steps, else one logical "replace" (shouldShow in
# pkg/backend/display); refresh and read steps change nothing.
KIND_OF_OP = {"create-replacement": "replace", "delete-replaced": "replace", "discard-replaced": "replace"}
NO_CHANGE = ("same", "read", "refresh")
SYMBOLS = {"create": "+", "update": "~", "replace": "+-", "delete": "-", "import": "="}
SUMMARY_ORDER = ("create", "update", "replace", "delete")
VALUE_WIDTH = 100
HUNK = ("--", "++", "@@")  # unified-diff header lines, left out of multi-line value diffs


# --- what changes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    kind: str  # create, update, replace, delete, read, ...
    urn: str
    type: str
    name: str
    step: Mapping[str, Any]

    @property
    def state(self) -> Mapping[str, Any]:
        return self.step.get("newState") or self.step.get("oldState") or {}


@dataclass(frozen=True)
class Danger:
    change: Change
    critical: Critical | None
    rank: int


@dataclass(frozen=True)
class StackReport:
    stack: str
    preview: Preview
    changes: tuple[Change, ...]
    dangers: tuple[Danger, ...]

    @property
    def counts(self) -> dict[str, int]:
        summary = self.preview.digest.get("changeSummary") or {}
        return {op: int(n) for op, n in summary.items()}

    @property
    def changed(self) -> bool:
        return any(n for op, n in self.counts.items() if op not in NO_CHANGE) or bool(self.changes)


def resource(urn: str | None) -> str:
    """How a table names the resource behind a URN: its name, or "stack" for the stack itself."""
    urn_type, name = urn_parts(urn or "")
    return code(name) if urn and urn_type != "pulumi:pulumi:Stack" else "stack"


def urn_parts(urn: str) -> tuple[str, str]:
    """(type, name) from `urn:pulumi:STACK::PROJECT::PARENT$TYPE::NAME`."""
    parts = urn.split("::", 3)
    if len(parts) < 4:
        return "", urn
    return parts[2].rsplit("$", 1)[-1], parts[3]


def changes_of(digest: Mapping[str, Any]) -> tuple[Change, ...]:
    seen: set[tuple[str, str]] = set()
    changes = []
    for step in digest.get("steps") or []:
        kind = KIND_OF_OP.get(step["op"], step["op"])
        urn_type, name = urn_parts(step["urn"])
        if kind in NO_CHANGE or (step["urn"], kind) in seen:
            continue
        seen.add((step["urn"], kind))
        state = step.get("newState") or step.get("oldState") or {}
        changes.append(Change(kind, step["urn"], state.get("type") or urn_type, name, step))
    return tuple(changes)


def k8s_name(change: Change) -> str:
    metadata = (change.state.get("inputs") or {}).get("metadata") or {}
    return str(metadata.get("name") or "")


def critical_of(change: Change) -> tuple[int, Critical] | None:
    names = f"{change.name} {k8s_name(change)}".lower()
    for rank, critical in enumerate(CRITICAL):
        if critical.type == change.type and (not critical.names or any(n in names for n in critical.names)):
            return rank, critical
    return None


def dangers_of(changes: Iterable[Change]) -> tuple[Danger, ...]:
    dangers = []
    for change in changes:
        found = critical_of(change)
        rank, critical = found if found else (len(CRITICAL), None)
        if change.kind in ("replace", "delete") or (change.kind == "update" and critical and critical.on_update):
            dangers.append(Danger(change, critical, rank))
    severity = {"replace": 0, "delete": 1, "update": 2}
    return tuple(sorted(dangers, key=lambda d: (d.rank, severity[d.change.kind], d.change.urn)))


def report(stack: str, preview: Preview) -> StackReport:
    changes = changes_of(preview.digest)
    return StackReport(stack, preview, changes, dangers_of(changes))


# --- rendering ----------------------------------------------------------------------------------


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def code(text: str) -> str:
    return f"`{text}`" if text else "–"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def reasons(change: Change) -> list[str]:
    """The property paths behind a change: detailed paths where the provider gave them."""
    step = change.step
    detailed = step.get("detailedDiff") or {}
    if change.kind == "replace":
        keys = [k for k, d in detailed.items() if d["kind"].endswith("-replace")] or step.get("replaceReasons")
    else:
        keys = list(detailed) or step.get("diffReasons")
    return sorted(keys or [])


def why(danger: Danger) -> str:
    change = danger.change
    keys = ", ".join(code(k) for k in reasons(change))
    cause = {
        "replace": f"{keys} forces replacement" if keys else "replaced",
        "delete": "no longer in the program",
        "update": f"{keys} changes" if keys else "updated",
    }[change.kind]
    return f"{cause}; {danger.critical.consequence}" if danger.critical else cause


def danger_table(dangers: Sequence[Danger]) -> list[str]:
    rows = ["| # | Change | Resource | What it is | Why it matters |", "|--:|---|---|---|---|"]
    for i, d in enumerate(dangers, 1):
        what = d.critical.label if d.critical else code(d.change.type)
        rows.append(f"| {i} | **{d.change.kind}** | {code(d.change.name)} | {what} | {cell(why(d))} |")
    return rows


def violation_table(violations: Sequence[PolicyViolation]) -> list[str]:
    order = {"mandatory": 0, "remediate": 1, "advisory": 2}
    rows = ["| Enforcement | Policy | Resource | Message |", "|---|---|---|---|"]
    for v in sorted(violations, key=lambda v: (order.get(v.enforcement, 3), v.policy, v.urn or "")):
        rows.append(f"| **{v.enforcement}** | {code(v.policy)} ({cell(v.pack)}) | {resource(v.urn)} | {cell(v.message)} |")
    return rows


def diagnostics(digest: Mapping[str, Any]) -> list[str]:
    lines = []
    for diag in digest.get("diagnostics") or []:
        severity = diag.get("severity", "")
        if severity not in ("warning", "error"):
            continue
        message = diag.get("message", "").strip().removeprefix(f"{severity}: ")
        lines.append(f"- **{severity}** {resource(diag.get('urn'))}: {cell(message)}")
    return lines


def count_line(counts: Mapping[str, int]) -> str:
    ops = [op for op in SUMMARY_ORDER if counts.get(op)] + sorted(set(counts) - {*SUMMARY_ORDER, "same"})
    parts = [f"{counts[op]} to {op}" for op in ops if counts[op]]
    return ", ".join(parts + [f"{counts.get('same', 0)} unchanged"])


def stack_heading(stack: str) -> str:
    side = stack.rpartition("-")[2]
    label = SIDE_LABELS.get(side)
    return f"### `{stack}`" + (f" · {label}" if label else "")


def stack_section(r: StackReport, drift: bool) -> list[str]:
    lines = [stack_heading(r.stack), ""]
    if r.preview.error and not (drift and r.changed):  # --expect-no-changes fails on drift: no news
        lines += ["> [!WARNING]", f"> The preview failed: {cell(error_text(r.preview.error))}", ""]
    if r.dangers:
        first = r.dangers[0]
        label = first.critical.label if first.critical else first.change.type
        lines += ["> [!CAUTION]",
                  f"> **{plural(len(r.dangers), 'dangerous change')}**, first: {first.change.kind} of the "
                  f"{label} {code(first.change.name)}.", ""]
    lines += [f"**Plan:** {count_line(r.counts)}.", ""]
    if r.dangers:
        lines += ["#### Dangerous changes", "", *danger_table(r.dangers), ""]
    if r.preview.violations:
        lines += ["#### Policy findings", "", *violation_table(r.preview.violations), ""]
    diags = diagnostics(r.preview.digest)
    if diags:
        lines += ["#### Diagnostics", "", *diags, ""]
    return lines


def value_at(props: Any, path: str) -> Any:
    """The value at a detailedDiff property path (`a.b[0]["c.d"]`) in `props`, or None."""
    for key, index, quoted in re.findall(r'\.?([^.\[\]"]+)|\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]', path):
        if index:
            props = props[int(index)] if isinstance(props, list) and int(index) < len(props) else None
        else:
            props = props.get(quoted or key) if isinstance(props, dict) else None
    return props


def show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def leaves(props: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(props, dict) and props:
        for key in sorted(props):
            if not key.startswith("__"):
                yield from leaves(props[key], f"{prefix}.{key}" if prefix else key)
    elif isinstance(props, list) and props:
        for i, item in enumerate(props):
            yield from leaves(item, f"{prefix}[{i}]")
    else:
        yield prefix, props


def value_change(symbol: str, path: str, before: Any, after: Any) -> list[str]:
    if isinstance(before, str) and isinstance(after, str) and "\n" in before + after:
        body = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=1)
        return [f"{symbol}     {path}:"] + [f"{line[0]}         {line[1:]}" for line in body if line[:2] not in HUNK]
    return [f"{symbol}     {path}: {show(before)} => {show(after)}"]


def property_lines(change: Change) -> list[str]:
    step = change.step
    if change.kind == "create":
        return [f"+     {path}: {show(v)}" for path, v in leaves((step.get("newState") or {}).get("inputs") or {})]
    if change.kind not in ("update", "replace"):
        return []
    old, new = step.get("oldState") or {}, step.get("newState") or {}
    lines = []
    for path, diff in sorted((step.get("detailedDiff") or {}).items()):
        kind, _, replace = diff["kind"].partition("-")
        before = value_at(old.get("inputs" if diff.get("inputDiff") else "outputs") or old.get("inputs"), path)
        after = value_at(new.get("inputs"), path)
        if kind == "add":
            change_lines = [f"+     {path}: {show(after)}"]
        elif kind == "delete":
            change_lines = [f"-     {path}: {show(before)}"]
        else:
            change_lines = value_change("~", path, before, after)
        if replace:
            change_lines[0] += " (forces replacement)"
        lines += change_lines
    return lines or [f"~     {key}" for key in reasons(change)]


def diff_lines(changes: Iterable[Change]) -> list[str]:
    lines = []
    for change in changes:
        lines.append(f"{SYMBOLS.get(change.kind, '*')} {change.type} {change.name} ({change.kind})")
        lines += property_lines(change)
    return lines


def fence(lines: Sequence[str]) -> str:
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def details(stack: str, lines: Sequence[str], total: int) -> str:
    """A collapsible diff section showing `lines`, the first of `total` lines."""
    mark = fence(lines)
    cut = total - len(lines)
    size = plural(total, "line") if not cut else f"first {len(lines)} of {total} lines"
    note = (f"\n_{plural(cut, 'more line')} cut to stay under GitHub's {COMMENT_LIMIT:,}-character comment "
            f"limit: run `pulumi preview --diff --stack {stack}` for all of it._\n") if cut else ""
    return "\n".join([f"<details><summary>Full diff of <code>{stack}</code> ({size})</summary>", "",
                      f"{mark}diff", *lines, mark, note, "</details>"])


def omitted(stack: str) -> str:
    return f"_Full diff of `{stack}` left out (comment size limit): run `pulumi preview --diff --stack {stack}`._"


def fit(stack: str, lines: Sequence[str], room: int) -> str:
    """The stack's diff section, cut at a line boundary to at most `room` characters."""
    lo, hi = 0, len(lines)  # the most lines whose section fits: the length grows with the count
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(details(stack, lines[:mid], len(lines))) <= room:
            lo = mid
        else:
            hi = mid - 1
    if lo:
        return details(stack, lines[:lo], len(lines))
    return omitted(stack) if len(omitted(stack)) <= room else ""


def diff_sections(reports: Sequence[StackReport], room: int) -> list[str]:
    """Each stack's full diff, cut (never the head of the comment) to fit in `room` characters."""
    notes = [len(omitted(r.stack)) + 2 for r in reports]
    sections = []
    for i, r in enumerate(reports):
        lines = diff_lines(r.changes)
        if not lines:
            continue
        block = fit(r.stack, lines, room - sum(notes[i + 1:]) - 2)
        if block:
            sections.append(block)
            room -= len(block) + 2
    return sections


def status(r: StackReport, drift: bool) -> str:
    if drift and r.changed:
        return "⚠️ drift"
    return "❌ failed" if r.preview.error else "✅ ok"


def is_advisory(v: PolicyViolation) -> bool:
    """Advisories are reported, never counted as violations: they do not stop a preview."""
    return v.enforcement in ("advisory", "disabled")


def summary_table(reports: Sequence[StackReport], drift: bool = False) -> list[str]:
    rows = ["| Stack | Create | Update | Replace | Delete | Dangerous | Policy violations | Advisories | Preview |",
            "|---|--:|--:|--:|--:|--:|--:|--:|---|"]
    for r in reports:
        c = r.counts
        dangerous = f"🚨 {len(r.dangers)}" if r.dangers else "0"
        advisories = sum(map(is_advisory, r.preview.violations))
        rows.append(f"| `{r.stack}` | {c.get('create', 0)} | {c.get('update', 0)} | {c.get('replace', 0)} | "
                    f"{c.get('delete', 0)} | {dangerous} | {len(r.preview.violations) - advisories} | {advisories} | {status(r, drift)} |")
    return rows


def file_list(paths: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(code(p) for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def policy_sections(policies: Mapping[str, PolicyDiff | PolicyDiffError]) -> list[str]:
    """Per environment, who gains and who loses which secret (scripts.policy_diff); nothing when nothing changed."""
    lines = []
    for env, diff in policies.items():
        if isinstance(diff, PolicyDiffError):
            lines += ["> [!WARNING]", f"> The policy diff of `{env}` failed: {cell(str(diff))}", ""]
        else:
            lines += markdown(diff)
    return lines


def render_pr(base: str, changed: Sequence[str], why_affected: Mapping[str, list[str]],
              reports: Sequence[StackReport], policies: Mapping[str, PolicyDiff | PolicyDiffError] | None = None,
              uncommitted: Sequence[str] = ()) -> str:
    head = [MARKER, "## Pulumi preview", "", *uncommitted_note(base, uncommitted), *policy_sections(policies or {})]
    if not reports:
        head.append(f"No stack is affected: the {plural(len(changed), 'changed file')} against `{base}` "
                    "touch neither a stack's config nor the code and templates the stacks share.")
        return "\n".join(head) + "\n"
    head += [f"**{plural(len(reports), 'stack')}** affected by the changes against `{base}`:", ""]
    head += [f"- `{stack}`: {file_list(paths)}" for stack, paths in why_affected.items()]
    head += ["", *summary_table(reports), ""]
    return assemble(head, reports)


def uncommitted_note(base: str, uncommitted: Sequence[str]) -> list[str]:
    """What the comparison with `base` leaves out: it lists the files committed since, not the working tree's."""
    if not uncommitted:
        return []
    return ["> [!NOTE]", f"> {uncommitted_message(base, uncommitted)}", ""]


def uncommitted_message(base: str, uncommitted: Sequence[str]) -> str:
    shown = ", ".join(f"`{p}`" for p in uncommitted[:5]) + (f" and {len(uncommitted) - 5} more" if len(uncommitted) > 5 else "")
    return (f"The working tree has {plural(len(uncommitted), 'uncommitted change')} ({shown}) that the comparison with "
            f"`{base}` does not cover: the stacks they affect are not listed; commit them to include them.")


def render_drift(reports: Sequence[StackReport], policies: Mapping[str, PolicyDiff | PolicyDiffError] | None = None) -> str:
    drifted = [r.stack for r in reports if r.changed or r.preview.error]
    verdict = (f"**Drift in {', '.join(f'`{s}`' for s in drifted)}**: the clusters no longer match the stacks."
               if drifted else "No drift: every stack matches its resources.")
    head = [DRIFT_MARKER, "## Pulumi drift check", "",
            f"`pulumi preview --refresh --expect-no-changes` on {plural(len(reports), 'stack')}. {verdict}", "",
            *summary_table(reports, drift=True), "", *policy_sections(policies or {})]
    return assemble(head, reports, drift=True)


def assemble(head: list[str], reports: Sequence[StackReport], drift: bool = False) -> str:
    for r in reports:
        head += stack_section(r, drift)
    text = "\n".join(head).rstrip() + "\n"
    sections = diff_sections(reports, COMMENT_LIMIT - len(text) - 2)
    return text + "".join(f"\n{s}\n" for s in sections)


# --- running ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m scripts.preview_pr", description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="origin/main", help="git ref the pull request merges into")
    parser.add_argument("--drift", action="store_true", help="check every stack for drift instead")
    parser.add_argument("--output", type=Path, help="write the comment here instead of stdout")
    parser.add_argument("--recorded", type=Path, help="render previews recorded in this directory")
    parser.add_argument("--side", choices=("trusted", "cloud"), help="only the trusted or only the cloud stacks (each runs with its own credentials)")
    return parser.parse_args(argv)


def on_side(stack: str, side: str | None) -> bool:
    """Whether `stack` (`ENV-trusted`, `ENV-cloud`, `ENV-cloud-<name>`) is on `side` (None: either)."""
    return side is None or (stack.endswith("-trusted") == (side == "trusted"))


def run(args: argparse.Namespace, source: Source) -> tuple[str, list[str]]:
    """The comment, and the failures it reports (a failed preview, or drift), one line each."""
    stacks = [s for s in source.stacks() if on_side(s, args.side)]
    if args.drift:
        reports = [report(s, source.preview(s, refresh=True, expect_no_changes=True)) for s in stacks]
        failures = [f"{r.stack} drifted from its resources" if r.changed else f"{r.stack}: {error_text(r.preview.error)}"
                     for r in reports if r.changed or r.preview.error]
        # What main would change once deployed: informative, not drift (prod may await its approval).
        policies = policy_diffs(source, environments_of(stacks), lambda env: f"deployed/{env}", merge_base=False)
        return render_drift(reports, policies), failures
    changed = source.changed(args.base)
    uncommitted = source.uncommitted()
    why_affected = affected_stacks(changed, stacks)
    reports = [report(s, source.preview(s)) for s in why_affected]
    failures = [f"the preview of {r.stack} failed: {error_text(r.preview.error)}" for r in reports if r.preview.error]
    policies = policy_diffs(source, environments_of(why_affected), lambda env: args.base, merge_base=True)
    failures += [f"the policy diff of {env} failed: {diff}" for env, diff in policies.items() if isinstance(diff, PolicyDiffError)]
    if uncommitted:
        print(f"note: {uncommitted_message(args.base, uncommitted).replace('`', '')}", file=sys.stderr)
    return render_pr(args.base, changed, why_affected, reports, policies, uncommitted), failures


def policy_diffs(source: Source, envs: Sequence[str], base: Any, merge_base: bool) -> dict[str, PolicyDiff | PolicyDiffError]:
    """Each environment's policy diff against `base(env)`, or why it failed; environments without one left out."""
    found: dict[str, PolicyDiff | PolicyDiffError] = {}
    for env in envs:
        try:
            diff = source.policy_diff(env, base(env), merge_base=merge_base)
        except PolicyDiffError as err:
            found[env] = err
            continue
        if diff is not None:
            found[env] = diff
    return found


def error_text(error: str | None) -> str:
    """The CLI's error line without its `error: ` and `preview failed: ` lead-ins, which the comment says itself."""
    return (error or "").removeprefix("error: ").removeprefix("preview failed: ")


def main(argv: Sequence[str] | None = None, root: Path = REPO_ROOT) -> int:
    args = parse_args(argv)
    try:
        if args.output and not args.output.parent.is_dir():  # checked before the previews, which take minutes
            raise UsageError(f"--output {args.output}: no directory {args.output.parent}")
        source = RecordedSource(args.recorded) if args.recorded else LiveSource(root)
        comment, failures = run(args, source)
        if args.output:
            write_output(args.output, comment)
        else:
            sys.stdout.write(comment)
        # Exit 1 says the comment reports a failure; stderr says which, since the comment may be in a file.
        for failure in failures:
            print(f"error: {failure} (details in the comment)", file=sys.stderr)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PulumiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 1 if failures else 0


def write_output(path: Path, comment: str) -> None:
    try:
        path.write_text(comment)
    except OSError as err:
        raise UsageError(f"--output {path}: {err.strerror or err}") from None


if __name__ == "__main__":
    sys.exit(main())
