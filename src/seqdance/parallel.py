"""One engine for independent jobs: in this process, in local worker processes, or on a Dask cluster.

Every batch command (``dataset build``, ``features nma``) runs its per-item work through :func:`run_jobs`, so
they share one set of guarantees:

* **A dead worker fails only its own job.** When a local worker process dies (segfault, ``kill -9``, the OOM
  killer), Python's pool breaks for every job in flight. Those jobs are re-run one at a time, each in a fresh
  single-worker pool: the job that kills its worker again is reported failed, the others complete.
* **A job that raises fails only itself**: the exception becomes that job's failure (its traceback is logged);
  the other jobs go on. Tasks that record their users' errors themselves (``dataset build``, ``features nma``)
  pass ``raise_in_process=True``: run in this process, anything their task raises is a bug and propagates with
  its traceback; in a worker it still fails only that job, and the caller reports it as a bug.
* **No oversubscription.** Workers start with BLAS/OpenMP/numba thread limits in their environment, read by each
  library when it loads (``threadpoolctl`` could only limit the libraries already loaded when it runs, and a
  worker loads SciPy's own BLAS later), so N workers use about N × ``threads_per_worker`` cores.
* **Bounded memory**: at most ``2 × workers`` jobs are in flight; results are yielded as they complete.
* **No orphans**: a worker exits when the process that started it is gone (e.g. ``kill -9`` of the parent alone).

Jobs and the task must be picklable for process and Dask runs (a module-level function, ``functools.partial``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from seqdance.errors import InputError

log = logging.getLogger(__name__)

JobT = TypeVar("JobT")
ResultT = TypeVar("ResultT")

#: Environment variables that cap the threads of BLAS, OpenMP, numba and numexpr in a worker.
THREAD_ENV_VARS: tuple[str, ...] = (
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS",
)
WORKER_DIED = "worker process died (killed, crashed or out of memory)"


def default_threads_per_worker(workers: int) -> int:
    """Cores per worker when ``workers`` processes share this machine (at least 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


@contextlib.contextmanager
def thread_limits(threads: int) -> Iterator[None]:
    """Processes started inside this block inherit thread limits of ``threads`` for every numeric library."""
    saved = {k: os.environ.get(k) for k in THREAD_ENV_VARS}
    os.environ.update({k: str(threads) for k in THREAD_ENV_VARS})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _worker_init(parent_pid: int, threads: int, interval: float = 1.0) -> None:
    """Worker initializer: thread limits for libraries loaded from now on (environment) and already loaded
    (threadpoolctl); exit when the parent process is gone."""
    os.environ.update({k: str(threads) for k in THREAD_ENV_VARS})
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(interval)

    threading.Thread(target=watch, name="seqdance-parent-watch", daemon=True).start()


def _failure_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def _log_raised(job: Any, exc: BaseException) -> None:
    """The traceback of a job that raised (a worker's own, when it ran in one), for the log."""
    remote = exc.__cause__  # concurrent.futures attaches the worker's traceback as the cause
    text = str(remote) if remote is not None and type(remote).__name__ == "_RemoteTraceback" else "".join(
        traceback.format_exception(exc))
    label = repr(job)
    log.warning("job %s raised:\n%s", label if len(label) <= 200 else label[:200] + "...", text.strip())


def _call(task: Callable[[JobT], ResultT], job: JobT, on_failure: Callable[[JobT, str], ResultT]) -> ResultT:
    try:
        return task(job)
    except Exception as exc:  # the engine's promise: a raising job fails alone (callers may ask to propagate)
        _log_raised(job, exc)
        return on_failure(job, _failure_text(exc))


def run_jobs(
    task: Callable[[JobT], ResultT],
    jobs: Sequence[JobT],
    *,
    on_failure: Callable[[JobT, str], ResultT],
    workers: int = 1,
    threads_per_worker: int | None = None,
    scheduler: str | None = None,
    raise_in_process: bool = False,
) -> Iterator[tuple[JobT, ResultT]]:
    """Run ``task(job)`` for every job; yield ``(job, result)`` as each completes (in completion order).

    ``workers``: 0 runs in this process; N ≥ 1 uses N local worker processes (spawned: fresh interpreters).
    ``scheduler``: a dask.distributed scheduler address or scheduler file instead. A job whose task raises, or
    whose worker dies, yields ``on_failure(job, message)`` (``message`` is :data:`WORKER_DIED` for a dead worker),
    except with ``raise_in_process`` and ``workers`` 0: then the task's exception propagates (a task that records
    its expected failures itself raises only bugs). ``threads_per_worker`` defaults to the machine's cores divided
    by ``workers``.
    """
    if workers < 0:
        raise InputError(f"workers must be 0 (this process) or more, got {workers}")
    if not jobs:
        return
    if scheduler:
        yield from _run_dask(task, jobs, on_failure, scheduler)
    elif workers == 0:
        for job in jobs:
            yield job, (task(job) if raise_in_process else _call(task, job, on_failure))
    else:
        threads = threads_per_worker or default_threads_per_worker(workers)
        yield from _run_processes(task, jobs, on_failure, min(workers, len(jobs)), threads)


def _run_processes(
    task: Callable[[JobT], ResultT],
    jobs: Sequence[JobT],
    on_failure: Callable[[JobT, str], ResultT],
    workers: int,
    threads: int,
) -> Iterator[tuple[JobT, ResultT]]:
    pending = list(reversed(jobs))
    suspects: list[JobT] = []
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked locks or thread state

    def new_pool(n: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=n, mp_context=context, initializer=_worker_init,
                                   initargs=(os.getpid(), threads))

    def outcome(future: Future[ResultT], job: JobT) -> ResultT:
        try:
            return future.result()
        except BrokenProcessPool:
            raise
        except Exception as exc:  # the task raised in the worker
            _log_raised(job, exc)
            return on_failure(job, _failure_text(exc))

    def submit(pool: ProcessPoolExecutor, job: JobT) -> Future[ResultT]:
        with thread_limits(threads):  # workers are spawned on submit and inherit the environment
            return pool.submit(task, job)

    while pending or suspects:
        if suspects:  # after a worker death: one job per fresh pool, so only the culprit fails
            job = suspects.pop()
            with new_pool(1) as pool:
                try:
                    result = outcome(submit(pool, job), job)
                except BrokenProcessPool:
                    result = on_failure(job, WORKER_DIED)
            yield job, result
            continue
        with new_pool(workers) as pool:
            running: dict[Future[ResultT], JobT] = {}
            try:
                while pending or running:
                    while pending and len(running) < 2 * workers:
                        running[submit(pool, pending[-1])] = pending[-1]
                        pending.pop()  # only once submitted: a broken pool raises in submit()
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        result = outcome(future, running[future])  # raises BrokenProcessPool if a worker died
                        yield running.pop(future), result
            except BrokenProcessPool:
                suspects.extend(reversed(list(running.values())))
                log.warning("a worker process died; re-running its %d in-flight job(s) one at a time", len(running))


def _dask_client(address: str) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise InputError("--scheduler needs dask.distributed: pip install 'seqdance[dask]'") from None
    if Path(address).is_file():
        return Client(scheduler_file=address)
    return Client(address)


def _run_dask(
    task: Callable[[JobT], ResultT],
    jobs: Sequence[JobT],
    on_failure: Callable[[JobT, str], ResultT],
    address: str,
) -> Iterator[tuple[JobT, ResultT]]:
    """Submit to a dask.distributed scheduler with a bounded window; a killed worker fails its job only."""
    from distributed import as_completed

    client = _dask_client(address)
    try:
        n_threads = max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))
        pending = list(reversed(jobs))
        owners: dict[str, JobT] = {}
        queue = as_completed()

        def submit() -> None:
            job = pending.pop()
            future = client.submit(task, job, pure=False)
            owners[future.key] = job
            queue.add(future)

        for _ in range(min(2 * n_threads, len(pending))):
            submit()
        for future in queue:
            job = owners.pop(future.key)
            try:
                result = future.result()
            except Exception as exc:  # the task raised, or its worker died (KilledWorker)
                _log_raised(job, exc)
                result = on_failure(job, _failure_text(exc))
            future.release()
            yield job, result
            if pending:
                submit()
    finally:
        client.close()


