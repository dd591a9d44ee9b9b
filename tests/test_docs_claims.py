"""Figures the docs give a user to plan with, checked against what the code produces."""

from __future__ import annotations

import io
import re
from pathlib import Path

from model_crypto import jwe

ROOT = Path(__file__).resolve().parents[1]


def test_a_jwe_is_about_four_thirds_of_its_plaintext_as_the_docs_say():
    stated = re.search(r"a `\.jwe` is about \*\*(\d\.\d+) times\*\* its plaintext", (ROOT / "docs" / "encrypted-models.md").read_text())
    assert stated, "docs/encrypted-models.md states the size of a .jwe"
    key = jwe.parse_key(jwe.new_key_text().encode())
    size = 3 * 2**20
    out = io.BytesIO()
    jwe.encrypt(io.BytesIO(bytes(size)), out, key)
    overhead = len(out.getvalue()) - size * 4 / 3
    assert round(len(out.getvalue()) / size, 2) == float(stated[1])
    assert 0 < overhead < 1024  # "plus a few hundred bytes"
