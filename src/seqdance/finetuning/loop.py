"""Training one fine-tuning job (one model × method × dynamics choice × fold): AdamW, warm-up then cosine decay,
gradient-norm clipping, early stopping on the fold's validation rows, resumable.

* Reuses the trainer's pieces: :func:`seqdance.train.schedule.build_optimizer` / ``build_scheduler``, checkpoints
  (:mod:`seqdance.train.checkpoint`: atomic files, ``weights_only`` reading, RNG states) and the process group of
  :mod:`seqdance.train.distributed` (under ``torchrun`` each rank takes a slice of every batch and the gradients
  are summed over ranks in one all-reduce, so the update equals the single-process one).
* Determinism: the head's (and the adapters') initial weights come from the seed, the batch order of epoch e from
  (seed, job, e), dropout from the torch generator saved in each checkpoint; a job killed during an epoch and resumed
  from its last end-of-epoch checkpoint ends with the weights of an uninterrupted run (on the CPU).
* The non-finite guard: a NaN or infinite loss or gradient stops the job naming the epoch and the rows of the batch
  (``on_nonfinite: skip`` skips such updates instead and counts them).
* Regression targets are standardised with the training rows' mean and sd (the head predicts in those units; the
  predictions are mapped back); classification uses class weights n / (classes × count) against imbalance.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seqdance.errors import InputError, NonFiniteError
from seqdance.finetuning.inputs import TokenRow, collate
from seqdance.finetuning.model import FinetunedModel

log = logging.getLogger(__name__)


@dataclass
class JobInputs:
    """Everything a job reads, indexed by label row."""

    task: str
    rows: list[TokenRow]
    y: np.ndarray | list[np.ndarray]
    n_classes: int | None  # None: regression
    hidden: list[np.ndarray] | None = None  # frozen features (head method): pooled (d,) or per residue (L', d)
    dynamics: list[np.ndarray] | None = None  # pooled (63,) or per residue (L', 63)
    names: list[str] = field(default_factory=list)


@dataclass
class Settings:
    method: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    warmup_fraction: float
    final_lr_fraction: float
    grad_clip_norm: float | None
    patience: int
    seed: int
    layer_decay: float | None = None
    autocast_dtype: torch.dtype | None = None
    on_nonfinite: str = "error"
    progress: bool = False


@dataclass
class JobResult:
    predictions: Any  # test rows: (n,) or (n, classes); residue tasks: list of (L',) or (L', classes)
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool
    scaler: tuple[float, float] | None  # (mean, sd) of regression targets
    class_weights: list[float] | None
    skipped_updates: int = 0


class WarmupCosine:
    """Learning-rate factor of update n (1-based): linear warm-up over W updates, then cosine to ``final``."""

    def __init__(self, total: int, warmup: int, final: float = 0.0) -> None:
        self.total, self.warmup, self.final = max(1, total), max(0, warmup), final

    def factor(self, update: int) -> float:
        if update <= self.warmup:
            return update / max(1, self.warmup)
        progress = min(1.0, (update - self.warmup) / max(1, self.total - self.warmup))
        return self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * progress))

    def __call__(self, completed: int) -> float:
        return self.factor(completed + 1)


def _param_groups(model: FinetunedModel, lr: float, layer_decay: float | None) -> list[dict]:
    """One group per depth of the encoder for layer-wise learning-rate decay (layer i of L: lr × decay^(L − i);
    embeddings: lr × decay^(L + 1); head and final LayerNorm: lr); one group otherwise."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if layer_decay is None:
        return [{"params": [p for _, p in trainable], "lr": lr}]
    n_layers = len(model.encoder.layers)
    groups: dict[float, list] = {}
    for name, param in trainable:
        scale = 1.0
        if ".embeddings." in name:
            scale = layer_decay ** (n_layers + 1)
        elif ".encoder.layer." in name:
            index = int(name.split(".encoder.layer.")[1].split(".")[0])
            scale = layer_decay ** (n_layers - index)
        groups.setdefault(scale, []).append(param)
    return [{"params": ps, "lr": lr * s} for s, ps in sorted(groups.items())]


def _standardiser(inputs: JobInputs, train: np.ndarray) -> tuple[float, float] | None:
    if inputs.n_classes is not None:
        return None
    if inputs.task == "residue":
        values = np.concatenate([inputs.y[i] for i in train])
        values = values[np.isfinite(values)]
    else:
        values = np.asarray(inputs.y)[train]
    if len(values) == 0:
        raise InputError("a fold's training rows hold no labels")
    sd = float(np.std(values))
    return float(np.mean(values)), (sd if sd > 0 else 1.0)


