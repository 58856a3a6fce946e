"""Tables, Markdown and heat maps of an attention analysis (the per_head table of :mod:`attention_run`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from seqdance.analysis.attention import (
    ALL_GROUPS,
    METRIC_BEST,
    METRIC_NAMES,
    METRICS,
    best_heads,
    metric_grid,
    summarise_heads,
)
from seqdance.io_utils import atomic_path, markdown_table, model_display_name, save_figure

#: The paper's best-head medians (docs/design.md#attention-paper, #attention-metrics): symmetrised attention,
#: |i − j| > 5, Spearman.
PAPER_REFERENCE: dict[tuple[str, str], float] = {
    ("sym_interact_spearman", "md"): 0.41,  # ordered proteins
    ("sym_interact_spearman", "idr"): 0.52,
    ("sym_comove_pos_spearman", "idr"): 0.74,
}


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Every value as it was computed: Python's shortest repr reads back to the same float64."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def best_heads_with_reference(summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`best_heads` plus the paper's value where it reports one (column ``paper``)."""
    best = best_heads(summary)
    best["paper"] = [PAPER_REFERENCE.get((m, g), np.nan) for m, g in zip(best["metric"], best["group"])]
    return best


def left_out_note(left_out: Sequence[str], selection: str) -> str:
    """One sentence naming the proteins of the selection that were not analysed, and why."""
    shown = ", ".join(left_out[:8]) + (f" and {len(left_out) - 8} more" if len(left_out) > 8 else "")
    return (f"{len(left_out)} protein(s) of {selection} left out: NMA entries have no co-movement or interaction "
            f"maps to compare attention with ({shown}).")


def summary_markdown(summary: pd.DataFrame, best: pd.DataFrame, *, title: str, n_proteins: dict[str, int],
                     left_out: Sequence[str] = (), selection: str = "the selection") -> str:
    lines = [f"# Attention analysis: {title}", ""]
    lines += ["Proteins per group: " + ", ".join(f"{g} {n}" for g, n in n_proteins.items()) + ".", ""]
    if left_out:
        lines += [left_out_note(left_out, selection), ""]
    lines += ["## Best head per metric (median over proteins)", "",
              "Best = highest median, except for the negative-correlation Spearman metrics (lowest).", ""]
    shown = best.copy()
    shown["head"] = [("–" if pd.isna(layer) else f"L{int(layer)} H{int(head)}")
                     for layer, head in zip(best["layer"], best["head"])]
    shown = shown[["group", "metric", "head", "median", "paper"]]
    lines += [markdown_table(shown, float_format="{:.3f}"), ""]
    lines += ["`paper`: the best-head medians the SeqDance paper reports for its trained model (symmetrised "
              "attention, |i−j| > 5, Spearman): interactions 0.41 on ordered proteins (md) and 0.52 on IDRs, "
              "positive movement correlation 0.74 on IDRs.", ""]
    lines += ["## Metrics", ""]
    lines += [f"* `{name}`: {text}" for name, text in METRICS.items()]
    lines += ["", "Per-head medians of every metric: summary.csv; one row per protein and head: per_head.csv; "
              "heat maps (layer × head): heatmap_<metric>.png.", ""]
    return "\n".join(lines)


#: What a metric's colour bar says is "no signal", per metric family.
_NEUTRAL = {"topl": "1 = attention ignores it", "auroc": "0.5 = chance", "spearman": "0 = no correlation"}


def heatmap_groups(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """(group, panel title) of the heat maps: ``all`` and each source group, or only the one group when every
    protein belongs to it (its panel would repeat ``all``)."""
    sizes = {str(g): int(f["n_proteins"].max()) for g, f in summary.groupby("group", sort=False)}
    groups = [g for g in dict.fromkeys(summary["group"]) if g != ALL_GROUPS]
    if len(groups) == 1:
        return [(groups[0], f"{groups[0]} (all {sizes.get(groups[0], 0)} proteins)")]
    return [(g, f"{g} ({sizes.get(g, 0)} protein{'s' if sizes.get(g, 0) != 1 else ''})")
            for g in dict.fromkeys(summary["group"])]


def plot_heatmap(summary: pd.DataFrame, metric: str, path: Path, *, title: str = "") -> Path:
    """One panel per group (see :func:`heatmap_groups`): the layer × head grid of one metric's medians, with a
    labelled colour bar; ``title`` names the model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = heatmap_groups(summary)
    grids = [metric_grid(summary, metric, g) for g, _ in panels]
    finite = np.concatenate([g[np.isfinite(g)] for g in grids]) if grids else np.zeros(0)
    if metric.endswith("spearman"):
        vmax = float(np.max(np.abs(finite))) if finite.size else 1.0
        vmin, cmap, family = -vmax, "RdBu_r", "spearman"
    else:
        vmin = float(finite.min()) if finite.size else 0.0
        vmax = float(finite.max()) if finite.size else 1.0
        cmap, family = "viridis", ("auroc" if metric.endswith("auroc") else "topl")
    layers, heads = grids[0].shape if grids else (1, 1)
    width = min(30.0, max(3.0, 0.32 * heads + 1.4) * len(panels) + 1.6)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, min(20.0, max(3.4, 0.32 * layers + 2.0))),
                             squeeze=False, layout="constrained")
    image = None
    for ax, (_, panel_title), grid in zip(axes[0], panels, grids):
        image = ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", origin="lower")
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("head", fontsize=9)
        ax.set_ylabel("layer", fontsize=9)
        step = max(1, grid.shape[1] // 10), max(1, grid.shape[0] // 12)
        ax.set_xticks(range(0, grid.shape[1], step[0]))
        ax.set_yticks(range(0, grid.shape[0], step[1]))
        ax.tick_params(labelsize=8)
    if image is not None:
        bar = fig.colorbar(image, ax=list(axes[0]), shrink=0.9)
        bar.set_label(f"median {metric} over proteins\n({_NEUTRAL[family]})", fontsize=8)
        bar.ax.tick_params(labelsize=8)
    best = "highest" if METRIC_BEST[metric] == "max" else "lowest"
    fig.suptitle(f"{metric} per head{' — ' + title if title else ''} (best head: {best} median)", fontsize=10)
    save_figure(fig, path)
    plt.close(fig)
    return path


def write_attention_report(per_head: pd.DataFrame, outdir: str | os.PathLike[str], *, title: str,
                           left_out: Sequence[str] = (), selection: str = "the selection") -> dict[str, Path]:
    """per_head.csv, summary.csv, best_heads.csv, summary.md and heatmap_<metric>.png in ``outdir``; ``left_out``
    names the proteins of the selection that hold no MD pair targets (said in summary.md)."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise_heads(per_head)
    best = best_heads_with_reference(summary)
    n_proteins = {ALL_GROUPS: int(per_head["protein"].nunique())}
    n_proteins.update({str(g): int(f["protein"].nunique()) for g, f in per_head.groupby("group")})
    paths = {
        "per_head": _write_csv(per_head, out / "per_head.csv"),
        "summary": _write_csv(summary, out / "summary.csv"),
        "best_heads": _write_csv(best, out / "best_heads.csv"),
    }
    target = out / "summary.md"
    with atomic_path(target) as tmp:
        tmp.write_text(summary_markdown(summary, best, title=title, n_proteins=n_proteins, left_out=left_out,
                                        selection=selection))
    paths["markdown"] = target
    for metric in METRIC_NAMES:
        paths[f"heatmap_{metric}"] = plot_heatmap(summary, metric, out / f"heatmap_{metric}.png",
                                                  title=model_display_name(title))
    return paths
