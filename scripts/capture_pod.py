"""A pod that prints its pod VM's attestation evidence: `python -m scripts.capture_pod --env ENV --image IMAGE@sha256:... --trusted-outputs FILE`.

Reference values come from the trusted side's own reading of a genuine pod VM, and the agent policy
refuses `exec`, so the evidence is read by a pod of its own: one per pod VM size of ENV-cloud
(`peerPods.instanceSizes`), each with its own initdata (KBS URL and CA from the trusted outputs, an
agent policy that runs only the capture command) and no secrets. Its container asks the guest's
attestation agent for evidence (guest-components api-server-rest, `GET /aa/evidence`) and writes it to
its log; `python -m scripts.reference_values` reads it (docs/operations.md). The capture initdata is no
workload's, so KBS releases nothing to these pod VMs. Prints the pods as YAML (`oc apply -f -`).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from components.initdata import PINNED_IMAGE, AgentPolicyArgs, InitdataArgs, render_initdata
from components.nim import INITDATA_ANNOTATION, MACHINE_TYPE_ANNOTATION
from components.peerpods import RUNTIME_CLASS
from scripts.cli import ArgumentParser, OutputsFileError, environment, read_outputs_file
from scripts.offline.stackfile import STACKS_DIR, StackFileError, read_stack_file
from stacks.config import CloudConfig, ConfigError, load

PROG = "python -m scripts.capture_pod"
# api-server-rest listens on 127.0.0.1:8006 in the pod VM; `runtime_data` is required and becomes the
# evidence's report data (guest-components api-server-rest src/main.rs DEFAULT_BIND, src/router.rs,
# README.md, at 8246e5e0). Its attestation routes answer only when the agent starts it with
# `guest_components_rest_api = all` (default `resource`: 404 "Attestation Feature Not Enabled").
EVIDENCE_URL = "http://127.0.0.1:8006/aa/evidence?runtime_data=confidential-ai-reference-values"
COMMAND = ("curl", "--fail-with-body", "--silent", "--show-error", "--max-time", "120", EVIDENCE_URL)
CONTAINER = "capture"


def pod_name(size: str) -> str:
    return "capture-evidence-" + re.sub(r"[^a-z0-9]+", "-", size.lower()).strip("-")


def capture_pods(image: str, sizes: Sequence[str], namespace: str, kbs_url: str, kbs_ca_pem: str) -> list[dict[str, Any]]:
    """One Pod per pod VM size, sharing one initdata whose agent policy runs only COMMAND in `image`."""
    # The image's environment is not pinned (image_env None: any entry but code-loading ones): no secret
    # reaches this pod VM, whose initdata is no workload's.
    initdata = render_initdata(InitdataArgs(kbs_url=kbs_url, kbs_ca_pem=kbs_ca_pem, policy=AgentPolicyArgs(image=image, args=COMMAND, image_env=None)))
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name(size),
                "namespace": namespace,
                "labels": {"app.kubernetes.io/name": "capture-evidence", "app.kubernetes.io/part-of": "confidential-ai"},
                "annotations": {MACHINE_TYPE_ANNOTATION: size, INITDATA_ANNOTATION: initdata.annotation},
            },
            "spec": {
                "runtimeClassName": RUNTIME_CLASS,
                "restartPolicy": "Never",
                # Nothing from the cluster reaches the pod VM: no token, no service links, no volumes.
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "containers": [
                    {
                        "name": CONTAINER,
                        "image": image,
                        "command": list(COMMAND),
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                    }
                ],
            },
        }
        for size in sizes
    ]


class CannotRender(Exception):
    """A one-line reason, printed as is."""


def _pinned(value: str) -> str:
    if not PINNED_IMAGE.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an image pinned by digest (repo@sha256:<64 hex>) with curl in it")
    return value


def _cloud_config(env: str, stacks_dir: Path) -> CloudConfig:
    stack = f"{env}-cloud"
    try:
        stack_file = read_stack_file(stack, stacks_dir)
        prefix = "confidential-ai:"
        config = load(stack, {k[len(prefix):]: v for k, v in stack_file.config.items() if k.startswith(prefix)},
                      [k[len(prefix):] for k in stack_file.secret_keys])
    except StackFileError as err:
        raise CannotRender(str(err)) from None
    except ConfigError as err:
        raise CannotRender(f"{err.lines()[0]} (fix the cloud stack config first)") from None
    assert isinstance(config, CloudConfig)
    return config


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, type=environment, help="environment: one pod per peerPods.instanceSizes of ENV-cloud")
    parser.add_argument("--image", required=True, type=_pinned, help="an image with curl, pinned by digest (e.g. UBI minimal's)")
    parser.add_argument("--trusted-outputs", required=True, type=Path, help="JSON of the trusted stack outputs (pulumi stack output --json -s ENV-trusted)")
    parser.add_argument("--namespace", default="default", help="namespace of the capture pods (default: default)")
    parser.add_argument("--size", action="append", help="only this pod VM size (repeatable; default: every instance size)")
    parser.add_argument("--stacks-dir", type=Path, default=STACKS_DIR, help="where the Pulumi.<stack>.yaml files are (default: stacks/)")
    args = parser.parse_args(argv)
    try:
        config = _cloud_config(args.env, args.stacks_dir)
        outputs = read_outputs_file("--trusted-outputs", args.trusted_outputs, "trusted")
        kbs_url, kbs_ca = outputs.get("kbsUrl"), outputs.get("kbsCaCert")
        if not isinstance(kbs_url, str) or not isinstance(kbs_ca, str):
            raise CannotRender(f"--trusted-outputs {args.trusted_outputs} has no kbsUrl and kbsCaCert")
        sizes = args.size or config.peer_pods.instance_sizes
        unknown = [s for s in sizes if s not in config.peer_pods.instance_sizes]
        if unknown:
            raise CannotRender(f"--size {unknown[0]} is not in {args.env}-cloud's peerPods.instanceSizes ({', '.join(config.peer_pods.instance_sizes)})")
    except (CannotRender, OutputsFileError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    pods = capture_pods(args.image, sizes, args.namespace, kbs_url, kbs_ca)
    sys.stdout.write(yaml.safe_dump_all(pods, sort_keys=False, width=4096))
    return 0


if __name__ == "__main__":
    sys.exit(main())
