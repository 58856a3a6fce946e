"""The paper's comparison of zero-shot predictors on ProteinGym assays, in one call: per-assay paired differences of a
ProteinGym metric between score columns, a Wilcoxon signed-rank test per category, and per-category means.

Scores come from folders of per-assay score files in ProteinGym's layout (``<DMS_id>.csv`` with ``mutant`` and score
columns): the primary folder (e.g. a ``benchmark-dms`` run's ``proteingym/``, which also holds ``DMS_score`` and
``DMS_score_bin``) and any other model's folder (e.g. ProteinGym's published zero-shot scores), merged on ``mutant``
as ProteinGym's ``merge.py`` merges them (de-duplicated, averaged per mutant). Every mutant of an assay must be
scored by every model (ProteinGym's rule); a missing score is an error naming the count. A **combination** of models
is the mean of their per-assay standardised scores (ProteinGym's ``standardization``: (x - mean) / sd).

The metric of each model on each assay is ProteinGym's (:func:`seqdance.scoring.proteingym_performance.
assay_performance`). For each model other than the baseline, the per-assay difference to the baseline is tested with
a two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, zero differences dropped) over all assays and within
each category of the reference file's ``taxon``, ``coarse_selection_type``, ``MSA_Neff_L_category`` and of any
user grouping column; assays whose protein is closer than a threshold to the training set can be left out
(:mod:`seqdance.scoring.training_overlap`). See docs/design.md#dms-comparison.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seqdance.errors import InputError
from seqdance.io_utils import atomic_path, read_csv_table
from seqdance.scoring.proteingym_performance import METRICS, assay_performance, capitalise_category
from seqdance.scoring.proteingym_reference import ReferenceFile
from seqdance.scoring.training_overlap import IDENTITY_COLUMN
from seqdance.wording import counted

#: The reference file's grouping columns, and how tables call them.
CATEGORY_COLUMNS: dict[str, str] = {"taxon": "Taxon", "coarse_selection_type": "Selection Type",
                                    "MSA_Neff_L_category": "MSA_Neff_L_category"}
MSA_ORDER = {"Low": 0, "Medium": 1, "High": 2}


@dataclass(frozen=True)
class ScoreSource:
    """One model of the comparison: a column of the primary score files (``folder`` None) or of another folder."""

    name: str
    column: str
    folder: Path | None = None
    directionality: int = 1

    @classmethod
    def parse(cls, text: str) -> ScoreSource:
        """``NAME=COLUMN`` (primary files) or ``NAME=DIR:COLUMN`` or ``NAME=DIR:COLUMN:-1`` (lower = fitter)."""
        name, sep, rest = text.partition("=")
        if not sep or not name.strip() or not rest.strip():
            raise InputError(f"--model {text!r}: expected NAME=COLUMN or NAME=DIR:COLUMN[:-1]")
        parts = rest.split(":")
        if len(parts) == 1:
            return cls(name.strip(), parts[0])
        direction = 1
        if len(parts) >= 3 and parts[-1] in ("1", "-1"):
            direction = int(parts[-1])
            parts = parts[:-1]
        folder, column = ":".join(parts[:-1]), parts[-1]
        if not folder or not column:
            raise InputError(f"--model {text!r}: expected NAME=DIR:COLUMN[:-1]")
        return cls(name.strip(), column, Path(folder), direction)


@dataclass(frozen=True)
class Combination:
    """A model made of others: the mean of their per-assay standardised scores."""

    name: str
    members: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Combination:
        """``NAME=A+B[+C]`` over model names."""
        name, sep, rest = text.partition("=")
        members = tuple(m.strip() for m in rest.split("+") if m.strip())
        if not sep or not name.strip() or len(members) < 2:
            raise InputError(f"--combine {text!r}: expected NAME=MODEL+MODEL[+MODEL]")
        return cls(name.strip(), members)


@dataclass
class Comparison:
    """The comparison's tables: per assay, per category and model, per category and paired comparison."""

    per_assay: pd.DataFrame
    means: pd.DataFrame
    differences: pd.DataFrame
    models: list[str]
    baseline: str
    metric: str
    notes: list[str] = field(default_factory=list)


