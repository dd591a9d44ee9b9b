"""The agent policy's patterns for what the runtime generates (ids, copied files' names, emptyDir storages,
options), its exemptions, and the refusal the agent reports: each checked by one field changed at a time.

Requests are the pod's own (tests/agent_requests.py); each refused one differs from an allowed one in the
field under test only, and the same edit with a value the runtime does generate is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest
import regorus

from components import nim
from components.initdata import DecryptorPolicy, PodVolume
from tests.agent_requests import (
    DECRYPTOR,
    KEY_URI,
    MANIFEST,
    NOT_NGC_KEYS,
    SHARED,
    NIM_ARGS,
    NIM_WORKING_DIR,
    SANDBOX_ID,
    SEALED_NGC_KEY,
    copy_file,
    create_sandbox,
    decryptor_container,
    nim_container,
    pause,
    pod_copies,
    set_image_metadata,
    with_container_id,
    with_sandbox_id,
)
from tests.test_agent_policy import Policy
from tests.test_agent_policy_allowlist import refused_for

WORKSPACE = next(m["mountPath"] for m in nim.volume_mounts() if m["name"] == "nim-workspace")  # an emptyDir on the pod VM's disk


@pytest.fixture(scope="module")
def policy() -> Policy:
    """A workload whose working directory is not pinned."""
    return Policy()


@pytest.fixture(scope="module")
def unpinned_env_policy() -> Policy:
    """A workload whose image environment is not pinned (pin_workload not run)."""
    return Policy(image_env=None)


def _env(request: dict[str, Any], name: str, value: str | None) -> dict[str, Any]:
    """`request` with variable `name` set to `value` (appended if absent), or removed (None)."""
    request = copy.deepcopy(request)
    env = [e for e in request["OCI"]["Process"]["Env"] if e.split("=", 1)[0] != name]
    request["OCI"]["Process"]["Env"] = env + ([f"{name}={value}"] if value is not None else [])
    return request


# --- Ids: the runtime's, or refused ------------------------------------------------------------------


def test_a_container_id_of_another_runtime_form_is_allowed(ngc_policy):
    assert refused_for(ngc_policy, "CreateContainerRequest", with_container_id(nim_container(), "f00d" * 16)) == set()


def test_a_container_id_shaped_as_a_path_is_refused(ngc_policy):
    """The id names the container's root, /run/kata-containers/<id>/rootfs, and the files copied for it (the agent
    refuses such an id too: kata-containers src/libs/kata-sys-util/src/validate.rs verify_id; the policy does not rely on it)."""
    assert "container_id" in refused_for(ngc_policy, "CreateContainerRequest", with_container_id(nim_container(), "../gid"))


def test_a_sandbox_of_another_id_is_allowed(ngc_policy):
    assert refused_for(ngc_policy, "CreateContainerRequest", with_sandbox_id(nim_container(), "ab" * 32)) == set()


@pytest.mark.parametrize("sandbox_id", ["../../../../run/kata-containers/" + SANDBOX_ID, SANDBOX_ID.upper(), SANDBOX_ID[:63]])
def test_a_sandbox_id_the_runtime_does_not_generate_is_refused(ngc_policy, sandbox_id):
    """The sandbox id names the directory of the pod's emptyDirs: a host-chosen one would place them, and bind
    them into the container, wherever it points."""
    refused = refused_for(ngc_policy, "CreateContainerRequest", with_sandbox_id(nim_container(), sandbox_id))
    assert "OCI.Annotations[sandbox-id]" in refused
    assert all(field.startswith(("OCI.Mounts[", "storages[")) for field in refused - {"OCI.Annotations[sandbox-id]"}), refused


# --- The image storage --------------------------------------------------------------------------------


def _image_storage(request: dict[str, Any]) -> dict[str, Any]:
    (storage,) = [s for s in request["storages"] if s["driver"] == "image_guest_pull"]
    return storage


def test_image_metadata_under_another_option_is_refused(ngc_policy):
    """The agent reads the image's metadata from the `image_guest_pull=` option only (kata-containers
    src/agent/src/storage/image_pull_handler.rs get_image_info); the policy reads what the agent reads."""
    request = nim_container()
    storage = _image_storage(request)
    (option,) = storage["driver_options"]
    storage["driver_options"] = ["image_guest_pulL" + option[len("image_guest_pull"):]]
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"storages[image_guest_pull].driver_options"}


@pytest.mark.parametrize("field, value", [
    ("fstype", "ext4"),
    ("options", ["rw", "exec"]),
    ("fs_group", {"group_id": 0, "group_change_policy": 0}),  # the agent would chown the image's files to it
    ("shared", True),
])
def test_an_image_storage_other_than_the_runtimes_plain_one_is_refused(ngc_policy, field, value):
    request = nim_container()
    _image_storage(request)[field] = value
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"storages[image_guest_pull]"}


def test_a_container_without_its_image_storage_is_refused_for_that_storage(ngc_policy):
    request = nim_container()
    request["storages"] = [s for s in request["storages"] if s["driver"] != "image_guest_pull"]
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"storages[image_guest_pull]", "storages[image_guest_pull].mount_point"}


def test_a_container_with_a_second_image_storage_is_refused(ngc_policy):
    """The agent would pull both: which one is the container's root is the host's choice."""
    request = nim_container()
    second = copy.deepcopy(_image_storage(request))
    second["mount_point"] = "/run/kata-containers/gid/rootfs/opt/nim"
    request["storages"].append(second)
    assert "storages[image_guest_pull]" in refused_for(ngc_policy, "CreateContainerRequest", request)


# --- What marks the pause container, and what it may have -------------------------------------------


def _set_annotation(request: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    request["OCI"]["Annotations"][key] = value
    return request


def test_the_pause_image_annotated_as_a_container_is_refused(ngc_policy):
    request = _set_annotation(pause(), "io.kubernetes.cri.container-type", "container")
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Annotations[container-type]"}


def test_the_workload_annotated_as_the_sandbox_is_refused(ngc_policy):
    request = _set_annotation(nim_container(), "io.kubernetes.cri.container-type", "sandbox")
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Annotations[container-type]"}


def test_the_pause_image_with_container_metadata_is_refused(ngc_policy):
    """The agent unpacks its own pause image only for sandbox metadata (image.rs is_sandbox); else it pulls `pause`."""
    request = pause()
    set_image_metadata(_image_storage(request), {"io.kubernetes.cri.container-type": "container"})
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"storages[image_guest_pull].driver_options"}


def test_the_pause_container_takes_no_other_storage(ngc_policy):
    request = pause()
    request["storages"].append(copy.deepcopy(nim_container()["storages"][1]))
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"storages"}


def test_a_pause_file_from_outside_the_copies_is_refused(ngc_policy):
    request = pause()
    (resolv,) = [m for m in request["OCI"]["Mounts"] if m["destination"] == "/etc/resolv.conf"]
    resolv["source"] = "/run/kata-containers/sandbox/resolv.conf"
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Mounts[/etc/resolv.conf]"}


@pytest.mark.parametrize("edit, field", [
    (lambda m: m.update(destination="/opt/nim/llm"), "OCI.Mounts[/opt/nim/llm]"),  # a kernel filesystem over the code
    (lambda m: m.update(type_="sysfs", source="sysfs"), "OCI.Mounts[/proc]"),
    (lambda m: m.update(source="/run/kata-containers/shared/containers/proc"), "OCI.Mounts[/proc]"),
], ids=["elsewhere", "another-type", "another-source"])
def test_a_kernel_filesystem_is_where_and_as_the_runtime_mounts_it(ngc_policy, edit, field):
    request = nim_container()
    edit(next(m for m in request["OCI"]["Mounts"] if m["destination"] == "/proc"))
    assert field in refused_for(ngc_policy, "CreateContainerRequest", request)


# --- Files the runtime copies in, and emptyDirs ----------------------------------------------------------


def test_a_copied_file_not_named_as_the_runtime_names_it_is_refused(ngc_policy):
    """<container id>-<16 hex>-<name> (fs_share_linux.go shareFileName): a name whose middle part walks up
    would bind a file from outside the shared directory."""
    request = nim_container()
    (mount,) = [m for m in request["OCI"]["Mounts"] if m["destination"] == "/run/nim-tls/key"]
    mount["source"] = mount["source"].replace("0123456789abcdef", "../../../../../x")
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Mounts[/run/nim-tls/key]"}


@pytest.mark.parametrize("edit", [
    lambda m: m.update(source="/run/kata-containers/sandbox/hosts"),  # not a copy: a file of the pod VM's
    lambda m: m.update(type_="overlay"),
    lambda m: m.update(options=["rbind", "rprivate", "rw", "suid"]),  # a setuid binary among the copied files
    lambda m: m.update(options=["rbind", "rprivate", "rw", "dev"]),
], ids=["not-a-copy", "not-a-bind", "suid", "dev"])
def test_a_runtime_file_is_a_copy_bound_with_the_runtimes_options(ngc_policy, edit):
    request = nim_container()
    edit(next(m for m in request["OCI"]["Mounts"] if m["destination"] == "/etc/hosts"))
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Mounts[/etc/hosts]"}


def test_the_sandboxs_shm_bound_elsewhere_is_refused(encrypted_policy):
    request = decryptor_container()
    next(m for m in request["OCI"]["Mounts"] if m["destination"] == "/dev/shm")["destination"] = "/opt/app-root/src"
    assert "OCI.Mounts[/opt/app-root/src]" in refused_for(encrypted_policy, "CreateContainerRequest", request)


def _mount(request: dict[str, Any], destination: str) -> dict[str, Any]:
    return next(m for m in request["OCI"]["Mounts"] if m["destination"] == destination)


def _source_of(destination: str) -> str:
    return _mount(nim_container(), destination)["source"]


# Each: one mount of the NIM container changed (`edit(request)`), and the mount refused for it.
MOUNT_EDITS = {
    # A copy the runtime made for another container (same length of id), or for another of this one's files.
    "another-containers-copy": (lambda r: _mount(r, "/etc/hosts").update(source=_source_of("/etc/hosts").replace("/gid-", "/abc-")), "/etc/hosts"),
    "another-files-copy": (lambda r: _mount(r, "/etc/hosts").update(source=_source_of("/etc/resolv.conf")), "/etc/hosts"),
    "a-relative-source": (lambda r: _mount(r, "/etc/hosts").update(source=_source_of("/etc/hosts").rsplit("/", 1)[1]), "/etc/hosts"),
    # The model cache filled by the host: a copy where the pod VM makes an emptyDir.
    "a-copy-for-an-emptydir": (lambda r: _mount(r, "/opt/nim/.cache").update(source=f"{SHARED}gid-0123456789abcdef-.cache"), "/opt/nim/.cache"),
    "another-emptydirs-source": (lambda r: _mount(r, "/opt/nim/.cache").update(source=_source_of("/opt/nim/workspace")), "/opt/nim/.cache"),
    "an-emptydir-not-bound": (lambda r: _mount(r, "/opt/nim/.cache").update(type_="overlay"), "/opt/nim/.cache"),
    "an-emptydir-with-suid": (lambda r: _mount(r, "/opt/nim/.cache")["options"].append("suid"), "/opt/nim/.cache"),
    "a-read-only-secret-writable": (lambda r: _mount(r, "/run/nim-tls/key").update(options=["rbind", "rprivate", "rw"]), "/run/nim-tls/key"),
    # The pod's own /dev/shm volume swapped for the sandbox's, shared with every container of the pod.
    "the-sandboxs-shm-for-the-pods": (lambda r: _mount(r, "/dev/shm").update(source="/run/kata-containers/sandbox/shm"), "/dev/shm"),
}


@pytest.mark.parametrize("edit", MOUNT_EDITS)
def test_each_mount_is_the_one_the_runtime_makes_for_its_volume(ngc_policy, edit):
    change, destination = MOUNT_EDITS[edit]
    request = nim_container()
    change(request)
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {f"OCI.Mounts[{destination}]"}


def test_the_decrypted_model_is_mounted_read_only(encrypted_policy):
    request = nim_container(encrypted=True)
    assert refused_for(encrypted_policy, "CreateContainerRequest", request) == set()
    _mount(request, "/mnt/models").update(options=["rbind", "rprivate", "rw"])
    assert refused_for(encrypted_policy, "CreateContainerRequest", request) == {"OCI.Mounts[/mnt/models]"}


@pytest.mark.parametrize("edit, destination", [
    (lambda m: m.update(destination="/pause"), "/pause"),
    (lambda m: m.update(type_="tmpfs"), "/dev/shm"),
    (lambda m: m.update(source="/run/kata-containers/sandbox/ephemeral/shm"), "/dev/shm"),
], ids=["elsewhere", "not-a-bind", "another-source"])
def test_the_pause_container_binds_the_sandboxs_shm_at_dev_shm(ngc_policy, edit, destination):
    request = pause()
    edit(_mount(request, "/dev/shm"))
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {f"OCI.Mounts[{destination}]"}


# Each: one emptyDir storage of the NIM container changed; the storage refused for it.
STORAGE_EDITS = {
    "a-host-disk-as-the-cache": ("/local/nim-cache", lambda s: s.update(source="/dev/sdb")),
    "another-driver": ("/local/nim-cache", lambda s: s.update(driver="ephemeral")),
    "another-fstype": ("/local/nim-cache", lambda s: s.update(fstype="ext4")),
    "memory-as-disk": ("/ephemeral/shm", lambda s: s.update(driver="local", fstype="local", source="local")),
    "disk-as-memory": ("/local/nim-cache", lambda s: s.update(driver="ephemeral", fstype="tmpfs", source="tmpfs")),
    "memory-elsewhere": ("/ephemeral/shm", lambda s: s.update(mount_point="/run/kata-containers/sandbox/ephemeral/other")),
    "memory-from-a-host-disk": ("/ephemeral/shm", lambda s: s.update(source="/dev/sdb")),
    "memory-by-another-driver": ("/ephemeral/shm", lambda s: s.update(driver="local")),
    "memory-of-another-fstype": ("/ephemeral/shm", lambda s: s.update(fstype="ext4")),
}


@pytest.mark.parametrize("edit", STORAGE_EDITS)
def test_each_emptydir_storage_is_the_one_the_runtime_makes(ngc_policy, edit):
    suffix, change = STORAGE_EDITS[edit]
    request = nim_container()
    storage = next(s for s in request["storages"] if s["mount_point"].endswith(suffix))
    change(storage)
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {f"storages[{storage['mount_point']}]"}


def test_an_unpinned_working_directory_in_the_sandboxs_shm_is_allowed(encrypted_policy):
    """Guest memory, not a host-written file: only copies count as host files."""
    request = decryptor_container()
    request["OCI"]["Process"]["Cwd"] = "/dev/shm"
    assert refused_for(encrypted_policy, "CreateContainerRequest", request) == set()


def test_a_working_directory_in_a_memory_emptydir_is_allowed():
    policy = Policy(args=NIM_ARGS, working_dir="/mnt/models", decryptor=DecryptorPolicy(DECRYPTOR, KEY_URI, MANIFEST),
                    container=nim.policy_container(None, False, True))
    request = nim_container(encrypted=True)
    request["OCI"]["Process"]["Cwd"] = "/mnt/models"
    assert refused_for(policy, "CreateContainerRequest", request) == set()


def test_an_emptydir_storage_placed_elsewhere_is_refused(ngc_policy):
    """The agent creates an emptyDir where the storage's mount point says: over the image's /etc, for one."""
    request = nim_container()
    (storage,) = [s for s in request["storages"] if s["mount_point"].endswith("/local/nim-workspace")]
    storage["mount_point"] = "/run/kata-containers/gid/rootfs/etc"
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"storages[/run/kata-containers/gid/rootfs/etc]"}


def test_an_emptydir_storage_given_twice_is_refused(ngc_policy):
    request = nim_container()
    request["storages"].append(copy.deepcopy(request["storages"][-1]))
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"storages[].mount_point (reused)"}


def test_a_destination_mounted_twice_is_refused(ngc_policy):
    """The later mount hides the earlier: which of two allowed sources the container sees is the host's choice."""
    request = nim_container()
    (key,) = [m for m in request["OCI"]["Mounts"] if m["destination"] == "/run/nim-tls/key"]
    request["OCI"]["Mounts"].append(copy.deepcopy(key))
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Mounts[/run/nim-tls/key] (mounted twice)"}


