"""checkov (an independent Kubernetes scanner) finds nothing in the manifests the offline plan writes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from scripts.plan import plan_environment, write_plan

ROOT = Path(__file__).resolve().parents[1]
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov is not installed (.ci/run makes .venv-checkov from requirements-checkov.txt)")
def test_checkov_reports_no_failure_on_either_environments_manifests(tmp_path):
    for env in ("dev", "prod"):
        write_plan(plan_environment(env), tmp_path)
    manifests = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/manifests/*.yaml"))
    assert "dev-cloud/manifests/llama-3-1-8b--servingruntime--llama-3-1-8b-nim.yaml" in manifests
    assert not [m for m in manifests if "--daemonset--" in m], "nothing patches the operator's DaemonSets"
    done = subprocess.run(
        [str(CHECKOV), "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download", "--quiet", "-o", "json"],
        capture_output=True, text=True, timeout=120,
    )
    report = json.loads(done.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == [] and done.returncode == 0
    assert report["summary"]["parsing_errors"] == 0 and report["summary"]["resource_count"] >= len(manifests)
