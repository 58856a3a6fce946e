"""What a report shows, independent of where it came from: a run's proteins, their data and the run's facts.

Readers of run folders (:mod:`seqdance.report.sources`) and the web app build these; panels
(:mod:`seqdance.report.panels`) read them. A protein's heavy data (prediction arrays, score tables) is loaded only
for the proteins whose panels the page shows (:attr:`ProteinEntry.load`); the table of proteins needs only its
summary row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Largest pair map drawn at full resolution; longer proteins are block-averaged down to at most this size.
PAIR_DISPLAY_MAX = 400
#: Proteins whose panels a report holds by default (the table lists every protein of the run).
DEFAULT_MAX_PROTEINS = 100

#: Helix and strand classes of the DSSP 8-class alphabet (schema ``SS_CLASSES``), for the table's percentages.
HELIX_CLASSES = ("H", "G", "I")
STRAND_CLASSES = ("E", "B")


@dataclass
class ProteinView:
    """One protein's data: its prediction (property name -> residue-aligned array, as ``seqdance predict`` writes),
    its score table (as ``seqdance score`` writes: ``mutant``, ``score``, ``change_*``...), or both.

    ``extra`` holds the data of panels added later (e.g. per-variant dynamics changes), keyed by panel.
    """

    id: str
    sequence: str | None = None  # chains joined by ":"; None when the run's files do not hold it
    chain_lengths: tuple[int, ...] | None = None
    prediction: Mapping[str, np.ndarray] | None = None
    scores: pd.DataFrame | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProteinEntry:
    """A row of the table of proteins; ``load`` gives its :class:`ProteinView` (None: no panels to show)."""

    id: str
    summary: dict[str, Any]
    load: Callable[[], ProteinView] | None = None


@dataclass
class RunView:
    """A run as a report shows it: what made it (kind, model, its fingerprint), its proteins and notes."""

    kind: str  # "predict", "score", ... (the command that wrote the files)
    source: str  # the folder or file read, as shown on the page
    proteins: list[ProteinEntry]
    model: str | None = None
    model_fingerprint: str | None = None
    details: dict[str, str] = field(default_factory=dict)  # further facts shown in the header
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReportOptions:
    """How much a page holds: panels of at most ``max_proteins`` proteins (or of ``ids``), pair maps of at most
    ``pair_display_max`` cells per side."""

    max_proteins: int = DEFAULT_MAX_PROTEINS
    ids: tuple[str, ...] | None = None
    pair_display_max: int = PAIR_DISPLAY_MAX


def residue_summary(table: pd.DataFrame) -> dict[str, Any]:
    """Table row of one protein's residue table (the columns of ``residues.csv``)."""
    ss = table["ss"].astype(str)
    return {
        "residues": len(table),
        "chains": int(table["chain"].max()) if len(table) else 0,
        "mean rmsf_nor": _finite_mean(table["rmsf_nor"]),
        "mean sasa_mean (nm²)": _finite_mean(table["sasa_mean"]),
        "helix %": round(100.0 * float(ss.isin(HELIX_CLASSES).mean()), 1) if len(table) else None,
        "strand %": round(100.0 * float(ss.isin(STRAND_CLASSES).mean()), 1) if len(table) else None,
    }


def score_summary(table: pd.DataFrame) -> dict[str, Any]:
    """Table row of one protein's score table."""
    row: dict[str, Any] = {"variants": len(table)}
    if "n_mutations" in table:
        row["multi-mutants"] = int((pd.to_numeric(table["n_mutations"], errors="coerce") > 1).sum())
    if "score" in table and len(table):
        scores = pd.to_numeric(table["score"], errors="coerce")
        row["median score"] = _finite_mean(scores, median=True)
        if scores.notna().any():
            row["lowest score"] = str(table["mutant"].iloc[int(np.nanargmin(scores.to_numpy()))])
    return row


def _finite_mean(values: pd.Series, *, median: bool = False) -> float | None:
    data = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    data = data[np.isfinite(data)]
    if not len(data):
        return None
    return float(f"{(np.median(data) if median else data.mean()):.4g}")
