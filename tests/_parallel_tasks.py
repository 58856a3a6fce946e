"""Tasks for the parallel-engine tests; a module of their own so that spawned worker processes can import them."""

from __future__ import annotations

import os
import signal


def square_or_die(job: int) -> tuple[int, int]:
    """``job**2`` and this process's pid; job 13 kills its own worker (as a segfault or the OOM killer would)
    and job 7 raises."""
    if job == 13:
        os.kill(os.getpid(), signal.SIGKILL)
    if job == 7:
        raise ArithmeticError("seven is not allowed")
    return job * job, os.getpid()


def thread_settings(_job: int) -> dict[str, object]:
    """What a worker sees: the thread environment and the BLAS pools numpy and SciPy actually use."""
    import scipy.linalg  # noqa: F401  (loads SciPy's own BLAS after the worker started)
    from threadpoolctl import threadpool_info

    return {
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "pools": sorted({info["num_threads"] for info in threadpool_info()}),
    }
