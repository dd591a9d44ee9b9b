"""An encrypted model through both stacks (the prod example's llama-ft): the trusted side binds the key and
the decryptor to the workload's measurement; the cloud side creates the storage and a pod whose init
container is exactly what that workload's agent policy runs."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import tomllib
from pathlib import Path

import pytest

from components import encrypted_model, nim
from model_crypto import manifest as manifests
from scripts.offline import StackRun
from stacks.config import ConfigError
from tests.cluster_layer_fixtures import (
    PROD_MANIFEST,
    encrypted_workload_output,
    run_cluster_layer,
    trusted_outputs,
)
from tests.conftest import Runner
from tests.test_config import problems
from tests.agent_requests import pod_container, policy_data
from tests.test_agent_policy import allows
from tests.test_decryptor_policy import RenderedPolicy, decryptor_request

ROOT = Path(__file__).resolve().parents[1]
KEY_URI = "kbs:///default/model-decryption/key.bin"
MODEL = "llama-ft"
MANIFEST_SHA256 = hashlib.sha256(PROD_MANIFEST.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def plan() -> tuple[StackRun, StackRun]:
    """The prod example, both stacks, the cloud reading the trusted stack's real outputs."""
    runner = Runner()
    trusted = runner.example("prod-trusted")
    return trusted, runner.example("prod-cloud", stack_outputs={"prod-trusted": trusted.stack_outputs})


def _object(run: StackRun, kind: str, name: str) -> dict:
    (found,) = [r for r in run.resources if r.inputs.get("kind") == kind and r.inputs.get("metadata", {}).get("name") == name]
    return found


def _policy(run: StackRun, workload: str) -> str:
    initdata = run.outputs["workloads"][workload]["initdata"]
    return tomllib.loads(gzip.decompress(base64.b64decode(initdata)).decode())["data"]["policy.rego"]


def test_the_example_manifest_is_what_the_workload_pins():
    manifest = manifests.parse(PROD_MANIFEST.read_bytes())
    assert manifest.sha256 == MANIFEST_SHA256 and manifest.key_resource == KEY_URI and manifest.workload == MODEL
    trusted = (ROOT / "stacks" / "Pulumi.prod-trusted.yaml").read_text()
    assert f"manifestSha256: {MANIFEST_SHA256}" in trusted


def test_the_trusted_side_binds_key_and_decryptor_to_the_workload(plan):
    trusted, _ = plan
    out = trusted.outputs["workloads"][MODEL]
    assert out["encryptedModel"] == {"decryptorImage": out["encryptedModel"]["decryptorImage"], "keyUri": KEY_URI, "manifestSha256": MANIFEST_SHA256}
    assert "@sha256:" in out["encryptedModel"]["decryptorImage"]
    assert out["resources"] == ["model-key", f"{MODEL}-tls-key"]  # and its TLS serving key
    # The NGC model's workload no longer receives the model key.
    assert "model-key" not in trusted.outputs["workloads"]["llama-3-1-8b"]["resources"]
    # Its agent policy runs the decryptor, for this manifest only.
    roles = [c["role"] for c in policy_data(_policy(trusted, MODEL))["containers"]]
    assert MANIFEST_SHA256 in _policy(trusted, MODEL) and roles == ["workload", "decryptor"]
    assert [c["role"] for c in policy_data(_policy(trusted, "llama-3-1-8b"))["containers"]] == ["workload"]


def test_the_cloud_creates_private_storage_and_a_read_sas(plan):
    _, cloud = plan
    account = cloud.named("model-storage-account").inputs
    assert account["accountName"] == "caiprodmodels" and account["allowBlobPublicAccess"] is False
    assert cloud.named("model-storage-container").inputs["publicAccess"] == "None"
    assert cloud.outputs["modelStorageContainerUrl"] == "https://caiprodmodels.blob.core.windows.net/models"
    sas = _object(cloud, "Secret", f"{MODEL}-model-sas")
    assert sas.is_secret("stringData") or sas.is_secret("stringData", "sas")
    assert "sp=r&" in sas.inputs["stringData"]["sas"]


