"""A submission kit for ProteinGym: score files, a ``config.json`` model entry and a README, and a check that reads
them as ProteinGym's own scripts do.

``export_submission`` writes, from a ``benchmark-dms`` results folder:

* ``<name>/<DMS_id>.csv``: ``mutant`` (the key), ``mutated_sequence``, ``DMS_score`` and the score columns, one
  file per assay (ProteinGym's ``model_scores/zero_shot_substitutions/<location>/`` layout);
* ``config.json``: one entry per score column under ``model_list_zero_shot_substitutions_DMS`` (or ``..._indels_``)
  with ``input_score_name``, ``location``, ``directionality`` (1: higher = fitter), ``key`` and ``model_type``,
  to merge into ProteinGym's ``config.json``;
* ``README.md``: how the scores were made (model source and fingerprint, seqdance and proteingym versions, the
  settings, the command).

``check_export`` reads the folder back exactly as ``proteingym/merge.py`` (1.3) reads its inputs, whose reading
code sits inside its ``main()`` and is therefore restated here (tested against running that ``main()``): per
DMS_id of the reference file with an assay file, the assay file (``mutated_sequence`` defaulting to ``mutant``), and
for each config entry ``<location>/<DMS_id>.csv`` (a ``sequence`` column read as ``mutated_sequence``), the score
times its directionality, de-duplicated and averaged per key, merged on the key; then what
``performance_DMS_benchmarks.py`` needs of the merged file (``DMS_score``, ``DMS_score_bin``, every mutant scored).
Whatever would make either script skip an assay, stop or compute from missing values is a problem; what they only
print a warning about is a note.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from seqdance.errors import InputError
from seqdance.io_utils import atomic_path
from seqdance.scoring.proteingym_reference import ReferenceFile

#: ProteinGym's config field of each benchmark.
CONFIG_FIELDS = {"substitutions": "model_list_zero_shot_substitutions_DMS", "indels": "model_list_zero_shot_indels_DMS"}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_name(name: str) -> str:
    """A model name usable as ProteinGym's folder ``location`` and config key."""
    if not NAME_PATTERN.match(name):
        raise InputError(f"export name {name!r}: use letters, digits, '.', '_' or '-' (it names a folder)")
    return name


def entry_name(name: str, column: str) -> str:
    """The config key of a score column: ``name`` for the combined score, ``name_<rest>`` for the others."""
    if column == "seqdance_combined":
        return name
    return f"{name}_{column.removeprefix('seqdance_')}"


@dataclass
class ExportReport:
    folder: Path
    n_assays: int
    entries: dict[str, dict]


