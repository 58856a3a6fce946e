"""ProteinGym's zero-shot DMS performance: its five metrics per assay, its aggregation and its tables.

Follows ``proteingym/performance_DMS_benchmarks.py`` of the ``proteingym`` package (version 1.3; see
docs/design.md#proteingym-performance). The metric functions and the bootstrap are ProteinGym's own
(:mod:`seqdance.scoring.proteingym_package`); what that file does only inside ``main()`` is restated here, step by
step, and tested against running that ``main()`` on the same score files:

* per assay and score column: Spearman (``scipy.stats.spearmanr``), AUC against ``DMS_score_bin``
  (``roc_auc_score``; NaN when undefined), MCC of ``DMS_score_bin`` against the scores binarised at their median
  (``score >= median`` is 1), NDCG (``calc_ndcg``, top 10%) and top-10% recall (``calc_toprecall``); with
  ``by_depth`` the same per mutation depth 1, 2, 3, 4, 5+ (MCC keeps the whole assay's median binarisation);
* the DMS-level table: one row per DMS_id (reference-file order), one column per score, ``number_mutants``,
  ``Selection Type``, ``UniProt_ID``, ``MSA_Neff_L_category`` (capitalised), ``Taxon``; every number rounded to 3
  decimals, **before** it is aggregated (as the script does);
* aggregation: mean per (UniProt_ID, Selection Type), mean per selection type, mean over selection types
  (``Average_<Metric>``); breakdowns by MSA depth and taxon (mean per UniProt_ID within the category, then over
  UniProt IDs), by selection type, and with ``by_depth`` by mutation depth; the bootstrap standard error of each
  score's difference to the best one (ProteinGym's function; seeded here: numpy's global generator is seeded for
  the call and restored after it);
* files, where the script writes them: ``<Metric>/DMS_<type>_<Metric>_DMS_level.csv``,
  ``..._Uniprot_level.csv``, ``..._Uniprot_Selection_Type_level.csv`` (substitutions only) and
  ``Summary_performance_DMS_<type>_<Metric>.csv``.

Where the script would fail, this gives NaN instead: a breakdown category with no assay (e.g. no ``Low`` MSA
depth among the assays run) is an empty (NaN) column rather than a ``KeyError``. The script's HTML copies and its
``constants.json`` display names are not written (columns keep the score names; ``Model details`` and
``References`` stay empty, as the script leaves them for a model it does not know).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seqdance.errors import InputError
from seqdance.io_utils import atomic_path
from seqdance.scoring.options import DEFAULT_BOOTSTRAP_SAMPLES

#: ProteinGym's metrics, in the order its script computes (and bootstraps) them.
METRICS: tuple[str, ...] = ("Spearman", "AUC", "MCC", "NDCG", "Top_recall")
#: Mutation-depth groups of ``--performance-by-depth``.
DEPTHS: tuple[str, ...] = ("1", "2", "3", "4", "5+")
#: The DMS-level table's columns after the scores.
INFO_COLUMNS: tuple[str, ...] = ("number_mutants", "Selection Type", "UniProt_ID", "MSA_Neff_L_category", "Taxon")
MSA_CATEGORIES = {"Low": "Low_MSA_depth", "Medium": "Medium_MSA_depth", "High": "High_MSA_depth"}
TAXA = {"Human": "Taxa_Human", "Eukaryote": "Taxa_Other_Eukaryote", "Prokaryote": "Taxa_Prokaryote",
        "Virus": "Taxa_Virus"}
SELECTION_TYPES = ("Activity", "Binding", "Expression", "OrganismalFitness", "Stability")


def summary_columns(metric: str, mutation_type: str = "substitutions") -> list[str]:
    """The Summary table's columns, in the script's order (substitutions always have the Depth columns, empty
    without ``by_depth``)."""
    return ["Model_name", "Model type", f"Average_{metric}", f"Bootstrap_standard_error_{metric}",
            *[f"Function_{s}" for s in SELECTION_TYPES], *MSA_CATEGORIES.values(), *TAXA.values(),
            *([f"Depth_{d}" for d in DEPTHS] if mutation_type != "indels" else []), "Model details", "References"]


def capitalise_category(value: object) -> object:
    """ProteinGym's capitalisation of ``MSA_Neff_L_category`` (first letter upper-cased; non-strings kept)."""
    return value[0].upper() + value[1:] if isinstance(value, str) and value else value


