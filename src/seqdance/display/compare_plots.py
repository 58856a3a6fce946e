"""Pictures of how one variant changes the predicted dynamics (matplotlib, Agg backend, no global state).

* **profiles** (``<variant>.profiles.png``) — on the wild type's residue numbers: for ``rmsf_nor``, ``sasa_mean``
  and ``nma_res1`` the wild-type and variant profiles overlaid, with Δ = variant − wild type as bars below on a
  zero-centred, symmetric axis; the change of the helix and strand fractions; and for the pair properties the
  per-residue sum Σ_j |Δ_ij| (``corr`` and the summed interactions); last, each residue's relative change averaged
  over every property compared (the relative change of ``score``, residue by residue). Mutated positions are red
  dashed lines with a triangle on top, deleted residues grey spans, insertions a triangle between the residues they
  follow and precede.
  With a background (N random single substitutions elsewhere), the 5–95 % range of their Δ is a grey band;
* **pair maps** (``<variant>.pairs.png``) — Δ of ``corr``, of the summed interaction frequency (Σ over the nine
  types of value³) and of ``nma_pair1``, on a diverging colour map centred at 0 with symmetric limits ±max |Δ|;
  pairs of deleted residues are grey; mutated positions are marked on both axes. With none of those three, the
  first pair property compared is drawn.

The functions read what a :class:`seqdance.scoring.compare.VariantComparison` offers (its arrays and alignment);
they import nothing from the scoring layer. The variant is named in every title.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from seqdance.display.plots import _save
from seqdance.schema import INTERACTION_NAMES, SS_CLASSES

#: Residue properties drawn as overlaid profiles (name, axis label with unit, unit of its Δ).
PROFILE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("rmsf_nor", "RMSF (fraction of\nthe largest)", "fraction"),
    ("sasa_mean", "SASA (nm²)", "nm²"),
    ("nma_res1", "GNM fluctuation,\nlow modes (rel.)", "rel."),
)
HELIX = ("H", "G", "I")
STRAND = ("E", "B")
WT_COLOUR, VARIANT_COLOUR = "#252525", "#e6550d"
UP_COLOUR, DOWN_COLOUR = "#cb181d", "#2171b5"
SITE_COLOUR = "#d62728"


def _marks(comparison: Any) -> tuple[list[int], list[tuple[int, int]], list[tuple[float, str]]]:
    """Mutated positions (residue numbers), deleted spans and insertion points (x, residues) in residue numbers."""
    offset = comparison.offset
    alignment = comparison.alignment
    sites = sorted({i + offset for i, _, _ in alignment.substitutions()})
    deleted = [(first + offset, last + offset) for first, last in alignment.deletions()]
    inserted = [(ins.after + offset + 0.5, ins.residues) for ins in alignment.insertions()]
    return sites, deleted, inserted


def _decorate(ax, comparison: Any, *, top: bool = False) -> None:
    sites, deleted, inserted = _marks(comparison)
    for s in sites:
        ax.axvline(s, color=SITE_COLOUR, linewidth=0.8, linestyle=(0, (3, 2)), alpha=0.8, zorder=0)
    for first, last in deleted:
        ax.axvspan(first - 0.5, last + 0.5, color="#bdbdbd", alpha=0.6, linewidth=0, zorder=0)
    for x, _ in inserted:
        ax.axvline(x, color="#6a51a3", linewidth=0.8, linestyle=(0, (1, 1.5)), zorder=0)
    if top:
        transform = ax.get_xaxis_transform()
        ax.scatter(sites, [1.02] * len(sites), marker="v", color=SITE_COLOUR, s=28, transform=transform,
                   clip_on=False, zorder=5)
        for first, last in deleted:
            ax.text((first + last) / 2, 1.03, "del", transform=transform, ha="center", va="bottom", fontsize=7,
                    color="#525252")
        for x, residues in inserted:
            ax.scatter([x], [1.02], marker="v", color="#6a51a3", s=28, transform=transform, clip_on=False, zorder=5)
            ax.text(x, 1.06, f"+{residues if len(residues) <= 6 else str(len(residues))}", transform=transform,
                    ha="center", va="bottom", fontsize=7, color="#6a51a3")


def _title(comparison: Any) -> str:
    """The variant's name, with its edits when the name does not say them."""
    described = comparison.description or "identical to the wild type"
    return comparison.name if described == comparison.name else f"{comparison.name} ({described})"


