"""The offline runtime's shortcuts (no collector passes, no stack traces) last only as long as a run."""

from __future__ import annotations

import gc

import pulumi
import pytest
from pulumi.runtime import resource as pulumi_resource

from scripts.offline import run_stack


def _registers_one() -> None:
    pulumi.ComponentResource("confidential-ai:test:Probe", "probe")


def _fails() -> None:
    _registers_one()
    raise RuntimeError("program failed")


@pytest.mark.parametrize("program", [_registers_one, _fails], ids=["completes", "raises"])
def test_a_run_leaves_the_sdk_and_the_collector_as_it_found_them(program):
    stack_trace = pulumi_resource._get_stack_trace
    assert gc.isenabled()
    try:
        run = run_stack("dev-cloud", {}, program=program)
        assert [r.name for r in run.resources] == ["probe"]
    except RuntimeError as err:
        assert [r.name for r in err.registered] == ["probe"]
    assert pulumi_resource._get_stack_trace is stack_trace
    assert gc.isenabled()
