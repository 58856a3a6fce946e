"""Dataset store benchmark: build throughput (serial, local workers, Dask) and read speed vs the reference layout.

    python benchmarks/bench_dataset_build.py [--quick] [--workers 2] [--max-residues 1000] [--no-dask]

1. Build: NMA of the shared structures (structures/bioemu_reference + proteingym_single_dev/af2_pdb) with
   the builder in-process, with N local worker processes and through a dask.distributed LocalCluster with N
   workers; proteins/s of the compute phase and the fold (journal -> HDF5) time for each.
2. Fold/compression: writing the built proteins with auto (default: gzip level 1 where it saves ≥25%), gzip,
   lzf and no compression — seconds, MB/s of raw float32 data and file size.
3. Read: random whole-protein reads and 256-token crops per second from each of those stores vs the reference
   formulation (contiguous float64 datasets read whole with h5py, then cropped, as the released training code
   does).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEQDANCE_SHARED_DATA", REPO.parent / "shared" / "data"))


def manifest_rows(limit: int | None) -> list[dict[str, str]]:
    rows = []
    root = DATA / "structures" / "bioemu_reference"
    for path in sorted(root.rglob("*.pdb")):
        rows.append({"name": "bioemu_" + "_".join(path.relative_to(root).with_suffix("").parts[-3:]),
                     "source": "proteinflow_pdb", "structure": str(path)})
    for path in sorted((DATA / "proteingym_single_dev" / "af2_pdb").glob("*.pdb")):
        rows.append({"name": f"af2_{path.stem}", "source": "proteinflow_pdb", "structure": str(path)})
    return rows[:limit] if limit else rows


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["name", "source", "structure"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def bench_build(manifest: Path, work: Path, workers: int, max_residues: int | None, dask: bool) -> Path:
    from seqdance.store.builder import build_store

    runs: list[tuple[str, dict]] = [("serial (in-process)", {"workers": 0}),
                                    (f"{workers} local worker processes",
                                     {"workers": workers, "threads_per_worker": 1})]
    cluster = None
    if dask:
        try:
            from distributed import LocalCluster

            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            runs.append((f"dask LocalCluster, {workers} workers", {"scheduler": cluster.scheduler_address}))
        except ImportError:
            print("dask.distributed not installed: Dask run skipped")
    print(f"\n== build: {manifest} ==")
    print(f"{'backend':38s} {'computed':>8s} {'failed':>6s} {'compute s':>9s} {'proteins/s':>10s} {'fold s':>7s}")
    out = work / "store_0.h5"
    for k, (label, kwargs) in enumerate(runs):
        store = work / f"store_{k}.h5"
        report = build_store(manifest, store, max_residues=max_residues, **kwargs)
        print(f"{label:38s} {report.computed:8d} {report.failed:6d} {report.compute_seconds:9.1f} "
              f"{report.proteins_per_s:10.2f} {report.fold_seconds:7.1f}")
    if cluster is not None:
        cluster.close()
    return out


def bench_fold(store_path: Path, work: Path) -> dict[str, Path]:
    from seqdance.store import DynamicsStore, StoreWriter

    store = DynamicsStore.open(store_path)
    proteins = [store.read(n) for n in store.names]
    raw = sum(p.residue.nbytes + p.pair.nbytes for p in proteins) / 1e6
    print(f"\n== fold / compression: {len(proteins)} proteins, {raw:.0f} MB float32 ==")
    print(f"{'compression':12s} {'seconds':>8s} {'MB/s':>7s} {'file MB':>8s}")
    out = {}
    for compression in ("auto", "gzip", "lzf", None):
        path = work / f"fold_{compression}.h5"
        start = time.perf_counter()
        with StoreWriter(path, compression=compression) as writer:
            for p in proteins:
                writer.add(p)
        dt = time.perf_counter() - start
        print(f"{compression or 'none':12s} {dt:8.2f} {raw / dt:7.0f} {path.stat().st_size / 1e6:8.1f}")
        out[compression or "none"] = path
    return out


def bench_read(stores: dict[str, Path], work: Path, n_reads: int, crop: int) -> None:
    from seqdance.store import DynamicsStore

    first = DynamicsStore.open(next(iter(stores.values())))
    names = first.names
    ref_path = work / "reference_layout.h5"
    with h5py.File(ref_path, "w") as fh:  # the reference formulation: contiguous float64, no chunks
        for name in names:
            res, pair = first.read_arrays(name)
            fh.create_dataset(f"{name}_res_feature", data=res.astype(np.float64))
            fh.create_dataset(f"{name}_pair_feature", data=pair.astype(np.float64))
    rng = np.random.default_rng(0)
    picks = [names[i] for i in rng.integers(0, len(names), n_reads)]
    lengths = {n: first.shapes(n)[0][0] for n in names}
    starts = {n: int(rng.integers(0, max(1, lengths[n] - crop))) for n in names}

    def timed(fn) -> float:
        fn()  # warm the page cache
        start = time.perf_counter()
        fn()
        return n_reads / (time.perf_counter() - start)

    print(f"\n== read: {n_reads} random proteins (mean {np.mean(list(lengths.values())):.0f} tokens), proteins/s ==")
    print(f"{'layout':28s} {'whole':>8s} {f'crop {crop}':>9s} {'file MB':>8s}")
    with h5py.File(ref_path, "r") as ref:
        def ref_whole() -> None:
            for n in picks:
                ref[f"{n}_res_feature"][:]
                ref[f"{n}_pair_feature"][:]

        def ref_crop() -> None:  # the reference reads whole datasets, then crops
            for n in picks:
                s = starts[n]
                ref[f"{n}_res_feature"][:][s:s + crop]
                ref[f"{n}_pair_feature"][:][s:s + crop, s:s + crop]

        print(f"{'reference (float64, contig.)':28s} {timed(ref_whole):8.0f} {timed(ref_crop):9.0f} "
              f"{ref_path.stat().st_size / 1e6:8.1f}")
    for label, path in stores.items():
        store = DynamicsStore.open(path)

        def ours_whole(store=store) -> None:
            for n in picks:
                store.read(n)

        def ours_crop(store=store) -> None:
            for n in picks:
                store.read(n, window=(starts[n], starts[n] + crop))

        print(f"{'seqdance, ' + label:28s} {timed(ours_whole):8.0f} {timed(ours_crop):9.0f} "
              f"{path.stat().st_size / 1e6:8.1f}")
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40 structures, no Dask (a smoke run)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-residues", type=int, default=1000)
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--reads", type=int, default=300)
    args = parser.parse_args()
    rows = manifest_rows(40 if args.quick else None)
    if not rows:
        print(f"no structures under {DATA}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="seqdance-bench-") as tmp:
        work = Path(tmp)
        manifest = write_manifest(work / "manifest.csv", rows)
        store = bench_build(manifest, work, args.workers, args.max_residues, dask=not (args.quick or args.no_dask))
        folded = bench_fold(store, work)
        bench_read(folded, work, 100 if args.quick else args.reads, crop=256)
    return 0


if __name__ == "__main__":
    sys.exit(main())
