"""The SeqDance / ESMDance trainer: one process or many under torchrun, resumable, logged.

One update = for each source group, the configured number of sequences (all ranks together) in
micro-batches, gradients accumulated locally (DDP ``no_sync``) and all-reduced once, on the last backward.
Each micro-batch's loss is ``Σ_p w_p Σ_{proteins} RMSE / S × world_size`` (S = sequences per group), so the
averaged gradient DDP produces is exactly the gradient of the batch-mean loss of docs/design.md#loss over the global
batch, whatever the number of ranks or micro-batches. Then: unscale (fp16), element-wise gradient value
clipping, AdamW step, LR schedule step.

Mixed precision: the model runs under ``torch.autocast`` (bf16, or fp16 with a GradScaler) and the loss in
float32. ESMDance's frozen encoder runs under ``no_grad`` inside the model and is left out of the optimiser.
Parameters that never receive a gradient (the encoder's pooler and contact-regression weights, kept only so
state dicts match ESM2) are frozen before wrapping in DDP, so DDP needs no unused-parameter search.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqdance import schema
from seqdance.devices import autocast_dtype, resolve_precision
from seqdance.errors import InputError, NonFiniteError
from seqdance.io_utils import atomic_path
from seqdance.train import checkpoint as ckpt
from seqdance.train.config import TrainConfig
from seqdance.train.data import Batch, Catalog, MicroBatchDataset, StoreSet, TrainPlan, micro_batch_loader
from seqdance.train.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    broadcast_object,
    gather_objects,
    init_distributed,
)
from seqdance.train.loss import batch_group_loss, group_layout, weight_vector
from seqdance.train.schedule import WarmupLinearDecay, build_optimizer, build_scheduler
from seqdance.train.weights import (
    LossWeights,
    compute_store_statistics,
    load_loss_weights,
    read_channel_means,
    write_statistics,
)

log = logging.getLogger(__name__)

#: Fields whose change makes a resumed run a different experiment.
_RESUME_MUST_MATCH = ("model_select", "encoder")
_RESUME_SHOULD_MATCH = ("seed", "total_updates", "data.sequences_per_group", "data.curriculum", "optim")


def set_dropout(model: nn.Module, p: float, *, include_encoder: bool) -> None:
    """Set every dropout probability of the heads (and of the encoder when ``include_encoder``)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Dropout) and (include_encoder or not name.startswith("esm2.")):
            module.p = p
    esm2 = getattr(model, "esm2", None)
    if include_encoder and esm2 is not None and hasattr(esm2, "set_dropout"):
        esm2.set_dropout(p, p)


def build_model(config: TrainConfig) -> nn.Module:
    """The model a config asks for: fresh SeqDance, ESMDance on pretrained ESM2, or a model to fine-tune."""
    from seqdance.model import DynamicsModel

    if config.init_from:
        from seqdance import load_model

        model = load_model(config.init_from, model_select=config.model_select)
        set_dropout(model, config.dropout, include_encoder=config.model_select == "seqdance")
    elif config.model_select == "esmdance" and config.esm2_weights:
        from seqdance.model import build_esmdance_from_esm2

        model = build_esmdance_from_esm2(config.esm2_weights, dropout=config.dropout)
    else:
        model = DynamicsModel(config.encoder, config.model_select, dropout=config.dropout)
    return model


def freeze_unused_parameters(model: nn.Module, device: torch.device) -> list[str]:
    """Freeze trainable parameters that receive no gradient from a pairs=True forward; return their names.

    Runs one forward/backward on a 12-token dummy sequence with the global RNG state saved and restored,
    so it does not change what follows.
    """
    from seqdance import tokenizer

    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    state = torch.get_rng_state()
    ids = torch.as_tensor(tokenizer.encode("MKTAYIAKQRQI").ids, device=device)[None]
    try:
        out = model(ids, torch.ones_like(ids), pairs=True)
        (out.residue.float().sum() + out.pair.float().sum()).backward()
    finally:
        torch.set_rng_state(state)
    unused = [n for n, p in trainable if p.grad is None]
    for _, p in trainable:
        if p.grad is None:
            p.requires_grad_(False)
        p.grad = None
    return unused


