"""Per-assay metrics of a fitness predictor, following ProteinGym's definitions.

All predictors follow ProteinGym's sign convention: higher score = fitter (higher ``DMS_score``).

* Spearman: scipy's rank correlation (average ranks for ties).
* NDCG@10%: ProteinGym's ``calc_ndcg``: gains are the min-max scaled DMS scores; the variants ranked in the
  top ``floor(n * 10%)`` by the predictor contribute gain / log2(rank + 1); normalised by the same sum for the
  ideal ranking; zero-gain terms dropped. Ranks of tied predictions follow a *stable* sort (ProteinGym's
  ``argsort`` breaks ties arbitrarily).
* Top-decile AUC: ROC AUC of the predictor for telling the top decile of the assay (``DMS_score`` strictly
  above its 90th percentile, ProteinGym's top-decile threshold in ``calc_toprecall``) from the rest; ties
  count one half (Mann-Whitney), as ``sklearn.metrics.roc_auc_score``.
* Top-10% recall: ProteinGym's ``calc_toprecall`` (share of the true top decile that the predictor also puts
  strictly above its own 90th percentile).

**Ties at the top.** ProteinGym's top decile is the variants *strictly above* the 90th percentile. When more
than a tenth of an assay shares its best score (CCDB_ECOLI_Adkar_2012: 178 of 1,176 variants at the maximum),
that percentile is the maximum itself and the top decile is empty: ProteinGym then reports a top-10% recall of
0, and so do we; the top-decile AUC has no positives and is undefined. The same rule applies to a predictor's
own ties. A metric that is undefined is NaN, and :func:`undefined_reasons` says why (the benchmark prints it).
* AUC (binary): ProteinGym's AUC against its ``DMS_score_bin`` column, reported only when the assay has it.

Written here (not with sklearn) because each is a few lines of numpy and sklearn is not a dependency.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata, spearmanr

from seqdance.errors import InputError

#: ProteinGym's top share (percent) for NDCG and the top-decile metrics.
TOP_PERCENT = 10.0


def _clean(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    s = np.asarray(y_score, dtype=np.float64)
    if t.shape != s.shape or t.ndim != 1:
        raise InputError(f"metric inputs must be two 1-D arrays of one length, got {t.shape} and {s.shape}")
    keep = np.isfinite(t) & np.isfinite(s)
    return t[keep], s[keep]


def spearman(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Spearman rank correlation; NaN when either side is constant or fewer than 3 values."""
    t, s = _clean(y_true, y_score)
    if t.size < 3 or np.ptp(t) == 0 or np.ptp(s) == 0:
        return float("nan")
    return float(spearmanr(t, s)[0])


def _ranks_descending(values: np.ndarray) -> np.ndarray:
    """1-based rank of each value in descending order; ties keep input order (stable)."""
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(values.size, dtype=np.int64)
    ranks[order] = np.arange(1, values.size + 1)
    return ranks


def ndcg(y_true: np.ndarray, y_score: np.ndarray, top_percent: float = TOP_PERCENT) -> float:
    """ProteinGym's NDCG over the top ``top_percent`` % of variants."""
    t, s = _clean(y_true, y_score)
    k = int(np.floor(t.size * top_percent / 100.0))
    if t.size == 0 or np.ptp(t) == 0 or k < 1:
        return float("nan")
    gains = (t - t.min()) / np.ptp(t)

    def dcg(ranks: np.ndarray) -> float:
        take = (ranks <= k) & (gains != 0)
        return float(np.sum(gains[take] / np.log2(ranks[take] + 1)))

    ideal = dcg(_ranks_descending(gains))
    return dcg(_ranks_descending(s)) / ideal if ideal > 0 else float("nan")


def roc_auc(labels: np.ndarray, y_score: np.ndarray) -> float:
    """ROC AUC of ``y_score`` for binary ``labels`` (Mann-Whitney U with average ranks); NaN if one class."""
    lab = np.asarray(labels).astype(bool)
    s = np.asarray(y_score, dtype=np.float64)
    n_pos = int(lab.sum())
    n_neg = lab.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[lab].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def top_decile_labels(y_true: np.ndarray, top_percent: float = TOP_PERCENT) -> np.ndarray:
    """True for variants strictly above the (100 - top_percent)th percentile of the assay."""
    t = np.asarray(y_true, dtype=np.float64)
    return t > np.percentile(t, 100.0 - top_percent)


