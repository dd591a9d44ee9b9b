"""Encrypt a model directory at source for one workload: `python -m scripts.encrypt_model SRC_DIR --env ENV --workload NAME --out DIR`.

Every file becomes `<name>.jwe` (JWE compact, A256KW + A256GCM, the format KServe's confidential model
serving decrypts) under DIR, with `manifest.json` (names, sizes, plaintext sha256) and its encrypted copy
`manifest.json.jwe`. The key is the workload's model-key KBS resource: its value comes only from where
you keep it (`--key-file F`, or on standard input), or is made fresh with `--new-key F` (written to F,
mode 0600, nowhere else). Upload DIR with `az storage blob upload-batch`, store the key in the trusted
stack (`kbsSecrets.<resource>`), and pin the printed manifest sha256 in the cloud stack's model.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from jwcrypto import jwk

from model_crypto import jwe
from model_crypto.encrypt import EncryptError, Identity, encrypt_model
from scripts.cli import ArgumentParser, environment
from scripts.offline.stackfile import STACKS_DIR, StackFileError, read_stack_file
from stacks.config import ConfigError, TrustedConfig, clock, load

PROG = "python -m scripts.encrypt_model"
DEFAULT_KEY_RESOURCE = "model-key"
_PREFIX = "confidential-ai:"


class CannotEncrypt(Exception):
    """A one-line reason, printed as is."""


def key_resource_uri(env: str, workload: str, resource: str, stacks_dir: Path = STACKS_DIR) -> str:
    """The KBS URI of the workload's model key, from the public part of the trusted stack's config."""
    stack = f"{env}-trusted"
    try:
        stack_file = read_stack_file(stack, stacks_dir)
        raw = {k[len(_PREFIX):]: v for k, v in stack_file.config.items() if k.startswith(_PREFIX)}
        config = load(stack, raw, [k[len(_PREFIX):] for k in stack_file.secret_keys])
    except StackFileError as err:
        raise CannotEncrypt(str(err)) from None
    except ConfigError as err:
        raise CannotEncrypt(f"{err.lines()[0]} (fix the trusted stack config first)") from None
    assert isinstance(config, TrustedConfig)
    declared = {r.name: r for r in config.kbs_resources}
    if resource not in declared:
        names = ", ".join(sorted(declared)) or "none"
        raise CannotEncrypt(f"--key-resource: {stack} declares no kbsResources entry {resource!r} (declared: {names})")
    workloads = {w.name: w for w in config.workloads}
    if workload not in workloads:
        raise CannotEncrypt(f"--workload: {stack} declares no workload {workload!r} (declared: {', '.join(sorted(workloads)) or 'none'}); declare it first")
    if resource not in workloads[workload].resources:
        raise CannotEncrypt(f"--key-resource: workload {workload} may not receive {resource!r} (its resources: {', '.join(workloads[workload].resources) or 'none'}); KBS would never release the key to it")
    return declared[resource].uri


def read_key(key_file: Path | None, new_key: Path | None) -> jwk.JWK:
    if new_key is not None:
        text = jwe.new_key_text()
        try:
            descriptor = os.open(new_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as err:
            raise CannotEncrypt(f"--new-key: cannot create {new_key} ({err.strerror}); it must not exist yet") from None
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        data = text.encode()
    elif key_file is not None:
        try:
            data = key_file.read_bytes()
        except OSError as err:
            raise CannotEncrypt(f"--key-file: cannot read {key_file} ({err.strerror})") from None
        _refuse_padded_raw_key(data, f"--key-file: {key_file}", "write it without (printf %s KEY > FILE)")
    elif sys.stdin is None or sys.stdin.isatty():
        raise CannotEncrypt("no key: pipe it on standard input, or use --key-file F or --new-key F")
    else:
        data = sys.stdin.buffer.read()
        _refuse_padded_raw_key(data, "the key on standard input", "pipe it without (printf %s KEY |)")
    try:
        return jwe.parse_key(data)
    except jwe.KeyFormatError as err:
        raise CannotEncrypt(f"the key {err}") from None


def _refuse_padded_raw_key(data: bytes, what: str, fix: str) -> None:
    """KServe's decryptor reads a raw (base64url text) key as UTF-8 and does not strip it (kserve-storage 0.21.0
    confidential/jwe_decryptor.py): a key stored with its file's newline would encrypt here and fail there."""
    if not data.lstrip().startswith(b"{") and data != data.strip():
        raise CannotEncrypt(f"{what} has a newline or spaces around the key: KServe's decryptor would read them as part of the key; {fix}")


def main(argv: list[str] | None = None, stacks_dir: Path = STACKS_DIR) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, metavar="SRC_DIR", help="the model directory (weights, tokenizer, config)")
    parser.add_argument("--env", required=True, type=environment, help="environment: the key resource is read from stack ENV-trusted")
    parser.add_argument("--workload", required=True, help="the workload that will serve the model (recorded in the manifest)")
    parser.add_argument("--out", required=True, type=Path, help="new or empty directory for the ciphertext and the manifest")
    parser.add_argument("--key-resource", default=DEFAULT_KEY_RESOURCE, help=f"kbsResources name of the model key (default {DEFAULT_KEY_RESOURCE})")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--key-file", type=Path, help="file holding the key (base64url text or JWK JSON); default: standard input")
    keys.add_argument("--new-key", type=Path, help="make a fresh key and write it to this new file (mode 0600)")
    parser.add_argument("--as-of", type=clock.as_of_argument, metavar="YYYY-MM-DD", help="judge the trusted config's expiry dates as of this day (default: today, UTC)")
    args = parser.parse_args(argv)
    try:
        with clock.as_of(args.as_of):
            uri = key_resource_uri(args.env, args.workload, args.key_resource, stacks_dir)
        key = read_key(args.key_file, args.new_key)
        started = time.monotonic()
        manifest = encrypt_model(args.src, args.out, key, Identity(args.env, args.workload, uri))
    except (CannotEncrypt, EncryptError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # reading the model or writing the output failed midway; the output was removed
        print(f"{PROG}: error: {err.filename or args.out}: {err.strerror or err}; nothing was left in {args.out}", file=sys.stderr)
        return 1
    seconds = max(time.monotonic() - started, 1e-9)
    mib = manifest.total_size / 2**20
    print(f"encrypted {len(manifest.files)} files, {mib:.1f} MiB in {seconds:.2f} s ({mib / seconds:.0f} MiB/s) into {args.out}")
    print(f"key resource: {uri} (kbsSecrets.{args.key_resource} in stack {args.env}-trusted)")
    print(f"manifest sha256: {manifest.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
