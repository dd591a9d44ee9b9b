"""Each workload's Kata agent policy, evaluated by real Rego engines on requests shaped like the agent's.

CreateContainerRequest inputs come from kata-containers' genpolicy test data (tests/fixtures/kata-genpolicy,
provenance in its SOURCES.md); only the guest-pulled image is changed. Each request is evaluated as the
agent does: `data.agent_policy.<Request>` must be exactly `true` (kata-containers
src/agent/policy/src/policy.rs `allow_request`), with regorus, the engine the agent embeds, and regopy
(rego-cpp), which must agree (tests/rego_engines.py).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from components import nim
from components.initdata import AGENT_REQUESTS, DENIED_REQUESTS, REFUSED_REQUESTS, AgentPolicyArgs, render_agent_policy
from tests.agent_requests import (
    DIGEST,
    IMAGE,
    IMAGE_ANNOTATIONS,
    NOT_NGC_KEYS,
    NIM_ARGS,
    NIM_IMAGE_ENV,
    REPOSITORY,
    SANDBOX_ID,
    SHARED,
    copy_file,
    fixture,
    nim_container,
)
from tests.rego_engines import Engines

REFUSAL_RULES = ("create_container_refusals", "copy_file_refusals", "create_sandbox_refusals", "update_container_refusals")


class Policy:
    """One workload's rendered agent policy, decided as the agent asks: by both engines, which must agree.
    By default the NIM workload's, as stacks/trusted.py renders it (image, process, image environment,
    working directory and the container components/nim.py renders)."""

    def __init__(self, **args: Any):
        values = {"image_env": NIM_IMAGE_ENV, "container": nim.policy_container(NOT_NGC_KEYS, False, False), **args}
        self.text = render_agent_policy(AgentPolicyArgs(IMAGE, **values))
        self.engines = Engines({"policy.rego": self.text})
        self.engines.prepare([f"data.agent_policy.{r}" for r in (*AGENT_REQUESTS, *REFUSAL_RULES)])

    def decide(self, request: str, input_: dict[str, Any]) -> Any:
        return self.engines.evaluate(f"data.agent_policy.{request}", input_)

    def refusals(self, input_: dict[str, Any], rule: str = "create_container_refusals", then_decide: str = "") -> set[str]:
        """The fields `rule` refuses `input_` for; `then_decide`: the request whose decision the caller asks next."""
        also = (f"data.agent_policy.{then_decide}",) if then_decide else ()
        return set(self.engines.evaluate(f"data.agent_policy.{rule}", input_, also))


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy()


def allows(policy: Policy, request: str, input_: dict[str, Any]) -> bool:
    return policy.decide(request, input_) is True


def container(image: str, annotation: str = IMAGE_ANNOTATIONS[0]) -> dict[str, Any]:
    """The NIM container (tests/agent_requests.py) pulling `image`, reported through `annotation`. (Before the
    allow-list this was genpolicy's bare application container; the policy now expects the pod's own.)"""
    request = nim_container()
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
    assert fixture("container")["container_id"] == "gid" and SANDBOX_ID in fixture("container")["OCI"]["Annotations"].values()
    assert [s["source"] for s in fixture("container")["storages"] if s["driver"] == "image_guest_pull"][0].count("@sha256:") == 1
    sandbox = fixture("sandbox")
    assert [s["source"] for s in sandbox["storages"] if s["driver"] == "image_guest_pull"] == ["pause"]
    assert sandbox["OCI"]["Annotations"]["io.kubernetes.cri.container-type"] == "sandbox"


def test_the_pause_container_runs(policy):
    """(The fixture was genpolicy's `sysctls` case, whose pod sets net.ipv4.ip_forward; our pod sets no sysctl,
    so it is now the `ignored_fields` case, containerd 2's own sysctls only.)"""
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


# Copies as the runtime names them (fs_share_linux.go shareFileName: <container id>-<16 hex>-<name>, Secret and
# ConfigMap volumes under watchable/). The inputs were `c0ffee-hosts` and `c0ffee-9f1d/watchable/...` before,
# shapes the runtime never sends; the policy now checks the name's shape.
COPY = f"{SHARED}{'c0ffee' * 8}-0123456789abcdef-"
WATCHED = f"{SHARED}watchable/{'c0ffee' * 8}-fedcba9876543210-ngc-api-key"


@pytest.mark.parametrize(
    "request_",
    [
        copy_file(COPY + "hosts"),
        copy_file(WATCHED + "/NGC_API_KEY"),
        copy_file(WATCHED, "Directory"),
        copy_file(WATCHED + "/..data", "Symlink", "..2026_12_01_10_00_00.1"),
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
        copy_file(WATCHED + "/link", "Symlink", "/etc"),
        copy_file(WATCHED + "/link", "Symlink", "../../../../etc"),
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
    # With an empty input, only the rules with conditions refuse besides the always-refused ones (the
    # allow-list refuses GetDiagnosticData, UpdateEphemeralMounts and swap too; CreateSandbox's empty input
    # asks for nothing it refuses).
    assert refused == {*DENIED_REQUESTS, *REFUSED_REQUESTS, "CreateContainerRequest", "CopyFileRequest"}
    assert len(AGENT_REQUESTS) == len(set(AGENT_REQUESTS)) == 41


def test_only_a_pinned_image_renders():
    with pytest.raises(ValueError, match="is not pinned by digest"):
        render_agent_policy(AgentPolicyArgs(f"{REPOSITORY}:1.3.3"))


def test_a_pinned_command_line_refuses_any_other(policy):
    """Pinned, the host cannot run the workload's own image with a command that prints its secrets."""
    pinned = Policy(args=NIM_ARGS)
    assert allows(pinned, "CreateContainerRequest", container(IMAGE))
    exfiltrate = container(IMAGE)
    exfiltrate["OCI"]["Process"]["Args"] = ["/bin/sh", "-c", "echo $NGC_API_KEY"]
    assert not allows(pinned, "CreateContainerRequest", exfiltrate)
    assert allows(policy, "CreateContainerRequest", exfiltrate), "unpinned: any command of the pinned image"
    assert allows(pinned, "CreateContainerRequest", fixture("sandbox")), "the pause container keeps its own command"


# --- The workload's own container: what decides its code besides the image ---------------------------
# NIM's pod as Kubernetes and KServe start it (tests/agent_requests.py: the pinned image's config Env, the
# env components/nim.py renders with its Secret resolved to the sealed pointer, KServe's
# INFERENCE_SERVICE_NAME, service links, and each volume as the kata runtime hands it to the agent).


def nim_policy(**args: Any) -> Policy:
    return Policy(**args)


@pytest.fixture(scope="module")
def workload_policy(policy) -> Policy:
    return policy


def with_extra(request: dict[str, Any], env: list[str] = (), mounts: list[dict[str, Any]] = ()) -> dict[str, Any]:
    request["OCI"]["Process"]["Env"] += list(env)
    request["OCI"]["Mounts"] += list(mounts)
    return request


def host_volume(destination: str, name: str = "evil") -> dict[str, Any]:
    """A ConfigMap or Secret volume: files the host copies into the shared directory."""
    return {"destination": destination, "options": ["rbind", "rprivate", "ro"], "source": f"{SHARED}watchable/gid-0123456789abcdef-{destination.rsplit('/', 1)[-1]}", "type_": "bind"}


@pytest.mark.parametrize("encrypted, mutual", [(False, False), (True, False), (False, True)], ids=["ngc-model", "encrypted-model", "mutual-tls"])
def test_the_nim_container_runs_as_kserve_starts_it(encrypted, mutual):
    """With its TLS settings, the sealed key's Secret and the certificate's ConfigMap: data outside the code directories."""
    workload_policy = Policy(container=nim.policy_container(None if encrypted else NOT_NGC_KEYS, mutual, encrypted))
    request = nim_container(encrypted, mutual)
    destinations = {m["destination"] for m in request["OCI"]["Mounts"]}
    assert {"/opt/nim/.cache", "/opt/nim/workspace", "/dev/termination-log", "/var/run/secrets/kubernetes.io/serviceaccount", nim.TLS_KEY_DIR, nim.TLS_CERT_DIR} <= destinations
    assert {"NIM_SSL_MODE=MTLS" if mutual else "NIM_SSL_MODE=TLS", f"NIM_SSL_KEY_PATH={nim.TLS_KEY_DIR}/{nim.TLS_KEY_FILE}"} <= set(request["OCI"]["Process"]["Env"])
    assert allows(workload_policy, "CreateContainerRequest", request)
    assert allows(workload_policy, "CreateContainerRequest", fixture("sandbox"))


def test_a_workload_that_does_not_list_its_images_loader_settings_does_not_run():
    """Fails closed: the image's own PYTHONPATH and LD_LIBRARY_PATH need `imageEnv`."""
    assert not allows(Policy(image_env=()), "CreateContainerRequest", nim_container())


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
    assert not allows(workload_policy, "CreateContainerRequest", with_extra(nim_container(), env=[entry]))


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
    assert not allows(workload_policy, "CreateContainerRequest", with_extra(nim_container(), mounts=[mount]))


@pytest.mark.parametrize("driver", ["local", "ephemeral"])
def test_host_files_passed_off_as_an_emptydir_are_refused(workload_policy, driver):
    """The storages are the host's word too: one that names a ConfigMap's copy as its mount point is no emptyDir."""
    configmap = host_volume("/opt/nim/workspace")
    request = nim_container()
    request["OCI"]["Mounts"] = [m for m in request["OCI"]["Mounts"] if m["destination"] != "/opt/nim/workspace"] + [configmap]
    request["storages"].append({"driver": driver, "driver_options": [], "fs_group": None, "fstype": driver, "mount_point": configmap["source"], "options": [], "source": driver})
    assert not allows(workload_policy, "CreateContainerRequest", request)


def test_host_files_the_pod_does_not_declare_are_refused(workload_policy):
    """Before the allow-list a ConfigMap outside the code directories was allowed as data; now only the pod's own volumes are."""
    assert not allows(workload_policy, "CreateContainerRequest", with_extra(nim_container(), mounts=[host_volume("/config")]))


def test_a_working_or_home_directory_in_host_files_is_refused(workload_policy):
    """Python puts the working directory (`-m`) and HOME's user site-packages on sys.path. (The input used an
    undeclared /config ConfigMap before; now the pod's own TLS certificate volume is the host-written directory.)"""
    request = nim_container()
    home = copy.deepcopy(request)
    request["OCI"]["Process"]["Cwd"] = nim.TLS_CERT_DIR
    assert not allows(workload_policy, "CreateContainerRequest", request)
    # The pod sets HOME=/ (components/nim.py container_env): a HOME in the TLS certificate volume in its place.
    with_home = Policy(image_env=(*NIM_IMAGE_ENV, f"HOME={nim.TLS_CERT_DIR}/user"))
    env = home["OCI"]["Process"]["Env"]
    env[env.index("HOME=/")] = f"HOME={nim.TLS_CERT_DIR}/user"
    assert "OCI.Process (working or home directory in host-written files)" in with_home.refusals(home)
    assert not allows(with_home, "CreateContainerRequest", home)
    env[env.index(f"HOME={nim.TLS_CERT_DIR}/user")] = "HOME=/"
    assert allows(with_home, "CreateContainerRequest", home)


def test_the_host_cannot_copy_into_a_volume_the_pod_vm_created(policy):
    assert not allows(policy, "CopyFileRequest", copy_file(f"{SHARED}{SANDBOX_ID}/rootfs/local/nim-workspace/evil.py"))
    assert not allows(policy, "CopyFileRequest", copy_file(f"{SHARED}{SANDBOX_ID}/rootfs/local", "Directory"))
