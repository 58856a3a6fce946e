"""Attention metrics (docs/design.md#attention-metrics) against a straightforward per-head implementation, on a real
store.

The store is built with the project's builder from the shared MD data (3tvj_I as ATLAS, mdCATH 2hbaA00, the
neopetrosiamide NMR ensemble as idr) plus two NMA structures; the attention maps come from a tiny random
SeqDance model (``DynamicsModel(..., return_attentions=True)``) and a tiny random ESM2 ``EsmMaskedLM``
(its encoder with ``need_attentions=True``). The reference below selects pairs from the raw stored arrays
with plain loops and scores each head with scipy's ``spearmanr`` and scikit-learn's ``roc_auc_score``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _checkpoints import random_dynamics_model, random_esm2_mlm
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from seqdance import tokenizer
from seqdance.analysis.attention import (
    METRIC_NAMES,
    AttentionMetricPlan,
    attention_targets,
    best_heads,
    metric_grid,
    summarise_heads,
)
from seqdance.analysis.attention_run import analyze_attention, attention_encoder
from seqdance.errors import InputError
from seqdance.store.hdf5 import DynamicsStore

TOL = 1e-9


@pytest.fixture(scope="module")
def attention_store(md_store: Path) -> Path:
    return md_store


# --- the independent reference --------------------------------------------------------------------------

def _reference_pairs(pair: np.ndarray, sequence: str, t: int):
    """(i, j) lists and targets, selected by explicit loops over the raw stored array."""
    ids = tokenizer.encode(sequence).ids[:t]
    residue = [int(x) not in tokenizer.SPECIAL_IDS for x in ids]
    out = {key: [] for key in ("comove", "interact")}
    for i in range(t):
        for j in range(t):
            if not (residue[i] and residue[j]) or i == j:
                continue
            out["comove"].append((i, j, float(pair[i, j, 9])))
            channels = pair[i, j, :9].astype(np.float64)
            if (channels != -1).all():
                out["interact"].append((i, j, float((channels**3).sum())))
    return {k: np.array(v, dtype=np.float64).reshape(-1, 3) for k, v in out.items()}


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2:
        return np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(x, y).statistic)


def _topl(att: np.ndarray, f: np.ndarray, t: int) -> float:
    if len(att) <= t:
        return np.nan
    order = np.argsort(-att, kind="stable")
    top, rest = np.abs(f[order[:t]]), np.abs(f[order[t:]])
    return top.mean() / (rest.mean() + 1e-8)


def reference_metrics(a: np.ndarray, pairs: dict, t: int) -> dict[str, float]:
    """All metrics for one head's map ``a`` (T, T), float64."""
    sym = (a + a.T) / 2
    c, it = pairs["comove"], pairs["interact"]
    ci, cj, cf = c[:, 0].astype(int), c[:, 1].astype(int), c[:, 2]
    ii, ij, inf = it[:, 0].astype(int), it[:, 1].astype(int), it[:, 2]
    near_c, near_i = np.abs(ci - cj) > 2, np.abs(ii - ij) > 2
    far_c, far_i = np.abs(ci - cj) > 5, np.abs(ii - ij) > 5
    out = {
        "comove_topl_ratio": _topl(a[ci, cj][near_c], cf[near_c], t),
        "comove_pos_spearman": _spearman(a[ci, cj][near_c & (cf > 0)], cf[near_c & (cf > 0)]),
        "comove_neg_spearman": _spearman(a[ci, cj][near_c & (cf < 0)], cf[near_c & (cf < 0)]),
        "interact_topl_ratio": _topl(a[ii, ij][near_i], inf[near_i], t),
        "sym_comove_pos_spearman": _spearman(sym[ci, cj][far_c & (cf > 0)], cf[far_c & (cf > 0)]),
        "sym_comove_neg_spearman": _spearman(sym[ci, cj][far_c & (cf < 0)], cf[far_c & (cf < 0)]),
        "sym_interact_spearman": _spearman(sym[ii, ij][far_i], inf[far_i]),
    }
    labelled = near_i & ((inf >= 0.01) | (inf == 0))
    labels = inf[labelled] >= 0.01
    scores = a[ii, ij][labelled]
    out["interact_auroc"] = float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else np.nan
    return out


def _assert_close(ours: float, ref: float, what: str) -> None:
    if np.isnan(ref):
        assert np.isnan(ours), what
    else:
        assert abs(ours - ref) <= TOL, f"{what}: {ours} vs {ref}"


# --- tests -----------------------------------------------------------------------------------------------

def _maps_of(model, sequence: str, t: int) -> np.ndarray:
    """(layers*heads, T, T) float64 maps through each model's public attention output."""
    ids = torch.as_tensor(tokenizer.encode(sequence).ids[:t])[None]
    with torch.no_grad():
        if hasattr(model, "esm2"):
            maps = model(ids, pairs=False, return_attentions=True).attentions[0].permute(2, 0, 1)
        else:
            maps = model.esm(ids, need_attentions=True)[1][0]
    return maps.double().numpy()


