"""Tables and figures of a fine-tuning run.

``RUN/predictions.csv`` (the out-of-fold prediction of every labelled row, for every predictor), ``RUN/metrics.csv``
(one row per scheme × assay × fold × model × method × dynamics × metric), ``RUN/summary.csv`` / ``RUN/summary.md``
(mean ± sd over folds, best first), ``RUN/learning_curves.png``, ``RUN/predicted_vs_true.png``, and for mutant tasks
``RUN/proteingym/<scheme>/<assay>.csv`` (ProteinGym's supervised layout: mutant, mutated_sequence, DMS_score, the
fold, one column per predictor) with ``RUN/proteingym/<scheme>/summary.csv`` (per assay: Spearman and MSE of each
predictor, mean over folds, as ProteinGym's supervised leaderboard reports them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqdance.finetuning.baselines import fit_ridge, one_hot, residue_identity
from seqdance.finetuning.labels import LabelSet
from seqdance.finetuning.metrics import (
    CLASSIFICATION_METRICS,
    LOWER_IS_BETTER,
    REGRESSION_METRICS,
    check_finite,
    classification_metrics,
    regression_metrics,
)
from seqdance.finetuning.splits import Fold
from seqdance.io_utils import atomic_path, markdown_table, save_figure

KEYS = ["scheme", "unit", "fold", "model", "method", "dynamics"]
BASELINE_MODEL = "-"


def _rows_frame(labels: LabelSet, tokens, test_rows: np.ndarray, predictions: Any, ident: dict[str, Any]
               ) -> pd.DataFrame:
    """Long predictions of one predictor on one fold's test rows (labelled entries only)."""
    classes = labels.classes
    if labels.task != "residue":
        true = np.asarray(labels.y)[test_rows]
        frame = pd.DataFrame({**ident, "row": test_rows, "name": [labels.names[i] for i in test_rows]})
        if labels.mutants is not None:
            frame["mutant"] = [labels.mutants[i] for i in test_rows]
        if classes:
            probs = np.asarray(predictions)
            frame["true"] = [classes[k] for k in true]
            frame["predicted"] = [classes[k] for k in probs.argmax(1)]
            for k, c in enumerate(classes):
                frame[f"p_{c}"] = probs[:, k]
        else:
            frame["true"] = true
            frame["predicted"] = np.asarray(predictions, dtype=np.float64).reshape(-1)
        return frame
    parts = []
    for i, pred in zip(test_rows, predictions):
        kept = len(pred)
        y = labels.y[i][:kept]
        labelled = (y >= 0) if classes else np.isfinite(y)
        where = np.flatnonzero(labelled)
        residues = labels.sequences[i].replace(":", "")
        part = pd.DataFrame({**ident, "row": i, "name": labels.names[i], "position": where + 1,
                             "residue": [residues[j] for j in where]})
        if classes:
            probs = np.asarray(pred)[where]
            part["true"] = [classes[k] for k in y[where]]
            part["predicted"] = [classes[k] for k in probs.argmax(1)] if len(where) else []
            for k, c in enumerate(classes):
                part[f"p_{c}"] = probs[:, k] if len(where) else []
        else:
            part["true"] = y[where]
            part["predicted"] = np.asarray(pred, dtype=np.float64)[where]
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _composition(sequences: list[str]) -> np.ndarray:
    from seqdance.analysis.probe import composition_features

    return composition_features(sequences)


