"""Combining the per-property changes of the variants of one protein into one score (docs/design.md#combined-score).

The reference (notebook ``zero_shot_mutation.ipynb``) quantile-normalises the variants × properties matrix
in the classic sense (Bolstad et al. 2003): each column is replaced, rank for rank, by the mean over columns
of the values of that rank, so that every property ends up with the same distribution. The combined change
is the geometric mean over properties of the normalised values (plus 1e-8 inside the log).

One deliberate difference: the reference ranks with ``argsort(argsort(x))``, which breaks ties in an
arbitrary order, so identical variants (e.g. synonymous ones, all zero) could get different normalised
values. Here tied entries get the average of the rank means of the ranks they span. Without ties the two
are identical.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from seqdance.errors import InputError

#: Added inside the logarithm of the geometric mean (reference value).
GEOMETRIC_MEAN_EPS = 1e-8


def quantile_normalise(values: np.ndarray) -> np.ndarray:
    """Quantile-normalise the columns of an ``(n, p)`` matrix to their common mean distribution."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"quantile_normalise expects a 2-D (variants x properties) matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError("quantile_normalise: the matrix holds NaN or infinite values")
    n = x.shape[0]
    if n == 0:
        return x.copy()
    rank_means = np.sort(x, axis=0).mean(axis=1)  # (n,) mean of the k-th smallest value over columns
    cumulative = np.concatenate(([0.0], np.cumsum(rank_means)))
    low = rankdata(x, method="min", axis=0).astype(np.int64) - 1  # first rank of each tie block
    high = rankdata(x, method="max", axis=0).astype(np.int64)  # one past its last rank
    return (cumulative[high] - cumulative[low]) / (high - low)


def geometric_mean(values: np.ndarray, eps: float = GEOMETRIC_MEAN_EPS) -> np.ndarray:
    """Row-wise ``exp(mean(log(x + eps)))`` of an ``(n, p)`` non-negative matrix."""
    x = np.asarray(values, dtype=np.float64)
    return np.exp(np.mean(np.log(x + eps), axis=1))


def combined_change(changes: np.ndarray) -> np.ndarray:
    """Combined change of each variant: geometric mean of the quantile-normalised property changes."""
    return geometric_mean(quantile_normalise(changes))
