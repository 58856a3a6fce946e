"""Evaluation on held-out proteins: test loss per group and property, and the docs/design.md#evaluation-metrics metrics.

* **Loss**: the training loss (per-protein RMSE per property, mean over the proteins that have valid
  entries of the property, weighted sum per group) on N-terminal windows of at most ``max_tokens`` tokens.
* **Residue fluctuation**: per-protein Pearson r between predicted and target RMSF (``rmsf_nor``) for the MD
  groups and the GNM fluctuations (``nma_res1..3``) for the NMA group, over valid residues.
* **Movement correlation**: per-protein Pearson r of ``corr`` (MD groups) or ``nma_pair1..3`` (NMA) over
  pairs i < j with j − i > 5 (both triangles carry the same information), valid entries only.
  Metrics are reported as the median (and mean) over proteins; a protein whose target or prediction is
  constant over the selected entries has no r and is left out of the median. They are reported per source
  group and, within each group, per data source (ATLAS, mdCATH, IDRome, ... as the store's index names them).
* **Mean baseline** (optional): the same loss for a predictor that outputs, for every entry, the training
  mean of that channel; a useful model must beat it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from seqdance import schema
from seqdance.devices import eval_mode
from seqdance.errors import NonFiniteError
from seqdance.extras import EXTRAS, install_hint, missing_modules
from seqdance.io_utils import atomic_path, markdown_table, model_display_name, save_figure
from seqdance.train.data import Catalog, MicroBatchDataset, eval_batches, eval_samples
from seqdance.train.distributed import DistInfo, gather_objects
from seqdance.train.loss import group_layout, per_protein_rmse

log = logging.getLogger(__name__)

#: Pairs closer than this in sequence are left out of movement-correlation metrics (docs/design.md#evaluation-metrics:
#: |i−j| > 5).
MIN_SEPARATION = 5


def fluctuation_properties(kind: str) -> tuple[schema.Property, ...]:
    """Residue-fluctuation properties of a feature kind (RMSF for MD, GNM fluctuations for NMA)."""
    if kind == "nma":
        return schema.properties_of_kind("nma", "residue")
    return (schema.PROPERTY_BY_NAME["rmsf_nor"],)


def correlation_properties(kind: str) -> tuple[schema.Property, ...]:
    """Pairwise movement-correlation properties of a feature kind (the non-interaction pair properties)."""
    return tuple(p for p in schema.properties_of_kind(kind, "pair")  # type: ignore[arg-type]
                 if p.name not in schema.INTERACTION_NAMES)


def masked_pearson(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pearson r along the last dimension of (B, N) tensors over entries where ``mask``; NaN if undefined."""
    m = mask.to(torch.float64)
    x, y = torch.where(mask, x.double(), 0.0), torch.where(mask, y.double(), 0.0)
    n = m.sum(-1)
    mx, my = x.sum(-1) / n.clamp_min(1), y.sum(-1) / n.clamp_min(1)
    dx, dy = (x - mx[:, None]) * m, (y - my[:, None]) * m
    cov = (dx * dy).sum(-1)
    var = (dx * dx).sum(-1) * (dy * dy).sum(-1)
    r = cov / var.sqrt()
    return torch.where((n >= 2) & (var > 0), r, torch.full_like(r, float("nan")))


def _separation_mask(width: int, device: torch.device) -> torch.Tensor:
    idx = torch.arange(width, device=device)
    return (idx[None, :] - idx[:, None]) > MIN_SEPARATION  # j − i > 5 (upper triangle)


def protein_metrics(
    residue_pred: torch.Tensor, pair_pred: torch.Tensor, residue_target: torch.Tensor, pair_target: torch.Tensor,
    kind: str,
) -> dict[str, torch.Tensor]:
    """Per-protein Pearson r of each fluctuation and correlation property: name -> (B,) float64."""
    out: dict[str, torch.Tensor] = {}
    for p in fluctuation_properties(kind):
        t = residue_target[..., p.store_channels.start]
        out[f"r_{p.name}"] = masked_pearson(residue_pred[..., p.start], t, t != schema.MASK_VALUE)
    sep = _separation_mask(pair_target.shape[1], pair_target.device)
    for p in correlation_properties(kind):
        t = pair_target[..., p.store_channels.start]
        valid = (t != schema.MASK_VALUE) & sep
        b = t.shape[0]
        out[f"r_{p.name}"] = masked_pearson(pair_pred[..., p.start].reshape(b, -1), t.reshape(b, -1),
                                            valid.reshape(b, -1))
    return out


