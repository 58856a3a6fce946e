"""What ``seqdance compare`` costs against the equivalent ``seqdance score`` run, side by side in one process.

    python benchmarks/bench_compare.py                 # 100 variants of a 300-residue protein, 23 properties
    python benchmarks/bench_compare.py --quick         # 20 variants of a 120-residue protein
    python benchmarks/bench_compare.py --device cuda

Both runs use the same random ESM2-35M-shaped ESMDance weights, float32, and the same variants (random single and
double substitutions, plus ``--indels`` deletions/insertions):

* ``score``: what ``seqdance score --mutations`` does for one protein: :func:`seqdance.scoring.scorer.score_variants`
  (batched forwards reduced at once to the per-property changes and the combined score) and the table written;
* ``compare``: what ``seqdance compare`` does (pictures off): :func:`seqdance.scoring.compare_run.run_compare` —
  the same forwards, and per variant the residue-aligned arrays of the wild type, the variant and Δ of every
  property (the 13 pair maps included) in ``<variant>.npz``, the per-residue table, the top residues and pairs,
  the JSON record, then ``summary.csv``.

The two alternate ``--repeats`` times (score, compare, score, compare, ...) so that a busy machine slows both alike;
the best wall time of each is reported with its CPU time, the bytes compare wrote, and the largest difference
between the two runs' scalar scores (they must agree: compare reports score's numbers).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

AMINO = "ACDEFGHIKLMNPQRSTVWY"


def random_model(seed: int, device: str):
    from seqdance.model import DynamicsModel

    torch.manual_seed(seed)
    model = DynamicsModel("35M", "esmdance").eval()
    with torch.no_grad():  # non-zero head biases, like a trained model
        for param in model.parameters():
            if param.dim() == 1:
                param.add_(0.02 * torch.randn_like(param))
    return model.to(device)


def random_variants(wild_type: str, n: int, indels: int, seed: int):
    from seqdance.scoring.mutations import parse_mutants

    rng = np.random.default_rng(seed)
    texts = []
    while len(texts) < n - indels:
        sites = sorted(rng.choice(len(wild_type), size=1 + int(rng.random() < 0.3), replace=False))
        tokens = [f"{wild_type[i]}{i + 1}{rng.choice([a for a in AMINO if a != wild_type[i]])}" for i in sites]
        if ":".join(tokens) not in texts:
            texts.append(":".join(tokens))
    for k in range(indels):
        i = int(rng.integers(5, len(wild_type) - 5))
        if k % 2:
            texts.append(f"{wild_type[i]}{i + 1}_{wild_type[i + 1]}{i + 2}del")
        else:
            texts.append(f"{wild_type[i]}{i + 1}_{wild_type[i + 1]}{i + 2}ins{''.join(rng.choice(list(AMINO), 2))}")
    checked = parse_mutants(texts, wild_type, indels=True)
    assert not checked.invalid, checked.invalid[:3]
    return checked.variants


def run_score(model, wild_type, variants, folder: Path):
    import pandas as pd

    from seqdance.scoring.proteins import variant_table
    from seqdance.scoring.scorer import score_variants
    from seqdance.scoring.single import write_scores

    scores = score_variants(wild_type, variants, model=model)
    table = variant_table(pd.DataFrame({"mutant": [v.mutant for v in variants]}), variants, scores)
    write_scores(folder / "scores.csv", table, [])
    return table


def run_compare(model, wild_type, variants, folder: Path):
    import pandas as pd

    from seqdance.scoring.compare_run import run_compare as compare

    compare(wild_type, variants, folder / "compare", model=model, model_name="random-35M")
    return pd.read_csv(folder / "compare" / "summary.csv")


def timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=300)
    parser.add_argument("--variants", type=int, default=100)
    parser.add_argument("--indels", type=int, default=0, help="how many of the variants are deletions/insertions")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="20 variants of a 120-residue protein, one repeat")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--workdir", default=None, help="where the outputs go (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.quick:
        args.length, args.variants, args.repeats = 120, 20, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    wild_type = "".join(np.random.default_rng(0).choice(list(AMINO), args.length))
    variants = random_variants(wild_type, args.variants, args.indels, seed=1)
    model = random_model(2, args.device)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_compare_"))
    work.mkdir(parents=True, exist_ok=True)
    run_score(model, wild_type, variants[:4], work / "warmup")  # warm-up: kernels, allocator
    shutil.rmtree(work / "warmup")
    best = {"score": (np.inf, 0.0), "compare": (np.inf, 0.0)}
    tables = {}
    written = 0
    for repeat in range(args.repeats):
        for name, fn in (("score", run_score), ("compare", run_compare)):
            folder = work / f"{name}-{repeat}"
            folder.mkdir()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            table, wall, cpu = timed(fn, model, wild_type, variants, folder)
            if wall < best[name][0]:
                best[name] = (wall, cpu)
            tables[name] = table
            if name == "compare":
                written = folder_bytes(folder)
            shutil.rmtree(folder)
            print(f"  repeat {repeat + 1}: {name:8s} {wall:7.2f} s wall, {cpu:7.2f} s CPU", flush=True)
    columns = [c for c in tables["score"].columns if c == "score" or c.startswith("change_")]
    diff = float(np.abs(tables["score"][columns].to_numpy() - tables["compare"][columns].to_numpy()).max())
    print(f"\n{args.variants} variants ({args.indels} indels) of a {args.length}-residue protein, 23 properties, "
          f"random ESM2-35M-shaped weights, {args.device}, {torch.get_num_threads()} torch threads")
    print("| run | wall (s) | CPU (s) | variants/s | vs score |")
    print("|---|---|---|---|---|")
    for name in ("score", "compare"):
        wall, cpu = best[name]
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {args.variants / wall:.2f} | {wall / best['score'][0]:.2f}× |")
    print(f"compare wrote {written / 1e6:.0f} MB ({written / 1e6 / args.variants:.1f} MB per variant); largest "
          f"difference of the scalar scores between the two runs: {diff:.1e}")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