def export_submission(
    results_dir: str | os.PathLike[str],
    export_dir: str | os.PathLike[str],
    *,
    dms_ids: Sequence[str],
    name: str,
    mutation_type: str = "substitutions",
    about: Mapping[str, object] | None = None,
) -> ExportReport:
    """Write the submission kit of the assays ``dms_ids`` of a results folder (their ``proteingym/<id>.csv``)."""
    from seqdance.scoring.dms import score_columns

    name = check_name(name)
    source = Path(results_dir) / "proteingym"
    out = Path(export_dir)
    (out / name).mkdir(parents=True, exist_ok=True)
    key = "mutant" if mutation_type == "substitutions" else "mutated_sequence"
    columns: list[str] = []
    for dms_id in dms_ids:
        table = pd.read_csv(source / f"{dms_id}.csv")
        found = score_columns(source / f"{dms_id}.csv")
        columns = columns or found
        keep = [c for c in ("mutant", "mutated_sequence", "DMS_score") if c in table.columns]
        with atomic_path(out / name / f"{dms_id}.csv") as tmp:
            table[keep + found].to_csv(tmp, index=False)
    entries = {entry_name(name, c): {"input_score_name": c, "location": name, "directionality": 1, "key": key,
                                     "model_type": "Single sequence"} for c in columns}
    config = {CONFIG_FIELDS[mutation_type]: entries}
    with atomic_path(out / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(_readme(name, len(dms_ids), entries, mutation_type, dict(about or {})))
    return ExportReport(out, len(dms_ids), entries)


def _readme(name: str, n_assays: int, entries: Mapping[str, dict], mutation_type: str, about: dict) -> str:
    lines = [f"# {name}: zero-shot scores for ProteinGym ({mutation_type})", "",
             f"{n_assays} score file(s) in `{name}/` (one per DMS_id: `mutant`, `mutated_sequence`, `DMS_score` and "
             "the score columns; higher = fitter) and their model entries in `config.json`.", "",
             "## How the scores were made", ""]
    for label, value in about.items():
        lines.append(f"- {label}: `{value}`")
    lines += ["", "## Model entries", "", "| config key | input_score_name |", "|---|---|"]
    lines += [f"| {k} | {v['input_score_name']} |" for k, v in entries.items()]
    lines += ["", "## Submitting", "",
              f"Copy `{name}/` into ProteinGym's `model_scores/zero_shot_{mutation_type}/`, add the entries you "
              f"submit from `config.json` to the `{CONFIG_FIELDS[mutation_type]}` of ProteinGym's `config.json`, then "
              "run ProteinGym's `proteingym/merge.py` and `proteingym/performance_DMS_benchmarks.py`. seqdance read "
              "this folder back as those scripts read their inputs before writing this file (see the check in "
              "docs/scoring.md).", ""]
    return "\n".join(lines)


@dataclass
class ExportCheck:
    """What reading an export as ProteinGym's scripts do found: problems (an assay skipped, a script stopping,
    missing values), notes (warnings the scripts print) and the merged table of each assay."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    merged: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _merge_assay(dms_id: str, dms_file: Path, export: Path, entries: Mapping[str, Mapping], mutation_type: str,
                 check: ExportCheck) -> pd.DataFrame | None:
    """merge.py's reading of one assay, restated; problems recorded in ``check``."""
    merged = pd.read_csv(dms_file)
    if "mutated_sequence" not in merged:
        merged["mutated_sequence"] = merged["mutant"]
    length = len(merged)
    skipped: dict[str, list[str]] = {}  # why merge.py skips an entry -> the entries it skips for it
    for model, entry in entries.items():
        key, score_name = entry["key"], entry["input_score_name"]
        dms_column = key if mutation_type == "substitutions" else "mutated_sequence"
        path = export / str(entry["location"]) / f"{dms_id}.csv"
        if not path.is_file():
            check.problems.append(f"{dms_id}: {model}: no score file {path} (merge.py stops there)")
            return None
        scores = pd.read_csv(path)
        if "sequence" in scores:
            scores["mutated_sequence"] = scores["sequence"]
        absent = [c for c in (key, score_name) if c not in scores.columns]
        if absent or dms_column not in merged.columns:
            what = f"{path} has no column {absent[0]!r}" if absent else f"{dms_file} has no column {dms_column!r}"
            check.problems.append(f"{dms_id}: {model}: {what} (merge.py stops there)")
            return None
        scores[model] = entry["directionality"] * scores[score_name]
        scores = scores[[key, model]].drop_duplicates()
        scores = scores.groupby(key).mean().reset_index()
        given, wanted = set(scores[key]), set(merged[dms_column])
        if not given & wanted:
            skipped.setdefault(f"no mutant of {path} is in the assay file", []).append(model)
            continue
        if given < wanted:
            skipped.setdefault(f"{path} scores {len(given & wanted)} of the assay's {len(wanted)} mutants "
                               "(ProteinGym needs every mutant scored)", []).append(model)
            continue
        scores = scores.rename(columns={key: dms_column})
        result = pd.merge(merged, scores, on=dms_column, how="left")
        if len(result) != length:
            skipped.setdefault(f"merging on {key!r} changes the assay's length (repeated keys)", []).append(model)
            continue
        merged = result
    for why, models in skipped.items():
        check.problems.append(f"{dms_id}: {why}; merge.py skips {', '.join(models)}")
    return merged


def _performance_problems(dms_id: str, merged: pd.DataFrame, models: Sequence[str], check: ExportCheck) -> None:
    """What performance_DMS_benchmarks.py needs of a merged file (it assumes every mutant scored)."""
    if "DMS_score" not in merged.columns:
        check.problems.append(f"{dms_id}: the assay file has no DMS_score column (the performance script needs it)")
        return
    if merged["DMS_score"].isna().any():
        check.problems.append(f"{dms_id}: DMS_score is missing for {int(merged['DMS_score'].isna().sum())} mutants")
    if "DMS_score_bin" not in merged.columns:
        check.notes.append(f"{dms_id}: no DMS_score_bin column: ProteinGym's AUC and MCC will be NaN")
    for model in models:
        if model in merged.columns and merged[model].isna().any():
            check.problems.append(f"{dms_id}: {model} has no score for {int(merged[model].isna().sum())} of "
                                  f"{len(merged)} mutants; ProteinGym requires every mutant scored")


def check_export(
    export_dir: str | os.PathLike[str],
    reference: ReferenceFile,
    assay_files: Mapping[str, str | os.PathLike[str]],
) -> ExportCheck:
    """Read an export folder as ProteinGym's merge and performance scripts do, for every DMS_id of ``reference``
    that has an assay file (``assay_files``: DMS_id -> its file; merge.py skips the others)."""
    export = Path(export_dir)
    check = ExportCheck()
    try:
        config = json.loads((export / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        check.problems.append(f"{export / 'config.json'}: unreadable ({' '.join(str(exc).split())})")
        return check
    field_name = CONFIG_FIELDS[reference.mutation_type]
    entries = config.get(field_name) if isinstance(config, dict) else None
    if not isinstance(entries, dict) or not entries:
        check.problems.append(f"{export / 'config.json'}: no model entry under {field_name!r}")
        return check
    for model, entry in entries.items():
        absent = [k for k in ("input_score_name", "location", "directionality", "key", "model_type") if k not in entry]
        if absent:
            check.problems.append(f"config.json: entry {model!r} lacks {', '.join(absent)}")
    if check.problems:
        return check
    rows = reference.rows()
    for dms_id, row in rows.items():
        if dms_id not in assay_files:
            continue
        merged = _merge_assay(dms_id, Path(assay_files[dms_id]), export, entries, reference.mutation_type, check)
        if merged is None:
            continue
        expected = row.get("DMS_total_number_mutants")
        if expected is not None and pd.notna(expected) and len(merged) != int(expected):
            check.notes.append(f"{dms_id}: {len(merged)} mutants, the reference file says {int(expected)} "
                               "(merge.py warns: insufficient mutants)")
        _performance_problems(dms_id, merged, list(entries), check)
        check.merged[dms_id] = merged
    if not check.merged and not check.problems:
        check.problems.append("no DMS_id of the reference file has an assay file: nothing was read")
    return check
