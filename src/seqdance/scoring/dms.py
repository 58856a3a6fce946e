"""Benchmark of zero-shot predictors on deep-mutational-scanning assays in the ProteinGym layout.

An assay folder holds ``mutant/<assay>.csv`` (or ``<assay>.csv`` at the top) with a ``mutant`` column and
the measured fitness in ``DMS_score`` (or ``score``), and its wild type in ``fasta/<assay>.fasta`` (or
``<assay>.fasta``) or in the ``target_seq`` column of a ProteinGym reference file (``DMS_id``, optionally
``DMS_filename``; :mod:`seqdance.scoring.proteingym_reference`). The reference's ``target_seq`` wins over a FASTA
file. Indel assays (``DMS_indels``) are read by :func:`load_indel_variants` and scored by
:func:`score_indel_variants` (each sequence aligned to the wild type, docs/design.md#indel-change).

Every predictor is evaluated with ProteinGym's sign convention (higher = fitter): ``combined`` (the
``score`` column), one predictor per property (minus its ``change_<property>``), and the ESM2 baselines.
Results are written per assay as soon as it finishes, so an interrupted run resumes where it stopped.

Output folder layout::

    run.json                     settings of the run (a resumed run must use the same ones)
    scores/<assay>.csv           per variant: mutant, DMS_score, score, change_*, esm2_*
    proteingym/<assay>.csv       ProteinGym's layout for its harness: mutant, mutated_sequence, DMS_score
                                 (DMS_score_bin), one column per predictor (higher = fitter)
    metrics/<assay>.csv          per predictor: spearman, ndcg, top_decile_auc, top_recall (auc), note
    per_assay.csv                all assays' metrics in one long table (+ category columns)
    summary.csv                  median of each metric over assays, per predictor
    summary_by_<column>.csv      the same medians per category value
    proteingym/<Metric>/         with a ProteinGym reference file: ProteinGym's own tables of the assays with a
                                 reference row (:mod:`seqdance.scoring.proteingym_performance`)
    missing_assays.csv           the reference file's DMS_ids without an assay file
    training_identity.csv        with a training set: each assay protein's highest identity to it
    failures.csv                 assays that failed in the last run and why
    keys/<assay>.json            what an assay's results were computed from (content key and fields, the rows of
                                 its tables), written after its tables
    shards/                      manifests of a sharded run (``shard``; :mod:`seqdance.inference.sharding`)

The run goes through the one run protocol (:class:`seqdance.inference.sharded_run.ShardedRun`; the layout is
:class:`BenchmarkLayout`). An assay's results are reused only when its key file records the content key of the
assay file and wild type, the settings and the model fingerprints, AND its three tables are whole (every row
the key file counts, each row complete). A sharded run deals the assays out by cost (variants × window tokens);
the shard that finishes last writes the tables over all assays (:func:`merge_benchmark` does it on demand).
Only a user error (:class:`~seqdance.errors.SeqdanceError`: a bad table, no wild type, too few variants) is
recorded as the assay's failure; anything else is a bug and stops the run with its traceback.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from seqdance.errors import InputError, SeqdanceError
from seqdance.inference.fingerprint import module_fingerprint
from seqdance.inference.sharded_run import (
    RunItem,
    RunLayout,
    RunReport,
    ShardedRun,
    Verdict,
    WorkUnit,
    csv_table_problem,
    merge_run,
    missing,
    read_record,
    unreadable,
)
from seqdance.inference.sharding import Shard, content_key, input_cost, text_digest
from seqdance.io_utils import atomic_path, read_csv_table, read_fasta, sha256_file
from seqdance.schema import ESM2_MAX_RESIDUES, get_properties
from seqdance.scoring.dynamics_score import DEFAULT_LOCAL_RADIUS, change_column
from seqdance.scoring.metrics import METRIC_NAMES, assay_metrics, undefined_reasons
from seqdance.scoring.mutations import (
    IndelVariant,
    MutationError,
    check_table_fields,
    check_wild_type,
    invalid_summary,
    parse_mutants,
    sequence_variant,
    with_mutant_column,
)
from seqdance.scoring.options import DEFAULT_BOOTSTRAP_SAMPLES
from seqdance.scoring.proteingym_performance import AssayInfo
from seqdance.scoring.proteingym_reference import (
    ReferenceFile,
    assay_file_candidates,
    assay_info,
    binarise,
    binarization_cutoff,
    read_reference,
)
from seqdance.scoring.scorer import (
    MASKED_MARGINAL_COLUMN,
    PLL_COLUMN,
    SCORE_COLUMN,
    WT_MARGINAL_COLUMN,
    score_variants,
)
from seqdance.scoring.training_overlap import IDENTITY_COLUMN
from seqdance.scoring.windows import drop_unscorable
from seqdance.wording import counted

log = logging.getLogger(__name__)

#: Measured-fitness columns accepted, in order of preference.
DMS_SCORE_COLUMNS: tuple[str, ...] = ("DMS_score", "score")
COMBINED_PREDICTOR = "combined"
#: Prefix of the dynamics predictors' columns in the ProteinGym files (the ESM2 baselines keep their names).
PROTEINGYM_PREFIX = "seqdance_"


@dataclass(frozen=True)
class Assay:
    """One DMS assay: its name, mutant table and wild-type sequence (None when none was found).

    From a ProteinGym reference row: ``info`` (what ProteinGym aggregates by; None without such a row),
    ``cutoff`` (``DMS_binarization_cutoff``, used when the table has no ``DMS_score_bin``), ``wild_type_source``
    (says where the wild type came from, in errors) and ``mutation_type`` (``substitutions`` or ``indels``).
    """

    name: str
    table_path: Path
    wild_type: str | None
    categories: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # why the wild type could not be found
    info: AssayInfo | None = None
    cutoff: float | None = None
    wild_type_source: str = ""
    mutation_type: str = "substitutions"


@dataclass
class AssayDiscovery:
    """The assays of a folder, the reference file's DMS_ids with no assay file, and the reference file read."""

    assays: list[Assay]
    missing: list[str] = field(default_factory=list)
    reference: ReferenceFile | None = None

    @property
    def unmatched(self) -> list[str]:
        """Assays of the folder without a reference row carrying ProteinGym's aggregation columns."""
        return [a.name for a in self.assays if a.info is None] if self.reference is not None else []


