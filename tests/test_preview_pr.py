"""`python -m scripts.preview_pr`: affected stacks, the dangerous table, policy violations, the size limit.

Previews are recorded `pulumi preview --json` documents (pulumi/pulumi pkg/backend/display/json.go,
PreviewDigest) with their `--event-log` policy events, under tests/fixtures/preview/.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from scripts import preview_pr as pp
from scripts import preview_sources as ps
from scripts.policy_diff.releases import Release
from scripts.policy_diff.report import PolicyDiff
from scripts.pulumi_cli import AutomationPulumi, Preview, read_event_log
from tests import fake_pulumi

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "preview"
PR = FIXTURES / "pr"
DRIFT = FIXTURES / "drift"
STACKS = ["dev-trusted", "dev-cloud", "prod-trusted", "prod-cloud"]


def comment_for(directory: Path, *extra: str) -> tuple[int, str]:
    out = directory.parent / f"{directory.name}.md"
    args = ["--recorded", str(directory), "--output", str(out), *extra]
    status = pp.main(args)
    text = out.read_text()
    out.unlink()
    return status, text


def section(comment: str, stack: str) -> str:
    """The comment's section about one stack (up to the next stack heading or diff)."""
    start = comment.index(f"### `{stack}`")
    ends = [i for i in (comment.find("\n### ", start + 1), comment.find("\n<details>", start)) if i > 0]
    return comment[start:min(ends, default=len(comment))]


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first table at or after `heading`, as lists of cells."""
    lines = text[text.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


# --- the recorded outputs have the real shape --------------------------------------------------

DIGEST_KEYS = {"config", "steps", "diagnostics", "duration", "changeSummary", "maybeCorrupt"}
STEP_KEYS = {"op", "urn", "provider", "oldState", "newState", "diffReasons", "replaceReasons", "detailedDiff"}
DIFF_KINDS = {"add", "add-replace", "delete", "delete-replace", "update", "update-replace"}


@pytest.mark.parametrize("path", sorted(p for p in FIXTURES.glob("*/*.json") if not p.name.endswith(ps.POLICY_DIFF_SUFFIX)), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixtures_have_the_preview_json_shape(path: Path) -> None:
    digest = json.loads(path.read_text())
    assert set(digest) <= DIGEST_KEYS and isinstance(digest["duration"], int)
    steps = digest["steps"]
    for step in steps:
        assert set(step) <= STEP_KEYS and "detailedDiff" in step  # detailedDiff has no omitempty
        assert all(d["kind"] in DIFF_KINDS and isinstance(d["inputDiff"], bool)
                   for d in (step["detailedDiff"] or {}).values())
        for state in (step.get("oldState"), step.get("newState")):
            assert state is None or (state["urn"] == step["urn"] and state["type"] == pp.urn_parts(step["urn"])[0])
    assert all(d["severity"] in {"info", "info#err", "warning", "error"} for d in digest.get("diagnostics", []))
    logical = [pp.KIND_OF_OP.get(s["op"], s["op"]) for s in steps if s["op"] != "same"]
    assert {op: logical.count(op) for op in set(logical)} == {
        op: n for op, n in digest["changeSummary"].items() if op != "same"}


def test_policy_events_are_read_with_the_sdks_event_parser() -> None:
    violations = read_event_log((PR / "dev-cloud.events.jsonl").read_text())
    events = [json.loads(line)["policyEvent"] for line in (PR / "dev-cloud.events.jsonl").read_text().splitlines()]
    assert [(v.enforcement, v.policy, v.urn, v.message) for v in violations] == [
        (e["enforcementLevel"], e["policyName"], e["resourceUrn"], e["message"].strip()) for e in events]
    assert (violations[0].enforcement, violations[0].policy, pp.urn_parts(violations[0].urn or "")[1]) == (
        "mandatory", "critical-resources-protected", "aro")


def test_the_automation_adapter_returns_the_json_the_event_log_and_the_error(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    log = fake_pulumi.install(monkeypatch, tmp_path, PR)
    preview = AutomationPulumi(ROOT).preview("dev-cloud")
    assert preview.digest == json.loads((PR / "dev-cloud.json").read_text())
    assert preview.violations == read_event_log((PR / "dev-cloud.events.jsonl").read_text())
    assert preview.error == "error: preview failed: 1 mandatory policy violation"
    args = fake_pulumi.calls(log)[-1]
    assert args[0] == "preview" and "--json" in args and args[args.index("--stack") + 1] == "dev-cloud"


def test_the_adapter_runs_the_policy_pack_and_the_drift_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    log = fake_pulumi.install(monkeypatch, tmp_path, DRIFT)
    project = tmp_path / "project"
    (project / "policies").mkdir(parents=True)
    (project / "policies" / "PulumiPolicy.yaml").write_text("runtime: python\n")
    preview = AutomationPulumi(project).preview("prod-trusted", refresh=True, expect_no_changes=True)
    assert preview.error is None and preview.digest["changeSummary"] == {"same": 41}
    args = fake_pulumi.calls(log)[-1]
    assert {"--refresh", "--expect-no-changes"} <= set(args)
    assert args[args.index("--policy-pack") + 1] == str(project / "policies")


def test_the_adapter_reports_a_stack_that_does_not_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_pulumi.install(monkeypatch, tmp_path, PR)
    preview = AutomationPulumi(ROOT).preview("prod-cloud")
    assert preview == Preview({}, (), "stack prod-cloud does not exist yet: run `pulumi stack init prod-cloud`")


# --- the comment -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pr_comment() -> str:
    status, comment = comment_for(PR)
    assert status == 1  # dev-cloud's preview failed on a mandatory policy
    return comment


def test_comment_starts_with_the_marker_the_workflow_edits(pr_comment: str) -> None:
    assert pr_comment.startswith(pp.MARKER + "\n")


def test_cluster_replacement_heads_the_cloud_stacks_dangerous_table(pr_comment: str) -> None:
    rows = table_rows(section(pr_comment, "dev-cloud"), "#### Dangerous changes")
    assert [row[1:4] for row in rows] == [["**replace**", "`aro`", "ARO cluster"]]
    assert "`clusterProfile.domain`, `clusterProfile.resourceGroupId` forces replacement" in rows[0][4]
    assert "> **1 dangerous change**, first: replace of the ARO cluster `aro`." in pr_comment


def test_trusted_side_flags_kbs_config_reference_values_policy_and_a_deleted_secret(pr_comment: str) -> None:
    rows = table_rows(section(pr_comment, "dev-trusted"), "#### Dangerous changes")
    assert [(row[1], row[2], row[3]) for row in rows] == [
        # the models' new host names: new serving certificates (pulumi-tls replaces them), the keys stay
        ("**replace**", "`inference-tls-llama-3-1-8b-cert`", "model certificate"),
        ("**replace**", "`inference-tls-mistral-7b-cert`", "model certificate"),
        ("**update**", "`kbs-kbsconfig`", "KbsConfig"),
        ("**update**", "`kbs-rvps-reference-values`", "reference values"),
        ("**update**", "`kbs-resource-policy`", "policy"),
        ("**replace**", "`inference-tls-llama-3-1-8b-request`", "`tls:index/certRequest:CertRequest`"),
        ("**replace**", "`inference-tls-mistral-7b-request`", "`tls:index/certRequest:CertRequest`"),
        ("**delete**", "`kbs-resources-model-decryption`", "`kubernetes:core/v1:Secret`"),
    ]
    # the retired resource leaves the resource policy: the diff shows the removed lines
    assert re.search(r'^-\s+"name": "model-key",$', pr_comment, re.M)


def test_policy_violations_list_mandatory_first(pr_comment: str) -> None:
    rows = table_rows(section(pr_comment, "dev-cloud"), "#### Policy findings")
    assert rows[0][:3] == ["**mandatory**", "`critical-resources-protected` (confidential-ai-guardrails)", "`aro`"]
    assert [r[0] for r in rows[1:]] == ["**advisory**"] * (len(read_event_log((PR / "dev-cloud.events.jsonl").read_text())) - 1)
    assert "> The preview failed: 1 mandatory policy violation" in section(pr_comment, "dev-cloud")


def test_summary_counts_come_from_the_change_summary(pr_comment: str) -> None:
    rows = table_rows(pr_comment, "| Stack |")
    for row, stack, dangerous, failed in zip(rows, ("dev-trusted", "dev-cloud"), ("🚨 8", "🚨 1"), (False, True), strict=True):
        counts = json.loads((PR / f"{stack}.json").read_text())["changeSummary"]
        log = PR / f"{stack}.events.jsonl"
        found = read_event_log(log.read_text()) if log.exists() else ()
        advisories = sum(v.enforcement == "advisory" for v in found)
        # advisories are listed, not counted as violations
        assert row == [f"`{stack}`", *(str(counts.get(op, 0)) for op in ("create", "update", "replace", "delete")), dangerous,
                       str(len(found) - advisories), str(advisories), "❌ failed" if failed else "✅ ok"]
    cloud = json.loads((PR / "dev-cloud.json").read_text())["changeSummary"]
    assert f"**Plan:** {cloud['update']} to update, 1 to replace, {cloud['same']} unchanged." in pr_comment


def test_secrets_stay_blinded(pr_comment: str) -> None:
    digest = json.loads((PR / "dev-cloud.json").read_text())
    aro = next(s for s in digest["steps"] if s["op"] == "replace")
    assert aro["newState"]["inputs"]["clusterProfile"]["pullSecret"] == "[secret]"
    # config values (all "[secret]" or public) are not rendered at all
    assert "pullSecret" not in pr_comment and "PLACEHOLDER" not in pr_comment


def test_warnings_and_errors_are_shown_but_not_info(tmp_path: Path) -> None:
    for name in ("dev-trusted.json", "changed-files.txt"):
        (tmp_path / name).write_text((PR / name).read_text())
    digest = json.loads((PR / "dev-cloud.json").read_text())
    stack_urn = digest["steps"][0]["urn"]
    aro_urn = next(s["urn"] for s in digest["steps"] if s["op"] == "replace")
    digest["diagnostics"] = [
        {"urn": aro_urn, "message": "warning: the new cluster starts with 3 workers\n", "severity": "warning"},
        {"message": "Reading outputs of organization/confidential-ai/dev-trusted\n", "severity": "info"},
        {"urn": stack_urn, "message": "error: preview failed\n", "severity": "error"},
    ]
    (tmp_path / "dev-cloud.json").write_text(json.dumps(digest))
    cloud = section(comment_for(tmp_path)[1], "dev-cloud")
    assert "- **warning** `aro`: the new cluster starts with 3 workers" in cloud
    assert "- **error** stack: preview failed" in cloud
    assert "Reading outputs of" not in cloud


def test_full_diffs_are_collapsible_and_show_old_and_new_values(pr_comment: str) -> None:
    assert pr_comment.count("<details>") == pr_comment.count("</details>") == 2
    assert '~     clusterProfile.domain: "confai-dev" => "confai-dev2" (forces replacement)' in pr_comment
    assert '~     data.PROXY_TIMEOUT: "10m" => "8m"' in pr_comment
    assert '-     spec.kbsSecretResources[3]: "inference-tls-keys"' in pr_comment


def test_rendering_is_deterministic() -> None:
    assert comment_for(PR)[1] == comment_for(PR)[1]


def huge_digest() -> dict[str, Any]:
    digest = json.loads((PR / "dev-cloud.json").read_text())
    template = next(s for s in digest["steps"] if s["op"] == "update")
    for i in range(3000):
        step = copy.deepcopy(template)
        step.update(op="create", detailedDiff={})
        del step["oldState"], step["diffReasons"]
        step["urn"] = f"{step['urn']}-{i:04}"
        step["newState"]["urn"] = step["urn"]
        step["newState"]["inputs"]["metadata"]["labels"] = {f"k{j}": "v" * 40 for j in range(6)}
        digest["steps"].append(step)
    digest["changeSummary"]["create"] = 3000
    return digest


def test_a_huge_preview_is_cut_to_githubs_limit_but_keeps_dangers_and_violations(tmp_path: Path) -> None:
    for recorded in PR.iterdir():
        if recorded.name != "dev-cloud.json":
            (tmp_path / recorded.name).write_text(recorded.read_text())
    (tmp_path / "dev-cloud.json").write_text(json.dumps(huge_digest()))
    status, comment = comment_for(tmp_path)
    assert len(comment) <= pp.COMMENT_LIMIT
    # the tables are whole
    assert len(table_rows(section(comment, "dev-cloud"), "#### Dangerous changes")) == 1
    assert len(table_rows(section(comment, "dev-cloud"), "#### Policy findings")) == len(read_event_log((PR / "dev-cloud.events.jsonl").read_text()))
    # dev-trusted's diff fits whole; dev-cloud's is cut, with a note saying how to see it all
    assert re.search(r"<summary>Full diff of <code>dev-trusted</code> \(\d+ lines\)</summary>", comment)
    cut = re.search(r"<summary>Full diff of <code>dev-cloud</code> \(first (\d+) of (\d+) lines\)</summary>", comment)
    assert cut and int(cut[1]) < int(cut[2])
    assert "cut to stay under GitHub's 65,536-character comment limit: run `pulumi preview --diff --stack dev-cloud`" in comment
    assert comment.count("<details>") == comment.count("</details>")


def test_a_diff_with_no_room_left_is_named_not_dropped() -> None:
    preview = Preview(huge_digest())
    reports = [pp.report(stack, preview) for stack in ("dev-cloud", "prod-cloud")]
    comment = pp.render_pr("origin/main", ["components/aro.py"], {r.stack: ["components/aro.py"] for r in reports}, reports)
    assert len(comment) <= pp.COMMENT_LIMIT
    assert pp.omitted("prod-cloud") in comment


def test_no_affected_stack_says_so() -> None:
    comment = pp.render_pr("origin/main", ["README.md", "tests/test_up.py"], {}, [])
    assert comment == (f"{pp.MARKER}\n## Pulumi preview\n\nNo stack is affected: the 2 changed files against "
                       "`origin/main` touch neither a stack's config nor the code and templates the stacks share.\n")


# --- ranking -----------------------------------------------------------------------------------


def change(kind: str, type_: str, name: str, k8s_name: str = "") -> pp.Change:
    urn = f"urn:pulumi:dev-cloud::confidential-ai::confidential-ai:x:Y${type_}::{name}"
    state = {"urn": urn, "type": type_, "inputs": {"metadata": {"name": k8s_name}} if k8s_name else {}}
    return pp.Change(kind, urn, type_, name, {"op": kind, "urn": urn, "newState": state, "detailedDiff": None})


def test_ranking_follows_the_critical_table_then_severity() -> None:
    changes = [
        change("delete", "azure-native:network:Subnet", "podvm"),
        change("update", "kubernetes:core/v1:ConfigMap", "cm-1", k8s_name="attestation-policy"),
        change("replace", "kubernetes:core/v1:Namespace", "ns"),
        change("delete", "azure-native:redhatopenshift:OpenShiftCluster", "aro"),
        change("replace", "tls:index/privateKey:PrivateKey", "kbs-admin-key"),
        change("update", "kubernetes:kataconfiguration.openshift.io/v1:KataConfig", "kata"),
        change("update", "kubernetes:core/v1:ConfigMap", "rvps"),
        change("replace", "azure-native:redhatopenshift:OpenShiftCluster", "aro"),
        change("update", "azure-native:authorization:RoleDefinition", "caa-role"),
    ]
    ranked = [(d.change.kind, d.change.name) for d in pp.dangers_of(changes)]
    assert ranked == [
        ("replace", "aro"), ("delete", "aro"), ("replace", "kbs-admin-key"), ("update", "kata"),
        ("update", "rvps"), ("update", "cm-1"), ("delete", "podvm"), ("update", "caa-role"), ("replace", "ns"),
    ]


def test_routine_updates_are_not_dangerous() -> None:
    routine = [
        change("update", "kubernetes:core/v1:ConfigMap", "peer-pods-cm"),
        change("update", "azure-native:network:Subnet", "podvm"),
        change("create", "azure-native:redhatopenshift:OpenShiftCluster", "aro"),
        change("update", "kubernetes:apps/v1:Deployment", "nim"),
    ]
    assert pp.dangers_of(routine) == ()


def test_replacement_steps_fold_into_one_replace() -> None:
    urn = "urn:pulumi:dev-cloud::confidential-ai::azure-native:redhatopenshift:OpenShiftCluster::aro"
    steps = [{"op": op, "urn": urn, "detailedDiff": None} for op in ("create-replacement", "replace", "delete-replaced")]
    assert [(c.kind, c.name) for c in pp.changes_of({"steps": steps})] == [("replace", "aro")]


def test_property_paths_resolve_quoted_keys_and_indexes() -> None:
    props = {"data": {"resource-policy.rego": "x", "a.b": [1, {"c": 2}]}}
    assert pp.value_at(props, 'data["resource-policy.rego"]') == "x"
    assert pp.value_at(props, 'data["a.b"][1].c') == 2
    assert pp.value_at(props, "data.missing[3]") is None


# --- drift -------------------------------------------------------------------------------------


def test_drift_fails_and_names_the_drifted_stack() -> None:
    status, comment = comment_for(DRIFT, "--drift")
    assert status == 1
    assert comment.startswith(pp.DRIFT_MARKER + "\n")
    assert "**Drift in `prod-cloud`**" in comment
    assert table_rows(comment, "| Stack |")[1][-1] == "⚠️ drift"
    assert '-     securityRules[1]: {"access": "Allow", "direction": "Inbound", "name": "debug-ssh"' in comment


def test_refresh_and_read_steps_are_not_drift() -> None:
    urn = "urn:pulumi:prod-cloud::confidential-ai::azure-native:network:Subnet::podvm"
    steps = [{"op": op, "urn": urn, "detailedDiff": None} for op in ("refresh", "read", "same")]
    r = pp.report("prod-cloud", Preview({"steps": steps, "changeSummary": {"same": 1, "refresh": 1}}))
    assert not r.changed and r.changes == ()


def test_no_drift_passes(tmp_path: Path) -> None:
    (tmp_path / "prod-trusted.json").write_text((DRIFT / "prod-trusted.json").read_text())
    status, comment = comment_for(tmp_path, "--drift")
    assert status == 0 and "No drift: every stack matches its resources." in comment


# --- affected stacks from git ------------------------------------------------------------------

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True)


def write(repo: Path, files: list[str]) -> None:
    for name in files:
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(path.read_text() + "# changed\n" if path.exists() else "x\n")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write(tmp_path, [*(f"stacks/Pulumi.{s}.yaml" for s in STACKS), "stacks/program.py", "components/aro.py",
                     "README.md", "Pulumi.yaml"])
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "base")
    git(tmp_path, "checkout", "-q", "-b", "feature")
    return tmp_path


def commit(repo: Path, files: list[str]) -> None:
    write(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "change")


@pytest.mark.parametrize(("files", "expected"), [
    (["stacks/Pulumi.dev-cloud.yaml"], ["dev-cloud"]),
    (["stacks/Pulumi.prod-trusted.yaml", "README.md"], ["prod-trusted"]),
    (["components/aro.py"], STACKS),
    (["templates/initdata/aa.toml.j2"], STACKS),
    (["stacks/program.py"], STACKS),
    (["stacks/config/cloud.py"], STACKS),
    (["policies/__main__.py"], STACKS),
    (["__main__.py"], STACKS),
    (["Pulumi.yaml"], STACKS),
    (["requirements-dev.txt"], STACKS),
    (["README.md", "tests/test_x.py", "docs/pipelines.md", "stacks/README.md"], []),
], ids=lambda v: ",".join(v) if isinstance(v, list) else v)
def test_affected_stacks_from_a_branch(repo: Path, files: list[str], expected: list[str]) -> None:
    commit(repo, files)
    stacks = ps.discover_stacks(repo)
    assert stacks == STACKS
    affected = ps.affected_stacks(ps.changed_files("main", repo), stacks)
    assert list(affected) == expected


def test_changes_made_on_the_base_after_branching_do_not_count(repo: Path) -> None:
    commit(repo, ["README.md"])
    git(repo, "checkout", "-q", "main")
    commit(repo, ["components/aro.py"])
    git(repo, "checkout", "-q", "feature")
    assert ps.changed_files("main", repo) == ["README.md"]


def test_docs_only_pull_request_needs_no_pulumi(repo: Path) -> None:
    commit(repo, ["README.md"])
    out = repo / "comment.md"
    assert pp.main(["--base", "main", "--output", str(out)], root=repo) == 0
    assert "No stack is affected: the 1 changed file against `main`" in out.read_text()


def test_unknown_base_is_one_line(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pp.main(["--base", "nope"], root=repo) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot diff against nope: fatal: ") and err.count("\n") == 1


# --- the documented sample ---------------------------------------------------------------------


def test_pipelines_doc_sample_is_the_tools_output_for_the_pr_fixture() -> None:
    pipelines = (ROOT / "docs" / "pipelines.md").read_text()
    sample = re.search(r"^````markdown\n(.*?)^````$", pipelines, re.S | re.M)
    assert sample, "docs/pipelines.md has no ````markdown sample"
    assert sample[1] == comment_for(PR)[1], "regenerate: python -m tests.preview_recording"


def test_the_pr_recording_is_what_the_current_program_records(tmp_path: Path) -> None:
    from tests.preview_recording import record

    record(tmp_path)
    recorded = {p.name: p.read_text() for p in sorted(tmp_path.iterdir())}
    committed = {p.name: p.read_text() for p in sorted(PR.iterdir())}
    assert recorded.keys() == committed.keys(), "re-record: python -m tests.preview_recording"
    for name, text in recorded.items():
        assert committed[name] == text, f"{name} is stale: python -m tests.preview_recording"


def test_a_failure_is_said_on_stderr_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert comment_for(PR)[0] == 1
    assert capsys.readouterr().err == ("error: the preview of dev-cloud failed: 1 mandatory policy violation "
                                       "(details in the comment)\n")
    assert comment_for(DRIFT, "--drift")[0] == 1
    assert capsys.readouterr().err == "error: prod-cloud drifted from its resources (details in the comment)\n"


# --- the policy diff at the head of the comment ------------------------------------------------


def test_the_comment_opens_with_who_gains_and_loses_which_secret(pr_comment: str) -> None:
    """Gains first (danger), then losses (outage risk), then attestation changes, all before the stacks."""
    order = ["### Who gets which secret in `dev`", "#### Gains", "#### Losses", "#### Attestation decisions that change",
             "#### Reference values", "**2 stacks** affected"]
    assert [pr_comment.index(heading) for heading in order] == sorted(pr_comment.index(heading) for heading in order)
    assert table_rows(pr_comment, "#### Gains") == [["+", "`llama-3-1-8b`", "`ngc-api-key`", "0"], ["+", "`mistral-7b`", "`ngc-api-key`", "0"]]
    assert table_rows(pr_comment, "#### Losses") == [["−", "`llama-3-1-8b`", "`model-key`", "1"]]
    assert table_rows(pr_comment, "#### Attestation decisions that change")[0][:4] == [
        "newly refused", "`genuine-genoa`: a genuine pod VM on AMD Genoa (CPUID 19h model 11h), the processor of Standard_NCC40ads_H100_v5",
        "CPU policy", "hardware"]


def with_policy_diff(tmp_path: Path, source: Path, diff: dict[str, Any]) -> Path:
    for recorded in source.iterdir():
        if not recorded.name.endswith(ps.POLICY_DIFF_SUFFIX):
            (tmp_path / recorded.name).write_text(recorded.read_text())
    (tmp_path / f"{diff['environment']}{ps.POLICY_DIFF_SUFFIX}").write_text(json.dumps(diff))
    return tmp_path


def test_a_policy_diff_without_changes_adds_nothing(tmp_path: Path) -> None:
    empty = PolicyDiff("dev", "origin/main").as_json()
    comment = comment_for(with_policy_diff(tmp_path, PR, empty))[1]
    assert "Who gets which secret" not in comment
    assert comment.index("## Pulumi preview\n\n**2 stacks** affected") > 0


def test_a_release_to_an_unknown_pod_vm_is_called_out(tmp_path: Path) -> None:
    diff = PolicyDiff("dev", "origin/main", gains=[Release("", "<unknown>", "ngc-api-key", 0), Release("", "mistral-7b", "model-key", 1)])
    comment = comment_for(with_policy_diff(tmp_path, PR, diff.as_json()))[1]
    assert "> **A pod VM measuring no declared workload would receive `ngc-api-key`**" in comment
    assert table_rows(comment, "#### Gains") == [["🚨", "`&lt;unknown>`", "`ngc-api-key`", "0"], ["+", "`mistral-7b`", "`model-key`", "1"]]


def test_drift_reports_what_main_would_change_against_the_deployed_commit_without_failing_for_it(tmp_path: Path) -> None:
    diff = json.loads((PR / f"dev{ps.POLICY_DIFF_SUFFIX}").read_text()) | {"environment": "prod", "base": "deployed/prod (0123456789ab)"}
    status, comment = comment_for(with_policy_diff(tmp_path, DRIFT, diff), "--drift")
    assert status == comment_for(DRIFT, "--drift")[0]
    assert "### Who gets which secret in `prod`\n\nAgainst deployed/prod (0123456789ab)" in comment and table_rows(comment, "#### Losses") == [["−", "`llama-3-1-8b`", "`model-key`", "1"]]


class _FailingPolicyDiff(ps.RecordedSource):
    def policy_diff(self, env: str, base: str, merge_base: bool = True) -> PolicyDiff | None:
        raise ps.PolicyDiffError(f"planning {env} at 0123456789ab failed: dev-trusted: kbs.url must be https")


def test_a_policy_diff_that_fails_is_said_and_fails_the_run() -> None:
    comment, failures = pp.run(pp.parse_args(["--recorded", str(PR)]), _FailingPolicyDiff(PR))
    assert "> The policy diff of `dev` failed: planning dev at 0123456789ab failed: dev-trusted: kbs.url must be https" in comment
    assert failures[-1] == "the policy diff of dev failed: planning dev at 0123456789ab failed: dev-trusted: kbs.url must be https"


def test_environments_are_those_whose_trusted_stack_is_affected() -> None:
    assert ps.environments_of(["dev-trusted", "dev-cloud", "prod-cloud", "prod-trusted"]) == ["dev", "prod"]


def test_a_fleet_wide_change_is_cut_to_a_readable_table(tmp_path: Path) -> None:
    gains = [Release("", f"model-{i:03}", "ngc-api-key", 0) for i in range(120)]
    comment = comment_for(with_policy_diff(tmp_path, PR, PolicyDiff("dev", "origin/main", gains=gains).as_json()))[1]
    assert len(table_rows(comment, "#### Gains")) == 50
    assert "_Only the first 50 of 120 shown: `python -m scripts.policy_diff dev` lists all._" in comment


def test_uncommitted_changes_are_said_since_the_comparison_leaves_them_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "repo"
    (repo / "stacks").mkdir(parents=True)
    (repo / "stacks" / "Pulumi.dev-trusted.yaml").write_text("config: {}\n")
    git = lambda *args: subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)  # noqa: E731
    git("init", "-q", "-b", "main")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "base")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "stack")
    assert ps.uncommitted_files(repo) == []
    (repo / "stacks" / "Pulumi.dev-trusted.yaml").write_text("config: {changed: true}\n")
    (repo / "stacks" / "Pulumi.qa-trusted.yaml").write_text("config: {}\n")
    assert ps.uncommitted_files(repo) == ["stacks/Pulumi.dev-trusted.yaml", "stacks/Pulumi.qa-trusted.yaml"]

    class WithUncommitted(ps.RecordedSource):
        def uncommitted(self) -> list[str]:
            return ps.uncommitted_files(repo)

    comment, _ = pp.run(pp.parse_args(["--recorded", str(PR), "--base", "main"]), WithUncommitted(PR))
    said = ("The working tree has 2 uncommitted changes (`stacks/Pulumi.dev-trusted.yaml`, `stacks/Pulumi.qa-trusted.yaml`) that "
            "the comparison with `main` does not cover")
    assert f"> [!NOTE]\n> {said}" in comment
    assert capsys.readouterr().err.startswith("note: " + said.replace("`", ""))
    # A clean tree adds nothing.
    assert "uncommitted" not in pp.run(pp.parse_args(["--recorded", str(PR)]), ps.RecordedSource(PR))[0]
