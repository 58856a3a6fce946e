"""``seqdance score`` of one wild type: its mutants (a table or the saturation scan), scored into one CSV.

What the command does for one protein, as library functions: :func:`protein_variants` checks the mutants
against the wild type (invalid rows are collected, unscorable ones beyond the window dropped);
:func:`write_scores` scores them and writes the table atomically, plus the invalid rows beside it. Several
proteins go through :mod:`seqdance.scoring.proteins` instead (resumable and shardable).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from seqdance.errors import InputError
from seqdance.io_utils import atomic_path, read_fasta
from seqdance.scoring.mutations import (
    AnyVariant,
    InvalidMutant,
    check_wild_type,
    invalid_summary,
    parse_mutants,
    read_mutations,
    saturation_mutants,
)
from seqdance.scoring.windows import drop_unscorable


@dataclass
class ProteinVariants:
    """The variants of one wild type to score, the input rows they came from, and the rows left out."""

    wild_type: str
    variants: list[AnyVariant]
    rows: pd.DataFrame
    invalid: list[InvalidMutant] = field(default_factory=list)
    source: str = ""


def fasta_wild_type(path: str | os.PathLike[str], record_id: str | None = None) -> str:
    """The checked wild type of a FASTA file: its one record, or the record ``record_id``."""
    records = read_fasta(path)
    if record_id is not None:
        chosen = [r for r in records if r.id == record_id]
        if not chosen:
            raise InputError(f"{path}: no record {record_id!r} (records: {[r.id for r in records][:10]})")
        record = chosen[0]
    elif len(records) == 1:
        record = records[0]
    else:
        raise InputError(f"{path} holds {len(records)} records; choose one with --fasta-id")
    return check_wild_type(record.sequence, f"{path}:{record.id}")


def protein_variants(wild_type: str, *, mutations: str | os.PathLike[str] | None, offset: int = 1,
                     window: int, skip_invalid: bool = False) -> ProteinVariants:
    """The saturation scan (``mutations`` None) or the mutants of a table, checked against ``wild_type``.

    Invalid mutants stop here (one message listing them) unless ``skip_invalid``; none left is an error.
    """
    if mutations is None:
        variants = saturation_mutants(wild_type, offset=offset)
        return ProteinVariants(wild_type, variants, pd.DataFrame({"mutant": [v.mutant for v in variants]}))
    table = read_mutations(mutations)
    sequences = table["mutated_sequence"].tolist() if "mutated_sequence" in table.columns else None
    checked = parse_mutants(table["mutant"].tolist(), wild_type, offset=offset, mutated_sequences=sequences,
                            indels=True)
    checked = drop_unscorable(checked, len(wild_type), size=window)
    if checked.invalid and not skip_invalid:
        raise InputError(invalid_summary(checked.invalid, str(mutations)) + "\n(use --skip-invalid to score the rest)")
    if not checked.variants:
        raise InputError("no valid mutants to score")
    rows = table.iloc[[r - 1 for r in checked.rows]].reset_index(drop=True)
    return ProteinVariants(wild_type, list(checked.variants), rows, list(checked.invalid), str(mutations))


def write_scores(output: str | os.PathLike[str], table: pd.DataFrame, invalid: list[InvalidMutant]) -> Path | None:
    """Write the scores table to ``output`` and, when rows were skipped, ``<output>.invalid.csv`` (returned)."""
    out = Path(output)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    if not invalid:
        return None
    invalid_path = out.with_name(out.stem + ".invalid.csv")
    frame = pd.DataFrame([{"row": i.row, "mutant": i.mutant, "reason": i.reason} for i in invalid])
    with atomic_path(invalid_path) as tmp:
        frame.to_csv(tmp, index=False)
    return invalid_path
