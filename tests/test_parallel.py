"""The shared parallel-jobs engine: a dead worker or a raising task fails only its own job; thread limits."""

from __future__ import annotations

import os

import pytest
from _parallel_tasks import square_or_die, thread_settings

from seqdance.errors import InputError, SeqdanceError
from seqdance.parallel import WORKER_DIED, run_jobs


def _failed(job: int, message: str) -> tuple[int, str]:
    return -1, message


@pytest.mark.parametrize("workers", [1, 2])
def test_a_job_that_kills_its_worker_fails_alone(workers: int) -> None:
    jobs = list(range(20))
    results = dict(run_jobs(square_or_die, jobs, workers=workers, on_failure=_failed))
    assert sorted(results) == jobs
    assert results[13] == (-1, WORKER_DIED)
    assert results[7][0] == -1 and results[7][1] == "ArithmeticError: seven is not allowed"
    for job in set(jobs) - {7, 13}:
        assert results[job][0] == job * job
        assert results[job][1] != os.getpid()  # computed in a worker process


def test_in_process_run_keeps_going_after_a_raising_task() -> None:
    results = dict(run_jobs(square_or_die, [1, 7, 3], workers=0, on_failure=_failed))
    assert results == {1: (1, os.getpid()), 7: (-1, "ArithmeticError: seven is not allowed"), 3: (9, os.getpid())}


def test_workers_run_single_threaded_blas_by_default_and_as_asked() -> None:
    jobs = [0, 1]
    for threads, workers in ((1, 2), (2, 1)):
        for _, seen in run_jobs(thread_settings, jobs, workers=workers, threads_per_worker=threads,
                                on_failure=_failed):
            assert seen["OMP_NUM_THREADS"] == str(threads)
            assert seen["pools"] and max(seen["pools"]) <= threads  # SciPy's BLAS too, loaded after start


def test_bad_worker_count_is_a_user_error() -> None:
    with pytest.raises(InputError, match="workers must be 0"):
        list(run_jobs(square_or_die, [1], workers=-1, on_failure=_failed))
    assert issubclass(InputError, SeqdanceError) and issubclass(InputError, ValueError)
