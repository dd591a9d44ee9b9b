"""A pipeline stage: one thread beside the caller running one call at a time, so the download, the
cipher, the hash and the write of consecutive chunks overlap.

The work done in these calls (socket and file I/O, `hashlib` on large buffers, `cryptography`'s AES-GCM
update, `pybase64`) runs with the GIL released, so on a machine with free cores the stages really run at
the same time. At most one call is outstanding per stage: memory stays at a few chunks, and order is
the caller's.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any


class Stage:
    """`start(fn, *args)` runs fn in the stage's thread after the previous call finished; `result()`
    waits for the outstanding call and returns its value or raises its exception."""

    def __init__(self, name: str, *, wait_on_error: bool = True):
        # A reader blocked on the network is left to finish on its own (a daemon thread) when the caller
        # fails; a writer is always waited for, so nothing is written after the caller returns.
        self._wait_on_error = wait_on_error
        self._jobs: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self.busy = False
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, args = job
            try:
                outcome = (True, fn(*args))
            except BaseException as err:  # handed to the caller, which decides
                outcome = (False, err)
            del job, fn, args  # drop the chunk before waiting for the next one
            self._done.put(outcome)
            del outcome

    def start(self, fn: Callable[..., Any], *args: Any) -> None:
        self.result()
        self.busy = True
        self._jobs.put((fn, args))

    def result(self) -> Any:
        if not self.busy:
            return None
        self.busy = False
        succeeded, value = self._done.get()
        if not succeeded:
            raise value
        return value

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        try:
            if self.busy and (kind is None or self._wait_on_error):
                if kind is None:
                    self.result()
                else:
                    try:
                        self.result()
                    except BaseException:  # noqa: S110 (the caller's exception is the one that matters)
                        pass
        finally:
            self._jobs.put(None)
