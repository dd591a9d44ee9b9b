"""The offline runtime's shortcuts (no collector passes, no stack traces, the mock monitor called on the
program's thread) last only as long as a run, and give what the SDK's own mock runtime gives."""

from __future__ import annotations

import gc

import pulumi
import pulumi_tls as tls
import pytest
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import resource as pulumi_resource

import scripts.offline as offline
from scripts.offline import run_stack


def _registers_one() -> None:
    pulumi.ComponentResource("confidential-ai:test:Probe", "probe")


def _fails() -> None:
    _registers_one()
    raise RuntimeError("program failed")


@pytest.mark.parametrize("program", [_registers_one, _fails], ids=["completes", "raises"])
def test_a_run_leaves_the_sdk_and_the_collector_as_it_found_them(program):
    stack_trace, sync_await = pulumi_resource._get_stack_trace, pulumi_mocks._sync_await
    assert gc.isenabled()
    try:
        run = run_stack("dev-cloud", {}, program=program)
        assert [r.name for r in run.resources] == ["probe"]
    except RuntimeError as err:
        assert [r.name for r in err.registered] == ["probe"]
    assert pulumi_resource._get_stack_trace is stack_trace
    assert pulumi_mocks._sync_await is sync_await
    assert gc.isenabled()


def _holds_a_resource_reference() -> None:
    provider = tls.Provider("tls")
    key = tls.PrivateKey("key", algorithm="ED25519", opts=pulumi.ResourceOptions(provider=provider))
    holder = pulumi.CustomResource("confidential-ai:test:Holder", "holder", {"key": key, "name": "x"})
    pulumi.export("holder", holder.urn)


def test_a_state_holding_a_resource_reference_is_serialized_by_the_sdk_on_the_programs_thread():
    """The monitor's state holds the key rehydrated as a resource, whose URN must be awaited: the one
    kind of serialization that waits, which the run hands to the SDK's own `_sync_await`."""
    run = run_stack("dev-cloud", {}, program=_holds_a_resource_reference)
    key_urn = "urn:pulumi:dev-cloud::confidential-ai::tls:index/privateKey:PrivateKey::key"
    holder = run.named("holder")
    assert holder.inputs == {"key": key_urn, "name": "x"}
    assert isinstance(holder.outputs["key"], tls.PrivateKey)
    assert run.outputs == {"holder": "urn:pulumi:dev-cloud::confidential-ai::confidential-ai:test:Holder::holder"}


def _echoes() -> None:
    plain = pulumi.CustomResource("confidential-ai:test:Echo", "plain", {"count": 3, "ratio": 0.5, "items": ["a", {"on": True, "off": None}], "empty": {}})
    secret = pulumi.CustomResource("confidential-ai:test:Echo", "secret", {"data": {"key": pulumi.Output.secret("value")}, "name": "s"})
    for name in ("count", "ratio", "items", "empty"):
        pulumi.export(f"plain.{name}", getattr(plain, name))
    pulumi.export("secret.data", secret.data)  # type: ignore[attr-defined]
    pulumi.export("secret.name", secret.name)  # type: ignore[attr-defined]


def test_a_state_echoing_plain_inputs_is_answered_as_the_sdk_would_serialize_it(monkeypatch):
    """The monitor answers a state equal to plain inputs with the request's own Struct instead of
    serializing it again: the program must see the same outputs either way, secrets included."""
    shortcut = run_stack("dev-cloud", {}, program=_echoes)
    monkeypatch.setattr(offline, "_plain_wire", lambda value: False)
    serialized = run_stack("dev-cloud", {}, program=_echoes)
    assert shortcut.outputs == serialized.outputs == {
        "plain.count": 3, "plain.empty": {}, "plain.items": ["a", {"on": True}], "plain.ratio": 0.5,
        "secret.data": {"key": "value"}, "secret.name": "s",
    }
    assert shortcut.secret_outputs == serialized.secret_outputs == {"secret.data"}
    assert [(r.name, r.raw_inputs, r.outputs) for r in shortcut.resources] == [(r.name, r.raw_inputs, r.outputs) for r in serialized.resources]
