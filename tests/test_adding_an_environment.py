"""The checklist of docs/adding-an-environment.md, performed: a new environment copied from `dev`, each key
the checklist says must change changed, planned and policy-checked, and nothing of `dev`'s left in it."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import EnforcementLevel

from scripts.offline.policy import POLICY_PACK, evaluate
from scripts.offline.stackfile import STACKS_DIR
from scripts.plan import plan_environment
from scripts.stack_file_edit import StackFileEdit

ROOT = Path(__file__).resolve().parents[1]
CHECKLIST = ROOT / "docs" / "adding-an-environment.md"
ENV = "checklist"

# What identifies the `dev` example as an environment of its own: its KBS and model host names, its Azure
# subscription, resource group, cluster domain, principals, image and networks. None may be left in a copy.
DEV_IDENTITY = (
    "trusted-dev.example.com", "confai-dev", "confidential-ai-dev", "3f2c8a1e-6b4d-4e2a-9c7f-1d5e8b0a4c21",
    "5b8e2c1d-7f3a-4e6b-9d2c-8a1f0e3b7c64", "0c4d9e7a-2b6f-4a83-b1e5-6f7d8c9a0b12", "2e9f4b6c-8d1a-4c37-a5e2-3b7c6d8e9f01",
    "8d3f1a6b-4c2e-4b9d-a7f0-5e6c1b2d3a48", "1a7c5e3d-9b2f-4d60-8e4a-7c3b2d1f0e95", "10.10.", "dev-cloud", "dev-trusted",
)
SUBSCRIPTION = "0b7e4f2a-9c3d-4e5f-8a1b-2c3d4e5f6a7b"
HOSTS = ["llama-3-1-8b-llama-3-1-8b.apps.confai-checklist.westeurope.aroapp.io",
         "mistral-7b-mistral-7b.apps.confai-checklist.westeurope.aroapp.io"]

# Each checklist item as the test performs it: key path -> new value.
TRUSTED_EDITS: dict[str, Any] = {
    "kbs.url": "https://kbs.trusted-checklist.example.com",
    "kbs.openshiftVersion": "4.19.24",
    "referenceValues.pcrs.pcr09": ["9" * 64],
    "referenceValues.minimumTcb.snp": 24,
    "referenceValues.expiration": "2028-01-31T00:00:00Z",
    "referenceValues.allowedDriverVersions": ["570.133.20"],
    "kbsResources[1].secret": "checklist-model-key",
    "workloads[0].args": ["/opt/nvidia/nvidia_entrypoint.sh", "/opt/nim/start-server.sh", "--checklist"],
    "trustBundle.version": 3,
    f"spokes.{ENV}-cloud": {
        "llama-3-1-8b": {"servingHostnames": [HOSTS[0]]},
        "mistral-7b": {"servingHostnames": [HOSTS[1]]},
    },
}
CLOUD_EDITS: dict[str, Any] = {
    "trustBundle.file": f"trust-bundles/{ENV}-cloud.jws",
    "trustBundle.minimumVersion": 3,
    "azure.subscriptionId": SUBSCRIPTION,
    "azure.location": "westeurope",
    "azure.resourceGroup": "confidential-ai-checklist",
    "network.vnetCidr": "10.30.0.0/16",
    "network.masterSubnetCidr": "10.30.0.0/23",
    "network.workerSubnetCidr": "10.30.2.0/23",
    "network.podVmSubnetCidr": "10.30.8.0/22",
    "cluster.aro.domain": "confai-checklist",
    "cluster.aro.clientId": "6c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e41",
    "cluster.aro.clientObjectId": "7d2e3f4a-5b6c-4d7e-8f9a-0b1c2d3e4f52",
    "cluster.aro.resourceProviderObjectId": "8e3f4a5b-6c7d-4e8f-9a0b-1c2d3e4f5a63",
    "peerPods.clientId": "9f4a5b6c-7d8e-4f9a-0b1c-2d3e4f5a6b74",
    "peerPods.objectId": "a05b6c7d-8e9f-4a0b-1c2d-3e4f5a6b7c85",
    "peerPods.imageId": f"/subscriptions/{SUBSCRIPTION}/resourceGroups/confidential-ai-checklist/providers/Microsoft.Compute/galleries/PodVMGallery/images/podvm-image/versions/1.0.0",
    "osc.tags": {"environment": ENV},
    "osc.caaUpdateStrategy": "OnDelete",
}


def _checklist_names(key: str) -> bool:
    """The checklist names `key`: the key itself, or a section it is in (`network.*`, `referenceValues`), in backticks."""
    spelled = set(re.findall(r"`([^`]+)`", CHECKLIST.read_text()))
    parts = [p for p in re.split(r"[.\[\]]", key) if p and not p.isdigit()]
    prefixes = [".".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return any(p in spelled or f"{p}.*" in spelled for p in prefixes)


def _copy_dev(directory: Path) -> Path:
    """The checklist's first step: dev's stack files copied, `dev-cloud`/`dev` renamed in what is kept."""
    directory.mkdir()
    for side in ("trusted", "cloud"):
        text = (STACKS_DIR / f"Pulumi.dev-{side}.yaml").read_text()
        (directory / f"Pulumi.{ENV}-{side}.yaml").write_text(text.replace("dev-cloud", f"{ENV}-cloud").replace("dev-trusted", f"{ENV}-trusted"))
    return directory


def _perform(stacks: Path) -> None:
    for side, edits in (("trusted", TRUSTED_EDITS), ("cloud", CLOUD_EDITS)):
        edit = StackFileEdit.read(stacks / f"Pulumi.{ENV}-{side}.yaml")
        if side == "trusted":
            # The copy's spoke is renamed by the copy step; its content is this environment's.
            edit.set("spokes", {})
        for key, value in edits.items():
            edit.set(key, value)
        edit.write()


@pytest.fixture(scope="module")
def new_environment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    stacks = _copy_dev(tmp_path_factory.mktemp("checklist") / "stacks")
    _perform(stacks)
    return stacks, plan_environment(ENV, stacks)


@pytest.mark.parametrize("key", [*TRUSTED_EDITS, *CLOUD_EDITS])
def test_every_key_the_checklist_changes_is_named_in_it(key: str) -> None:
    assert _checklist_names(key), f"docs/adding-an-environment.md does not name {key}, which a new environment must change"


def test_the_new_environment_plans_and_passes_the_policy_pack(new_environment) -> None:
    _, runs = new_environment
    assert [run.stack for run in runs] == [f"{ENV}-trusted", f"{ENV}-cloud"]
    sys.path.insert(0, str(POLICY_PACK))
    try:
        from rules import POLICIES
    finally:
        sys.path.remove(str(POLICY_PACK))
    for run in runs:
        assert [str(v) for v in evaluate(run, POLICIES) if v.level == EnforcementLevel.MANDATORY.value] == [], run.stack
        assert run.warnings == [], run.stack


def test_nothing_of_dev_is_left_in_the_new_environments_plan(new_environment) -> None:
    _, runs = new_environment
    for run in runs:
        planned = json.dumps([r.inputs for r in run.resources] + [run.outputs], default=str)
        assert [token for token in DEV_IDENTITY if token in planned] == [], run.stack


def test_the_new_environment_serves_its_own_hosts(new_environment) -> None:
    _, runs = new_environment
    trusted = runs[0].outputs
    assert trusted["kbsUrl"] == TRUSTED_EDITS["kbs.url"]
    assert set(trusted["trustBundles"]) == {f"{ENV}-cloud"}

