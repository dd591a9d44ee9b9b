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
from components import encrypted_model, nim
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


# --- The workload's own container: what decides its code besides the image ---------------------------
# NIM's pod as Kubernetes and KServe start it: the pinned image's config Env (the runtime passes it on:
# kata-containers src/tools/genpolicy/src/registry.rs get_process), the env components/nim.py renders with
# its Secret resolved to the sealed pointer, KServe's INFERENCE_SERVICE_NAME (kserve/kserve
# pkg/controller/v1beta1/inferenceservice/components/predictor.go, commit aaac4e29), service links of the
# namespace (genpolicy-settings.json allow_env_regex shapes), and each volume as the kata runtime hands it
# to the agent (kata-containers src/runtime/virtcontainers/kata_agent.go handleLocalStorage,
# handleEphemeralStorage at 7c6ba40c): an emptyDir is a storage the agent creates in the pod VM; a Secret or
# ConfigMap (the TLS key and certificate) is files the runtime copies into the shared directory, named
# <container id>-<random>-<mount path's last element> (fs_share_linux.go shareFileName, no file sharing in peer pods).
# NVIDIA publishes no Dockerfile for NIM; these entries follow the NIM image's Env as a third party copied
# it (Clarifai/clarifai-python PR #444, clarifai/runners/dockerfile_template/Dockerfile.nim): PYTHONPATH and
# LD_LIBRARY_PATH under /opt. A workload lists its image's real ones in `imageEnv`.
NIM_IMAGE_ENV = (
    "PATH=/opt/nim/llm/.venv/bin:/opt/hpcx/ompi/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONPATH=:/opt/nim/llm/.venv/lib/python3.10/site-packages:/opt/nim/llm",
    "LD_LIBRARY_PATH=/opt/hpcx/ompi/lib:/opt/nim/llm/.venv/lib/python3.10/site-packages/tensorrt_llm/libs:/usr/local/nvidia/lib64",
    "NVIDIA_VISIBLE_DEVICES=all",
)
SANDBOX_ID = "8667fea11fc4fc70d427cc3645950ac83cc7d33ca515a8774ab95043f0096bb8"  # the fixture's io.kubernetes.cri.sandbox-id
SEALED = "sealed.eyJhbGciOiJFUzI1NiJ9.eyJwcm92aWRlciI6Imticy.c2lnbmF0dXJl"


def nim_policy(**args: Any) -> Policy:
    return Policy(image_env=NIM_IMAGE_ENV, writable_dirs=nim.WRITABLE_DIRS, **args)


@pytest.fixture(scope="module")
def workload_policy() -> Policy:
    return nim_policy()


