"""The agent requests of the pod the project renders (components/nim.py, components/encrypted_model.py),
as containerd and as OpenShift's CRI-O send them through the kata runtime.

containerd shapes are kata-containers' own genpolicy test data (tests/fixtures/kata-genpolicy, provenance in
its SOURCES.md); the pod's container is that test data's application container with the pod's image,
environment and volumes put in the way the kata runtime hands them to the agent. CRI-O shapes are derived
from the same requests by what CRI-O writes differently (cri-o/cri-o f954a17e, see `crio`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from components import encrypted_model, nim

FIXTURES = Path(__file__).parent / "fixtures" / "kata-genpolicy"
SHARED = "/run/kata-containers/shared/containers/"
REPOSITORY = "nvcr.io/nim/meta/llama-3.1-8b-instruct"
DIGEST = "sha256:" + "ab" * 32
IMAGE = f"{REPOSITORY}@{DIGEST}"
SANDBOX_ID = "8667fea11fc4fc70d427cc3645950ac83cc7d33ca515a8774ab95043f0096bb8"  # the gid fixture's io.kubernetes.cri.sandbox-id
SEALED_NGC_KEY = "sealed.eyJhbGciOiJFUzI1NiJ9.eyJwcm92aWRlciI6Imticy.c2lnbmF0dXJl"
"""A sealed pointer, taken in the one variable the pod spec puts one in, unless it names a resource in NOT_NGC_KEYS."""
SERVING_KEY = "sealed.eyJhbGciOiJFUzI1NiJ9.eyJuYW1lIjoia2JzOi8vL2RlZmF1bHQvc2VydmluZy1rZXlzL2xsYW1hIn0.c2ln"
NOT_NGC_KEYS = (SERVING_KEY.rsplit(".", 1)[0] + ".",)
"""The `sealed.<header>.<payload>.` of the workload's serving key: never the NGC key (stacks/trusted.py _not_ngc_keys)."""
# NVIDIA publishes no Dockerfile for NIM; these entries follow the NIM image's Env as a third party copied
# it (Clarifai/clarifai-python PR #444, clarifai/runners/dockerfile_template/Dockerfile.nim).
NIM_IMAGE_ENV = (
    "PATH=/opt/nim/llm/.venv/bin:/opt/hpcx/ompi/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONPATH=:/opt/nim/llm/.venv/lib/python3.10/site-packages:/opt/nim/llm",
    "LD_LIBRARY_PATH=/opt/hpcx/ompi/lib:/opt/nim/llm/.venv/lib/python3.10/site-packages/tensorrt_llm/libs:/usr/local/nvidia/lib64",
    "NVIDIA_VISIBLE_DEVICES=all",
    "REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt",
)
NIM_WORKING_DIR = "/opt/nim"
NIM_ARGS = ("/opt/nvidia/nvidia_entrypoint.sh", "/opt/nim/start_server.sh")
# Image annotation per CRI runtime (kata-containers src/runtime/virtcontainers/kata_agent.go).
IMAGE_ANNOTATIONS = ("io.kubernetes.cri.image-name", "io.kubernetes.cri-o.ImageName")
# The decryptor (tests/test_decryptor_policy.py pins the same).
DECRYPTOR = "ghcr.io/example/model-decryptor@sha256:" + "12" * 32
KEY_URI = "kbs:///default/model-decryption/key.bin"
MANIFEST = "3c" * 32
SOURCE = "https://caiprodmodels.blob.core.windows.net/models/llama-ft"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"createcontainer-{name}.json").read_text())


def set_image_metadata(storage: dict[str, Any], update: dict[str, str], drop: tuple[str, ...] = ()) -> None:
    (option,) = storage["driver_options"]
    key, _, value = option.partition("=")
    volume = json.loads(value)
    for name in drop:
        volume["metadata"].pop(name, None)
    volume["metadata"].update(update)
    storage["driver_options"] = [f"{key}={json.dumps(volume, separators=(',', ':'))}"]


def container(image: str, annotation: str = IMAGE_ANNOTATIONS[0]) -> dict[str, Any]:
    """The genpolicy application container, its guest-pulled image replaced by `image`."""
    request = fixture("container")
    annotations = request["OCI"]["Annotations"]
    for key in IMAGE_ANNOTATIONS:
        annotations.pop(key, None)
    annotations[annotation] = image
    (storage,) = [s for s in request["storages"] if s["driver"] == "image_guest_pull"]
    storage["source"] = image
    set_image_metadata(storage, {annotation: image}, drop=IMAGE_ANNOTATIONS)
    return request


