"""Runs read back from the files their commands write, one reader per kind of run.

* ``predict``: a folder of ``<id>.npz`` files and ``residues.csv`` (read with
  :func:`seqdance.inference.prediction_io.load_prediction`; the table of proteins comes from ``residues.csv``);
* ``score``: a folder with ``scores.csv`` (and ``proteins/<id>.json``, the model fingerprints), or one score
  table ``OUT.csv`` (one protein; several when it has an ``id`` column).

A reader is ``(name, matches(path), read(path))``; :func:`register_run_reader` adds one (e.g. for the outputs of a
later command) without touching the others.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from seqdance.errors import InputError
from seqdance.io_utils import read_csv_table
from seqdance.report.views import ProteinEntry, ProteinView, RunView, residue_summary, score_summary

#: Files of a predict run (``seqdance.inference.runs.RESIDUE_CSV``) and of a score run of several proteins
#: (``seqdance.scoring.proteins``: COMBINED_CSV, PROTEINS_DIR), spelled here so that reading a report's
#: source needs neither torch nor the run machinery.
RESIDUE_CSV = "residues.csv"
COMBINED_CSV = "scores.csv"
PROTEINS_DIR = "proteins"
MUTANT_COLUMN = "mutant"


@dataclass(frozen=True)
class RunReader:
    name: str
    matches: Callable[[Path], bool]
    read: Callable[[Path], RunView]


def _is_predict_run(path: Path) -> bool:
    return path.is_dir() and ((path / RESIDUE_CSV).is_file() or any(path.glob("*.npz")))


def _is_score_run(path: Path) -> bool:
    if path.is_dir():
        return (path / COMBINED_CSV).is_file()
    return path.is_file() and path.suffix.lower() in (".csv", ".tsv", ".gz")


def read_predict_run(path: Path) -> RunView:
    """A ``seqdance predict`` output folder."""
    from seqdance.inference.prediction_io import residue_table, safe_stem

    npz_files = {p.stem: p for p in sorted(path.glob("*.npz"))}
    entries: list[ProteinEntry] = []
    notes: list[str] = []
    csv = path / RESIDUE_CSV
    if csv.is_file():
        table = read_csv_table(csv, dtype={"id": str})
        missing = [c for c in ("id", "chain", "ss", "rmsf_nor", "sasa_mean") if c not in table.columns]
        if missing:
            raise InputError(f"{csv}: not a seqdance residue table (no column {', '.join(missing)})")
        for seq_id, rows in table.groupby("id", sort=False):
            npz = npz_files.get(safe_stem(str(seq_id)))
            entries.append(ProteinEntry(str(seq_id), residue_summary(rows),
                                        partial(_load_prediction_view, npz) if npz else None))
        absent = sum(e.load is None for e in entries)
        if absent:
            notes.append(f"{absent} protein(s) of {RESIDUE_CSV} have no .npz file in {path}: listed without panels")
    else:  # e.g. the shards of a run not merged yet: the .npz files are all there is
        notes.append(f"{path} has no {RESIDUE_CSV} (a sharded run not merged yet?): proteins read from the .npz files")
        for npz in npz_files.values():
            view = _load_prediction_view(npz)
            summary = residue_summary(residue_table(view.id, view.sequence or "", dict(view.prediction or {})))
            entries.append(ProteinEntry(view.id, summary, partial(_load_prediction_view, npz)))
    if not entries:
        raise InputError(f"{path}: no predictions ({RESIDUE_CSV} is empty and there is no .npz file)")
    first = next((e for e in entries if e.load is not None), None)
    meta = _npz_metadata(npz_files[_stem_of(first.id)]) if first is not None else {}
    details = {}
    if meta.get("options"):
        details["window options"] = meta["options"]
    return RunView("predict", str(path), entries, model=meta.get("model"),
                   model_fingerprint=meta.get("model_fingerprint"), details=details, notes=notes)


def _stem_of(seq_id: str) -> str:
    from seqdance.inference.prediction_io import safe_stem

    return safe_stem(seq_id)


def _npz_metadata(npz: Path) -> dict[str, str]:
    try:
        with np.load(npz, allow_pickle=False) as data:
            return {k: str(data[k]) for k in ("model", "model_fingerprint", "options") if k in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{npz}: not a readable prediction file ({exc})") from None


def _load_prediction_view(npz: Path) -> ProteinView:
    from seqdance.inference.prediction_io import load_prediction

    try:
        prediction = load_prediction(npz)
    except (OSError, ValueError, KeyError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{npz}: not a readable prediction file ({exc})") from None
    view = ProteinView(prediction.id, prediction.sequence, prediction.chain_lengths, prediction=prediction)
    view.extra["metadata"] = _npz_metadata(npz)
    return view


def read_score_run(path: Path) -> RunView:
    """A ``seqdance score`` output: a folder of several proteins (``scores.csv``) or one table."""
    table_path = path / COMBINED_CSV if path.is_dir() else path
    sep = "\t" if ".tsv" in table_path.name.lower() else ","
    table = read_csv_table(table_path, sep=sep, dtype={"id": str, MUTANT_COLUMN: str})
    if MUTANT_COLUMN not in table.columns:
        raise InputError(f"{table_path}: not a seqdance score table (no {MUTANT_COLUMN!r} column)")
    if "id" in table.columns:
        groups = [(str(k), g.drop(columns="id").reset_index(drop=True)) for k, g in table.groupby("id", sort=False)]
    else:
        name = table_path.name.split(".")[0] or "protein"
        groups = [(name, table)]
    entries = [ProteinEntry(seq_id, score_summary(rows), partial(ProteinView, seq_id, scores=rows))
               for seq_id, rows in groups]
    if not entries:
        raise InputError(f"{table_path}: the score table has no rows")
    fingerprints = _score_fingerprints(path) if path.is_dir() else {}
    details = {"ESM2 fingerprint": fingerprints["esm2"]} if fingerprints.get("esm2") else {}
    return RunView("score", str(path), entries, model_fingerprint=fingerprints.get("model"), details=details)


def _score_fingerprints(path: Path) -> dict[str, str | None]:
    """Model fingerprints recorded beside a protein's table (``proteins/<id>.json``), or nothing."""
    for meta in sorted((path / PROTEINS_DIR).glob("*.json")):
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return {"model": data.get("model"), "esm2": data.get("esm2")}
    return {}


#: The readers, tried in order.
RUN_READERS: list[RunReader] = [
    RunReader("score", _is_score_run, read_score_run),
    RunReader("predict", _is_predict_run, read_predict_run),
]


def register_run_reader(reader: RunReader, *, first: bool = True) -> None:
    """Add a reader of another kind of run (tried before the others unless ``first`` is False)."""
    RUN_READERS.insert(0 if first else len(RUN_READERS), reader)


def read_run(path: str | os.PathLike[str]) -> RunView:
    """Read the run at ``path`` with the first reader that recognises it."""
    target = Path(path)
    if not target.exists():
        raise InputError(f"{target}: no such file or folder")
    for reader in RUN_READERS:
        if reader.matches(target):
            return reader.read(target)
    raise InputError(f"{target}: not a seqdance run (expected a 'seqdance predict' folder with <id>.npz files and "
                     f"{RESIDUE_CSV}, a 'seqdance score' folder with {COMBINED_CSV}, or a score table .csv)")

