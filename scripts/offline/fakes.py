"""Deterministic stand-ins for what providers compute: IDs, kubeconfigs, keys, stack outputs.

Every value is derived from the resource's type, name and inputs, so the same config always gives
the same plan. Components add entries here when they need a provider-computed value that matters
to the plan (an Azure resource ID, a certificate PEM), keyed by type token or invoke token.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import MockCallArgs, MockResourceArgs

FAKE_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class StackOutputs:
    """What a StackReference to a deployed stack sees: its outputs and which of them are secret."""

    values: dict[str, Any]
    secret_names: frozenset[str] = frozenset()


def digest(*parts: str, length: int = 32) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:length]


def fake_guid(*parts: str) -> str:
    h = digest(*parts)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def fake_pem(label: str, *parts: str) -> str:
    """A PEM-shaped placeholder; clearly not real key material, stable for the same inputs."""
    body = base64.b64encode(("offline-plan placeholder " + digest(label, *parts, length=64)).encode()).decode()
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


ResourceFake = Callable[[MockResourceArgs], tuple[str, dict[str, Any]]]
CallFake = Callable[[MockCallArgs], dict[str, Any]]

# Type token -> fake. A token missing here gets `<name>-id` and its inputs back as state.
RESOURCE_FAKES: dict[str, ResourceFake] = {}
# Invoke token -> fake result.
CALL_FAKES: dict[str, CallFake] = {}


def resource_fake(*tokens: str) -> Callable[[ResourceFake], ResourceFake]:
    def register(fn: ResourceFake) -> ResourceFake:
        for token in tokens:
            RESOURCE_FAKES[token] = fn
        return fn

    return register


def call_fake(*tokens: str) -> Callable[[CallFake], CallFake]:
    def register(fn: CallFake) -> CallFake:
        for token in tokens:
            CALL_FAKES[token] = fn
        return fn

    return register


@resource_fake("pulumi:providers:kubernetes")
def _kubernetes_provider(args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
    return fake_guid("provider", args.name), dict(args.inputs)


class OfflineMocks(pulumi.runtime.Mocks):
    def __init__(self, stack_outputs: Mapping[str, StackOutputs]):
        self.stack_outputs = stack_outputs

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.typ == "pulumi:pulumi:StackReference":
            return self._stack_reference(args)
        if args.typ.startswith("kubernetes:") and not args.typ.startswith("kubernetes:helm"):
            metadata = args.inputs.get("metadata") or {}
            namespace = metadata.get("namespace")
            name = metadata.get("name", args.name)
            return (f"{namespace}/{name}" if namespace else name), dict(args.inputs)
        fake = RESOURCE_FAKES.get(args.typ)
        if fake:
            return fake(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: MockCallArgs) -> dict[str, Any]:
        fake = CALL_FAKES.get(args.token)
        if fake is None:
            raise NotImplementedError(f"the offline plan has no fake for invoke {args.token}; add one in scripts/offline/fakes.py")
        return fake(args)

    def _stack_reference(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        name = args.inputs.get("name") or args.name
        short = name.rsplit("/", 1)[-1]
        outputs = self.stack_outputs.get(name) or self.stack_outputs.get(short)
        if outputs is None:
            # What a real StackReference to a stack never deployed sees: no outputs at all.
            return name, {**args.inputs, "name": name, "outputs": {}, "secretOutputNames": []}
        return name, {
            **args.inputs,
            "name": name,
            "outputs": dict(outputs.values),
            "secretOutputNames": sorted(outputs.secret_names),
        }