def top_decile_auc(y_true: np.ndarray, y_score: np.ndarray, top_percent: float = TOP_PERCENT) -> float:
    """ROC AUC of the predictor for the assay's top decile against the rest."""
    t, s = _clean(y_true, y_score)
    if t.size == 0:
        return float("nan")
    return roc_auc(top_decile_labels(t, top_percent), s)


def top_recall(y_true: np.ndarray, y_score: np.ndarray, top_percent: float = TOP_PERCENT) -> float:
    """ProteinGym's top-10% recall."""
    t, s = _clean(y_true, y_score)
    if t.size == 0:
        return float("nan")
    true_top = top_decile_labels(t, top_percent)
    model_top = top_decile_labels(s, top_percent)
    n = int(true_top.sum())
    return float((true_top & model_top).sum() / n) if n else 0.0


def assay_metrics(
    y_true: np.ndarray, y_score: np.ndarray, y_bin: np.ndarray | None = None
) -> dict[str, float]:
    """All metrics of one predictor on one assay."""
    out = {
        "spearman": spearman(y_true, y_score),
        "ndcg": ndcg(y_true, y_score),
        "top_decile_auc": top_decile_auc(y_true, y_score),
        "top_recall": top_recall(y_true, y_score),
    }
    if y_bin is not None:
        b = np.asarray(y_bin, dtype=np.float64)
        s = np.asarray(y_score, dtype=np.float64)
        keep = np.isfinite(b) & np.isfinite(s)
        out["auc"] = roc_auc(b[keep] > 0.5, s[keep])
    return out


#: Metric names in table order (``auc`` only when the assays carry ``DMS_score_bin``).
METRIC_NAMES: tuple[str, ...] = ("spearman", "ndcg", "top_decile_auc", "top_recall", "auc")


def undefined_reasons(
    y_true: np.ndarray, y_score: np.ndarray, y_bin: np.ndarray | None = None, top_percent: float = TOP_PERCENT
) -> dict[str, str]:
    """Why metrics of :func:`assay_metrics` are undefined (NaN) or degenerate for these values, per metric.

    Also explains a top-10% recall of 0 that comes from ties at the top rather than from the predictor.
    """
    t, s = _clean(y_true, y_score)
    reasons: dict[str, str] = {}
    if t.size < 3:
        return dict.fromkeys(("spearman", "ndcg", "top_decile_auc", "top_recall"), f"only {t.size} scored variants")
    if np.ptp(t) == 0:
        return dict.fromkeys(("spearman", "ndcg", "top_decile_auc"), "every variant has the same DMS_score")
    if np.ptp(s) == 0:
        reasons["spearman"] = "the predictor gives every variant the same score"
    if int(np.floor(t.size * top_percent / 100.0)) < 1:
        reasons["ndcg"] = f"fewer than {100 / top_percent:.0f} variants: the top {top_percent:g}% is empty"
    threshold = np.percentile(t, 100.0 - top_percent)
    if not (t > threshold).any():
        tied = int((t == t.max()).sum())
        text = (f"{tied} of {t.size} variants share the top DMS_score ({t.max():g}), so none lies strictly above "
                f"its {100 - top_percent:g}th percentile (ProteinGym's top-decile rule)")
        reasons["top_decile_auc"] = text + ": no positives"
        reasons["top_recall"] = text + ": 0 by ProteinGym's rule"
    elif not (s > np.percentile(s, 100.0 - top_percent)).any():
        tied = int((s == s.max()).sum())
        reasons["top_recall"] = (f"{tied} of {s.size} variants share the predictor's top score, so it puts none "
                                 f"strictly above its {100 - top_percent:g}th percentile: 0 by ProteinGym's rule")
    if y_bin is not None:
        b = np.asarray(y_bin, dtype=np.float64)
        b = b[np.isfinite(b)]
        if b.size and len(np.unique(b > 0.5)) < 2:
            reasons["auc"] = "DMS_score_bin has a single class"
    return reasons
