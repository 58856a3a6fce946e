"""ProteinGym's reference files (``DMS_substitutions.csv``, ``DMS_indels.csv``): one row per assay.

A row names the assay (``DMS_id``), its file (``DMS_filename``), the wild type (``target_seq``), what ProteinGym
aggregates by (``UniProt_ID``, ``coarse_selection_type``, ``MSA_Neff_L_category``, ``taxon``) and the cutoff that
binarises ``DMS_score`` into ``DMS_score_bin`` (``DMS_binarization_cutoff``). See docs/design.md#proteingym-files.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seqdance.errors import InputError
from seqdance.io_utils import read_csv_table
from seqdance.scoring.proteingym_performance import AssayInfo, capitalise_category

#: Columns ProteinGym's aggregation needs of every row.
AGGREGATION_COLUMNS: tuple[str, ...] = ("UniProt_ID", "coarse_selection_type", "MSA_Neff_L_category", "taxon")
CUTOFF_COLUMN = "DMS_binarization_cutoff"
MUTATION_TYPES: tuple[str, ...] = ("substitutions", "indels")


@dataclass(frozen=True)
class ReferenceFile:
    """A reference file as read: its path, its rows and which benchmark it describes."""

    path: Path
    table: pd.DataFrame
    mutation_type: str = "substitutions"

    @property
    def missing_aggregation_columns(self) -> list[str]:
        """Columns ProteinGym's tables need that the file lacks (none for ProteinGym's own files)."""
        return [c for c in AGGREGATION_COLUMNS if c not in self.table.columns]

    @property
    def has_aggregation_columns(self) -> bool:
        return not self.missing_aggregation_columns

    def rows(self) -> dict[str, pd.Series]:
        """Row of each DMS_id, in file order."""
        return {str(row["DMS_id"]): row for _, row in self.table.iterrows()}

    def lookup_records(self) -> list[list[str | None]]:
        """The four aggregation columns of every row (what ProteinGym's UniProt-level table looks up), as JSON-able
        records, so that a run can aggregate again without the file."""
        if not self.has_aggregation_columns:
            return []
        part = self.table[list(AGGREGATION_COLUMNS)]
        return [[None if _missing(v) else str(v) for v in row] for row in part.itertuples(index=False)]


def lookup_frame(records: list[list[str | None]]) -> pd.DataFrame:
    """The reference rows :meth:`ReferenceFile.lookup_records` kept, as a frame of the four columns."""
    return pd.DataFrame(records, columns=list(AGGREGATION_COLUMNS))


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def read_reference(path: str | os.PathLike[str], *, mutation_type: str = "substitutions") -> ReferenceFile:
    """Read a reference file; it needs a unique ``DMS_id`` column (one line errors otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference file not found: {path}")
    table = read_csv_table(path)
    if "DMS_id" not in table.columns:
        raise InputError(f"{path}: a reference file needs a 'DMS_id' column (ProteinGym reference file layout)")
    ids = table["DMS_id"].astype(str)
    repeated = sorted(set(ids[ids.duplicated()]))
    if repeated:
        raise InputError(f"{path}: DMS_id {repeated[0]!r} appears on {int((ids == repeated[0]).sum())} rows")
    return ReferenceFile(path, table, mutation_type)


def assay_info(row: pd.Series) -> AssayInfo | None:
    """What the aggregation needs of a row (None when a value is missing)."""
    values = [row.get(c) for c in AGGREGATION_COLUMNS]
    if any(_missing(v) for v in values):
        return None
    uniprot, selection, msa, taxon = values
    return AssayInfo(str(row["DMS_id"]), str(uniprot), str(selection), str(capitalise_category(str(msa))), str(taxon))


def binarization_cutoff(row: pd.Series | None) -> float | None:
    """The row's ``DMS_binarization_cutoff`` (None when absent or not a finite number)."""
    if row is None or CUTOFF_COLUMN not in row.index:
        return None
    value = pd.to_numeric(pd.Series([row[CUTOFF_COLUMN]]), errors="coerce").iloc[0]
    return float(value) if np.isfinite(value) else None


def binarise(scores: pd.Series, cutoff: float) -> pd.Series:
    """``DMS_score_bin`` from a cutoff: 1 (fit) where ``DMS_score >= cutoff``, else 0; missing scores stay
    missing. ProteinGym's files carry the column; this fills it for files that lack it."""
    values = pd.to_numeric(scores, errors="coerce")
    out = (values >= cutoff).astype("Int64")
    out[values.isna()] = pd.NA
    return out


def assay_file_candidates(root: Path, row: pd.Series) -> list[Path]:
    """Where a reference row's assay file may be, in order: ``DMS_filename`` in the folder or its ``mutant/``, then
    ``<DMS_id>.csv`` there."""
    names = []
    if isinstance(row.get("DMS_filename"), str) and row["DMS_filename"].strip():
        names.append(row["DMS_filename"].strip())
    names.append(f"{row['DMS_id']}.csv")
    return [folder / name for name in dict.fromkeys(names) for folder in (root, root / "mutant")]
