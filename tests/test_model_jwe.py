"""The JWE codec of model files (`model_crypto.jwe`): the key forms it reads, and what it refuses, one
rule per input. The round trip and the interoperability with jwcrypto, joserfc and KServe are in
tests/test_model_crypto.py."""

from __future__ import annotations

import io
import json
import os
import re

import pytest
from joserfc import jwe as joserfc_jwe
from joserfc.jwk import OctKey
from jwcrypto import jwe as jwcrypto_jwe
from jwcrypto import jwk

from model_crypto import jwe

_TAG_TEXT = 22  # characters of a 16-byte tag in base64url


@pytest.fixture(scope="module")
def key() -> jwk.JWK:
    return jwe.parse_key(jwe.new_key_text().encode())


def _encrypted(key: jwk.JWK, plaintext: bytes = b"weights") -> bytes:
    out = io.BytesIO()
    jwe.encrypt(io.BytesIO(plaintext), out, key)
    return out.getvalue()


def _decrypted(token: bytes, key: jwk.JWK) -> bytes:
    sink = io.BytesIO()
    jwe.decrypt(io.BytesIO(token), sink, key)
    return sink.getvalue()


def test_key_forms_kbs_may_serve():
    raw = os.urandom(32)
    text = jwk.base64url_encode(raw)
    # KServe's own test of a JWK JSON "as KBS might store it" (kserve/kserve commit 5ca4f75a, test_confidential.py).
    with_metadata = json.dumps({"alg": "A256GCM", "k": text, "key_ops": ["encrypt", "decrypt"], "kty": "oct"})
    for form in (text.encode(), (text + "\n").encode(), jwk.JWK(kty="oct", k=text).export().encode(), with_metadata.encode()):
        key = jwe.parse_key(form)
        out = io.BytesIO()
        jwe.encrypt(io.BytesIO(b"weights"), out, key)
        assert joserfc_jwe.decrypt_compact(out.getvalue(), OctKey.import_key(raw)).plaintext == b"weights"