def _symmetric(ax, *arrays: np.ndarray) -> None:
    finite = [np.abs(a[np.isfinite(a)]) for a in arrays if a is not None]
    top = max((float(a.max()) for a in finite if a.size), default=0.0)
    top = top * 1.1 if top > 0 else 1e-3
    ax.set_ylim(-top, top)
    ax.axhline(0, color="#737373", linewidth=0.7)


def _bars(ax, x: np.ndarray, delta: np.ndarray, colour: str | None = None) -> None:
    """Bars of one residue each, drawn as two filled step outlines (one polygon per sign: fast for long proteins)."""
    values = np.nan_to_num(delta)
    if colour is not None:
        ax.fill_between(x, 0, values, step="mid", color=colour, linewidth=0)
        return
    ax.fill_between(x, 0, np.where(values > 0, values, 0.0), step="mid", color=UP_COLOUR, linewidth=0)
    ax.fill_between(x, 0, np.where(values < 0, values, 0.0), step="mid", color=DOWN_COLOUR, linewidth=0)


def _band(ax, x: np.ndarray, band: np.ndarray | None) -> np.ndarray | None:
    if band is None:
        return None
    ax.fill_between(x, band[0], band[-1], color="#969696", alpha=0.35, linewidth=0, step="mid",
                    label="background 5–95 %", zorder=0)
    return np.concatenate([band[0], band[-1]])


