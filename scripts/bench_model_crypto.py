"""Benchmark of model encryption at source and of the init container's decryption: MiB/s and peak memory.

    python -m scripts.bench_model_crypto [--size-mib 1024] [--whole-file]

Each phase runs in its own process and reports its peak resident memory above what it held before the
work began (imports and interpreter excluded):
- encrypt: `model_crypto.encrypt.encrypt_model` on a directory holding one file of --size-mib;
- decrypt: `model_crypto.decrypt.main`, the init container's entry point, downloading from a local blob
  stand-in and fetching the key from a local data hub stand-in, both on 127.0.0.1 (tests/model_server.py),
  into a directory on /dev/shm (tmpfs, as the pod's memory volume). The plaintext it writes lives in tmpfs
  pages, which are not the process's resident memory: in the pod they count against the memory volume,
  sized from the manifest;
- --whole-file: for comparison, jwcrypto's own JWE serialize/deserialize of the same file in memory (what
  a whole-file JOSE call costs; several times the file).
Figures depend on the machine and its load (MiB per CPU second is the steadier one on a shared machine):
this prints them, it asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

_BLOCK_MIB = 1


def _peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _make_model(directory: Path, size_mib: int) -> Path:
    src = directory / "model"
    src.mkdir()
    block = hashlib.shake_256(b"bench").digest(_BLOCK_MIB << 20)  # contents do not matter to AES-GCM or base64
    with open(src / "model.safetensors", "wb") as handle:
        for _ in range(size_mib // _BLOCK_MIB):
            handle.write(block)
    (src / "config.json").write_text('{"bench": true}\n')
    return src


def _phase(name: str, work: Path, size_mib: int) -> dict[str, float]:
    """Run one phase in this process; return its figures."""
    from jwcrypto import jwe as jwcrypto_jwe

    from model_crypto import decrypt, jwe
    from model_crypto.encrypt import Identity, encrypt_model
    from tests.model_server import Served, serve

    key_text = (work / "key").read_text()
    key = jwe.parse_key(key_text.encode())
    resource_uri = "kbs:///default/model-decryption/key.bin"
    before, cpu = _peak_kib(), _cpu_seconds()
    started = time.perf_counter()
    if name == "encrypt":
        manifest = encrypt_model(work / "model", work / "enc", key, Identity("bench", "bench", resource_uri))
        (work / "manifest.sha256").write_text(manifest.sha256)
    elif name == "decrypt":
        target = Path("/dev/shm") / f"bench-model-crypto-{uuid.uuid4().hex}"
        target.mkdir()
        try:
            with serve(Served(resources={resource_uri: key_text.encode()}, blobs={"models": work / "enc"})) as url:
                code = decrypt.main(["--source", f"{url}/models", "--key-resource", resource_uri, "--manifest-sha256",
                                     (work / "manifest.sha256").read_text(), "--target", str(target), "--cdh-url", url])
            if code != 0:
                raise SystemExit(f"decrypt failed with exit status {code}")
        finally:
            for path in sorted(target.rglob("*"), reverse=True):
                path.unlink()
            target.rmdir()
    else:
        data = (work / "model" / "model.safetensors").read_bytes()
        before, cpu = _peak_kib(), _cpu_seconds()
        started = time.perf_counter()
        token = jwcrypto_jwe.JWE(data, protected={"alg": "A256KW", "enc": "A256GCM"})
        token.add_recipient(key)
        text = token.serialize(compact=True)
        del token, data
        reader = jwcrypto_jwe.JWE()
        reader.deserialize(text, key)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    return {"seconds": seconds, "mib_per_s": size_mib / seconds, "mib_per_cpu_s": size_mib / cpu, "peak_extra_mib": (_peak_kib() - before) / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_model_crypto", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the model file (default 1024 = 1 GiB)")
    parser.add_argument("--whole-file", action="store_true", help="also measure jwcrypto's whole-file JWE for comparison")
    parser.add_argument("--phase", choices=["encrypt", "decrypt", "whole-file"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps(_phase(args.phase, args.work, args.size_mib)))
        return 0

    from model_crypto import jwe

    phases = ["encrypt", "decrypt"] + (["whole-file"] if args.whole_file else [])
    with tempfile.TemporaryDirectory(prefix="bench-model-crypto-") as tmp:
        work = Path(tmp)
        _make_model(work, args.size_mib)
        (work / "key").write_text(jwe.new_key_text())
        print(f"file: {args.size_mib} MiB; chunked JWE (model_crypto), one process per phase")
        for phase in phases:
            done = subprocess.run([sys.executable, "-m", "scripts.bench_model_crypto", "--phase", phase, "--work", str(work),
                                   "--size-mib", str(args.size_mib)], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"{phase}: failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}", file=sys.stderr)
                return 1
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            label = {"encrypt": "encrypt (scripts.encrypt_model)", "decrypt": "decrypt (init container, HTTP + CDH on 127.0.0.1)",
                     "whole-file": "jwcrypto whole-file encrypt + decrypt (comparison)"}[phase]
            print(f"{label}: {figures['mib_per_s']:.0f} MiB/s ({figures['seconds']:.1f} s wall; {figures['mib_per_cpu_s']:.0f} MiB "
                  f"per CPU second), peak memory +{figures['peak_extra_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
