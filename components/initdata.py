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


@dataclass(frozen=True)
class AgentPolicyArgs:
    image: str
    """The one application image the pod VM may run, `repo@sha256:<digest>`."""
    allow_read_stream: bool = True
    args: tuple[str, ...] | None = None
    """The only command line (entrypoint and arguments) the container may run, or None: any."""
    decryptor: DecryptorPolicy | None = None
    """The init container that decrypts the workload's encrypted model, or None."""
    image_env: tuple[str, ...] = ()
    """`NAME=value` entries of the image's own config Env, allowed verbatim even when NAME is in UNSAFE_ENV."""
    writable_dirs: tuple[str, ...] = ()
    """Directories under CODE_DIRS where the container may have a volume created inside the pod VM."""


# Environment variables through which a process loads code, or configuration that can load code; refused
# for every container unless the image itself sets the entry (AgentPolicyArgs.image_env):
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
# Where an image's code, interpreter and libraries live (NIM's under /opt/nim, its libraries under /opt and
# /usr): no volume may be mounted at, above or under them, except a volume the agent creates in the pod VM
# at one of the container's `writable_dirs`. The runtime's own files under /etc
# (kata-containers genpolicy testdata createcontainer/gid mounts) are single files the host writes anyway.
CODE_DIRS = ("/opt", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc")
RUNTIME_ETC_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")
_SOURCE_PLACEHOLDER = "https://source.invalid/"


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
    match = PINNED_IMAGE.match(args.image)
    if not match:
        raise ValueError(f"{args.image!r} is not pinned by digest")
    refused = set(DENIED_REQUESTS) | ({"ReadStreamRequest"} if not args.allow_read_stream else set())
    # Requests with rules of their own in the template; every other one is a plain default.
    ruled = {"CreateContainerRequest", "CopyFileRequest"}
    return render(
        "initdata/agent-policy.rego.j2",
        defaults=[(r, r not in refused) for r in AGENT_REQUESTS if r not in ruled],
        image=args.image,
        repository=match["repository"],
        digest=match["digest"],
        args=list(args.args) if args.args is not None else None,
        image_env=args.image_env,
        writable_dirs=args.writable_dirs,
        shared_dir=SHARED_CONTAINERS_DIR,
        unsafe_env=UNSAFE_ENV,
        unsafe_env_prefixes=UNSAFE_ENV_PREFIXES,
        code_dirs=CODE_DIRS,
        runtime_etc_files=RUNTIME_ETC_FILES,
        decryptor=_decryptor_values(args.decryptor) if args.decryptor else None,
    )


def _decryptor_values(decryptor: DecryptorPolicy) -> dict[str, object]:
    match = PINNED_IMAGE.match(decryptor.image)
    if not match:
        raise ValueError(f"{decryptor.image!r} is not pinned by digest")
    process = [*encrypted_model.COMMAND, *encrypted_model.decryptor_args(_SOURCE_PLACEHOLDER, decryptor.key_uri, decryptor.manifest_sha256)]
    return {
        "repository": match["repository"],
        "digest": match["digest"],
        # The one argument left free: where the ciphertext is. What it downloads is authenticated by the
        # key and checked against the pinned manifest, so the host choosing it only chooses failure.
        "process": process,
        "source_index": process.index(_SOURCE_PLACEHOLDER),
    }


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