def baseline_predictions(runner, scheme: str, unit: str, fold: Fold) -> pd.DataFrame:
    """Every ridge baseline's predictions on one fold (see :mod:`seqdance.finetuning.baselines`)."""
    from seqdance.analysis.probe import length_features

    labels: LabelSet = runner.labels
    in_unit = fold.test | fold.valid | fold.train
    if labels.groups is not None and unit != "all":
        in_unit = labels.groups == unit
    test, train = fold.test & in_unit, in_unit & ~fold.test
    n_classes = labels.n_outputs if labels.is_classification else None
    test_rows = np.flatnonzero(test)
    sets: dict[tuple[str, str, bool], Any] = {}
    if labels.task != "residue":
        seqs = labels.sequences
        if labels.task == "mutant":
            rows = np.flatnonzero(in_unit)
            ohe = np.zeros((labels.n, len(labels.wild_types[unit]) * 20), dtype=np.float32)
            ohe[rows] = one_hot([seqs[i] for i in rows])
            sets[(BASELINE_MODEL, "ridge:ohe", False)] = ohe
        sets[(BASELINE_MODEL, "ridge:length", False)] = length_features(seqs)
        sets[(BASELINE_MODEL, "ridge:composition", False)] = _composition(seqs)
        for name, _ in runner.specs:
            hidden = np.stack(runner.frozen(name, "hidden", True))
            for dyn in runner.cfg.dynamics_settings():
                x = hidden if not dyn else np.hstack([hidden, np.stack(runner.frozen(name, "dynamics", True))])
                sets[(name, "ridge:embeddings", dyn)] = x
        y = np.asarray(labels.y)
        frames = []
        for (model, method, dyn), x in sets.items():
            predicted = fit_ridge(x, y, train, test, n_classes, standardise=method != "ridge:ohe")
            check_finite(predicted, f"baseline {method} ({model}) on fold {fold.name}")
            frames.append(_rows_frame(labels, runner.tokens, test_rows, predicted,
                                      {"scheme": scheme, "unit": unit, "fold": fold.name, "model": model,
                                       "method": method, "dynamics": dyn}))
        return pd.concat(frames, ignore_index=True)
    # residue task: one ridge row per labelled residue (of the kept residues)
    rows = np.flatnonzero(in_unit)
    kept = {i: len(runner.tokens[i].residues) for i in rows}
    classes = labels.is_classification
    labelled = {i: ((labels.y[i][: kept[i]] >= 0) if classes else np.isfinite(labels.y[i][: kept[i]])) for i in rows}
    owner = np.concatenate([np.full(int(labelled[i].sum()), i) for i in rows])
    y = np.concatenate([labels.y[i][: kept[i]][labelled[i]] for i in rows])
    is_test, is_train = np.isin(owner, test_rows), np.isin(owner, np.flatnonzero(train))
    comp = _composition(labels.sequences)
    per_residue: dict[tuple[str, str, bool], np.ndarray] = {
        (BASELINE_MODEL, "ridge:length", False): np.concatenate(
            [np.full((int(labelled[i].sum()), 1), float(runner.tokens[i].n_residues)) for i in rows]),
        (BASELINE_MODEL, "ridge:composition", False): np.concatenate(
            [np.hstack([np.repeat(comp[i][None], int(labelled[i].sum()), 0),
                        residue_identity(labels.sequences[i])[: kept[i]][labelled[i]]]) for i in rows]),
    }
    for name, _ in runner.specs:
        hidden = runner.frozen(name, "hidden", False)
        for dyn in runner.cfg.dynamics_settings():
            dynamics = runner.frozen(name, "dynamics", False) if dyn else None
            per_residue[(name, "ridge:embeddings", dyn)] = np.concatenate(
                [np.hstack([hidden[i], dynamics[i]])[labelled[i]] if dyn else hidden[i][labelled[i]] for i in rows])
    frames = []
    for (model, method, dyn), x in per_residue.items():
        predicted = fit_ridge(x, y, is_train, is_test, labels.n_outputs if classes else None)
        check_finite(predicted, f"baseline {method} ({model}) on fold {fold.name}")
        # back to per-row arrays over the kept residues (unlabelled entries are not reported)
        per_row, offset = [], 0
        test_owner = owner[is_test]
        for i in test_rows:
            count = int((test_owner == i).sum())
            full = np.full((kept[i], *np.shape(predicted)[1:]), np.nan if not classes else 0.0)
            full[labelled[i]] = predicted[offset : offset + count]
            per_row.append(full)
            offset += count
        frames.append(_rows_frame(labels, runner.tokens, test_rows, per_row,
                                  {"scheme": scheme, "unit": unit, "fold": fold.name, "model": model,
                                   "method": method, "dynamics": dyn}))
    return pd.concat(frames, ignore_index=True)


def _metrics(frame: pd.DataFrame, labels: LabelSet) -> dict[str, float]:
    if labels.is_classification:
        index = {c: k for k, c in enumerate(labels.classes)}
        probs = frame[[f"p_{c}" for c in labels.classes]].to_numpy(dtype=np.float64)
        return classification_metrics(frame["true"].map(index).to_numpy(), probs)
    return regression_metrics(frame["true"].to_numpy(dtype=np.float64), frame["predicted"].to_numpy(dtype=np.float64))


