"""DMS metrics against straightforward implementations of ProteinGym's definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from seqdance.scoring.metrics import assay_metrics, ndcg, roc_auc, spearman, top_decile_auc, top_recall


def _proteingym_ndcg(y_true, y_score, top=10):
    """NDCG as ProteinGym's calc_ndcg defines it, term by term (no ties in the inputs)."""
    k = math.floor(len(y_true) * top / 100)
    gains = [(t - min(y_true)) / (max(y_true) - min(y_true)) for t in y_true]
    by_score = sorted(range(len(y_true)), key=lambda i: -y_score[i])
    by_gain = sorted(range(len(y_true)), key=lambda i: -gains[i])
    dcg = sum(gains[i] / math.log2(r + 2) for r, i in enumerate(by_score[:k]) if gains[i] != 0)
    idcg = sum(gains[i] / math.log2(r + 2) for r, i in enumerate(by_gain[:k]) if gains[i] != 0)
    return dcg / idcg


def _pairwise_auc(labels, scores):
    pos = [s for s, lab in zip(scores, labels) if lab]
    neg = [s for s, lab in zip(scores, labels) if not lab]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.fixture()
def data():
    rng = np.random.default_rng(1)
    y = rng.normal(size=200)
    return y, 0.6 * y + rng.normal(size=200)


def test_spearman(data):
    y, s = data
    assert spearman(y, s) == pytest.approx(spearmanr(y, s)[0], abs=1e-12)
    assert math.isnan(spearman(y, np.ones_like(y)))
    assert spearman(np.r_[y, np.nan], np.r_[s, 0.0]) == pytest.approx(spearmanr(y, s)[0])


def test_ndcg_matches_proteingym_definition(data):
    y, s = data
    assert ndcg(y, s) == pytest.approx(_proteingym_ndcg(list(y), list(s)), rel=1e-12)
    assert ndcg(y, y) == pytest.approx(1.0)
    assert 0 < ndcg(y, -y) < ndcg(y, s)


def test_top_decile_auc_and_recall(data):
    y, s = data
    labels = y > np.percentile(y, 90)
    assert labels.sum() == 20
    assert top_decile_auc(y, s) == pytest.approx(_pairwise_auc(labels, s), abs=1e-12)
    assert top_decile_auc(y, y) == 1.0 and top_decile_auc(y, -y) == 0.0
    model_top = s > np.percentile(s, 90)
    assert top_recall(y, s) == pytest.approx((labels & model_top).sum() / labels.sum())
    ties = np.round(s)  # tied predictions count one half
    assert roc_auc(labels, ties) == pytest.approx(_pairwise_auc(labels, ties), abs=1e-12)


def test_assay_metrics_bin_column(data):
    y, s = data
    out = assay_metrics(y, s, (y > 0).astype(float))
    assert set(out) == {"spearman", "ndcg", "top_decile_auc", "top_recall", "auc"}
    assert out["auc"] == pytest.approx(_pairwise_auc(y > 0, s))
    assert "auc" not in assay_metrics(y, s)


def test_ties_at_the_top_follow_proteingym_and_are_explained(shared_data) -> None:
    import pandas as pd
    from conftest import require

    from seqdance.scoring.metrics import undefined_reasons

    table = pd.read_csv(require(shared_data / "proteingym_single_dev" / "mutant" / "CCDB_ECOLI_Adkar_2012.csv"))
    y = table["score"].to_numpy(dtype=float)
    assert (y == y.max()).sum() == 178 and np.percentile(y, 90) == y.max()  # the top decile is empty
    s = np.random.default_rng(0).normal(size=y.size)
    out = assay_metrics(y, s)
    assert out["top_recall"] == 0.0  # ProteinGym's calc_toprecall: 0 when no variant is strictly above
    assert math.isnan(out["top_decile_auc"])
    assert not math.isnan(out["spearman"]) and not math.isnan(out["ndcg"])
    reasons = undefined_reasons(y, s)
    assert set(reasons) == {"top_decile_auc", "top_recall"}
    assert "178 of 1176 variants share the top DMS_score" in reasons["top_decile_auc"]
    # a predictor's own ties at its top: recall 0 by the same rule, explained
    ties = np.where(s > np.percentile(s, 50), 1.0, 0.0)
    y2 = np.arange(y.size, dtype=float)
    assert top_recall(y2, ties) == 0.0 and "predictor's top score" in undefined_reasons(y2, ties)["top_recall"]
    assert undefined_reasons(y2, s) == {}
    assert "same DMS_score" in undefined_reasons(np.ones(20), s[:20])["spearman"]
    assert "top 10% is empty" in undefined_reasons(y2[:8], s[:8])["ndcg"]
