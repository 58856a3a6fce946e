"""Writing outputs on a background thread, and the throughput figures of a run.

The device should not wait for the disk: :class:`BackgroundWriter` runs write jobs in order on one thread,
behind a queue bounded in bytes (a slow disk holds the producer back instead of filling the memory). A job's
error stops the writer and is raised in the producer at its next :meth:`~BackgroundWriter.submit` or at
:meth:`~BackgroundWriter.close`; jobs already queued when the producer fails are still written, so that an
interrupted run keeps all it computed. Each job does its own atomic write (:func:`seqdance.io_utils.atomic_path`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from seqdance.wording import counted, plural

#: Default bound of the queue: results waiting to be written (bytes, estimated by the producer).
DEFAULT_MAX_PENDING_BYTES = 1 << 30


class BackgroundWriter:
    """Run ``fn(*args)`` jobs in submission order on one thread; use as a context manager.

    ``max_pending_bytes`` bounds the estimated size of the queued jobs (one job is always allowed, however large).
    """

    def __init__(self, *, max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES, name: str = "seqdance-writer") -> None:
        self.max_pending_bytes = max(1, int(max_pending_bytes))
        self._jobs: deque[tuple[Callable[..., Any], tuple, int]] = deque()
        self._pending_bytes = 0
        self._closed = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self.written = 0
        self.busy_seconds = 0.0  # time the thread spent writing
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return
                fn, args, size = self._jobs[0]
            start = time.perf_counter()
            try:
                if self._error is None:
                    fn(*args)
                    self.written += 1
            except BaseException as exc:  # handed to the producer
                self._error = exc
            self.busy_seconds += time.perf_counter() - start
            with self._cond:
                self._jobs.popleft()
                self._pending_bytes -= size
                self._cond.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, fn: Callable[..., Any], *args: Any, size: int = 0) -> None:
        """Queue one job (``size``: estimated bytes it holds); blocks while the queue is full."""
        self._raise_error()
        with self._cond:
            if self._closed:
                raise RuntimeError("the writer is closed")
            while self._jobs and self._pending_bytes + size > self.max_pending_bytes and self._error is None:
                self._cond.wait()
            self._jobs.append((fn, args, int(size)))
            self._pending_bytes += int(size)
            self._cond.notify_all()
        self._raise_error()

    def close(self) -> None:
        """Write everything queued, stop the thread, raise the first error of a job if any."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        self._raise_error()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # the producer failed: keep what was computed, but report the producer's error
            self.close()
        except BaseException:  # the producer's exception wins
            pass


@dataclass
class Throughput:
    """Sequences and model tokens processed, timed from :meth:`start` to :meth:`stop`."""

    sequences: int = 0
    tokens: int = 0
    seconds: float = 0.0
    _started: float | None = field(default=None, repr=False)

    def start(self) -> None:
        self._started = time.perf_counter()

    def add(self, sequences: int, tokens: int) -> None:
        self.sequences += sequences
        self.tokens += tokens

    def stop(self) -> None:
        if self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self._started = None

    def summary(self, noun: str = "sequence") -> str:
        """One line: counts, wall time, ``noun``s per second and tokens per second (``noun``: singular)."""
        rate = self.seconds if self.seconds > 0 else float("nan")
        return (f"{counted(self.sequences, noun)} ({counted(self.tokens, 'token')}) in {self.seconds:.1f} s: "
                f"{self.sequences / rate:.2f} {plural(noun)}/s, {self.tokens / rate:,.0f} tokens/s")