def assemble(runner, per_job: list[dict[str, Any]], baseline_parts: list[pd.DataFrame]) -> dict[str, pd.DataFrame]:
    labels: LabelSet = runner.labels
    frames = list(baseline_parts)
    for job in per_job:
        combo, fold = job["combo"], job["fold"]
        frames.append(_rows_frame(labels, runner.tokens, np.flatnonzero(fold.test), job["result"].predictions,
                                  {"scheme": job["scheme"], "unit": job["unit"], "fold": fold.name,
                                   "model": combo.model, "method": combo.method, "dynamics": combo.dynamics}))
    predictions = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=KEYS)
    metric_rows = []
    for key, part in predictions.groupby(KEYS, sort=False):
        for metric, value in _metrics(part, labels).items():
            metric_rows.append({**dict(zip(KEYS, key)), "metric": metric, "value": value, "n_test": len(part)})
    metrics = pd.DataFrame(metric_rows)
    return {"predictions": predictions, "metrics": metrics, "summary": summarise(metrics, labels)}


def summarise(metrics: pd.DataFrame, labels: LabelSet) -> pd.DataFrame:
    """Mean ± sd over folds per (scheme, unit, model, method, dynamics), best first by the primary metric."""
    if metrics.empty:
        return pd.DataFrame()
    names = CLASSIFICATION_METRICS if labels.is_classification else REGRESSION_METRICS
    keys = ["scheme", "unit", "model", "method", "dynamics"]
    wide = metrics.set_index([*keys, "fold", "metric"])["value"].unstack("metric").reset_index()
    grouped = wide.groupby(keys, sort=False)
    out = grouped.size().rename("n_folds").reset_index()
    for m in names:
        out[f"{m}_mean"] = grouped[m].mean().to_numpy()
        out[f"{m}_sd"] = grouped[m].std(ddof=1).to_numpy()
    primary = names[-1] if labels.is_classification else names[0]
    order = {s: k for k, s in enumerate(dict.fromkeys(metrics["scheme"]))}
    units = {u: k for k, u in enumerate(dict.fromkeys(metrics["unit"]))}
    out["_s"], out["_u"] = out["scheme"].map(order), out["unit"].map(units)
    out = out.sort_values(["_s", "_u", f"{primary}_mean"], ascending=[True, True, False], na_position="last")
    return out.drop(columns=["_s", "_u"]).reset_index(drop=True)


def best_combination(summary: pd.DataFrame, metrics: pd.DataFrame, unit: str, labels: LabelSet
                     ) -> tuple[tuple[str, str, bool], str]:
    """The best fine-tuned (model, method, dynamics) of the first scheme for ``unit``, and its best fold."""
    primary = "mcc" if labels.is_classification else "spearman"
    scheme = summary["scheme"].iloc[0]
    part = summary[(summary["scheme"] == scheme) & (summary["unit"] == unit)
                   & ~summary["method"].str.startswith("ridge")]
    part = part.sort_values(f"{primary}_mean", ascending=False, na_position="last")
    row = part.iloc[0]
    combo = (str(row["model"]), str(row["method"]), bool(row["dynamics"]))
    folds = metrics[(metrics["scheme"] == scheme) & (metrics["unit"] == unit) & (metrics["model"] == combo[0])
                    & (metrics["method"] == combo[1]) & (metrics["dynamics"] == combo[2])
                    & (metrics["metric"] == primary)]
    fold = str(folds.sort_values("value", ascending=False, na_position="last")["fold"].iloc[0])
    return combo, fold


def _predictor(row: pd.Series | dict) -> str:
    dyn = "+dynamics" if bool(row["dynamics"]) else ""
    return f"{row['method']}{dyn}" if row["model"] == BASELINE_MODEL else f"{row['model']}/{row['method']}{dyn}"


def _pm(mean: float, sd: float) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.3f} ± {sd:.3f}" if np.isfinite(sd) else f"{mean:.3f}"


