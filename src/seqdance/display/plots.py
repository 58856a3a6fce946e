"""Pictures of one prediction: residue profiles and pair maps (matplotlib, Agg backend, no global state).

* **profiles** — one panel per quantity, residue number on a shared axis: normalised Cα fluctuation
  (``rmsf_nor``), solvent-accessible surface (``sasa_mean`` with a ±``sasa_std`` band), the eight DSSP classes
  as stacked fractions, and the three GNM fluctuation ranges (``nma_res1..3``) on a log scale;
* **pair maps** — movement correlation (``corr``), the summed interaction frequency
  (Σ over the nine types of value³: the model predicts cube roots, docs/design.md#attention-metrics) and the
  low-frequency ANM correlation (``nma_pair1``), each with its own colour bar. The interaction scale is fixed at
  0–1 (a frequency; wider only when a value exceeds 1) and the panel states the largest value, so that
  near-zero predictions look like no interaction instead of filling an auto-scaled range.

Chain boundaries are drawn in every panel and map, and each chain is labelled. Figures are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from seqdance.errors import InputError
from seqdance.io_utils import model_display_name, save_figure
from seqdance.schema import INTERACTION_NAMES, SS_CLASSES

#: Colours of the DSSP classes (helices warm, strands blue, turns/bends green, coil grey), in SS_CLASSES order.
SS_COLOURS: dict[str, str] = {
    "H": "#d62728", "G": "#ff9896", "I": "#9467bd", "E": "#1f77b4", "B": "#aec7e8",
    "T": "#2ca02c", "S": "#98df8a", "coil": "#d9d9d9",
}
#: Legend names of the DSSP classes.
SS_NAMES: dict[str, str] = {
    "H": "α-helix (H)", "G": "3₁₀-helix (G)", "I": "π-helix (I)", "E": "strand (E)", "B": "bridge (B)",
    "T": "turn (T)", "S": "bend (S)", "coil": "coil",
}
_NMA_COLOURS = ("#08306b", "#4292c6", "#9ecae1")
_CHAIN_LINE = {"color": "#404040", "linewidth": 0.9, "linestyle": (0, (4, 3))}


def summed_interactions(values: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Σ over the nine interaction types of value³ (the frequency scale), or None when none was predicted."""
    present = [name for name in INTERACTION_NAMES if name in values]
    if not present:
        return None
    return np.sum([np.asarray(values[name], dtype=np.float64) ** 3 for name in present], axis=0)


def chain_starts(chain_lengths: tuple[int, ...] | list[int]) -> np.ndarray:
    """0-based index of the first residue of each chain after the first."""
    return np.cumsum(chain_lengths)[:-1]


def _chain_labels(ax, chain_lengths, *, axis: str = "x") -> None:
    """Label each chain above the top panel (only when there are several)."""
    if len(chain_lengths) < 2:
        return
    edges = np.concatenate([[0], np.cumsum(chain_lengths)])
    for k in range(len(chain_lengths)):
        centre = (edges[k] + edges[k + 1]) / 2 + 0.5
        if axis == "x":
            ax.text(centre, 1.02, f"chain {k + 1}", transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=8, color="#404040")


def _save(figure, path: str | os.PathLike[str]) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)  # figures made without pyplot need a canvas to draw on
    return save_figure(figure, path)