@dataclass
class StepStats:
    """Globally reduced numbers of one update."""

    update: int
    lr: float
    loss: float
    group_loss: dict[str, float]
    property_rmse: dict[str, dict[str, float]]
    tokens: int
    seconds: float
    max_tokens: int
    grad_scale: float | None = None
    nonfinite_skipped: int | None = None  # updates skipped so far for non-finite values (on_nonfinite: skip)

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"update": self.update, "lr": self.lr, "loss": self.loss}
        for g, v in self.group_loss.items():
            rec[f"loss/{g}"] = v
        for g, props in self.property_rmse.items():
            for p, v in props.items():
                rec[f"rmse/{g}/{p}"] = v
        rec.update({"tokens": self.tokens, "tokens_per_s": self.tokens / max(self.seconds, 1e-9),
                    "seconds": self.seconds, "max_tokens": self.max_tokens})
        if self.grad_scale is not None:
            rec["grad_scale"] = self.grad_scale
        if self.nonfinite_skipped is not None:
            rec["nonfinite_skipped"] = self.nonfinite_skipped
        return rec


@dataclass
class TrainResult:
    last_update: int
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    model_dir: Path | None = None


class Trainer:
    """Train a DynamicsModel from a :class:`TrainConfig` (see module doc)."""

    def __init__(self, config: TrainConfig, *, dist_info: DistInfo | None = None) -> None:
        self.config = config.validate()
        self.dist = dist_info or init_distributed(config.device)
        self.device = self.dist.device
        self.precision = resolve_precision(config.precision, self.device)
        self.autocast_dtype = autocast_dtype(self.precision)
        self.out_dir = Path(config.output_dir)
        self._stop_requested = False

        self.stores = StoreSet(config.data.store, config.data.index)
        self.catalog = Catalog.from_stores(self.stores.stores)
        wanted = list(config.data.groups or schema.SOURCE_GROUPS)
        self.weights = self._loss_weights(wanted)
        groups = []
        for g in wanted:
            if g not in self.weights.table or not any(self.weights.for_group(g).values()):
                if len(self.catalog.select(g, config.data.train_split)) and self.dist.is_main:
                    log.warning("source group %s has training proteins but no (non-zero) loss weights in %s; "
                                "it is not trained", g, self.weights.origin or "the weight table")
                continue
            groups.append(g)
        self.plan = TrainPlan(
            self.catalog, groups, label=config.data.train_split, seed=config.seed,
            sequences_per_group=config.data.sequences_per_group, rank=self.dist.rank,
            world_size=self.dist.world_size, max_tokens_at=lambda u: config.stage_at(u).max_tokens,
            micro_batch_at=config.micro_batch_at,
        )
        self.groups = self.plan.groups
        self.weight_vectors = {g: weight_vector(self.weights.for_group(g), g, self.device) for g in self.groups}
        self.dataset = MicroBatchDataset(self.stores, self.catalog, target_clamp=config.data.target_clamp)

        ckpt.seed_everything(config.seed)  # identical initial weights on every rank
        model = build_model(config).to(self.device)
        if hasattr(model, "checkpoint_pair_blocks"):
            model.checkpoint_pair_blocks = bool(config.checkpoint_pair_blocks)
        self.frozen_unused = freeze_unused_parameters(model, self.device)
        if self.frozen_unused:
            log.info("parameters without gradient, frozen: %s", ", ".join(self.frozen_unused))
        model.train()
        self.model = model
        self.ddp: nn.Module = model
        if self.dist.distributed:
            self.ddp = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )
        o = config.optim
        self.rule = WarmupLinearDecay(config.total_updates, o.warmup_updates, o.decay_end_fraction,
                                      o.final_lr_fraction)
        self.optimizer = build_optimizer(model.parameters(), lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                                         weight_decay=o.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, self.rule)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.update = 0  # completed updates
        self.nonfinite_skipped = 0  # updates skipped for non-finite values (on_nonfinite: skip)
        ckpt.seed_everything(config.seed + 1000 * self.dist.rank)  # per-rank dropout streams

    # --- set-up helpers ------------------------------------------------------------------------------

    def _loss_weights(self, groups: list[str]) -> LossWeights:
        """Load or compute (rank 0, then broadcast) the loss weights; keep training channel means if known."""
        spec = self.config.data.loss_weights
        self.channel_means: dict[str, dict[str, np.ndarray]] | None = None
        cached = self.out_dir / "loss_weights.csv"
        if spec == "compute" and cached.is_file():
            # computed by an earlier start of this run: keep the run's weights fixed
            log.info("using the loss weights computed earlier for this run: %s", cached)
            spec = str(cached)
        if spec != "compute":
            means_file = Path(spec).with_name(Path(spec).stem + "_channel_means.csv")
            if means_file.is_file():
                self.channel_means = read_channel_means(means_file)
            return load_loss_weights(spec)
        payload = None
        if self.dist.is_main:
            stats = compute_store_statistics(
                self.stores.stores, split=self.config.data.train_split, groups=groups,
                max_proteins_per_group=self.config.data.weight_max_proteins, seed=self.config.seed,
                progress=self.config.progress, baseline_floor=self.config.data.weight_baseline_floor,
                max_weight_ratio=self.config.data.weight_max_ratio,
            )
            write_statistics(stats, cached)
            means = {g: {"residue": stats.residue_means[g], "pair": stats.pair_means[g]} for g in stats.residue_means}
            payload = (stats.weights().to_dict(), means)
        table, self.channel_means = broadcast_object(payload, self.dist)
        return LossWeights(table, origin="computed from the training split")

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    # --- checkpoints ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": {"next_update": self.update + 1, "seed": self.config.seed,
                        "sequences_per_group": self.config.data.sequences_per_group},
            "loss_weights": self.weights.to_dict(),
            "config": self.config.to_dict(),
            "world_size": self.dist.world_size,
            "nonfinite_skipped": self.nonfinite_skipped,
        }

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the completed updates (RNG states of every rank gathered on rank 0)."""
        rngs = gather_objects(ckpt.rng_state(), self.dist)
        path = None
        if self.is_main:
            self.check_finite_weights()
            state = self.state_dict()
            state["rng"] = rngs
            path = ckpt.save_checkpoint(state, self.out_dir, self.update, keep=self.config.keep_checkpoints)
            if self.config.save_model_at_checkpoints:
                self.save_model(self.out_dir / f"model_update_{self.update:08d}")
        barrier(self.dist)
        return path

    def resume(self, path: str | Path | None = None) -> bool:
        """Load the latest (or the given) checkpoint; return False when there is none to resume from."""
        if path is not None:
            target = Path(path)
            state = ckpt.load_checkpoint(target)
        else:
            found = ckpt.load_latest_checkpoint(self.out_dir)
            if found is None:
                return False
            target, state = found
        self._check_resume_config(state.get("config", {}), target)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.weights = LossWeights(state["loss_weights"], origin=f"checkpoint {target.name}")
        self.weight_vectors = {g: weight_vector(self.weights.for_group(g), g, self.device) for g in self.groups}
        self.update = int(state["update"])
        self.nonfinite_skipped = int(state.get("nonfinite_skipped", 0))
        if self.is_main:
            _truncate_log(self.out_dir / self.config.log_file, self.update)
        rngs = state.get("rng") or []
        if state.get("world_size") == self.dist.world_size and len(rngs) == self.dist.world_size:
            ckpt.set_rng_state(rngs[self.dist.rank])
        else:
            log.warning("checkpoint %s was written by %s rank(s), this run has %d: data order is unchanged but "
                        "dropout random streams restart from the seed", target, state.get("world_size"),
                        self.dist.world_size)
            ckpt.seed_everything(self.config.seed + 1000 * self.dist.rank + self.update)
        if self.is_main:
            log.info("resumed from %s at update %d", target, self.update)
        return True

    def _check_resume_config(self, saved: dict[str, Any], path: Path) -> None:
        now = self.config.to_dict()

        def get(d: dict[str, Any], dotted: str) -> Any:
            for part in dotted.split("."):
                d = d.get(part, {}) if isinstance(d, dict) else {}
            return d

        for key in _RESUME_MUST_MATCH:
            if get(saved, key) != get(now, key):
                raise InputError(f"cannot resume from {path}: it was trained with {key}={get(saved, key)!r}, "
                                 f"the config says {get(now, key)!r}")
        for key in _RESUME_SHOULD_MATCH:
            if get(saved, key) != get(now, key):
                log.warning("resuming from %s with a different %s (%r -> %r): the run no longer continues "
                            "exactly", path, key, get(saved, key), get(now, key))

    def check_finite_weights(self) -> None:
        """Refuse to save a model with NaN or infinite weights (naming the first such parameter)."""
        for name, param in self.model.named_parameters():
            if not bool(torch.isfinite(param).all()):
                raise NonFiniteError(f"update {self.update}: parameter {name} holds NaN or infinite values; the "
                                     "model is not saved (lower the learning rate or resume from a checkpoint)")

    def save_model(self, directory: str | Path) -> Path:
        """``save_pretrained`` of the bare model (readable by ``seqdance.load_model``)."""
        directory = Path(directory)
        self.check_finite_weights()
        self.model.save_pretrained(directory)
        return directory

    # --- one update ----------------------------------------------------------------------------------

    def forward_backward(self, update: int, batches: Iterator[Batch]) -> tuple[dict[str, torch.Tensor], int]:
        """Accumulate the gradients of update ``update`` (all groups, all micro-batches of this rank).

        Returns the per-group RMSE sums (P,) of this rank and its number of tokens. What each micro-batch was
        (group, proteins, non-finite targets) and whether its loss was finite is kept in ``self._micro`` for
        :meth:`nonfinite_problem` (checked once per update, not per micro-batch: no extra device syncs).
        """
        self._micro: list[tuple[str, list[str], list[str], torch.Tensor]] = []
        scale = float(self.dist.world_size)
        n_total = sum(self.plan.n_micro(update) for _ in self.groups)
        done = 0
        sums: dict[str, torch.Tensor] = {}
        tokens = 0
        for group in self.groups:
            acc = torch.zeros(len(group_layout(group).properties), dtype=torch.float64, device=self.device)
            # Each property's per-protein RMSEs are summed over the whole update (micro-batches, ranks) and divided
            # by the proteins that have it: a protein whose property is masked (missing) adds no term at all.
            have = self.plan.property_counts(update, group)
            denominator = torch.as_tensor(np.maximum(have, 1), dtype=torch.float32, device=self.device)
            for _ in range(self.plan.n_micro(update)):
                batch = next(batches)
                if batch.update != update or batch.group != group:
                    raise RuntimeError(f"data loader out of step: expected update {update} group {group}, got "
                                       f"update {batch.update} group {batch.group}")
                done += 1
                b = batch.to(self.device, non_blocking=True)
                tokens += int(batch.attention_mask.sum())
                sync = done == n_total
                ctx = self.ddp.no_sync() if (self.dist.distributed and not sync) else contextlib.nullcontext()
                with ctx:
                    with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                                        enabled=self.autocast_dtype is not None):
                        out = self.ddp(b.input_ids, b.attention_mask, pairs=True,
                                       pair_block_rows=self.config.pair_block_rows)
                    loss = batch_group_loss(
                        out.residue, out.pair, b.residue_target, b.pair_target, group, self.weight_vectors[group],
                        mask_mode=self.config.data.loss_mask, denominator=denominator,
                    )
                    self.scaler.scale(loss.total * scale).backward()
                self._micro.append((group, list(batch.names), list(batch.problems),
                                    torch.isfinite(loss.total.detach())))
                acc += loss.rmse_sum.detach().double()
            sums[group] = acc
        return sums, tokens

    def optimizer_step(self) -> None:
        clip = self.config.optim.grad_clip_value
        self.scaler.unscale_(self.optimizer)
        if clip is not None:
            nn.utils.clip_grad_value_([p for p in self.model.parameters() if p.grad is not None], clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def nonfinite_problem(self, update: int) -> str | None:
        """After :meth:`forward_backward`: what is not finite in this update on any rank (a loss, a target, a
        gradient), naming update, group and proteins; None when all is finite. All ranks get the same answer
        (one small all-reduce), so they stop or skip together."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        check_grads = not self.scaler.is_enabled() and bool(grads)  # fp16: the GradScaler handles overflow
        losses_ok = torch.stack([flag for *_, flag in self._micro]) if self._micro else torch.ones(0, dtype=torch.bool)
        n_targets = sum(1 for _, _, problems, _ in self._micro if problems)
        grad_ok = torch.isfinite(_total_norm(grads)) if check_grads else torch.ones((), dtype=torch.bool,
                                                                                   device=self.device)
        counts = torch.stack([(~losses_ok).sum().to(self.device, torch.float64) + n_targets,
                              (~grad_ok).to(self.device, torch.float64)])
        all_reduce_sum(counts, self.dist)
        bad_loss, bad_grad = (float(v) for v in counts.cpu())
        if bad_loss == 0 and bad_grad == 0:
            return None
        local: list[str] = []
        for (group, names, problems, _), ok in zip(self._micro, losses_ok.cpu().tolist()):
            if problems:
                local.append(f"group {group}, proteins {names}: " + "; ".join(problems))
            elif not ok:
                local.append(f"group {group}, proteins {names}: the loss is NaN or infinite")
        found = gather_objects(local, self.dist)
        lines = [line for part in (found or [local]) for line in part]
        if not lines and bad_grad:
            name = next((n for n, p in self.model.named_parameters()
                         if p.grad is not None and not bool(torch.isfinite(p.grad).all())), "?")
            lines.append(f"the gradient of {name} is NaN or infinite (all losses of the update were finite; the "
                         "learning rate may be too high)")
        if not lines:
            lines.append("another rank saw a non-finite loss")
        return f"update {update}: " + " | ".join(lines)

    def train_update(self, update: int, batches: Iterator[Batch]) -> StepStats:
        t0 = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        sums, tokens = self.forward_backward(update, batches)
        problem = self.nonfinite_problem(update)
        skipped = False
        if problem is not None:
            if self.config.on_nonfinite != "skip":
                raise NonFiniteError(
                    f"training stopped: {problem}. Nothing of this update was applied; the last checkpoint holds "
                    "the model before it (on_nonfinite: skip would skip such updates instead)"
                )
            self.nonfinite_skipped += 1
            skipped = True
            log.warning("skipped (on_nonfinite: skip; %d so far): %s", self.nonfinite_skipped, problem)
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()  # the learning-rate schedule follows the update count
        else:
            self.optimizer_step()
        flat = torch.cat([sums[g] for g in self.groups] + [torch.tensor([float(tokens)], dtype=torch.float64,
                                                                         device=self.device)])
        all_reduce_sum(flat, self.dist)
        flat = flat.cpu().numpy()
        group_loss: dict[str, float] = {}
        prop_rmse: dict[str, dict[str, float]] = {}
        off = 0
        for g in self.groups:
            names = group_layout(g).property_names
            have = self.plan.property_counts(update, g)
            sums = flat[off : off + len(names)]
            off += len(names)
            # a property no protein of this update has is absent from the log (never a zero)
            prop_rmse[g] = {n: float(s / c) for n, s, c in zip(names, sums, have) if c > 0}
            w = self.weights.for_group(g)
            group_loss[g] = float(sum(w[n] * v for n, v in prop_rmse[g].items()))
        self.update = update
        return StepStats(
            update=update, lr=lr, loss=float(sum(group_loss.values())), group_loss=group_loss,
            property_rmse=prop_rmse, tokens=int(flat[-1]), seconds=time.perf_counter() - t0,
            max_tokens=self.config.stage_at(update).max_tokens,
            grad_scale=float(self.scaler.get_scale()) if self.scaler.is_enabled() else None,
            nonfinite_skipped=self.nonfinite_skipped if (skipped or self.nonfinite_skipped) else None,
        )

    # --- the loop ------------------------------------------------------------------------------------

    def _request_stop(self, signum: int, _frame: Any) -> None:
        log.warning("signal %d received: checkpointing after the current update and stopping", signum)
        self._stop_requested = True

    def _stop_agreed(self) -> bool:
        flag = torch.tensor([1.0 if self._stop_requested else 0.0], device=self.device)
        all_reduce_sum(flag, self.dist)
        return bool(flag.item() > 0)

    def fit(self, *, stop_after: int | None = None) -> TrainResult:
        """Train from the current update to ``total_updates`` (or until update ``stop_after``)."""
        cfg = self.config
        last = cfg.total_updates if stop_after is None else min(stop_after, cfg.total_updates)
        result = TrainResult(last_update=self.update)
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            cfg.to_yaml(self.out_dir / "config.yaml")
        if self.update >= last:
            return result
        handlers = {}
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            with contextlib.suppress(ValueError):  # not in the main thread
                handlers[sig] = signal.signal(sig, self._request_stop)
        writer = _Logger(self.out_dir / cfg.log_file, tensorboard=cfg.tensorboard) if self.is_main else None
        bar = None
        if self.is_main and cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.total_updates, initial=self.update, desc=f"train {cfg.model_select}",
                       unit="update", dynamic_ncols=True)
        batches = micro_batch_loader(self.dataset, self.plan, self.update + 1, last,
                                     num_workers=cfg.data.num_workers, pin_memory=self.device.type == "cuda")
        try:
            for update in range(self.update + 1, last + 1):
                stats = self.train_update(update, batches)
                rec = stats.record()
                result.history.append(rec)
                result.last_update = update
                if writer is not None and (update % cfg.log_interval == 0 or update == last):
                    writer.write(rec)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{stats.loss:.4f}", lr=f"{stats.lr:.2e}",
                                    tok_s=f"{rec['tokens_per_s']:.0f}")
                stop = self._stop_agreed()
                if (cfg.checkpoint_interval and update % cfg.checkpoint_interval == 0) or update == last or stop:
                    self.save_checkpoint()
                if cfg.eval_interval and update % cfg.eval_interval == 0 and update < cfg.total_updates:
                    self._evaluate_and_log(writer, update, f"eval_update_{update:08d}")
                if stop:
                    result.stopped_early = True
                    break
        finally:
            if bar is not None:
                bar.close()
            for sig, old in handlers.items():
                signal.signal(sig, old)
        if self.update >= cfg.total_updates:
            if self.is_main:
                result.model_dir = self.save_model(self.out_dir / "model")
            barrier(self.dist)
            if cfg.eval_at_end:
                self._evaluate_and_log(writer, self.update, "eval_final")
        if writer is not None:
            writer.close()
        return result

    # --- evaluation ----------------------------------------------------------------------------------

    def evaluate(self, split: str | None = None):  # -> EvaluationResult | None
        from seqdance.train.evaluate import evaluate_model

        return evaluate_model(
            self.model, self.stores.stores, catalog=self.catalog, split=split or self.config.data.test_split,
            groups=self.groups, weights=self.weights.to_dict(), channel_means=self.channel_means,
            max_tokens=self.config.data.eval_max_tokens,
            batch_size=self.config.data.eval_batch_size, device=self.device, mask_mode=self.config.data.loss_mask,
            autocast_dtype=self.autocast_dtype, pair_block_rows=self.config.pair_block_rows, dist_info=self.dist,
            progress=False,
        )

    def _evaluate_and_log(self, writer: _Logger | None, update: int, name: str) -> None:
        if not any(len(self.catalog.select(g, self.config.data.test_split)) for g in self.groups):
            return
        result = self.evaluate()
        if result is None or writer is None:
            return
        from seqdance.train.evaluate import write_report

        write_report(result, self.out_dir / name, title=f"update {update}")
        rec: dict[str, Any] = {"update": update, "split": result.split}
        for g, v in result.group_losses().items():
            rec[f"eval/loss/{g}"] = v
        for g, v in result.baseline_group_losses().items():
            rec[f"eval/mean_baseline/{g}"] = v
        for row in result.metrics.itertuples(index=False):
            rec[f"eval/r/{row.group}/{row.property}"] = row.median_r
        writer.write(rec)


