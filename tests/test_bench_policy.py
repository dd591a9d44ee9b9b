"""scripts.bench_policy measures what it says: the stack's own policy for N pairs, and the decision it keeps."""

from __future__ import annotations

import json

from scripts import bench_policy
from tests.rego_engines import ENGINES


def test_the_kept_request_is_a_declared_pairs_and_its_policy_releases_it(tmp_path, capsys):
    assert bench_policy.main(["--workloads", "1,12", "--repeat", "1", "--keep", str(tmp_path)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[3:]]
    assert [row[0] for row in rows] == ["1", "12"]
    kept = tmp_path / "12"
    policy, token, data = (kept / "resource-policy.rego").read_text(), json.loads((kept / "input.json").read_text()), json.loads((kept / "data.json").read_text())
    # Twelve pairs over ten cloud stacks; the last pair (by cloud stack name) asks for its own serving key.
    assert data["resource-path"] == ["default", "inference-tls-keys", "r9.w9"]
    assert policy.count("# prod-cloud") == 12
    assert ENGINES["regorus"]({"policy.rego": policy}, "data.policy.allow", token, data) is True
