"""Batch normal-mode features: ``features nma`` and ``dataset build`` on the same structures, one engine.

    python benchmarks/bench_nma_batch.py [--structures 30] [--workers 2] [--repeats 3] [--set bioemu|af2]

Times, on the same shared structures (the first N, sorted, of structures/bioemu_reference — small domains — or
of proteingym_single_dev/af2_pdb — 70 to 1,000 residues, where the eigensolver dominates):

* ``seqdance features nma`` with default settings (workers = CPUs, through ``seqdance.parallel``);
* ``seqdance dataset build --workers W`` (same engine) — what ``features nma`` must be at least as fast as;
* the reference formulation of the earlier ``features nma`` pool: a spawn ``ProcessPoolExecutor`` whose
  initializer calls ``threadpoolctl.threadpool_limits`` (which cannot limit SciPy's BLAS, loaded later), and
  where one dead worker fails every pending structure.

Each command runs as a whole process (interpreter start included), best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEQDANCE_SHARED_DATA", REPO.parent / "shared" / "data"))

_OLD_POOL = r"""
import multiprocessing, os, sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from seqdance.features.nma.batch import NmaJob, process_structure

def init(blas_threads):
    from threadpoolctl import threadpool_limits
    global LIMIT
    LIMIT = threadpool_limits(limits=blas_threads)

if __name__ == "__main__":
    out, workers, structures = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    os.makedirs(out, exist_ok=True)
    jobs = [NmaJob(s, os.path.join(out, os.path.basename(s) + ".npz")) for s in structures]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=init,
                             initargs=(max(1, (os.cpu_count() or 1) // workers),)) as pool:
        for future in as_completed([pool.submit(process_structure, j) for j in jobs]):
            assert future.result().ok
"""


def timed(command: list[str], repeats: int, env: dict[str, str]) -> float:
    best = float("inf")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as work:
            argv = [a.replace("{work}", work) for a in command]
            start = time.perf_counter()
            subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structures", type=int, default=30)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", choices=("bioemu", "af2"), default="bioemu")
    args = parser.parse_args()
    folder = (DATA / "structures" / "bioemu_reference" if args.set == "bioemu"
              else DATA / "proteingym_single_dev" / "af2_pdb")
    structures = sorted(folder.rglob("*.pdb"))[: args.structures]
    if len(structures) < args.structures:
        sys.exit(f"need {args.structures} structures under {folder}")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "manifest.csv"
        lines = ["name,source,structure"] + [f"s{i},proteinflow_pdb,{p}" for i, p in enumerate(structures)]
        manifest.write_text("\n".join(lines) + "\n")
        old_pool = Path(tmp) / "old_pool.py"
        old_pool.write_text(_OLD_POOL)
        cli = [sys.executable, "-m", "seqdance.cli.main"]
        runs = {
            "features nma (defaults)": [*cli, "features", "nma", *map(str, structures), "-o", "{work}/nma",
                                        "--quiet"],
            f"dataset build --workers {args.workers}": [*cli, "dataset", "build", str(manifest), "-o",
                                                        "{work}/s.h5", "--workers", str(args.workers), "-q"],
            "reference: earlier features nma pool": [sys.executable, str(old_pool), "{work}/old",
                                                     str(args.workers), *map(str, structures)],
        }
        print(f"{len(structures)} structures ({args.set}), {args.workers} workers, {os.cpu_count()} CPUs, "
              f"best of {args.repeats}")
        for label, command in runs.items():
            seconds = timed(command, args.repeats, env)
            print(f"  {label:<40s} {seconds:7.2f} s   {len(structures) / seconds:6.2f} structures/s")


if __name__ == "__main__":
    main()