def test_a_container_without_its_own_shm_gets_the_sandboxs(encrypted_policy):
    """The decryptor has no /dev/shm volume: its /dev/shm is the sandbox's (kata_agent.go handleShm), not a copy."""
    request = decryptor_container()
    (shm,) = [m for m in request["OCI"]["Mounts"] if m["destination"] == "/dev/shm"]
    assert refused_for(encrypted_policy, "CreateContainerRequest", request) == set()
    shm["source"] = f"{SHARED}{request['container_id']}-0123456789abcdef-shm"
    assert refused_for(encrypted_policy, "CreateContainerRequest", request) == {"OCI.Mounts[/dev/shm]"}


def test_an_emptydir_where_the_runtime_copies_a_file_is_the_emptydir():
    """A pod mounting an emptyDir at /run/secrets: the host's copy (the runtime copies secrets there for other
    pods) does not stand in for the volume the pod VM makes."""
    nim_volumes = nim.policy_container(NOT_NGC_KEYS, False, False)
    container = dataclasses.replace(nim_volumes, volumes=(*nim_volumes.volumes, PodVolume("/run/secrets", "local", "run-secrets")))
    policy = Policy(args=NIM_ARGS, working_dir=NIM_WORKING_DIR, container=container)
    request = nim_container()
    request["OCI"]["Mounts"].append({"destination": "/run/secrets", "options": ["rbind", "rprivate", "rw"], "source": f"{SHARED}gid-0123456789abcdef-secrets", "type_": "bind"})
    assert refused_for(policy, "CreateContainerRequest", request) == {"OCI.Mounts[/run/secrets]"}


