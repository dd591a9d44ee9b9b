"""Trust boundary and secret hygiene, over the whole plan of each environment.

Every `secure:` key of both stacks gets a unique canary value. The plan must never show a canary in
plaintext: not in a written file, a non-secret input or a non-secret output. No trusted-side canary may
reach the cloud stack in any form, secret or not, and the trusted stack exports none of them even as a
secret (a StackReference reads every output). "In any form" means the text, and what base64, base64url,
hex and gzip decoding of the values reveals, and the value's sha256 digest.
"""

from __future__ import annotations

import base64
import binascii
import functools
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from scripts.offline import StackRun, run_stack
from scripts.offline.stackfile import PLACEHOLDER_PREFIX, cloud_stacks, read_stack_file
from scripts.plan import write_plan
from stacks.contracts import TRUSTED_OUTPUTS
from tests.tls_fixtures import private_lines

Canaries = dict[str, dict[str, str]]
"""stack -> secure key path -> canary value."""


def secure_keys(stack: str) -> list[str]:
    """Key paths of every `secure:` entry of the stack file (`kubeconfig`, `kbsSecrets.ngc-api-key`)."""
    prefix = re.escape(f"{PLACEHOLDER_PREFIX}:{stack}:")
    keys: set[str] = set()
    for value in read_stack_file(stack).config.values():
        keys.update(re.findall(prefix + r"([A-Za-z0-9_.\-\[\]]+)", value))
    return sorted(keys)


def canaries_for(env: str) -> Canaries:
    return {
        stack: {key: f"canary{hashlib.sha256(f'{stack}/{key}'.encode()).hexdigest()[:24]}" for key in secure_keys(stack)}
        for stack in (f"{env}-trusted", *cloud_stacks(env))
    }


def revealed(text: str, depth: int = 3) -> Iterator[str]:
    """`text` and everything decoding its encoded-looking tokens reveals (base64, base64url, hex, gzip/zlib)."""
    yield text
    if depth == 0:
        return
    for token in set(re.findall(r"[A-Za-z0-9+/_-]{12,}={0,2}", text)):
        candidates = []
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                candidates.append(decode(token.rstrip("=") + "=" * (-len(token.rstrip("=")) % 4)))
            except (binascii.Error, ValueError):
                pass
        if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", token):
            candidates.append(bytes.fromhex(token))
        for raw in candidates:
            for inflate in (gzip.decompress, zlib.decompress):
                try:
                    raw = inflate(raw)
                except (OSError, EOFError, zlib.error):
                    continue
            decoded = raw.decode("latin-1")
            if decoded != text:
                yield from revealed(decoded, depth - 1)


@functools.lru_cache(maxsize=4096)
def _everything_revealed(text: str) -> tuple[str, ...]:
    # Each value is checked for every canary: decode it once.
    return tuple(revealed(text))


def leaked(canary: str, value: Any) -> bool:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    forms = (canary, hashlib.sha256(canary.encode()).hexdigest())
    return any(form in found for found in _everything_revealed(text) for form in forms)


def find_leaks(runs: list[StackRun], canaries: Canaries, written: dict[str, str]) -> list[str]:
    """Every place a canary shows where it must not; empty when the boundary holds."""
    every = {(stack, key): canary for stack, keys in canaries.items() for key, canary in keys.items()}
    leaks = []
    for name, content in written.items():
        leaks += [f"{stack} {key} in written file {name}" for (stack, key), canary in every.items() if leaked(canary, content)]
    for run in runs:
        for (stack, key), canary in every.items():
            leaks += [f"{stack} {key} in non-secret input of {r.urn}" for r in run.resources if leaked(canary, r.redacted_inputs)]
            public = {k: v for k, v in run.outputs.items() if k not in run.secret_outputs}
            leaks += [f"{stack} {key} in non-secret output {k} of {run.stack}" for k, v in public.items() if leaked(canary, v)]
            if stack == run.stack and run.stack.endswith("-trusted"):
                leaks += [f"{stack} {key} exported as output {k} (a StackReference reads every output)" for k, v in run.outputs.items() if leaked(canary, v)]
            if stack.endswith("-trusted") and run.stack.endswith("-cloud"):
                leaks += [f"{stack} {key} reached {r.urn} on the cloud side" for r in run.resources if leaked(canary, [r.inputs, r.outputs])]
                leaks += [f"{stack} {key} reached cloud output {k}" for k, v in run.outputs.items() if leaked(canary, v)]
    return leaks


