"""One model file as a JWE compact serialization (RFC 7516): A256KW key wrap, A256GCM content, streamed.

The format KServe v0.20 decrypts for confidential model serving (kserve/kserve commit 2f9cbe81,
python/storage/kserve_storage/confidential/jwe_decryptor.py; its tests build each file as jwcrypto's
`JWE(plaintext, protected={"alg": "A256KW", "enc": "A256GCM"})`, python/storage/test/test_confidential.py).

A JOSE library's `serialize`/`deserialize` holds the payload, the ciphertext and their base64 forms at once
(jwcrypto: about six times the file). Here the key and the key wrap are jwcrypto's (its JWK and its A256KW
algorithm), and the content goes through the very AES-GCM primitive jwcrypto's A256GCM calls
(`cryptography`), fed in chunks: memory stays at a few chunks whatever the file size. The tag comes last
in the compact form, so a reader sees plaintext before it is authenticated: `decrypt` writes to a sink
the caller deletes unless the call returns.

Speed (docs/benchmarks.md): base64 is pybase64's SIMD codec (the standard library's is the slowest step
by far), and the read, the hash and the write of neighbouring chunks run in threads beside the cipher
(model_crypto.stage), so a file costs little more than its SHA-256.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap
from jwcrypto import jwk
from jwcrypto.common import JWException
from jwcrypto.jwa import JWA
import pybase64

from model_crypto.stage import Stage

ALG = "A256KW"
ENC = "A256GCM"
KEY_BYTES = 32
_CEK_BITS = 256
_IV_BYTES = 12  # RFC 7518 5.3: A256GCM uses a 96-bit IV and a 128-bit tag
_TAG_BYTES = 16
_WRAPPED_KEY_BYTES = 40  # RFC 3394: A256KW wraps the 32-byte content key into 40 bytes
_PROTECTED = {"alg": ALG, "enc": ENC}
# Plaintext read per step: a multiple of 3, so each step's base64 has no padding and the pieces concatenate.
# Small enough that the chunks in flight (read, encrypt, hash, write) stay a few MiB and in cache.
_ENCRYPT_CHUNK = 3 << 18
# Serialized text read per step (a multiple of 4 decodes on its own; the parser copes with any size).
_DECRYPT_CHUNK = 1 << 20
_HEADER_LIMIT = 4096
# Decrypted chunks queued for the hash and for the write: a stage the scheduler holds back does not stall
# decryption at once (measured 10-25% faster on a busy machine, 1 MiB more; encryption gained nothing).
_DEPTH = 3
_B64URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_URL_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_B64URL_TEXT = re.compile(r"^[A-Za-z0-9_-]+$")


class KeyFormatError(ValueError):
    """The key is not a 256-bit symmetric key in a form KBS can serve; the message completes "the key ..."."""


class JweError(ValueError):
    """The file is not ours, the key does not fit it, or it does not authenticate; the message is one line."""


@dataclass(frozen=True)
class Plaintext:
    """What a file held before encryption: the manifest records it, the decryptor checks it."""

    size: int
    sha256: str


def b64url_encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_decode(text: bytes) -> bytes:
    """Strict base64url without padding (the standard library's decoder skips stray characters)."""
    if text.translate(None, _B64URL_ALPHABET) or len(text) % 4 == 1:
        raise JweError("is not a JWE compact serialization (a part is not base64url)")
    return binascii.a2b_base64(text.translate(_URL_TO_STANDARD) + b"=" * (-len(text) % 4), strict_mode=True)


_HEADER_B64 = b64url_encode(json.dumps(_PROTECTED, separators=(",", ":")).encode())


def new_key_text() -> str:
    """A fresh model key as KBS should serve it: 32 random bytes as base64url text (43 characters)."""
    return b64url_encode(os.urandom(KEY_BYTES)).decode()


def parse_key(data: bytes) -> jwk.JWK:
    """The model key from its stored form: base64url text of 32 bytes, or a JWK JSON (`kty` `oct`).

    Text because KServe decodes the resource as UTF-8 first and tries JWK JSON, then base64url
    (kserve-storage 0.21.0, kserve/kserve commit 5ca4f75a "support both full JWK and raw key formats"),
    and because a Pulumi config secret (the trusted stack's `kbsSecrets`) is text.
    """
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise KeyFormatError("is binary; store it as base64url text (43 characters) or as JWK JSON") from None
    if text.startswith("{"):
        try:
            key = jwk.JWK.from_json(text)
        except (ValueError, JWException) as err:
            raise KeyFormatError(f"is not a valid JWK JSON ({err})") from None
    elif _B64URL_TEXT.match(text):
        key = jwk.JWK(kty="oct", k=text)
    else:
        raise KeyFormatError("is neither base64url text nor JWK JSON")
    if key.get("kty") != "oct":
        raise KeyFormatError(f"is a {key.get('kty')!r} JWK; a model key is symmetric (kty 'oct')")
    size = len(b64url_decode(json.loads(key.export())["k"].encode()))
    if size != KEY_BYTES:
        raise KeyFormatError(f"is {size} bytes; A256KW needs {KEY_BYTES}")
    return key


def serialized_size(plaintext_size: int) -> int:
    """The length of `encrypt`'s output for a plaintext of this size (so a file can be reserved whole)."""
    return len(_HEADER_B64) + _b64url_length(_WRAPPED_KEY_BYTES) + _b64url_length(_IV_BYTES) \
        + _b64url_length(plaintext_size) + _b64url_length(_TAG_BYTES) + 4


def _b64url_length(size: int) -> int:
    return (size * 4 + 2) // 3


def encrypt(src: BinaryIO, dst: BinaryIO, key: jwk.JWK) -> Plaintext:
    """Write the JWE of everything `src` holds to `dst`; return the plaintext's size and sha256.

    Reading and hashing the next chunk, and writing the previous one's text, run beside the cipher and
    the encoder (model_crypto.stage). Reading and hashing share a thread: one thread fewer measured
    20-35% less CPU per MiB than a stage each, the hash being far from the slowest path.
    """
    wrapped = JWA.keymgmt_alg(ALG).wrap(key, _CEK_BITS, None, _PROTECTED)
    iv = os.urandom(_IV_BYTES)
    encryptor = Cipher(algorithms.AES(wrapped["cek"]), modes.GCM(iv)).encryptor()
    encryptor.authenticate_additional_data(_HEADER_B64)
    dst.write(b".".join((_HEADER_B64, b64url_encode(wrapped["ek"]), b64url_encode(iv), b"")))
    digest = hashlib.sha256()
    size = 0
    carry = b""

    def read_and_hash() -> bytes:
        chunk = src.read(_ENCRYPT_CHUNK)
        digest.update(chunk)
        return chunk

    with Stage("jwe-read") as reader, Stage("jwe-write") as writer:
        reader.start(read_and_hash)
        while chunk := reader.result():
            reader.start(read_and_hash)
            size += len(chunk)
            ciphertext = encryptor.update(chunk)
            if carry:  # only after a short read: files read whole chunks
                ciphertext = carry + ciphertext
            cut = len(ciphertext) - len(ciphertext) % 3
            carry = ciphertext[cut:]
            writer.start(dst.write, _b64url_encode_whole(memoryview(ciphertext)[:cut]))
    carry += encryptor.finalize()
    dst.write(b64url_encode(carry) + b"." + b64url_encode(encryptor.tag))
    return Plaintext(size, digest.hexdigest())


def decrypt(src: BinaryIO, sink: BinaryIO, key: jwk.JWK, max_size: int | None = None) -> Plaintext:
    """Decrypt the JWE `src` holds into `sink`; return the plaintext's size and sha256.

    Raises JweError when the file is not an A256KW/A256GCM JWE, the key does not unwrap its content key
    (the wrong key), it is truncated or altered (the tag does not verify), or its plaintext grows past
    `max_size`. `sink` then holds unauthenticated bytes: the caller discards it. Nothing is written to
    `sink` after this returns or raises. The next chunk downloads, and the previous one is hashed and
    written, while this one is decoded and decrypted (model_crypto.stage).
    """
    with Stage("jwe-read", wait_on_error=False) as reader, Stage("jwe-hash", depth=_DEPTH) as hasher, \
            Stage("jwe-write", depth=_DEPTH) as writer:
        parts = _Parts(src, reader)
        header_b64 = parts.next(_HEADER_LIMIT)
        _check_header(header_b64)
        encrypted_key = b64url_decode(parts.next(_HEADER_LIMIT))
        iv = b64url_decode(parts.next(_HEADER_LIMIT))
        if len(iv) != _IV_BYTES:
            raise JweError(f"has a {len(iv)}-byte IV; A256GCM uses {_IV_BYTES}")
        try:
            cek = JWA.keymgmt_alg(ALG).unwrap(key, _CEK_BITS, encrypted_key, _PROTECTED)
        except (InvalidUnwrap, JWException, ValueError):
            raise JweError("cannot be opened with this key (the key is not the one the model was encrypted with)") from None
        decryptor = Cipher(algorithms.AES(cek), modes.GCM(iv)).decryptor()
        decryptor.authenticate_additional_data(header_b64)
        digest = hashlib.sha256()
        size = 0
        for text, start, end in parts.ciphertext():
            plaintext = decryptor.update(_b64url_decode_slice(text, start, end))
            size += len(plaintext)
            if max_size is not None and size > max_size:
                raise JweError(f"decrypts to more than the {max_size} bytes the manifest records")
            hasher.start(digest.update, plaintext)
            writer.start(sink.write, plaintext)
            del plaintext  # the stages hold it while they need it
        tag = b64url_decode(parts.last(_HEADER_LIMIT).rstrip(b" \t\r\n"))
        if len(tag) != _TAG_BYTES:
            raise JweError("is truncated (its authentication tag is incomplete)")
        try:
            decryptor.finalize_with_tag(tag)
        except InvalidTag:
            raise JweError("does not authenticate (truncated or altered)") from None
    return Plaintext(size, digest.hexdigest())


def _b64url_encode_whole(data: memoryview) -> bytes:
    """base64url of whole 3-byte groups (no padding), SIMD-accelerated."""
    return pybase64.b64encode(data, altchars=b"-_")


def _b64url_decode_slice(text: bytes, start: int, end: int) -> bytes:
    """Strict base64url of `text[start:end]`, SIMD-accelerated when it is whole 4-character groups.

    pybase64 with `altchars` also accepts the standard alphabet's `+` and `/` and a trailing `=`;
    a JWE part holds none of them.
    """
    if (end - start) % 4:
        return b64url_decode(text[start:end])
    if any(text.find(char, start, end) >= 0 for char in (b"+", b"/", b"=")):
        raise JweError("is not a JWE compact serialization (a part is not base64url)")
    try:
        return pybase64.b64decode(memoryview(text)[start:end], altchars=b"-_", validate=True)
    except binascii.Error:
        raise JweError("is not a JWE compact serialization (a part is not base64url)") from None


def _check_header(header_b64: bytes) -> None:
    try:
        header = json.loads(b64url_decode(header_b64))
    except (JweError, ValueError):
        raise JweError("is not a JWE compact serialization (no JSON protected header)") from None
    if not isinstance(header, dict) or header.get("alg") != ALG or header.get("enc") != ENC:
        raise JweError(f"is not an {ALG}/{ENC} JWE")
    if "zip" in header or "crit" in header:
        raise JweError("uses 'zip' or 'crit', which model files never do")


class _Parts:
    """The five dot-separated parts of a compact JWE, read from a stream a bounded piece at a time; the
    next piece downloads in `reader` while the caller works on this one."""

    def __init__(self, src: BinaryIO, reader: Stage):
        self._src = src
        self._reader = reader
        self._buffer = b""
        self._eof = False

    def _read(self) -> bytes:
        if self._eof:
            return b""
        if not self._reader.busy:
            self._reader.start(self._src.read, _DECRYPT_CHUNK)
        data = self._reader.result()
        if data:
            self._reader.start(self._src.read, _DECRYPT_CHUNK)
        else:
            self._eof = True
        return data

    def next(self, limit: int) -> bytes:
        """A short part, up to its dot."""
        while (dot := self._buffer.find(b".", 0, limit + 1)) < 0:
            if len(self._buffer) > limit:
                raise JweError("is not a JWE compact serialization")
            if self._eof:
                raise JweError("is truncated (it ends before the ciphertext)")
            self._buffer += self._read()
        part, self._buffer = self._buffer[:dot], self._buffer[dot + 1 :]
        return part

    def ciphertext(self) -> Iterator[tuple[bytes, int, int]]:
        """The ciphertext part as slices `(text, start, end)` of the pieces read, without copying them:
        whole 4-character groups, except a final 2 or 3 characters. A group split across two reads is
        joined into a 4-character slice of its own."""
        text, start, carry = self._buffer, 0, b""
        while True:
            dot = text.find(b".", start)
            end = dot if dot >= 0 else len(text)
            if carry:
                joined = min(4 - len(carry), end - start)
                carry += text[start : start + joined]
                start += joined
                if len(carry) == 4:
                    yield carry, 0, 4
                    carry = b""
            cut = end - (end - start) % 4
            if cut > start:
                yield text, start, cut
                start = cut
            carry += text[start:end]
            if dot >= 0:
                self._buffer = text[dot + 1 :]
                if carry:
                    yield carry, 0, len(carry)
                return
            text, start = self._read(), 0
            if not text:
                raise JweError("is truncated (it ends inside the ciphertext)")

    def last(self, limit: int) -> bytes:
        """The final part: everything left, which must be short and hold no further dot."""
        while not self._eof and len(self._buffer) <= limit:
            self._buffer += self._read()
        if b"." in self._buffer:
            raise JweError("is not a JWE compact serialization (more than five parts)")
        if len(self._buffer) > limit:
            raise JweError("is not a JWE compact serialization (text follows the authentication tag)")
        return self._buffer