def summary_markdown(runner, summary: pd.DataFrame, per_job: list[dict[str, Any]]) -> str:
    labels: LabelSet = runner.labels
    cfg = runner.cfg
    names = CLASSIFICATION_METRICS if labels.is_classification else REGRESSION_METRICS
    lines = [f"# Fine-tuning: {labels.task} task, target {labels.target}", "",
             f"Labels: {labels.source} "
             f"({labels.n} rows{', classes ' + ', '.join(labels.classes) if labels.classes else ''}). "
             f"Models: {', '.join(f'{n} ({s})' for n, s in runner.specs)}. Methods: {', '.join(cfg.methods)}; "
             f"dynamics inputs: {cfg.with_dynamics}; pooling: {cfg.pooling}; up to {cfg.epochs} epochs (patience "
             f"{cfg.patience}), batch {cfg.batch_size}. Mean ± sd over folds, best first; baselines are ridge "
             "regressions on the same folds.", ""]
    for note in dict.fromkeys(runner.notes):
        lines.append(f"- {note}")
    if runner.notes:
        lines.append("")
    for scheme, part in summary.groupby("scheme", sort=False):
        units = list(dict.fromkeys(part["unit"]))
        if len(units) > 1:
            keys = ["model", "method", "dynamics"]
            mean = part.groupby(keys, sort=False)[[f"{m}_mean" for m in names]].mean().reset_index()
            primary = names[-1] if labels.is_classification else names[0]
            mean = mean.sort_values(f"{primary}_mean", ascending=False)
            shown = pd.DataFrame({"predictor": [_predictor(r) for _, r in mean.iterrows()],
                                  **{m: mean[f"{m}_mean"].to_numpy() for m in names}})
            lines += [f"## {scheme}: mean over {len(units)} assays (of each assay's mean over folds)", "",
                      markdown_table(shown, "{:.3f}"), ""]
        for unit in units:
            rows = part[part["unit"] == unit]
            shown = pd.DataFrame({"predictor": [_predictor(r) for _, r in rows.iterrows()],
                                  "folds": rows["n_folds"].to_numpy(),
                                  **{m: [_pm(a, b) for a, b in zip(rows[f"{m}_mean"], rows[f"{m}_sd"])]
                                     for m in names}})
            title = f"## {scheme}" + (f": {unit}" if unit != "all" else "")
            lines += [title, "", markdown_table(shown), ""]
    if per_job:
        counts = {}
        for job in per_job:
            folder = job["folder"] / "result.json"
            if folder.is_file():
                import json

                saved = json.loads(folder.read_text())
                counts[job["combo"].label] = (saved.get("trainable"), saved.get("total"))
        rows = [{"predictor": k, "trainable parameters": f"{v[0]:,}", "of": f"{v[1]:,}"} for k, v in counts.items()
                if v[0] is not None]
        if rows:
            lines += ["## Trained parameters", "", markdown_table(pd.DataFrame(rows)), ""]
    lines += ["Lower is better for " + ", ".join(sorted(LOWER_IS_BETTER & set(names))) + "; higher for the rest."
              if LOWER_IS_BETTER & set(names) else "Higher is better for every metric.", ""]
    return "\n".join(lines)


