"""Run the covering tests against each mutant, in forked pytest processes inside a scratch copy of the repository.

Fast path: a worker per slot imports the project and collects its tests once, then forks one child
per mutant, which applies the mutant in memory and runs the tests (`-x`, the tests that killed
earlier mutants of the same file first):
- a Rego template: the child's Jinja loader serves the mutated template, so every policy the tests
  render (directly or through a stack run) is the mutant;
- Python: the child swaps the mutated function's code into the function object itself, so every
  reference to it, however imported, runs the mutant.
Faithful path: a mutant the fast path cannot apply (outside any function) or that survives it is
written to the scratch copy's file and tested by a fresh pytest that imports everything anew (and
whose subprocesses see the file too). So every survivor is confirmed by the faithful path.

The parent imports the heavy third-party packages once and never the project's own modules. A child
that overruns its timeout is killed with its process group and counts as killed (the mutant hangs).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.mutation import Mutant

REPO = Path(__file__).resolve().parents[2]
# Imported by the parent before forking, so no child pays for them (none is part of the project).
_WARM = ("pytest", "_pytest.python", "pydantic", "jinja2", "yaml", "cryptography.hazmat.primitives.ciphers.aead",
         "regorus", "regopy", "pulumi", "pulumi_kubernetes", "pulumi_policy", "pulumi_tls", "pulumi_random", "grpc")
_PYTEST_ARGS = ("-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-o", "addopts=", "--no-header", "-rN")


@dataclass(frozen=True)
class Job:
    mutant: Mutant | None
    """None: the tests on the unmutated copy (the baseline, which must pass)."""
    tests: tuple[str, ...]


Report = Callable[[Job, str, str, float], None]
"""`(job, outcome, by, seconds)`: outcome `killed`, `survived`, `unloadable` (the product's Rego engine
would refuse the policy: killed without a test), `regopy-only` (only the second engine refuses it:
counts as survived), `fresh` (the fast path cannot apply it) or `error`; `by`: the first failing test,
`timeout`, or why."""


def warm() -> None:
    for name in _WARM:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _copy_repo(into: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, check=True, capture_output=True
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file() and not source.is_symlink():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    # tests find ../shared beside the repository (tests/conftest.py SHARED).
    (into.parent / "shared").symlink_to(REPO.parent / "shared")


@contextlib.contextmanager
def scratch(slots: int) -> Iterator[list[Path]]:
    """`slots` scratch copies of the repository (tracked and untracked, not ignored, files)."""
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        made = []
        for k in range(slots):
            repo = Path(tmp) / f"slot{k}" / "repo"
            repo.mkdir(parents=True)
            _copy_repo(repo)
            made.append(repo)
        yield made


# --- In a child ---------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent exits, so an interrupted check leaves nothing running."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _enter(repo: Path, log: Path) -> None:
    """Become a process of the scratch copy: own process group, output to `log`, project modules
    imported afresh from `repo`."""
    os.setpgid(0, 0)
    _die_with_parent()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.chdir(repo)
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    sys.dont_write_bytecode = True
    # Not the virtualenv's packages, though it may sit in (or be linked into) the repository: a C
    # extension imported again keeps its first module's classes (yaml._yaml emits no new yaml.ScalarNode).
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if name != "__main__" and origin.startswith(str(REPO) + os.sep) and not origin.startswith(sys.prefix + os.sep):
            del sys.modules[name]
    sys.path[:] = [str(repo)] + [p for p in sys.path if p not in ("", str(REPO))]
    importlib.invalidate_caches()


def _send(fd: int, index: int, outcome: str, by: str, seconds: float) -> None:
    os.write(fd, (json.dumps({"index": index, "outcome": outcome, "by": by, "seconds": round(seconds, 2)}) + "\n").encode())


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _load_problems(text: str) -> tuple[str | None, str | None]:
    """Why regorus, then regopy, would not load this policy (None: it loads)."""
    import regorus
    from regopy import Interpreter

    shim_path = REPO.parent / "shared" / "attestation-examples" / "shim.rego"
    modules = {"policy.rego": text, **({"shim.rego": shim_path.read_text()} if shim_path.is_file() else {})}
    problems: list[str | None] = [None, None]
    try:
        engine = regorus.Engine()
        for name, module in modules.items():
            engine.add_policy(name, module)
        engine.set_input_json("{}")
        engine.eval_query("data.policy")
    except Exception as err:  # a parse error, an unsafe variable: any refusal
        problems[0] = _first_line(err)
    try:
        interpreter = Interpreter()
        for name, module in modules.items():
            interpreter.add_module(name, module)
        interpreter.set_input({})
        if not interpreter.query("x := data.policy").ok():
            problems[1] = "the policy does not evaluate"
    except Exception as err:
        problems[1] = _first_line(err)
    return problems[0], problems[1]


def _serve_template(mutant: Mutant, finish: Callable[[str, str], None]) -> None:
    """Make the Jinja environment serve the mutated template; a rendering that regorus would not load
    (though the original's does) ends the run as `unloadable`, one only regopy refuses as `regopy-only`."""
    import jinja2

    from components import templating

    name = mutant.file.removeprefix("templates/")
    original = templating._ENV.overlay()
    templating._ENV.loader = jinja2.ChoiceLoader([jinja2.DictLoader({name: mutant.text}), templating._ENV.loader])
    templating._ENV.cache.clear()
    render, checked = templating.render, set()

    def checked_render(template: str, **values):
        text = render(template, **values)
        if template == name and text not in checked:
            checked.add(text)
            mutated = _load_problems(text)
            if any(mutated):
                before = _load_problems(original.get_template(template).render(**values))
                if mutated[0] and not before[0]:
                    finish("unloadable", f"regorus: {mutated[0]}")
                if mutated[1] and not before[1]:
                    finish("regopy-only", f"regopy: {mutated[1]}")
        return text

    templating.render = checked_render


def _swap_code(mutant: Mutant) -> bool:
    """Give every function object compiled from the mutated function the mutant's code; False when the
    fast path cannot (no function scope, or the code does not fit the function's closure)."""
    if mutant.scope is None:
        return False
    path = str(Path.cwd() / mutant.file)
    replacement = None
    pending = [compile(mutant.text, path, "exec")]
    while pending and replacement is None:
        code = pending.pop()
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                if const.co_qualname == mutant.scope:
                    replacement = const
                    break
                pending.append(const)
    if replacement is None:
        return False
    targets = [f for f in gc.get_objects() if isinstance(f, types.FunctionType)
               and f.__code__.co_filename == path and f.__code__.co_qualname == mutant.scope]
    if not targets:
        return False
    try:
        for function in targets:
            function.__code__ = replacement
    except ValueError:  # a different closure
        return False
    return True


class _Batch:
    """pytest plugin of a fast-path worker: collect once, then one forked child per mutant."""

    def __init__(self, jobs: Sequence[tuple[int, Job]], out: int, log: Path, timeout: float) -> None:
        self.jobs, self.out, self.log, self.timeout = jobs, out, log, timeout
        self.killers: dict[str, list[str]] = {}
        self.durations: dict[str, float] = {}
        """Seconds each test took in the baseline: with no killer known yet, the cheapest tests run first."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session):
        if session.testsfailed:
            for index, _ in self.jobs:
                _send(self.out, index, "error", "collecting the tests failed", 0)
            return True
        baseline = self._child(session, None, 1800.0)
        if baseline[0] == "survived":
            self.durations = json.loads(baseline[1])
        if baseline[0] != "survived":
            for index, _ in self.jobs:
                _send(self.out, index, "error", f"the tests fail without any mutant: {baseline[0]} {baseline[1]}", 0)
            return True
        timeout = max(self.timeout, 5 * baseline[2])
        for index, job in self.jobs:
            outcome, by, seconds = self._child(session, job.mutant, timeout)
            _send(self.out, index, outcome, by, seconds)
            if outcome == "killed" and by != "timeout":
                order = self.killers.setdefault(job.mutant.file, [])
                if by in order:
                    order.remove(by)
                order.insert(0, by)
        return True

    def _cost(self, nodeid: str) -> tuple[float, str, float]:
        """Cheap modules first, each module's tests together (its fixtures set up once), cheap tests first."""
        module = nodeid.split("::")[0]
        total = sum(seconds for other, seconds in self.durations.items() if other.split("::")[0] == module)
        return total, module, self.durations.get(nodeid, 0.0)

    def _child(self, session, mutant: Mutant | None, timeout: float) -> tuple[str, str, float]:
        from _pytest.runner import runtestprotocol

        read, write = os.pipe()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os.close(read)

            def finish(outcome: str, by: str) -> None:
                os.write(write, json.dumps([outcome, by]).encode())
                os._exit(0)

            try:
                os.setpgid(0, 0)
                _die_with_parent()
                if mutant and mutant.file.endswith(".rego.j2"):
                    _serve_template(mutant, finish)
                elif mutant and not _swap_code(mutant):
                    finish("fresh", "")
                rank = {nodeid: i for i, nodeid in enumerate(self.killers.get(mutant.file, []) if mutant else [])}
                items = sorted(session.items, key=lambda item: (rank.get(item.nodeid, len(rank)), *self._cost(item.nodeid)))
                took: dict[str, float] = {}
                for i, item in enumerate(items):
                    reports = runtestprotocol(item, log=False, nextitem=items[i + 1] if i + 1 < len(items) else None)
                    took[item.nodeid] = sum(r.duration for r in reports)
                    if any(r.failed for r in reports):
                        finish("killed", item.nodeid)
                finish("survived", json.dumps(took) if mutant is None else "")
            except BaseException as err:
                finish("error", f"{type(err).__name__}: {err}")
        os.close(write)
        raw = _wait(pid, read, timeout)
        seconds = time.monotonic() - started
        if raw is None:
            return "killed", "timeout", seconds
        if not raw:
            return "error", f"the child died; see {self.log}", seconds
        outcome, by = json.loads(raw)
        return outcome, by, seconds


def _wait(pid: int, read: int, timeout: float) -> bytes | None:
    """The child's reply once it exits (None: it overran `timeout` and was killed with its group)."""
    deadline = time.monotonic() + timeout
    raw = b""
    while True:
        ready, _, _ = select.select([read], [], [], max(0.0, min(0.5, deadline - time.monotonic())))
        if ready:
            chunk = os.read(read, 65536)
            raw += chunk
            if not chunk:
                break
        elif time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
            return None
    os.close(read)
    os.waitpid(pid, 0)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # whatever the tests left running
    return raw


def _fresh(job: Job, repo: Path, out: int, index: int, log: Path, timeout: float) -> None:
    """In a worker: the faithful path for one mutant (or the baseline): the file on disk, a fresh pytest."""
    started = time.monotonic()
    if job.mutant:
        (repo / job.mutant.file).write_text(job.mutant.text)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _die_with_parent()
        failed: list[str] = []

        class Watch:
            def pytest_collectreport(self, report):
                if report.failed:
                    failed.append(f"collecting {report.nodeid}")

            def pytest_runtest_logreport(self, report):
                if report.failed:
                    failed.append(report.nodeid)

        try:
            code = pytest.main(["-x", *_PYTEST_ARGS, *job.tests], plugins=[Watch()])
            reply = ["survived", ""] if code == 0 else ["killed", failed[0]] if failed else ["error", f"pytest exit {int(code)}"]
        except BaseException as err:
            reply = ["error", f"{type(err).__name__}: {err}"]
        os.write(write, json.dumps(reply).encode())
        os._exit(0)
    os.close(write)
    raw = _wait(pid, read, timeout)
    if job.mutant:
        (repo / job.mutant.file).write_text((REPO / job.mutant.file).read_text())
    outcome, by = ("killed", "timeout") if raw is None else json.loads(raw) if raw else ("error", f"the child died; see {log}")
    _send(out, index, outcome, by, time.monotonic() - started)


def _worker(repo: Path, jobs: Sequence[tuple[int, Job]], out: int, fresh: bool, timeout: float) -> None:
    log = repo.parent / "worker.log"
    _enter(repo, log)
    if fresh:
        for index, job in jobs:
            _fresh(job, repo, out, index, log, timeout)
        return
    tests = jobs[0][1].tests
    pytest.main([*_PYTEST_ARGS, *tests], plugins=[_Batch(jobs, out, log, timeout)])


def run(jobs: Sequence[Job], slots: list[Path], report: Report, fresh: bool = False, timeout: float = 60.0) -> None:
    """Every job through the fast path (`fresh`: the faithful one), one worker per slot; `report` as each ends.

    Fast path: the jobs of one test group are dealt round-robin to up to one worker per 20 of them,
    so each worker collects and baselines one group once. `timeout` is the least a mutant gets (at least 5x the baseline's time)."""
    groups: dict[tuple[str, ...], list[tuple[int, Job]]] = {}
    for index, job in enumerate(jobs):
        groups.setdefault(job.tests, []).append((index, job))
    batches = []
    for members in groups.values():
        # A worker pays one baseline run of the group: split a group only when it has many mutants.
        share = min(len(slots), max(1, len(members) // 20))
        batches += [members[k::share] for k in range(share) if members[k::share]]
    if fresh:  # one mutant at a time per slot, in any order: deal them all
        flat = [m for members in groups.values() for m in members]
        batches = [flat[k :: len(slots)] for k in range(len(slots)) if flat[k :: len(slots)]]
    pending, running, free = list(batches), {}, list(slots)
    buffers: dict[int, bytes] = {}
    while pending or running:
        while free and pending:
            repo, batch = free.pop(), pending.pop(0)
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read)
                try:
                    _worker(repo, batch, write, fresh, timeout)
                finally:
                    os._exit(0)
            os.close(write)
            running[read] = (pid, repo)
            buffers[read] = b""
        ready, _, _ = select.select(list(running), [], [], 1.0)
        for fd in ready:
            chunk = os.read(fd, 65536)
            buffers[fd] += chunk
            *lines, buffers[fd] = buffers[fd].split(b"\n")
            for line in lines:
                reply = json.loads(line)
                report(jobs[reply["index"]], reply["outcome"], reply["by"], reply["seconds"])
            if not chunk:
                pid, repo = running.pop(fd)
                os.close(fd)
                os.waitpid(pid, 0)
                free.append(repo)
