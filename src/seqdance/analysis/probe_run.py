"""The probe as a job: read a label table, embed with each model (cached), fit, write tables and figures.

Label table (CSV): ``name``, ``sequence`` (chains joined by ':'), one or more numeric label columns, and
optionally ``split_*`` columns holding ``train``/``test``; ``info_*`` columns are ignored. Every problem is reported as
one line naming the file, column and row: missing columns, duplicate names, empty or non-numeric labels, unknown label
columns, sequences the tokenizer rejects, split values other than train/test, a split without test proteins.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seqdance.analysis.probe import (
    COMPOSITION_BASELINE,
    DEFAULT_PCA,
    ESTIMATORS,
    LENGTH_BASELINE,
    ProbeSplit,
    composition_features,
    length_features,
    run_probe,
    screen_label,
    splits_by_clustering,
    splits_from_columns,
    summarise_probe,
)
from seqdance.errors import InputError
from seqdance.inference.embeddings import NOTEBOOK_POOLING, cached_embeddings
from seqdance.io_utils import atomic_path, markdown_table, save_figure
from seqdance.tokenizer import SequenceError, encode

#: Columns with this prefix are carried along (e.g. the source of each protein) and never probed.
INFO_PREFIX = "info_"


@dataclass
class LabelTable:
    """Proteins, their sequences, numeric labels and the splits given in the file (if any)."""

    path: str
    names: list[str]
    sequences: list[str]
    labels: dict[str, np.ndarray]
    splits: list[ProbeSplit] = field(default_factory=list)


def read_label_table(path: str | os.PathLike[str], label_columns: Sequence[str] | None = None) -> LabelTable:
    """Read and validate a label CSV (see the module docstring); ``label_columns`` selects labels (default: all)."""
    source = str(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(f"label file not found: {source}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{source}: not a readable CSV ({str(exc).strip().splitlines()[0]})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ("name", "sequence") if c not in table.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)} (a label table needs name, sequence and "
                         "numeric label columns)")
    if table.empty:
        raise InputError(f"{source}: no rows")
    table["name"] = table["name"].str.strip()
    empty = table["name"] == ""
    if empty.any():
        raise InputError(f"{source}: row {int(np.flatnonzero(empty.to_numpy())[0]) + 2} has no name")
    duplicated = table["name"][table["name"].duplicated()]
    if len(duplicated):
        raise InputError(f"{source}: duplicate name(s) {', '.join(sorted(set(duplicated))[:5])}")
    sequences = [s.strip() for s in table["sequence"]]
    for row, (name, seq) in enumerate(zip(table["name"], sequences)):
        if not seq:
            raise InputError(f"{source}: row {row + 2} ({name}) has no sequence")
        try:
            encode(seq, name)
        except SequenceError as exc:
            raise InputError(f"{source}: row {row + 2}: {exc}") from None
    candidates = [c for c in table.columns
                  if c not in ("name", "sequence") and not c.startswith(("split_", INFO_PREFIX))]
    if label_columns:
        unknown = [c for c in label_columns if c not in candidates]
        if unknown:
            raise InputError(f"{source}: unknown label column(s) {', '.join(unknown)} (label columns in the file: "
                             f"{', '.join(candidates) or 'none'})")
        chosen = list(label_columns)
    else:
        chosen = candidates
    if not chosen:
        raise InputError(f"{source}: no label column besides name, sequence and split_* columns")
    labels: dict[str, np.ndarray] = {}
    for column in chosen:
        text = table[column].str.strip()
        blank = text == ""
        if blank.any():
            row = int(np.flatnonzero(blank.to_numpy())[0])
            raise InputError(f"{source}: label {column!r} is missing at row {row + 2} ({table['name'].iloc[row]}); "
                             "every protein needs every label (drop the row or the column)")
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"{source}: label {column!r} at row {row + 2} ({table['name'].iloc[row]}) is "
                             f"{table[column].iloc[row]!r}, not a finite number")
        labels[column] = values
    splits = splits_from_columns(table, source=source)
    return LabelTable(source, list(table["name"]), sequences, labels, splits)


@dataclass
class ProbeResult:
    per_split: pd.DataFrame
    summary: pd.DataFrame
    predictions: pd.DataFrame
    embedding_stats: pd.DataFrame  # model, fingerprint, computed, cached, windowed
    split_source: str
    #: labels left out and splits dropped per label, each one sentence saying why (screen_label)
    notes: list[str] = field(default_factory=list)


def probe_models(
    models: Sequence[tuple[str, object]],
    table: LabelTable,
    *,
    pooling: str = NOTEBOOK_POOLING,
    pca: int | None = DEFAULT_PCA,
    estimators: Sequence[str] = ESTIMATORS,
    splits: Sequence[ProbeSplit] | None = None,
    n_splits: int = 20,
    identity: float = 0.2,
    coverage: float = 0.5,
    test_fraction: float = 0.2,
    seed: int = 0,
    cluster_method: str = "python",
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> ProbeResult:
    """Probe every label with each model's pooled embeddings and both baselines on the same splits.

    ``models``: (display name, loaded model) pairs. Splits: ``splits`` if given, else the table's ``split_*``
    columns, else ``n_splits`` clustered splits.
    """
    if splits is None:
        splits = table.splits
    split_source = "split_* columns"
    if not splits:
        splits, clusters = splits_by_clustering(table.names, table.sequences, n_splits=n_splits, identity=identity,
                                                coverage=coverage, test_fraction=test_fraction, seed=seed,
                                                method=cluster_method)
        split_source = (f"{len(splits)} clustered splits ({identity:.0%} identity, {coverage:.0%} coverage, "
                        f"clusters: {clusters.attrs.get('method', cluster_method)})")
    names = [n for n, _ in models]
    if len(set(names)) != len(names):
        raise InputError(f"model names must be distinct, got {names}")
    screens = [screen_label(label, values, splits) for label, values in table.labels.items()]
    notes = [f"{s.label} left out: {s.reason}" for s in screens if s.reason] + [s.note for s in screens if s.note]
    kept = {s.label: s.usable for s in screens if s.reason is None}
    if not kept:
        raise InputError(f"{table.path}: no label can be probed: " + "; ".join(s.reason or "" for s in screens))
    feature_sets: dict[str, np.ndarray] = {}
    stats = []
    for name, model in models:
        pooled = cached_embeddings(model, table.sequences, pooling=pooling, cache_dir=cache_dir, ids=table.names,
                                   progress=progress, description=name)
        feature_sets[name] = pooled.values
        stats.append({"model": name, "fingerprint": pooled.fingerprint, "computed": pooled.n_computed,
                      "cached": pooled.n_cached, "windowed": pooled.n_windowed})
    feature_sets[LENGTH_BASELINE] = length_features(table.sequences)
    feature_sets[COMPOSITION_BASELINE] = composition_features(table.sequences)
    per_split, predictions = run_probe(feature_sets, {k: table.labels[k] for k in kept}, splits, names=table.names,
                                       estimators=estimators, pca=pca, label_splits=kept)
    return ProbeResult(per_split, summarise_probe(per_split), predictions, pd.DataFrame(stats), split_source,
                       notes)


# --- report ---------------------------------------------------------------------------------------------------

def _markdown(frame: pd.DataFrame) -> str:
    return markdown_table(frame)


def summary_markdown(result: ProbeResult, title: str = "Embedding probe") -> str:
    """Mean ± sd over splits per label, feature set and estimator, as Markdown."""
    lines = [f"# {title}", "", f"Splits: {result.split_source}.", ""]
    if result.notes:
        lines += ["Left out:", "", *[f"* {note}" for note in result.notes], ""]
    for label, frame in result.summary.groupby("label", sort=False):
        lines += [f"## {label}", ""]
        shown = pd.DataFrame({
            "features": frame["features"], "estimator": frame["estimator"], "splits": frame["n_splits"],
            **{m: [_pm(a, b) for a, b in zip(frame[f"{m}_mean"], frame[f"{m}_sd"])]
               for m in ("mae", "mse", "pearson", "spearman")},
        })
        lines += [_markdown(shown), ""]
    lines += ["## Embeddings", "", _markdown(result.embedding_stats), ""]
    return "\n".join(lines)


def _pm(mean: float, sd: float) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.4g} ± {sd:.2g}" if np.isfinite(sd) else f"{mean:.4g}"


#: Most scatter panels side by side: label blocks (one panel per feature set) wrap onto new rows beyond this.
SCATTER_PANELS_PER_ROW = 6
SCATTER_PANEL_INCHES = 2.5


def plot_scatter(result: ProbeResult, path: Path, estimator: str = "linear") -> Path:
    """Predicted vs true for each label and feature set: one block of square panels per label (one panel per
    feature set, same limits in x and y, identity line), blocks wrapped into rows; each point is one protein,
    its prediction averaged over the splits that had it in test."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred = result.predictions[result.predictions["estimator"] == estimator]
    labels = list(dict.fromkeys(pred["label"]))
    sets = list(dict.fromkeys(pred["features"]))
    per_row = max(1, SCATTER_PANELS_PER_ROW // max(1, len(sets)))
    rows = -(-len(labels) // per_row)
    cols = min(per_row, len(labels))
    fig = plt.figure(figsize=(cols * len(sets) * SCATTER_PANEL_INCHES + 0.3 * cols,
                              rows * (SCATTER_PANEL_INCHES + 0.75) + 0.5), layout="constrained")
    blocks = np.atleast_1d(fig.subfigures(rows, cols, squeeze=False)).reshape(rows, cols)
    for block in blocks.flat[len(labels):]:
        block.set_visible(False)
    mean_pred = pred.groupby(["label", "features", "name"], sort=False).agg(true=("true", "first"),
                                                                            predicted=("predicted", "mean"))
    for block, label in zip(blocks.flat, labels):
        part = mean_pred.loc[label]
        lo, hi = float(np.nanmin(part.to_numpy())), float(np.nanmax(part.to_numpy()))
        pad = 0.05 * (hi - lo) if hi > lo else 0.5 * max(abs(hi), 1e-3)
        lo, hi = lo - pad, hi + pad
        axes = block.subplots(1, len(sets), squeeze=False)[0]
        block.suptitle(label, fontsize=11, fontweight="bold")
        for k, (ax, set_name) in enumerate(zip(axes, sets)):
            points = part.loc[set_name] if set_name in part.index.get_level_values(0) else part.iloc[:0]
            ax.scatter(points["true"], points["predicted"], s=9, alpha=0.5, color="#1f77b4", linewidths=0)
            ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
            ax.set_aspect("equal", adjustable="box")
            row = result.summary[(result.summary["label"] == label) & (result.summary["features"] == set_name)
                                 & (result.summary["estimator"] == estimator)]
            r_mean = float(row["pearson_mean"].iloc[0]) if len(row) else float("nan")
            mae = float(row["mae_mean"].iloc[0]) if len(row) else float("nan")
            ax.set_title(set_name, fontsize=9)
            ax.text(0.03, 0.97, f"r = {r_mean:.2f}\nMAE = {mae:.3g}", transform=ax.transAxes, ha="left", va="top",
                    fontsize=8, bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none",
                                      "alpha": 0.8})
            ax.set_xlabel("true", fontsize=9)
            if k == 0:
                ax.set_ylabel("predicted", fontsize=9)
            ax.tick_params(labelsize=8)
            ax.locator_params(nbins=4)
    fig.suptitle(f"Test predictions of the {estimator} probe (each point: a protein, its prediction averaged over "
                 "the splits that tested it; r, MAE: mean over splits)", fontsize=10)
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_bars(result: ProbeResult, path: Path, metric: str = "mae") -> Path:
    """Mean ± sd over splits of one metric, per label, feature set and estimator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result.summary
    labels = list(dict.fromkeys(summary["label"]))
    n_cols = min(3, len(labels))
    n_rows = -(-len(labels) // n_cols)
    bars = summary["features"].nunique() * summary["estimator"].nunique()
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * max(3.5, 0.45 * bars + 1.5), 3.6 * n_rows),
                             squeeze=False)
    for ax in axes.flat[len(labels):]:
        ax.set_visible(False)
    for ax, label in zip(axes.flat, labels):
        part = summary[summary["label"] == label]
        sets = list(dict.fromkeys(part["features"]))
        estimators = list(dict.fromkeys(part["estimator"]))
        width = 0.8 / max(1, len(estimators))
        x = np.arange(len(sets))
        for k, estimator in enumerate(estimators):
            rows = part[part["estimator"] == estimator].set_index("features").reindex(sets)
            mean, sd = rows[f"{metric}_mean"].to_numpy(float), rows[f"{metric}_sd"].to_numpy(float)
            # an error (MAE, MSE) is never negative: the lower bar stops at 0
            lower = np.minimum(sd, mean) if metric in ("mae", "mse") else sd
            ax.bar(x + k * width, mean, width, yerr=np.vstack([lower, sd]), capsize=2, label=estimator)
        ax.set_xticks(x + width * (len(estimators) - 1) / 2, sets, rotation=30, ha="right", fontsize=7)
        ax.set_title(label, fontsize=9)
        ax.set_ylabel(f"test {metric.upper()} (mean ± sd over splits"
                      + (", bars cut at 0)" if metric in ("mae", "mse") else ")"), fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def write_probe_report(result: ProbeResult, outdir: str | os.PathLike[str]) -> dict[str, Path]:
    """per_split.csv, summary.csv, summary.md, predictions.csv, scatter.png and bars.png in ``outdir``."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for key, frame in (("per_split", result.per_split), ("summary", result.summary),
                       ("predictions", result.predictions)):
        target = out / f"{key}.csv"
        with atomic_path(target) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
        paths[key] = target
    target = out / "summary.md"
    with atomic_path(target) as tmp:
        tmp.write_text(summary_markdown(result))
    paths["markdown"] = target
    paths["scatter"] = plot_scatter(result, out / "scatter.png")
    paths["bars"] = plot_bars(result, out / "bars.png")
    return paths