def plot_residue_profiles(
    path: str | os.PathLike[str],
    values: Mapping[str, np.ndarray],
    chain_lengths: tuple[int, ...] | list[int],
    *,
    title: str = "",
) -> Path:
    """Write the residue-profile figure of one prediction to ``path`` (format from its suffix)."""
    from matplotlib.figure import Figure

    n = int(sum(chain_lengths))
    x = np.arange(1, n + 1)
    panels = [name for name in ("rmsf_nor", "sasa_mean", "ss") if name in values]
    has_nma = all(f"nma_res{k}" in values for k in (1, 2, 3))
    rows = len(panels) + int(has_nma)
    if rows == 0:
        raise InputError("the prediction holds none of rmsf_nor, sasa_mean, ss, nma_res1..3")
    width = float(np.clip(6 + n / 45, 8, 16))
    heights = [1.6 if name == "ss" else 1.3 for name in panels] + ([1.4] if has_nma else [])
    figure = Figure(figsize=(width, 1.1 + sum(heights)), layout="constrained")
    axes = figure.subplots(rows, 1, sharex=True, gridspec_kw={"height_ratios": heights})
    axes = np.atleast_1d(axes)
    k = 0
    if "rmsf_nor" in values:
        ax = axes[k]
        y = np.asarray(values["rmsf_nor"], dtype=np.float64)
        ax.fill_between(x, 0, y, color="#fdae6b", alpha=0.6, linewidth=0, step="mid")
        ax.plot(x, y, color="#d94801", linewidth=1.2, drawstyle="steps-mid", label="rmsf_nor")
        ax.set_ylim(0, max(1.0, float(np.nanmax(y)) * 1.05))
        ax.set_ylabel("RMSF\n(÷ max)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False, borderaxespad=0)
        k += 1
    if "sasa_mean" in values:
        ax = axes[k]
        y = np.asarray(values["sasa_mean"], dtype=np.float64)
        if "sasa_std" in values:
            s = np.asarray(values["sasa_std"], dtype=np.float64)
            ax.fill_between(x, np.maximum(y - s, 0), y + s, color="#9ecae1", alpha=0.6, linewidth=0,
                            step="mid", label="± sasa_std")
        ax.plot(x, y, color="#08519c", linewidth=1.2, drawstyle="steps-mid", label="sasa_mean")
        ax.set_ylim(bottom=0)
        ax.set_ylabel("SASA\n(nm²)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False, borderaxespad=0)
        k += 1
    if "ss" in values:
        ax = axes[k]
        ss = np.clip(np.asarray(values["ss"], dtype=np.float64), 0, None)
        ss = ss / np.maximum(ss.sum(axis=1, keepdims=True), 1e-12)
        order = ["H", "G", "I", "E", "B", "T", "S", "coil"]
        columns = [SS_CLASSES.index(c) for c in order]
        ax.stackplot(x, ss[:, columns].T, colors=[SS_COLOURS[c] for c in order],
                     labels=[SS_NAMES[c] for c in order], step="mid", linewidth=0)
        ax.set_ylim(0, 1)
        ax.set_ylabel("secondary\nstructure")
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False, borderaxespad=0)
        k += 1
    if has_nma:
        ax = axes[k]
        for r, colour in zip((1, 2, 3), _NMA_COLOURS):
            y = np.asarray(values[f"nma_res{r}"], dtype=np.float64)
            ax.plot(x, np.where(y > 0, y, np.nan), color=colour, linewidth=1.2, drawstyle="steps-mid",
                    label=("low", "mid", "high")[r - 1] + f" (nma_res{r})")
        ax.set_yscale("log")
        ax.set_ylabel("GNM\nfluctuation")
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=7, frameon=False, borderaxespad=0,
                  title="frequency", title_fontsize=7)
    for ax in axes:
        ax.grid(axis="y", color="#eeeeee", linewidth=0.6)
        ax.set_axisbelow(True)
        for start in chain_starts(chain_lengths):
            ax.axvline(start + 0.5, **_CHAIN_LINE)
        ax.set_xlim(0.5, n + 0.5)
        ax.spines[["top", "right"]].set_visible(False)
    _chain_labels(axes[0], chain_lengths)
    axes[-1].set_xlabel("residue" + (" (chains concatenated; dashed lines: chain boundaries)"
                                      if len(chain_lengths) > 1 else ""))
    if title:
        figure.suptitle(title, fontsize=11)
    return _save(figure, path)