def _class_fraction(values: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    return values[..., [SS_CLASSES.index(c) for c in classes]].sum(axis=-1)


def summed_interaction_delta(comparison: Any) -> np.ndarray | None:
    """Δ of the summed interaction frequency (Σ over the types of value³; the model predicts cube roots) on the wild
    type's residues, or None without interaction types."""
    present = [name for name in INTERACTION_NAMES if name in comparison.delta]
    if not present:
        return None
    total = np.zeros((len(comparison.wild_type), len(comparison.wild_type)))
    for name in present:
        wt = np.asarray(comparison.wild_type_values[name], dtype=np.float64)
        total += comparison.at_wild_type(name) ** 3 - wt ** 3
    return total


def plot_variant_profiles(
    path: str | os.PathLike[str],
    comparison: Any,
    *,
    band: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write the profile figure of one variant."""
    from matplotlib.figure import Figure

    n, offset = len(comparison.wild_type), comparison.offset
    x = np.arange(offset, n + offset)
    rows: list[tuple[str, str]] = []  # (kind, name)
    for name, _, _ in PROFILE_ROWS:
        if name in comparison.delta:
            rows += [("values", name), ("delta", name)]
    if "ss" in comparison.delta:
        rows.append(("ss", "ss"))
    pair_rows = [name for name in ("corr",) if name in comparison.delta]
    if any(name in comparison.delta for name in INTERACTION_NAMES):
        pair_rows.append("interactions")
    rows += [("pair", name) for name in pair_rows]
    rows.append(("relative", "all"))
    heights = [1.3 if kind == "values" else 1.0 for kind, _ in rows]
    width = float(np.clip(7 + n / 40, 9, 18))
    total_height = 1.5 + sum(heights) * 1.12
    figure = Figure(figsize=(width, total_height))
    figure.subplots_adjust(left=1.2 / width, right=1 - 1.9 / width, top=1 - 0.75 / total_height,
                           bottom=0.55 / total_height, hspace=0.28)  # fixed margins: constrained layout is slow
    axes = np.atleast_1d(figure.subplots(len(rows), 1, sharex=True, gridspec_kw={"height_ratios": heights}))
    labels = {name: label for name, label, _ in PROFILE_ROWS}
    delta_units = {name: unit for name, _, unit in PROFILE_ROWS}
    band = band or {}
    for ax, (kind, name) in zip(axes, rows):
        if kind == "values":
            wt = np.asarray(comparison.wild_type_values[name], dtype=np.float64)
            mine = comparison.at_wild_type(name)
            ax.plot(x, wt, color=WT_COLOUR, linewidth=1.1, drawstyle="steps-mid", label="wild type")
            ax.plot(x, mine, color=VARIANT_COLOUR, linewidth=1.1, drawstyle="steps-mid", label="variant")
            if name == "nma_res1":
                ax.set_yscale("log")
            ax.set_ylabel(labels[name], fontsize=8)
            ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False, borderaxespad=0,
                      title=name, title_fontsize=7)
        elif kind == "delta":
            delta = np.asarray(comparison.delta[name], dtype=np.float64)
            shade = _band(ax, x, band.get(name))
            _bars(ax, x, delta)
            _symmetric(ax, delta, shade)
            ax.set_ylabel(f"Δ {name}\n({delta_units[name]})", fontsize=8)
            if shade is not None:
                ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False, borderaxespad=0)
        elif kind == "ss":
            wt = np.asarray(comparison.wild_type_values["ss"], dtype=np.float64)
            mine = comparison.at_wild_type("ss")
            helix = _class_fraction(mine, HELIX) - _class_fraction(wt, HELIX)
            strand = _class_fraction(mine, STRAND) - _class_fraction(wt, STRAND)
            ax.plot(x, helix, color="#d62728", linewidth=1.1, drawstyle="steps-mid", label="Δ helix (H+G+I)")
            ax.plot(x, strand, color="#1f77b4", linewidth=1.1, drawstyle="steps-mid", label="Δ strand (E+B)")
            _symmetric(ax, helix, strand)
            ax.set_ylabel("Δ fraction\nof frames", fontsize=8)
            ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False, borderaxespad=0)
        elif kind == "relative":
            rel = comparison.relative_change(list(comparison.delta))
            _bars(ax, x, rel, "#636363")
            ax.set_ylim(bottom=0)
            ax.set_ylabel("relative change\n(|Δ| / (|wt| + 0.01))", fontsize=8)
            ax.text(1.005, 0.5, f"mean over the\n{len(comparison.delta)} properties", transform=ax.transAxes,
                    fontsize=7, va="center")
        else:
            if name == "interactions":
                summed = summed_interaction_delta(comparison)
                total = np.nansum(np.abs(summed), axis=1)
                total[comparison.alignment.wt_to_variant < 0] = np.nan
                label = "Σ_j |Δ interactions|\n(frequency)"
            else:
                total = comparison.pair_summary(name)
                label = f"Σ_j |Δ {name}|\n(correlation)"
            shade = band.get(name) if name != "interactions" else None
            if shade is not None:
                ax.fill_between(x, 0, shade[-1], color="#969696", alpha=0.35, linewidth=0, step="mid",
                                label="background 95 %")
            _bars(ax, x, total, "#756bb1")
            ax.set_ylim(bottom=0)
            ax.set_ylabel(label, fontsize=8)
            if shade is not None:
                ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False, borderaxespad=0)
    for k, ax in enumerate(axes):
        _decorate(ax, comparison, top=k == 0)
        ax.set_xlim(offset - 0.5, n + offset - 0.5)
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=8)
    axes[-1].set_xlabel("wild-type residue number (red dashed: substituted; grey: deleted; purple: insertion)")
    figure.suptitle(f"{_title(comparison)}: predicted dynamics, variant vs wild type", fontsize=11)
    return _save(figure, path)


def plot_variant_pairs(path: str | os.PathLike[str], comparison: Any) -> Path | None:
    """Write the Δ pair-map figure of one variant; None (nothing written) without pair properties."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    maps: list[tuple[str, np.ndarray, str]] = []
    if "corr" in comparison.delta:
        maps.append(("Δ corr", np.asarray(comparison.delta["corr"], dtype=np.float64), "Δ correlation"))
    summed = summed_interaction_delta(comparison)
    if summed is not None:
        maps.append(("Δ interactions (Σ of the types, value³)", summed, "Δ frequency"))
    if "nma_pair1" in comparison.delta:
        maps.append(("Δ nma_pair1 (ANM, low modes)", np.asarray(comparison.delta["nma_pair1"], dtype=np.float64),
                     "Δ correlation"))
    if not maps:  # other pair properties only: the first of them
        name = next((k for k in comparison.delta if np.ndim(comparison.delta[k]) == 2
                     and np.shape(comparison.delta[k])[0] == np.shape(comparison.delta[k])[1]
                     and k not in ("ss", "chi", "phi", "psi")), None)
        if name is None:
            return None
        maps.append((f"Δ {name}", np.asarray(comparison.delta[name], dtype=np.float64), f"Δ {name}"))
    n, offset = len(comparison.wild_type), comparison.offset
    width = 5.4 * len(maps)
    figure = Figure(figsize=(width, 5.4))
    figure.subplots_adjust(left=0.8 / width, right=1 - 1.0 / width, top=0.86, bottom=0.1, wspace=0.55)
    axes = np.atleast_1d(figure.subplots(1, len(maps)))
    cmap = colormaps["RdBu_r"].with_extremes(bad="#bdbdbd")
    extent = (offset - 0.5, n + offset - 0.5, n + offset - 0.5, offset - 0.5)
    sites, deleted, inserted = _marks(comparison)
    for ax, (title, matrix, unit) in zip(axes, maps):
        finite = np.abs(matrix[np.isfinite(matrix)])
        limit = float(finite.max()) if finite.size and finite.max() > 0 else 1e-3
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=-limit, vmax=limit, extent=extent,
                          interpolation="nearest", aspect="equal")
        bar = figure.colorbar(image, ax=ax, shrink=0.8, pad=0.03, fraction=0.05)
        bar.set_label(f"{unit} (variant − wild type; 0 = white)", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("residue j (wild-type numbering)", fontsize=8)
        ax.set_ylabel("residue i (wild-type numbering)", fontsize=8)
        for s in sites:
            ax.plot([s], [offset - 0.5], marker="v", color=SITE_COLOUR, markersize=6, clip_on=False)
            ax.plot([offset - 0.5], [s], marker=">", color=SITE_COLOUR, markersize=6, clip_on=False)
        for x, _ in inserted:
            ax.plot([x], [offset - 0.5], marker="v", color="#6a51a3", markersize=6, clip_on=False)
            ax.plot([offset - 0.5], [x], marker=">", color="#6a51a3", markersize=6, clip_on=False)
        for first, last in deleted:
            middle = (first + last) / 2
            ax.plot([middle], [offset - 0.5], marker="v", color="#525252", markersize=6, clip_on=False)
            ax.plot([offset - 0.5], [middle], marker=">", color="#525252", markersize=6, clip_on=False)
        ax.tick_params(labelsize=8)
    figure.suptitle(f"{_title(comparison)}: Δ pair maps, variant − wild type (colour limits ±max |Δ|, white = 0; "
                    "grey = no counterpart; triangles: red substituted, grey deleted, purple inserted)", fontsize=10)
    return _save(figure, path)


def plot_comparison(comparison: Any, profiles: str | os.PathLike[str], pairs: str | os.PathLike[str] | None = None,
                    *, band: Mapping[str, np.ndarray] | None = None) -> list[Path]:
    """Both pictures of one variant (the pair maps when it has pair properties and ``pairs`` is given)."""
    written = [plot_variant_profiles(profiles, comparison, band=band)]
    if pairs is not None:
        written.append(plot_variant_pairs(pairs, comparison))
    return [p for p in written if p is not None]
