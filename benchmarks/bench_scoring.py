"""Variants per second of zero-shot dynamics scoring: the reference notebook's loop versus seqdance.

    python benchmarks/bench_scoring.py            # saturation scan of a 100-residue protein
    python benchmarks/bench_scoring.py --quick    # fewer variants per configuration (a quick check)
    python benchmarks/bench_scoring.py --device cuda

All configurations score single substitutions of the same random 100-residue protein with the same random
ESM2-35M-shaped ESMDance weights, in one process, float32, ``torch.inference_mode``:

* (a) ``reference``: the reference notebook's loop: one forward per mutant at batch 1 with the
  straightforward formulation (``benchmarks/reference_model.py``: transformers ``EsmModel``, eager attention,
  the pair head materialising the (T, T, 2d) concatenation), then every property's mean relative change
  against the wild-type prediction (computed once);
* (b) ``seqdance, 23 properties``: :func:`seqdance.scoring.score_dynamics`, all properties (batched
  mutants, factorised pair head, immediate reduction);
* (c) ``seqdance, sasa_mean + psi``: residue properties only (fused SDPA attention, no pair head);
* ``ESM2-35M masked marginal``: :func:`seqdance.scoring.masked_marginal_scores` with random 35M-shaped
  ESM2 weights (one masked forward per position, shared by its 19 variants).

Each configuration runs a warm-up on a few variants, then scores its own slice of the saturation scan (the
reference is slow, so it gets fewer variants; rates are variants / second of wall time). The printout also
gives the process CPU time per variant and checks that (a) and (b) agree on the variants both scored.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

AMINO = "ACDEFGHIKLMNPQRSTVWY"
EPS = 0.01


def random_sequence(n: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list(AMINO), n))


def random_models(seed: int):
    """Our DynamicsModel and the reference module holding the same random 35M-shaped weights."""
    from reference_model import ReferenceDynamics

    from seqdance.model import DynamicsModel

    torch.manual_seed(seed)
    ours = DynamicsModel("35M", "esmdance").eval()
    with torch.no_grad():  # non-zero head biases, like a trained model
        for param in ours.parameters():
            if param.dim() == 1:
                param.add_(0.02 * torch.randn_like(param))
    reference = ReferenceDynamics.from_state_dict(ours.state_dict(), ours.encoder_config)
    return ours, reference


def reference_loop(reference, wild_type: str, variants) -> np.ndarray:
    """The notebook's computation: batch-1 forward per mutant, mean relative change of every property."""
    from seqdance.schema import PROPERTIES
    from seqdance.tokenizer import encode

    def split(out):
        return [
            (out["residue"] if p.is_residue else out["pair"])[..., p.channels] for p in PROPERTIES
        ]

    device = next(reference.parameters()).device
    wt = split(reference(torch.from_numpy(encode(wild_type).ids)[None].to(device)))
    rows = []
    for v in variants:
        mut = split(reference(torch.from_numpy(encode(v.apply(wild_type)).ids)[None].to(device)))
        rows.append([float((abs(m - w) / (abs(w) + EPS)).mean()) for m, w in zip(mut, wt)])
    return np.asarray(rows)


def timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer variants per configuration")
    parser.add_argument("--tiny", action="store_true", help="a handful of variants: checks that the script runs")
    parser.add_argument("--length", type=int, default=100, help="residues of the protein (default 100)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from seqdance.model import EsmMaskedLM
    from seqdance.scoring import masked_marginal_scores, saturation_mutants, score_dynamics

    device = torch.device(args.device)
    wild_type = random_sequence(args.length, args.seed)
    scan = saturation_mutants(wild_type)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(scan))
    n_ref, n_all, n_res, n_esm_pos = (8, 76, 380, 10) if args.quick else (40, 380, 1900, args.length)
    if args.tiny:
        n_ref, n_all, n_res, n_esm_pos = 2, 4, 8, 1
    ours, reference = random_models(args.seed)
    ours, reference = ours.to(device), reference.to(device)
    print(f"saturation scan of a {args.length}-residue protein ({len(scan)} variants); random ESM2-35M-shaped "
          f"weights; device {device}; torch threads {torch.get_num_threads()}")
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rows = []
    with torch.inference_mode():
        warm = [scan[i] for i in order[:2]]
        reference_loop(reference, wild_type, warm)
        score_dynamics(ours, wild_type, warm)
        sync()
        subset = [scan[i] for i in order[:n_ref]]
        ref_changes, wall, cpu = timed(reference_loop, reference, wild_type, subset)
        sync()
        rows.append(("(a) reference loop, batch 1, 23 properties", len(subset), wall, cpu))

    subset = [scan[i] for i in order[:n_all]]
    table, wall, cpu = timed(score_dynamics, ours, wild_type, subset)
    sync()
    rows.append(("(b) seqdance, 23 properties", len(subset), wall, cpu))
    agreement = np.max(np.abs(table.to_numpy()[:n_ref] - ref_changes) / np.maximum(np.abs(ref_changes), 1e-3))

    score_dynamics(ours, wild_type, warm, properties=["sasa_mean", "psi"])
    subset = [scan[i] for i in order[:n_res]]
    _, wall, cpu = timed(score_dynamics, ours, wild_type, subset, properties=["sasa_mean", "psi"])
    sync()
    rows.append(("(c) seqdance, sasa_mean + psi", len(subset), wall, cpu))

    del ours, reference
    torch.manual_seed(args.seed)
    esm = EsmMaskedLM("35M").eval().to(device)
    masked_marginal_scores(esm, wild_type, scan[:19])
    positions = rng.permutation(args.length)[:n_esm_pos]
    subset = [v for v in scan if v.substitutions[0].index in set(positions.tolist())]
    _, wall, cpu = timed(masked_marginal_scores, esm, wild_type, subset)
    sync()
    rows.append((f"ESM2-35M masked marginal ({n_esm_pos} positions)", len(subset), wall, cpu))

    base = rows[0][1] / rows[0][2]
    print(f"\n{'configuration':50s} {'variants':>8s} {'wall s':>8s} {'variants/s':>11s} {'CPU ms/var':>11s} "
          f"{'vs (a)':>7s}")
    for name, n, wall, cpu in rows:
        rate = n / wall
        print(f"{name:50s} {n:8d} {wall:8.2f} {rate:11.2f} {1000 * cpu / n:11.1f} {rate / base:6.1f}x")
    print(f"\n(a) vs (b) on the {n_ref} variants both scored: max relative difference of the changes {agreement:.1e}")


if __name__ == "__main__":
    main()
