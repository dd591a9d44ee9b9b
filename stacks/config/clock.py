"""The date config rules that depend on time are judged at: today (UTC), or the date a command's `--as-of`
pins, so a plan, and a test, can be reproduced on any later day."""

from __future__ import annotations

import argparse
import datetime
from collections.abc import Iterator
from contextlib import contextmanager

_pinned: datetime.date | None = None


def today() -> datetime.date:
    return _pinned or datetime.datetime.now(datetime.UTC).date()


@contextmanager
def as_of(day: datetime.date | None) -> Iterator[None]:
    """Judge config as of `day` (None: today) while the block runs."""
    global _pinned
    previous, _pinned = _pinned, day
    try:
        yield
    finally:
        _pinned = previous


def as_of_argument(value: str) -> datetime.date:
    """`--as-of YYYY-MM-DD`, for argparse."""
    try:
        if len(value) == 10:
            return datetime.date.fromisoformat(value)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{value!r} is not a date like 2027-01-31")
