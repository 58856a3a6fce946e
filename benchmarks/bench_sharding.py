"""Sharded prediction on one machine: N shards in parallel (1 thread each) versus one process (N threads).

    python benchmarks/bench_sharding.py                  # 200 real sequences, ESM2-35M-shaped model, pairs
    python benchmarks/bench_sharding.py --no-pairs       # the residue-only path (what embed runs)
    python benchmarks/bench_sharding.py --size 8M --n 60 # a quick check

The 200 sequences are pieces of the real ProteinGym dev wild types (``../shared/data/proteingym_single_dev``):
lengths drawn log-uniformly between ``--min-len`` and ``--max-len`` residues, each cut from a random position of
a random wild type long enough for it (seeded). The model is a DynamicsModel with random ESM2-shaped weights
written to a temporary folder (no hub access). Every configuration is the real command line, each process a
fresh ``python -m seqdance.cli.main predict``:

* ``one process``: all sequences, ``OMP_NUM_THREADS = N``;
* ``N shards``: ``--shard i/N`` for i = 0..N-1 started together, ``OMP_NUM_THREADS = 1`` each; its wall time
  is the slowest shard's. The shards' own wall times show the token balance.

The printout gives the wall times and their ratio, each shard's wall time, tokens and share of the estimated
cost, the wall time of a rerun of the finished one-process run (every output checked by content and found done,
``residues.csv`` written again: what the run protocol itself costs), the same shares for a split by record count (what a
naive split would give), the sequences/s and tokens/s the commands report, the largest difference between the two runs'
outputs (they use different thread counts, so they agree to float rounding, not bitwise), and the model's FLOPs per
token at the human proteome's mean length (``torch.utils.flop_counter``) for the cost estimate in docs/large_runs.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEQDANCE_SHARED_DATA", REPO.parent / "shared" / "data"))


def real_pieces(n: int, min_len: int, max_len: int, seed: int) -> dict[str, str]:
    """``n`` pieces of the ProteinGym dev wild types with log-uniform lengths."""
    sys.path.insert(0, str(REPO / "src"))
    from seqdance.io_utils import read_fasta

    folder = DATA / "proteingym_single_dev" / "fasta"
    if not folder.is_dir():
        sys.exit(f"real sequences not found: {folder} (set SEQDANCE_SHARED_DATA)")
    wild_types = [read_fasta(p)[0].sequence for p in sorted(folder.glob("*.fasta"))]
    rng = np.random.default_rng(seed)
    pieces = {}
    for k in range(n):
        length = round(math.exp(rng.uniform(math.log(min_len), math.log(max_len))))
        choices = [w for w in wild_types if len(w) >= length]
        source = choices[int(rng.integers(len(choices)))]
        start = int(rng.integers(len(source) - length + 1))
        pieces[f"s{k:03d}_len{length}"] = source[start : start + length]
    return pieces


def run(cmd: list[str], threads: int) -> tuple[subprocess.Popen, float]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    return (subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
            time.perf_counter())


def finish(proc: subprocess.Popen, start: float) -> tuple[float, str]:
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"command failed ({proc.returncode}):\n{err[-3000:]}")
    return wall, err


def throughput(err: str) -> str:
    match = re.search(r"computed .*", err)
    return match.group(0) if match else "(no throughput line)"


def flops_per_token(size: str, length: int, pairs: bool) -> float:
    """Forward FLOPs per token of one ``length``-residue input (torch's flop counter, matmuls and attention)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from seqdance.model import DynamicsModel

    model = DynamicsModel(size, "esmdance").eval()
    ids = torch.randint(4, 24, (1, length + 2))
    ids[0, 0], ids[0, -1] = 0, 2
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(ids, torch.ones_like(ids), pairs=pairs)
    return counter.get_total_flops() / (length + 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="sequences (default 200)")
    parser.add_argument("--shards", type=int, default=2, help="shards / threads (default 2, the machine's cores)")
    parser.add_argument("--size", default="35M", help="ESM2 shape of the random model (default 35M)")
    parser.add_argument("--min-len", type=int, default=30)
    parser.add_argument("--max-len", type=int, default=700)
    parser.add_argument("--no-pairs", action="store_true", help="residue-only path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sys.path.insert(0, str(REPO / "src"))
    import torch

    from seqdance.inference.predict import plan_prediction_batches
    from seqdance.inference.sharding import partition
    from seqdance.model import DynamicsModel

    records = real_pieces(args.n, args.min_len, args.max_len, args.seed)
    lengths = np.array([len(s) for s in records.values()])
    with tempfile.TemporaryDirectory(prefix="bench_sharding_") as tmp:
        tmp = Path(tmp)
        fasta = tmp / "in.fasta"
        fasta.write_text("".join(f">{k}\n{v}\n" for k, v in records.items()))
        torch.manual_seed(args.seed)
        DynamicsModel(args.size, "esmdance").save_pretrained(tmp / "model")
        base = [sys.executable, "-m", "seqdance.cli.main", "predict", str(fasta), "--model", str(tmp / "model"), "-q"]
        if args.no_pairs:
            base.append("--no-pairs")

        # Plan and shares (what --shard computes), and the shares a split by record count would give.
        quadratic = not args.no_pairs
        plan = plan_prediction_batches(list(records.values()), ids=list(records), pairs=quadratic)
        costs = [u.cost(quadratic=quadratic) for u in plan]
        owned = partition(costs, [list(records)[u.members[0]] for u in plan], args.shards)
        shares = [sum(costs[u] for u in s) / sum(costs) for s in owned]
        tokens = [sum(plan[u].tokens for u in s) for s in owned]
        per_record = np.array([0.0] * len(records))
        for u in plan:
            for i in u.members:
                per_record[i] = costs[plan.index(u)] / len(u.members)
        naive = [float(per_record[k :: args.shards].sum() / per_record.sum()) for k in range(args.shards)]

        single, start = run([*base, "-o", str(tmp / "single")], threads=args.shards)
        single_wall, single_err = finish(single, start)
        procs = [run([*base, "-o", str(tmp / "sharded"), "--shard", f"{i}/{args.shards}"], threads=1)
                 for i in range(args.shards)]
        start_all = min(s for _, s in procs)
        with ThreadPoolExecutor(len(procs)) as pool:  # each shard's wall time ends when that shard ends
            shard_results = list(pool.map(lambda ps: finish(*ps), procs))
        sharded_wall = time.perf_counter() - start_all
        shard_walls = [w for w, _ in shard_results]

        rerun, start = run([*base, "-o", str(tmp / "single")], threads=args.shards)
        rerun_wall, rerun_err = finish(rerun, start)

        diff = 0.0
        for path in sorted((tmp / "single").glob("*.npz")):
            with np.load(path) as a, np.load(tmp / "sharded" / path.name) as b:
                for key in a.files:
                    if a[key].dtype.kind == "f":
                        diff = max(diff, float(np.nanmax(np.abs(a[key] - b[key]))))
        merged = (tmp / "sharded" / "residues.csv").is_file()

    mean_len = 550
    fpt = flops_per_token(args.size, mean_len, pairs=quadratic)
    print(f"{args.n} real sequences, {lengths.min()}-{lengths.max()} residues (mean {lengths.mean():.0f}, "
          f"{lengths.sum():,} in all); random ESM2-{args.size}-shaped model; "
          f"{'residue only' if args.no_pairs else 'residue + pair'}; {len(plan)} batches; torch {torch.__version__}")
    print(f"one process, {args.shards} threads: {single_wall:7.1f} s   {throughput(single_err)}")
    print(f"{args.shards} shards, 1 thread each: {sharded_wall:7.1f} s   (slowest shard)")
    for i, ((wall, err), share, tok) in enumerate(zip(shard_results, shares, tokens)):
        print(f"  shard {i}/{args.shards}: {wall:7.1f} s, {tok:,} tokens, {share:.1%} of the estimated cost; "
              f"{throughput(err)}")
    spread = (max(shard_walls) - min(shard_walls)) / max(shard_walls)
    print(f"wall-time ratio one process / shards: {single_wall / sharded_wall:.2f}; shards finish within "
          f"{spread:.1%} of each other (record-count split would give cost shares "
          f"{', '.join(f'{s:.1%}' for s in naive)})")
    print(f"merged by the last shard: {merged}; largest output difference to the one-process run: {diff:.2e}")
    done = re.search(r"\d+ predicted, \d+ already done", rerun_err)
    print(f"rerun of the finished one-process run: {rerun_wall:.1f} s ({done.group(0) if done else 'no summary'}; "
          "model loading, every output checked, residues.csv written again)")
    print(json.dumps({"flops_per_token_at_550": fpt, "size": args.size, "pairs": quadratic}))


if __name__ == "__main__":
    main()
