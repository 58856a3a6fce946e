"""Position × amino-acid heat map of a score over single substitutions (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from seqdance.errors import InputError
from seqdance.io_utils import save_figure
from seqdance.scoring.mutations import Variant
from seqdance.tokenizer import AMINO_ACIDS


def score_grid(wild_type: str, variants: Sequence[Variant], values: Sequence[float]) -> np.ndarray:
    """(20, L) grid of a score for the single non-synonymous substitutions; NaN where not given.

    Rows follow :data:`seqdance.tokenizer.AMINO_ACIDS`. Multi-mutants, indels and synonymous variants are left out.
    """
    grid = np.full((len(AMINO_ACIDS), len(wild_type)), np.nan)
    row_of = {aa: i for i, aa in enumerate(AMINO_ACIDS)}
    for v, value in zip(variants, values):
        if isinstance(v, Variant) and v.n_mutations == 1 and not v.is_synonymous:  # indels are not drawn
            s = v.substitutions[0]
            grid[row_of[s.mt], s.index] = value
    return grid


def damaging_end(column: str) -> str | None:
    """Which end of a score column's scale is damaging: ``"low"`` for scores where higher = fitter (``score``,
    the ESM2 log-likelihood ratios), ``"high"`` for the per-property changes (larger = more damaging), None when
    the column says nothing about fitness (e.g. a fine-tuned model's own target)."""
    if column == "score" or column.startswith("esm2_"):
        return "low"
    if column.startswith("change_"):
        return "high"
    return None


def plot_score_heatmap(
    path: str | os.PathLike[str],
    wild_type: str,
    variants: Sequence[Variant],
    values: Sequence[float],
    *,
    offset: int = 1,
    label: str = "score (higher = fitter)",
    title: str | None = None,
    damaging: str | None = None,
) -> int:
    """Write the heat map to ``path`` (format from its suffix); wild-type cells are marked with a dot.

    ``damaging`` (``"low"``/``"high"``, :func:`damaging_end`): the colour bar says at which end the damaging
    substitutions are.

    Returns the number of substitutions drawn; raises ValueError when there are none.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grid = score_grid(wild_type, variants, values)
    drawn = int(np.isfinite(grid).sum())
    if drawn == 0:
        raise InputError("no single substitutions to draw in the heat map (it shows single mutants only)")
    length = len(wild_type)
    width = float(min(max(6.0, 2.5 + 0.12 * length), 120.0))
    fig = Figure(figsize=(width, 4.2))
    FigureCanvasAgg(fig)  # the Agg canvas: no display, no global pyplot state
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#e6e6e6")
    image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, interpolation="nearest")
    wt_cols = [i for i, aa in enumerate(wild_type) if aa in AMINO_ACIDS]
    wt_rows = [AMINO_ACIDS.index(wild_type[i]) for i in wt_cols]
    ax.scatter(wt_cols, wt_rows, s=6, c="black", marker="o", linewidths=0, label="wild type")
    ax.set_yticks(range(len(AMINO_ACIDS)))
    ax.set_yticklabels(list(AMINO_ACIDS), fontsize=7)
    step = max(1, int(np.ceil(length / 60)))
    ticks = list(range(0, length, step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{wild_type[i]}{i + offset}" for i in ticks], rotation=90, fontsize=6)
    ax.set_xlabel("position (wild-type residue and number)")
    ax.set_ylabel("mutant residue")
    if title:
        ax.set_title(title, loc="left", fontsize=10)
    ax.legend(loc="upper right", bbox_to_anchor=(1.0, 1.12), fontsize=7, frameon=False, markerscale=2)
    bar = fig.colorbar(image, ax=ax, fraction=0.03 if width > 12 else 0.05, pad=0.01)
    if damaging in ("low", "high"):
        top, bottom = ("fitter", "more damaging") if damaging == "low" else ("more damaging", "milder")
        # the bar's label reads upwards along it: its bottom end first
        label = f"{label}\n▼ {bottom}   ·   {top} ▲"
    bar.set_label(label, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=150)
    return drawn