@dataclass
class BenchmarkResult:
    per_assay: pd.DataFrame  # the whole run's (this shard's assays when the run is not merged yet)
    summary: pd.DataFrame  # empty until the run is merged
    failures: pd.DataFrame  # assay, error
    report: RunReport

    @property
    def n_skipped(self) -> int:
        """Assays whose results an earlier run left and that checked out."""
        return self.report.n_done


def discover_assays(
    assays_dir: str | os.PathLike[str],
    *,
    reference_csv: str | os.PathLike[str] | None = None,
    category_columns: Sequence[str] = (),
) -> list[Assay]:
    """The assays of a folder, sorted by name, with their wild types and category values."""
    return find_assays(assays_dir, reference_file=reference_csv, category_columns=category_columns).assays


def find_assays(
    assays_dir: str | os.PathLike[str],
    *,
    reference_file: str | os.PathLike[str] | None = None,
    category_columns: Sequence[str] = (),
    mutation_type: str = "substitutions",
) -> AssayDiscovery:
    """The assays of a folder (sorted by name) with their wild types, categories and ProteinGym reference rows;
    also the DMS_ids of the reference file whose assay file is not in the folder.

    An assay table is ``mutant/<name>.csv`` or ``<name>.csv`` (ProteinGym's ``DMS_filename``). It takes the
    reference row whose ``DMS_filename`` or ``DMS_id`` names it, and is then called by that DMS_id; the row's
    ``target_seq`` is its wild type (else ``fasta/<name>.fasta``). Tables without a row still run (they have no
    place in ProteinGym's tables).
    """
    root = Path(assays_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"assay folder not found: {root}")
    reference = read_reference(reference_file, mutation_type=mutation_type) if reference_file is not None else None
    table_dir = root / "mutant" if (root / "mutant").is_dir() else root
    skip = {reference.path.resolve()} if reference is not None else set()
    tables = [t for t in sorted(table_dir.glob("*.csv")) if t.resolve() not in skip]
    if not tables:
        raise InputError(f"{root}: no assay CSV files (expected mutant/<assay>.csv or <assay>.csv)")
    ref_rows: dict[str, pd.Series] = {}
    by_file: dict[str, str] = {}
    if reference is not None:
        absent = [c for c in category_columns if c not in reference.table.columns]
        if absent:
            raise InputError(f"{reference.path}: category column(s) {absent} not found; columns: "
                             f"{list(reference.table.columns)}")
        ref_rows = reference.rows()
        for dms_id, row in ref_rows.items():
            for candidate in assay_file_candidates(root, row):
                by_file.setdefault(str(candidate.resolve()), dms_id)
            if isinstance(row.get("DMS_filename"), str):
                by_file.setdefault(Path(row["DMS_filename"]).stem, dms_id)
    elif category_columns:
        raise InputError("category columns come from the reference file: give --reference-file too")
    assays: list[Assay] = []
    folded: dict[str, Path] = {}
    for table in tables:
        dms_id = by_file.get(str(table.resolve())) or (table.stem if table.stem in ref_rows else None) \
            or by_file.get(table.stem)
        name = dms_id or table.stem
        if name.lower() in folded:  # outputs are named by assay: names equal but for case would overwrite
            raise InputError(f"assays {folded[name.lower()].name} and {table.name} differ only in case (or name one "
                             "DMS_id); their result files would collide: rename or remove one")
        folded[name.lower()] = table
        row = ref_rows.get(dms_id) if dms_id else None
        assays.append(_assay_from(root, table, name, row, reference, category_columns, mutation_type))
    found = {a.name for a in assays}
    missing = [dms_id for dms_id in ref_rows if dms_id not in found]
    return AssayDiscovery(sorted(assays, key=lambda a: a.name), missing, reference)