def plot_learning_curves(per_job: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    combos = list(dict.fromkeys(j["combo"].label for j in per_job))
    scheme = per_job[0]["scheme"]
    unit = per_job[0]["unit"]
    n = len(combos)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, label in zip(axes.flat, combos):
        for job in per_job:
            if job["combo"].label != label or job["scheme"] != scheme or job["unit"] != unit:
                continue
            history = job["result"].history
            epochs = [h["epoch"] for h in history]
            line = ax.plot(epochs, [h["valid_loss"] for h in history], lw=1.2, label=job["fold"].name.split(":")[-1])
            ax.plot(epochs, [h["train_loss"] for h in history], lw=0.8, ls="--", color=line[0].get_color())
            ax.axvline(job["result"].best_epoch, color=line[0].get_color(), lw=0.5, ls=":")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("loss (solid: valid, dashed: train)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(title="fold", fontsize=6, title_fontsize=7)
    fig.suptitle(f"learning curves ({scheme}{', ' + unit if unit != 'all' else ''}; dotted: kept epoch)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_predicted_vs_true(predictions: pd.DataFrame, summary: pd.DataFrame, labels: LabelSet, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scheme = summary["scheme"].iloc[0]
    unit = summary["unit"].iloc[0]
    part = predictions[(predictions["scheme"] == scheme) & (predictions["unit"] == unit)]
    order = summary[(summary["scheme"] == scheme) & (summary["unit"] == unit)]
    keys = [(r["model"], r["method"], bool(r["dynamics"])) for _, r in order.iterrows()]
    n = len(keys)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.1 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    primary = "mcc" if labels.is_classification else "spearman"
    for ax, (model, method, dyn), (_, srow) in zip(axes.flat, keys, order.iterrows()):
        p = part[(part["model"] == model) & (part["method"] == method) & (part["dynamics"] == dyn)]
        name = _predictor({"model": model, "method": method, "dynamics": dyn})
        if labels.is_classification:
            classes = labels.classes
            index = {c: k for k, c in enumerate(classes)}
            cm = np.zeros((len(classes), len(classes)))
            np.add.at(cm, (p["true"].map(index).to_numpy(), p["predicted"].map(index).to_numpy()), 1)
            share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
            ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
            for (r, c), value in np.ndenumerate(share):  # each true class's share predicted as each class
                ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value > 0.6 else "black")
            ax.set_xticks(range(len(classes)), classes, fontsize=7, rotation=30)
            ax.set_yticks(range(len(classes)), classes, fontsize=7)
            ax.set_xlabel("predicted", fontsize=8)
            ax.set_ylabel("true (rows sum to 1)", fontsize=8)
        else:
            ax.scatter(p["true"], p["predicted"], s=4, alpha=0.35)
            lo = float(min(p["true"].min(), p["predicted"].min()))
            hi = float(max(p["true"].max(), p["predicted"].max()))
            ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
            ax.set_xlabel(f"true {labels.target}", fontsize=8)
            ax.set_ylabel("predicted (out of fold)", fontsize=8)
        ax.set_title(f"{name}\n{primary} {srow[f'{primary}_mean']:.2f}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"out-of-fold predictions ({scheme}{', ' + unit if unit != 'all' else ''})", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def _mean_defined(values: list[float]) -> float:
    defined = [v for v in values if np.isfinite(v)]
    return float(np.mean(defined)) if defined else float("nan")


def write_proteingym(runner, predictions: pd.DataFrame, out: Path) -> None:
    """ProteinGym's supervised layout per scheme and assay, and per-assay Spearman / MSE of every predictor."""
    labels: LabelSet = runner.labels
    for scheme, part in predictions.groupby("scheme", sort=False):
        folder = out / "proteingym" / scheme
        rows_summary = []
        for assay, sub in part.groupby("unit", sort=False):
            rows = np.flatnonzero(labels.groups == assay)
            table = pd.DataFrame({"mutant": [labels.mutants[i] for i in rows],
                                  "mutated_sequence": [labels.sequences[i] for i in rows],
                                  "DMS_score": np.asarray(labels.y)[rows]}, index=rows)
            fold_of = sub.drop_duplicates("row").set_index("row")["fold"]
            table[scheme] = [int(str(fold_of.get(i, "-1")).rsplit(":", 1)[-1]) for i in rows]
            for key, pred in sub.groupby(["model", "method", "dynamics"], sort=False):
                name = _predictor(dict(zip(["model", "method", "dynamics"], key)))
                table[name] = pred.set_index("row")["predicted"].reindex(rows).to_numpy()
                per_fold = [regression_metrics(f["true"].to_numpy(float), f["predicted"].to_numpy(float))
                            for _, f in pred.groupby("fold")]
                rows_summary.append({"assay": assay, "predictor": name,
                                     "spearman": _mean_defined([m["spearman"] for m in per_fold]),
                                     "mse": float(np.mean([m["mse"] for m in per_fold])), "n_folds": len(per_fold)})
            with atomic_path(folder / f"{assay}.csv") as tmp:
                table.to_csv(tmp, index=False, float_format="%.6g")
        with atomic_path(folder / "summary.csv") as tmp:
            pd.DataFrame(rows_summary).to_csv(tmp, index=False, float_format="%.6g")


def write_outputs(runner, tables: dict[str, pd.DataFrame], per_job: list[dict[str, Any]]) -> dict[str, Path]:
    out = runner.out
    paths = {}
    for name in ("predictions", "metrics", "summary"):
        path = out / f"{name}.csv"
        frame = tables[name].drop(columns=["row"], errors="ignore")
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
        paths[name] = path
    path = out / "summary.md"
    with atomic_path(path) as tmp:
        tmp.write_text(summary_markdown(runner, tables["summary"], per_job))
    paths["markdown"] = path
    if per_job:
        paths["learning_curves"] = plot_learning_curves(per_job, out / "learning_curves.png")
    if not tables["summary"].empty:
        paths["predicted_vs_true"] = plot_predicted_vs_true(tables["predictions"], tables["summary"], runner.labels,
                                                            out / "predicted_vs_true.png")
    if runner.labels.task == "mutant" and not tables["predictions"].empty:
        write_proteingym(runner, tables["predictions"], out)
    return paths
