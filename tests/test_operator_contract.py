"""What trustee-operator does to the ConfigMaps our KbsConfig names, as the operator's source says (recorded as facts).

trustee-operator 1.2.x deletes, on every reconcile, each ConfigMap the KbsConfig names that lacks its
migration annotation (tests/fixtures/trustee-operator/migration-contract.json, SOURCES.md beside it): without it KBS never starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.trusted_stack import example_trusted

CONTRACT = Path(__file__).parent / "fixtures" / "trustee-operator" / "migration-contract.json"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
KBS_CONFIG = "kubernetes:confidentialcontainers.org/v1alpha1:KbsConfig"


@pytest.fixture(scope="module")
def contract() -> tuple[str, str, list[str]]:
    recorded = json.loads(CONTRACT.read_text())
    fields = recorded["configMapFields"]
    return recorded["annotation"], recorded["value"], [*fields["deletedWithoutAnnotation"], *fields["rewrittenWithoutAnnotation"]]


@pytest.mark.parametrize("stack", ["dev-trusted", "prod-trusted"])
def test_every_config_map_the_kbs_config_names_is_marked_migrated(stack, contract):
    annotation, value, fields = contract
    _, run = example_trusted(stack)
    (kbs_config,) = run.of_type(KBS_CONFIG)
    spec = kbs_config.inputs["spec"]
    config_maps = {r.inputs["metadata"]["name"]: r for r in run.of_type(CONFIG_MAP)}
    for field in fields:
        named = config_maps[spec[field]]
        assert named.inputs["metadata"]["annotations"][annotation] == value, f"{field} -> {spec[field]}"