def test_a_working_directory_in_an_emptydir_is_allowed():
    """An emptyDir is made by the agent in the pod VM, not copied in by the host: an image whose working
    directory is one (WORKDIR on a scratch volume) runs."""
    policy = Policy(args=NIM_ARGS, working_dir=WORKSPACE)
    request = nim_container()
    request["OCI"]["Process"]["Cwd"] = WORKSPACE
    assert refused_for(policy, "CreateContainerRequest", request) == set()


@pytest.mark.parametrize("file_type", ["Unknown"])
def test_a_copy_that_is_neither_file_directory_nor_symlink_is_refused(ngc_policy, file_type):
    """A FIFO, socket or device node: the agent reports its mode's type as `Unknown`
    (kata-containers src/agent/policy/src/policy.rs FileType)."""
    path = pod_copies(nim_container())[0]["path"]
    assert refused_for(ngc_policy, "CopyFileRequest", copy_file(path, file_type), "copy_file_refusals") == {"file_type"}


def test_a_symlink_at_a_copys_top_level_is_refused(ngc_policy):
    """The container binds the copy's top level: a link there binds whatever it names (another container's copy)."""
    copied = copy_file(_source_of("/etc/hosts"), "Symlink", "abc-0123456789abcdef-hosts")
    assert refused_for(ngc_policy, "CopyFileRequest", copied, "copy_file_refusals") == {"path (a symlink at a copy's top level)"}