def _assay_from(root: Path, table: Path, name: str, row: pd.Series | None, reference: ReferenceFile | None,
                category_columns: Sequence[str], mutation_type: str) -> Assay:
    categories = ({c: str(row[c]) for c in category_columns} if row is not None
                  else dict.fromkeys(category_columns, "unknown"))
    wild_type, problem, source = None, None, ""
    if row is not None and "target_seq" in row.index and isinstance(row["target_seq"], str):
        wild_type, source = row["target_seq"], f"the target_seq of {name} in {reference.path.name}"
    else:
        for fasta in (root / "fasta" / f"{name}.fasta", root / f"{name}.fasta", table.with_suffix(".fasta")):
            if fasta.is_file():
                try:
                    records = read_fasta(fasta)
                except ValueError as exc:
                    problem = str(exc)
                    break
                if len(records) != 1:
                    problem = f"{fasta} holds {len(records)} records; expected the one wild type"
                else:
                    wild_type, source = records[0].sequence, str(fasta)
                break
        else:
            problem = "no wild-type sequence: no fasta/<assay>.fasta and no target_seq in a reference file"
    info = assay_info(row) if row is not None and reference is not None and reference.has_aggregation_columns \
        else None
    return Assay(name, table, wild_type, categories, problem, info=info, cutoff=binarization_cutoff(row),
                 wild_type_source=source, mutation_type=mutation_type)


def predictor_values(scores: pd.DataFrame) -> dict[str, np.ndarray]:
    """Predictors (higher = fitter) found in a scores table: combined, each property, ESM2 baselines."""
    out: dict[str, np.ndarray] = {}
    if SCORE_COLUMN in scores.columns:
        out[COMBINED_PREDICTOR] = scores[SCORE_COLUMN].to_numpy(dtype=np.float64)
    prefix = change_column("")
    for column in scores.columns:
        if column.startswith(prefix):
            out[column[len(prefix) :]] = -scores[column].to_numpy(dtype=np.float64)
    for column in (MASKED_MARGINAL_COLUMN, WT_MARGINAL_COLUMN, PLL_COLUMN):
        if column in scores.columns:
            out[column] = scores[column].to_numpy(dtype=np.float64)
    return out


def metrics_table(scores: pd.DataFrame, assay: str) -> pd.DataFrame:
    """One row per predictor with every metric of one assay; ``note`` says why a metric is undefined (NaN) or
    degenerate (a top-10% recall of 0 from ties at the top)."""
    y = scores["DMS_score"].to_numpy(dtype=np.float64)
    y_bin = scores["DMS_score_bin"].to_numpy(dtype=np.float64) if "DMS_score_bin" in scores.columns else None
    rows = []
    for name, values in predictor_values(scores).items():
        metrics = assay_metrics(y, values, y_bin)
        reasons = undefined_reasons(y, values, y_bin)
        notes = [f"{m}: {why}" for m, why in reasons.items()
                 if m in metrics and (not np.isfinite(metrics[m]) or m == "top_recall")]
        rows.append({"assay": assay, "predictor": name, "n_variants": len(scores), **metrics,
                     "note": "; ".join(notes)})
    return pd.DataFrame(rows)


def metric_warnings(metrics: pd.DataFrame) -> list[str]:
    """One line per (assay, metric, reason) of a metrics table's notes, naming the predictors concerned."""
    lines = []
    for assay, part in metrics.groupby("assay", sort=False):
        found: dict[str, list[str]] = {}
        for predictor, note in zip(part["predictor"], part["note"].fillna("")):
            for item in filter(None, str(note).split("; ")):
                found.setdefault(item, []).append(str(predictor))
        for item, predictors in found.items():
            metric, _, why = item.partition(": ")
            who = "every predictor" if len(predictors) == len(part) else ", ".join(predictors)
            value = "undefined (NaN)" if metric != "top_recall" else "0"
            lines.append(f"{assay}: {metric} is {value} for {who}: {why}")
    return lines


#: Predictors defined for substitutions only (empty on indel rows).
SUBSTITUTION_ONLY_COLUMNS = (MASKED_MARGINAL_COLUMN, WT_MARGINAL_COLUMN)


def proteingym_table(scores: pd.DataFrame, wild_type: str, variants: list | None = None, *,
                     indels: bool = False) -> pd.DataFrame:
    """A scores table in ProteinGym's per-assay layout: mutant, mutated_sequence, DMS_score (DMS_score_bin) and
    one column per predictor, higher = fitter (dynamics predictors prefixed ``seqdance_``). ``variants``: the
    scored variants, one per row (default: parsed again from the ``mutant`` column). Indel tables keep their
    ``mutated_sequence`` (their ``mutant`` is its id). The ESM2 marginals, defined for substitutions only, are left
    out of a table with indels (``esm2_pll`` scores every variant)."""
    if indels:
        sequences = scores["mutated_sequence"].tolist()
    else:
        if variants is None:
            checked = parse_mutants(scores["mutant"].astype(str).tolist(), wild_type, indels=True)
            if checked.invalid or len(checked.variants) != len(scores):
                raise InputError(f"{len(checked.invalid)} mutant(s) of the scores table do not fit the wild type")
            variants = checked.variants
        sequences = [v.apply(wild_type) for v in variants]
    table = pd.DataFrame({
        "mutant": scores["mutant"].to_numpy(),
        "mutated_sequence": sequences,
        "DMS_score": scores["DMS_score"].to_numpy(),
    })
    if "DMS_score_bin" in scores.columns:
        table["DMS_score_bin"] = scores["DMS_score_bin"].to_numpy()
    esm = (MASKED_MARGINAL_COLUMN, WT_MARGINAL_COLUMN, PLL_COLUMN)
    has_indels = indels or any(isinstance(v, IndelVariant) for v in variants)
    for name, values in predictor_values(scores).items():
        if has_indels and name in SUBSTITUTION_ONLY_COLUMNS:
            continue  # undefined on indel rows, and ProteinGym requires every mutant scored
        table[name if name in esm else PROTEINGYM_PREFIX + name] = values
    return table


