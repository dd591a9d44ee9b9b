"""The benchmark compares like with like: N models in the plan, and a floor as big as the plan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scripts.bench import probe, write_stacks

ROOT = Path(__file__).resolve().parents[1]
INFERENCE_SERVICE = "kubernetes:serving.kserve.io/v1beta1:InferenceService"


def test_floor_registers_as_many_resources_per_stack_as_a_plan_of_n_models(tmp_path, example_plan):
    spec = probe("dev", write_stacks("dev", 3, tmp_path / "stacks"))
    trusted, cloud = spec["stacks"]
    assert [t for t, _ in cloud["resources"]].count(INFERENCE_SERVICE) == 3
    example = {run.stack: run for run in example_plan("dev")}
    # The third model has a workload of its own (initdata, serving certificate), as real models do.
    assert len(trusted["resources"]) > len(example["dev-trusted"].resources)
    assert len(cloud["resources"]) > len(example["dev-cloud"].resources)
    assert "pulumi_kubernetes" in spec["modules"] and "pulumi_azure_native" in spec["modules"]

    # The floor imports every listed SDK module, which rebinds lazily loaded SDK attributes: a child process.
    (tmp_path / "floor.json").write_text(json.dumps(spec))
    result = subprocess.run([sys.executable, "-m", "scripts.bench", "--floor", str(tmp_path / "floor.json")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [len(trusted["resources"]), len(cloud["resources"])]
