"""Records tests/fixtures/preview/pr from the current program, and the sample comment in docs/pipelines.md
made from it: `python -m tests.preview_recording`.

A pull request replayed offline. The dev stacks are planned before and after it (the real program
under the offline mocks, `scripts.plan`), and the two plans are diffed into the `pulumi preview --json`
documents the CLI would print (pulumi/pulumi pkg/backend/display/json.go, PreviewDigest); the policy
pack runs on the planned result (`scripts.offline.policy`) for the `--event-log` policy events; the policy diff
(`scripts.policy_diff`) compares the two trusted runs' documents. So resource names, counts, policy
messages and who gains which secret are the program's own, and tests/test_preview_pr.py
fails when this recording is stale.

What the mocks cannot know is written down here: which changed properties force a replacement (the
provider decides that), and the pull request itself. Unchanged resources are recorded as `same` steps
with their URN and type only; provider-computed values are the mocks' placeholders, so nothing that
depends on a replaced resource's outputs shows as changed.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from scripts import preview_pr
from scripts.offline import Registered, StackRun
from scripts.offline.policy import POLICY_PACK, evaluate
from scripts.plan import plan_environment
from scripts.policy_diff import compare
from scripts.policy_diff.plans import TrustedPlan
from scripts.preview_sources import POLICY_DIFF_SUFFIX
from stacks.config import clock
from tests.conftest import AS_OF
from tests.stack_edits import DELETE, stacks_with

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "tests" / "fixtures" / "preview" / "pr"
SAMPLE_PAGE = ROOT / "docs" / "pipelines.md"
ENV = "dev"
PACK = {"name": "confidential-ai-guardrails", "version": "0.1.0"}  # policies/__main__.py, PulumiPolicy.yaml
TIMESTAMP = 1764547200  # 2025-12-01: fixed, so recordings are byte-identical

# The pull request: what it changes in the stack files, and in code.
CHANGED_FILES = ["components/azure/aro.py", "docs/getting-started.md", "stacks/Pulumi.dev-cloud.yaml", "stacks/Pulumi.dev-trusted.yaml"]
EDITS: dict[str, dict[str, Any]] = {
    "dev-trusted": {
        # a new pod VM image's PCR 11 next to the old one (docs/operations.md, rolling out reference values)
        "referenceValues.pcrs.pcr11": ["0" * 64, "5f" * 32],
        # the model key is retired: no workload receives it any more
        "workloads.0.resources": ["ngc-api-key"],
        # ... and, by mistake, the NGC key no longer waits for the GPU's attestation
        "kbsResources": [{"name": "ngc-api-key", "secret": "ngc-api-key", "key": "api-key", "gpuGated": False}],
        "kbsSecrets.model-key": DELETE,
        # SNP firmware below 25 is refused from now on
        "referenceValues.minimumTcb.snp": 25,
        # the models' Route hosts follow the cloud cluster's new domain: their serving certificates name them
        "workloads.0.servingHostnames": ["llama-3-1-8b-llama-3-1-8b.apps.confai-dev2.eastus2.aroapp.io"],
        "workloads.1.servingHostnames": ["mistral-7b-mistral-7b.apps.confai-dev2.eastus2.aroapp.io"],
    },
    "dev-cloud": {
        "cluster.aro.domain": "confai-dev2",
        "osc.proxyTimeout": "8m",
    },
}
# ... and components/azure/aro.py drops `protect=True` from the cluster, which the pack must refuse.
UNPROTECTED = {"dev-cloud": ("aro",)}
# Changes a provider can only make by replacing the resource: an ARO cluster's domain is fixed at
# creation (Microsoft.RedHatOpenShift openShiftClusters: clusterProfile.domain is not updatable).
# So are the inputs of a pulumi-tls certificate request and certificate (RequiresReplace in
# hashicorp/terraform-provider-tls internal/provider/resource_cert_request.go, commit 0ea34fdd, and
# resource_locally_signed_cert.go).
REPLACED_BY = {
    "azure-native:redhatopenshift:OpenShiftCluster": ("clusterProfile.domain", "clusterProfile.resourceGroupId"),
    "tls:index/certRequest:CertRequest": ("dnsNames", "subject", "privateKeyPem"),
    "tls:index/locallySignedCert:LocallySignedCert": ("certRequestPem", "caCertPem", "caPrivateKeyPem", "validityPeriodHours", "allowedUses"),
}


def _path(prefix: str, key: str) -> str:
    """A detailedDiff property path segment: `a.b`, or `a["b.c"]` for keys that are no identifiers."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{prefix}.{key}" if prefix else key
    return f'{prefix}["{key}"]'