def load_assay_variants(
    assay: Assay, *, skip_invalid: bool, max_variants: int | None, seed: int, window: int = ESM2_MAX_RESIDUES
) -> tuple[str, list, pd.DataFrame, str]:
    """Wild type, validated variants and their table rows (mutant, DMS_score[, DMS_score_bin]) of one assay.

    Also returns a note on rows dropped (missing scores, invalid mutants skipped, subsampling).
    """
    if assay.wild_type is None:
        raise InputError(assay.problem or "no wild-type sequence")
    wild_type = check_wild_type(assay.wild_type, f"{assay.name} wild type")
    try:
        text = assay.table_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{assay.table_path}: cannot read the assay table ({exc})") from exc
    check_table_fields(text, ",", assay.table_path)
    table = with_mutant_column(read_csv_table(assay.table_path, dtype={"mutant": str}, keep_default_na=True))
    if "mutant" not in table.columns:
        raise InputError(f"{assay.table_path}: no 'mutant' column (columns: {list(table.columns)})")
    score_col = next((c for c in DMS_SCORE_COLUMNS if c in table.columns), None)
    if score_col is None:
        raise InputError(f"{assay.table_path}: no measured-fitness column ({' or '.join(DMS_SCORE_COLUMNS)})")
    notes = []
    frame = pd.DataFrame({"mutant": table["mutant"], "DMS_score": pd.to_numeric(table[score_col], errors="coerce")})
    if "DMS_score_bin" in table.columns:
        frame["DMS_score_bin"] = pd.to_numeric(table["DMS_score_bin"], errors="coerce")
    elif assay.cutoff is not None:  # ProteinGym's binarisation from the reference file's cutoff
        frame["DMS_score_bin"] = binarise(frame["DMS_score"], assay.cutoff)
    sequences = table["mutated_sequence"].tolist() if "mutated_sequence" in table.columns else None
    checked = parse_mutants(frame["mutant"].tolist(), wild_type, mutated_sequences=sequences, indels=True)
    checked = drop_unscorable(checked, len(wild_type), size=window)
    if checked.invalid:
        if not skip_invalid and assay.wild_type_source.startswith("the target_seq"):
            raise InputError(f"{assay.table_path}: {len(checked.invalid)} of {len(frame)} mutant(s) disagree with "
                             f"{assay.wild_type_source} ({len(wild_type)} residues); first: {checked.invalid[0]}")
        if not skip_invalid:
            raise InputError(invalid_summary(checked.invalid, str(assay.table_path)))
        notes.append(f"{len(checked.invalid)} invalid mutant(s) skipped")
    keep = np.asarray(checked.rows, dtype=np.int64) - 1
    variants = list(checked.variants)
    measured = np.isfinite(frame["DMS_score"].to_numpy()[keep])
    if not measured.all():
        notes.append(f"{int((~measured).sum())} row(s) without a measured score dropped")
        keep, variants = keep[measured], [v for v, m in zip(variants, measured) if m]
    if len(variants) < 2:
        raise InputError(f"{assay.table_path}: fewer than 2 scored variants to evaluate")
    if max_variants is not None and len(variants) > max_variants:
        chosen = np.sort(np.random.default_rng(seed).choice(len(variants), size=max_variants, replace=False))
        notes.append(f"a random subset of the {len(variants):,}, seed {seed}")
        keep, variants = keep[chosen], [variants[i] for i in chosen]
    return wild_type, variants, frame.iloc[keep].reset_index(drop=True), "; ".join(notes)


def score_indel_variants(wild_type: str, variants: Sequence[tuple[str, str]], *, source: str = "indel assay",
                         **scoring: Any) -> pd.DataFrame:
    """Scores of indel variants, one row per ``(mutant id, mutated_sequence)`` in order, with the columns
    :func:`~seqdance.scoring.scorer.score_variants` gives (``score``, ``change_<property>``, the ESM2 columns);
    ``scoring`` holds its settings. Each sequence is aligned to ``wild_type``
    (:func:`~seqdance.scoring.mutations.sequence_variant`, docs/design.md#variant-alignment); one that is not a
    variant of it is an error naming ``source`` and the row."""
    parsed = []
    for row, (label, sequence) in enumerate(variants, start=1):
        try:
            parsed.append(sequence_variant(label, sequence, wild_type))
        except MutationError as exc:
            raise InputError(f"{source}: row {row}: {exc}") from exc
    return score_variants(wild_type, parsed, **scoring)


