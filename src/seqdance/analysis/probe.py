"""Linear probes of global properties from pooled embeddings, beside trivial baselines
(docs/design.md#embedding-probes).

For each label and each train/test split: optional PCA fitted on the training proteins only (the notebook: 200
components), then ordinary least squares (``linear``, the notebook's) and ridge regression with its penalty
chosen by efficient leave-one-out cross-validation on the training proteins (``ridge``; features
standardised on the training proteins first, so one penalty grid fits any embedding scale). Test metrics per
split: MSE, MAE, Pearson r and Spearman ρ; summaries are mean ± sd over splits. Every run also fits two
baselines on the same splits: the sequence length alone and the amino-acid composition (20 fractions).

Splits come from ``split_*`` columns of the label table (``train``/``test``), or are made by clustering the
sequences by identity (the notebook: MMseqs2 at 20% identity and 50% coverage) with the dataset split code
(:mod:`seqdance.store.split`) and assigning whole clusters to test with a different seed per split.
scikit-learn does the fitting; nothing here is hand-rolled beyond the bookkeeping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import pearsonr, spearmanr

from seqdance.errors import InputError
from seqdance.tokenizer import AMINO_ACIDS

ESTIMATORS: tuple[str, ...] = ("linear", "ridge")
#: Penalties tried by the ridge probe (on standardised features).
RIDGE_ALPHAS = np.logspace(-3, 5, 17)
DEFAULT_PCA = 200
#: The notebook's clustering for probe splits: MMseqs2 at 20% identity, 50% coverage; 20 splits.
PROBE_IDENTITY = 0.2
PROBE_COVERAGE = 0.5
DEFAULT_SPLITS = 20
DEFAULT_TEST_FRACTION = 0.2
LENGTH_BASELINE = "baseline: length"
COMPOSITION_BASELINE = "baseline: composition"
METRIC_COLUMNS: tuple[str, ...] = ("mse", "mae", "pearson", "spearman")


@dataclass(frozen=True)
class ProbeSplit:
    """One train/test partition of the proteins (``train`` is a boolean mask; the rest is test)."""

    name: str
    train: np.ndarray

    @property
    def test(self) -> np.ndarray:
        return ~self.train


def splits_from_columns(table: pd.DataFrame, *, source: str = "labels") -> list[ProbeSplit]:
    """One split per ``split_*`` column (values ``train``/``test``); errors name the column and row."""
    splits = []
    for column in [c for c in table.columns if str(c).startswith("split_")]:
        values = table[column].astype(str).str.strip().str.lower()
        bad = ~values.isin(["train", "test"])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{source}: column {column!r} row {row + 2} ({table['name'].iloc[row]}): "
                             f"{table[column].iloc[row]!r} is not 'train' or 'test'")
        train = (values == "train").to_numpy()
        check_split(ProbeSplit(str(column), train), source)
        splits.append(ProbeSplit(str(column), train))
    return splits


def check_split(split: ProbeSplit, source: str = "labels") -> None:
    """A split needs at least two training and one test protein."""
    if split.test.sum() == 0:
        raise InputError(f"{source}: split {split.name!r} has no test proteins")
    if split.train.sum() < 2:
        raise InputError(f"{source}: split {split.name!r} has fewer than two training proteins")


def splits_by_clustering(
    names: Sequence[str],
    sequences: Sequence[str],
    *,
    n_splits: int = DEFAULT_SPLITS,
    identity: float = PROBE_IDENTITY,
    coverage: float = PROBE_COVERAGE,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    method: str = "python",
    threads: int = 1,
) -> tuple[list[ProbeSplit], pd.DataFrame]:
    """``n_splits`` cluster-disjoint splits (seeds ``seed``..``seed+n_splits-1``) and the cluster table."""
    from seqdance.store.split import assign_split, cluster_sequences

    if n_splits < 1:
        raise InputError(f"need at least one split, got {n_splits}")
    clusters = cluster_sequences(list(names), list(sequences), identity=identity, coverage=coverage, method=method,
                                 threads=threads)
    if clusters["cluster"].nunique() < 2:
        raise InputError(f"all {len(names)} sequences fall into one cluster at {identity:.0%} identity: no "
                         "homology-free test split exists; give split_* columns or lower the threshold")
    splits = []
    for k in range(n_splits):
        labels = assign_split(clusters, test_fraction=test_fraction, seed=seed + k)
        split = ProbeSplit(f"cluster_seed{seed + k}", (labels == "train").to_numpy())
        check_split(split, "clustered split")
        splits.append(split)
    return splits, clusters


# --- baseline features --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelScreen:
    """Which splits can probe a label: those whose training proteins vary in it and whose test proteins (at
    least three: two points always correlate perfectly) do too — a constant test set leaves the correlations
    undefined, a constant training set teaches nothing. ``reason`` says why the label is left out altogether
    (None: it is probed on ``usable``) and ``note`` which splits were dropped."""

    label: str
    usable: list[ProbeSplit]
    reason: str | None
    note: str | None


#: Fewest test proteins a split needs for a correlation that means something (two always give ±1).
MIN_TEST_PROTEINS = 3


def screen_label(label: str, values: np.ndarray, splits: Sequence[ProbeSplit]) -> LabelScreen:
    """Check one label against the splits before anything is fitted (see :class:`LabelScreen`)."""
    y = np.asarray(values, dtype=np.float64)
    distinct, counts = np.unique(y, return_counts=True)
    if len(distinct) < 2:
        return LabelScreen(label, [], f"{label} is {distinct[0]:g} for every protein: nothing to predict", None)

    def varies(mask: np.ndarray, least: int) -> bool:
        part = y[mask]
        return part.size >= least and bool(np.ptp(part) > 0)

    usable = [split for split in splits if varies(split.test, MIN_TEST_PROTEINS) and varies(split.train, 2)]
    common = distinct[int(np.argmax(counts))]
    share = f"{int(counts.max())} of {len(y)} proteins have {label} = {common:g}"
    dropped = len(splits) - len(usable)
    why = (f"their test proteins (at least {MIN_TEST_PROTEINS} needed) or training proteins all share one value")
    if not usable:
        return LabelScreen(label, [], f"{share}, and in every split {why}: correlations are undefined and there is "
                           "nothing to learn", None)
    note = f"{label}: {dropped} of {len(splits)} splits left out, {why} ({share})" if dropped else None
    return LabelScreen(label, usable, None, note)


def length_features(sequences: Sequence[str]) -> np.ndarray:
    """(n, 1) number of residues (chains together)."""
    return np.array([[len(s.replace(":", ""))] for s in sequences], dtype=np.float64)


def composition_features(sequences: Sequence[str]) -> np.ndarray:
    """(n, 20) fraction of each standard amino acid (others count towards the length only)."""
    out = np.zeros((len(sequences), len(AMINO_ACIDS)))
    lookup = {a: k for k, a in enumerate(AMINO_ACIDS)}
    for row, seq in enumerate(sequences):
        residues = seq.replace(":", "").upper()
        codes = np.array([lookup.get(a, -1) for a in residues])
        counts = np.bincount(codes[codes >= 0], minlength=len(AMINO_ACIDS))
        out[row] = counts / max(1, len(residues))
    return out


# --- fitting --------------------------------------------------------------------------------------------------

def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, MAE, Pearson r and Spearman ρ of test predictions (r, ρ NaN when either side is constant)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    err = y_pred - y_true
    out = {"mse": float(np.mean(err**2)), "mae": float(np.mean(np.abs(err)))}
    defined = len(y_true) >= 2 and np.ptp(y_true) > 0 and np.ptp(y_pred) > 0
    out["pearson"] = float(pearsonr(y_true, y_pred).statistic) if defined else math.nan
    out["spearman"] = float(spearmanr(y_true, y_pred).statistic) if defined else math.nan
    return out


def fit_predict(
    features: np.ndarray, target: np.ndarray, train: np.ndarray, *, estimator: str = "linear",
    pca: int | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Fit on the training rows, predict the test rows; returns (predictions, details: pca components, alpha)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression, RidgeCV
    from sklearn.preprocessing import StandardScaler

    if estimator not in ESTIMATORS:
        raise InputError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    x_train, x_test = features[train], features[~train]
    y_train = target[train]
    details: dict[str, float] = {"pca_components": math.nan, "alpha": math.nan}
    if pca:
        components = int(min(pca, x_train.shape[0] - 1, x_train.shape[1]))
        reducer = PCA(n_components=components, random_state=0).fit(x_train)
        x_train, x_test = reducer.transform(x_train), reducer.transform(x_test)
        details["pca_components"] = components
    if estimator == "linear":
        model = LinearRegression().fit(x_train, y_train)
        return model.predict(x_test), details
    scaler = StandardScaler().fit(x_train)
    ridge = RidgeCV(alphas=RIDGE_ALPHAS).fit(scaler.transform(x_train), y_train)
    details["alpha"] = float(ridge.alpha_)
    return ridge.predict(scaler.transform(x_test)), details


def run_probe(
    feature_sets: Mapping[str, np.ndarray],
    labels: Mapping[str, np.ndarray],
    splits: Sequence[ProbeSplit],
    *,
    names: Sequence[str],
    estimators: Sequence[str] = ESTIMATORS,
    pca: int | None = DEFAULT_PCA,
    baseline_sets: Sequence[str] = (LENGTH_BASELINE, COMPOSITION_BASELINE),
    label_splits: Mapping[str, Sequence[ProbeSplit]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit every (label, feature set, estimator, split); returns (per-split metrics, test predictions).

    ``feature_sets``: name -> (n, d) (models' embeddings and baselines alike); PCA applies only to sets not
    listed in ``baseline_sets`` (the baselines are small already). ``label_splits``: the splits each label is
    probed on (:func:`screen_label`), else ``splits`` for every label.
    """
    names = list(names)
    metric_rows: list[dict[str, object]] = []
    prediction_parts: list[pd.DataFrame] = []
    for label, target in labels.items():
        y = np.asarray(target, dtype=np.float64)
        for set_name, features in feature_sets.items():
            x = np.asarray(features, dtype=np.float64)
            for estimator in estimators:
                for split in (splits if label_splits is None else label_splits[label]):
                    reduce = None if set_name in baseline_sets else pca
                    predicted, details = fit_predict(x, y, split.train, estimator=estimator, pca=reduce)
                    metrics = regression_metrics(y[split.test], predicted)
                    metric_rows.append({
                        "label": label, "features": set_name, "estimator": estimator, "split": split.name,
                        "n_train": int(split.train.sum()), "n_test": int(split.test.sum()), **metrics, **details,
                    })
                    test_names = [n for n, t in zip(names, split.test) if t]
                    prediction_parts.append(pd.DataFrame({
                        "label": label, "features": set_name, "estimator": estimator, "split": split.name,
                        "name": test_names, "true": y[split.test], "predicted": predicted,
                    }))
    predictions = pd.concat(prediction_parts, ignore_index=True) if prediction_parts else pd.DataFrame()
    return pd.DataFrame(metric_rows), predictions


def summarise_probe(per_split: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over splits of every metric, per (label, features, estimator)."""
    keys = ["label", "features", "estimator"]
    grouped = per_split.groupby(keys, sort=False)
    out = grouped.size().rename("n_splits").reset_index()
    for metric in METRIC_COLUMNS:
        out[f"{metric}_mean"] = grouped[metric].mean().to_numpy()
        out[f"{metric}_sd"] = grouped[metric].std(ddof=1).to_numpy()
    return out