def differences(before: Any, after: Any, prefix: str = "") -> dict[str, str]:
    """Leaf property paths that differ, with `add`, `delete` or `update`."""
    if isinstance(before, dict) and isinstance(after, dict):
        found: dict[str, str] = {}
        for key in sorted(set(before) | set(after)):
            path = _path(prefix, key)
            if key not in before:
                found[path] = "add"
            elif key not in after:
                found[path] = "delete"
            else:
                found.update(differences(before[key], after[key], path))
        return found
    if isinstance(before, list) and isinstance(after, list):
        found = {}
        for i in range(max(len(before), len(after))):
            path = f"{prefix}[{i}]"
            if i >= len(before):
                found[path] = "add"
            elif i >= len(after):
                found[path] = "delete"
            else:
                found.update(differences(before[i], after[i], path))
        return found
    return {} if before == after else {prefix: "update"}


def _state(r: Registered) -> dict[str, Any]:
    state = {"urn": r.urn, "custom": r.custom, "type": r.type, "inputs": r.redacted_inputs}
    if r.custom and r.id:
        state["id"] = r.id
    if r.parent and not r.parent.split("::")[2:3] == ["pulumi:pulumi:Stack"]:
        state["parent"] = r.parent
    if r.provider:
        state["provider"] = r.provider
    return state


def _step(op: str, before: Registered | None, after: Registered | None) -> dict[str, Any]:
    r = after or before
    assert r is not None
    step: dict[str, Any] = {"op": op, "urn": r.urn}
    if r.provider:
        step["provider"] = r.provider
    if op == "same":
        return {**step, "oldState": {"urn": r.urn, "custom": r.custom, "type": r.type}, "detailedDiff": None}
    if before is not None:
        step["oldState"] = _state(before)
    if after is not None:
        step["newState"] = _state(after)
    diff: dict[str, Any] = {}
    if before is not None and after is not None:
        forcing = REPLACED_BY.get(r.type, ())
        for path, kind in differences(before.redacted_inputs, after.redacted_inputs).items():
            replaces = any(path == f or path.startswith((f"{f}.", f"{f}[")) for f in forcing)
            diff[path] = {"kind": f"{kind}-replace" if replaces else kind, "inputDiff": True}
        step["diffReasons"] = sorted({re.split(r"[.\[]", path, maxsplit=1)[0] for path in diff})
        if op == "replace":
            step["replaceReasons"] = sorted({re.split(r"[.\[]", p, maxsplit=1)[0] for p, d in diff.items() if d["kind"].endswith("-replace")})
    step["detailedDiff"] = diff
    return step


def digest(base: StackRun, changed: StackRun) -> dict[str, Any]:
    old = {r.urn: r for r in base.resources}
    new = {r.urn: r for r in changed.resources}
    root = f"urn:pulumi:{changed.stack}::confidential-ai::pulumi:pulumi:Stack::confidential-ai-{changed.stack}"
    steps = [{"op": "same", "urn": root, "oldState": {"urn": root, "custom": False, "type": "pulumi:pulumi:Stack"}, "detailedDiff": None}]
    for urn in [*new, *(u for u in old if u not in new)]:
        before, after = old.get(urn), new.get(urn)
        if before is None or after is None:
            op = "create" if before is None else "delete"
        elif before.redacted_inputs == after.redacted_inputs:
            op = "same"
        else:
            forcing = REPLACED_BY.get(after.type, ())
            changed_paths = differences(before.redacted_inputs, after.redacted_inputs)
            op = "replace" if any(p == f or p.startswith((f"{f}.", f"{f}[")) for p in changed_paths for f in forcing) else "update"
        steps.append(_step(op, before, after))
    summary: dict[str, int] = {}
    for step in steps:
        summary[step["op"]] = summary.get(step["op"], 0) + 1
    return {"steps": steps, "diagnostics": [], "duration": 0, "changeSummary": dict(sorted(summary.items()))}


