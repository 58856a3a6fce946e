"""The report of a ``seqdance compare`` folder: a run reader (one row per variant, from ``summary.csv``) and the
``variant`` panel (wild-type and variant profiles with Δ, Δ pair maps on a zero-centred symmetric scale, mutated
positions marked), drawn by ``assets/panels/variant.js``. Importing this module registers both.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from seqdance.errors import InputError
from seqdance.io_utils import read_csv_table
from seqdance.report.encode import block_mean, quantised_map, rounded
from seqdance.report.panels import PANELS, UNITS, Panel, register_panel
from seqdance.report.sources import RUN_READERS, RunReader, register_run_reader
from seqdance.report.views import ProteinEntry, ProteinView, ReportOptions, RunView
from seqdance.schema import INTERACTION_NAMES

#: Files of a compare run (``seqdance.scoring.compare_run``: RUN_RECORD, SUMMARY_CSV, BACKGROUND_NPZ), spelled here
#: so that deciding whether a folder is one needs no torch.
RUN_RECORD = "compare.json"
SUMMARY_CSV = "summary.csv"
BACKGROUND_NPZ = "background.npz"
#: Residue profiles the panel draws, in order (those the run compared).
PANEL_PROFILES = ("rmsf_nor", "sasa_mean", "sasa_std", "nma_res1", "nma_res2", "nma_res3")
KEY = "comparison"


def is_compare_run(path: Path) -> bool:
    return path.is_dir() and (path / RUN_RECORD).is_file() and (path / SUMMARY_CSV).is_file()


def _summary_row(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": row.get("kind"), "edits": row.get("description") or "none",
                           "score": _number(row.get("score"))}
    for family in ("flexibility", "exposure", "co-movement"):
        if f"top_{family}" in row:
            out[f"most changed ({family})"] = row.get(f"top_{family}") or ""
    if "background_percentile" in row:
        out["background percentile"] = _number(row.get("background_percentile"))
    return out


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return float(f"{number:.6g}") if np.isfinite(number) else None


def read_compare_run(path: Path) -> RunView:
    """A ``seqdance compare`` output folder."""
    from seqdance.inference.prediction_io import safe_stem

    try:
        record = json.loads((path / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path / RUN_RECORD}: not a readable compare record ({exc})") from None
    table = read_csv_table(path / SUMMARY_CSV, dtype={"variant": str, "mutant": str, "description": str},
                           keep_default_na=False)
    if "variant" not in table.columns:
        raise InputError(f"{path / SUMMARY_CSV}: not a compare summary (no 'variant' column)")
    entries = []
    notes = []
    for row in table.to_dict("records"):
        npz = path / f"{safe_stem(str(row['variant']))}.npz"
        entries.append(ProteinEntry(str(row["variant"]), _summary_row(row),
                                    partial(load_variant_view, npz, path / BACKGROUND_NPZ) if npz.is_file() else None))
    absent = sum(e.load is None for e in entries)
    if absent:
        notes.append(f"{absent} variant(s) of {SUMMARY_CSV} have no .npz file in {path}: listed without panels")
    details = {"wild type": f"{record.get('length')} residues", "properties": ", ".join(record.get("properties", []))}
    return RunView("compare", str(path), entries, model=record.get("model"),
                   model_fingerprint=record.get("model_fingerprint"), details=details, notes=notes)


def load_variant_view(npz: Path, background: Path) -> ProteinView:
    """One variant's arrays (its ``.npz``) and the run's background band, as the panel reads them."""
    try:
        with np.load(npz, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{npz}: not a readable compare file ({exc})") from None
    band = None
    if background.is_file():
        try:
            with np.load(background, allow_pickle=False) as data:
                band = {name: data[name] for name in data.files if name not in ("content_key", "variants")}
        except (OSError, ValueError):
            band = None
    wild_type = str(arrays["sequence"])
    view = ProteinView(str(arrays["id"]), wild_type, (len(wild_type),))
    view.extra[KEY] = {"arrays": arrays, "band": band}
    return view


def _marks(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    from seqdance.scoring.alignment import Alignment

    wild_type, variant = str(arrays["sequence"]), str(arrays["variant_sequence"])
    offset = int(arrays["offset"])
    alignment = Alignment(wild_type, variant, np.asarray(arrays["columns"]))
    return {"substituted": sorted({i + offset for i, _, _ in alignment.substitutions()}),
            "deleted": [[a + offset, b + offset] for a, b in alignment.deletions()],
            "inserted": [[x.after + offset + 0.5, x.residues] for x in alignment.insertions()],
            "wt_to_variant": alignment.wt_to_variant.tolist()}


class VariantPanel(Panel):
    kind = "variant"
    title = "How the variant changes the predicted dynamics"

    def payload(self, protein: ProteinView, options: ReportOptions) -> dict[str, Any] | None:
        found = protein.extra.get(KEY)
        if not found:
            return None
        arrays, band = found["arrays"], found["band"] or {}
        marks = _marks(arrays)
        index = np.asarray(marks.pop("wt_to_variant"))
        profiles = []
        for name in PANEL_PROFILES:
            if f"delta.{name}" not in arrays:
                continue
            mine = np.full(len(index), np.nan)
            mine[index >= 0] = arrays[f"variant.{name}"][index[index >= 0]]
            limits = band.get(name)
            profiles.append({"name": name, "unit": UNITS[name], "wt": rounded(arrays[f"wt.{name}"], 6),
                             "variant": rounded(mine, 6), "delta": rounded(arrays[f"delta.{name}"], 6),
                             "band": None if limits is None else [rounded(limits[0], 4), rounded(limits[-1], 4)]})
        maps = []
        for name, title, unit, matrix in self._maps(arrays):
            shown, factor = block_mean(matrix, options.pair_display_max)
            finite = np.abs(shown[np.isfinite(shown)])
            limit = float(finite.max()) if finite.size and finite.max() > 0 else 1e-6
            maps.append({"name": name, "title": title, "unit": unit, "factor": factor,
                         **quantised_map(shown, -limit, limit)})
        if not profiles and not maps:
            return None
        offset = int(arrays["offset"])
        notes = [f"Δ = variant − wild type on the wild type's residues (numbered from {offset}); red dashed lines: "
                 "substituted residues, grey: deleted, purple: insertions. Colour scales are centred at 0 with "
                 "symmetric limits ±max |Δ|; grey cells have no counterpart in the variant."]
        if band:
            notes.append("Grey band: 5–95 % of Δ over the background substitutions (random single substitutions "
                         "elsewhere in the protein).")
        if maps:
            notes.append(f"Pair maps are shown at 8-bit resolution ({maps[0]['levels']} levels); the .npz file keeps "
                         "full precision.")
        return {"data": {"name": str(arrays["id"]), "description": str(arrays["description"]), "offset": offset,
                         "n": len(index), "marks": marks, "profiles": profiles, "maps": maps}, "notes": notes}

    @staticmethod
    def _maps(arrays: dict[str, np.ndarray]) -> list[tuple[str, str, str, np.ndarray]]:
        out = []
        if "delta.corr" in arrays:
            out.append(("corr", "Δ corr (movement correlation)", UNITS["corr"],
                        np.asarray(arrays["delta.corr"], dtype=np.float64)))
        present = [n for n in INTERACTION_NAMES if f"delta.{n}" in arrays]
        if present:
            total = None
            for name in present:
                wt = np.asarray(arrays[f"wt.{name}"], dtype=np.float64)
                delta = np.asarray(arrays[f"delta.{name}"], dtype=np.float64)
                change = (wt + delta) ** 3 - wt ** 3
                total = change if total is None else total + change
            out.append(("interactions", "Δ interactions (Σ of the nine types, value³)", "summed frequency", total))
        return out


if not any(p.kind == VariantPanel.kind for p in PANELS):
    register_panel(VariantPanel())
if not any(r.name == "compare" for r in RUN_READERS):
    register_run_reader(RunReader("compare", is_compare_run, read_compare_run))