def test_the_pod_decrypts_in_its_vm_into_memory_and_nim_serves_it_without_ngc(plan):
    trusted, cloud = plan
    predictor = _object(cloud, "InferenceService", MODEL).inputs["spec"]["predictor"]
    (init,) = predictor["initContainers"]
    pinned = trusted.outputs["workloads"][MODEL]["encryptedModel"]
    assert init["image"] == pinned["decryptorImage"]
    assert init["args"] == encrypted_model.decryptor_args(f"https://caiprodmodels.blob.core.windows.net/models/{MODEL}", KEY_URI, MANIFEST_SHA256)
    assert predictor["volumes"] == [{"name": "decrypted-model", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}]
    assert predictor["model"]["env"] == [{"name": "NIM_MODEL_PATH", "value": "/mnt/models"}]
    assert predictor["model"]["volumeMounts"] == [{"name": "decrypted-model", "mountPath": "/mnt/models", "readOnly": True}]
    assert predictor["annotations"]["io.katacontainers.config.hypervisor.cc_init_data"] == trusted.outputs["workloads"][MODEL]["initdata"]
    runtime = _object(cloud, "ServingRuntime", f"{MODEL}-nim").inputs
    assert [e["name"] for e in runtime["spec"]["containers"][0]["env"]] == ["NIM_CACHE_PATH", "NIM_SSL_MODE", "NIM_SSL_KEY_PATH", "NIM_SSL_CERTS_PATH"]
    secrets = {r.inputs["metadata"]["name"] for r in cloud.resources if r.inputs.get("kind") == "Secret" and r.inputs["metadata"].get("namespace") == MODEL}
    assert secrets == {f"{MODEL}-model-sas", f"{MODEL}-nvcr-pull", f"{MODEL}-tls-key"}  # the pull secret stays, no NGC key
    assert KEY_URI in cloud.outputs["kbsResourcesReferenced"]


def test_the_trusted_policy_runs_exactly_the_init_container_the_cloud_plans(plan):
    """End to end: the container the cloud stack asks for, as the agent sees it, under the real policy."""
    trusted, cloud = plan
    (init,) = _object(cloud, "InferenceService", MODEL).inputs["spec"]["predictor"]["initContainers"]
    engine = RenderedPolicy(_policy(trusted, MODEL))
    request = decryptor_request(image=init["image"], args=[*init["command"], *init["args"]], env=["AZURE_STORAGE_SAS_TOKEN=sv=x"])
    assert allows(engine, "CreateContainerRequest", request)
    # The other workload's policy does not.
    assert not allows(RenderedPolicy(_policy(trusted, "llama-3-1-8b")), "CreateContainerRequest", request)


@pytest.mark.parametrize("model", [MODEL, "llama-3-1-8b"])
def test_the_trusted_policy_runs_the_nim_container_the_cloud_plans(plan, model):
    """End to end: KServe's container for each model (the runtime's, merged with the predictor's model fields,
    in the predictor's pod), as the agent sees it, under its workload's policy; with a code-loading variable, not."""
    trusted, cloud = plan
    (runtime_container,) = _object(cloud, "ServingRuntime", f"{model}-nim").inputs["spec"]["containers"]
    predictor = _object(cloud, "InferenceService", model).inputs["spec"]["predictor"]
    spec = {**runtime_container, "env": [*runtime_container["env"], *predictor["model"].get("env", [])],
            "volumeMounts": [*runtime_container["volumeMounts"], *predictor["model"].get("volumeMounts", [])]}
    volumes = [*_object(cloud, "ServingRuntime", f"{model}-nim").inputs["spec"]["volumes"], *predictor.get("volumes", [])]
    # The image's own environment, process and working directory as the workload pins them (the policy's data).
    engine = RenderedPolicy(_policy(trusted, model))
    pinned = policy_data(engine.text)["containers"][0]
    request = pod_container(spec, volumes, image=trusted.outputs["workloads"][model]["image"], image_env=tuple(pinned["image_env"]),
                            args=tuple(pinned["args"] or ["/opt/nim/start_server.sh"]), cwd=pinned["cwd"] or "/", sealed=_ngc_key(cloud, model))
    # NIM serves TLS inside the pod VM: its settings, the sealed key's Secret and the certificate's ConfigMap.
    assert {nim.TLS_KEY_DIR, nim.TLS_CERT_DIR} <= {m["destination"] for m in request["OCI"]["Mounts"]}
    assert "NIM_SSL_MODE=TLS" in request["OCI"]["Process"]["Env"]
    assert allows(engine, "CreateContainerRequest", request), engine.refusals(request)
    request["OCI"]["Process"]["Env"].append("LD_PRELOAD=/var/run/secrets/kubernetes.io/serviceaccount/x.so")
    assert not allows(engine, "CreateContainerRequest", request)


def _ngc_key(cloud: StackRun, model: str) -> str | None:
    """The sealed pointer the cloud side puts in the model's NGC key Secret, if it has one."""
    secrets = [r.inputs for r in cloud.resources if r.inputs.get("kind") == "Secret" and r.inputs["metadata"]["name"] == f"{model}-ngc-api-key"]
    return secrets[0]["stringData"]["NGC_API_KEY"] if secrets else None


