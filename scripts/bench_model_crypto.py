"""Benchmark of model encryption at source and of the init container's decryption against the floor.

    python -m scripts.bench_model_crypto [--size-mib 512] [--repeat 3] [--json] [--files N] [--files-at-once K]

A model of --size-mib (one file, or --files shards of it), measured in one run, each phase in a process
of its own, best of --repeat:
- encrypt: `model_crypto.encrypt.encrypt_model` on the model directory (scripts.encrypt_model);
- decrypt: `model_crypto.decrypt.main`, the init container's entry point, downloading from a local blob
  stand-in and fetching the key from a local data hub stand-in, both on 127.0.0.1 (tests/model_server.py),
  into a directory on /dev/shm (tmpfs, as the pod's memory volume);
  (--files-at-once K overrides how many files it decrypts at once, `model_crypto.decrypt.files_at_once`);
- kserve_decrypt: KServe's own decryptor (kserve-storage's `JWEDecryptor.decrypt_directory`, in place on
  a copy of the ciphertext in /dev/shm, no download), the anchor; null when kserve-storage is not installed;
- floor: AES-256-GCM and SHA-256 over the model held in memory, one core: what decrypting and checking
  it costs at the least, with no base64, no I/O and no second core.
MiB/s is wall-clock (the cold start a user waits for). Extra peak memory is the process's peak resident
memory during the work above its resident memory just before (the kernel's VmHWM, reset through
/proc/self/clear_refs, so C buffers and every thread count). The plaintext written to tmpfs is page
cache, not the process's memory: in the pod it counts against the memory volume, sized from the manifest.
The summary also gives MiB per CPU second (every thread of the phase's process, in the decrypt phase
the blob stand-in's `sendfile` too) and the machine's load average: on a busy machine wall-clock rates
measure the queue for a core (a one-thread floor gets a core more often than a four-thread pipeline gets
two), CPU rates much less. `--json` prints the wall-clock rates and memory only. It asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

PROG = "python -m scripts.bench_model_crypto"
PHASES = ("encrypt", "decrypt", "kserve_decrypt", "floor")
KEY_RESOURCE = "kbs:///default/model-decryption/key.bin"
_BLOCK = 1 << 20
_FLOOR_CHUNK = 1 << 20
_JSON_KEYS = {"encrypt": ("mib_s", "peak_extra_mib"), "decrypt": ("mib_s", "peak_extra_mib"),
              "kserve_decrypt": ("mib_s", "peak_extra_mib"), "floor": ("mib_s",)}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            name, value = line.split(":", 1)
            if name == field:
                return int(value.split()[0])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return usage.ru_utime + usage.ru_stime


def _measure(work: Callable[[], None], size_mib: int) -> dict[str, float]:
    """Wall-clock MiB/s of `work`, MiB per CPU second, and the resident memory it added at its peak."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # reset VmHWM to the current resident size (Linux, proc(5))
    before, cpu = _status_kib("VmRSS"), _cpu_seconds()
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    return {"mib_s": size_mib / seconds, "peak_extra_mib": max(_status_kib("VmHWM") - before, 0) / 1024,
            "mib_per_cpu_s": size_mib / max(_cpu_seconds() - cpu, 1e-6)}


