"""Benchmark: seqdance normal-mode features vs the reference formulation (ProDy 2.x), side by side.

The reference (SeqDance's NMA_features.py) builds ProDy's GNM and ANM with a distance-dependent gamma function
(10 / 2 / 1 for d ≤ 4 / 10 / 15 Å), computes all modes, splits them into three ranges and forms the per-range
3N×3N covariances. :func:`prody_reference_features` is that formulation; the tests import it to check
``seqdance.features.nma`` against ProDy.

Each (implementation, size) runs in a fresh subprocess that reports wall time and peak resident memory above
its after-import baseline; both implementations get the same BLAS thread count. Sizes use real structures
from the shared data where present (else a synthetic compact Cα chain of that length).

    python benchmarks/bench_nma.py            # N ≈ 100, 500, 1000, 2000
    python benchmarks/bench_nma.py --quick    # N ≈ 100, 500 only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SEQDANCE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

#: Size -> real structure (relative to the shared data folder) used for it.
STRUCTURES: dict[int, str] = {
    100: "structures/bioemu_reference/multiconf/oodval/P23895/7JK8_A.pdb",
    500: "structures/bioemu_reference/multiconf/crypticpocket/P0AG16/1ECJ_D.pdb",
    1000: "structures/bioemu_reference/multiconf/oodval/P54708/7X23_A.pdb",
    2000: "proteingym_single_dev/af2_pdb/BRCA1_HUMAN_Findlay_2018.pdb",
}
FULL_SIZES = (100, 500, 1000, 2000)
QUICK_SIZES = (100, 500)


# --- the reference formulation (ProDy) -----------------------------------------------------------


def reference_gamma(dist2: float, *args: object) -> float:
    """The reference's spring constant as a function of the squared distance (ProDy gamma callback)."""
    if dist2 <= 16:
        return 10
    if dist2 <= 100:
        return 2
    if dist2 <= 225:
        return 1
    return 0


def reference_ranges(eigvals: np.ndarray) -> list[np.ndarray]:
    """Mode indices of the three ranges, as the reference computes them."""
    share = (1 / eigvals) / (1 / eigvals).sum()
    cumulative = np.cumsum(share)
    end1 = np.argmin(np.abs(cumulative - 1 / 3))
    end2 = np.argmin(np.abs(cumulative - 0.5 * (1 + cumulative[end1])))
    return [np.arange(end1 + 1), np.arange(end1 + 1, end2 + 1), np.arange(end2 + 1, len(eigvals))]


def prody_calpha_coords(path: str | os.PathLike[str]) -> np.ndarray:
    """Cα coordinates as the reference selects them (ProDy parsePDB + 'calpha')."""
    import prody

    prody.confProDy(verbosity="none")
    return prody.parsePDB(str(path)).select("calpha").getCoords()


def prody_reference_features(coords: np.ndarray) -> dict[str, object]:
    """GNM msf (3, N) and ANM correlations (3, N, N) exactly as the reference computes them with ProDy."""
    import prody

    prody.confProDy(verbosity="none")
    n = len(coords)
    gnm = prody.GNM("GNM")
    gnm.buildKirchhoff(coords, cutoff=15, gamma=reference_gamma)
    gnm.calcModes(n)
    values, vectors = gnm.getEigvals(), gnm.getEigvecs()
    gnm_msf = np.array([((vectors[:, r] ** 2) / values[r]).sum(axis=1) for r in reference_ranges(values)])
    gnm_zero = n - len(values)

    anm = prody.ANM("ANM")
    anm.buildHessian(coords, cutoff=15, gamma=reference_gamma)
    anm.calcModes(3 * n)
    values, vectors = anm.getEigvals(), anm.getEigvecs()
    correlations = []
    for r in reference_ranges(values):
        scaled = vectors[:, r] / np.sqrt(values[r])
        cov_n = np.trace((scaled @ scaled.T).reshape(n, 3, n, 3), axis1=1, axis2=3)
        msf = np.diag(cov_n)
        correlations.append(cov_n / np.sqrt(np.outer(msf, msf)))
    return {"gnm_msf": gnm_msf, "anm_cor": np.array(correlations), "gnm_zero_modes": gnm_zero,
            "anm_zero_modes": 3 * n - len(values)}


# --- inputs ---------------------------------------------------------------------------------------