@pytest.mark.parametrize("value, problem", [
    pytest.param(b"\xff" * 32, "is binary", id="raw-bytes"),
    pytest.param(jwk.base64url_encode(bytes(range(16))).encode(), "is 16 bytes; A256KW needs 32", id="128-bit"),
    pytest.param(b"not a key!", "neither base64url text nor JWK JSON", id="garbage"),
    pytest.param(jwk.JWK.generate(kty="EC", crv="P-256").export().encode(), "kty 'oct'", id="ec-jwk"),
    pytest.param(b"{not json", "not a valid JWK JSON", id="broken-json"),
])
def test_keys_that_cannot_be_model_keys(value, problem):
    with pytest.raises(jwe.KeyFormatError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        jwe.parse_key(value)


@pytest.mark.parametrize("header, problem", [
    ({"alg": "dir", "enc": "A256GCM"}, "is not an A256KW/A256GCM JWE"),
    ({"alg": "A256KW", "enc": "A128CBC-HS256"}, "is not an A256KW/A256GCM JWE"),
    ({"alg": "A256KW", "enc": "A256GCM", "zip": "DEF"}, "uses 'zip' or 'crit'"),
    ({"alg": "A256KW", "enc": "A256GCM", "crit": ["exp"], "exp": 1}, "uses 'zip' or 'crit'"),
    (["A256KW", "A256GCM"], "is not an A256KW/A256GCM JWE"),
])
def test_other_jwe_shapes_are_refused(header, problem):
    key = jwe.parse_key(jwe.new_key_text().encode())
    header_b64 = jwe.b64url_encode(json.dumps(header).encode())
    forged = b".".join([header_b64, b"AAAA", jwe.b64url_encode(os.urandom(12)), b"AAAA", jwe.b64url_encode(os.urandom(16))])
    with pytest.raises(jwe.JweError, match=re.escape(problem)):
        jwe.decrypt(io.BytesIO(forged), io.BytesIO(), key)


@pytest.mark.parametrize("data, problem", [
    (jwe.b64url_encode(b"not json") + b".AAAA.AAAA.AAAA.AAAA", "no JSON protected header"),
    (b"A" * 5000, "is not a JWE compact serialization"),
])
def test_a_file_that_is_no_jwe_is_named(data, problem):
    """No JSON header; a first part longer than any header (read in bounded pieces, never whole)."""
    with pytest.raises(jwe.JweError, match=re.escape(problem)):
        jwe.decrypt(io.BytesIO(data), io.BytesIO(), jwe.parse_key(jwe.new_key_text().encode()))


def test_a_short_authentication_tag_is_named(key):
    head, tag = _encrypted(key).rsplit(b".", 1)
    short = head + b"." + jwe.b64url_encode(jwe.b64url_decode(tag)[:12])
    with pytest.raises(jwe.JweError, match="authentication tag is incomplete"):
        jwe.decrypt(io.BytesIO(short), io.BytesIO(), key)


def test_an_iv_of_another_length_is_named(key):
    header, encrypted_key, _, ciphertext, tag = _encrypted(key).split(b".")
    forged = b".".join([header, encrypted_key, jwe.b64url_encode(os.urandom(16)), ciphertext, tag])
    with pytest.raises(jwe.JweError, match="has a 16-byte IV"):
        jwe.decrypt(io.BytesIO(forged), io.BytesIO(), key)


def test_extra_parts_and_stray_characters_are_refused(key):
    token = _encrypted(key)
    for broken in (token + b".AAAA", token.replace(b".", b".+", 1), b"", b"garbage"):
        with pytest.raises(jwe.JweError):
            jwe.decrypt(io.BytesIO(broken), io.BytesIO(), key)


def test_standard_base64_characters_are_refused_though_they_would_decode_alike(key):
    """'+' and '/' decode to what '-' and '_' do in base64url: accepted, one file would have two spellings."""
    header, rest = _encrypted(key, os.urandom(3000)).split(b".", 1)
    spelled = header + b"." + (rest.replace(b"-", b"+", 1) if b"-" in rest else rest.replace(b"_", b"/", 1))
    with pytest.raises(jwe.JweError, match="is not base64url"):
        jwe.decrypt(io.BytesIO(spelled), io.BytesIO(), key)


# --- one rule per input ---


@pytest.mark.parametrize("index", [1, 2, 3, 4], ids=["encrypted-key", "iv", "ciphertext", "tag"])
def test_a_standard_base64_character_is_refused_in_each_part(key, index):
    """'+' and '/' decode to what '-' and '_' do: a token spelled with one of them decrypts to the same
    bytes, so only the alphabet check refuses it. The ciphertext (3000 bytes: whole 4-character groups)
    goes through the fast decoder, the other parts through the strict one."""
    for _ in range(100):  # until the part holds a '-' or '_' (a 16-character IV lacks both 6 times in 10)
        parts = _encrypted(key, os.urandom(3000)).split(b".")
        if b"-" in parts[index] or b"_" in parts[index]:
            break
    else:
        raise AssertionError("no '-' or '_' in 100 tokens")
    part = parts[index]
    parts[index] = part.replace(b"-", b"+", 1) if b"-" in part else part.replace(b"_", b"/", 1)
    with pytest.raises(jwe.JweError, match=r"^is not a JWE compact serialization \(a part is not base64url\)$"):
        _decrypted(b".".join(parts), key)


def test_a_character_of_no_base64_alphabet_in_the_ciphertext_is_named(key):
    parts = _encrypted(key, os.urandom(3000)).split(b".")
    parts[3] = b"*" + parts[3][1:]
    with pytest.raises(jwe.JweError, match=r"^is not a JWE compact serialization \(a part is not base64url\)$"):
        _decrypted(b".".join(parts), key)


def _with_header_of(length: int, key: jwk.JWK) -> bytes:
    """A jwcrypto JWE whose protected header (A256KW/A256GCM and a `kid`) is `length` characters of base64url."""
    size = length * 3 // 4  # JSON bytes whose base64url is `length` characters (length % 4 != 1)
    header = json.dumps({"alg": "A256KW", "enc": "A256GCM", "kid": ""})
    header = header[:-2] + "x" * (size - len(header)) + header[-2:]
    token = jwcrypto_jwe.JWE(b"weights", protected=header)
    token.add_recipient(key)
    serialized = token.serialize(compact=True).encode()
    assert len(serialized.split(b".")[0]) == length
    return serialized


def test_a_header_as_long_as_the_limit_is_read_in_pieces_of_any_size(key, monkeypatch):
    """Read 1 KiB at a time, the buffer holds exactly the limit without a dot before the dot comes."""
    token = _with_header_of(jwe._HEADER_LIMIT, key)
    monkeypatch.setattr(jwe, "_DECRYPT_CHUNK", 1024)
    assert _decrypted(token, key) == b"weights"
    with pytest.raises(jwe.JweError, match=r"^is not a JWE compact serialization$"):
        _decrypted(_with_header_of(jwe._HEADER_LIMIT + 2, key), key)


def test_a_sixth_part_is_named(key):
    with pytest.raises(jwe.JweError, match=r"^is not a JWE compact serialization \(more than five parts\)$"):
        _decrypted(_encrypted(key) + b".AAAA", key)


def test_the_last_part_may_end_in_whitespace_up_to_the_limit(key):
    """A trailing newline (a file saved by an editor) is no error; the last part is read only up to the limit."""
    token = _encrypted(key)
    assert _decrypted(token + b"\n" + b" " * (jwe._HEADER_LIMIT - _TAG_TEXT - 1), key) == b"weights"
    with pytest.raises(jwe.JweError, match=r"^is not a JWE compact serialization \(text follows the authentication tag\)$"):
        _decrypted(token + b"\n" + b" " * (jwe._HEADER_LIMIT - _TAG_TEXT), key)
