"""The panels of a protein on a report page, as a registry: each panel turns a :class:`ProteinView` into compact
JSON, and a JavaScript renderer of the same ``kind`` (``assets/panels/<kind>.js``) draws it with plotly.js.

Built in: residue profiles (``profiles``), pair maps (``pairs``) and the saturation heat map of a score table
(``saturation``). A new panel, e.g. per-variant dynamics changes, is a :class:`Panel` subclass whose ``payload``
reads ``view.extra[...]`` (filled by its run reader) plus its renderer script, added with :func:`register_panel`;
nothing else changes.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from seqdance.display.plots import SS_COLOURS, SS_NAMES, summed_interactions
from seqdance.errors import InputError
from seqdance.report.encode import block_mean, quantised_map, rounded
from seqdance.report.views import ProteinView, ReportOptions
from seqdance.schema import INTERACTION_NAMES, PROPERTY_NAMES, SS_CLASSES
from seqdance.tokenizer import AMINO_ACIDS

#: The unit (or scale) of each property, shown beside every value on the page.
UNITS: dict[str, str] = {
    "sasa_mean": "nm²",
    "sasa_std": "nm²",
    "rmsf_nor": "fraction of the protein's largest RMSF",
    "ss": "fraction of frames",
    "chi": "fraction of frames",
    "phi": "fraction of frames",
    "psi": "fraction of frames",
    **{f"nma_res{i}": "GNM mean-square fluctuation, relative (1/γ)" for i in (1, 2, 3)},
    **{name: "cube root of the frequency" for name in INTERACTION_NAMES},
    "corr": "correlation, −1 to 1",
    **{f"nma_pair{i}": "correlation, −1 to 1" for i in (1, 2, 3)},
}
SUMMED_INTERACTIONS = "interactions"
UNITS[SUMMED_INTERACTIONS] = "summed frequency over the nine interaction types"

_SINGLE = re.compile(r"^([A-Za-z])(-?\d+)([A-Za-z])$")
#: Score columns the heat map can show (higher = fitter); the change_* columns feed "most changed".
HEATMAP_COLUMNS = ("score", "esm2_masked_marginal", "esm2_wt_marginal")
TOP_CHANGED = 3


class Panel:
    """One kind of panel. ``payload`` gives ``{"data": ..., "notes": [...]}`` for a protein, or None when the
    protein has nothing this panel shows; ``script`` is the file of its renderer under ``assets/panels``."""

    kind: str = ""
    title: str = ""

    @property
    def script(self) -> str:
        return f"{self.kind}.js"

    def payload(self, protein: ProteinView, options: ReportOptions) -> dict[str, Any] | None:
        raise NotImplementedError


class ProfilesPanel(Panel):
    kind = "profiles"
    title = "Residue profiles"

    def payload(self, protein: ProteinView, options: ReportOptions) -> dict[str, Any] | None:
        values = protein.prediction
        if values is None or "rmsf_nor" not in values:
            return None
        rows: list[dict[str, Any]] = [{"title": "Cα fluctuation", "traces": [_trace(values, "rmsf_nor")]}]
        if "sasa_mean" in values:
            trace = _trace(values, "sasa_mean")
            if "sasa_std" in values:
                trace["spread"] = _trace(values, "sasa_std")
            rows.append({"title": "solvent-accessible surface", "traces": [trace]})
        if "ss" in values:
            fractions = np.asarray(values["ss"])
            rows.append({"title": "secondary structure (DSSP)", "stacked": True, "traces": [
                {"name": cls, "label": SS_NAMES[cls], "color": SS_COLOURS[cls], "unit": UNITS["ss"],
                 "values": rounded(fractions[:, k], 4)} for k, cls in enumerate(SS_CLASSES)]})
        gnm = [_trace(values, f"nma_res{i}") for i in (1, 2, 3) if f"nma_res{i}" in values]
        if gnm:
            for trace, label in zip(gnm, ("low-frequency modes", "middle", "high-frequency modes")):
                trace["label"] = f"{trace['name']} ({label})"
            rows.append({"title": "GNM fluctuation (log scale)", "log": True, "traces": gnm})
        return {"data": {"rows": rows}, "notes": []}


def _trace(values, name: str) -> dict[str, Any]:
    return {"name": name, "label": name, "unit": UNITS[name], "values": rounded(values[name], 6)}


class PairMapsPanel(Panel):
    kind = "pairs"
    title = "Pair maps"

    def payload(self, protein: ProteinView, options: ReportOptions) -> dict[str, Any] | None:
        values = protein.prediction
        if values is None:
            return None
        maps: list[tuple[str, str, np.ndarray, float, float, str]] = []
        if "corr" in values:
            maps.append(("corr", "movement correlation (corr)", np.asarray(values["corr"]), -1.0, 1.0, "diverging"))
        summed = summed_interactions(values)
        if summed is not None:
            top = float(np.nanmax(summed)) if np.isfinite(summed).any() else 1.0
            maps.append((SUMMED_INTERACTIONS, "interactions (Σ of the nine types, value³)", summed, 0.0,
                         max(top, 1e-6), "sequential"))
        if "nma_pair1" in values:
            maps.append(("nma_pair1", "ANM correlation, low-frequency modes (nma_pair1)",
                         np.asarray(values["nma_pair1"]), -1.0, 1.0, "diverging"))
        if not maps:
            return None
        n = maps[0][2].shape[0]
        encoded, factor = [], 1
        for name, title, matrix, lo, hi, scale in maps:
            shown, factor = block_mean(matrix, options.pair_display_max)
            encoded.append({"name": name, "title": title, "unit": UNITS[name], "scale": scale,
                            **quantised_map(shown, lo, hi)})
        notes = [f"Pair values are shown at 8-bit resolution ({encoded[0]['levels']} levels over each map's colour "
                 "range); the .npz files keep full precision. Drag a box to zoom, double-click to reset."]
        if factor > 1:
            notes.insert(0, f"This protein has {n} residues: its maps are shown averaged over blocks of {factor} × "
                         f"{factor} residues ({encoded[0]['n']} cells per side; the display limit is "
                         f"{options.pair_display_max}). The .npz files keep every pair.")
        if np.isnan(maps[0][2]).any():
            notes.append("Grey cells are pairs that shared no prediction window (NaN in the files).")
        return {"data": {"n": n, "factor": factor, "chain_lengths": list(protein.chain_lengths or (n,)),
                         "maps": encoded}, "notes": notes}


class SaturationPanel(Panel):
    kind = "saturation"
    title = "Mutation scores (single substitutions)"

    def payload(self, protein: ProteinView, options: ReportOptions) -> dict[str, Any] | None:
        table = protein.scores
        if table is None or "mutant" not in table or not len(table):
            return None
        return saturation_payload(table)


def saturation_payload(table: pd.DataFrame) -> dict[str, Any] | None:
    """Heat-map data of the single substitutions of a score table: position × amino-acid grids of the score
    columns, and per cell the properties whose change is most extreme among the protein's variants."""
    mutants = table["mutant"].astype(str).str.strip()
    parsed = mutants.str.extract(_SINGLE)
    single = parsed.notna().all(axis=1).to_numpy()
    wt, mt = parsed[0].str.upper(), parsed[2].str.upper()
    single = single & (wt != mt).to_numpy() & mt.isin(list(AMINO_ACIDS)).to_numpy()
    n_multi = int(mutants.str.contains(":", regex=False).sum())
    if not single.any():
        return None
    rows = np.flatnonzero(single)
    numbers = parsed[1].to_numpy()[rows].astype(np.int64)
    positions = np.unique(numbers)
    column_of = {int(p): k for k, p in enumerate(positions)}
    aa_row = {aa: k for k, aa in enumerate(AMINO_ACIDS)}
    wild = ["?"] * len(positions)
    cells = np.full((len(AMINO_ACIDS), len(positions)), -1, dtype=np.int64)  # the table row of each cell
    for r, number in zip(rows, numbers):
        col = column_of[int(number)]
        wild[col] = wt.iloc[r]
        aa = aa_row[mt.iloc[r]]
        if cells[aa, col] < 0:
            cells[aa, col] = r
    filled = cells >= 0
    columns = []
    for name in [c for c in HEATMAP_COLUMNS if c in table.columns]:
        source = pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=np.float64)
        grid = np.full(cells.shape, np.nan)
        grid[filled] = source[cells[filled]]
        columns.append({"name": name, "grid": rounded(grid, 4)})
    changes = [c for c in table.columns if c.startswith("change_")]
    top: dict[str, Any] | None = None
    if changes:
        values = table[changes].apply(pd.to_numeric, errors="coerce")
        ranks = values.rank(pct=True).to_numpy(dtype=np.float64)
        ranks = np.where(np.isfinite(ranks), ranks, -1.0)
        order = np.argsort(-ranks, axis=1, kind="stable")[:, :TOP_CHANGED]
        idx = np.full((*cells.shape, order.shape[1]), -1, dtype=np.int64)
        val = np.full(idx.shape, np.nan)
        idx[filled] = order[cells[filled]]
        val[filled] = np.take_along_axis(values.to_numpy(dtype=np.float64), order, axis=1)[cells[filled]]
        top = {"properties": [c.removeprefix("change_") for c in changes], "index": idx.tolist(),
               "value": rounded(val, 3)}
    if not columns and top is None:
        return None
    notes = ["Hover a cell for the mutant, its scores and the properties whose change is most extreme among this "
             "protein's variants (percentile rank of each change_<property> column; S is the relative change). "
             "Higher scores = fitter (ProteinGym convention); dots mark the wild type."]
    if n_multi:
        notes.append(f"{n_multi} multi-mutant(s) of the table are not in the heat map (it shows single "
                     "substitutions).")
    return {"data": {"positions": positions.tolist(), "wild_type": wild, "amino_acids": AMINO_ACIDS,
                     "columns": columns, "top": top, "n_single": int(filled.sum())}, "notes": notes}