def synthetic_chain(n: int, seed: int = 0) -> np.ndarray:
    """A compact random Cα chain (3.8 Å bonds, bends of ~90-150°) confined to a protein-sized sphere."""
    rng = np.random.default_rng(seed)
    radius = 2.2 * n ** 0.38 * 1.3
    coords = np.zeros((n, 3))
    direction = np.array([1.0, 0.0, 0.0])
    for i in range(1, n):
        for _ in range(100):
            trial = direction + rng.normal(scale=0.9, size=3)
            if np.linalg.norm(coords[i - 1]) > radius:
                trial -= coords[i - 1] / np.linalg.norm(coords[i - 1])
            trial /= np.linalg.norm(trial)
            candidate = coords[i - 1] + 3.8 * trial
            if i < 3 or np.min(np.linalg.norm(coords[: i - 1] - candidate, axis=1)) > 3.8:
                break
        coords[i], direction = candidate, trial
    return coords


def load_input(size: int) -> tuple[np.ndarray, str]:
    rel = STRUCTURES.get(size)
    if rel is not None and (SHARED_DATA / rel).is_file():
        from seqdance.features.inputs.structures import read_calpha_structure

        return read_calpha_structure(SHARED_DATA / rel).coords, Path(rel).stem
    return synthetic_chain(size), "synthetic"


# --- one measurement in a fresh process -----------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ≥ 4.0), so the peak seen later belongs to the measured call."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _worker(impl: str, size: int, threads: int, save: str | None) -> None:
    from threadpoolctl import threadpool_limits

    from seqdance.features.nma import nma_features

    coords, name = load_input(size)
    run = (lambda xyz: nma_features(xyz)) if impl == "ours" else prody_reference_features
    with threadpool_limits(limits=threads):
        run(synthetic_chain(12))  # warm-up: imports and BLAS buffers stay out of the figures
    exact_peak = _reset_peak_rss()
    baseline = _status_kib("VmRSS") * 1024
    with threadpool_limits(limits=threads):
        start = time.perf_counter()
        if impl == "ours":
            result = nma_features(coords)
            out = {"gnm_msf": result.gnm_msf, "anm_cor": result.anm_cor,
                   "gnm_zero_modes": result.gnm_zero_modes, "anm_zero_modes": result.anm_zero_modes}
        else:
            out = prody_reference_features(coords)
        seconds = time.perf_counter() - start
    peak_kib = _status_kib("VmHWM") if exact_peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = peak_kib * 1024 - baseline
    if save:
        np.savez(save, gnm_msf=out["gnm_msf"], anm_cor=out["anm_cor"])
    print(json.dumps({"impl": impl, "size": size, "n": len(coords), "structure": name, "seconds": seconds,
                      "peak_mb": max(peak, 0) / 2**20, "zero_modes": [out["gnm_zero_modes"], out["anm_zero_modes"]]}))


def _measure(impl: str, size: int, threads: int, save: str) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--worker", impl, "--size", str(size), "--threads", str(threads), "--save", save]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{impl} at N={size} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES} only")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help=f"sizes (default {FULL_SIZES})")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="BLAS threads for both")
    parser.add_argument("--worker", choices=("ours", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.size, args.threads, args.save)
        return 0

    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    print(f"NMA features, ours (seqdance) vs reference (ProDy {_prody_version()}), {args.threads} BLAS thread(s)")
    header = (f"{'N':>5} {'structure':<26} {'ours s':>8} {'ours MB':>8} {'ProDy s':>8} {'ProDy MB':>9} "
              f"{'speed-up':>8} {'zero modes':>13} {'max|Δcor|':>10} {'max rel Δmsf':>12}")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            ours_file, ref_file = os.path.join(tmp, "ours.npz"), os.path.join(tmp, "ref.npz")
            ours = _measure("ours", size, args.threads, ours_file)
            ref = _measure("reference", size, args.threads, ref_file)
            with np.load(ours_file) as a, np.load(ref_file) as b:
                dcor = float(np.abs(a["anm_cor"] - b["anm_cor"]).max())
                dmsf = float((np.abs(a["gnm_msf"] - b["gnm_msf"]) / np.abs(b["gnm_msf"])).max())
            zeros = f"{ours['zero_modes']}/{ref['zero_modes']}".replace(" ", "")
            print(f"{ours['n']:>5} {ours['structure']:<26} {ours['seconds']:>8.2f} {ours['peak_mb']:>8.0f} "
                  f"{ref['seconds']:>8.2f} {ref['peak_mb']:>9.0f} {ref['seconds'] / ours['seconds']:>7.1f}x "
                  f"{zeros:>13} {dcor:>10.1e} {dmsf:>12.1e}", flush=True)
    print("zero modes: [GNM, ANM] removed by ours / by ProDy's 1e-6 threshold; where they differ, ProDy dropped "
          "genuine soft modes and the features differ by design (docs/features_nma.md).")
    return 0


def _prody_version() -> str:
    try:
        import prody

        return prody.__version__
    except ImportError:  # pragma: no cover
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
