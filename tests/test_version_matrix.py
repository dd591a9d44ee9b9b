"""The version matrix (stacks/versions.py): what config refuses, and what each OpenShift AI line renders."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.nim import NIM_CACHE_PATH, NIM_SCRATCH_DIRS
from stacks import versions
from tests.cluster_layer_fixtures import run_cluster_layer, trusted_outputs
from tests.test_cluster_layer import k8s_object, unknown_fields
from tests.test_config import problems

CRDS_2X = Path(__file__).parent / "fixtures" / "crds"
SUBSCRIPTION = "kubernetes:operators.coreos.com/v1alpha1:Subscription"
APPROVAL = "pulumi-python:dynamic:Resource"
# An existing 4.18 cluster: OpenShift AI 2.25 (DSC v1) and OSC 1.13, the lines that install there.
ON_4_18 = {
    "cluster.existing.openshiftVersion": "4.18.40",
    "openshiftAi.operator": {"channel": "stable-2.25", "source": "redhat-operators", "startingCSV": "rhods-operator.2.25.0"},
    "osc.operator": {"channel": "stable", "source": "redhat-operators", "startingCSV": "sandboxed-containers-operator.v1.13.0"},
}


@pytest.mark.parametrize(
    ("stack", "edits", "lines"),
    [
        (
            "dev-cloud",
            {"cluster.aro.version": "4.16.30"},
            [
                "dev-cloud: cluster.aro.version: 4.16.30 is not an ARO install version (offered: 4.18.26, 4.18.34, 4.19.20, 4.19.24, 4.20.15; "
                "az aro get-versions as of 2026-07; python -m scripts.preflight reads your region's list)"
            ],
        ),
        (
            "dev-cloud",
            {"cluster.aro.version": "4.18.34"},
            [
                "dev-cloud: openshiftAi.operator.startingCSV: rhods-operator.3.4.3 (OpenShift AI 3.4) needs OpenShift 4.19-4.22, but cluster.aro.version "
                "is 4.18.34: use OpenShift AI 2.25 (stable-2.25 or eus-2.25) on 4.18.34 or set cluster.aro.version to 4.19.20, 4.19.24, 4.20.15",
                "dev-cloud: osc.operator.startingCSV: sandboxed-containers-operator.v1.12.1 (OSC 1.12) needs OpenShift 4.19.28 or later, but "
                "cluster.aro.version is 4.18.34: set cluster.aro.version to 4.20.15",
            ],
        ),
        (
            "dev-cloud",
            {"cluster.aro.version": "4.19.24"},
            [
                "dev-cloud: osc.operator.startingCSV: sandboxed-containers-operator.v1.12.1 (OSC 1.12) needs OpenShift 4.19.28 or later, but "
                "cluster.aro.version is 4.19.24: use OSC 1.13 (stable) on 4.19.24 or set cluster.aro.version to 4.20.15"
            ],
        ),
        (
            "prod-cloud",
            {"cluster.existing.openshiftVersion": "4.18.40"},
            [
                "prod-cloud: openshiftAi.operator.startingCSV: rhods-operator.3.4.3 (OpenShift AI 3.4) needs OpenShift 4.19-4.22, but "
                "cluster.existing.openshiftVersion is 4.18.40: use OpenShift AI 2.25 (stable-2.25 or eus-2.25) on 4.18.40",
                "prod-cloud: osc.operator.startingCSV: sandboxed-containers-operator.v1.12.1 (OSC 1.12) needs OpenShift 4.19.28 or later, but "
                "cluster.existing.openshiftVersion is 4.18.40: use OSC 1.13 (stable) on 4.18.40",
            ],
        ),
        (
            "prod-cloud",
            {**ON_4_18, "cluster.existing.openshiftVersion": "4.18.30"},
            [
                "prod-cloud: osc.operator.startingCSV: sandboxed-containers-operator.v1.13.0 (OSC 1.13) needs OpenShift 4.18.38 or later, but "
                "cluster.existing.openshiftVersion is 4.18.30: no OSC line in the matrix supports 4.18.30"
            ],
        ),
        (
            "dev-cloud",
            {"openshiftAi.operator": {"channel": "stable-3.3", "startingCSV": "rhods-operator.3.4.3"}},
            ["dev-cloud: openshiftAi.operator.channel: stable-3.3 does not serve rhods-operator.3.4.3; use stable-3.4"],
        ),
        (
            "dev-cloud",
            {"openshiftAi.operator": {"channel": "stable-2.16", "startingCSV": "rhods-operator.2.16.0"}},
            [
                "dev-cloud: openshiftAi.operator.startingCSV: rhods-operator.2.16.0 is not in the version matrix "
                "(OpenShift AI: rhods-operator 3.4.x, rhods-operator 3.3.x, rhods-operator 2.25.x; stacks/versions.py)"
            ],
        ),
        (
            "dev-trusted",
            {"kbs.openshiftVersion": "4.16.20"},
            [
                "dev-trusted: kbs.operator.startingCSV: trustee-operator.v1.2.0 (Trustee 1.2) needs OpenShift 4.17-4.21, but kbs.openshiftVersion "
                "is 4.16.20: no Trustee line in the matrix supports 4.16.20"
            ],
        ),
    ],
    ids=["aro-4.16.30", "openshift-ai-3.4-on-4.18", "osc-1.12-on-4.19.24", "existing-4.18", "osc-1.13-on-4.18.30", "channel", "unknown-line", "trustee-on-4.16"],
)
def test_inconsistent_versions_are_refused_with_one_line_naming_both_keys(stack, edits, lines):
    assert problems(stack, set=edits) == lines


@pytest.mark.parametrize("stack", ["dev-cloud", "prod-cloud", "dev-trusted", "prod-trusted"])
def test_automatic_approval_is_refused(stack):
    key = "kbs.operator.installPlanApproval" if stack.endswith("trusted") else "osc.operator.installPlanApproval"
    assert problems(stack, set={key: "Automatic"}) == [
        f"{stack}: {key}: Automatic is not supported: OLM would upgrade past startingCSV as soon as the catalog moves; "
        "only Manual (the program approves the InstallPlan of the pinned CSV) holds a pin"
    ]


# An upstream location: a repository (owner/name, at a commit or tag, and a path) or a documentation site.
UPSTREAM_SOURCE = re.compile(r"^([\w.-]+/[\w.-]+@[\w.]+ \S+|docs\.redhat\.com/\S+)")


def test_every_matrix_row_has_an_upstream_source_and_a_range():
    for row in versions.MATRIX:
        assert UPSTREAM_SOURCE.match(row.source), f"{row.operator} {row.line}: source {row.source!r} names no upstream location"
        assert "FACTS" not in row.source, row
        assert row.openshift_min >= (4, 16), row
        assert (row.dsc_api is not None) == (row.operator == versions.OPENSHIFT_AI), row
    assert all(versions.fitting_lines(versions.OSC, versions.parse(v)) for v in ("4.19.28", "4.20.15"))


def documented_rows() -> list[list[str]]:
    text = (Path(__file__).resolve().parents[1] / "docs" / "versions.md").read_text()
    table = text.split("## The table", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ")][2:]  # header, separator
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def test_docs_versions_table_is_the_matrix_row_for_row():
    documented = documented_rows()
    assert len(documented) == len(versions.MATRIX)
    for cells, row in zip(documented, versions.MATRIX, strict=True):
        _operator, line, openshift, channels, _notes, source = cells
        assert (line, openshift, source) == (row.line, row.openshift_range, row.source), row
        assert re.findall(r"`([^`]+)`", channels) == list(row.channels), row


# --- what each line renders -------------------------------------------------------------------


@pytest.fixture(scope="module")
def trusted():
    return trusted_outputs()


@pytest.fixture(scope="module")
def on_4_18(trusted):
    return run_cluster_layer("prod-cloud", trusted=trusted, set=ON_4_18)


def _crd_schemas(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    doc = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
    spec = doc["spec"]
    return {(f"{spec['group']}/{v['name']}", spec["names"]["kind"]): v["schema"]["openAPIV3Schema"] for v in spec["versions"]}


def test_openshift_ai_2_25_renders_dsc_and_dsci_v1_valid_for_its_crds(on_4_18):
    import jsonschema

    dsc = k8s_object(on_4_18, "DataScienceCluster", "default-dsc").inputs
    dsci = k8s_object(on_4_18, "DSCInitialization", "default-dsci").inputs
    assert (dsc["apiVersion"], dsci["apiVersion"]) == ("datasciencecluster.opendatahub.io/v1", "dscinitialization.opendatahub.io/v1")
    kserve = dsc["spec"]["components"]["kserve"]
    assert kserve["defaultDeploymentMode"] == "RawDeployment"
    assert kserve["serving"] == {"managementState": "Removed"}
    assert kserve["nim"] == {"managementState": "Managed"}
    assert dsci["spec"]["serviceMesh"] == {"managementState": "Removed"}
    schemas = {**_crd_schemas(CRDS_2X / "odh-v2.35.0_datascienceclusters.yaml"), **_crd_schemas(CRDS_2X / "odh-v2.35.0_dscinitializations.yaml")}
    for manifest in (dsc, dsci):
        schema = schemas[(manifest["apiVersion"], manifest["kind"])]
        body = {k: v for k, v in manifest.items() if k != "metadata"}
        assert list(jsonschema.Draft7Validator(schema).iter_errors(body)) == []
        assert unknown_fields(manifest["spec"], schema["properties"]["spec"], "spec") == []


def test_openshift_ai_3_renders_dsc_and_dsci_v2_without_the_serverless_fields(trusted, crd_schemas):
    run = run_cluster_layer(trusted=trusted)
    dsc = k8s_object(run, "DataScienceCluster", "default-dsc").inputs
    dsci = k8s_object(run, "DSCInitialization", "default-dsci").inputs
    assert (dsc["apiVersion"], dsci["apiVersion"]) == ("datasciencecluster.opendatahub.io/v2", "dscinitialization.opendatahub.io/v2")
    assert "serving" not in dsc["spec"]["components"]["kserve"] and "serviceMesh" not in dsci["spec"]
    schema = crd_schemas[(dsci["apiVersion"], "DSCInitialization")]
    assert unknown_fields(dsci["spec"], schema["properties"]["spec"], "spec") == []


# --- pins that hold ---------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_subscription_is_manual_pinned_and_approved_only_for_its_pin(runner, env):
    for stack in (f"{env}-trusted", f"{env}-cloud"):
        run = runner.example(stack)
        subscriptions = run.of_type(SUBSCRIPTION)
        assert subscriptions, stack
        approvals = {r.inputs["package"]: r for r in run.of_type(APPROVAL)}
        for subscription in subscriptions:
            spec = subscription.inputs["spec"]
            assert spec["installPlanApproval"] == "Manual" and spec["startingCSV"], subscription.name
            approval = approvals[spec["name"]]
            assert (approval.inputs["csv"], approval.inputs["namespace"]) == (spec["startingCSV"], subscription.inputs["metadata"]["namespace"])
            assert subscription.urn in approval.depends_on
            assert approval.is_secret("kubeconfig")


def test_an_upgrade_is_a_change_of_the_pin(trusted):
    before = run_cluster_layer(trusted=trusted)
    after = run_cluster_layer(trusted=trusted, set={"openshiftAi.operator.startingCSV": "rhods-operator.3.4.4"})
    old, new = ({r.name: r.inputs["csv"] for r in run.of_type(APPROVAL)} for run in (before, after))
    assert (old["openshift-ai-install-plan-approval"], new["openshift-ai-install-plan-approval"]) == ("rhods-operator.3.4.3", "rhods-operator.3.4.4")
    assert old["sandboxed-containers-install-plan-approval"] == new["sandboxed-containers-install-plan-approval"]
    assert [k8s_object(run, "Subscription", "rhods-operator").inputs["spec"]["startingCSV"] for run in (before, after)] == ["rhods-operator.3.4.3", "rhods-operator.3.4.4"]


# --- NIM's filesystem -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nim_runtime(trusted):
    run = run_cluster_layer(trusted=trusted)
    return k8s_object(run, "ServingRuntime", "llama-3-1-8b-nim").inputs["spec"]


def _mounted(runtime: dict[str, Any], path: str) -> dict[str, Any]:
    mounts = [m for m in runtime["containers"][0]["volumeMounts"] if m["mountPath"] == path]
    assert len(mounts) == 1, f"{path} is mounted {len(mounts)} times"
    return next(v for v in runtime["volumes"] if v["name"] == mounts[0]["name"])


@pytest.mark.parametrize("path", ["/opt/nim/workspace", "/.cache", "/opt/nim/nginx", "/opt/nim/generated_configs", "/opt/nim/.config", "/opt/nim/.triton"])
def test_nim_writable_directory_is_a_bounded_emptydir(nim_runtime, path):
    assert path in NIM_SCRATCH_DIRS.values()
    volume = _mounted(nim_runtime, path)
    assert set(volume) == {"name", "emptyDir"} and volume["emptyDir"]["sizeLimit"].endswith("Gi")


def test_nim_model_cache_is_the_sized_emptydir_nim_cache_path_names(nim_runtime):
    assert _mounted(nim_runtime, "/opt/nim/.cache") == {"name": "nim-cache", "emptyDir": {"sizeLimit": "60Gi"}}
    env = {e["name"]: e.get("value") for e in nim_runtime["containers"][0]["env"]}
    assert env["NIM_CACHE_PATH"] == NIM_CACHE_PATH == "/opt/nim/.cache"


def test_nim_shared_memory_is_bounded_ram(nim_runtime):
    assert _mounted(nim_runtime, "/dev/shm") == {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}
