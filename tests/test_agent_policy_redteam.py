"""Red-team findings against the allow-list agent policy: what the host can still steer in a request the
policy allowed, each checked on both engines (tests.test_agent_policy.Policy) for its one cause.

Requests are tests/agent_requests.py's (kata-containers genpolicy test data; CRI-O shapes from cri-o f954a17e).
What the agent does with each field: kata-containers 7c6ba40c54ea29b459b4997cff948caaba4e658b.
"""

from __future__ import annotations

import pytest

from components import nim
from tests.agent_requests import SHARED, crio, nim_container
from tests.test_agent_policy_allowlist import RUNTIMES, refused_for


def _without_env(request: dict, name: str) -> dict:
    env = request["OCI"]["Process"]["Env"]
    request["OCI"]["Process"]["Env"] = [e for e in env if not e.startswith(f"{name}=")]
    return request


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_dropping_the_pods_tls_setting_is_refused(ngc_policy, runtime):
    """Without NIM_SSL_MODE NIM serves plaintext HTTP (its default, DISABLED): the host, which carries the
    pod's traffic, reads every prompt and completion. The agent passes OCI.Process.Env to the process as it
    comes (rustjail container.rs: the env is cleared, then set from the spec), so a pod variable the host
    leaves out is simply unset."""
    request = _without_env(RUNTIMES[runtime](nim_container()), "NIM_SSL_MODE")
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Process.Env[NIM_SSL_MODE] (missing)"}


def test_the_pod_sets_home_so_a_host_written_passwd_cannot_choose_it():
    """Without HOME in the env the agent takes it from the container's /etc/passwd (rustjail container.rs,
    `User::from_uid` after pivot_root), and on CRI-O that file is one the host copies in (setupContainerUser
    writes it for the restricted SCC's UID): a home among host-copied files puts the host's
    `.local/lib/python3.*/site-packages/*.pth` on NIM's sys.path (Python runs a .pth file's `import` lines),
    code that can ask the CDH on 127.0.0.1:8006 for the workload's keys. HOME is "/": what NIM gets today
    with OpenShift's arbitrary UID (odh-model-controller's NIM template mounts /.cache for it), and CRI-O
    writes the passwd entry's home from HOME (cri-o server/container_create.go setupContainerUser)."""
    env = {e["name"]: e.get("value") for e in nim.container_env("ngc", False)}
    assert env["HOME"] == "/"
    assert "HOME=/" in nim.policy_container(None, False, False).env


def test_dropping_home_on_cri_o_is_refused(ngc_policy):
    request = _without_env(crio(nim_container()), "HOME")
    assert any(m["destination"] == "/etc/passwd" and m["source"].startswith(SHARED) for m in request["OCI"]["Mounts"])
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Process.Env[HOME] (missing)"}


@pytest.mark.parametrize("namespaces", [None, [], [{"Type": "ipc", "Path": ""}, {"Type": "uts", "Path": ""}]], ids=["null", "none", "no-mount"])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_container_without_its_own_mount_namespace_is_refused(ngc_policy, runtime, namespaces):
    """rustjail sets up the container's root filesystem (init_rootfs, pivot_root) only for a new mount namespace
    (container.rs: `if to_new.contains(CLONE_NEWNS)`); without one the process starts on the pod VM's own root,
    beside the agent, the other containers' root filesystems and the unsealed secrets. The agent adds a PID
    namespace only to a list it receives (rpc.rs update_container_namespaces). The kata runtime sends ipc, uts
    and mount, on containerd and CRI-O alike (kata_agent.go drops cgroup, network, time; handlePidNamespace pid)."""
    request = RUNTIMES[runtime](nim_container())
    assert sorted(n["Type"] for n in request["OCI"]["Linux"]["Namespaces"]) == ["ipc", "mount", "uts"]
    request["OCI"]["Linux"]["Namespaces"] = namespaces
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Linux.Namespaces"}


def test_a_device_rule_through_update_container_is_refused(ngc_policy):
    """CreateContainer refuses OCI.Linux.Resources.Devices; UpdateContainer applies the same rules to a running
    container's and the pod's cgroup (rpc.rs update_container -> rustjail cgroups/fs set_devices_resources),
    so it is refused there too. Resources without device rules (the runtime's CPU and memory updates) pass."""
    update = {"container_id": "5e0c" * 16, "resources": {"Devices": [], "Memory": {"Limit": 8 << 30}, "CPU": {"Shares": 1024}}}
    assert refused_for(ngc_policy, "UpdateContainerRequest", update, "update_container_refusals") == set()
    update["resources"]["Devices"] = [{"Allow": True, "Type": "b", "Major": 8, "Minor": 0, "Access": "rwm"}]
    assert refused_for(ngc_policy, "UpdateContainerRequest", update, "update_container_refusals") == {"resources.Devices"}
    assert ngc_policy.decide("UpdateContainerRequest", update) is False
