"""Each workload's Kata agent policy, evaluated by real Rego engines on requests shaped like the agent's.

CreateContainerRequest inputs come from kata-containers' genpolicy test data (tests/fixtures/kata-genpolicy,
provenance in its SOURCES.md); only the guest-pulled image is changed. Each request is evaluated as the
agent does: `data.agent_policy.<Request>` must be exactly `true` (kata-containers
src/agent/policy/src/policy.rs `allow_request`), with regorus, the engine the agent embeds, and regopy
(rego-cpp), which must agree (tests/rego_engines.py).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from components.initdata import AGENT_REQUESTS, DENIED_REQUESTS, AgentPolicyArgs, render_agent_policy
from tests.rego_engines import evaluate

FIXTURES = Path(__file__).parent / "fixtures" / "kata-genpolicy"
REPOSITORY = "nvcr.io/nim/meta/llama-3.1-8b-instruct"
DIGEST = "sha256:" + "ab" * 32
IMAGE = f"{REPOSITORY}@{DIGEST}"
# Image annotation per CRI runtime (kata-containers src/runtime/virtcontainers/kata_agent.go).
IMAGE_ANNOTATIONS = ("io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName")


class Policy:
    """One workload's rendered agent policy, decided as the agent asks: by both engines, which must agree."""

    def __init__(self, **args: Any):
        self.modules = {"policy.rego": render_agent_policy(AgentPolicyArgs(IMAGE, **args))}

    def decide(self, request: str, input_: dict[str, Any]) -> Any:
        return evaluate(self.modules, f"data.agent_policy.{request}", input_)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy()


def allows(policy: Policy, request: str, input_: dict[str, Any]) -> bool:
    return policy.decide(request, input_) is True


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"createcontainer-{name}.json").read_text())


def container(image: str, annotation: str = IMAGE_ANNOTATIONS[0]) -> dict[str, Any]:
    """The genpolicy application container, its guest-pulled image replaced by `image`."""
    request = fixture("container")
    annotations = request["OCI"]["Annotations"]
    for key in IMAGE_ANNOTATIONS:
        annotations.pop(key, None)
    annotations[annotation] = image
    (storage,) = [s for s in request["storages"] if s["driver"] == "image_guest_pull"]
    storage["source"] = image
    return request


# --- What runs -------------------------------------------------------------------------------


def test_fixtures_are_the_shapes_the_policy_reads():
    """Guards the fixtures: the genpolicy container is guest-pulled by digest, the sandbox is pause."""
    assert [s["source"] for s in fixture("container")["storages"] if s["driver"] == "image_guest_pull"][0].count("@sha256:") == 1
    sandbox = fixture("sandbox")
    assert [s["source"] for s in sandbox["storages"] if s["driver"] == "image_guest_pull"] == ["pause"]
    assert sandbox["OCI"]["Annotations"]["io.kubernetes.cri.container-type"] == "sandbox"


def test_the_pause_container_runs(policy):
    assert allows(policy, "CreateContainerRequest", fixture("sandbox"))


@pytest.mark.parametrize("annotation", IMAGE_ANNOTATIONS, ids=["containerd", "cri-o"])
@pytest.mark.parametrize("image", [IMAGE, f"{REPOSITORY}:1.3.3@{DIGEST}"], ids=["digest", "tag-and-digest"])
def test_the_pinned_image_runs_in_both_reported_forms(policy, image, annotation):
    assert allows(policy, "CreateContainerRequest", container(image, annotation))


@pytest.mark.parametrize(
    "image",
    [
        pytest.param("ghcr.io/burgerdev/weird-images/gid@sha256:bdbb485bb9e3baf381a2957b9369b6051c6113097a5f8dcee27faff17624a2c0", id="another-image"),
        pytest.param(f"{REPOSITORY}:1.3.3", id="same-repository-by-tag"),
        pytest.param(f"{REPOSITORY}@sha256:" + "cd" * 32, id="same-repository-other-digest"),
        pytest.param(f"{REPOSITORY}-evil@{DIGEST}", id="repository-prefix"),
        pytest.param(f"{REPOSITORY}:x/../../evil@{DIGEST}", id="tag-with-path"),
        pytest.param(f"evil.io/{REPOSITORY}@{DIGEST}", id="other-registry"),
        pytest.param("pause", id="pause-with-an-application-command"),
    ],
)
def test_any_other_image_is_refused(policy, image):
    assert not allows(policy, "CreateContainerRequest", container(image))


def test_a_second_app_container_is_refused(policy):
    """A sidecar the pod spec (or the host) adds runs its own image, never the workload's pin."""
    sidecar = container("registry.access.redhat.com/ubi9/ubi-minimal@sha256:" + "ef" * 32)
    sidecar["OCI"]["Annotations"]["io.kubernetes.cri.container-name"] = "debug"
    assert not allows(policy, "CreateContainerRequest", sidecar)


