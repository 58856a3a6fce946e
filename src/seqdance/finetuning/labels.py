"""The user's labels for the three tasks, read and checked into one :class:`LabelSet`.

* ``protein``: a CSV with ``name``, ``sequence`` and the target column (numbers, or class names with
  ``classification``); ``split_*`` columns (train/valid/test) are kept for ``split: columns``.
* ``residue``: either a CSV with ``name``, ``sequence`` and a target column holding one value per residue
  (separated by spaces or commas; ``nan`` or ``-`` for an unlabelled residue), or a long table ``name, position,
  label`` (1-based positions; sequences from a ``sequence`` column or a FASTA file). Unlabelled residues do not count
  in the loss or the metrics.
* ``mutant``: DMS assays in ProteinGym's layout (``mutant``, ``DMS_score`` or ``score``, optional
  ``mutated_sequence`` and ``fold_*`` columns), as CSV files or a folder (``mutant/<assay>.csv``, ``fasta/``);
  wild types from a FASTA file (record id = assay name), a ProteinGym reference CSV (``target_seq``) or the folder.
  Mutants are checked against the wild type as ``seqdance score`` checks them (:mod:`seqdance.scoring.mutations`).

Every problem is one line naming the file, row and column.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from seqdance.errors import InputError
from seqdance.io_utils import read_csv_table, read_fasta
from seqdance.tokenizer import SequenceError, encode

#: Values that mark an unlabelled residue.
MISSING_TOKENS = frozenset({"nan", "-", "", "na", "none"})
_SPLIT_VALUES = ("train", "valid", "test")


@dataclass
class LabelSet:
    """Rows to learn from: one sequence each, its label(s), and what splits and reports need."""

    task: str
    target: str
    source: str
    names: list[str]
    sequences: list[str]
    #: protein/mutant: (n,) float (regression) or int64 class index; residue: list of (L,) arrays (NaN / -1:
    #: unlabelled)
    y: np.ndarray | list[np.ndarray]
    classes: list[str] | None = None
    groups: np.ndarray | None = None  # assay of each row (mutant), else all "all"
    mutants: list[str] | None = None
    positions: list[tuple[int, ...]] | None = None  # mutated positions (1-based) of each mutant row
    wild_types: dict[str, str] = field(default_factory=dict)
    split_columns: dict[str, np.ndarray] = field(default_factory=dict)  # given splits / folds
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.names)

    @property
    def is_classification(self) -> bool:
        return self.classes is not None

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.classes is not None else 1

    def subset(self, rows: np.ndarray) -> LabelSet:
        """The rows ``rows`` (indices) as a label set of their own."""
        rows = np.asarray(rows, dtype=np.int64)
        pick = lambda seq: None if seq is None else [seq[i] for i in rows]  # noqa: E731
        y = self.y[rows] if isinstance(self.y, np.ndarray) else [self.y[i] for i in rows]
        return LabelSet(self.task, self.target, self.source, pick(self.names), pick(self.sequences), y, self.classes,
                        None if self.groups is None else self.groups[rows], pick(self.mutants), pick(self.positions),
                        dict(self.wild_types), {k: v[rows] for k, v in self.split_columns.items()}, list(self.notes))


def _read(path: str) -> pd.DataFrame:
    if not Path(path).is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    table = read_csv_table(path, dtype=str, keep_default_na=False)
    table.columns = [str(c).strip() for c in table.columns]
    if table.empty:
        raise InputError(f"{path}: no rows")
    return table


def _check_columns(table: pd.DataFrame, needed: Sequence[str], source: str, what: str) -> None:
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputError(f"{source}: missing column(s) {', '.join(missing)} ({what}; columns in the file: "
                         f"{', '.join(table.columns)})")


def _target_column(table: pd.DataFrame, target: str | None, source: str, fixed: Sequence[str]) -> str:
    candidates = [c for c in table.columns if c not in fixed and not c.startswith(("split_", "fold_", "info_"))]
    if target is None:
        if len(candidates) != 1:
            raise InputError(f"{source}: name the target column with --target (candidates: "
                             f"{', '.join(candidates) or 'none'})")
        return candidates[0]
    if target not in table.columns:
        raise InputError(f"{source}: unknown target column {target!r} (columns in the file: "
                         f"{', '.join(table.columns)})")
    return target


def _names(table: pd.DataFrame, source: str) -> list[str]:
    names = table["name"].str.strip()
    empty = np.flatnonzero((names == "").to_numpy())
    if len(empty):
        raise InputError(f"{source}: row {int(empty[0]) + 2} has no name")
    return list(names)


def _check_sequence(seq: str, name: str, row: int, source: str) -> str:
    seq = "".join(seq.split()).upper()
    if not seq:
        raise InputError(f"{source}: row {row} ({name}) has no sequence")
    try:
        encode(seq, name)
    except SequenceError as exc:
        raise InputError(f"{source}: row {row}: {exc}") from None
    return seq


def _numbers(values: Sequence[str], names: Sequence[str], column: str, source: str) -> np.ndarray:
    """Finite floats; a missing or non-numeric value is an error naming its row."""
    text = pd.Series(list(values), dtype=str).str.strip()
    out = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(out))
    if len(bad):
        row = int(bad[0])
        shown = text.iloc[row]
        what = "is missing" if shown == "" else f"is {shown!r}, not a finite number"
        raise InputError(f"{source}: label {column!r} at row {row + 2} ({names[row]}) {what}"
                         + ("" if shown == "" else " (class labels need --classification)"))
    return out


def _classes(values: Sequence[str], names: Sequence[str], column: str, source: str) -> tuple[np.ndarray, list[str]]:
    text = [v.strip() for v in values]
    for row, value in enumerate(text):
        if value == "":
            raise InputError(f"{source}: label {column!r} is missing at row {row + 2} ({names[row]})")
    classes = sorted(set(text), key=_natural_key)
    if len(classes) < 2:
        raise InputError(f"{source}: label {column!r} holds a single class ({classes[0]!r}); classification needs two")
    index = {c: k for k, c in enumerate(classes)}
    return np.array([index[v] for v in text], dtype=np.int64), classes


def _natural_key(text: str) -> tuple:
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def _split_columns(table: pd.DataFrame, source: str, prefix: str = "split_") -> dict[str, np.ndarray]:
    out = {}
    for column in [c for c in table.columns if c.startswith(prefix)]:
        values = table[column].str.strip().str.lower()
        if prefix == "split_":
            bad = np.flatnonzero(~values.isin(_SPLIT_VALUES).to_numpy())
            if len(bad):
                row = int(bad[0])
                raise InputError(f"{source}: column {column!r} row {row + 2}: {table[column].iloc[row]!r} is not "
                                 "train, valid or test")
        out[column] = values.to_numpy(dtype=object)
    return out


# --- protein ---------------------------------------------------------------------------------------------


def read_protein_labels(path: str, target: str | None, *, classification: bool = False) -> LabelSet:
    table = _read(path)
    _check_columns(table, ("name", "sequence"), path, "a protein label table needs name, sequence and a target")
    column = _target_column(table, target, path, ("name", "sequence"))
    names = _names(table, path)
    _duplicates(names, path)
    sequences = [_check_sequence(s, n, r + 2, path) for r, (s, n) in enumerate(zip(table["sequence"], names))]
    if classification:
        y, classes = _classes(table[column].tolist(), names, column, path)
    else:
        y, classes = _numbers(table[column].tolist(), names, column, path), None
    return LabelSet("protein", column, path, names, sequences, y, classes, np.array(["all"] * len(names)),
                    split_columns=_split_columns(table, path))


def _duplicates(names: Sequence[str], source: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(f"{source}: duplicate name {name!r}")
        seen.add(name)


# --- residue ---------------------------------------------------------------------------------------------

_VALUE_SEPARATORS = re.compile(r"[\s,;]+")


def read_residue_labels(path: str, target: str | None, *, classification: bool = False,
                        sequences_fasta: str | None = None) -> LabelSet:
    table = _read(path)
    long = "position" in table.columns
    if long:
        return _residue_long(table, path, target, classification, sequences_fasta)
    _check_columns(table, ("name", "sequence"), path,
                   "a residue label table needs name, sequence and a column of per-residue values, or name, "
                   "position, label")
    column = _target_column(table, target, path, ("name", "sequence"))
    names = _names(table, path)
    _duplicates(names, path)
    sequences = [_check_sequence(s, n, r + 2, path) for r, (s, n) in enumerate(zip(table["sequence"], names))]
    tokens = []
    for row, (name, seq, text) in enumerate(zip(names, sequences, table[column])):
        values = [t for t in _VALUE_SEPARATORS.split(text.strip()) if t != ""]
        length = len(seq.replace(":", ""))
        if len(values) != length:
            raise InputError(f"{path}: row {row + 2} ({name}): {len(values)} residue label(s) in {column!r} but the "
                             f"sequence has {length} residues")
        tokens.append(values)
    y, classes = _residue_values(tokens, names, column, path, classification)
    return LabelSet("residue", column, path, names, sequences, y, classes, np.array(["all"] * len(names)),
                    split_columns=_split_columns(table, path))


def _residue_values(tokens: list[list[str]], names: Sequence[str], column: str, source: str,
                    classification: bool) -> tuple[list[np.ndarray], list[str] | None]:
    if classification:
        present = sorted({t for row in tokens for t in row if t.lower() not in MISSING_TOKENS}, key=_natural_key)
        if len(present) < 2:
            raise InputError(f"{source}: label {column!r} holds fewer than two classes ({present})")
        index = {c: k for k, c in enumerate(present)}
        return [np.array([index.get(t, -1) if t.lower() not in MISSING_TOKENS else -1 for t in row], dtype=np.int64)
                for row in tokens], present
    out = []
    for name, row in zip(names, tokens):
        values = np.full(len(row), np.nan)
        for i, t in enumerate(row):
            if t.lower() in MISSING_TOKENS:
                continue
            try:
                values[i] = float(t)
            except ValueError:
                raise InputError(f"{source}: {name}, residue {i + 1}: label {t!r} is not a number (unlabelled "
                                 "residues are nan or -; class labels need --classification)") from None
            if not np.isfinite(values[i]):
                raise InputError(f"{source}: {name}, residue {i + 1}: label {t!r} is not finite")
        out.append(values)
    return out, None


def _residue_long(table: pd.DataFrame, path: str, target: str | None, classification: bool,
                  sequences_fasta: str | None) -> LabelSet:
    fixed = ("name", "position", "sequence")
    _check_columns(table, ("name", "position"), path, "a long residue table needs name, position and a label")
    column = _target_column(table, target, path, fixed)
    names_col = _names(table, path)
    sequences: dict[str, str] = {}
    if sequences_fasta is not None:
        sequences = {r.id: r.sequence for r in read_fasta(sequences_fasta)}
    elif "sequence" in table.columns:
        for row, (name, seq) in enumerate(zip(names_col, table["sequence"])):
            if seq.strip():
                sequences.setdefault(name, _check_sequence(seq, name, row + 2, path))
    order = list(dict.fromkeys(names_col))
    missing = [n for n in order if n not in sequences]
    if missing:
        raise InputError(f"{path}: no sequence for {', '.join(missing[:5])} (give a sequence column or --sequences "
                         "FASTA)")
    tokens = {n: ["nan"] * len(sequences[n].replace(":", "")) for n in order}
    for row, (name, pos, value) in enumerate(zip(names_col, table["position"], table[column])):
        try:
            p = int(pos)
        except ValueError:
            raise InputError(f"{path}: row {row + 2} ({name}): position {pos!r} is not an integer") from None
        if not 1 <= p <= len(tokens[name]):
            raise InputError(f"{path}: row {row + 2} ({name}): position {p} is outside the sequence (1.."
                             f"{len(tokens[name])} residues)")
        if value.strip() == "":
            raise InputError(f"{path}: label {column!r} is missing at row {row + 2} ({name}, position {p})")
        tokens[name][p - 1] = value.strip()
    y, classes = _residue_values([tokens[n] for n in order], order, column, path, classification)
    seqs = [_check_sequence(sequences[n], n, 0, path) for n in order]
    return LabelSet("residue", column, path, order, seqs, y, classes, np.array(["all"] * len(order)))


# --- mutant ----------------------------------------------------------------------------------------------

DMS_COLUMNS = ("DMS_score", "score")


def _assay_tables(paths: Sequence[str], wild_types: str | None, reference_csv: str | None
                  ) -> list[tuple[str, Path, str]]:
    """(assay, table path, wild type) of every assay named by ``paths`` (CSV files or ProteinGym folders)."""
    from seqdance.scoring.dms import discover_assays

    fasta = {r.id: r.sequence for r in read_fasta(wild_types)} if wild_types else {}
    out = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for assay in discover_assays(path, reference_csv=reference_csv):
                wt = fasta.get(assay.name, assay.wild_type)
                if wt is None:
                    raise InputError(f"{assay.table_path}: {assay.problem}")
                out.append((assay.name, assay.table_path, wt))
            continue
        if not path.is_file():
            raise FileNotFoundError(f"label file not found: {path}")
        name = path.stem
        wt = fasta.get(name)
        if wt is None and len(fasta) == 1 and len(paths) == 1:
            wt = next(iter(fasta.values()))
        if wt is None and reference_csv is not None:
            ref = read_csv_table(reference_csv)
            rows = ref[ref["DMS_id"].astype(str) == name] if "DMS_id" in ref.columns else ref.iloc[0:0]
            if len(rows) and "target_seq" in rows.columns:
                wt = str(rows["target_seq"].iloc[0])
        if wt is None:
            raise InputError(f"{path}: no wild type for assay {name!r}: give --wild-types FASTA (a record named "
                             f"{name}) or --reference-csv with its target_seq")
        out.append((name, path, wt))
    names = [a for a, _, _ in out]
    if len(set(names)) != len(names):
        raise InputError(f"assay names must be distinct, got {names}")
    return out


def read_mutant_labels(paths: Sequence[str], target: str | None, *, wild_types: str | None = None,
                       reference_csv: str | None = None, max_rows: int | None = None, seed: int = 0) -> LabelSet:
    """Every assay's mutants (checked against its wild type), with a seeded subset of ``max_rows`` per assay."""
    from seqdance.scoring.mutations import check_table_fields, check_wild_type, parse_mutants

    names, sequences, ys, groups, mutants, positions = [], [], [], [], [], []
    split_parts: dict[str, list[np.ndarray]] = {}
    wts: dict[str, str] = {}
    notes: list[str] = []
    chosen_target = None
    assays = _assay_tables(paths, wild_types, reference_csv)
    for assay, path, wt_text in assays:
        wt = check_wild_type(wt_text, f"{assay} wild type")
        wts[assay] = wt
        check_table_fields(path.read_text(encoding="utf-8-sig"), ",", path)
        table = _read(str(path))
        _check_columns(table, ("mutant",), str(path), "a DMS assay needs mutant and DMS_score")
        if target is None:
            column = next((c for c in DMS_COLUMNS if c in table.columns), None)
            if column is None:
                raise InputError(f"{path}: no DMS_score or score column; name the target with --target")
        else:
            column = _target_column(table, target, str(path), ("mutant",))
        chosen_target = chosen_target or column
        mutant_text = table["mutant"].tolist()
        y = _numbers(table[column].tolist(), mutant_text, column, str(path))
        given = table["mutated_sequence"].tolist() if "mutated_sequence" in table.columns else None
        checked = parse_mutants(mutant_text, wt, mutated_sequences=given)
        if checked.invalid:
            first = checked.invalid[0]
            raise InputError(f"{path}: row {first.row + 1}: mutant {first.mutant!r} does not match the wild type "
                             f"({first.reason}); {len(checked.invalid)} such row(s) in all")
        rows = np.arange(len(table))
        if max_rows is not None and len(rows) > max_rows:
            rows = np.sort(np.random.default_rng(seed).choice(len(rows), size=max_rows, replace=False))
            notes.append(f"{assay}: seeded subset of {max_rows} of {len(table)} mutants (seed {seed})")
        for r in rows:
            variant = checked.variants[r]
            names.append(f"{assay}:{variant.mutant}")
            sequences.append(variant.apply(wt))
            ys.append(y[r])
            groups.append(assay)
            mutants.append(variant.mutant)
            positions.append(tuple(s.index + 1 for s in variant.substitutions))
        for col in [c for c in table.columns if c.startswith("fold_")]:
            split_parts.setdefault(col, []).append(table[col].to_numpy(dtype=object)[rows])
    split_columns = {k: np.concatenate(v) for k, v in split_parts.items() if len(v) == len(assays)}
    return LabelSet("mutant", chosen_target or "DMS_score", ", ".join(str(p) for _, p, _ in assays), names,
                    sequences, np.asarray(ys, dtype=np.float64), None, np.asarray(groups, dtype=object), mutants,
                    positions, wts, split_columns, notes)


def read_labels(task: str, paths: Sequence[str], target: str | None, *, classification: bool = False,
                wild_types: str | None = None, reference_csv: str | None = None, sequences: str | None = None,
                max_rows: int | None = None, seed: int = 0) -> LabelSet:
    """The labels of ``task`` (see the module docstring)."""
    if task == "mutant":
        return read_mutant_labels(paths, target, wild_types=wild_types, reference_csv=reference_csv,
                                  max_rows=max_rows, seed=seed)
    if len(paths) != 1:
        raise InputError(f"a {task} task reads one label table, got {len(paths)}")
    if task == "protein":
        return read_protein_labels(paths[0], target, classification=classification)
    return read_residue_labels(paths[0], target, classification=classification, sequences_fasta=sequences)