def written_files(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", params=["dev", "prod"])
def canary_plan(request, tmp_path_factory, example_plan) -> tuple[list[StackRun], Canaries, dict[str, str]]:
    canaries = canaries_for(request.param)
    runs = example_plan(request.param, secret_values=canaries)
    out = tmp_path_factory.mktemp(f"canary-{request.param}")
    write_plan(runs, out)
    return runs, canaries, written_files(out)


def test_every_secure_key_has_a_canary(canary_plan):
    _, canaries, _ = canary_plan
    trusted = next(keys for stack, keys in canaries.items() if stack.endswith("-trusted"))
    assert "kubeconfig" in trusted
    values = [c for keys in canaries.values() for c in keys.values()]
    assert len(values) == len(set(values))


def test_every_canary_reaches_its_stack_as_a_secret(canary_plan):
    """Guards the test itself: a canary that never reaches a resource would prove nothing."""
    runs, canaries, _ = canary_plan
    for run in runs:
        for key, canary in canaries[run.stack].items():
            holders = [r for r in run.resources if leaked(canary, r.inputs)]
            assert holders, f"{run.stack} {key}: the canary reached no resource"
            assert not [r.urn for r in holders if leaked(canary, r.redacted_inputs)], f"{run.stack} {key} is not a secret input"


def test_no_canary_leaks_anywhere(canary_plan):
    runs, canaries, written = canary_plan
    assert find_leaks(runs, canaries, written) == []


def test_only_public_trusted_outputs_cross(canary_plan):
    """What the cloud side reads of the trusted stack is public: the contract's outputs, none of them secret."""
    runs, _, _ = canary_plan
    trusted = next(run for run in runs if run.stack.endswith("-trusted"))
    assert set(trusted.outputs) <= set(TRUSTED_OUTPUTS)
    assert trusted.secret_outputs == frozenset(), f"trusted outputs marked secret: {sorted(trusted.secret_outputs)}"


# --- The checks fail when they should ---------------------------------------------------------

CANARY = "canary0123456789abcdef01234567"


def _leaky_trusted() -> None:
    kubeconfig = pulumi.Config().require_secret("kubeconfig")
    provider = k8s.Provider("trusted-cluster", kubeconfig=kubeconfig, cluster_identifier="dev-trusted")
    opts = pulumi.ResourceOptions(provider=provider)
    gzipped = kubeconfig.apply(lambda v: base64.b64encode(gzip.compress(v.encode(), mtime=0)).decode())
    k8s.core.v1.ConfigMap("plain", metadata={"name": "plain"}, data={"config": pulumi.Output.unsecret(kubeconfig)}, opts=opts)
    k8s.core.v1.ConfigMap("encoded", metadata={"name": "encoded", "annotations": {"blob": pulumi.Output.unsecret(gzipped)}}, opts=opts)
    pulumi.export("kubeconfigCopy", kubeconfig)


def _leaky_cloud() -> None:
    trusted = pulumi.StackReference("trusted-stack", stack_name="organization/confidential-ai/dev-trusted")
    provider = k8s.Provider("cloud-cluster", kubeconfig="fake", cluster_identifier="dev-cloud")
    k8s.core.v1.Secret("copied", metadata={"name": "copied"}, string_data={"kubeconfig": trusted.get_output("kubeconfigCopy")}, opts=pulumi.ResourceOptions(provider=provider))


def test_leak_checks_catch_plain_encoded_exported_and_crossing_secrets(tmp_path):
    canaries = {"dev-trusted": {"kubeconfig": CANARY}, "dev-cloud": {}}
    trusted = run_stack("dev-trusted", {"kubeconfig": CANARY}, ("kubeconfig",), program=_leaky_trusted)
    cloud = run_stack("dev-cloud", {}, (), {"dev-trusted": trusted.stack_outputs}, program=_leaky_cloud)
    write_plan([trusted, cloud], tmp_path)
    leaks = find_leaks([trusted, cloud], canaries, written_files(tmp_path))
    expected = [
        "in written file dev-trusted/manifests/cluster--configmap--plain.yaml",
        "in written file dev-trusted/manifests/cluster--configmap--encoded.yaml",
        "in non-secret input of urn:pulumi:dev-trusted::confidential-ai::kubernetes:core/v1:ConfigMap::plain",
        "in non-secret input of urn:pulumi:dev-trusted::confidential-ai::kubernetes:core/v1:ConfigMap::encoded",
        "exported as output kubeconfigCopy",
        "reached urn:pulumi:dev-cloud::confidential-ai::kubernetes:core/v1:Secret::copied on the cloud side",
        "reached urn:pulumi:dev-cloud::confidential-ai::pulumi:pulumi:StackReference::trusted-stack on the cloud side",
    ]
    for part in expected:
        assert any(part in leak for leak in leaks), f"missed: {part}\nfound: {leaks}"


@pytest.mark.parametrize(
    "encode",
    [
        lambda v: v,
        lambda v: base64.b64encode(f"x{v}".encode()).decode(),
        lambda v: base64.urlsafe_b64encode(json.dumps({"k": v}).encode()).decode().rstrip("="),
        lambda v: v.encode().hex(),
        lambda v: base64.b64encode(gzip.compress(v.encode())).decode(),
        lambda v: hashlib.sha256(v.encode()).hexdigest(),
    ],
    ids=["plain", "base64", "base64url-json", "hex", "gzip-base64", "sha256"],
)
def test_leak_detection_sees_through_encodings(encode):
    assert leaked(CANARY, {"annotations": {"x": f"prefix {encode(CANARY)} suffix"}})
    assert not leaked(CANARY, {"annotations": {"x": encode("canary-something-else-entirely")}})


def test_no_trusted_private_key_reaches_the_cloud_stack(canary_plan):
    """Keys the trusted stack generates (the sealed-secret signing key, KBS's own keys) are secrets too:
    no line of them reaches the cloud stack in any form, and the cloud side holds the trusted side's
    signed pointers verbatim (it cannot sign its own)."""
    runs, _, written = canary_plan
    trusted = next(run for run in runs if run.stack.endswith("-trusted"))
    cloud = next(run for run in runs if run.stack.endswith("-cloud"))
    keys = trusted.of_type("tls:index/privateKey:PrivateKey")
    assert "sealed-secret-signing-key" in {k.name for k in keys}
    # Only the lines carrying private bytes: the public point an EC key's PEM ends with is in the serving
    # certificates the cloud side holds, and may encode to an identical line.
    lines = {line for k in keys for field in ("privateKeyPem", "privateKeyPemPkcs8") for line in private_lines(k.outputs[field])}
    assert lines
    cloud_text = [[r.inputs, r.outputs] for r in cloud.resources] + [cloud.outputs]
    cloud_text += [content for name, content in written.items() if name.startswith(cloud.stack)]
    assert not [line[:12] for line in lines if any(leaked(line, value) for value in cloud_text)]
    sealed = {v for spoke in trusted.outputs["spokes"].values() for w in spoke["workloads"].values() for v in w["sealedSecrets"].values()}
    held = {v for r in cloud.of_type("kubernetes:core/v1:Secret") for v in (r.inputs.get("stringData") or {}).values() if str(v).startswith("sealed.")}
    assert held and held <= sealed