def test_a_container_with_two_guest_pulled_images_is_refused(policy):
    request = container(IMAGE)
    extra = copy.deepcopy(request["storages"][0])
    extra["source"] = "docker.io/library/busybox@sha256:" + "12" * 32
    request["storages"].append(extra)
    assert not allows(policy, "CreateContainerRequest", request)


def test_a_container_without_a_guest_pulled_image_is_refused(policy):
    request = container(IMAGE)
    request["storages"] = [s for s in request["storages"] if s["driver"] != "image_guest_pull"]
    assert not allows(policy, "CreateContainerRequest", request)


# --- What the host may do to a running workload ------------------------------------------------


def test_exec_set_policy_and_stdin_writes_are_refused(policy):
    exec_request = {"container_id": "c" * 64, "exec_id": "e", "string_user": None, "process": {"Args": ["/bin/sh", "-c", "env"], "Env": []}}
    assert not allows(policy, "ExecProcessRequest", exec_request)
    assert not allows(policy, "SetPolicyRequest", {"policy": "package agent_policy\ndefault ExecProcessRequest := true\n"})
    assert not allows(policy, "WriteStreamRequest", {"container_id": "c" * 64, "exec_id": "", "data": "ZWNobw=="})


def copy_file(path: str, file_type: str = "Regular", symlink_target: str | None = None) -> dict[str, Any]:
    """A PolicyCopyFileRequest (kata-containers src/agent/policy/src/policy.rs)."""
    return {"path": path, "file_type": file_type, "symlink_target": symlink_target, "file_size": 12, "file_mode": 0o644, "dir_mode": 0o750, "uid": 0, "gid": 0, "offset": 0}


SHARED = "/run/kata-containers/shared/containers/"


@pytest.mark.parametrize(
    "request_",
    [
        copy_file(SHARED + "c0ffee-hosts"),
        copy_file(SHARED + "c0ffee-9f1d/watchable/ngc-api-key/NGC_API_KEY"),
        copy_file(SHARED + "c0ffee-9f1d/watchable/ngc-api-key", "Directory"),
        copy_file(SHARED + "c0ffee-9f1d/watchable/ngc-api-key/..data", "Symlink", "..2026_12_01_10_00_00.1"),
    ],
    ids=["hosts", "secret-volume-file", "secret-volume-dir", "volume-symlink"],
)
def test_copies_into_the_shared_directory_are_allowed(policy, request_):
    assert allows(policy, "CopyFileRequest", request_)


@pytest.mark.parametrize(
    "request_",
    [
        copy_file("/etc/confidential-containers/cdh.toml"),
        copy_file("/run/kata-containers/shared/containersx/evil"),
        copy_file(SHARED + "../../../etc/shadow"),
        copy_file(SHARED + "c0ffee/link", "Symlink", "/etc"),
        copy_file(SHARED + "c0ffee/link", "Symlink", "../../../../etc"),
    ],
    ids=["outside", "sibling-prefix", "traversal", "absolute-symlink", "traversing-symlink"],
)
def test_copies_outside_the_shared_directory_are_refused(policy, request_):
    assert not allows(policy, "CopyFileRequest", request_)


def test_read_stream_is_allowed_by_default_and_configurable(policy):
    logs = {"container_id": "c" * 64, "exec_id": "", "len": 4096}
    assert allows(policy, "ReadStreamRequest", logs)
    assert not allows(Policy(allow_read_stream=False), "ReadStreamRequest", logs)


def test_every_agent_request_is_decided(policy):
    """An undefined rule fails the request in the agent, so each one the agent asks about is a boolean."""
    decisions = {request: policy.decide(request, {}) for request in AGENT_REQUESTS}
    assert all(isinstance(decision, bool) for decision in decisions.values()), decisions
    refused = {request for request, allowed in decisions.items() if not allowed}
    # With an empty input, only the rules with conditions refuse besides the always-denied ones.
    assert refused == {*DENIED_REQUESTS, "CreateContainerRequest", "CopyFileRequest"}
    assert len(AGENT_REQUESTS) == len(set(AGENT_REQUESTS)) == 41


def test_only_a_pinned_image_renders():
    with pytest.raises(ValueError, match="is not pinned by digest"):
        render_agent_policy(AgentPolicyArgs(f"{REPOSITORY}:1.3.3"))


def test_a_pinned_command_line_refuses_any_other(policy):
    """Pinned, the host cannot run the workload's own image with a command that prints its secrets."""
    entrypoint = fixture("container")["OCI"]["Process"]["Args"]
    pinned = Policy(args=tuple(entrypoint))
    assert allows(pinned, "CreateContainerRequest", container(IMAGE))
    exfiltrate = container(IMAGE)
    exfiltrate["OCI"]["Process"]["Args"] = ["/bin/sh", "-c", "echo $NGC_API_KEY"]
    assert not allows(pinned, "CreateContainerRequest", exfiltrate)
    assert allows(policy, "CreateContainerRequest", exfiltrate), "unpinned: any command of the pinned image"
    assert allows(pinned, "CreateContainerRequest", fixture("sandbox")), "the pause container keeps its own command"