@dataclass(frozen=True)
class AssayInfo:
    """What the aggregation needs of one assay's reference row."""

    dms_id: str
    uniprot_id: str
    selection_type: str
    msa_category: str
    taxon: str

    def as_record(self) -> list[str]:
        return [self.dms_id, self.uniprot_id, self.selection_type, self.msa_category, self.taxon]

    @classmethod
    def from_record(cls, record: Sequence[str]) -> AssayInfo:
        return cls(*(str(v) for v in record))


def mutation_depth_group(mutants: pd.Series) -> pd.Series:
    """ProteinGym's depth group of each mutant: its number of ``:``-joined substitutions, ``5+`` from five."""
    depth = mutants.astype(str).map(lambda m: len(m.split(":")))
    return depth.map(lambda d: "5+" if d >= 5 else str(d))


def check_scored(frame: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    """ProteinGym requires every mutant scored: a missing column, a non-numeric or NaN score is an error naming
    the count."""
    for column in columns:
        if column not in frame.columns:
            raise InputError(f"{where}: no score column {column!r} (columns: {list(frame.columns)})")
        values = pd.to_numeric(frame[column], errors="coerce")
        missing = int(values.isna().sum())
        if missing:
            raise InputError(f"{where}: column {column!r} has no score (NaN or not a number) for {missing} of "
                             f"{len(frame)} mutants; ProteinGym requires every mutant scored")
        if not np.isfinite(values.to_numpy(dtype=np.float64)).all():
            raise InputError(f"{where}: column {column!r} holds an infinite score")


def _metrics_of(pg, y: pd.Series, scores: pd.Series, y_bin: pd.Series | None, predicted_bin: pd.Series
                ) -> dict[str, float]:
    from scipy.stats import spearmanr
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import matthews_corrcoef, roc_auc_score

    out = {"Spearman": float(spearmanr(y, scores)[0]), "NDCG": float(pg.calc_ndcg(y, scores)),
           "Top_recall": float(pg.calc_toprecall(y, scores))}
    # the script turns any failure of these two into NaN; with a DMS_score_bin column the failures are sklearn's
    # ValueError (one class) and, from sklearn 1.6, a NaN with an UndefinedMetricWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            out["AUC"] = float(roc_auc_score(y_true=y_bin, y_score=scores)) if y_bin is not None else np.nan
        except ValueError:
            out["AUC"] = np.nan
        try:
            out["MCC"] = float(matthews_corrcoef(y_true=y_bin, y_pred=predicted_bin)) if y_bin is not None else np.nan
        except ValueError:
            out["MCC"] = np.nan
    return out


def assay_performance(
    scores: pd.DataFrame, score_columns: Sequence[str], *, by_depth: bool = False, where: str = "assay"
) -> dict[str, dict[str, float]]:
    """ProteinGym's five metrics of each score column on one merged score file (mutant, DMS_score,
    DMS_score_bin and the score columns): ``{metric: {column (or column_depth): value}}``, unrounded.

    ``where`` names the assay in errors (a missing column, an unscored mutant).
    """
    from seqdance.scoring.proteingym_package import performance_module

    pg = performance_module()
    if "DMS_score" not in scores.columns:
        raise InputError(f"{where}: no DMS_score column (columns: {list(scores.columns)})")
    check_scored(scores, score_columns, where)
    frame = scores.copy()
    if "mutant" not in frame.columns:  # ProteinGym's rule for indel files
        frame["mutant"] = frame["mutated_sequence"]
    y = pd.to_numeric(frame["DMS_score"], errors="coerce")
    if y.isna().any():
        raise InputError(f"{where}: DMS_score is missing for {int(y.isna().sum())} of {len(frame)} mutants")
    y_bin = frame["DMS_score_bin"] if "DMS_score_bin" in frame.columns else None
    out: dict[str, dict[str, float]] = {metric: {} for metric in METRICS}
    binarised = {}
    for column in score_columns:
        values = pd.to_numeric(frame[column])
        binarised[column] = (values >= values.median()).astype(int)
        for metric, value in _metrics_of(pg, y, values, y_bin, binarised[column]).items():
            out[metric][column] = value
    if by_depth:
        groups = mutation_depth_group(frame["mutant"])
        for column in score_columns:
            values = pd.to_numeric(frame[column])
            for depth in DEPTHS:
                part = (groups == depth).to_numpy()
                if part.any():
                    found = _metrics_of(pg, y[part], values[part], y_bin[part] if y_bin is not None else None,
                                        binarised[column][part])
                else:
                    found = dict.fromkeys(METRICS, np.nan)
                for metric, value in found.items():
                    out[metric][f"{column}_{depth}"] = value
    return out


@dataclass
class AssayPerformance:
    """One assay's unrounded metrics and what the tables record of it."""

    info: AssayInfo
    n_mutants: int
    metrics: dict[str, dict[str, float]]


def dms_level_table(results: Sequence[AssayPerformance], metric: str, score_columns: Sequence[str],
                    *, by_depth: bool = False, rounded: bool = True) -> pd.DataFrame:
    """The DMS-level table of one metric: index ``DMS ID``, the score columns (with ``by_depth`` also every
    ``score_depth`` column), then :data:`INFO_COLUMNS`. ``rounded``: 3 decimals as the script writes and
    aggregates it."""
    columns = [c for s in score_columns for c in ([s, *(f"{s}_{d}" for d in DEPTHS)] if by_depth else [s])]
    rows = {}
    for result in results:
        values = result.metrics[metric]
        rows[result.info.dms_id] = [values.get(c, np.nan) for c in columns]
    numbers = pd.DataFrame.from_dict(rows, orient="index", columns=columns, dtype=np.float64)
    if rounded:
        numbers = numbers.round(3)
    # one block per column, as the script's column-by-column casts leave its frame: pandas' grouped mean of a 2-D
    # block holding NaN turns a lone -0.0 into 0.0, so a shared block would differ from the script's "-0.0"
    table = pd.DataFrame(index=numbers.index)
    for column in columns:
        table[column] = numbers[column].to_numpy(copy=True)
    table["number_mutants"] = [r.n_mutants for r in results]
    table["Selection Type"] = [r.info.selection_type for r in results]
    table["UniProt_ID"] = [r.info.uniprot_id for r in results]
    table["MSA_Neff_L_category"] = [r.info.msa_category for r in results]
    table["Taxon"] = [r.info.taxon for r in results]
    table.index.name = "DMS ID"
    return table


@contextmanager
def seeded_numpy_global(seed: int | None) -> Iterator[None]:
    """Seed numpy's global generator (which ProteinGym's bootstrap draws from, through pandas) and restore its
    state afterwards; ``None`` leaves it alone (the script's behaviour: unseeded)."""
    if seed is None:
        yield
        return
    state = np.random.get_state()  # noqa: NPY002 - ProteinGym draws from the global generator
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


@dataclass
class PerformanceTables:
    """The files of one metric (file name -> table, written with the index where ``indexed``)."""

    metric: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    indexed: dict[str, bool] = field(default_factory=dict)

    def add(self, name: str, table: pd.DataFrame, *, index: bool) -> None:
        self.tables[name] = table
        self.indexed[name] = index


def _lookups(reference: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The script's UniProt lookups over the WHOLE reference file (function: not de-duplicated, as there)."""
    function = reference[["UniProt_ID", "coarse_selection_type"]].copy()
    function.columns = ["UniProt_ID", "Selection Type"]
    neff = reference[["UniProt_ID", "MSA_Neff_L_category"]].drop_duplicates()
    taxon = reference[["UniProt_ID", "taxon"]].drop_duplicates()
    taxon.columns = ["UniProt_ID", "Taxon"]
    return function, neff, taxon


def _breakdown(dms: pd.DataFrame, key: str, keep: Sequence[str], names: Mapping[str, str]) -> pd.DataFrame:
    """Mean per (UniProt_ID, key), then per key; one column per category (NaN for a category with no assay)."""
    per = dms.groupby(["UniProt_ID", key]).mean(numeric_only=True).groupby([key]).mean(numeric_only=True)
    per = per[[c for c in keep if c in per.columns]].transpose() if keep else per.transpose()
    per = per.reindex(columns=list(names))
    per.columns = list(names.values())
    return per


def aggregate(
    dms: pd.DataFrame,
    reference: pd.DataFrame,
    score_columns: Sequence[str],
    metric: str,
    *,
    model_types: Mapping[str, str] | None = None,
    mutation_type: str = "substitutions",
    by_depth: bool = False,
    bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
) -> PerformanceTables:
    """The script's tables of one metric from its (rounded) DMS-level table ``dms`` (as :func:`dms_level_table`
    builds it; indel mode appends an ``Average`` row to it, as the script does).

    ``reference``: the whole reference file (its lookups feed the UniProt-level table); the bootstrap draws from
    numpy's global generator (seed it with :func:`seeded_numpy_global`).
    """
    from seqdance.scoring.proteingym_package import performance_module

    bootstrap = performance_module().compute_bootstrap_standard_error_functional_categories
    indels = mutation_type == "indels"
    by_depth = by_depth and not indels
    stem = f"DMS_{mutation_type}_{metric}"
    out = PerformanceTables(metric)
    depth_columns = [f"{s}_{d}" for s in score_columns for d in DEPTHS] if by_depth else []
    plain = [c for c in dms.columns if c not in depth_columns]
    out.add(f"{stem}_DMS_level.csv", dms[plain], index=True)
    reference = reference.copy()
    reference["MSA_Neff_L_category"] = reference["MSA_Neff_L_category"].map(capitalise_category)
    function_lookup, neff_lookup, taxon_lookup = _lookups(reference)
    if indels:  # the script adds the mean row to its DMS-level frame (after writing it) before grouping
        with warnings.catch_warnings():  # number_mutants becomes float there too (pandas deprecates it quietly)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            dms.loc["Average"] = dms.mean(numeric_only=True)  # in place: a copy would merge the columns' blocks
    uniprot = dms.groupby(["UniProt_ID"]).mean(numeric_only=True)
    uniprot_function = dms.groupby(["UniProt_ID", "Selection Type"]).mean(numeric_only=True)
    if indels:
        uniprot = pd.merge(uniprot, function_lookup, on="UniProt_ID", how="left")
    else:
        uniprot = uniprot.reset_index()
        uniprot = pd.merge(uniprot, neff_lookup, on="UniProt_ID", how="left")
        uniprot = pd.merge(uniprot, taxon_lookup, on="UniProt_ID", how="left")
        uniprot = pd.merge(uniprot, function_lookup, on="UniProt_ID", how="left")
    del uniprot["number_mutants"]
    del uniprot_function["number_mutants"]
    uniprot_average = uniprot.mean(numeric_only=True)
    function_average = uniprot_function.groupby("Selection Type").mean(numeric_only=True).reset_index()
    final = function_average.mean(numeric_only=True)
    averages = final.loc[list(score_columns)]
    if averages.notna().any():
        top = averages.idxmax()
        standard_error = pd.DataFrame(bootstrap(uniprot_function.subtract(uniprot_function[top], axis=0),
                                                number_assay_reshuffle=bootstrap_samples),
                                      columns=[f"Bootstrap_standard_error_{metric}"])
    else:  # the metric is undefined for every score (e.g. one class of DMS_score_bin): no best score to compare to
        standard_error = pd.DataFrame({f"Bootstrap_standard_error_{metric}": np.nan}, index=list(score_columns))
    uniprot.loc["Average"] = uniprot_average
    function_average.loc["Average"] = final
    uniprot = uniprot.round(3)
    function_average = function_average.round(3)
    keep: list[str] = []
    if not indels:
        if by_depth:
            written = [c for c in plain if c != "number_mutants"]
            # the script selects these columns, in the DMS-level table's order, from the UniProt-level table
            out.add(f"{stem}_Uniprot_level.csv", uniprot[written], index=False)
            keep = [c for c in plain if c not in ("number_mutants", "UniProt_ID", "MSA_Neff_L_category", "Taxon")]
            depth_means = {}
            for depth in DEPTHS:
                columns = [f"{s}_{depth}" for s in score_columns]
                means = uniprot_function[columns].mean(numeric_only=True)
                depth_means[f"Depth_{depth}"] = pd.Series(means.to_numpy(), index=list(score_columns))
            function_average = function_average[keep]
        else:
            out.add(f"{stem}_Uniprot_level.csv", uniprot, index=False)
        out.add(f"{stem}_Uniprot_Selection_Type_level.csv", function_average, index=False)
    msa_keep = [c for c in keep if c != "Selection Type"]
    by_msa = _breakdown(dms, "MSA_Neff_L_category", msa_keep, MSA_CATEGORIES)
    by_taxon = _breakdown(dms, "Taxon", msa_keep, TAXA)
    by_function = function_average.drop(labels="Average", axis=0).set_index("Selection Type").transpose()
    by_function.columns = [f"Function_{x}" for x in by_function.columns]
    summary = pd.merge(pd.DataFrame(final, columns=[f"Average_{metric}"]), by_msa, left_index=True, right_index=True,
                       how="inner")
    summary = pd.merge(summary, by_taxon, left_index=True, right_index=True, how="inner")
    summary = pd.merge(summary, by_function, left_index=True, right_index=True, how="inner")
    if by_depth:
        for name, means in depth_means.items():
            summary = pd.merge(summary, means.to_frame(name), left_index=True, right_index=True, how="inner")
    summary = summary.sort_values(by=f"Average_{metric}", ascending=False)
    summary.index.name = "Model_name"
    summary = summary.reset_index()
    summary.index = range(1, len(summary) + 1)
    summary.index.name = "Model_rank"
    summary = pd.merge(summary, standard_error, left_on="Model_name", right_index=True, how="left")
    types = pd.DataFrame.from_dict(dict(model_types or {}), columns=["Model type"], orient="index")
    summary = pd.merge(summary, types, left_on="Model_name", right_index=True, how="left")
    summary = summary.round(3)
    summary = summary.reindex(columns=summary_columns(metric, mutation_type))
    out.add(f"Summary_performance_{stem}.csv", summary, index=True)
    return out


def performance_tables(
    results: Sequence[AssayPerformance],
    reference: pd.DataFrame,
    score_columns: Sequence[str],
    *,
    model_types: Mapping[str, str] | None = None,
    mutation_type: str = "substitutions",
    by_depth: bool = False,
    bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
    seed: int | None = 0,
    progress: bool = False,
) -> dict[str, PerformanceTables]:
    """Every metric's tables (metric -> tables), the bootstrap seeded once before the first metric (as one run of
    the script draws the metrics' resamples from one stream, in :data:`METRICS` order). ``progress``: a bar over
    the metrics (the bootstrap takes most of the time)."""
    if not results:
        raise InputError("no assay with a ProteinGym reference row was evaluated: no ProteinGym tables to write")
    out = {}
    metrics: Sequence[str] = METRICS
    if progress:
        from tqdm.auto import tqdm

        metrics = tqdm(METRICS, desc=f"benchmark-dms ProteinGym tables ({bootstrap_samples:,} bootstrap resamples)",
                       unit="metric")
    with seeded_numpy_global(seed):
        for metric in metrics:
            dms = dms_level_table(results, metric, score_columns, by_depth=by_depth and mutation_type != "indels")
            out[metric] = aggregate(dms, reference, score_columns, metric, model_types=model_types,
                                    mutation_type=mutation_type, by_depth=by_depth,
                                    bootstrap_samples=bootstrap_samples)
    return out


def write_performance(tables: Mapping[str, PerformanceTables], folder: str | Path) -> list[Path]:
    """Write the tables as the script does: ``folder/<Metric>/<file>``, atomically; returns the paths."""
    written = []
    for metric, found in tables.items():
        target = Path(folder) / metric
        target.mkdir(parents=True, exist_ok=True)
        for name, table in found.tables.items():
            path = target / name
            with atomic_path(path) as tmp:
                if name.endswith("_DMS_level.csv"):
                    table.to_csv(tmp, index_label="DMS ID")
                else:
                    table.to_csv(tmp, index=found.indexed[name])
            written.append(path)
    return written