def _class_weights(inputs: JobInputs, train: np.ndarray) -> list[float] | None:
    if inputs.n_classes is None:
        return None
    if inputs.task == "residue":
        values = np.concatenate([inputs.y[i] for i in train])
        values = values[values >= 0]
    else:
        values = np.asarray(inputs.y)[train]
    counts = np.bincount(values, minlength=inputs.n_classes).astype(np.float64)
    weights = np.where(counts > 0, len(values) / (inputs.n_classes * np.maximum(counts, 1)), 0.0)
    return weights.tolist()


class Batcher:
    """Turns row indices into the model's inputs and targets (see :class:`JobInputs`)."""

    def __init__(self, model: FinetunedModel, inputs: JobInputs, device: torch.device, method: str,
                 scaler: tuple[float, float] | None) -> None:
        self.model, self.inputs, self.device, self.method, self.scaler = model, inputs, device, method, scaler
        self.pooled_cache = method == "head" and model.head.pools_raw_mean

    def outputs(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(outputs, residue mask): (B, k) for protein tasks, (B, T, k) and the (B, T) mask of kept residues."""
        inp, dev = self.inputs, self.device
        if self.method == "head":
            assert inp.hidden is not None
            if self.pooled_cache:
                hidden = torch.from_numpy(np.stack([inp.hidden[i] for i in rows])).to(dev)
                dyn = (None if inp.dynamics is None
                       else torch.from_numpy(np.stack([inp.dynamics[i] for i in rows])).to(dev))
                return self.model.head.forward_pooled(hidden, dyn), None
            hidden, mask = _pad([inp.hidden[i] for i in rows], dev)
            dyn = None if inp.dynamics is None else _pad([inp.dynamics[i] for i in rows], dev)[0]
            out = self.model.head(hidden, mask, dyn)
            return out, (mask if inp.task == "residue" else None)
        input_ids, attention_mask, residue_mask = collate([inp.rows[i] for i in rows], dev)
        dyn = None
        if inp.dynamics is not None:
            dyn = torch.zeros((*input_ids.shape, inp.dynamics[rows[0]].shape[-1]), device=dev)
            for b, i in enumerate(rows):
                dyn[b, torch.from_numpy(inp.rows[i].residues).to(dev)] = torch.from_numpy(inp.dynamics[i]).to(dev)
        out = self.model(input_ids, attention_mask, residue_mask, dyn)
        return out, (residue_mask if inp.task == "residue" else None)

    def targets(self, rows: list[int], mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(targets, labelled) aligned with the outputs: per row, or per token at the mask's residues."""
        inp = self.inputs
        classes = inp.n_classes is not None
        if inp.task != "residue":
            y = np.asarray(inp.y)[rows]
            if not classes:
                y = (y - self.scaler[0]) / self.scaler[1]
            t = torch.as_tensor(y, device=self.device)
            return (t.long() if classes else t.float()), torch.ones(len(rows), dtype=torch.bool, device=self.device)
        assert mask is not None
        fill = -1 if classes else np.nan
        grid = np.full(tuple(mask.shape), fill, dtype=np.int64 if classes else np.float64)
        positions = mask.cpu().numpy()
        for b, i in enumerate(rows):
            where = np.flatnonzero(positions[b])
            grid[b, where] = inp.y[i][: len(where)]
        labelled = grid >= 0 if classes else np.isfinite(grid)
        if not classes:
            grid = np.where(labelled, (grid - self.scaler[0]) / self.scaler[1], 0.0)
        t = torch.as_tensor(np.where(labelled, grid, 0), device=self.device)
        return (t.long() if classes else t.float()), torch.as_tensor(labelled, device=self.device)


def _pad(arrays: list[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(a.shape[0] for a in arrays)
    out = np.zeros((len(arrays), width, arrays[0].shape[-1]), dtype=np.float32)
    mask = np.zeros((len(arrays), width), dtype=bool)
    for b, a in enumerate(arrays):
        out[b, : a.shape[0]] = a
        mask[b, : a.shape[0]] = True
    return torch.from_numpy(out).to(device), torch.from_numpy(mask).to(device)


def _loss_sum(out: torch.Tensor, target: torch.Tensor, labelled: torch.Tensor,
              weights: torch.Tensor | None) -> torch.Tensor:
    """Sum over labelled entries of the squared error (regression) or the class-weighted cross-entropy."""
    out = out.float()
    if weights is None:
        err = (out.squeeze(-1) - target) ** 2
    else:
        err = F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1).clamp(min=0), weight=weights,
                              reduction="none").reshape(target.shape)
    return (err * labelled).sum()


def job_seed(seed: int, key: str) -> list[int]:
    return [seed, int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)]