def load_indel_variants(
    assay: Assay, *, max_variants: int | None, seed: int
) -> tuple[str, list[tuple[str, str]], pd.DataFrame, str]:
    """Wild type, ``(mutant id, mutated_sequence)`` variants and their table rows (mutant, mutated_sequence,
    DMS_score[, DMS_score_bin]) of one indel assay (ProteinGym's ``DMS_indels`` layout: ``mutated_sequence`` and
    ``DMS_score``; the id is ``mutant`` when the file has it, else the sequence itself, as ProteinGym does)."""
    if assay.wild_type is None:
        raise InputError(assay.problem or "no wild-type sequence")
    wild_type = check_wild_type(assay.wild_type, f"{assay.name} wild type")
    table = read_csv_table(assay.table_path, dtype={"mutant": str, "mutated_sequence": str}, keep_default_na=True)
    if "mutated_sequence" not in table.columns:
        raise InputError(f"{assay.table_path}: an indel assay needs a 'mutated_sequence' column (columns: "
                         f"{list(table.columns)})")
    score_col = next((c for c in DMS_SCORE_COLUMNS if c in table.columns), None)
    if score_col is None:
        raise InputError(f"{assay.table_path}: no measured-fitness column ({' or '.join(DMS_SCORE_COLUMNS)})")
    sequences = [check_wild_type(str(s) if isinstance(s, str) else "", f"{assay.table_path}: row {k + 1}")
                 for k, s in enumerate(table["mutated_sequence"])]
    ids = table["mutant"].astype(str).tolist() if "mutant" in table.columns else sequences
    frame = pd.DataFrame({"mutant": ids, "mutated_sequence": sequences,
                          "DMS_score": pd.to_numeric(table[score_col], errors="coerce")})
    if "DMS_score_bin" in table.columns:
        frame["DMS_score_bin"] = pd.to_numeric(table["DMS_score_bin"], errors="coerce")
    elif assay.cutoff is not None:
        frame["DMS_score_bin"] = binarise(frame["DMS_score"], assay.cutoff)
    notes = []
    measured = np.isfinite(frame["DMS_score"].to_numpy(dtype=np.float64))
    if not measured.all():
        notes.append(f"{int((~measured).sum())} row(s) without a measured score dropped")
        frame = frame[measured]
    if len(frame) < 2:
        raise InputError(f"{assay.table_path}: fewer than 2 scored variants to evaluate")
    if max_variants is not None and len(frame) > max_variants:
        chosen = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_variants, replace=False))
        frame = frame.iloc[chosen]
        notes.append(f"random subset of {max_variants} variants (seed {seed})")
    frame = frame.reset_index(drop=True)
    return wild_type, list(zip(frame["mutant"], frame["mutated_sequence"])), frame, "; ".join(notes)


def _check_run_settings(out_dir: Path, settings: dict, restart: bool) -> None:
    path = out_dir / "run.json"
    if path.is_file() and not restart:
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError):
            previous = None  # unreadable: written again below
        if isinstance(previous, dict) and previous != settings:
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            raise InputError(
                f"{out_dir} holds results of a run with other settings (differing: {', '.join(changed)}); "
                "use another output folder, or --overwrite to recompute every assay"
            )
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def summarise(per_assay: pd.DataFrame, group: str | None = None) -> pd.DataFrame:
    """Median of every metric over assays per predictor (and per value of ``group``)."""
    metrics = [m for m in METRIC_NAMES if m in per_assay.columns]
    keys = ([group] if group else []) + ["predictor"]
    grouped = per_assay.groupby(keys, sort=False)
    summary = grouped[metrics].median()
    summary.insert(0, "n_assays", grouped["assay"].nunique())
    summary = summary.reset_index()
    order = {p: i for i, p in enumerate(dict.fromkeys(per_assay["predictor"]))}
    summary["_order"] = summary["predictor"].map(order)
    summary = summary.sort_values(([group] if group else []) + ["_order"]).drop(columns="_order")
    return summary.reset_index(drop=True)


TABLE_DIRS: tuple[str, ...] = ("scores", "proteingym", "metrics")
KEYS_DIR = "keys"


class BenchmarkLayout(RunLayout):
    """Per assay ``scores/``, ``proteingym/``, ``metrics/<assay>.csv`` and ``keys/<assay>.json``; combined into
    ``per_assay.csv``, ``summary*.csv`` and ``failures.csv``. The run record holds the settings, the category
    columns and each assay's categories (so a merge needs no reference CSV)."""

    command = "benchmark-dms"
    unit_noun = ("assay", "assays")
    progress = False  # a progress bar while ProteinGym's tables are written (set by run_benchmark)

    def path(self, folder: str, item: RunItem) -> Path:
        return self.target / folder / f"{item.output}{'.json' if folder == KEYS_DIR else '.csv'}"

    def begin(self, items: Sequence[RunItem], overwrite: bool) -> None:
        _check_run_settings(self.target, self.run["settings"], overwrite)
        for folder in (*TABLE_DIRS, KEYS_DIR):
            (self.target / folder).mkdir(parents=True, exist_ok=True)

    def check(self, items: Sequence[RunItem]) -> list[Verdict]:
        verdicts = []
        for item in items:
            key_file = self.path(KEYS_DIR, item)
            if not key_file.is_file():
                verdicts.append(missing(key_file))
                continue
            recorded = read_record(key_file)
            if isinstance(recorded, Verdict):
                verdicts.append(recorded)
                continue
            try:
                rows = {"scores": int(recorded["n_variants"]), "proteingym": int(recorded["n_variants"]),
                        "metrics": int(recorded["n_predictors"])}
            except (KeyError, ValueError, TypeError) as exc:
                verdicts.append(unreadable(key_file, f"no row counts: {exc!r}"))
                continue
            problem, where = None, key_file
            for folder in TABLE_DIRS:
                where = self.path(folder, item)
                problem = "is missing" if not where.is_file() else csv_table_problem(where, rows[folder])
                if problem:
                    break
            verdicts.append(Verdict.judge(str(key_file), item, recorded, recorded.get("content_key"), problem,
                                          str(where)))
        return verdicts

    def combine(self, items: Sequence[RunItem], failures: Mapping[str, str]) -> int:
        names = [item.id for item in items]
        listed = [{"assay": name, "error": failures[name]} for name in names if name in failures]
        done = [n for n in names if n not in failures]
        per_assay, _ = write_summaries(self.target, done, self.run["categories"], self.run["category_columns"], listed,
                                       training_identity=self.run.get("training_identity"))
        _write_csv(pd.DataFrame({"DMS_id": list(self.run.get("missing") or [])}), self.target / "missing_assays.csv")
        if self.run.get("proteingym"):
            write_proteingym_tables(self.target, done, self.run["proteingym"], progress=self.progress)
        return len(per_assay)