def policy_events(run: StackRun) -> list[dict[str, Any]]:
    sys.path.insert(0, str(POLICY_PACK))
    from rules import POLICIES  # the pack's own module, as `pulumi preview --policy-pack policies` loads it

    return [
        {"sequence": i, "timestamp": TIMESTAMP, "policyEvent": {
            "resourceUrn": v.urn, "message": v.message + "\n", "color": "never", "policyName": v.policy,
            "policyPackName": PACK["name"], "policyPackVersion": PACK["version"], "policyPackVersionTag": PACK["version"],
            "enforcementLevel": v.level}}
        for i, v in enumerate(evaluate(run, POLICIES), 1)
    ]


def record(directory: Path) -> None:
    """Write the recording: changed-files.txt, and per stack `<stack>.json`, `.events.jsonl`, `.stderr.txt`."""
    with tempfile.TemporaryDirectory(prefix="preview-recording-") as scratch:
        with clock.as_of(AS_OF):  # the day the tests judge config at
            base = plan_environment(ENV)
            changed = plan_environment(ENV, stacks_with(Path(scratch) / "stacks", EDITS))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.iterdir():
        stale.unlink()
    (directory / "changed-files.txt").write_text("\n".join(CHANGED_FILES) + "\n")
    # What `python -m scripts.policy_diff dev --json` prints for this change: the trusted runs' documents decide.
    policy_diff = compare(ENV, "merge base with origin/main", TrustedPlan.from_run(base[0]), TrustedPlan.from_run(changed[0]))
    (directory / f"{ENV}{POLICY_DIFF_SUFFIX}").write_text(json.dumps(policy_diff.as_json(), indent=2) + "\n")
    for before, after in zip(base, changed, strict=True):
        for resource in after.resources:
            resource.protect = resource.protect and resource.name not in UNPROTECTED.get(after.stack, ())
        (directory / f"{after.stack}.json").write_text(json.dumps(digest(before, after), indent=4, sort_keys=False) + "\n")
        events = policy_events(after)
        if events:
            (directory / f"{after.stack}.events.jsonl").write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events))
        mandatory = sum(e["policyEvent"]["enforcementLevel"] == "mandatory" for e in events)
        if mandatory:
            noun = "violation" if mandatory == 1 else "violations"
            (directory / f"{after.stack}.stderr.txt").write_text(f"error: preview failed: {mandatory} mandatory policy {noun}\n")


def write_sample(recording: Path = RECORDING, page: Path = SAMPLE_PAGE) -> None:
    """Put the comment `preview_pr --recorded` renders from `recording` into the page's ````markdown block."""
    with tempfile.TemporaryDirectory(prefix="preview-sample-") as scratch:
        out = Path(scratch) / "comment.md"
        with contextlib.redirect_stderr(io.StringIO()):  # the recorded failure is the sample's point, not news
            preview_pr.main(["--recorded", str(recording), "--output", str(out)])
        comment = out.read_text()
    text = page.read_text()
    block = re.search(r"^````markdown\n(.*?)^````$", text, re.S | re.M)
    assert block, f"{page} has no ````markdown block for the sample"
    page.write_text(text[:block.start(1)] + comment + text[block.end(1):])


if __name__ == "__main__":
    record(RECORDING)
    write_sample()
    print(f"recorded {RECORDING.relative_to(ROOT)} and its sample in {SAMPLE_PAGE.relative_to(ROOT)}")
