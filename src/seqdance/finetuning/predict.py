"""Predictions of a fine-tuned model: its target for new sequences (``seqdance predict``) and mutation scores from
it (``seqdance score --target``).

A mutant's fine-tuned score is the prediction for the mutant sequence minus the prediction for the wild type (for
a classifier, the change of the last class's probability): positive when the model predicts a higher target for
the mutant. For a DMS-trained model (higher DMS_score = fitter) that is ProteinGym's convention.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from seqdance.devices import eval_mode, model_device
from seqdance.errors import InputError
from seqdance.finetuning.inputs import collate, length_batches, tokenize
from seqdance.finetuning.metrics import check_finite
from seqdance.finetuning.model import FinetunedModel, dynamics_features
from seqdance.io_utils import atomic_path

BATCH_TOKENS = 8192


@torch.inference_mode()
def predict_targets(model: FinetunedModel, sequences: Sequence[str], ids: Sequence[str] | None = None,
                    *, max_tokens: int | None = None) -> list[np.ndarray]:
    """Per sequence: a protein task's prediction (value, or class probabilities) or a residue task's (L,) / (L, k)
    array (residues beyond the token limit are NaN)."""
    info = model.info
    names = list(ids) if ids is not None else [f"seq{i}" for i in range(len(sequences))]
    limit = int(max_tokens or info.get("max_tokens", 1024))
    rows = tokenize(sequences, names, limit)
    device = model_device(model.head)
    mean, sd = info.get("target_scaler") or (0.0, 1.0)
    classes = info.get("classes")
    out: list[np.ndarray | None] = [None] * len(rows)
    with eval_mode(model):
        for batch in length_batches([len(r.ids) for r in rows], BATCH_TOKENS):
            input_ids, attention_mask, residue_mask = collate([rows[i] for i in batch], device)
            dyn = None
            if model.dynamics_source is not None:
                dyn = dynamics_features(model.dynamics_source, input_ids, attention_mask, residue_mask)
            values = model(input_ids, attention_mask, residue_mask, dyn).float()
            values = torch.softmax(values, -1) if classes else values[..., 0] * sd + mean
            values = values.cpu().numpy().astype(np.float64)
            for b, i in enumerate(batch):
                if info["task"] == "residue":
                    keep = rows[i].residues
                    full = np.full((rows[i].n_residues, *values.shape[2:]), np.nan)
                    full[: len(keep)] = values[b][keep]
                    out[i] = full
                else:
                    out[i] = values[b]
    for name, value in zip(names, out):
        check_finite(np.nan_to_num(value, nan=0.0), f"the fine-tuned model's prediction for {name!r}")
    return out  # type: ignore[return-value]


def target_column(model: FinetunedModel) -> str:
    return str(model.info["target"])


def write_target_predictions(model: FinetunedModel, ids: Sequence[str], sequences: Sequence[str],
                             out_dir: str | os.PathLike[str], stems: dict[str, str]) -> Path:
    """``OUTDIR/targets.csv`` (protein tasks: one row per sequence, a column per target, class probabilities as
    ``<target>_p_<class>``) or, for residue tasks, ``OUTDIR/<stem>.targets.npz`` per sequence (the target's
    per-residue array) and ``OUTDIR/targets_residues.csv`` (id, position, residue, value)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    values = predict_targets(model, sequences, ids)
    target, classes = target_column(model), model.info.get("classes")
    if model.info["task"] != "residue":
        table = pd.DataFrame({"id": list(ids), "sequence": list(sequences)})
        if classes:
            probs = np.stack(values)
            table[target] = [classes[k] for k in probs.argmax(1)]
            for k, c in enumerate(classes):
                table[f"{target}_p_{c}"] = probs[:, k]
        else:
            table[target] = np.asarray(values, dtype=np.float64).reshape(-1)
        path = out / "targets.csv"
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
        return path
    parts = []
    for seq_id, seq, value in zip(ids, sequences, values):
        residues = seq.replace(":", "")
        with atomic_path(out / f"{stems[seq_id]}.targets.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **{target: value})
        column = [classes[k] for k in value.argmax(1)] if classes else value
        parts.append(pd.DataFrame({"id": seq_id, "position": np.arange(1, len(residues) + 1),
                                   "residue": list(residues), target: column}))
    path = out / "targets_residues.csv"
    with atomic_path(path) as tmp:
        pd.concat(parts, ignore_index=True).to_csv(tmp, index=False, float_format="%.6g")
    return path


def finetuned_score_column(target: str) -> str:
    return f"finetuned_{target}"


def score_mutants_finetuned(model: FinetunedModel, wild_type: str, variants: Sequence, *,
                            target: str | None = None) -> pd.DataFrame:
    """One column: prediction(mutant) − prediction(wild type) per variant (see the module docstring)."""
    if model.info["task"] == "residue":
        raise InputError("mutation scores need a protein- or mutant-level model; this one predicts per residue")
    if target is not None and target != target_column(model):
        raise InputError(f"unknown target column {target!r}: the fine-tuned model predicts {target_column(model)!r}")
    sequences = [wild_type] + [v.apply(wild_type) for v in variants]
    values = predict_targets(model, sequences, ["wild type"] + [v.mutant for v in variants])
    if model.info.get("classes"):
        scalar = np.array([v[-1] for v in values])
    else:
        scalar = np.asarray(values, dtype=np.float64).reshape(-1)
    return pd.DataFrame({finetuned_score_column(target_column(model)): scalar[1:] - scalar[0]})


def dynamics_base(model: FinetunedModel):
    """The dynamics model whose 23 properties ``predict`` writes beside the target (None for an ESM2 base)."""
    from seqdance.finetuning.model import is_dynamics_model

    return model.base if is_dynamics_model(model.base) else None


__all__ = [
    "dynamics_base",
    "finetuned_score_column",
    "model_device",
    "predict_targets",
    "score_mutants_finetuned",
    "write_target_predictions",
]