@pytest.mark.parametrize("kind", ["seqdance", "esm2"])
def test_metrics_equal_independent_implementation(attention_store, kind, one_torch_thread):
    model = random_dynamics_model("tiny", "seqdance", seed=3) if kind == "seqdance" else random_esm2_mlm("tiny", 4)
    heads = model.esm2.config.num_heads if kind == "seqdance" else model.esm.config.num_heads
    with DynamicsStore.open(attention_store) as store:
        per_head = analyze_attention(model, store, split="test")
        md_names = [n for n, k in zip(store.index["name"], store.index["kind"]) if k == "md"]
        assert sorted(set(per_head["protein"])) == sorted(md_names) and len(md_names) >= 3
        assert list(per_head.columns[:5]) == ["protein", "source", "group", "layer", "head"]
        assert set(METRIC_NAMES) <= set(per_head.columns)
        checked = 0
        for name in md_names:
            protein = store.read(name)
            t = min(1024, protein.pair.shape[0])
            pairs = _reference_pairs(protein.pair, protein.sequence, t)
            maps = _maps_of(model, protein.sequence, t)
            rows = per_head[per_head["protein"] == name]
            assert len(rows) == maps.shape[0]
            for _, row in rows.iterrows():
                ref = reference_metrics(maps[int(row["layer"]) * heads + int(row["head"])], pairs, t)
                for metric in METRIC_NAMES:
                    _assert_close(float(row[metric]), ref[metric], f"{name} L{row['layer']}H{row['head']} {metric}")
                    checked += np.isfinite(ref[metric])
        assert checked > 0.8 * len(per_head) * len(METRIC_NAMES)  # most metrics are defined on real data


def test_ties_in_attention_follow_a_stable_order(attention_store):
    """Quantised maps with many ties: top-T choice and average ranks still match the reference exactly."""
    with DynamicsStore.open(attention_store) as store:
        protein = store.read("mdcath_2hbaA00")
    t = protein.pair.shape[0]
    rng = np.random.default_rng(0)
    maps = np.round(rng.random((3, t, t)) * 8) / 8  # 9 distinct values
    ours = AttentionMetricPlan(attention_targets(protein.pair, protein.sequence)).evaluate(maps)
    pairs = _reference_pairs(protein.pair, protein.sequence, t)
    for h in range(3):
        ref = reference_metrics(maps[h], pairs, t)
        for metric in METRIC_NAMES:
            _assert_close(float(ours[metric][h]), ref[metric], f"head {h} {metric}")


def test_truncation_to_1024_tokens():
    n = 1100
    sequence = "".join(np.random.default_rng(1).choice(list("ACDEFGHIKLMNPQRSTVWY"), n))
    t = n + 2
    pair = np.full((t, t, 10), -1.0, dtype=np.float32)
    rng = np.random.default_rng(2)
    pair[1:-1, 1:-1, :9] = np.cbrt(rng.random((n, n, 9)) * (rng.random((n, n, 9)) < 0.05))
    pair[1:-1, 1:-1, 9] = rng.uniform(-1, 1, (n, n))
    targets = attention_targets(pair, sequence)
    assert targets.n_tokens == 1024
    assert np.isnan(targets.comovement[0]).all() and np.isfinite(targets.comovement[1023, 1:]).all()
    maps = rng.random((2, 1030, 1030))
    metrics = AttentionMetricPlan(targets).evaluate(maps)
    assert all(np.isfinite(v).all() for v in metrics.values())


def test_summaries_and_grids():
    rng = np.random.default_rng(0)
    rows = []
    for p, group in [("a", "md"), ("b", "md"), ("c", "idr")]:
        for layer in range(2):
            for head in range(3):
                rows.append({"protein": p, "source": group, "group": group, "layer": layer, "head": head,
                             **{m: rng.random() for m in METRIC_NAMES}})
    per_head = pd.DataFrame(rows)
    summary = summarise_heads(per_head)
    assert set(summary["group"]) == {"all", "md", "idr"}
    sel = summary[(summary["group"] == "md") & (summary["layer"] == 1) & (summary["head"] == 2)]
    expected = per_head[(per_head["group"] == "md") & (per_head["layer"] == 1) & (per_head["head"] == 2)]
    assert float(sel["comove_topl_ratio"].iloc[0]) == pytest.approx(expected["comove_topl_ratio"].median())
    assert int(sel["n_proteins"].iloc[0]) == 2
    best = best_heads(summary)
    row = best[(best["group"] == "all") & (best["metric"] == "comove_neg_spearman")].iloc[0]
    all_rows = summary[summary["group"] == "all"]
    assert row["median"] == pytest.approx(all_rows["comove_neg_spearman"].min())  # negative: best is the minimum
    row = best[(best["group"] == "all") & (best["metric"] == "interact_auroc")].iloc[0]
    assert row["median"] == pytest.approx(all_rows["interact_auroc"].max())
    grid = metric_grid(summary, "interact_auroc")
    assert grid.shape == (2, 3) and grid[int(row["layer"]), int(row["head"])] == pytest.approx(row["median"])


def test_bad_inputs_are_one_clear_error(attention_store, tmp_path):
    with DynamicsStore.open(attention_store) as store:
        model = random_dynamics_model("tiny", "seqdance")
        with pytest.raises(InputError, match="split 'validation' has no proteins"):
            analyze_attention(model, store, split="validation")
        with pytest.raises(InputError, match="no protein in split 'train' has pair targets"):
            analyze_attention(model, store, split="train")  # only NMA entries are 'train'
        with pytest.raises(InputError, match="unknown protein"):
            analyze_attention(model, store, names=["nope"])
        with pytest.raises(InputError, match="no attention maps"):
            analyze_attention(torch.nn.Linear(3, 3), store)
    assert attention_encoder(random_esm2_mlm()).config.num_heads == 4
    with pytest.raises(InputError, match="MD pair targets"):
        attention_targets(np.zeros((5, 5, 3), dtype=np.float32), "MKT")