def test_a_symlink_without_a_target_is_refused(ngc_policy):
    copied = copy_file(f"{_source_of('/run/nim-tls/key')}/data", "Symlink", None)
    assert refused_for(ngc_policy, "CopyFileRequest", copied, "copy_file_refusals") == {"symlink_target"}


def test_a_sandbox_sharing_its_pid_namespace_is_refused(ngc_policy):
    sandbox = dict(create_sandbox(), sandbox_pidns=True)
    assert refused_for(ngc_policy, "CreateSandboxRequest", sandbox, "create_sandbox_refusals") == {"sandbox_pidns"}


@pytest.mark.parametrize("field, value", [("driver", "local"), ("source", "/dev/sdb"), ("fstype", "ext4"),
                                          ("mount_point", "/run/kata-containers/sandbox/ephemeral/shm")])
def test_the_sandbox_shm_is_the_storage_the_runtime_makes(ngc_policy, field, value):
    sandbox = create_sandbox()
    sandbox["storages"][0][field] = value
    assert refused_for(ngc_policy, "CreateSandboxRequest", sandbox, "create_sandbox_refusals") == {"storages"}


@pytest.mark.parametrize("option", ["exec", "suid", "dev", "size=64m,exec"])
def test_the_sandbox_shm_takes_the_runtimes_options_only(ngc_policy, option):
    sandbox = create_sandbox()
    sandbox["storages"][0]["options"].append(option)
    assert refused_for(ngc_policy, "CreateSandboxRequest", sandbox, "create_sandbox_refusals") == {"storages"}


