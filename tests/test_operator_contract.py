"""What trustee-operator does to the ConfigMaps our KbsConfig names, read from the operator's own source.

trustee-operator 1.2.x deletes, on every reconcile, each ConfigMap the KbsConfig names that lacks its
migration annotation (tests/fixtures/trustee-operator/SOURCES.md): without it KBS never starts.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.trusted_stack import example_trusted

SOURCE = Path(__file__).parent / "fixtures" / "trustee-operator"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
KBS_CONFIG = "kubernetes:confidentialcontainers.org/v1alpha1:KbsConfig"


def go_constant(source: str, name: str) -> str:
    (value,) = re.findall(rf'^\s*{name}\s*=\s*"([^"]+)"', source, re.MULTILINE)
    return value


def migrated_spec_fields() -> list[str]:
    """The KbsConfig JSON fields whose ConfigMaps `migrateConfigMapsIfNeeded` looks at."""
    migration = (SOURCE / "migration.go").read_text()
    body = migration.split("func (r *KbsConfigReconciler) migrateConfigMapsIfNeeded(", 1)[1].split("\n}\n", 1)[0]
    go_fields = re.findall(r"r\.kbsConfig\.Spec\.(\w+) != \"\"", body)
    types = (SOURCE / "kbsconfig_types.go").read_text()
    json_names = dict(re.findall(r'^\s*(\w+)\s+\S+\s+`json:"(\w+)', types, re.MULTILINE))
    return [json_names[field] for field in go_fields]


@pytest.fixture(scope="module")
def contract():
    migration = (SOURCE / "migration.go").read_text()
    return go_constant(migration, "MigrationAnnotation"), go_constant(migration, "MigrationVersion"), migrated_spec_fields()


def test_the_contract_as_read_from_the_operator(contract):
    annotation, value, fields = contract
    assert annotation == "kbs.confidentialcontainers.org/migrated-from-v1.1.0"
    assert value == "v1.2.0"
    assert sorted(fields) == sorted(
        [
            "kbsConfigMapName",
            "kbsRvpsRefValuesConfigMapName",
            "kbsResourcePolicyConfigMapName",
            "kbsAttestationPolicyConfigMapName",
            "kbsGpuAttestationPolicyConfigMapName",
        ]
    )


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
