"""A pipeline stage: one thread beside the caller running calls in order, so the download, the cipher,
the hash and the write of consecutive chunks overlap.

The work done in these calls (socket and file I/O, `hashlib` on large buffers, `cryptography`'s AES-GCM
update, `pybase64`) runs with the GIL released, so on a machine with free cores the stages really run at
the same time. At most `depth` calls are outstanding per stage: memory stays at a few chunks, and a
stage that the scheduler holds back for a moment does not stall the others at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any


class Stage:
    """`start(fn, *args)` queues fn for the stage's thread, first waiting while `depth` calls are
    outstanding; `result()` waits for the oldest outstanding call and returns its value or raises its
    exception. After a call fails, the stage runs none of the calls queued behind it."""

    def __init__(self, name: str, *, depth: int = 1, wait_on_error: bool = True):
        # A reader blocked on the network is left to finish on its own (a daemon thread) when the caller
        # fails; a writer is always waited for, so nothing is written after the caller returns.
        self._depth = depth
        self._wait_on_error = wait_on_error
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._outstanding = 0
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    @property
    def busy(self) -> bool:
        return self._outstanding > 0

    def _serve(self) -> None:
        failed = False
        while (job := self._jobs.get()) is not None:
            fn, args = job
            if failed:
                outcome = (False, None)
            else:
                try:
                    outcome = (True, fn(*args))
                except BaseException as err:  # handed to the caller, which decides
                    outcome, failed = (False, err), True
            del job, fn, args  # drop the chunk before waiting for the next one
            self._done.put(outcome)
            del outcome

    def start(self, fn: Callable[..., Any], *args: Any) -> None:
        while self._outstanding >= self._depth:
            self.result()
        self._outstanding += 1
        self._jobs.put((fn, args))

    def result(self) -> Any:
        if not self._outstanding:
            return None
        self._outstanding -= 1
        succeeded, value = self._done.get()
        if not succeeded:
            raise value if value is not None else RuntimeError("a call queued behind a failed one did not run")
        return value

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        try:
            if kind is None:
                while self._outstanding:
                    self.result()
            elif self._wait_on_error:
                while self._outstanding:
                    try:
                        self.result()
                    except BaseException:  # noqa: S110 (the caller's exception is the one that matters)
                        pass
        finally:
            self._jobs.put(None)
