"""Test metrics of one fold, as pure numpy functions (checked against scikit-learn's to 1e-9 in the tests).

Regression: Spearman ρ, Pearson r, MSE, MAE. Classification: accuracy, balanced accuracy (mean recall over the
classes present), macro-F1 (over the classes in truth or prediction; an undefined F1 counts 0), AUROC (binary: of
the positive class's probability; more classes: one-vs-rest, macro mean) and the Matthews correlation coefficient
(multiclass form; 0 when undefined). A correlation of a constant vector is NaN, never 0.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

from seqdance.errors import NonFiniteError

REGRESSION_METRICS: tuple[str, ...] = ("spearman", "pearson", "mse", "mae")
CLASSIFICATION_METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "mcc")
#: Metrics where lower is better (everything else: higher).
LOWER_IS_BETTER = frozenset({"mse", "mae"})


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    y = np.asarray(y, dtype=np.float64) - np.mean(y)
    denom = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / denom if denom > 0 else math.nan


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return pearson(rankdata(x), rankdata(y))


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    err = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    return {"spearman": spearman(y_true, y_pred), "pearson": pearson(y_true, y_pred),
            "mse": float(np.mean(err**2)), "mae": float(np.mean(np.abs(err)))}


def binary_auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count half): the Mann-Whitney U statistic over positives × negatives."""
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(score)
    return (float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(y_true) * n_classes + np.asarray(y_pred), minlength=n_classes**2).reshape(
        n_classes, n_classes).astype(np.float64)


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """``proba`` (n, classes): predicted class probabilities; the predicted class is the most probable."""
    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    k = proba.shape[1]
    y_pred = proba.argmax(1)
    cm = confusion(y_true, y_pred, k)
    true_counts, pred_counts, hits = cm.sum(1), cm.sum(0), np.diag(cm)
    present = true_counts > 0
    recall = np.divide(hits, true_counts, out=np.zeros(k), where=present)
    precision = np.divide(hits, pred_counts, out=np.zeros(k), where=pred_counts > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    labels = present | (pred_counts > 0)
    n = float(len(y_true))
    cov_tp = float(hits.sum()) * n - float(true_counts @ pred_counts)
    cov_pp = n * n - float(pred_counts @ pred_counts)
    cov_tt = n * n - float(true_counts @ true_counts)
    mcc = cov_tp / math.sqrt(cov_pp * cov_tt) if cov_pp * cov_tt > 0 else 0.0
    if k == 2:
        auroc = binary_auroc(y_true == 1, proba[:, 1])
    else:
        per_class = [binary_auroc(y_true == c, proba[:, c]) for c in range(k)]
        auroc = float(np.mean(per_class)) if all(np.isfinite(per_class)) else math.nan
    return {"accuracy": float(hits.sum() / n), "balanced_accuracy": float(recall[present].mean()),
            "macro_f1": float(f1[labels].mean()), "auroc": auroc, "mcc": mcc}


def check_finite(values: np.ndarray, what: str) -> None:
    """Refuse NaN or infinite predictions, naming where they came from."""
    bad = ~np.isfinite(np.asarray(values, dtype=np.float64))
    if bad.any():
        raise NonFiniteError(f"{what}: {int(bad.sum())} prediction(s) are NaN or infinite")
