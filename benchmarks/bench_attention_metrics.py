"""Attention metrics of one layer (docs/design.md#attention-metrics): seqdance's batched scoring vs the straightforward
per-head loop.

The reference formulation scores each head alone with scipy's ``spearmanr`` and scikit-learn's ``roc_auc_score``
over index-selected pairs (what the notebook does); seqdance sorts each head's attention twice per layer and
derives every metric from those sorts, batched over heads in torch. Synthetic targets (sparse interactions,
random co-movement) and softmax maps of random logits; both paths give the same numbers (checked here, and in
tests/test_analysis_attention.py on real data).

    python benchmarks/bench_attention_metrics.py [--tokens 128 256 512 1024] [--heads 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from seqdance.analysis.attention import METRIC_NAMES, AttentionMetricPlan, attention_targets


def synthetic_protein(n_tokens: int, seed: int = 0) -> tuple[np.ndarray, str]:
    rng = np.random.default_rng(seed)
    n = n_tokens - 2
    sequence = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), n))
    pair = np.full((n_tokens, n_tokens, 10), -1.0, dtype=np.float32)
    pair[1:-1, 1:-1, :9] = np.cbrt(rng.random((n, n, 9)) * (rng.random((n, n, 9)) < 0.05))
    pair[1:-1, 1:-1, 9] = rng.uniform(-1, 1, (n, n))
    return pair, sequence


def reference_layer(maps: np.ndarray, pair: np.ndarray) -> dict[str, np.ndarray]:
    """The per-head loop: index selections, scipy and scikit-learn (the notebook's formulation)."""
    t = maps.shape[1]
    i, j = np.indices((t, t))
    residue = (i > 0) & (i < t - 1) & (j > 0) & (j < t - 1)
    comove = pair[..., 9].astype(np.float64)
    inter = (pair[..., :9].astype(np.float64) ** 3).sum(-1)
    near, far = residue & (np.abs(i - j) > 2), residue & (np.abs(i - j) > 5)
    out = {name: np.zeros(maps.shape[0]) for name in METRIC_NAMES}

    def spear(x: np.ndarray, y: np.ndarray) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(spearmanr(x, y).statistic)

    def topl(a: np.ndarray, f: np.ndarray) -> float:
        order = np.argsort(-a, kind="stable")
        return np.abs(f[order[:t]]).mean() / (np.abs(f[order[t:]]).mean() + 1e-8)

    every = np.abs(i - j) > 2  # the notebook's code: all token pairs, valid f != -9, attention over its AUROC pairs
    f_every = inter[every]
    f_flat = f_every[f_every != -9]
    written_auroc = (f_every == 0) | (f_every >= 0.01)

    def topl_as_written(a: np.ndarray) -> float:
        top = np.argsort(-a[every][written_auroc], kind="stable")[:t]
        rest = np.setdiff1d(np.arange(f_flat.size), top)
        return np.abs(f_flat[top]).mean() / (np.abs(f_flat[rest]).mean() + 1e-8)

    for h, a in enumerate(maps.astype(np.float64)):
        sym = (a + a.T) / 2
        out["interact_topl_ratio_as_written"][h] = topl_as_written(a)
        out["comove_topl_ratio"][h] = topl(a[near], comove[near])
        out["comove_pos_spearman"][h] = spear(a[near & (comove > 0)], comove[near & (comove > 0)])
        out["comove_neg_spearman"][h] = spear(a[near & (comove < 0)], comove[near & (comove < 0)])
        out["interact_topl_ratio"][h] = topl(a[near], inter[near])
        labelled = near & ((inter >= 0.01) | (inter == 0))
        out["interact_auroc"][h] = roc_auc_score(inter[labelled] >= 0.01, a[labelled])
        out["sym_comove_pos_spearman"][h] = spear(sym[far & (comove > 0)], comove[far & (comove > 0)])
        out["sym_comove_neg_spearman"][h] = spear(sym[far & (comove < 0)], comove[far & (comove < 0)])
        out["sym_interact_spearman"][h] = spear(sym[far], inter[far])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--heads", type=int, default=20, help="heads per layer (ESM2-35M: 20)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a busy shared machine more threads only spin)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"one layer of {args.heads} heads; torch threads {args.threads}")
    print("| tokens | pairs | reference loop (s) | seqdance (s) | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|")
    for t in args.tokens:
        pair, sequence = synthetic_protein(t)
        logits = torch.randn(args.heads, t, t, generator=torch.Generator().manual_seed(t))
        maps = torch.softmax(logits, dim=-1)
        began = time.perf_counter()
        ref = reference_layer(maps.double().numpy(), pair)
        t_ref = time.perf_counter() - began
        began = time.perf_counter()
        ours = AttentionMetricPlan(attention_targets(pair, sequence)).evaluate(maps)
        t_ours = time.perf_counter() - began
        diff = max(float(np.nanmax(np.abs(ours[m] - ref[m]))) for m in METRIC_NAMES)
        print(f"| {t} | {(t - 2) ** 2} | {t_ref:.2f} | {t_ours:.2f} | {t_ref / t_ours:.1f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
