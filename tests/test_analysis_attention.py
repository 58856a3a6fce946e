"""Attention metrics (docs/design.md#attention-metrics) against a straightforward per-head implementation, on a real
store.

The store is built with the project's builder from the shared MD data (3tvj_I as ATLAS, mdCATH 2hbaA00, the
neopetrosiamide NMR ensemble as idr) plus two NMA structures; the attention maps come from a tiny random
SeqDance model (``DynamicsModel(..., return_attentions=True)``) and a tiny random ESM2 ``EsmMaskedLM``
(its encoder with ``need_attentions=True``). The reference (tests/_attention_reference.py) selects pairs from
the raw stored arrays with plain loops and scores each head with scipy's ``spearmanr`` and scikit-learn's
``roc_auc_score``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _attention_reference import maps_of, notebook_topl_as_written, reference_metrics, reference_pairs
from _checkpoints import random_dynamics_model, random_esm2_mlm

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


def _assert_close(ours: float, ref: float, what: str) -> None:
    if np.isnan(ref):
        assert np.isnan(ours), what
    else:
        assert abs(ours - ref) <= TOL, f"{what}: {ours} vs {ref}"


# --- tests -----------------------------------------------------------------------------------------------

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
            pairs = reference_pairs(protein.pair, protein.sequence, t)
            maps = maps_of(model, protein.sequence, t)
            rows = per_head[per_head["protein"] == name]
            assert len(rows) == maps.shape[0]
            for _, row in rows.iterrows():
                ref = reference_metrics(maps[int(row["layer"]) * heads + int(row["head"])], pairs, t, protein.pair)
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
    pairs = reference_pairs(protein.pair, protein.sequence, t)
    for h in range(3):
        ref = reference_metrics(maps[h], pairs, t, protein.pair)
        for metric in METRIC_NAMES:
            _assert_close(float(ours[metric][h]), ref[metric], f"head {h} {metric}")


def _constructed_protein(n: int, low: list[tuple[int, int]], seed: int = 0) -> tuple[np.ndarray, str]:
    """Stored pair targets of an n-residue protein: interactions only in vdw (cube roots stored), f = 0 or
    ≥ 0.05 everywhere except ``low`` pairs (and their mirror), which get 0 < f < 0.01."""
    rng = np.random.default_rng(seed)
    t = n + 2
    pair = np.full((t, t, 10), -1.0, dtype=np.float32)
    f = np.where(rng.random((n, n)) < 0.4, rng.uniform(0.05, 1.0, (n, n)), 0.0)
    for i, j in low:
        f[i - 1, j - 1] = f[j - 1, i - 1] = 0.004
    f = (f + f.T) / 2 * (np.abs(np.subtract.outer(np.arange(n), np.arange(n))) > 0)
    pair[1:-1, 1:-1, :9] = 0.0
    pair[1:-1, 1:-1, 0] = np.cbrt(f)
    pair[1:-1, 1:-1, 9] = rng.uniform(-1, 1, (n, n))
    return pair, "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), n))


def test_interaction_topl_as_written_reproduces_the_notebooks_misalignment():
    """The notebook takes attention over the AUROC pairs (f = 0 or f ≥ 0.01) but |f| over all valid pairs, by
    position: with pairs of 0 < f < 0.01 early in pair order the two lists slip against each other, and the value
    differs from the aligned ratio; without such pairs the two are the same number."""
    rng = np.random.default_rng(5)
    pair, sequence = _constructed_protein(12, low=[(1, 5), (1, 7), (2, 9)])
    t = pair.shape[0]
    targets = attention_targets(pair, sequence)
    inter = targets.interaction[np.isfinite(targets.interaction)]
    assert ((inter > 0) & (inter < 0.01)).sum() == 6  # three pairs and their mirrors
    maps = rng.random((4, t, t))
    ours = AttentionMetricPlan(targets).evaluate(maps)
    for h in range(4):
        written = notebook_topl_as_written(maps[h], pair, t)
        assert abs(ours["interact_topl_ratio_as_written"][h] - written) <= 1e-12 * written
        assert abs(ours["interact_topl_ratio"][h] - written) > 1e-3  # the misalignment moves it
    clean, _ = _constructed_protein(12, low=[])
    aligned = AttentionMetricPlan(attention_targets(clean, sequence)).evaluate(maps)
    for h in range(4):
        assert aligned["interact_topl_ratio_as_written"][h] == pytest.approx(aligned["interact_topl_ratio"][h],
                                                                              rel=1e-12)
        assert aligned["interact_topl_ratio"][h] == pytest.approx(notebook_topl_as_written(maps[h], clean, t),
                                                                   rel=1e-12)


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
