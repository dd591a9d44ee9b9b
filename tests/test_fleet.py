"""One trusted cluster, several cloud clusters: the `prod` fleet (prod-cloud in West Europe, prod-cloud-eastus).

Every (cloud stack, workload) pair measures its own initdata; KBS releases a resource only to the pairs the
trusted config gives it, a serving key to its own pair only; a cloud stack reads its own spoke; adding a
cloud stack leaves the others' plans byte for byte.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from scripts.offline.stackfile import STACKS_DIR
from scripts.plan import plan_environment, write_plan
from stacks.config.trusted import TrustedConfig
from tests.rego_engines import ENGINES
from tests.stack_edits import stacks_with
from tests.trusted_stack import example_trusted

EAR_TOKEN = Path(__file__).resolve().parent / "fixtures" / "attestation" / "ear_token.json"
CLOUD_STACKS = ["prod-cloud", "prod-cloud-eastus"]


@pytest.fixture(scope="module")
def prod() -> tuple[TrustedConfig, Any]:
    return example_trusted("prod-trusted")


def measuring(pcr8: str) -> dict[str, Any]:
    token = json.loads(EAR_TOKEN.read_text())
    token["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["az-snp-vtpm"]["tpm"]["pcr08"] = pcr8
    return token


def test_the_prod_example_is_a_fleet_of_two_cloud_stacks(prod):
    config, run = prod
    assert sorted(config.spokes) == sorted(run.outputs["spokes"]) == CLOUD_STACKS
    pcr8s = [spoke["workloads"][w]["initdataPcr8"] for spoke in run.outputs["spokes"].values() for w in spoke["workloads"]]
    assert len(pcr8s) == len(config.pairs) == 4 and len(set(pcr8s)) == 4, "each pair measures its own initdata"
    for stack, spoke in run.outputs["spokes"].items():
        for workload in spoke["workloads"].values():
            document = gzip.decompress(base64.b64decode(workload["initdata"])).decode()
            assert document.startswith(f"# Runs on cloud stack {stack}:")


def test_every_pair_against_every_resource_releases_only_what_the_config_gives(prod):
    """The full matrix on regorus (and regopy): each pair's PCR 8 against every resource KBS holds."""
    config, run = prod
    policy = {"policy.rego": run.named("kbs-resource-policy", "kubernetes:core/v1:ConfigMap").inputs["data"]["resource-policy.rego"]}
    declared = {r.name: ["default", r.secret, r.key] for r in config.kbs_resources}
    serving = {
        f"{stack}/{name}": ["default", "inference-tls-keys", w["servingKeyResource"].removesuffix("-tls-key")]
        for stack, spoke in run.outputs["spokes"].items() for name, w in spoke["workloads"].items()
    }
    sealed = ["default", "sealed-secret-key", "public-jwk"]
    allowed: dict[str, list[str]] = {}
    for stack, spoke in run.outputs["spokes"].items():
        for name, workload in spoke["workloads"].items():
            token = measuring(workload["initdataPcr8"])
            pair = f"{stack}/{name}"
            for resource, path in {**declared, **{f"serving {p}": s for p, s in serving.items()}, "sealed": sealed}.items():
                data = {"plugin": "resource", "resource-path": path, "query": {}}
                decisions = {engine: run_(policy, "data.policy.allow", token, data) for engine, run_ in ENGINES.items()}
                assert decisions["regorus"] == decisions["regopy"], (pair, resource)
                if decisions["regorus"] is True:
                    allowed.setdefault(pair, []).append(resource)
    expected = {
        f"{p.cloud_stack}/{p.workload.name}": sorted([*p.workload.resources, f"serving {p.cloud_stack}/{p.workload.name}", "sealed"])
        for p in config.pairs
    }
    assert {pair: sorted(names) for pair, names in allowed.items()} == expected
    # The model key goes to llama-ft in both regions, on purpose; each serving key to one pair only.
    assert [pair for pair, names in allowed.items() if "model-key" in names] == ["prod-cloud/llama-ft", "prod-cloud-eastus/llama-ft"]
    for key in serving:
        assert [pair for pair, names in allowed.items() if f"serving {key}" in names] == [key]


def test_a_cloud_stack_reads_its_own_spoke(example_plan):
    runs = {run.stack: run for run in example_plan("prod")}
    trusted = runs["prod-trusted"].outputs["spokes"]
    for stack in CLOUD_STACKS:
        annotations = {r.inputs["metadata"]["name"]: r.inputs["spec"]["predictor"]["annotations"]["io.katacontainers.config.hypervisor.cc_init_data"]
                       for r in runs[stack].of_type("kubernetes:serving.kserve.io/v1beta1:InferenceService")}
        assert annotations == {name: w["initdata"] for name, w in trusted[stack]["workloads"].items()}


def test_adding_a_spoke_leaves_the_other_cloud_stacks_plans_byte_identical(tmp_path, example_plan):
    before = tmp_path / "before"
    write_plan(example_plan("prod"), before)
    eastus = (STACKS_DIR / "Pulumi.prod-cloud-eastus.yaml").read_text()
    central = eastus.replace("eastus", "centralus").replace("10.21.", "10.22.")
    stacks = stacks_with(tmp_path / "stacks", {
        "prod-cloud-centralus": central,
        "prod-trusted": {"spokes.prod-cloud-centralus": {
            name: {"servingHostnames": [f"{name}-{name}.apps.ocp-prod-centralus.example.com"]} for name in ("llama-3-1-8b", "llama-ft")
        }},
    })
    after = tmp_path / "after"
    runs = plan_environment("prod", stacks)
    assert [run.stack for run in runs] == ["prod-trusted", "prod-cloud", "prod-cloud-centralus", "prod-cloud-eastus"]
    write_plan(runs, after)
    for stack in CLOUD_STACKS:
        files = sorted(p.relative_to(before / stack) for p in (before / stack).rglob("*") if p.is_file())
        assert files and files == sorted(p.relative_to(after / stack) for p in (after / stack).rglob("*") if p.is_file())
        changed = [str(f) for f in files if (before / stack / f).read_bytes() != (after / stack / f).read_bytes()]
        assert changed == [], f"{stack}: adding prod-cloud-centralus changed {changed}"
    # The trusted side did change: a new pair, its initdata measured, its serving key released to it alone.
    assert (before / "prod-trusted").is_dir() and any(
        (before / "prod-trusted" / f).read_bytes() != (after / "prod-trusted" / f).read_bytes()
        for f in (p.relative_to(before / "prod-trusted") for p in (before / "prod-trusted").rglob("*") if p.is_file())
        if (after / "prod-trusted" / f).is_file()
    )
    assert runs[0].outputs["spokes"]["prod-cloud-centralus"]["workloads"].keys() == {"llama-3-1-8b", "llama-ft"}