class ChildProcessDied(OSError):
    """The child process of :func:`call_in_child` died without returning (a native crash or a kill)."""


#: In a :func:`call_in_child` child: the terminal's stderr (its own stderr goes to the log file).
_TERMINAL: Any = None


def terminal_stream() -> Any:
    """Where progress bars should go: the terminal, also inside a :func:`call_in_child` child."""
    import sys

    return _TERMINAL if _TERMINAL is not None else sys.stderr


def _call_logged(log_path: str | None, func: Callable[..., ResultT], args: tuple, kwargs: dict) -> ResultT:
    """In the child: send stderr (native libraries' messages and Python's, e.g. tracebacks that h5py prints while
    cleaning up after a failed write) to ``log_path``; progress bars use :func:`terminal_stream`."""
    global _TERMINAL
    if log_path is not None:
        import sys

        _TERMINAL = os.fdopen(os.dup(2), "w", buffering=1)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stderr = open(log_path, "a", buffering=1)
        logging.basicConfig(stream=_TERMINAL, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return func(*args, **kwargs)


def call_in_child(func: Callable[..., ResultT], *args: Any, log_path: str | os.PathLike[str] | None = None,
                  **kwargs: Any) -> ResultT:
    """``func(*args, **kwargs)`` run in a fresh (spawned) child process; its result or exception comes back.

    For writers whose native library may crash instead of raising when the disk fills up (HDF5 can segfault
    after a failed write): the crash ends the child only, and raises :class:`ChildProcessDied` here. The child
    exits when this process dies. ``log_path``: where the child's stderr goes (its native error messages).
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_worker_init,
                             initargs=(os.getpid(), default_threads_per_worker(1))) as pool:
        future = pool.submit(_call_logged, None if log_path is None else os.fspath(log_path), func, args, kwargs)
        try:
            return future.result()
        except BrokenProcessPool:
            raise ChildProcessDied(f"the child process running {getattr(func, '__name__', func)} died") from None