def test_the_model_key_goes_only_to_the_encrypted_workloads_measurement(plan):
    trusted, _ = plan
    policy = next(r for r in trusted.resources if r.inputs.get("kind") == "ConfigMap" and "resource-policy.rego" in r.inputs.get("data", {}))
    text = policy.inputs["data"]["resource-policy.rego"]
    releases = json.loads(text[text.index("releases := ") + len("releases := "): text.index("\ndefault allow")])
    (release,) = [r for r in releases if r["path"] == ["default", "model-decryption", "key.bin"]]
    assert release["pcr08"] == [trusted.outputs["workloads"][MODEL]["initdataPcr8"]]


# --- one-line config errors, before anything registers ---


def _error(set: dict | None = None, delete: tuple[str, ...] = (), trusted=None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        run_cluster_layer("prod-cloud", trusted=trusted or trusted_outputs(encrypted_workload=True), set=set, delete=delete)
    return err.value.lines()


def test_a_manifest_the_workload_does_not_pin_is_refused():
    trusted = trusted_outputs(workloads={"llama-3-1-8b": json.loads(json.dumps(trusted_outputs().values["workloads"]["llama-3-1-8b"])),
                                         MODEL: encrypted_workload_output(manifest_sha256="ee" * 32)})
    (line,) = _error(trusted=trusted)
    assert line == f"prod-cloud: models[1].encrypted.manifest: stacks/models/prod/llama-ft/manifest.json has sha256 {MANIFEST_SHA256}; workload llama-ft pins {'ee' * 32} (encryptedModel.manifestSha256 on the trusted side)"


def test_a_missing_manifest_file_is_one_line():
    (line,) = _error(set={"models.1.encrypted.manifest": "stacks/models/prod/nope/manifest.json"})
    assert line == "prod-cloud: models[1].encrypted.manifest: cannot read stacks/models/prod/nope/manifest.json (No such file or directory)"


def test_a_workload_without_encrypted_model_cannot_serve_one():
    (line,) = _error(set={"models.1.workload": "llama-3-1-8b", "models.1.image": "nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3",
                          "models.1.hostname": "llama-3-1-8b-llama-3-1-8b.apps.ocp-prod.example.com"})
    assert line.startswith("prod-cloud: models[1].source: is encrypted but workload llama-3-1-8b declares no encryptedModel")


def test_source_encrypted_needs_its_section_and_a_place():
    (line,) = _error(delete=("models.1.encrypted",))
    assert line.startswith("prod-cloud: models[1].encrypted: is required with source encrypted")
    (line,) = _error(delete=("modelStorage",))
    assert line == "prod-cloud: models[1].encrypted.url: is required unless modelStorage is set (the stack then serves the model from its container)"


def test_an_explicit_url_needs_no_stack_storage_and_no_sas():
    run = run_cluster_layer("prod-cloud", trusted=trusted_outputs(encrypted_workload=True), delete=("modelStorage",),
                            set={"models.1.encrypted.url": "https://mirror.example.org/models/llama-ft"})
    predictor = _object(run, "InferenceService", MODEL).inputs["spec"]["predictor"]
    assert predictor["initContainers"][0]["args"][1] == "https://mirror.example.org/models/llama-ft"
    assert predictor["initContainers"][0]["env"] == []
    assert not [r for r in run.resources if r.inputs.get("metadata", {}).get("name") == f"{MODEL}-model-sas"]



@pytest.mark.parametrize("edit, expected", [
    ({"set": {"workloads.1.resources": ["ngc-api-key"]}},
     "prod-trusted: workloads[1].encryptedModel.keyResource: 'model-key' is not in this workload's resources; list it there so KBS releases it to the workload"),
    ({"set": {"workloads.1.encryptedModel.decryptorImage": "registry.example.com/confidential-ai/model-decryptor:1.0"}},
     "prod-trusted: workloads[1].encryptedModel.decryptorImage: 'registry.example.com/confidential-ai/model-decryptor:1.0' is not an image pinned by digest"),
    ({"set": {"workloads.1.encryptedModel.manifestSha256": "not-a-sha"}},
     "prod-trusted: workloads[1].encryptedModel.manifestSha256: 'not-a-sha' is not a sha256 (64 lowercase hex characters)"),
])
def test_trusted_encrypted_model_rules_name_their_key(edit, expected):
    lines = problems("prod-trusted", **edit)
    assert any(line.startswith(expected) for line in lines), lines
