"""What ``--dtype bfloat16`` / ``float16`` cost in accuracy and give in speed, against float32, per property.

    python benchmarks/bench_dtype.py                      # the 49 ProteinGym dev wild types, first 256 residues
    python benchmarks/bench_dtype.py --max-residues 1022  # whole wild types up to one window (slower)
    python benchmarks/bench_dtype.py --limit 5 --size 8M  # a quick check

The sequences are the wild types of the shared ProteinGym dev assays (``../shared/data/proteingym_single_dev/
fasta``), each cut to its first ``--max-residues`` residues. The model is an ESMDance of the ESM2-35M shape with
**random weights** (seeded; weights ~ N(0, 1/fan_in), LayerNorm scales ~1): no released weights are reachable
here, so the deviations are those of this arithmetic on activations of that scale, not of the released model
(whose frozen ESM2 encoder may have larger outlier activations; rerun with ``--model SOURCE`` where it is at hand).

One process runs ``seqdance.predict`` (all 23 properties, pairs included, the command's batching) with the model
cast to each dtype (``seqdance.load_model(dtype=...)`` does the same cast), float32 first as the reference, and
prints per property the largest and the mean absolute deviation from float32 over every residue (and channel) or
residue pair of every protein, beside the float32 values' spread (1st to 99th percentile), then the wall time and
residues/s per dtype. ``--speed-only`` skips the deviations and times the dtypes interleaved instead (``--repeats``
rounds over the first ``--limit`` wild types, float32 / bfloat16 / float16 in turn, the best round of each), which
keeps a machine shared with other jobs from favouring whichever dtype ran in a quiet minute. Timings are of this
machine's CPU; half precision pays off on GPUs with tensor cores and on CPUs with native bfloat16 (AMX), not on a
CPU that emulates it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEQDANCE_SHARED_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(REPO / "src"))

DTYPES = ("float32", "bfloat16", "float16")


def wild_types(max_residues: int, limit: int | None) -> dict[str, str]:
    from seqdance.io_utils import read_fasta

    folder = DATA / "proteingym_single_dev" / "fasta"
    if not folder.is_dir():
        sys.exit(f"the dev wild types are not found: {folder} (set SEQDANCE_SHARED_DATA)")
    out = {path.stem: read_fasta(path)[0].sequence[:max_residues] for path in sorted(folder.glob("*.fasta"))}
    return dict(list(out.items())[:limit])


def random_model(size: str, seed: int):
    """An ESMDance of the ``size`` ESM2 shape with seeded random weights of a sensible scale."""
    import torch
    from torch import nn

    from seqdance.model.dynamics import DynamicsModel

    torch.manual_seed(seed)
    model = DynamicsModel(size, "esmdance")
    gen = torch.Generator().manual_seed(seed)
    norms = {id(m.weight) for m in model.modules() if isinstance(m, nn.LayerNorm)}
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.normal_(generator=gen)
            if id(param) in norms:
                param.mul_(0.1).add_(1.0)
            elif param.dim() == 1:
                param.mul_(0.1)
            elif "word_embeddings" not in name:
                param.mul_(param.shape[1] ** -0.5)
    return model.eval()


def run(model, sequences: dict[str, str], dtype: str, batch_tokens: int) -> tuple[list, float]:
    import torch

    import seqdance

    cast = model.to(getattr(torch, dtype))
    seqdance.predict(cast, ["MKTAYIAKQRQISFVK"])  # warm-up: allocator, kernels
    began = time.perf_counter()
    out = seqdance.predict(cast, list(sequences.values()), ids=list(sequences), max_tokens_per_batch=batch_tokens)
    return out, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-residues", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None, help="the first N wild types only")
    parser.add_argument("--size", default="35M", help="ESM2 shape of the random model (default 35M)")
    parser.add_argument("--model", default=None, help="a real model source instead of random weights")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-only", action="store_true", help="interleaved timing only (no deviations)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of --speed-only (default 3)")
    args = parser.parse_args()

    import torch

    from seqdance.schema import PROPERTIES

    if args.threads:
        torch.set_num_threads(args.threads)
    sequences = wild_types(args.max_residues, args.limit)
    n_residues = sum(len(s) for s in sequences.values())
    if args.model:
        import seqdance

        model, what = seqdance.load_model(args.model), args.model
    else:
        model, what = random_model(args.size, args.seed), f"ESMDance, ESM2-{args.size} shape, random weights"
    print(f"{what}; {len(sequences)} dev wild types cut to <= {args.max_residues} residues ({n_residues:,} residues); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    if args.speed_only:
        best = {dtype: float("inf") for dtype in DTYPES}
        for round_ in range(args.repeats):
            for dtype in DTYPES:
                best[dtype] = min(best[dtype], run(model, sequences, dtype, args.batch_tokens)[1])
                model = model.float()
            print(f"  round {round_ + 1}: " + ", ".join(f"{d} {best[d]:.1f} s" for d in DTYPES), flush=True)
        print("\n| dtype | best wall time | residues/s | vs float32 |")
        print("|---|---|---|---|")
        for dtype in DTYPES:
            print(f"| {dtype} | {best[dtype]:.2f} s | {n_residues / best[dtype]:,.0f} | "
                  f"{best['float32'] / best[dtype]:.2f}× |")
        return
    results, seconds = {}, {}
    for dtype in DTYPES:
        results[dtype], seconds[dtype] = run(model, sequences, dtype, args.batch_tokens)
        print(f"  {dtype}: {seconds[dtype]:.1f} s", flush=True)
        model = model.float()

    print("\n| property | float32 p1–p99 | bfloat16 max abs Δ | bfloat16 mean abs Δ | float16 max abs Δ | "
          "float16 mean abs Δ |")
    print("|---|---|---|---|---|---|")
    worst: dict[str, tuple[str, float]] = {}
    for prop in PROPERTIES:
        reference = np.concatenate([np.asarray(r[prop.name], dtype=np.float64).ravel() for r in results["float32"]])
        keep = np.isfinite(reference)
        low, high = np.percentile(reference[keep], [1, 99])
        row = [prop.name, f"{low:.3g} – {high:.3g}"]
        for dtype in DTYPES[1:]:
            other = np.concatenate([np.asarray(r[prop.name], dtype=np.float64).ravel() for r in results[dtype]])
            if not np.array_equal(np.isfinite(other), keep):
                sys.exit(f"{dtype}: {prop.name} has non-finite values where float32 has none (or the reverse)")
            delta = np.abs(other[keep] - reference[keep])
            row += [f"{delta.max():.2e}", f"{delta.mean():.2e}"]
            if delta.max() > worst.get(dtype, ("", -1.0))[1]:
                worst[dtype] = (prop.name, float(delta.max()))
        print("| " + " | ".join(row) + " |")
    print("\n| dtype | wall time | residues/s | vs float32 |")
    print("|---|---|---|---|")
    for dtype in DTYPES:
        print(f"| {dtype} | {seconds[dtype]:.1f} s | {n_residues / seconds[dtype]:,.0f} | "
              f"{seconds['float32'] / seconds[dtype]:.2f}× |")
    for dtype, (name, value) in worst.items():
        print(f"largest deviation of {dtype}: {value:.2e} ({name})")


if __name__ == "__main__":
    main()