def constant_predictions(
    means: Mapping[str, np.ndarray], group: str, batch: int, width: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Model-layout outputs holding the training mean of each channel everywhere (the mean baseline)."""
    kind = schema.GROUP_KIND[group]
    res = torch.zeros(batch, width, schema.N_RESIDUE_CHANNELS, device=device)
    pair = torch.zeros(batch, width, width, schema.N_PAIR_CHANNELS, device=device)
    res[..., schema.kind_channels("residue", kind)] = torch.as_tensor(
        np.nan_to_num(means["residue"]), dtype=torch.float32, device=device)
    pair[..., schema.kind_channels("pair", kind)] = torch.as_tensor(
        np.nan_to_num(means["pair"]), dtype=torch.float32, device=device)
    return res, pair


@dataclass
class EvaluationResult:
    """Per-protein rows and the summary tables of one evaluation."""

    per_protein: pd.DataFrame  # group, source, name, tokens, rmse/<property>..., r_<property>...
    losses: pd.DataFrame  # group, property, n_proteins, rmse, weight, weighted (+ baseline_rmse)
    metrics: pd.DataFrame  # group, metric, property, n_proteins, median_r, mean_r
    split: str = "test"
    metrics_by_source: pd.DataFrame = field(default_factory=pd.DataFrame)  # group, source, metric, property, ...

    def group_losses(self) -> dict[str, float]:
        """Weighted test loss of each group."""
        tot = self.losses[self.losses["property"] == TOTAL]
        return dict(zip(tot["group"], tot["rmse"].astype(float)))

    def baseline_group_losses(self) -> dict[str, float]:
        if "baseline_rmse" not in self.losses.columns:
            return {}
        tot = self.losses[self.losses["property"] == TOTAL]
        return dict(zip(tot["group"], tot["baseline_rmse"].astype(float)))


TOTAL = "(weighted total)"


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    stores: Sequence[Any],
    *,
    catalog: Catalog | None = None,
    split: str = "test",
    groups: Iterable[str] | None = None,
    weights: Mapping[str, Mapping[str, float]] | None = None,
    channel_means: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    max_tokens: int = schema.ESM2_MAX_TOKENS,
    batch_size: int = 4,
    device: torch.device | str | None = None,
    mask_mode: str = "entry",
    autocast_dtype: torch.dtype | None = None,
    pair_block_rows: int | None = None,
    dist_info: DistInfo | None = None,
    progress: bool = False,
) -> EvaluationResult | None:
    """Evaluate ``model`` (a DynamicsModel) on one split of the stores (see module doc).

    ``weights`` (group -> property -> weight) gives the weighted group totals (unweighted sums without it).
    ``channel_means`` (group -> {"residue", "pair"} store-layout means) adds the mean-baseline loss.
    Under torchrun every rank evaluates a strided share of the proteins; rank 0 returns the result, the
    others None.
    """
    info = dist_info or DistInfo()
    catalog = catalog or Catalog.from_stores(stores)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    wanted = list(groups) if groups is not None else list(schema.SOURCE_GROUPS)
    dataset = MicroBatchDataset(stores, catalog)
    source_of = _sources(stores)
    rows: list[dict[str, Any]] = []
    specs = {g: eval_samples(catalog, g, split, max_tokens, rank=info.rank, world_size=info.world_size)
             for g in wanted}
    check_finite_parameters(model)
    bar = None
    if progress and info.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(s) for s in specs.values()), desc=f"evaluate {split}", unit="protein")
    try:
        with eval_mode(model):
            for group in wanted:
                if not specs[group]:
                    continue
                kind = schema.GROUP_KIND[group]
                names = group_layout(group).property_names
                for batch in eval_batches(dataset, specs[group], group, batch_size):
                    if batch.problems:  # NaN targets: the protein cannot be evaluated, and is never dropped silently
                        raise NonFiniteError("; ".join(batch.problems))
                    b = batch.to(dev)
                    with torch.autocast(dev.type, dtype=autocast_dtype or torch.float32,
                                        enabled=autocast_dtype is not None):
                        out = model(b.input_ids, b.attention_mask, pairs=True, pair_block_rows=pair_block_rows)
                    res_pred, pair_pred = out.residue.float(), out.pair.float()
                    check_finite_predictions(res_pred, pair_pred, b.attention_mask, batch.names)
                    rmse, valid = per_protein_rmse(res_pred, pair_pred, b.residue_target, b.pair_target, group,
                                                   mask_mode=mask_mode)
                    metrics = protein_metrics(res_pred, pair_pred, b.residue_target, b.pair_target, kind)
                    base_rmse = base_valid = None
                    if channel_means is not None and group in channel_means:
                        cr, cp = constant_predictions(channel_means[group], group, *b.input_ids.shape, device=dev)
                        base_rmse, base_valid = per_protein_rmse(cr, cp, b.residue_target, b.pair_target, group,
                                                                 mask_mode=mask_mode)
                    for i, name in enumerate(batch.names):
                        row: dict[str, Any] = {"group": group, "source": source_of.get(name, ""), "name": name,
                                               "tokens": int(batch.attention_mask[i].sum())}
                        for j, prop in enumerate(names):
                            row[f"rmse/{prop}"] = float(rmse[i, j]) if valid[i, j] else float("nan")
                            if base_rmse is not None:
                                row[f"baseline/{prop}"] = float(base_rmse[i, j]) if base_valid[i, j] else float("nan")
                        for key, values in metrics.items():
                            row[key] = float(values[i])
                        rows.append(row)
                    if bar is not None:
                        bar.update(len(batch.names))
    finally:
        if bar is not None:
            bar.close()
    gathered = gather_objects(rows, info)
    if gathered is None:
        return None
    all_rows = [r for part in gathered for r in part]
    per_protein = pd.DataFrame(all_rows)
    if not per_protein.empty:
        per_protein = per_protein.sort_values(["group", "name"], kind="stable").reset_index(drop=True)
    return summarise(per_protein, weights=weights, split=split)


def check_finite_parameters(model: torch.nn.Module) -> None:
    """Refuse a model with NaN or infinite weights (it would give non-finite predictions), naming the parameter."""
    for name, param in model.named_parameters():
        if param.is_floating_point() and not bool(torch.isfinite(param).all()):
            raise NonFiniteError(f"the model's parameter {name} holds NaN or infinite values: the model is broken "
                                 "(a diverged training run?); nothing was evaluated")


def check_finite_predictions(residue: torch.Tensor, pair: torch.Tensor, attention_mask: torch.Tensor,
                             names: Sequence[str]) -> None:
    """Refuse non-finite predictions at real tokens (padding may hold anything), naming protein and property."""
    real = attention_mask.bool()
    pair_real = real[:, :, None] & real[:, None, :]
    res_ok = torch.isfinite(residue).all(-1) | ~real
    pair_ok = torch.isfinite(pair).all(-1) | ~pair_real
    if bool(res_ok.all()) and bool(pair_ok.all()):
        return
    for i, name in enumerate(names):
        n = int(real[i].sum())
        found = [t for t in (schema.nonfinite_summary(residue[i, :n].cpu().numpy(), "residue"),
                             schema.nonfinite_summary(pair[i, :n, :n].cpu().numpy(), "pair")) if t]
        if found:
            raise NonFiniteError(f"the model predicts non-finite values for protein {name!r}: {'; '.join(found)}; "
                                 "nothing was evaluated")


def _sources(stores: Sequence[Any]) -> dict[str, str]:
    """Protein name -> data source (``source`` column of the stores' indexes)."""
    out: dict[str, str] = {}
    for store in stores:
        index = getattr(store, "index", None)
        if index is not None and "source" in index.columns:
            out.update(zip(index["name"].astype(str), index["source"].astype(str)))
    return out


def _metric_rows(frame: pd.DataFrame, kind: str, keys: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Median and mean per-protein r of each fluctuation / correlation property over the rows of ``frame``."""
    rows = []
    for metric, props in (("residue fluctuation", fluctuation_properties(kind)),
                          ("movement correlation", correlation_properties(kind))):
        for p in props:
            r = frame[f"r_{p.name}"].dropna() if f"r_{p.name}" in frame.columns else pd.Series(dtype=float)
            rows.append({
                **keys, "metric": metric, "property": p.name, "n_proteins": len(r),
                "median_r": float(r.median()) if len(r) else float("nan"),
                "mean_r": float(r.mean()) if len(r) else float("nan"),
            })
    return rows


def summarise(per_protein: pd.DataFrame, *, weights: Mapping[str, Mapping[str, float]] | None = None,
              split: str = "test") -> EvaluationResult:
    """Loss and metric tables from per-protein rows."""
    loss_rows: list[dict[str, Any]] = []
    metric_rows: list[dict[str, Any]] = []
    source_rows: list[dict[str, Any]] = []
    groups = [g for g in schema.SOURCE_GROUPS if not per_protein.empty and g in set(per_protein["group"])]
    for group in groups:
        sub = per_protein[per_protein["group"] == group]
        w = weights.get(group, {}) if weights is not None else {}
        total = base_total = 0.0
        n_total = n_base = 0  # properties that contribute to the totals
        has_base = any(c.startswith("baseline/") for c in sub.columns)
        for prop in group_layout(group).property_names:
            vals = sub[f"rmse/{prop}"].dropna()
            weight = float(w.get(prop, 1.0)) if weights is not None else 1.0
            mean = float(vals.mean()) if len(vals) else float("nan")
            row = {"group": group, "property": prop, "n_proteins": len(vals), "rmse": mean, "weight": weight,
                   "weighted": weight * mean}
            if len(vals):
                total += weight * mean
                n_total += 1
            if has_base:
                bvals = sub[f"baseline/{prop}"].dropna()
                row["baseline_rmse"] = float(bvals.mean()) if len(bvals) else float("nan")
                if len(bvals):
                    base_total += weight * row["baseline_rmse"]
                    n_base += 1
            loss_rows.append(row)
        if not n_total:  # no property had a valid entry: there is no loss to report (never 0.0)
            total = float("nan")
        total_row = {"group": group, "property": TOTAL, "n_proteins": len(sub), "rmse": total,
                     "weight": float("nan"), "weighted": total}
        if has_base:
            total_row["baseline_rmse"] = base_total if n_base else float("nan")
        loss_rows.append(total_row)
        kind = schema.GROUP_KIND[group]
        metric_rows.extend(_metric_rows(sub, kind, {"group": group}))
        if "source" in sub.columns:
            for source, part in sub.groupby("source", sort=True):
                source_rows.extend(_metric_rows(part, kind, {"group": group, "source": source}))
    return EvaluationResult(per_protein, pd.DataFrame(loss_rows), pd.DataFrame(metric_rows), split,
                            pd.DataFrame(source_rows))


# --- report -----------------------------------------------------------------------------------------


def plot_result(result: EvaluationResult, path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Per-protein Pearson r distributions (one box per group and property, its protein count below it) and group
    losses; ``title`` (the model's name) heads the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rcols = [c for c in result.per_protein.columns if c.startswith("r_")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    data, labels = [], []
    for group in schema.SOURCE_GROUPS:
        sub = result.per_protein[result.per_protein["group"] == group] if not result.per_protein.empty else None
        if sub is None or sub.empty:
            continue
        for col in rcols:
            vals = sub[col].dropna().to_numpy()
            if len(vals):
                data.append(vals)
                labels.append(f"{group}\n{col[2:]}\nn = {len(vals)}")
    ax = axes[0]
    if data:
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
        for i, vals in enumerate(data, start=1):
            ax.scatter(np.full(len(vals), i) + np.random.default_rng(i).uniform(-0.15, 0.15, len(vals)), vals,
                       s=6, alpha=0.5, color="k")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylabel("per-protein Pearson r")
    ax.set_title(f"{result.split}: fluctuation and movement correlation")
    ax = axes[1]
    tot = result.losses[result.losses["property"] == TOTAL]
    x = np.arange(len(tot))
    ax.bar(x - 0.2, tot["rmse"], 0.4, label="model")
    if "baseline_rmse" in tot.columns:
        ax.bar(x + 0.2, tot["baseline_rmse"], 0.4, label="training mean")
    ax.set_xticks(x, tot["group"])
    ax.set_ylabel("weighted loss")
    ax.set_title("test loss per group")
    ax.legend()
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    target = save_figure(fig, path, dpi=120)
    plt.close(fig)
    return target


def write_report(result: EvaluationResult, outdir: str | os.PathLike[str], *, title: str = "") -> dict[str, Path]:
    """Write per_protein.csv, losses.csv, metrics.csv, summary.md and evaluation.png into ``outdir`` (the figure
    only when matplotlib is installed; otherwise a warning names the extra)."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    frames = [("per_protein", result.per_protein), ("losses", result.losses), ("metrics", result.metrics)]
    if not result.metrics_by_source.empty:
        frames.append(("metrics_by_source", result.metrics_by_source))
    for key, frame in frames:
        p = out / f"{key}.csv"
        with atomic_path(p) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
        paths[key] = p
    lines = [f"# Evaluation{': ' + title if title else ''} ({result.split} split)", ""]
    lines += ["## Dynamic-property metrics (median per-protein Pearson r)", "",
              markdown_table(result.metrics), ""]
    if not result.metrics_by_source.empty:
        lines += ["## The same metrics per data source", "", markdown_table(result.metrics_by_source), ""]
    lines += ["## Loss per group and property (mean per-protein RMSE)", "", markdown_table(result.losses), ""]
    p = out / "summary.md"
    with atomic_path(p) as tmp:
        tmp.write_text("\n".join(lines))
    paths["summary"] = p
    if not result.per_protein.empty:
        if missing_modules(EXTRAS["plots"]):  # a by-product of training: the tables are the result
            log.warning("%s not drawn: matplotlib is not installed (%s)", out / "evaluation.png", install_hint("plots"))
        else:
            paths["plot"] = plot_result(result, out / "evaluation.png", title=model_display_name(title))
    return paths
