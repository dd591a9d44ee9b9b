"""The initdata document a workload's pod VMs measure: how they reach KBS and what their agent lets the host do.

Pure: `render_initdata` turns inputs into bytes, and everything published (annotation value, digest,
PCR 8 reference value) is computed from those same bytes. One document per workload, so each
workload has its own PCR 8 and KBS can tell them apart.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from components import encrypted_model
from components.templating import render

# Every request the Kata agent asks its policy about, as `data.agent_policy.<name>`; an undefined one
# fails the request (kata-containers src/agent/src/rpc.rs `is_allowed`, src/agent/src/policy.rs
# `do_set_policy`, src/agent/policy/src/policy.rs `allow_request`, at commit
# 7c6ba40c54ea29b459b4997cff948caaba4e658b). Upstream's src/kata-opa/allow-all.rego at that commit
# still lists retired requests (PullImage, Start/StopTracing) and lacks AddSwapPath, GetIPTables,
# SetIPTables, VolumeStats and ResizeVolume, so it is not the vocabulary.
AGENT_REQUESTS = tuple(
    [
        f"{name}Request"
        for name in (
            "AddARPNeighbors AddSwap AddSwapPath CloseStdin CopyFile CreateContainer CreateSandbox DestroySandbox "
            "ExecProcess GetDiagnosticData GetIPTables GetMetrics GetOOMEvent GuestDetails ListInterfaces ListRoutes "
            "MemHotplugByProbe OnlineCPUMem PauseContainer ReadStream RemoveContainer RemoveStaleVirtiofsShareMounts "
            "ReseedRandomDev ResizeVolume ResumeContainer SetGuestDateTime SetIPTables SetPolicy SignalProcess "
            "StartContainer StatsContainer TtyWinResize UpdateContainer UpdateEphemeralMounts UpdateInterface "
            "UpdateRoutes VolumeStats WaitProcess WriteStream"
        ).split()
    ]
    + ["MemAgentMemcgConfig", "MemAgentCompactConfig"]
)
# Refused whatever the workload: the host (the cloud operator) could run commands in the guest,
# replace the policy, or write into a container's stdin.
DENIED_REQUESTS = ("ExecProcessRequest", "SetPolicyRequest", "WriteStreamRequest")
# An image pinned by digest (distribution/reference: lowercase path components, optional registry port).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
PINNED_IMAGE = re.compile(
    rf"^(?P<repository>(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*)@(?P<digest>sha256:[0-9a-f]{{64}})$"
)
# Where peer pods receive Secret/ConfigMap volumes, hosts, hostname and resolv.conf (no shared
# filesystem): kata-containers src/runtime/virtcontainers/fs_share_linux.go, agent KATA_GUEST_SHARE_DIR.
SHARED_CONTAINERS_DIR = "/run/kata-containers/shared/containers/"
# The sandbox's /dev/shm and memory-backed emptyDirs in the guest (kata_agent.go setupStorages,
# handleEphemeralStorage).
SANDBOX_SHM = "/run/kata-containers/sandbox/shm"
EPHEMERAL_DIR = "/run/kata-containers/sandbox/ephemeral/"

_PCR_BANK_ZEROS = bytes(32)


@dataclass(frozen=True)
class Initdata:
    document: bytes
    """The initdata TOML, byte for byte what the guest hashes."""

    @cached_property
    def digest(self) -> str:
        """sha256 of the document, hex (the `algorithm = "sha256"` the document declares)."""
        return hashlib.sha256(self.document).hexdigest()

    @cached_property
    def pcr8(self) -> str:
        """PCR 8 after the guest extends it once with the digest from its reset value (32 zero bytes).

        On Azure SNP vTPM the digest lands in PCR 8 (guest-components attestation-agent/src/initdata.rs).
        """
        return hashlib.sha256(_PCR_BANK_ZEROS + bytes.fromhex(self.digest)).hexdigest()

    @cached_property
    def annotation(self) -> str:
        """`io.katacontainers.config.hypervisor.cc_init_data`: gzip (no name, mtime 0), standard base64, one line."""
        return base64.b64encode(gzip.compress(self.document, mtime=0)).decode()


@dataclass(frozen=True)
class DecryptorPolicy:
    """The model decryptor a workload's pod also runs (components/encrypted_model.py): an interpreter
    with the model key in reach, so the policy pins what decides the code it runs, not just the image."""

    image: str
    """`repo@sha256:<digest>`."""
    key_uri: str
    manifest_sha256: str


VolumeKind = Literal["local", "memory", "files"]


@dataclass(frozen=True)
class PodVolume:
    """One volumeMount of a container as the kata runtime hands it to the agent: an emptyDir the agent
    creates on the pod VM's disk (`local`) or in its memory (`memory`), or files the runtime copies in
    (`files`: a Secret or ConfigMap)."""

    destination: str
    kind: VolumeKind
    name: str
    """The pod volume's name (an emptyDir's storage is named after it)."""
    read_only: bool = False


@dataclass(frozen=True)
class PodContainer:
    """What the pod spec gives the workload's container beside its image: exact environment entries,
    the variables that hold sealed pointers, and its volumes."""

    env: tuple[str, ...] = ()
    """`NAME=value` entries the pod spec sets."""
    sealed_env: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(NAME, excluded): a variable the pod spec fills with a sealed pointer, never one starting with an
    `excluded` prefix (`sealed.<header>.<payload>.`: components/sealed_secret.py sealed_prefix): the workload's
    own secrets meant for something else. Which resource a pointer may name otherwise is KBS's decision (it
    releases only the workload's own), so adding a resource to a workload leaves its policy as it is."""
    volumes: tuple[PodVolume, ...] = ()