# --- Working directory and environment ----------------------------------------------------------------


def test_an_unpinned_working_directory_may_be_the_root(policy):
    """OCI's default when an image names none."""
    request = nim_container()
    request["OCI"]["Process"]["Cwd"] = "/"
    assert refused_for(policy, "CreateContainerRequest", request) == set()


def test_an_unpinned_working_directory_must_be_absolute(policy):
    request = nim_container()
    request["OCI"]["Process"]["Cwd"] = "opt/nim"
    assert refused_for(policy, "CreateContainerRequest", request) == {"OCI.Process.Cwd"}


def test_a_sealed_value_under_an_empty_name_is_refused(unpinned_env_policy):
    """The agent unseals every `sealed.` value, whatever its name: one the host adds to a container of
    unpinned environment would put the workload's secret in a process the host picked."""
    request = _env(_env(nim_container(), "PYTHONPATH", None), "LD_LIBRARY_PATH", None)  # refused where unpinned
    assert refused_for(unpinned_env_policy, "CreateContainerRequest", request) == set()
    assert refused_for(unpinned_env_policy, "CreateContainerRequest", _env(request, "", SEALED_NGC_KEY)) == {"OCI.Process.Env[]"}


def test_an_entry_without_a_value_is_refused_where_the_environment_is_unpinned(unpinned_env_policy):
    request = _env(_env(nim_container(), "PYTHONPATH", None), "LD_LIBRARY_PATH", None)
    request["OCI"]["Process"]["Env"].append("NIM_LOG_LEVEL")
    assert refused_for(unpinned_env_policy, "CreateContainerRequest", request) == {"OCI.Process.Env[NIM_LOG_LEVEL]"}