def run_benchmark(
    assays: Sequence[Assay],
    out_dir: str | os.PathLike[str],
    *,
    model: torch.nn.Module | None,
    esm_model: torch.nn.Module | None = None,
    settings: dict | None = None,
    properties: Sequence[str] | None = None,
    region: str = "reference",
    local_radius: int = DEFAULT_LOCAL_RADIUS,
    batch_size: int | None = None,
    window: int = ESM2_MAX_RESIDUES,
    max_variants: int | None = None,
    seed: int = 0,
    skip_invalid: bool = False,
    restart: bool = False,
    category_columns: Sequence[str] = (),
    progress: bool = False,
    report: Callable[[str], None] | None = None,
    shard: Shard | None = None,
    esm_pll: bool = False,
    proteingym: ProteinGymOptions | None = None,
    reference: ReferenceFile | None = None,
    missing: Sequence[str] = (),
    training_identity: pd.DataFrame | None = None,
) -> BenchmarkResult:
    """Score and evaluate every assay (or this ``shard``'s); finished assays whose results check out are not
    recomputed.

    ``settings`` (model sources etc.) are recorded in ``run.json`` together with the scoring options; a
    resumed run must match them (``restart`` recomputes everything). An assay that fails with a user error is
    reported and recorded, and does not stop the others.

    With ``proteingym`` options and the ``reference`` file the assays came from, ProteinGym's tables are written
    too (``proteingym/<Metric>/``, :mod:`seqdance.scoring.proteingym_performance`) over the assays with a reference
    row; ``missing`` (the reference's DMS_ids without an assay file) is listed in ``missing_assays.csv``;
    ``training_identity`` (:func:`seqdance.scoring.training_overlap.training_identity`) adds each assay's highest
    identity to the training set to ``per_assay.csv``.
    """
    out = Path(out_dir)
    say = report or log.info
    run_settings = {
        **(settings or {}),
        "properties": list(properties) if properties is not None else "all",
        "region": region,
        "local_radius": local_radius if region == "local" else None,
        "window": window,
        "max_variants": max_variants,
        "seed": seed if max_variants is not None else None,
        "skip_invalid": skip_invalid,
        **({"esm_pll": True} if esm_pll else {}),  # only when set: the keys of earlier runs stay valid
    }
    assays = list(assays)
    fingerprints = {"model": module_fingerprint(model) if model is not None else None,
                    "esm2": module_fingerprint(esm_model) if esm_model is not None else None}
    items = [RunItem(k, a.name, a.name, assay_fields(a, run_settings, fingerprints)) for k, a in enumerate(assays)]
    units = [WorkUnit((k,), assay_cost(a, run_settings, with_esm=esm_model is not None)) for k, a in enumerate(assays)]
    derived = [item.id for item in items if "binarization" in item.expect]
    if derived:
        say(f"{counted(len(derived), 'assay file')} without a DMS_score_bin column: derived from the reference file's "
            "DMS_binarization_cutoff (1 where DMS_score >= the cutoff)")
    run = {"assays": content_key(sorted((item.id, item.key) for item in items)), **fingerprints,
           "settings": run_settings, "category_columns": list(category_columns),
           "categories": {a.name: dict(a.categories) for a in assays},
           "missing": list(missing),
           "proteingym": proteingym_record(assays, reference, proteingym) if proteingym is not None else None,
           "training_identity": (training_identity.to_dict(orient="records") if training_identity is not None
                                 else None)}
    layout = BenchmarkLayout(out, run, shard)
    layout.progress = progress
    sharded = ShardedRun(layout, items, units, shard=shard, overwrite=restart)

    def compute(chosen: list[WorkUnit], pending: set[int]) -> dict[int, str]:
        failed: dict[int, str] = {}
        todo = sorted(pending)
        iterator = todo
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(todo, desc="benchmark-dms", unit="assay")
        for k in iterator:
            assay = assays[k]
            try:
                n_variants, note, metrics = _score_assay(assay, layout, items[k], model=model, esm_model=esm_model,
                                                         properties=properties, region=region,
                                                         local_radius=local_radius, batch_size=batch_size,
                                                         window=window, max_variants=max_variants, seed=seed,
                                                         skip_invalid=skip_invalid, esm_pll=esm_pll)
            except SeqdanceError as exc:  # the assay's own problem: recorded, the others go on
                failed[k] = " ".join(str(exc).split()) or type(exc).__name__
                say(f"{assay.name}: FAILED: {failed[k]}")
                continue
            sharded.throughput.add(n_variants, n_variants * (min(len(assay.wild_type or ""), window) + 2))
            say(f"{assay.name}: {counted(n_variants, 'variant')}" + (f" ({note})" if note else ""))
            for line in metric_warnings(metrics):
                say(f"warning: {line}")
        return failed

    result = sharded.execute(compute)
    failures = pd.DataFrame([{"assay": a, "error": e} for a, e in result.failures.items()], columns=["assay", "error"])
    if result.merged:
        per_assay = pd.read_csv(out / "per_assay.csv") if result.n_combined else pd.DataFrame(
            columns=["assay", "predictor"])
        summary = pd.read_csv(out / "summary.csv") if result.n_combined else pd.DataFrame()
        return BenchmarkResult(per_assay, summary, failures, result)
    mine = [out / "metrics" / f"{items[k].output}.csv" for k in sharded.owned if items[k].id not in result.failures]
    frames = [pd.read_csv(path) for path in mine if path.is_file()]
    per_assay = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["assay", "predictor"])
    return BenchmarkResult(per_assay, pd.DataFrame(), failures, result)