AgentPolicyMode = Literal["enforce", "audit"]


@dataclass(frozen=True)
class AgentPolicyArgs:
    image: str
    """The one application image the pod VM may run, `repo@sha256:<digest>`."""
    allow_read_stream: bool = True
    args: tuple[str, ...] | None = None
    """The only command line (entrypoint and arguments) the container may run, or None: any."""
    decryptor: DecryptorPolicy | None = None
    """The init container that decrypts the workload's encrypted model, or None."""
    image_env: tuple[str, ...] | None = ()
    """`NAME=value` entries of the image's own config Env: the only values its variables may take
    (PATH, LD_LIBRARY_PATH, ...), beside the pod spec's and the runtime's own. None: not pinned, any entry but
    those through which a process loads code (UNSAFE_ENV) and sealed pointers: only for a pod no secret reaches."""
    working_dir: str | None = None
    """The image's WorkingDir: the only working directory the container may have; None: any outside host files."""
    container: PodContainer = PodContainer()
    """The workload container's environment and volumes as the pod spec renders them."""
    mode: AgentPolicyMode = "enforce"
    """`audit`: the agent serves every request and logs each one the enforcing policy refuses."""


# Environment variables through which a process loads code, or configuration that can load code. The
# workload container takes only listed values anyway; these are refused in a container whose image
# environment is not pinned (the decryptor), and in entries shaped like the runtime's own (service links):
# - glibc's list of variables it drops for setuid programs (glibc sysdeps/generic/unsecvars.h
#   UNSECURE_ENVVARS, all `LD_*` among them);
# - OpenSSL's configuration and module paths (OpenSSL doc/man7/openssl-env.pod);
# - CPython's that add import paths, run a file or import a named module (Doc/using/cmdline.rst,
#   "Environment variables"), which the decryptor's `python3 -I` ignores but NIM's interpreter reads;
# - bash's that source a file or define functions before a script runs (bash(1): BASH_ENV, ENV,
#   SHELLOPTS with xtrace and PS4's command substitution, exported `BASH_FUNC_<name>%%` functions);
# - CUDA's injection library (CUDA_INJECTION64_PATH, read by libcuda at initialisation) and NCCL's
#   plugin libraries (NCCL environment variables: NCCL_NET_PLUGIN, NCCL_TUNER_PLUGIN, NCCL_PROFILER_PLUGIN).
UNSAFE_ENV_PREFIXES = ("LD_", "BASH_FUNC_")
UNSAFE_ENV = (
    "GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH", "MALLOC_TRACE",
    "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TMPDIR", "TZDIR",
    "OPENSSL_CONF", "OPENSSL_ENGINES", "OPENSSL_MODULES", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONPLATLIBDIR", "PYTHONPYCACHEPREFIX",
    "PYTHONBREAKPOINT", "PYTHONWARNINGS",
    "BASH_ENV", "ENV", "SHELLOPTS", "PS4",
    "CUDA_INJECTION64_PATH", "NCCL_NET_PLUGIN", "NCCL_TUNER_PLUGIN", "NCCL_PROFILER_PLUGIN",
)
# Where an image's code, interpreter and libraries live: a pod volume there must be one the agent creates
# in the pod VM (an emptyDir), never files the host copies in (render_agent_policy checks the pod's volumes).
CODE_DIRS = ("/opt", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc")
# What the runtimes add to every container, beside the pod's volumes. Kernel filesystems by destination and
# type (containerd's and CRI-O's default spec: genpolicy testdata createcontainer; cri-o
# server/container_create_linux.go); files the runtime copies in: kubelet's /etc/hosts, termination log and
# service-account token, the sandbox's resolv.conf and hostname, CRI-O's /run/.containerenv
# (server/container_create.go setupBaseContainerMounts) and /run/secrets (containers mounts.conf on RHEL), and
# the /etc/passwd and /etc/group CRI-O writes for a UID the image does not list, as OpenShift's restricted SCC
# assigns one (server/container_create.go setupContainerUser, utils.GeneratePasswd).
KERNEL_MOUNTS = {"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/mqueue": "mqueue", "/sys": "sysfs", "/sys/fs/cgroup": "cgroup"}
RUNTIME_FILES = (
    "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/termination-log", "/run/.containerenv", "/run/secrets",
    "/var/run/secrets/kubernetes.io/serviceaccount", "/etc/passwd", "/etc/group",
)
# Every container's namespaces as the kata runtime sends them, on containerd and CRI-O alike (kata_agent.go
# drops cgroup, network and time, handlePidNamespace pid; genpolicy testdata createcontainer).
NAMESPACES = ("ipc", "mount", "uts")
PAUSE_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/run/.containerenv")
# The pause process as containerd and OpenShift's CRI-O (`pause_command`) send it; the agent replaces it anyway.
PAUSE_ARGS = (["/pause"], ["/usr/bin/pod"])
# containerd's default capabilities (genpolicy-settings.json default_caps); CRI-O's and OpenShift's
# restricted SCC's are fewer. Any other is refused.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)
# The network sysctls containerd 2 (enable_unprivileged_ports/icmp) and OpenShift's CRI-O (default_sysctls)
# set in every pod (genpolicy-settings.json pause_container.Linux.Sysctl); any other is refused.
SYSCTLS = {"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"}
BIND_OPTIONS = ("bind", "rbind", "private", "rprivate", "slave", "rslave", "ro", "rw", "nosuid", "nodev", "noexec", "relatime")
# Environment the runtimes generate: kubelet's service links and HOSTNAME (genpolicy-settings.json
# allow_env_regex), KServe's INFERENCE_SERVICE_NAME (kserve predictor.go).
_IP = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"
_PORT = "[0-9]{1,5}"
_PROTO = "(?:tcp|udp|sctp)"
ENV_PATTERNS = (
    "^HOSTNAME=[a-zA-Z0-9_.-]+$",
    "^INFERENCE_SERVICE_NAME=[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    # <SERVICE>_SERVICE_HOST, _SERVICE_PORT[_<NAME>], _PORT, _PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]
    f"^[A-Z][A-Z0-9_]{{0,62}}_(?:SERVICE_HOST={_IP}|SERVICE_PORT(?:_[A-Z0-9_]+)?={_PORT}|PORT={_PROTO}://{_IP}:{_PORT}"
    f"|PORT_{_PORT}_(?:TCP|UDP|SCTP)(?:={_PROTO}://{_IP}:{_PORT}|_PROTO={_PROTO}|_PORT={_PORT}|_ADDR={_IP}))$",
)
# The CRI annotations naming a container's type and its sandbox, containerd's and CRI-O's
# (kata-containers src/runtime/pkg/oci/utils.go; the agent's K8S_CONTAINER_TYPE_KEYS).
ANNOTATIONS = {
    "container_type": ["io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType"],
    "sandbox_id": ["io.kubernetes.cri.sandbox-id", "io.kubernetes.cri-o.SandboxID"],
}
# Requests whose rules the template writes; every other request is a plain default.
_RULED = ("CreateContainerRequest", "CopyFileRequest", "CreateSandboxRequest", "UpdateContainerRequest")
# Refused whatever their fields: the agent returns a file the host chose (GetDiagnosticData reads the
# termination log's source), mounts what the host names (UpdateEphemeralMounts), swaps to a host disk
# (AddSwap, AddSwapPath); FACTS section 4, kata-containers src/agent/src/rpc.rs.
REFUSED_REQUESTS = ("GetDiagnosticDataRequest", "UpdateEphemeralMountsRequest", "AddSwapRequest", "AddSwapPathRequest")
_SOURCE_PLACEHOLDER = "https://source.invalid/"  # matches _HTTPS_URL: the agent policy relies on it
_HTTPS_URL = r"^https://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~%/-]*)?$"


@dataclass(frozen=True)
class InitdataArgs:
    kbs_url: str
    kbs_ca_pem: str
    policy: AgentPolicyArgs
    registry_credentials_uri: str | None = None
    """KBS resource with the registry credentials CDH pulls the image with, or None."""
    cloud_stack: str | None = None
    """The cloud stack that runs the pod VM, written into the document so that the same workload on two
    cloud stacks measures two PCR 8 values and KBS can tell them apart."""


def render_agent_policy(args: AgentPolicyArgs) -> str:
    refused = {*DENIED_REQUESTS, *REFUSED_REQUESTS} | ({"ReadStreamRequest"} if not args.allow_read_stream else set())
    return render(
        "initdata/agent-policy.rego.j2",
        data=policy_data(args),
        audit=args.mode == "audit",
        defaults=[(r, r not in refused and r not in _RULED) for r in AGENT_REQUESTS],
    )


def policy_data(args: AgentPolicyArgs) -> dict[str, Any]:
    """What the fixed rules compare requests with: this workload's pod, and the runtimes' own shapes."""
    containers = [_workload_spec(args)] + ([_decryptor_spec(args.decryptor)] if args.decryptor else [])
    return {
        "annotations": ANNOTATIONS,
        "bind_options": list(BIND_OPTIONS),
        "capabilities": list(DEFAULT_CAPABILITIES),
        "containers": containers,
        "env_patterns": list(ENV_PATTERNS),
        "ephemeral_dir": EPHEMERAL_DIR,
        "kernel_mounts": KERNEL_MOUNTS,
        "namespaces": list(NAMESPACES),
        "pause": {"args": [list(a) for a in PAUSE_ARGS], "files": list(PAUSE_FILES)},
        "runtime_files": list(RUNTIME_FILES),
        "sandbox_shm": SANDBOX_SHM,
        "shared_dir": SHARED_CONTAINERS_DIR,
        "sysctls": SYSCTLS,
        "unsafe_env": list(UNSAFE_ENV),
        "unsafe_env_prefixes": list(UNSAFE_ENV_PREFIXES),
    }


def _pinned(image: str) -> re.Match[str]:
    match = PINNED_IMAGE.match(image)
    if not match:
        raise ValueError(f"{image!r} is not pinned by digest")
    return match


def _workload_spec(args: AgentPolicyArgs) -> dict[str, Any]:
    match = _pinned(args.image)
    if args.working_dir is not None and not args.working_dir.startswith("/"):
        raise ValueError(f"working directory {args.working_dir!r} is not an absolute path")
    for volume in args.container.volumes:
        if volume.kind == "files" and any(_overlaps(volume.destination, d) for d in CODE_DIRS):
            raise ValueError(f"volume {volume.name!r} puts host files at {volume.destination}, over the image's code")
    return {
        "role": "workload",
        "repository": match["repository"],
        "digest": match["digest"],
        "args": list(args.args) if args.args is not None else None,
        "free_arg": {"index": -1, "pattern": "^$"},
        "cwd": args.working_dir,
        "env": list(args.container.env),
        "image_env": list(args.image_env) if args.image_env is not None else None,
        "sealed_env": {name: list(excluded) for name, excluded in args.container.sealed_env},
        "volumes": [_volume(v) for v in args.container.volumes],
    }


def _decryptor_spec(decryptor: DecryptorPolicy) -> dict[str, Any]:
    match = _pinned(decryptor.image)
    process = [*encrypted_model.COMMAND, *encrypted_model.decryptor_args(_SOURCE_PLACEHOLDER, decryptor.key_uri, decryptor.manifest_sha256)]
    return {
        "role": "decryptor",
        "repository": match["repository"],
        "digest": match["digest"],
        # The one argument left free: where the ciphertext is. What it downloads is authenticated by the
        # key and checked against the pinned manifest, so the host choosing it only chooses failure.
        "args": process,
        "free_arg": {"index": process.index(_SOURCE_PLACEHOLDER), "pattern": _HTTPS_URL},
        "cwd": None,
        "env": [],
        # Its image's environment is not pinned: `python3 -I` ignores PYTHON*, the rest of the loaders'
        # variables are refused (UNSAFE_ENV), and no sealed pointer is taken. Its SAS token (from a plain
        # Secret) is one such variable.
        "image_env": None,
        "sealed_env": {},
        "volumes": [_volume(PodVolume(encrypted_model.MODEL_DIR, "memory", encrypted_model.VOLUME))],
    }


def _volume(volume: PodVolume) -> dict[str, Any]:
    return {"destination": volume.destination, "kind": volume.kind, "name": volume.name, "read_only": volume.read_only}


def _overlaps(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory + "/") or directory.startswith(path.rstrip("/") + "/")


def render_initdata(args: InitdataArgs) -> Initdata:
    values = {"kbs_url": args.kbs_url, "kbs_ca_pem": args.kbs_ca_pem}
    document = render(
        "initdata/initdata.toml.j2",
        aa_toml=render("initdata/aa.toml.j2", **values),
        cdh_toml=render("initdata/cdh.toml.j2", registry_credentials_uri=args.registry_credentials_uri, **values),
        policy_rego=render_agent_policy(args.policy),
        cloud_stack=args.cloud_stack,
    )
    return Initdata(document.encode())