def _volume_mount(mount: dict[str, Any], volume: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """One pod volumeMount as the agent receives it; an emptyDir adds the storage the agent creates
    (kata-containers kata_agent.go handleLocalStorage, handleEphemeralStorage; fs_share_linux.go shareFileName)."""
    name = volume["name"]
    options = ["rbind", "rprivate", "ro" if mount.get("readOnly") else "rw"]
    if "emptyDir" not in volume:
        assert {"secret", "configMap"} & volume.keys(), volume
        copied = f"{SHARED}watchable/{request['container_id']}-0123456789abcdef-{mount['mountPath'].rsplit('/', 1)[-1]}"
        return {"destination": mount["mountPath"], "options": options, "source": copied, "type_": "bind"}
    memory = volume["emptyDir"].get("medium") == "Memory"
    source = f"/run/kata-containers/sandbox/ephemeral/{name}" if memory else f"{SHARED}{SANDBOX_ID}/rootfs/local/{name}"
    request["storages"].append(
        {"driver": "ephemeral" if memory else "local", "driver_options": [], "fs_group": None, "fstype": "tmpfs" if memory else "local",
         "mount_point": source, "options": [] if memory else ["mode=0777"], "source": "tmpfs" if memory else "local"}
    )
    return {"destination": mount["mountPath"], "options": options, "source": source, "type_": "bind"}


def pod_container(spec: dict[str, Any], volumes: list[dict[str, Any]], image: str = IMAGE, image_env: tuple[str, ...] = NIM_IMAGE_ENV,
                  args: tuple[str, ...] = NIM_ARGS, cwd: str = NIM_WORKING_DIR, sealed: str | None = SEALED_NGC_KEY) -> dict[str, Any]:
    """A pod's container (its Kubernetes spec, the pod's volumes) in the CreateContainerRequest the agent receives:
    the image's config Env first (the runtime passes it on: genpolicy src/registry.rs get_process), the fixture's
    HOSTNAME and service links, the spec's env (a secretKeyRef resolved to the sealed pointer) and KServe's
    INFERENCE_SERVICE_NAME (kserve predictor.go)."""
    request = container(image)
    oci = request["OCI"]
    oci["Annotations"]["io.kubernetes.cri.container-name"] = spec["name"]
    rendered = [f"{e['name']}={e['value'] if 'value' in e else sealed}" for e in spec.get("env", [])]
    services = ["LLAMA_PREDICTOR_SERVICE_HOST=172.30.12.7", "LLAMA_PREDICTOR_SERVICE_PORT=80", "LLAMA_PREDICTOR_PORT=tcp://172.30.12.7:80",
                "LLAMA_PREDICTOR_PORT_80_TCP=tcp://172.30.12.7:80", "LLAMA_PREDICTOR_PORT_80_TCP_PROTO=tcp"]
    oci["Process"]["Env"] = [*image_env, *oci["Process"]["Env"][1:], *services, *rendered, "INFERENCE_SERVICE_NAME=llama"]
    oci["Process"]["Args"] = list(args)
    oci["Process"]["Cwd"] = cwd
    by_name = {v["name"]: v for v in volumes}
    # A volume at /dev/shm replaces the sandbox's (kata_agent.go handleShm leaves an emptyDir's alone).
    if any(m["mountPath"] == "/dev/shm" for m in spec.get("volumeMounts", [])):
        oci["Mounts"] = [m for m in oci["Mounts"] if m["destination"] != "/dev/shm"]
    oci["Mounts"] += [_volume_mount(m, by_name[m["name"]], request) for m in spec.get("volumeMounts", [])]
    return request


def nim_container(encrypted: bool = False, mutual: bool = False) -> dict[str, Any]:
    """The predictor's kserve-container, as components/nim.py renders it, in the request the agent receives."""
    spec = {"name": "kserve-container", "env": nim.container_env(None if encrypted else "llama-ngc-api-key", mutual), "volumeMounts": nim.volume_mounts()}
    volumes = nim.volumes("llama", 40)
    if encrypted:
        spec["env"] += encrypted_model.nim_env()
        spec["volumeMounts"].append(encrypted_model.nim_volume_mount())
        volumes.append({"name": encrypted_model.VOLUME, "emptyDir": {"medium": "Memory"}})
    return pod_container(spec, volumes)


def decryptor_container(args: list[str] | None = None) -> dict[str, Any]:
    """The decrypt-model init container (components/encrypted_model.py init_container) as the agent receives it."""
    init = encrypted_model.init_container(encrypted_model.EncryptedModelArgs(SOURCE, MANIFEST, 1, KEY_URI, DECRYPTOR, "sas"))
    spec = {**init, "env": [{"name": "AZURE_STORAGE_SAS_TOKEN", "value": "sv=2022-11-02&sig=x"}]}
    request = pod_container(spec, [{"name": encrypted_model.VOLUME, "emptyDir": {"medium": "Memory"}}], image=DECRYPTOR,
                            image_env=("PATH=/opt/app-root/bin:/usr/bin:/bin", "PYTHONUNBUFFERED=1"),
                            args=tuple(args if args is not None else [*init["command"], *init["args"]]), cwd="/opt/app-root/src")
    request["OCI"]["Annotations"]["io.kubernetes.cri.container-name"] = encrypted_model.INIT_CONTAINER
    return request


def pause() -> dict[str, Any]:
    """The pause container as containerd sends it (genpolicy testdata createcontainer/ignored_fields)."""
    return fixture("sandbox")


# --- CRI-O (cri-o/cri-o f954a17e505f8931e91004403b5f5eac71ab6085) ---------------------------------------
CRIO_CONTAINER_ID = "5e0c" * 16
CRIO_SANDBOX_ID = "9b1f" * 16
CRIO_PAUSE_ARGS = ["/usr/bin/pod"]  # OpenShift's crio.conf pause_command (CRI-O's default is /pause)


def crio(request: dict[str, Any]) -> dict[str, Any]:
    """`request` as CRI-O sends it through the kata runtime instead of containerd:
    - its own annotations: io.kubernetes.cri-o.ContainerType, SandboxID, ImageName (pkg/annotations;
      kata's runtime reads the image from ImageName: kata_agent.go handleImageGuestPullBlockVolume) and
      merges them into the image_guest_pull metadata;
    - 64-hex container ids; the pause process `pause_command` (OpenShift: /usr/bin/pod);
    - /etc/hostname, /etc/resolv.conf (options rw|ro, bind, nodev, nosuid, noexec) and /run/.containerenv
      bind mounts (server/container_create.go setupBaseContainerMounts; sandbox_run_linux.go), /etc/passwd and
      /etc/group for a UID the image does not list (setupContainerUser), /dev/shm
      bind-mounted from the sandbox (addShmMount; kata's handleShm rewrites it to the guest's shm),
      /sys/fs/cgroup as cgroup with relatime (container_create_linux.go);
    - the sysctl OpenShift's crio.conf sets by default (default_sysctls: ping_group_range).
    """
    request = copy.deepcopy(request)
    oci = request["OCI"]
    annotations = oci["Annotations"]
    sandbox = annotations.get("io.kubernetes.cri.container-type") == "sandbox"
    new_id = CRIO_SANDBOX_ID if sandbox else CRIO_CONTAINER_ID
    image = annotations.get(IMAGE_ANNOTATIONS[0])
    crio_annotations = {
        "io.kubernetes.cri-o.ContainerType": "sandbox" if sandbox else "container",
        "io.kubernetes.cri-o.SandboxID": CRIO_SANDBOX_ID,
        "io.kubernetes.cri-o.ContainerName": annotations.get("io.kubernetes.cri.container-name", "POD"),
        "io.kubernetes.cri-o.Namespace": "llama",
        **({"io.kubernetes.cri-o.ImageName": image} if image else {}),
    }
    oci["Annotations"] = crio_annotations
    request = with_container_id(request, new_id)
    oci = request["OCI"]
    for storage in request["storages"]:
        if storage["driver"] == "image_guest_pull":
            (option,) = storage["driver_options"]
            key, _, value = option.partition("=")
            volume = json.loads(value)
            volume["metadata"] = dict(crio_annotations)
            storage["driver_options"] = [f"{key}={json.dumps(volume, separators=(',', ':'))}"]
        elif storage["driver"] == "local":
            storage["mount_point"] = storage["mount_point"].replace(SANDBOX_ID, CRIO_SANDBOX_ID)
    mounts = []
    for mount in oci["Mounts"]:
        mount = dict(mount, source=mount["source"].replace(SANDBOX_ID, CRIO_SANDBOX_ID))
        if mount["destination"] in ("/etc/hostname", "/etc/resolv.conf"):
            mount["options"] = ["ro" if sandbox else "rw", "bind", "nodev", "nosuid", "noexec"]
        if mount["destination"] == "/sys/fs/cgroup":
            mount["options"] = ["nosuid", "noexec", "nodev", "relatime", "ro"]
        mounts.append(mount)
    destinations = {m["destination"] for m in mounts}
    # The passwd and group files CRI-O writes for the UID OpenShift's restricted SCC assigns (setupContainerUser).
    for destination in ("/etc/hostname", "/run/.containerenv", *(() if sandbox else ("/etc/passwd", "/etc/group"))):
        if destination not in destinations:
            name = destination.rsplit("/", 1)[-1]
            mounts.append({"destination": destination, "options": ["ro" if sandbox else "rw", "bind"], "source": f"{SHARED}{new_id}-fedcba9876543210-{name}", "type_": "bind"})
    if sandbox:
        oci["Process"]["Args"] = list(CRIO_PAUSE_ARGS)
    oci["Linux"]["Sysctl"] = {"net.ipv4.ping_group_range": "0 2147483647"} if sandbox else {}
    oci["Mounts"] = mounts
    return request


def with_container_id(request: dict[str, Any], container_id: str) -> dict[str, Any]:
    """`request` for another container id, as the runtime derives from it: the image's mount point and
    root, and the names of the files it copies in (fs_share_linux.go shareFileName)."""
    request = copy.deepcopy(request)
    old = request["container_id"]
    request["container_id"] = request["exec_id"] = container_id
    request["OCI"]["Root"]["Path"] = f"/run/kata-containers/{container_id}/rootfs"
    for storage in request["storages"]:
        if storage["driver"] == "image_guest_pull":
            storage["mount_point"] = request["OCI"]["Root"]["Path"]
    for mount in request["OCI"]["Mounts"]:
        mount["source"] = mount["source"].replace(f"{SHARED}{old}-", f"{SHARED}{container_id}-").replace(f"watchable/{old}-", f"watchable/{container_id}-")
    return request


def with_sandbox_id(request: dict[str, Any], sandbox_id: str) -> dict[str, Any]:
    """`request` in a sandbox of another id: its annotation and the emptyDirs under the sandbox's directory."""
    return json.loads(json.dumps(request).replace(SANDBOX_ID, json.dumps(sandbox_id)[1:-1]))


def copy_file(path: str, file_type: str = "Regular", symlink_target: str | None = None) -> dict[str, Any]:
    """A PolicyCopyFileRequest (kata-containers src/agent/policy/src/policy.rs)."""
    return {"path": path, "file_type": file_type, "symlink_target": symlink_target, "file_size": 12, "file_mode": 0o644, "dir_mode": 0o750, "uid": 0, "gid": 0, "offset": 0}


def pod_copies(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The CopyFile requests the runtime sends before `request` (fs_share_linux.go ShareFile without a
    shared filesystem): each file it copies in, a Secret volume as its directory, its timestamped data
    directory, the file and the `..data` and top-level symlinks (kubelet's atomic writer layout)."""
    copies = []
    for mount in request["OCI"]["Mounts"]:
        if not mount["source"].startswith(SHARED) or "/rootfs/local/" in mount["source"]:
            continue
        if "/watchable/" in mount["source"]:
            root = mount["source"]
            copies += [copy_file(root, "Directory"), copy_file(f"{root}/..2026_12_06_01_00_00.12345", "Directory"),
                       copy_file(f"{root}/..2026_12_06_01_00_00.12345/data", "Regular"),
                       copy_file(f"{root}/..data", "Symlink", "..2026_12_06_01_00_00.12345"), copy_file(f"{root}/data", "Symlink", "..data/data")]
        else:
            copies.append(copy_file(mount["source"]))
    return copies


def create_sandbox() -> dict[str, Any]:
    """CreateSandboxRequest as the kata runtime sends it (kata_agent.go startSandbox, setupStorages: the sandbox's shm)."""
    return {"hostname": "llama-predictor-7d9c", "dns": [], "storages": [{"driver": "ephemeral", "driver_options": [], "source": "shm", "fstype": "tmpfs",
            "options": ["noexec", "nosuid", "nodev", "mode=1777", "size=67108864"], "mount_point": "/run/kata-containers/sandbox/shm", "fs_group": None}],
            "sandbox_pidns": False, "sandbox_id": SANDBOX_ID, "guest_hook_path": "", "kernel_modules": []}


def policy_data(text: str) -> dict[str, Any]:
    """The rendered data block of an agent policy's text (`policy_data := {...}`)."""
    start = text.index("policy_data := ") + len("policy_data := ")
    return json.JSONDecoder().raw_decode(text, start)[0]