def _score_assay(assay: Assay, layout: BenchmarkLayout, item: RunItem, *, model, esm_model, properties, region,
                 local_radius, batch_size, window, max_variants, seed, skip_invalid, esm_pll=False
                 ) -> tuple[int, str, pd.DataFrame]:
    """Score and evaluate one assay and write its tables, key file last; returns (variants, note, metrics)."""
    settings = {"model": model, "esm_model": esm_model, "properties": properties, "region": region,
                "local_radius": local_radius, "batch_size": batch_size, "window": window, "esm_pll": esm_pll}
    if assay.mutation_type == "indels":
        wild_type, indels, rows, note = load_indel_variants(assay, max_variants=max_variants, seed=seed)
        scores = score_indel_variants(wild_type, indels, source=str(assay.table_path), **settings)
        variants = None
    else:
        wild_type, variants, rows, note = load_assay_variants(
            assay, skip_invalid=skip_invalid, max_variants=max_variants, seed=seed, window=window
        )
        scores = score_variants(wild_type, variants, **settings)
    table = pd.concat([rows, scores.reset_index(drop=True)], axis=1)
    metrics = metrics_table(table, assay.name)
    _write_csv(table, layout.path("scores", item))
    _write_csv(proteingym_table(table, wild_type, variants, indels=assay.mutation_type == "indels"),
               layout.path("proteingym", item))
    _write_csv(metrics, layout.path("metrics", item))
    record = {"assay": assay.name, "content_key": item.key, **item.expect, "n_variants": len(table),
              "n_predictors": len(metrics)}
    with atomic_path(layout.path(KEYS_DIR, item)) as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return len(table), note, metrics