def _standardise(values: pd.Series) -> pd.Series:
    from seqdance.scoring.proteingym_package import performance_module

    return performance_module().standardization(values)


def assay_scores(dms_id: str, primary: Path, sources: Sequence[ScoreSource], combinations: Sequence[Combination]
                 ) -> pd.DataFrame | None:
    """One assay's merged score table (mutant, DMS_score, DMS_score_bin and one column per model, higher = fitter);
    None when a model's folder has no file for it."""
    path = primary / f"{dms_id}.csv"
    table = read_csv_table(path, dtype={"mutant": str})
    for required in ("mutant", "DMS_score"):
        if required not in table.columns:
            raise InputError(f"{path}: no {required} column (a ProteinGym score file with the assay's measurements)")
    keep = [c for c in ("mutant", "DMS_score", "DMS_score_bin") if c in table.columns]
    merged = table[keep].copy()
    for source in sources:
        if source.folder is None:
            if source.column not in table.columns:
                raise InputError(f"{path}: no score column {source.column!r} for {source.name}")
            merged[source.name] = source.directionality * pd.to_numeric(table[source.column], errors="coerce")
            continue
        other = source.folder / f"{dms_id}.csv"
        if not other.is_file():
            return None
        scores = read_csv_table(other, dtype={"mutant": str})
        if "mutant" not in scores.columns or source.column not in scores.columns:
            raise InputError(f"{other}: needs a 'mutant' and a {source.column!r} column for {source.name}")
        scores = scores[["mutant", source.column]].drop_duplicates()
        scores[source.column] = pd.to_numeric(scores[source.column], errors="coerce")
        scores = scores.groupby("mutant").mean().reset_index()  # as ProteinGym's merge.py
        values = merged[["mutant"]].merge(scores, on="mutant", how="left")[source.column]
        unscored = int(values.isna().sum())
        if unscored:
            raise InputError(f"{other}: {source.name} has no score for {unscored} of the {len(merged)} mutants of "
                             f"{dms_id}; ProteinGym requires every mutant scored")
        merged[source.name] = source.directionality * values.to_numpy()
    for combination in combinations:
        merged[combination.name] = sum(_standardise(merged[m]) for m in combination.members) / len(combination.members)
    return merged


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value (zero differences dropped); NaN with no non-zero difference."""
    from scipy.stats import wilcoxon

    values = differences[np.isfinite(differences)]
    if not np.any(values != 0):
        return float("nan")
    return float(wilcoxon(values, zero_method="wilcox", alternative="two-sided").pvalue)


def _mean_se(values: np.ndarray) -> tuple[int, float, float]:
    values = values[np.isfinite(values)]
    n = int(values.size)
    mean = float(values.mean()) if n else float("nan")
    se = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return n, mean, se


def compare_models(
    primary: str | os.PathLike[str],
    reference: ReferenceFile,
    sources: Sequence[ScoreSource],
    *,
    combinations: Sequence[Combination] = (),
    baseline: str | None = None,
    metric: str = "Spearman",
    groups: pd.DataFrame | None = None,
    group_columns: Sequence[str] = (),
    identity: pd.DataFrame | None = None,
    max_identity: float | None = None,
    progress: Callable[[Sequence[str]], Sequence[str]] | None = None,
) -> Comparison:
    """Compare the models on every assay of ``reference`` that has a primary score file.

    ``groups``: a table with ``DMS_id`` and user grouping columns (else ``group_columns`` are read from the reference
    file); ``identity``: :func:`~seqdance.scoring.training_overlap.training_identity` of the assays; with
    ``max_identity`` the assays above it are left out of the paired tests and means (kept, marked, in the table).
    """
    primary = Path(primary)
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    names = [s.name for s in sources] + [c.name for c in combinations]
    if len(set(names)) != len(names):
        raise InputError(f"model names must differ: {names}")
    if len(names) < 2:
        raise InputError("compare needs two or more models (--model, --combine)")
    for combination in combinations:
        unknown = [m for m in combination.members if m not in {s.name for s in sources}]
        if unknown:
            raise InputError(f"--combine {combination.name}: unknown model(s) {unknown}; models: {names}")
    baseline = baseline or names[0]
    if baseline not in names:
        raise InputError(f"--baseline {baseline!r} is not a model of the comparison ({', '.join(names)})")
    table = reference.table.copy()
    absent = [c for c in CATEGORY_COLUMNS if c not in table.columns]
    if absent:
        raise InputError(f"{reference.path}: lacks {', '.join(absent)} (ProteinGym's reference columns)")
    groups_by_id: dict[str, Mapping] = {}
    if group_columns:
        source = groups if groups is not None else table
        where = "the groups table" if groups is not None else str(reference.path)
        if "DMS_id" not in source.columns or any(c not in source.columns for c in group_columns):
            raise InputError(f"{where}: needs DMS_id and {', '.join(group_columns)} (columns: {list(source.columns)})")
        groups_by_id = {str(r["DMS_id"]): r for _, r in source.iterrows()}
    ids = [str(d) for d in table["DMS_id"] if (primary / f"{d}.csv").is_file()]
    if not ids:
        raise InputError(f"{primary}: no score file <DMS_id>.csv of a DMS_id of {reference.path.name}")
    notes: list[str] = []
    rows, lacking = [], []
    by_id = reference.rows()
    for dms_id in (progress(ids) if progress else ids):
        scores = assay_scores(dms_id, primary, sources, combinations)
        if scores is None:
            lacking.append(dms_id)
            continue
        found = assay_performance(scores, names, where=dms_id)[metric]
        row = by_id[dms_id]
        record = {"DMS_id": dms_id, "n_mutants": len(scores), "Taxon": row["taxon"],
                  "Selection Type": row["coarse_selection_type"],
                  "MSA_Neff_L_category": capitalise_category(row["MSA_Neff_L_category"])}
        for column in group_columns:
            value = groups_by_id.get(dms_id, {}).get(column, np.nan) if groups_by_id else np.nan
            record[column] = "unknown" if pd.isna(value) else str(value)
        record.update({name: found[name] for name in names})
        rows.append(record)
    if lacking:
        notes.append(f"{counted(len(lacking), 'assay')} left out: another model's folder has no score file for them "
                     f"({', '.join(lacking[:8])}{', ...' if len(lacking) > 8 else ''})")
    if not rows:
        raise InputError("no assay is scored by every model")
    per_assay = pd.DataFrame(rows)
    per_assay["included"] = True
    if identity is not None:
        by_assay = dict(zip(identity["assay"], identity[IDENTITY_COLUMN]))
        per_assay[IDENTITY_COLUMN] = [by_assay.get(d, np.nan) for d in per_assay["DMS_id"]]
        if max_identity is not None:
            above = per_assay[IDENTITY_COLUMN].fillna(-1.0) > max_identity
            per_assay["included"] = ~above
            if above.any():
                notes.append(f"{counted(int(above.sum()), 'assay')} left out: identity to the training set above "
                             f"{max_identity:g} ({', '.join(per_assay.loc[above, 'DMS_id'][:8])})")
    others = [n for n in names if n != baseline]
    for name in others:
        per_assay[f"{name} - {baseline}"] = per_assay[name] - per_assay[baseline]
    used = per_assay[per_assay["included"]]
    groupings = [("all", None), *[(label, label) for label in CATEGORY_COLUMNS.values()],
                 *[(c, c) for c in group_columns]]
    means, differences = [], []
    for grouping, column in groupings:
        parts = [("all", used)] if column is None else [(str(k), g) for k, g in used.groupby(column, sort=True)]
        if column == "MSA_Neff_L_category":  # ProteinGym's order of depths
            parts.sort(key=lambda part: MSA_ORDER.get(part[0], len(MSA_ORDER)))
        for category, part in parts:
            for name in names:
                n, mean, se = _mean_se(part[name].to_numpy(dtype=np.float64))
                means.append({"grouping": grouping, "category": category, "model": name, "n_assays": n,
                              f"mean_{metric}": mean, "se": se})
            for name in others:
                diff = part[f"{name} - {baseline}"].to_numpy(dtype=np.float64)
                diff = diff[np.isfinite(diff)]
                n, mean, se = _mean_se(diff)
                differences.append({
                    "grouping": grouping, "category": category, "comparison": f"{name} - {baseline}", "n_assays": n,
                    "mean_difference": mean, "se": se, "median_difference": float(np.median(diff)) if n else np.nan,
                    "n_better": int((diff > 0).sum()), "n_worse": int((diff < 0).sum()),
                    "wilcoxon_p": wilcoxon_p(diff),
                })
    return Comparison(per_assay, pd.DataFrame(means), pd.DataFrame(differences), names, baseline, metric, notes)


def plot_comparison(comparison: Comparison, path: str | os.PathLike[str]) -> Path:
    """Per-category means (± standard error) of every model, one panel per grouping; each category is labelled with
    its number of assays and the Wilcoxon p-value of the first comparison to the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seqdance.io_utils import save_figure

    means, metric = comparison.means, comparison.metric
    groupings = list(dict.fromkeys(means["grouping"]))
    first = f"{comparison.models[1] if comparison.models[0] == comparison.baseline else comparison.models[0]}" \
            f" - {comparison.baseline}"
    widest = max(means[means["grouping"] == g]["category"].nunique() for g in groupings)
    fig, axes = plt.subplots(len(groupings), 1, figsize=(max(6.0, 0.5 * len(comparison.models) * widest + 1.5),
                                                         2.8 * len(groupings)), squeeze=False)
    width = 0.8 / len(comparison.models)
    colours = plt.get_cmap("tab10")
    for ax, grouping in zip(axes[:, 0], groupings):
        part = means[means["grouping"] == grouping]
        categories = list(dict.fromkeys(part["category"]))
        x = np.arange(len(categories))
        for k, model in enumerate(comparison.models):
            rows = part[part["model"] == model].set_index("category").reindex(categories)
            ax.bar(x + (k - (len(comparison.models) - 1) / 2) * width, rows[f"mean_{metric}"], width,
                   yerr=rows["se"].fillna(0.0), capsize=2, color=colours(k % 10), label=model)
        diffs = comparison.differences
        tests = diffs[(diffs["grouping"] == grouping) & (diffs["comparison"] == first)].set_index("category")
        labels = []
        for category in categories:
            n = int(part[(part["category"] == category)]["n_assays"].max())
            p = tests["wilcoxon_p"].get(category, np.nan)
            labels.append(f"{category}\nn={n}" + ("" if not np.isfinite(p) else f", p={p:.2g}"))
        ax.set_xticks(x)
        ax.set_xticklabels(labels, fontsize=8)
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_ylabel(f"mean {metric}")
        ax.set_title(grouping if grouping != "all" else f"all assays (p: Wilcoxon, {first})", fontsize=10)
    axes[0, 0].legend(fontsize=8, ncol=min(4, len(comparison.models)), loc="best")
    fig.tight_layout()
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def write_comparison(comparison: Comparison, out_dir: str | os.PathLike[str], *, figure: bool = True) -> list[Path]:
    """``per_assay.csv``, ``paired_differences.csv``, ``category_means.csv`` (and ``comparison.png``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in (("per_assay.csv", comparison.per_assay), ("paired_differences.csv", comparison.differences),
                        ("category_means.csv", comparison.means)):
        with atomic_path(out / name) as tmp:
            frame.to_csv(tmp, index=False)
        written.append(out / name)
    if figure:
        written.append(plot_comparison(comparison, out / "comparison.png"))
    return written