def _make_model(directory: Path, size_mib: int, files: int) -> None:
    src = directory / "model"
    src.mkdir()
    block = hashlib.shake_256(b"bench").digest(_BLOCK)  # contents do not matter to AES-GCM, SHA-256 or base64
    for shard in range(files):
        with open(src / f"model-{shard + 1:05d}-of-{files:05d}.safetensors", "wb") as handle:
            for _ in range(size_mib // files + (shard < size_mib % files)):
                handle.write(block)
    (src / "config.json").write_text('{"bench": true}\n')


def _tmpfs_dir() -> Path:
    path = Path("/dev/shm") / f"bench-model-crypto-{uuid.uuid4().hex}"
    path.mkdir()
    return path


def _phase(name: str, work: Path, size_mib: int, files_at_once: int | None) -> dict[str, float] | None:
    """Run one phase in this process; return its figures (None: the anchor is not installed)."""
    from model_crypto import jwe

    key_text = (work / "key").read_text()
    key = jwe.parse_key(key_text.encode())
    if name == "encrypt":
        from model_crypto.encrypt import Identity, encrypt_model

        shutil.rmtree(work / "enc", ignore_errors=True)
        figures = _measure(lambda: (work / "manifest.sha256").write_text(
            encrypt_model(work / "model", work / "enc", key, Identity("bench", "bench", KEY_RESOURCE)).sha256), size_mib)
        return figures
    if name == "decrypt":
        from model_crypto import decrypt
        from tests.model_server import Served, serve

        if files_at_once is not None:
            decrypt.files_at_once = lambda: files_at_once
        target = _tmpfs_dir()
        try:
            with serve(Served(resources={KEY_RESOURCE: key_text.encode()}, blobs={"models": work / "enc"})) as url:
                argv = ["--source", f"{url}/models", "--key-resource", KEY_RESOURCE, "--manifest-sha256",
                        (work / "manifest.sha256").read_text(), "--target", str(target), "--cdh-url", url]
                codes: list[int] = []
                figures = _measure(lambda: codes.append(decrypt.main(argv)), size_mib)
            if codes != [0]:
                raise SystemExit(f"decrypt failed with exit status {codes[0]}")
            return figures
        finally:
            shutil.rmtree(target)
    if name == "kserve_decrypt":
        try:
                from kserve_storage.confidential import CDHSecretResolver, JWEDecryptor
        except ImportError:
            return None
        from tests.model_server import Served, serve

        target = _tmpfs_dir()
        try:
            copy = target / "enc"
            shutil.copytree(work / "enc", copy)
            with serve(Served(resources={KEY_RESOURCE: key_text.encode()})) as url:
                decryptor = JWEDecryptor(CDHSecretResolver(cdh_addr=url), resource_id=KEY_RESOURCE)
                return _measure(lambda: decryptor.decrypt_directory(copy), size_mib)
        finally:
            shutil.rmtree(target)
    if name == "floor":
        return _floor(sorted((work / "model").glob("*.safetensors")), size_mib)
    raise ValueError(name)


def _floor(paths: list[Path], size_mib: int) -> dict[str, float]:
    """AES-256-GCM and SHA-256 over the files in memory, one thread, chunk by chunk into one buffer."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    files = [memoryview(path.read_bytes()) for path in paths]
    out = bytearray(_FLOOR_CHUNK + 15)

    def work() -> None:
        for data in files:
            cipher = Cipher(algorithms.AES(os.urandom(32)), modes.GCM(os.urandom(12))).encryptor()
            digest = hashlib.sha256()
            for offset in range(0, len(data), _FLOOR_CHUNK):
                chunk = data[offset : offset + _FLOOR_CHUNK]
                cipher.update_into(chunk, out)
                digest.update(chunk)
            cipher.finalize()

    work()  # warm: the file's pages are resident and the code is loaded before the clock starts
    figures = _measure(work, size_mib)
    del figures["peak_extra_mib"]
    return figures


def _run_phase(name: str, work: Path, size_mib: int, files_at_once: int | None) -> dict[str, float] | None:
    extra = [] if files_at_once is None else ["--files-at-once", str(files_at_once)]
    done = subprocess.run([sys.executable, "-m", "scripts.bench_model_crypto", "--phase", name, "--work", str(work),
                           "--size-mib", str(size_mib), *extra], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{PROG}: {name} failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _best(runs: list[dict[str, float] | None]) -> dict[str, float] | None:
    """The fastest run's rates, with the highest peak memory of all runs (memory is not noise)."""
    if runs[0] is None:
        return None
    return {key: max(run[key] for run in runs) for key in runs[0]}


def bench(size_mib: int, repeat: int, files: int = 1, files_at_once: int | None = None) -> dict[str, dict[str, float] | None]:
    from model_crypto import jwe

    runs: dict[str, list[dict[str, float] | None]] = {name: [] for name in PHASES}
    with tempfile.TemporaryDirectory(prefix="bench-model-crypto-") as tmp:
        work = Path(tmp)
        _make_model(work, size_mib, files)
        (work / "key").write_text(jwe.new_key_text())
        for _ in range(repeat):
            for name in PHASES:  # interleaved: a burst of load hits every phase alike
                runs[name].append(_run_phase(name, work, size_mib, files_at_once))
    return {name: _best(runs[name]) for name in PHASES}


def _lines(results: dict[str, dict[str, float] | None], args: argparse.Namespace, loads: tuple[str, str]) -> list[str]:
    floor = results["floor"]["mib_s"]
    labels = {"encrypt": "encrypt (scripts.encrypt_model)", "decrypt": "decrypt (init container, HTTP + data hub on 127.0.0.1)",
              "kserve_decrypt": "KServe's decryptor (kserve-storage, in place, no download)"}
    at_once = args.files_at_once or _default_files_at_once()
    lines = [f"model: {args.size_mib} MiB in {args.files} file(s) ({at_once} decrypted at once), best of {args.repeat}; "
             f"load average {loads[0]} before, {loads[1]} after ({os.cpu_count()} CPUs)",
             f"floor (AES-256-GCM + SHA-256 in memory, one core): {floor:.0f} MiB/s "
             f"({results['floor']['mib_per_cpu_s']:.0f} per CPU second)"]
    for name, label in labels.items():
        figures = results[name]
        if figures is None:
            lines.append(f"{label}: not installed (pip install --no-deps -r requirements-interop.txt)")
            continue
        lines.append(f"{label}: {figures['mib_s']:.0f} MiB/s = {figures['mib_s'] / floor:.2f} of the floor, "
                     f"extra peak memory {figures['peak_extra_mib']:.0f} MiB ({figures['mib_per_cpu_s']:.0f} per CPU second)")
    return lines


def _default_files_at_once() -> int:
    from model_crypto.decrypt import files_at_once

    return files_at_once()


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512, help="size of the model file in MiB (default 512)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each phase; the best counts (default 3)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON (the summary goes to stderr)")
    parser.add_argument("--files", type=int, default=1, help="split the model into this many files (default 1)")
    parser.add_argument("--files-at-once", type=int, help="files the decryptor works on at once (default: its own choice)")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.size_mib, args.repeat, args.files, args.files_at_once or 1) < 1 or args.files > args.size_mib:
        parser.error("--size-mib, --repeat, --files and --files-at-once must be at least 1, --files at most --size-mib")
    if args.phase:
        print(json.dumps(_phase(args.phase, args.work, args.size_mib, args.files_at_once)))
        return 0
    before = _load()
    results = bench(args.size_mib, args.repeat, args.files, args.files_at_once)
    summary = _lines(results, args, (before, _load()))
    if args.json:
        print("\n".join(summary), file=sys.stderr)
        print(json.dumps({name: None if figures is None else {key: figures[key] for key in _JSON_KEYS[name]}
                          for name, figures in results.items()}))
    else:
        print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