def test_the_ngc_key_variable_takes_a_sealed_pointer_only(ngc_policy):
    """Not a key of the host's own: NIM would pull with the host's NGC account."""
    request = _env(nim_container(), "NGC_API_KEY", "nvapi-" + "h" * 64)
    assert refused_for(ngc_policy, "CreateContainerRequest", request) == {"OCI.Process.Env[NGC_API_KEY]"}


# --- What the agent reports ---------------------------------------------------------------------------

REFUSED = {
    "CreateContainerRequest": (lambda: _env(nim_container(), "NGC_API_KEY", "nvapi-host"), "OCI.Process.Env[NGC_API_KEY]"),
    "CopyFileRequest": (lambda: copy_file(pod_copies(nim_container())[0]["path"], "Unknown"), "file_type"),
    "CreateSandboxRequest": (lambda: dict(create_sandbox(), guest_hook_path="/usr/share/oci/hooks"), "guest_hook_path"),
    "UpdateContainerRequest": (lambda: {"container_id": "gid", "resources": {"Devices": [{"Allow": True, "Access": "rwm"}]}}, "resources.Devices"),
}


@pytest.mark.parametrize("request_", REFUSED)
def test_a_refusal_names_its_fields_in_what_the_agent_returns(ngc_policy, request_):
    """The agent returns what the policy printed: "<Request> is blocked by policy: <prints>"
    (kata-containers src/agent/policy/src/policy.rs allow_request; regorus gathers prints as the agent does)."""
    make, field = REFUSED[request_]
    engine = regorus.Engine()
    engine.set_gather_prints(True)
    engine.add_policy("policy.rego", ngc_policy.text)
    engine.set_input_json(json.dumps(make()))
    assert json.loads(engine.eval_rule_as_json(f"data.agent_policy.{request_}")) is False
    (printed,) = engine.take_prints()
    assert printed.endswith(f'{request_} refused fields: {{"{field}"}}')