#: The registry, in page order.
PANELS: list[Panel] = [ProfilesPanel(), PairMapsPanel(), SaturationPanel()]


def register_panel(panel: Panel, *, index: int | None = None) -> None:
    """Add a panel (at ``index`` in page order; last by default); its renderer is ``assets/panels/<kind>.js``
    of the package that defines it (see :func:`panel_script`)."""
    if any(p.kind == panel.kind for p in PANELS):
        raise InputError(f"a panel of kind {panel.kind!r} is registered already")
    PANELS.insert(len(PANELS) if index is None else index, panel)


def panel_script(panel: Panel) -> str:
    """The JavaScript renderer of a panel: ``assets/panels/<script>`` beside the module that defines its class."""
    package = type(panel).__module__.rpartition(".")[0]
    return (resources.files(package) / "assets" / "panels" / panel.script).read_text(encoding="utf-8")


def protein_payload(protein: ProteinView, options: ReportOptions) -> dict[str, Any]:
    """Everything the page draws for one protein."""
    panels = []
    for panel in PANELS:
        payload = panel.payload(protein, options)
        if payload is not None:
            panels.append({"kind": panel.kind, "title": panel.title, **payload})
    notes = []
    if protein.prediction is not None and "corr" not in protein.prediction:
        notes.append("No pair maps: this prediction has residue properties only (predicted with seqdance predict "
                     "--no-pairs).")
    return {"id": protein.id, "sequence": protein.sequence, "chain_lengths": list(protein.chain_lengths or ()),
            "panels": panels, "notes": notes}


def check_units() -> list[str]:
    """Property names without a unit (empty when the table is complete; a test checks it)."""
    return [name for name in PROPERTY_NAMES if name not in UNITS]