def write_summaries(
    out: Path,
    names: Sequence[str],
    categories: dict[str, dict[str, str]],
    category_columns: Sequence[str],
    failures: Sequence[dict[str, str]],
    *,
    training_identity: Sequence[Mapping[str, object]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write failures.csv, per_assay.csv, summary.csv and summary_by_<column>.csv over the assays ``names`` (and
    training_identity.csv, with each assay's highest identity to the training set also in per_assay.csv)."""
    _write_csv(pd.DataFrame(list(failures), columns=["assay", "error"]), out / "failures.csv")
    frames = [pd.read_csv(out / "metrics" / f"{n}.csv") for n in names if (out / "metrics" / f"{n}.csv").is_file()]
    per_assay = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["assay", "predictor"])
    for column in category_columns:
        per_assay[column] = [categories.get(a, {}).get(column, "unknown") for a in per_assay["assay"]]
    if training_identity is not None:
        identity = pd.DataFrame(list(training_identity))
        _write_csv(identity, out / "training_identity.csv")
        by_assay = dict(zip(identity["assay"], identity[IDENTITY_COLUMN])) if len(identity) else {}
        per_assay[IDENTITY_COLUMN] = [by_assay.get(a, np.nan) for a in per_assay["assay"]]
    _write_csv(per_assay, out / "per_assay.csv")
    summary = summarise(per_assay) if len(per_assay) else pd.DataFrame()
    _write_csv(summary, out / "summary.csv")
    for column in category_columns:
        if len(per_assay):
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in column)
            _write_csv(summarise(per_assay, column), out / f"summary_by_{safe}.csv")
    return per_assay, summary


def assay_fields(assay: Assay, run_settings: dict, fingerprints: dict) -> dict[str, str | None]:
    """What an assay's results depend on: its table file, wild type, the run settings and the model fingerprints
    (and the binarisation cutoff when ``DMS_score_bin`` is derived from it; an indel assay says so)."""
    table = sha256_file(assay.table_path) if assay.table_path.is_file() else None
    sequence = text_digest(assay.wild_type) if assay.wild_type is not None else None
    fields = {"table": table, "sequence": sequence, "settings": content_key(run_settings), **fingerprints}
    if assay.cutoff is not None and "DMS_score_bin" not in table_header(assay.table_path):
        fields["binarization"] = repr(assay.cutoff)
    if assay.mutation_type != "substitutions":
        fields["mutation_type"] = assay.mutation_type
    return fields


def table_header(path: Path) -> list[str]:
    """The column names of a CSV table (empty when it cannot be read: the assay's own load reports why)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            return next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def assay_cost(assay: Assay, run_settings: dict, *, with_esm: bool) -> float:
    """Estimated compute of one assay: its rows (at most max_variants) × the cost of one window."""
    if assay.wild_type is None or not assay.table_path.is_file():
        return 0.0
    with open(assay.table_path, "rb") as fh:
        rows = max(0, sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b"")) - 1)
    if run_settings.get("max_variants"):
        rows = min(rows, int(run_settings["max_variants"]))
    properties = run_settings.get("properties")
    pairs = any(p.is_pair for p in get_properties(None if properties == "all" else properties))
    tokens = min(len(assay.wild_type), int(run_settings["window"])) + 2
    cost = (rows + 1) * input_cost(tokens, quadratic=pairs)
    if with_esm:
        cost += min(rows, tokens) * input_cost(tokens, quadratic=False)
    return cost


@dataclass
class MergedBenchmark:
    per_assay: pd.DataFrame
    summary: pd.DataFrame
    failures: pd.DataFrame


def merge_benchmark(out_dir: str | os.PathLike[str]) -> MergedBenchmark:
    """Check the shards of a benchmark run in ``out_dir`` and write the tables over all assays.

    Every shard must be finished and of the same run, and every assay that did not fail must have results that
    check out against the run's plan (a ShardError names the first that does not).
    """
    out = Path(out_dir)
    merged = merge_run(BenchmarkLayout, out)
    per_assay = (pd.read_csv(out / "per_assay.csv") if merged.n_combined
                 else pd.DataFrame(columns=["assay", "predictor"]))
    summary = pd.read_csv(out / "summary.csv") if merged.n_combined else pd.DataFrame()
    failures = pd.DataFrame([{"assay": a, "error": e} for a, e in merged.failures.items()], columns=["assay", "error"])
    return MergedBenchmark(per_assay, summary, failures)


#: ProteinGym's model type of every score seqdance writes (single-sequence models, as ESM2 in its config.json).
MODEL_TYPE = "Single sequence"
#: Columns of a ProteinGym score file that are not scores.
NOT_SCORES: tuple[str, ...] = ("mutant", "mutated_sequence", "DMS_score", "DMS_score_bin")


@dataclass(frozen=True)
class ProteinGymOptions:
    """How ProteinGym's tables are aggregated: per mutation depth, bootstrap resamples and their seed (None: unseeded,
    as ProteinGym's script)."""

    by_depth: bool = False
    bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES
    seed: int | None = 0


def proteingym_record(assays: Sequence[Assay], reference: ReferenceFile | None, options: ProteinGymOptions
                      ) -> dict | None:
    """What a run records to write ProteinGym's tables without the reference file (None when the reference file
    lacks ProteinGym's aggregation columns): the assays' rows in reference-file order, every row's lookup values."""
    if reference is None or not reference.has_aggregation_columns:
        return None
    from seqdance.scoring.proteingym_package import version

    infos = {a.name: a.info for a in assays if a.info is not None}
    ordered = [infos[dms_id].as_record() for dms_id in reference.rows() if dms_id in infos]
    return {"mutation_type": reference.mutation_type, "by_depth": options.by_depth,
            "bootstrap_samples": options.bootstrap_samples, "seed": options.seed, "assays": ordered,
            "lookup": reference.lookup_records(), "reference": reference.path.name, "proteingym_version": version()}


def score_columns(path: Path) -> list[str]:
    """The score columns of a ProteinGym score file, in order."""
    return [c for c in table_header(path) if c not in NOT_SCORES]


def write_proteingym_tables(target: Path, names: Sequence[str], record: Mapping, *, progress: bool = False
                            ) -> list[Path]:
    """ProteinGym's tables of the assays ``names`` (those with a reference row, in reference order) from their
    ``proteingym/<assay>.csv`` score files, into ``target/proteingym/<Metric>/``."""
    from seqdance.scoring.proteingym_performance import (
        AssayPerformance,
        assay_performance,
        performance_tables,
        write_performance,
    )
    from seqdance.scoring.proteingym_reference import lookup_frame

    done = set(names)
    infos = [AssayInfo.from_record(r) for r in record["assays"] if r[0] in done]
    if not infos:
        return []
    folder = target / "proteingym"
    columns = score_columns(folder / f"{infos[0].dms_id}.csv")
    results = []
    for info in infos:
        scores = pd.read_csv(folder / f"{info.dms_id}.csv")
        found = assay_performance(scores, columns, by_depth=bool(record["by_depth"]), where=info.dms_id)
        results.append(AssayPerformance(info, len(scores), found))
    tables = performance_tables(results, lookup_frame(record["lookup"]), columns,
                                model_types=dict.fromkeys(columns, MODEL_TYPE), mutation_type=record["mutation_type"],
                                by_depth=bool(record["by_depth"]), bootstrap_samples=int(record["bootstrap_samples"]),
                                seed=record["seed"], progress=progress)
    return write_performance(tables, folder)