def _volume_mount(mount: dict[str, Any], volume: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """One pod volumeMount as the agent receives it; an emptyDir adds the storage the agent creates."""
    name = volume["name"]
    if "emptyDir" not in volume:
        assert {"secret", "configMap"} & volume.keys(), volume
        copied = f"{SHARED}gid-0123456789abcdef-{mount['mountPath'].rsplit('/', 1)[-1]}"
        return {"destination": mount["mountPath"], "options": ["rbind", "rprivate", "ro" if mount.get("readOnly") else "rw"], "source": copied, "type_": "bind"}
    memory = volume["emptyDir"].get("medium") == "Memory"
    source = f"/run/kata-containers/sandbox/ephemeral/{name}" if memory else f"{SHARED}{SANDBOX_ID}/rootfs/local/{name}"
    request["storages"].append(
        {"driver": "ephemeral" if memory else "local", "driver_options": [], "fs_group": None, "fstype": "tmpfs" if memory else "local",
         "mount_point": source, "options": [] if memory else ["mode=0777"], "source": "tmpfs" if memory else "local"}
    )
    return {"destination": mount["mountPath"], "options": ["rbind", "rprivate", "ro" if mount.get("readOnly") else "rw"], "source": source, "type_": "bind"}


def pod_container(spec: dict[str, Any], volumes: list[dict[str, Any]], image_env: tuple[str, ...] = NIM_IMAGE_ENV) -> dict[str, Any]:
    """A pod's container (its Kubernetes spec, the pod's volumes) in the CreateContainerRequest the agent receives."""
    request = container(IMAGE)
    oci = request["OCI"]
    oci["Annotations"]["io.kubernetes.cri.container-name"] = spec["name"]
    rendered = [f"{e['name']}={e['value'] if 'value' in e else SEALED}" for e in spec.get("env", [])]
    services = ["LLAMA_PREDICTOR_SERVICE_HOST=172.30.12.7", "LLAMA_PREDICTOR_SERVICE_PORT=80", "LLAMA_PREDICTOR_PORT=tcp://172.30.12.7:80",
                "LLAMA_PREDICTOR_PORT_80_TCP=tcp://172.30.12.7:80", "LLAMA_PREDICTOR_PORT_80_TCP_PROTO=tcp"]
    oci["Process"]["Env"] = [*image_env, *oci["Process"]["Env"][1:], *services, *rendered, "INFERENCE_SERVICE_NAME=llama"]
    by_name = {v["name"]: v for v in volumes}
    # A volume at /dev/shm replaces the sandbox's (containerd CRI adds that one only when none is mounted there).
    oci["Mounts"] = [m for m in oci["Mounts"] if m["destination"] != "/dev/shm"]
    oci["Mounts"] += [_volume_mount(m, by_name[m["name"]], request) for m in spec.get("volumeMounts", [])]
    return request


def nim_container(encrypted: bool = False, mutual: bool = False, env: list[str] = (), mounts: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """The predictor's kserve-container, as components/nim.py renders it, in the request the agent receives."""
    spec = {"name": "kserve-container", "env": nim.container_env(None if encrypted else "llama-ngc-api-key", mutual), "volumeMounts": nim.volume_mounts()}
    volumes = nim.volumes("llama", 40)
    if encrypted:
        spec["env"] += encrypted_model.nim_env()
        spec["volumeMounts"].append(encrypted_model.nim_volume_mount())
        volumes.append({"name": encrypted_model.VOLUME, "emptyDir": {"medium": "Memory"}})
    request = pod_container(spec, volumes)
    request["OCI"]["Process"]["Env"] += list(env)
    request["OCI"]["Mounts"] += list(mounts)
    return request


def host_volume(destination: str, name: str = "evil") -> dict[str, Any]:
    """A ConfigMap or Secret volume: files the host copies into the shared directory."""
    return {"destination": destination, "options": ["rbind", "rprivate", "ro"], "source": f"{SHARED}watchable/kserve-container-0123456789abcdef-{name}", "type_": "bind"}


@pytest.mark.parametrize("encrypted, mutual", [(False, False), (True, False), (False, True)], ids=["ngc-model", "encrypted-model", "mutual-tls"])
def test_the_nim_container_runs_as_kserve_starts_it(workload_policy, encrypted, mutual):
    """With its TLS settings, the sealed key's Secret and the certificate's ConfigMap: data outside the code directories."""
    request = nim_container(encrypted, mutual)
    destinations = {m["destination"] for m in request["OCI"]["Mounts"]}
    assert {"/opt/nim/.cache", "/opt/nim/workspace", "/dev/termination-log", "/var/run/secrets/kubernetes.io/serviceaccount", nim.TLS_KEY_DIR, nim.TLS_CERT_DIR} <= destinations
    assert {"NIM_SSL_MODE=MTLS" if mutual else "NIM_SSL_MODE=TLS", f"NIM_SSL_KEY_PATH={nim.TLS_KEY_DIR}/{nim.TLS_KEY_FILE}"} <= set(request["OCI"]["Process"]["Env"])
    assert allows(workload_policy, "CreateContainerRequest", request)
    assert allows(workload_policy, "CreateContainerRequest", fixture("sandbox"))


def test_a_workload_that_does_not_list_its_images_loader_settings_does_not_run():
    """Fails closed: the image's own PYTHONPATH and LD_LIBRARY_PATH need `imageEnv`."""
    assert not allows(Policy(writable_dirs=nim.WRITABLE_DIRS), "CreateContainerRequest", nim_container())


@pytest.mark.parametrize(
    "entry",
    [
        "LD_PRELOAD=/var/run/secrets/kubernetes.io/serviceaccount/evil.so",
        "LD_LIBRARY_PATH=/mnt/evil:/opt/hpcx/ompi/lib",
        "PYTHONPATH=/mnt/evil",
        "PYTHONSTARTUP=/mnt/evil/start.py",
        "PYTHONUSERBASE=/mnt/evil",
        "PYTHONWARNINGS=ignore::evil.Warning",
        "BASH_ENV=/mnt/evil/env.sh",
        "BASH_FUNC_python3%%=() {  cat /proc/self/environ; }",
        "CUDA_INJECTION64_PATH=/mnt/evil/inject.so",
        "NCCL_NET_PLUGIN=/mnt/evil/plugin.so",
        "OPENSSL_CONF=/mnt/evil/openssl.cnf",
    ],
)
def test_environment_that_loads_code_is_refused_in_the_workload(workload_policy, entry):
    """Beside the image's own entries: the same name with another value is the host's, and refused."""
    assert not allows(workload_policy, "CreateContainerRequest", nim_container(env=[entry]))


@pytest.mark.parametrize(
    "mount",
    [
        pytest.param(host_volume("/opt/nim/llm"), id="configmap-over-nim-code"),
        pytest.param(host_volume("/opt/nim"), id="configmap-at-opt-nim"),
        pytest.param(host_volume("/opt/nvidia"), id="configmap-over-the-entrypoint"),
        pytest.param(host_volume("/usr/lib/python3/dist-packages"), id="configmap-over-usr"),
        pytest.param(host_volume("/etc/ld.so.preload"), id="configmap-at-ld-so-preload"),
        pytest.param(host_volume("/etc/nim-tls/key", "key"), id="secret-under-etc"),
        pytest.param(host_volume("/"), id="configmap-at-root"),
        pytest.param(host_volume("/opt/nim/workspace"), id="configmap-at-a-writable-dir"),
        pytest.param({"destination": "/opt/nim/llm", "options": ["rbind"], "source": "/run/kata-containers/sandbox/ephemeral/nim-workspace", "type_": "bind"}, id="guest-volume-over-nim-code"),
    ],
)
def test_a_volume_over_the_images_code_is_refused(workload_policy, mount):
    assert not allows(workload_policy, "CreateContainerRequest", nim_container(mounts=[mount]))


@pytest.mark.parametrize("driver", ["local", "ephemeral"])
def test_host_files_passed_off_as_an_emptydir_are_refused(workload_policy, driver):
    """The storages are the host's word too: one that names a ConfigMap's copy as its mount point is no emptyDir."""
    configmap = host_volume("/opt/nim/workspace")
    request = nim_container()
    request["OCI"]["Mounts"] = [m for m in request["OCI"]["Mounts"] if m["destination"] != "/opt/nim/workspace"] + [configmap]
    request["storages"].append({"driver": driver, "driver_options": [], "fs_group": None, "fstype": driver, "mount_point": configmap["source"], "options": [], "source": driver})
    assert not allows(workload_policy, "CreateContainerRequest", request)


def test_host_files_elsewhere_are_data_not_code(workload_policy):
    """A ConfigMap outside the code directories is allowed (what remains: docs/security-model.md), but not as the working or home directory."""
    request = nim_container(mounts=[host_volume("/config")])
    assert allows(workload_policy, "CreateContainerRequest", request)
    home = copy.deepcopy(request)
    request["OCI"]["Process"]["Cwd"] = "/config"
    assert not allows(workload_policy, "CreateContainerRequest", request)
    home["OCI"]["Process"]["Env"].append("HOME=/config/user")
    assert not allows(workload_policy, "CreateContainerRequest", home)
    home["OCI"]["Process"]["Env"][-1] = "HOME=/opt/nim"
    assert allows(workload_policy, "CreateContainerRequest", home)


def test_the_host_cannot_copy_into_a_volume_the_pod_vm_created(policy):
    assert not allows(policy, "CopyFileRequest", copy_file(f"{SHARED}{SANDBOX_ID}/rootfs/local/nim-workspace/evil.py"))
    assert not allows(policy, "CopyFileRequest", copy_file(f"{SHARED}{SANDBOX_ID}/rootfs/local", "Directory"))