def plot_pair_maps(
    path: str | os.PathLike[str],
    values: Mapping[str, np.ndarray],
    chain_lengths: tuple[int, ...] | list[int],
    *,
    title: str = "",
) -> Path | None:
    """Write the pair-map figure of one prediction to ``path``; None (nothing written) without pair outputs."""
    from matplotlib.colors import Normalize, PowerNorm
    from matplotlib.figure import Figure

    maps: list[tuple[str, np.ndarray, str, object, str]] = []
    if "corr" in values:
        maps.append(("movement correlation (corr)", np.asarray(values["corr"], dtype=np.float64), "RdBu_r",
                     Normalize(-1, 1), "correlation"))
    summed = summed_interactions(values)
    notes: dict[str, str] = {}
    if summed is not None:
        off_diagonal = summed[~np.eye(summed.shape[0], dtype=bool)] if summed.shape[0] > 1 else summed.ravel()
        largest = float(np.nanmax(off_diagonal)) if np.isfinite(off_diagonal).any() else float("nan")
        top = max(1.0, float(np.nanpercentile(off_diagonal, 99.5)) if np.isfinite(largest) else 1.0)
        label = "interactions (sum of the 9 types)"
        maps.append((label, summed, "Purples", PowerNorm(0.5, 0, top),
                     f"frequency, 0–{top:g} (square-root colour scale)"))
        notes[label] = f"largest: {largest:.2g}" if np.isfinite(largest) else "no value"
    if "nma_pair1" in values:
        maps.append(("ANM correlation, low freq. (nma_pair1)", np.asarray(values["nma_pair1"], dtype=np.float64),
                     "RdBu_r", Normalize(-1, 1), "correlation"))
    if not maps:
        return None
    n = int(sum(chain_lengths))
    figure = Figure(figsize=(4.6 * len(maps), 4.6), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(maps)))
    extent = (0.5, n + 0.5, n + 0.5, 0.5)
    for ax, (label, matrix, cmap, norm, bar_label) in zip(axes, maps):
        import matplotlib

        colours = matplotlib.colormaps[cmap].with_extremes(bad="#f0f0f0")
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap=colours, norm=norm, extent=extent,
                          interpolation="nearest" if n <= 300 else "antialiased")
        for start in chain_starts(chain_lengths):
            ax.axvline(start + 0.5, **_CHAIN_LINE)
            ax.axhline(start + 0.5, **_CHAIN_LINE)
        ax.set_title(label, fontsize=10)
        if label in notes:
            ax.text(0.98, 0.98, notes[label], transform=ax.transAxes, ha="right", va="top", fontsize=9,
                    bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "#bbbbbb", "alpha": 0.9})
        ax.set_xlabel("residue")
        ax.set_ylabel("residue")
        bar = figure.colorbar(image, ax=ax, shrink=0.8, pad=0.02)
        bar.set_label(bar_label, fontsize=8)
        bar.ax.tick_params(labelsize=7)
    if title:
        figure.suptitle(title, fontsize=11)
    return _save(figure, path)


def plot_prediction(
    prediction, out_dir: str | os.PathLike[str], stem: str, *, model: str | None = None
) -> list[Path]:
    """Both figures of one :class:`~seqdance.inference.prediction.Prediction`: ``OUT/<stem>.profiles.png`` and,
    with pair outputs, ``OUT/<stem>.pairs.png``. Returns the files written."""
    out = Path(out_dir)
    n = prediction.n_residues
    chains = len(prediction.chain_lengths)
    title = f"{prediction.id} — {n} residues" + (f", {chains} chains" if chains > 1 else "")
    if model:
        title += f" — {model_display_name(model)}"
    written = [plot_residue_profiles(out / f"{stem}.profiles.png", prediction.values, prediction.chain_lengths,
                                     title=title)]
    pairs = plot_pair_maps(out / f"{stem}.pairs.png", prediction.values, prediction.chain_lengths, title=title)
    if pairs is not None:
        written.append(pairs)
    return written


def plot_predictions(out_dir: str | os.PathLike[str], stems: Mapping[str, str], *, model: str | None = None,
                     progress: bool = False) -> int:
    """Figures of every prediction ``OUT/<stem>.npz`` (``stems``: id -> stem) whose figures are missing or older
    than its file; returns the number of files drawn."""
    from tqdm.auto import tqdm

    from seqdance.inference.prediction_io import load_prediction

    out = Path(out_dir)
    todo = []
    for stem in stems.values():
        npz, png = out / f"{stem}.npz", out / f"{stem}.profiles.png"
        if npz.is_file() and (not png.is_file() or png.stat().st_mtime_ns < npz.stat().st_mtime_ns):
            todo.append(stem)
    drawn = 0
    for stem in tqdm(todo, desc="predict plots", unit="sequence", disable=not progress or not todo):
        drawn += len(plot_prediction(load_prediction(out / f"{stem}.npz"), out, stem, model=model))
    return drawn
