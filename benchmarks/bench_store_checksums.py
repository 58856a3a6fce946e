"""What the per-chunk Fletcher-32 checksums of a store cost when reading: whole proteins and training crops,
with and without checksums, for an MD-like dataset (gzip level 1) and an NMA-like one (raw chunks).

    python benchmarks/bench_store_checksums.py            # 400-token proteins
    python benchmarks/bench_store_checksums.py --tokens 1024 --proteins 8

Both files hold the same values in the store layout (64 × 64-token pair chunks) and are read the way
``DynamicsStore.read_arrays`` reads them; the time is the median of ``--repeats`` full passes, after one warm-up
pass (files in the page cache: this measures CPU cost, the part the checksum adds).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from seqdance.store.hdf5 import PAIR_CHUNK, RESIDUE_CHUNK


def _values(kind: str, tokens: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if kind == "md":  # mostly-zero interaction maps: what gzip shrinks ~10x
        pair = (rng.random((tokens, tokens, 10)) < 0.05) * rng.random((tokens, tokens, 10))
        return rng.random((tokens, 47)).astype(np.float32), pair.astype(np.float32)
    return rng.random((tokens, 3)).astype(np.float32), rng.uniform(-1, 1, (tokens, tokens, 3)).astype(np.float32)


def write(path: Path, kind: str, tokens: int, proteins: int, checksum: bool) -> None:
    rng = np.random.default_rng(0)
    filters = {"compression": "gzip", "compression_opts": 1} if kind == "md" else {}
    with h5py.File(path, "w") as fh:
        for i in range(proteins):
            res, pair = _values(kind, tokens, rng)
            fh.create_dataset(f"p{i}_res_feature", data=res, chunks=(min(tokens, RESIDUE_CHUNK), res.shape[1]),
                              fletcher32=checksum, **filters)
            fh.create_dataset(f"p{i}_pair_feature", data=pair, chunks=(PAIR_CHUNK, PAIR_CHUNK, pair.shape[2]),
                              fletcher32=checksum, **filters)


def read_pass(path: Path, proteins: int, crop: int | None) -> float:
    start = time.perf_counter()
    with h5py.File(path, "r") as fh:
        for i in range(proteins):
            sel = slice(None) if crop is None else slice(0, crop)
            fh[f"p{i}_res_feature"][sel]
            fh[f"p{i}_pair_feature"][sel, sel]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--proteins", type=int, default=16)
    parser.add_argument("--crop", type=int, default=256, help="training crop (tokens) also timed")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.proteins} proteins of {args.tokens} tokens; median of {args.repeats} passes")
    print(f"{'dataset':<18}{'read':<14}{'no checksum':>14}{'fletcher32':>14}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("md", "nma"):
            paths = {c: Path(tmp) / f"{kind}_{c}.h5" for c in (False, True)}
            for checksum, path in paths.items():
                write(path, kind, args.tokens, args.proteins, checksum)
            for crop in (None, args.crop):
                times = {}
                for checksum, path in paths.items():
                    read_pass(path, args.proteins, crop)
                    times[checksum] = statistics.median(read_pass(path, args.proteins, crop)
                                                        for _ in range(args.repeats))
                label = "whole proteins" if crop is None else f"crops of {crop}"
                print(f"{kind + (' (gzip 1)' if kind == 'md' else ' (raw)'):<18}{label:<14}"
                      f"{times[False] * 1e3:>11.1f} ms{times[True] * 1e3:>11.1f} ms{times[True] / times[False]:>7.2f}x")


if __name__ == "__main__":
    main()
