"""The example trusted stacks, run once per test session and shared by the trusted-side test modules."""

from __future__ import annotations

from functools import cache

from scripts.offline import StackRun, run_stack
from stacks.config import TrustedConfig, load
from tests.conftest import example_config


@cache
def example_trusted(stack: str) -> tuple[TrustedConfig, StackRun]:
    """The parsed config and the offline run of `stacks/Pulumi.<stack>.yaml`."""
    config, secret_keys = example_config(stack)
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("confidential-ai:")}
    parsed = load(stack, raw, [k.split(":", 1)[1] for k in secret_keys])
    assert isinstance(parsed, TrustedConfig)
    return parsed, run_stack(stack, config, secret_keys)
