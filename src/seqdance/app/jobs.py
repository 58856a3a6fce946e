"""Heavy jobs of the web app: one worker thread per model runs them one at a time from a bounded queue.

A model on a CPU (or one GPU) gains nothing from two jobs at once and may run out of memory, so the server never
runs two: jobs wait in a queue of ``size`` places, and a job that finds it full is refused at once with
:class:`QueueFull` (an answer, not a hang). A job reports its progress (0..1) and the page shows its place.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from seqdance.errors import SeqdanceError

log = logging.getLogger(__name__)


class QueueFull(SeqdanceError):
    """Every place in the queue of heavy jobs is taken; the message says to try again later."""


@dataclass
class Job:
    """One heavy job: ``work(job)`` returns its result; its state, progress and one-line error are for the page."""

    kind: str
    work: Callable[[Job], Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "queued"  # queued | running | done | failed
    progress: float = 0.0
    message: str = ""
    error: str | None = None
    result: Any = None
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    future: Future = field(default_factory=Future)

    def report(self, progress: float, message: str = "") -> None:
        """Called by the work as it goes."""
        self.progress = max(0.0, min(1.0, float(progress)))
        if message:
            self.message = message


class JobQueue:
    """A bounded queue of heavy jobs and the one worker thread that runs them."""

    def __init__(self, size: int, *, kept: int = 32, name: str = "seqdance-worker") -> None:
        self.size = int(size)
        self.kept = int(kept)
        self._waiting: deque[Job] = deque()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._cond = threading.Condition()
        self._stopping = False
        self.running: Job | None = None
        self.peak_running = 0
        self.n_running = 0
        self.done = 0
        self.failed = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Job, *, keep: bool = True) -> Job:
        """Queue ``job``; :class:`QueueFull` when every place is taken. ``keep``: the page may ask for it later."""
        with self._cond:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if len(self._waiting) >= self.size:
                self.refused += 1
                raise QueueFull(f"queue full: {len(self._waiting)} job(s) are waiting for the model (this server "
                                f"queues at most {self.size}); try again in a moment")
            self._waiting.append(job)
            if keep:
                self._jobs[job.id] = job
                self._forget_old()
            self._cond.notify()
        return job

    def position(self, job: Job) -> int:
        """1 for the next job to run, 2 behind it, ...; 0 once it runs or ran."""
        with self._cond:
            for k, waiting in enumerate(self._waiting):
                if waiting is job:
                    return k + 1
        return 0

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def __len__(self) -> int:
        with self._cond:
            return len(self._waiting)

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"waiting": len(self._waiting), "size": self.size, "running": self.n_running,
                    "peak_running": self.peak_running, "done": self.done, "failed": self.failed,
                    "refused": self.refused}

    def stop(self, timeout: float = 5.0) -> None:
        """Refuse new jobs, fail the waiting ones, and let the running one finish (up to ``timeout`` s)."""
        with self._cond:
            self._stopping = True
            while self._waiting:
                job = self._waiting.popleft()
                self._finish(job, error="the server stopped before this job ran")
            self._cond.notify_all()
        self._thread.join(timeout)

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.state in ("done", "failed")]
        for key in finished[: max(0, len(finished) - self.kept)]:
            del self._jobs[key]

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._waiting:
                    return
                job = self._waiting.popleft()
                job.state, job.started = "running", time.monotonic()
                self.running = job
                self.n_running += 1
                self.peak_running = max(self.peak_running, self.n_running)
            result, error, bug = None, None, False
            try:
                result = job.work(job)
            except SeqdanceError as exc:  # the user's input: one line, as the command line prints it
                error = " ".join(str(exc).split("\n")[0].split())
            except Exception as exc:  # a bug: keep its traceback in the server's log
                log.error("job %s (%s) failed:\n%s", job.id, job.kind, traceback.format_exc())
                error = f"internal error ({type(exc).__name__}); this is a bug in seqdance, please report it"
                bug = True
            with self._cond:
                self.n_running -= 1
                self.running = None
                self._finish(job, result=result, error=error, bug=bug)

    def _finish(self, job: Job, *, result: Any = None, error: str | None = None, bug: bool = False) -> None:
        job.finished = time.monotonic()
        if error is None:
            job.state, job.result, job.progress = "done", result, 1.0
            self.done += 1
            job.future.set_result(result)
        else:
            job.state, job.error = "failed", error
            self.failed += 1
            job.future.set_exception(JobFailed(error, bug=bug))
        self._forget_old()


class JobFailed(SeqdanceError):
    """A job ended with a one-line error (``bug``: not the user's input but a bug in seqdance)."""

    def __init__(self, message: str, *, bug: bool = False) -> None:
        super().__init__(message)
        self.bug = bug