def train_job(model: FinetunedModel, inputs: JobInputs, train: np.ndarray, valid: np.ndarray, test: np.ndarray,
              settings: Settings, *, key: str, label: str, out_dir: Path | None, dist_info=None) -> JobResult:
    """Train ``model`` (its trainable parameters already chosen) on the ``train`` rows, early-stopped on ``valid``;
    predict ``test``. With ``out_dir`` every epoch ends with a checkpoint there and a job found half done resumes."""
    from seqdance.train import checkpoint as ckpt
    from seqdance.train.distributed import DistInfo, all_reduce_sum
    from seqdance.train.schedule import build_scheduler

    info = dist_info or DistInfo()
    device = next(model.head.parameters()).device
    train_rows, valid_rows, test_rows = (np.flatnonzero(m) for m in (train, valid, test))
    scaler = _standardiser(inputs, train_rows)
    class_weights = _class_weights(inputs, train_rows)
    weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32, device=device)
    batcher = Batcher(model, inputs, device, settings.method, scaler)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(_param_groups(model, settings.lr, settings.layer_decay), lr=settings.lr,
                                  betas=settings.betas, weight_decay=settings.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train_rows) / settings.batch_size))
    total = steps_per_epoch * settings.epochs
    scheduler = build_scheduler(optimizer, WarmupCosine(total, int(settings.warmup_fraction * total),
                                                        settings.final_lr_fraction))
    start_epoch, history = 1, []
    best_state, best_loss, best_epoch, bad_epochs, skipped = model.trainable_state(), math.inf, 0, 0, 0
    if out_dir is not None:
        found = ckpt.load_latest_checkpoint(out_dir)
        if found is not None and found[1].get("job_key") == key:
            state = found[1]
            model.load_state_dict(state["model"], strict=False)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            best_state, best_loss = state["best_state"], float(state["best_loss"])
            best_epoch, bad_epochs = int(state["best_epoch"]), int(state["bad_epochs"])
            history, skipped = list(state["history"]), int(state.get("skipped", 0))
            ckpt.set_rng_state(state["rng"])
            start_epoch = int(state["update"]) + 1
            if bad_epochs >= settings.patience:
                start_epoch = settings.epochs + 1
            log.info("%s: resumed after epoch %d", label, start_epoch - 1)
    autocast = (torch.autocast(device.type, dtype=settings.autocast_dtype) if settings.autocast_dtype is not None
                else contextlib.nullcontext())
    stopped = bad_epochs >= settings.patience
    for epoch in range(start_epoch, settings.epochs + 1):
        began = time.perf_counter()
        model.train()
        order = train_rows[np.random.default_rng([*job_seed(settings.seed, key), epoch]).permutation(len(train_rows))]
        batches = [order[i : i + settings.batch_size].tolist() for i in range(0, len(order), settings.batch_size)]
        bar = None
        if settings.progress and info.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(batches), desc=f"finetune {label} epoch {epoch}/{settings.epochs}", unit="batch",
                       leave=False, dynamic_ncols=True)
        train_sum, train_count = 0.0, 0.0
        for batch in batches:
            local = batch[info.rank :: info.world_size]
            denominator = _count(batcher, batch)
            optimizer.zero_grad(set_to_none=True)
            loss_sum = torch.zeros((), device=device)
            if local:
                with autocast:
                    out, mask = batcher.outputs(local)
                target, labelled = batcher.targets(local, mask)
                loss_sum = _loss_sum(out, target, labelled, weights)
                (loss_sum / denominator).backward()
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            flat = torch.cat([g.reshape(-1) for g in grads] + [loss_sum.detach().reshape(1)])
            all_reduce_sum(flat, info)
            finite = bool(torch.isfinite(flat).all())
            if not finite:
                problem = (f"{label}, epoch {epoch}: the loss or a gradient is NaN or infinite for the batch holding "
                           f"{', '.join(inputs.names[i] for i in batch[:5]) if inputs.names else batch[:5]}"
                           f"{' ...' if len(batch) > 5 else ''}")
                if settings.on_nonfinite != "skip":
                    raise NonFiniteError(f"fine-tuning stopped: {problem} (on_nonfinite: skip would skip such updates)")
                log.warning("skipped: %s", problem)
                skipped += 1
                optimizer.zero_grad(set_to_none=True)
                with warnings.catch_warnings():  # the schedule follows the update count, stepped or skipped
                    warnings.simplefilter("ignore", UserWarning)
                    scheduler.step()
                continue
            offset = 0
            for p in params:
                n = p.numel()
                p.grad = flat[offset : offset + n].view_as(p).to(p.dtype)
                offset += n
            if settings.grad_clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, settings.grad_clip_norm)
            optimizer.step()
            scheduler.step()
            train_sum += float(flat[-1])
            train_count += denominator
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{train_sum / max(train_count, 1):.4f}")
        if bar is not None:
            bar.close()
        valid_loss = evaluate_loss(batcher, valid_rows, weights, settings) if len(valid_rows) else train_sum / max(
            train_count, 1)
        record = {"epoch": epoch, "train_loss": train_sum / max(train_count, 1), "valid_loss": valid_loss,
                  "lr": optimizer.param_groups[-1]["lr"], "seconds": time.perf_counter() - began}
        history.append(record)
        if valid_loss < best_loss:
            best_loss, best_epoch, bad_epochs, best_state = valid_loss, epoch, 0, model.trainable_state()
        else:
            bad_epochs += 1
        stopped = bad_epochs >= settings.patience
        if out_dir is not None:
            rngs = ckpt.rng_state()
            if info.is_main:
                ckpt.save_checkpoint({"model": model.trainable_state(), "optimizer": optimizer.state_dict(),
                                      "scheduler": scheduler.state_dict(), "best_state": best_state,
                                      "best_loss": best_loss, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                                      "history": history, "rng": rngs, "job_key": key, "skipped": skipped},
                                     out_dir, epoch, keep=1)
        if stopped:
            break
    model.load_state_dict(best_state, strict=False)
    predictions = predict_rows(batcher, test_rows) if len(test_rows) else None
    return JobResult(predictions, history, best_epoch, stopped, scaler, class_weights, skipped)


