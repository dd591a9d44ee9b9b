"""`python -m scripts.capture_pod`: a pod per pod VM size that prints its evidence, with no secrets and an
initdata of its own whose agent policy runs only the capture command (requests shaped as the Kata agent
receives them: tests/fixtures/kata-genpolicy/SOURCES.md; both Rego engines, tests/rego_engines.py)."""

from __future__ import annotations

import base64
import gzip
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.initdata import Initdata
from components.nim import INITDATA_ANNOTATION, MACHINE_TYPE_ANNOTATION
from scripts import capture_pod
from tests.conftest import example_config
from tests.rego_engines import evaluate

GENPOLICY = Path(__file__).parent / "fixtures" / "kata-genpolicy"
IMAGE = "registry.access.redhat.com/ubi9/ubi-minimal@sha256:" + "ab" * 32
IMAGE_ANNOTATION = "io.kubernetes.cri.image-name"  # containerd's (kata-containers kata_agent.go)


def sizes() -> list[str]:
    config, _ = example_config("dev-cloud")
    return json.loads(config["confidential-ai:peerPods"])["instanceSizes"]


@pytest.fixture(scope="module")
def rendered(example_plan) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    trusted = next(run for run in example_plan("dev") if run.stack == "dev-trusted").outputs
    return capture_pod.capture_pods(IMAGE, sizes(), "capture", trusted["kbsUrl"], trusted["kbsCaCert"]), trusted


def test_the_command_prints_the_pods_as_yaml(rendered, tmp_path, capsys):
    pods, trusted = rendered
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(trusted))
    assert capture_pod.main(["--env", "dev", "--image", IMAGE, "--trusted-outputs", str(path), "--namespace", "capture"]) == 0
    assert list(yaml.safe_load_all(capsys.readouterr().out)) == pods


def initdata(pod: dict[str, Any]) -> dict[str, Any]:
    document = gzip.decompress(base64.b64decode(pod["metadata"]["annotations"][INITDATA_ANNOTATION]))
    return tomllib.loads(document.decode())


def test_one_pod_per_pod_vm_size_of_the_environment(rendered):
    pods, _ = rendered
    assert [p["metadata"]["annotations"][MACHINE_TYPE_ANNOTATION] for p in pods] == sizes()
    assert len({p["metadata"]["name"] for p in pods}) == len(sizes())
    assert all(p["spec"]["runtimeClassName"] == "kata-remote" and p["metadata"]["namespace"] == "capture" for p in pods)


def test_the_pods_carry_no_secret_and_nothing_from_the_cluster(rendered):
    pods, _ = rendered
    for pod in pods:
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
        assert not {"volumes", "imagePullSecrets"} & spec.keys()
        (container,) = spec["containers"]
        assert not {"env", "envFrom", "volumeMounts", "args"} & container.keys()
        assert container["command"][0] == "curl" and container["command"][-1].startswith("http://127.0.0.1:8006/aa/evidence?runtime_data=")


def test_the_capture_initdata_is_no_workload_s(rendered):
    pods, trusted = rendered
    data = initdata(pods[0])["data"]
    assert trusted["kbsUrl"] in data["aa.toml"]
    document = gzip.decompress(base64.b64decode(pods[0]["metadata"]["annotations"][INITDATA_ANNOTATION]))
    assert Initdata(document).pcr8 not in {w["initdataPcr8"] for w in trusted["workloads"].values()}


def container_request(image: str, args: list[str]) -> dict[str, Any]:
    request = json.loads((GENPOLICY / "createcontainer-container.json").read_text())
    request["OCI"]["Annotations"][IMAGE_ANNOTATION] = image
    request["OCI"]["Annotations"].pop("io.kubernetes.cri-o.ImageName", None)
    for storage in request["storages"]:
        if storage["driver"] == "image_guest_pull":
            storage["source"] = image
    request["OCI"]["Process"]["Args"] = args
    return request


def test_the_agent_policy_runs_the_capture_command_and_nothing_else(rendered):
    pods, _ = rendered
    modules = {"policy.rego": initdata(pods[0])["data"]["policy.rego"]}
    command = pods[0]["spec"]["containers"][0]["command"]
    assert evaluate(modules, "data.agent_policy.CreateContainerRequest", container_request(IMAGE, command)) is True
    assert evaluate(modules, "data.agent_policy.CreateContainerRequest", container_request(IMAGE, ["/bin/sh", "-c", "env"])) is not True
    other = "registry.access.redhat.com/ubi9/ubi@sha256:" + "cd" * 32
    assert evaluate(modules, "data.agent_policy.CreateContainerRequest", container_request(other, command)) is not True
    exec_request = {"container_id": "c" * 64, "exec_id": "e", "string_user": None, "process": {"Args": ["/bin/sh"], "Env": []}}
    assert evaluate(modules, "data.agent_policy.ExecProcessRequest", exec_request) is not True
    assert evaluate(modules, "data.agent_policy.ReadStreamRequest", {}) is True, "the evidence is read from the log"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--image", "registry.access.redhat.com/ubi9/ubi-minimal:latest"],
         "python -m scripts.capture_pod: error: argument --image: 'registry.access.redhat.com/ubi9/ubi-minimal:latest' is not an image "
         "pinned by digest (repo@sha256:<64 hex>) with curl in it (see --help)"),
        (["--image", IMAGE, "--size", "Standard_NCC80ads_H100_v5"],
         "python -m scripts.capture_pod: error: --size Standard_NCC80ads_H100_v5 is not in dev-cloud's peerPods.instanceSizes"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"kbsUrl": "https://kbs.example.com", "kbsCaCert": "-----BEGIN CERTIFICATE-----"}))
    try:
        status = capture_pod.main(["--env", "dev", "--trusted-outputs", str(outputs), *argv])
    except SystemExit as exited:
        status = exited.code
    assert status == 2
    assert capsys.readouterr().err.startswith(message)
