"""The offline plan: what it writes, that it is deterministic, and that secrets stay "[secret]"."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from scripts.offline.stackfile import PLACEHOLDER_PREFIX, STACKS_DIR
from scripts import plan
from scripts.plan import dump_manifest, kubernetes_manifests, main, plan_environment, write_plan
from tests.stack_edits import UNKNOWN_ENV, known_environments


@pytest.fixture(scope="module", params=["dev", "prod"])
def planned(request, tmp_path_factory, example_plan) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp(f"plan-{request.param}")
    write_plan(example_plan(request.param), out)
    return request.param, out


def written_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_plan_writes_every_file_for_both_stacks(planned):
    env, out = planned
    for stack in (f"{env}-trusted", f"{env}-cloud"):
        resources = json.loads((out / stack / "resources.json").read_text())
        assert resources, f"{stack} registered nothing"
        assert [r["urn"] for r in resources] == sorted(r["urn"] for r in resources)
        for entry in resources:
            assert set(entry) == {"urn", "type", "name", "parent", "provider", "dependsOn", "protect", "inputs"}
        assert isinstance(json.loads((out / stack / "outputs.json").read_text()), dict)
        assert (out / stack / "manifests").is_dir()
    assert "```mermaid" in (out / "topology.md").read_text()


def test_manifests_are_kubernetes_objects(planned):
    _, out = planned
    for path in out.rglob("manifests/*.yaml"):
        manifest = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        assert list(manifest)[:3] == ["apiVersion", "kind", "metadata"], path.name
        assert manifest["metadata"]["name"], path.name
        if manifest["kind"] == "Secret":
            for field in ("data", "stringData"):
                value = manifest.get(field, {})
                # A field secret as a whole stays one "[secret]", never spelt out as keys; a value is redacted
                # unless it is a sealed pointer, shown as the KBS resource it names.
                assert value == "[secret]" or "[" not in value, path.name
                assert all(v == "[secret]" or re.fullmatch(r"sealed pointer -> kbs:///default/[^/]+/[^/]+", v) for v in dict(value).values()), path.name


# Keys the consumers read: CAA reads peer-pods-secret's AZURE_* (OSC), NIM reads NGC_API_KEY, kubelet
# .dockerconfigjson; each trusted KBS Secret is keyed by its kbsResources `key`.
SECRET_KEYS = {
    "cloud": {
        "openshift-sandboxed-containers-operator--secret--peer-pods-secret.yaml": ["AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_SUBSCRIPTION_ID", "AZURE_TENANT_ID"],
    },
    "trusted": {
        "trustee-operator-system--secret--ngc-api-key.yaml": ["api-key"],
        "trustee-operator-system--secret--kbs-https-key.yaml": ["privateKey"],
        "trustee-operator-system--secret--kbs-token-key.yaml": ["token.key"],
    },
}
SECRET_KEY_NAME = re.compile(r"^[-._a-zA-Z0-9]+$")  # what Kubernetes accepts as a Secret data key


def test_secret_manifests_keep_their_key_names_with_redacted_values(planned):
    env, out = planned
    for role, files in SECRET_KEYS.items():
        for name, keys in files.items():
            manifest = yaml.load((out / f"{env}-{role}" / "manifests" / name).read_text(), Loader=yaml.CSafeLoader)
            assert manifest["stringData"] == {key: "[secret]" for key in keys}, name
    for path in out.rglob("manifests/*--secret--*.yaml"):
        manifest = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        keys = [*manifest.get("data", {}), *manifest.get("stringData", {})]
        assert keys and all(SECRET_KEY_NAME.match(key) for key in keys), f"{path.name}: {keys}"


def test_a_sealed_pointer_shows_as_the_kbs_resource_it_names_and_real_secrets_stay_redacted(example_plan):
    cloud = next(run for run in example_plan("dev") if run.stack == "dev-cloud")
    secrets = {name: manifest.get("stringData") for name, manifest in kubernetes_manifests(cloud) if manifest["kind"] == "Secret"}
    # The cloud cluster holds pointers, not the NGC key or the serving key: the plan says so.
    assert secrets["llama-3-1-8b--secret--llama-3-1-8b-ngc-api-key.yaml"] == {"NGC_API_KEY": "sealed pointer -> kbs:///default/ngc-api-key/api-key"}
    assert secrets["llama-3-1-8b--secret--llama-3-1-8b-tls-key.yaml"] == {"tls.key": "sealed pointer -> kbs:///default/inference-tls-keys/llama-3-1-8b"}
    # A pull credential is a real secret of the cloud stack's own.
    assert secrets["llama-3-1-8b--secret--llama-3-1-8b-nvcr-pull.yaml"] == {".dockerconfigjson": "[secret]"}


def test_manifests_parse_back_to_what_the_stack_sends(planned, example_plan):
    env, out = planned
    for run in example_plan(env):
        for filename, manifest in kubernetes_manifests(run):
            assert yaml.load((out / run.stack / "manifests" / filename).read_text(), Loader=yaml.CSafeLoader) == manifest, filename


def test_multi_line_values_are_literal_blocks(planned):
    _, out = planned
    text = next(out.rglob("manifests/*--configmap--resource-policy.yaml")).read_text()
    assert "resource-policy.rego: |\n" in text


def test_plan_is_byte_identical_across_runs(planned, tmp_path):
    env, out = planned
    write_plan(plan_environment(env), tmp_path)
    assert written_files(tmp_path) == written_files(out)


def test_rewriting_a_plan_deletes_manifests_of_objects_gone_and_rewrites_the_rest(planned, tmp_path, example_plan):
    env, out = planned
    target = tmp_path / "out"
    shutil.copytree(out, target)
    gone = target / f"{env}-cloud" / "manifests" / "gone--configmap--removed.yaml"
    gone.write_text("kind: ConfigMap\n")
    edited = sorted(target.rglob("manifests/*.yaml"))[0]
    edited.write_text("edited by hand\n")
    write_plan(example_plan(env), target)
    assert not gone.exists()
    assert written_files(target) == written_files(out)


def test_secret_placeholders_never_written(planned):
    _, out = planned
    for name, content in written_files(out).items():
        assert PLACEHOLDER_PREFIX.encode() not in content, f"a secret config value reached {name}"


def test_cloud_stack_reference_sees_trusted_outputs(planned):
    env, out = planned
    trusted_outputs = json.loads((out / f"{env}-trusted" / "outputs.json").read_text())
    cloud_outputs = json.loads((out / f"{env}-cloud" / "outputs.json").read_text())
    assert cloud_outputs["kbsUrl"] == trusted_outputs["kbsUrl"]


def test_plan_prints_a_tree_per_stack_and_the_programs_warnings(capsys, tmp_path):
    assert main(["dev", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("dev-trusted: ")
    assert "\ndev-cloud: " in printed.out
    # dev declares why it pins no SNP launch measurement: a note, on stderr; its workloads pin their processes: no warning.
    assert [line for line in printed.err.splitlines() if line.startswith("note: ")] == [
        "note: dev-trusted: referenceValues.measurements is empty on purpose (dev pod VMs not measured yet): the CPU policy "
        "accepts any SNP launch measurement of Azure's paravisor",
    ]
    assert [line for line in printed.err.splitlines() if line.startswith("warning: ")] == []


# In process: the real entry point's exit status and stderr are tests/test_bad_input.py's (a real interpreter).
def test_broken_config_exits_2_with_one_line_per_problem(tmp_path, capsys):
    stacks = tmp_path / "stacks"
    shutil.copytree(STACKS_DIR, stacks, ignore=shutil.ignore_patterns("*.py", "__pycache__", "config"))
    cloud = stacks / "Pulumi.dev-cloud.yaml"
    document = yaml.load(cloud.read_text(), Loader=yaml.CSafeLoader)
    document["config"]["confidential-ai:peerPods"]["instanceSizes"].append("Standard_D4s_v5")
    document["config"]["confidential-ai:azure"]["location"] = "East US 2"
    cloud.write_text(yaml.safe_dump(document))
    code = main(["dev", "--stacks-dir", str(stacks), "--out", str(tmp_path / "out")])
    stderr = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in stderr
    assert stderr.splitlines() == [
        "dev-cloud: azure.location: 'East US 2' is not an Azure region name (use the programmatic form, e.g. eastus2)",
        "dev-cloud: peerPods.instanceSizes[2]: Standard_D4s_v5 is not a confidential VM size",
    ]


def test_unknown_environment_is_one_line(tmp_path, capsys):
    code = main([UNKNOWN_ENV, "--out", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"{UNKNOWN_ENV}-trusted: no stack file stacks/Pulumi.{UNKNOWN_ENV}-trusted.yaml (environments there: {known_environments()})"


# Text that trips YAML emitters: indicators, quotes, blank lines, tabs, non-ASCII, control characters.
_YAML_TEXT = st.text(alphabet=st.sampled_from(list("ab Z09:#-?*&!|>'\"%@`{}[],.=~\n\t") + ["é", "\x85", "\u2028", "\x00", "\ufeff"]), max_size=40)
_YAML_VALUES = st.recursive(
    st.one_of(_YAML_TEXT, st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_YAML_TEXT, inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_YAML_TEXT, _YAML_VALUES, min_size=1, max_size=5))
def test_manifests_are_the_same_bytes_whichever_yaml_emitter_writes_them(document):
    # dump_manifest hands libyaml only what it writes exactly as PyYAML does; the rest goes to PyYAML.
    python = yaml.dump(document, Dumper=plan._ManifestDumper, sort_keys=False, width=120)
    assert dump_manifest(document) == python
    if plan._libyaml_safe(document):
        assert yaml.dump(document, Dumper=plan._CManifestDumper, sort_keys=False, width=120) == python


def test_libyaml_writes_every_example_manifest_but_those_with_tabs(example_plan):
    def strings(value):
        if isinstance(value, dict):
            return [s for k, v in value.items() for s in (k, *strings(v))]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return [value] if isinstance(value, str) else []

    for run in example_plan("dev"):
        for filename, manifest in kubernetes_manifests(run):
            # Rego indents with tabs; everything else in a plan is printable ASCII.
            assert plan._libyaml_safe(manifest) == (not any("\t" in s for s in strings(manifest))), filename
