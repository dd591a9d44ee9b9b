"""Expired reference values are refused by the stack, since Trustee's RVPS never enforces `expiration`
(trustee rvps/src/reference_value.rs: `ReferenceValue::expired` has no caller, v0.20.0 and 78962cd4).
Every date here is pinned with `--as-of` or `clock.as_of`: no test depends on the calendar."""

from __future__ import annotations

import datetime

import pytest

from scripts import encrypt_model, plan
from scripts.offline import run_stack
from stacks.config import ConfigError, clock, load
from tests.conftest import AS_OF, example_config

EXPIRATION = "2028-06-30T00:00:00Z"  # the examples'


def trusted(stack: str = "dev-trusted", **set_: object):
    config, secret_keys = example_config(stack, set=set_ or None)
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("confidential-ai:")}
    return load(stack, raw, [k.split(":", 1)[1] for k in secret_keys])


@pytest.mark.parametrize("stack", ["dev-trusted", "prod-trusted"])
def test_the_examples_expire_at_least_18_months_after_they_were_written(stack):
    expires = trusted(stack).reference_values.expires
    assert AS_OF == datetime.date(2026, 12, 6)
    assert expires is not None and expires.date() >= datetime.date(2028, 6, 6)  # AS_OF + 18 months


@pytest.mark.parametrize("as_of", ["2028-06-30", "2031-01-01"])
def test_a_plan_with_expired_reference_values_exits_2_naming_the_key(as_of, tmp_path, capsys):
    assert plan.main(["dev", "--out", str(tmp_path / "out"), "--as-of", as_of]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"dev-trusted: referenceValues.expiration: {EXPIRATION} has passed (as of {as_of}): Trustee would keep matching these "
        "values, so the stack refuses them; read current values from evidence (python -m scripts.reference_values) and move "
        "expiration forward"
    ]
    assert not (tmp_path / "out").exists()


def test_the_day_before_expiry_the_values_still_load():
    with clock.as_of(datetime.date(2028, 6, 29)):
        assert trusted().reference_values.expiration == EXPIRATION


def test_an_expiration_on_no_real_day_is_refused():
    with pytest.raises(ConfigError) as raised:
        trusted(**{"referenceValues.expiration": "2027-02-30T00:00:00Z"})
    assert raised.value.lines() == ["dev-trusted: referenceValues.expiration: '2027-02-30T00:00:00Z' is not a date and time that exists"]


WARNING = (
    f"referenceValues.expiration {EXPIRATION} is within 30 days; after it the stack refuses these values: confirm them "
    "against evidence (python -m scripts.reference_values) and move it forward (docs/operations.md)"
)


@pytest.mark.parametrize("as_of, warns", [(datetime.date(2028, 5, 31), True), (datetime.date(2028, 5, 30), False)])
def test_within_30_days_of_expiry_the_program_warns(as_of, warns):
    config, secret_keys = example_config("dev-trusted")
    with clock.as_of(as_of):
        run = run_stack("dev-trusted", config, secret_keys)
    assert (WARNING in run.warnings) is warns


def test_as_of_is_a_date_or_a_one_line_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        plan.main(["dev", "--out", str(tmp_path), "--as-of", "2028-13-01"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "python -m scripts.plan: error: argument --as-of: '2028-13-01' is not a date like 2027-01-31 (see --help)\n"
    )


def test_encrypt_model_reads_the_trusted_config_as_of_the_same_day(tmp_path, capsys):
    source = tmp_path / "model"
    source.mkdir()
    (source / "config.json").write_text("{}")
    status = encrypt_model.main(
        [str(source), "--env", "dev", "--workload", "llama-3-1-8b", "--out", str(tmp_path / "out"), "--new-key", str(tmp_path / "key"), "--as-of", "2029-01-01"]
    )
    assert status == 2
    assert "referenceValues.expiration: 2028-06-30T00:00:00Z has passed (as of 2029-01-01)" in capsys.readouterr().err
