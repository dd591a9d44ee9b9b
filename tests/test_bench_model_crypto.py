"""The model crypto benchmark's machine-readable output (its figures are never asserted: a shared machine
makes timings noise; docs/benchmarks.md records them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_json_reports_every_phase_against_the_floor_in_one_run():
    done = subprocess.run([sys.executable, "-m", "scripts.bench_model_crypto", "--size-mib", "2", "--repeat", "1", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert set(figures) == {"encrypt", "decrypt", "kserve_decrypt", "floor"}
    for phase in ("encrypt", "decrypt", "kserve_decrypt"):  # kserve-storage is installed here (requirements-interop.txt)
        assert set(figures[phase]) == {"mib_s", "peak_extra_mib"}, phase
        assert figures[phase]["mib_s"] > 0 and figures[phase]["peak_extra_mib"] >= 0, phase
    assert set(figures["floor"]) == {"mib_s"} and figures["floor"]["mib_s"] > 0
    # The human summary (stderr) names the load the figures were taken under and each ratio to the floor.
    assert "load average" in done.stderr and "of the floor" in done.stderr