def _count(batcher: Batcher, batch: list[int]) -> float:
    """Labelled entries of a whole batch (rows, or labelled residues kept): the loss's denominator on every rank."""
    inp = batcher.inputs
    if inp.task != "residue":
        return float(len(batch))
    total = 0
    for i in batch:
        kept = len(inp.rows[i].residues) if batcher.method != "head" else inp.hidden[i].shape[0]
        values = inp.y[i][:kept]
        total += int((values >= 0).sum() if inp.n_classes is not None else np.isfinite(values).sum())
    return float(max(total, 1))


@torch.no_grad()
def evaluate_loss(batcher: Batcher, rows: np.ndarray, weights: torch.Tensor | None, settings: Settings) -> float:
    batcher.model.eval()
    total, count = 0.0, 0.0
    for i in range(0, len(rows), settings.batch_size):
        batch = rows[i : i + settings.batch_size].tolist()
        out, mask = batcher.outputs(batch)
        target, labelled = batcher.targets(batch, mask)
        total += float(_loss_sum(out, target, labelled, weights))
        count += float(labelled.sum())
    return total / max(count, 1.0)


@torch.no_grad()
def predict_rows(batcher: Batcher, rows: np.ndarray, batch_size: int = 32) -> Any:
    """Predictions of ``rows`` in the task's units: regression values (mapped back from standard units) or class
    probabilities; residue tasks give one array per row over its kept residues."""
    model, inp = batcher.model, batcher.inputs
    model.eval()
    out_rows: list[np.ndarray] = []
    for i in range(0, len(rows), batch_size):
        batch = rows[i : i + batch_size].tolist()
        out, mask = batcher.outputs(batch)
        out = out.float()
        values = (torch.softmax(out, -1) if inp.n_classes is not None
                  else out[..., 0] * batcher.scaler[1] + batcher.scaler[0])
        values = values.cpu().numpy().astype(np.float64)
        if mask is None:
            out_rows.extend(values)
        else:
            keep = mask.cpu().numpy()
            out_rows.extend(values[b][keep[b]] for b in range(len(batch)))
    if inp.task == "residue":
        return out_rows
    return np.stack(out_rows)