class _Logger:
    """JSONL lines (appended, flushed each line) and optional TensorBoard scalars."""

    def __init__(self, path: Path, *, tensorboard: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "a", encoding="utf-8")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise InputError("tensorboard: true needs the tensorboard package "
                                 "(pip install 'seqdance[tensorboard]')") from exc
            self.tb = SummaryWriter(str(path.parent / "tensorboard"))

    def write(self, rec: dict[str, Any]) -> None:
        self.fh.write(json.dumps({k: _jsonable(v) for k, v in rec.items()}) + "\n")
        self.fh.flush()
        if self.tb is not None:
            step = int(rec["update"])
            for k, v in rec.items():
                if k != "update" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        self.fh.close()
        if self.tb is not None:
            self.tb.close()


def _total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """2-norm of all gradients together (NaN or inf when any entry is); one fused pass where torch has one."""
    get_total_norm = getattr(nn.utils, "get_total_norm", None)
    if get_total_norm is not None:
        return get_total_norm(grads, norm_type=2.0)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads]))


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _truncate_log(path: Path, update: int) -> None:
    """Drop log records written after ``update`` (by a run that died after its last checkpoint)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:  # a line cut short by a killed run
            log.warning("%s: dropping an unreadable log line (%s...)", path, line[:60])
            continue
        if isinstance(record, dict) and record.get("update", 0) <= update:
            kept.append(line)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSONL training log."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def train(config: TrainConfig, *, resume: bool = False, stop_after: int | None = None) -> TrainResult:
    """Build a :class:`Trainer`, optionally resume from the latest checkpoint, and train.

    Without ``resume`` an output directory that already holds checkpoints is refused (nothing is overwritten).
    """
    existing = ckpt.latest_checkpoint(config.output_dir)
    if not resume and existing is not None:
        raise InputError(f"{config.output_dir} already holds a training run ({existing.name}): pass --resume to "
                         "continue it, or choose another output_dir")
    trainer = Trainer(config)
    try:
        if resume and not trainer.resume():
            if trainer.is_main:
                log.warning("--resume: no checkpoint in %s; starting from scratch", config.output_dir)
        return trainer.fit(stop_after=stop_after)
    finally:
        from seqdance.train.distributed import shutdown

        shutdown(trainer.dist)
