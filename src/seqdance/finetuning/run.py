"""A fine-tuning run: labels → folds → baselines and every model × method × dynamics job → tables, figures and
``RUN/model`` (:func:`finetune`). Resumable: each finished job's predictions are kept in ``RUN/jobs/``, a job
cut short resumes from its last epoch, and a run's identity (label contents, options, model fingerprints) is
compared, never its name.

Mutant tasks treat each assay as a problem of its own (ProteinGym's supervised setting: one model per assay and
fold); protein and residue tasks have one problem over all rows.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from seqdance.errors import InputError
from seqdance.finetuning.config import FinetuneConfig
from seqdance.finetuning.labels import LabelSet, read_labels
from seqdance.finetuning.loop import JobInputs, JobResult, Settings, job_seed, train_job
from seqdance.finetuning.metrics import check_finite, classification_metrics, regression_metrics
from seqdance.finetuning.model import (
    N_DYNAMICS_FEATURES,
    FinetunedModel,
    TaskHead,
    add_lora,
    count_parameters,
    encoder_of,
    is_dynamics_model,
    set_trainable,
)
from seqdance.finetuning.splits import Fold, make_folds
from seqdance.io_utils import atomic_path, sha256_file

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
JOBS_DIR = "jobs"
MODEL_DIR = "model"


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns: the kept model (one per assay of a multi-assay mutant run; None with
    ``keep: none``), the metrics table (one row per model × method × dynamics × fold × metric), the summary and
    the out-of-fold predictions."""

    model: FinetunedModel | dict[str, FinetunedModel] | None
    metrics: pd.DataFrame
    summary: pd.DataFrame
    predictions: pd.DataFrame
    output_dir: Path
    notes: list[str]


@dataclass
class Combo:
    model: str
    method: str
    dynamics: bool

    @property
    def label(self) -> str:
        return f"{self.model}/{self.method}{'+dynamics' if self.dynamics else ''}"


def model_specs(values: list[str]) -> list[tuple[str, str]]:
    """(name, source) of ``[NAME=]SOURCE`` options; names must be distinct."""
    specs = []
    for value in values:
        name, sep, source = value.partition("=")
        if not sep or not name or "/" in name or os.path.exists(value):
            name, source = Path(value.rstrip("/")).name or value, value
        specs.append((name, source))
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise InputError(f"two --model options have the same name ({', '.join(names)}); name them NAME=SOURCE")
    return specs


def _label_digest(paths: list[str]) -> dict[str, str]:
    out = {}
    for given in paths:
        path = Path(given)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            out[str(f)] = sha256_file(f)
    return out


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _check_run(out: Path, identity: dict[str, Any], *, resume: bool, overwrite: bool) -> str:
    path = out / RUN_FILE
    key = _key(identity)
    if path.is_file() and not overwrite:
        previous = json.loads(path.read_text())
        if not resume:
            raise InputError(f"{out} already holds a fine-tuning run: pass --resume to continue it, --overwrite to "
                             "start afresh, or choose another output folder")
        if previous.get("key") != key:
            old = previous.get("identity", {})
            changed = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
            raise InputError(f"{out} holds a fine-tuning run of other inputs (differing: {', '.join(changed)}); use "
                             "another output folder or --overwrite")
    if overwrite:
        for sub in (JOBS_DIR, MODEL_DIR):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"key": key, "identity": identity}, indent=1, sort_keys=True, default=str) + "\n")
    return key


class Runner:
    """State of one run (see :func:`finetune`)."""

    def __init__(self, config: FinetuneConfig, *, report: Callable[[str], None] | None = None) -> None:
        from seqdance.devices import autocast_dtype, resolve_precision
        from seqdance.train.distributed import init_distributed

        self.cfg = config
        self.say = report or log.info
        self.dist = init_distributed(config.device)
        self.device = self.dist.device
        self.autocast = autocast_dtype(resolve_precision(config.precision, self.device))
        self.out = Path(config.output_dir)
        self.cache_dir = Path(config.cache_dir) if config.cache_dir else self.out / "cache"
        self.notes: list[str] = []
        self.features: dict[tuple, list[np.ndarray]] = {}

    # --- set-up ----------------------------------------------------------------------------------------

    def load(self) -> None:
        from seqdance.finetuning.files import describe_source, load_base
        from seqdance.finetuning.inputs import tokenize
        from seqdance.inference.fingerprint import module_fingerprint

        cfg = self.cfg
        self.labels: LabelSet = read_labels(cfg.task, cfg.labels, cfg.target, classification=cfg.classification,
                                            wild_types=cfg.wild_types, reference_csv=cfg.reference_csv,
                                            sequences=cfg.sequences, max_rows=cfg.max_rows, seed=cfg.seed)
        self.notes += self.labels.notes
        self.specs = model_specs(cfg.models)
        self.bases: dict[str, torch.nn.Module] = {}
        self.refs: dict[str, dict[str, Any]] = {}
        for name, source in self.specs:
            base = load_base(source, cfg.model_select, self.device)
            self.bases[name] = base
            self.refs[name] = {"source": describe_source(source), "name": name, "model_select": cfg.model_select,
                               "kind": "dynamics" if is_dynamics_model(base) else "esm2",
                               "fingerprint": module_fingerprint(base)}
        self.dynamics: dict[str, tuple[torch.nn.Module, dict]] = {}
        if True in cfg.dynamics_settings():
            extra = None
            if any(not is_dynamics_model(b) for b in self.bases.values()):
                if cfg.dynamics_model is None:
                    plain = [n for n, b in self.bases.items() if not is_dynamics_model(b)]
                    raise InputError(f"--with-dynamics: {', '.join(plain)} is a plain ESM2 and predicts no dynamics; "
                                     "name the model that supplies them with --dynamics-model")
                extra = load_base(cfg.dynamics_model, cfg.model_select, self.device)
                if not is_dynamics_model(extra):
                    raise InputError(f"--dynamics-model {cfg.dynamics_model} is not a dynamics model "
                                     "(SeqDance/ESMDance)")
                extra.requires_grad_(False)
                extra_ref = {"source": describe_source(cfg.dynamics_model), "model_select": cfg.model_select,
                             "fingerprint": module_fingerprint(extra)}
            for name, base in self.bases.items():
                self.dynamics[name] = (base, self.refs[name]) if is_dynamics_model(base) else (extra, extra_ref)
        self.tokens = tokenize(self.labels.sequences, self.labels.names, cfg.max_tokens)
        cut = sum(r.cut for r in self.tokens)
        if cut:
            self.notes.append(f"{cut} sequence(s) longer than {cfg.max_tokens - 2} residues were cut to their first "
                              f"{cfg.max_tokens} tokens")
        self.identity = {"labels": _label_digest(cfg.labels),
                         "models": {n: r["fingerprint"] for n, r in self.refs.items()},
                         "dynamics": {n: r["fingerprint"] for n, (_, r) in self.dynamics.items()},
                         "config": {k: v for k, v in cfg.to_dict().items()
                                    if k not in ("progress", "output_dir", "device", "cache_dir", "keep",
                                                 "merge_lora")}}

    def units(self) -> list[tuple[str, np.ndarray]]:
        if self.labels.task == "mutant":
            return [(a, np.flatnonzero(self.labels.groups == a)) for a in dict.fromkeys(self.labels.groups)]
        return [("all", np.arange(self.labels.n))]

    def schemes(self) -> list[str]:
        parts = [s.strip() for s in self.cfg.split.split(",") if s.strip()]
        has_columns = any(k.startswith(("split_", "fold_")) for k in self.labels.split_columns)
        return [self.cfg.resolved_split(has_columns) if s == "auto" else s for s in parts]

    def frozen(self, model: str, kind: str, pooled: bool) -> list[np.ndarray]:
        """Frozen features of every row (cached in memory and on disk)."""
        from seqdance.finetuning.inputs import frozen_features
        from seqdance.train.distributed import barrier

        key = (model, kind, pooled)
        if key not in self.features:
            source = self.bases[model] if kind == "hidden" else self.dynamics[model][0]
            args = dict(kind=kind, pooled=pooled, max_tokens=self.cfg.max_tokens, cache_dir=self.cache_dir,
                        description=model)
            if self.dist.is_main:
                self.features[key] = frozen_features(source, self.labels.sequences, self.tokens,
                                                     progress=self.cfg.progress, **args)
            barrier(self.dist)
            if not self.dist.is_main:
                self.features[key] = frozen_features(source, self.labels.sequences, self.tokens, **args)
        return self.features[key]

    # --- building jobs ---------------------------------------------------------------------------------

    def settings(self, method: str) -> Settings:
        c, o = self.cfg, self.cfg.optim
        return Settings(method=method, epochs=c.epochs, batch_size=c.batch_size, lr=c.lr_for(method),
                        weight_decay=o.weight_decay, betas=(o.betas[0], o.betas[1]), warmup_fraction=o.warmup_fraction,
                        final_lr_fraction=o.final_lr_fraction, grad_clip_norm=o.grad_clip_norm, patience=c.patience,
                        seed=c.seed, layer_decay=o.layer_decay if method == "full" else None,
                        autocast_dtype=self.autocast, on_nonfinite=c.on_nonfinite,
                        progress=c.progress and self.dist.is_main)

    def build(self, combo: Combo, key: str, train: np.ndarray | None = None) -> FinetunedModel:
        cfg = self.cfg
        pristine = self.bases[combo.model]
        base = pristine if combo.method == "head" else copy.deepcopy(pristine)
        gen_seed = job_seed(cfg.seed, key)
        torch.manual_seed(gen_seed[0] * 1_000_003 + gen_seed[1])
        hidden_size = encoder_of(base).config.hidden_size
        n_dyn = N_DYNAMICS_FEATURES if combo.dynamics else 0
        head = TaskHead(hidden_size, n_dyn, self.labels.n_outputs, task=self.labels.task, pooling=cfg.pooling,
                        hidden=cfg.head_hidden, dropout=cfg.head_dropout)
        dyn_source = self.dynamics[combo.model][0] if combo.dynamics else None
        model = FinetunedModel(base, head, dynamics_source=dyn_source)
        lora_targets = None
        if combo.method == "lora":
            from seqdance.finetuning.options import LORA_FFN_TARGETS

            wanted = list(cfg.lora.target_modules) + (list(LORA_FFN_TARGETS) if cfg.lora.ffn else [])
            lora_targets = add_lora(encoder_of(base), rank=cfg.lora.rank, alpha=cfg.lora.alpha,
                                    dropout=cfg.lora.dropout, targets=wanted)
        if train is not None:
            self.standardise(head, combo, np.flatnonzero(train))
        set_trainable(model, combo.method)
        encoder_of(base).gradient_checkpointing = bool(cfg.gradient_checkpointing) and combo.method != "head"
        model.to(self.device)
        model.info = {
            "task": self.labels.task, "target": self.labels.target, "classes": self.labels.classes,
            "max_tokens": cfg.max_tokens, "method": combo.method, "pooling": cfg.pooling, "merged": False,
            "head": {"hidden_size": hidden_size, "n_dynamics": n_dyn, "n_outputs": self.labels.n_outputs,
                     "pooling": cfg.pooling, "hidden": cfg.head_hidden, "dropout": cfg.head_dropout},
            "base": self.refs[combo.model],
            "dynamics": self.dynamics[combo.model][1] if combo.dynamics else None,
            "lora": None if lora_targets is None else {"rank": cfg.lora.rank, "alpha": cfg.lora.alpha,
                                                       "dropout": cfg.lora.dropout, "targets": lora_targets},
        }
        return model

    def standardise(self, head: TaskHead, combo: Combo, rows: np.ndarray) -> None:
        """The head's fixed input standardisation from the frozen base's features of the training rows."""
        pooled = head.pools_raw_mean
        hidden = self.frozen(combo.model, "hidden", pooled)
        dyn = self.frozen(combo.model, "dynamics", pooled) if combo.dynamics else None
        if pooled:
            h = torch.from_numpy(np.stack([hidden[i] for i in rows]))
            d = None if dyn is None else torch.from_numpy(np.stack([dyn[i] for i in rows]))
        else:
            h = torch.from_numpy(np.concatenate([hidden[i] for i in rows]))
            d = None if dyn is None else torch.from_numpy(np.concatenate([dyn[i] for i in rows]))
        head.fit_standardisation(h, d)

    def inputs(self, combo: Combo, model: FinetunedModel) -> JobInputs:
        labels = self.labels
        pooled = model.head.pools_raw_mean
        hidden = self.frozen(combo.model, "hidden", pooled) if combo.method == "head" else None
        dyn = None
        if combo.dynamics:
            dyn = self.frozen(combo.model, "dynamics", pooled and combo.method == "head")
        return JobInputs(labels.task, self.tokens, labels.y, labels.n_outputs if labels.is_classification else None,
                         hidden, dyn, labels.names)

    # --- running -----------------------------------------------------------------------------------------

    def job_dir(self, combo: Combo, scheme: str, unit: str, fold: str) -> Path:
        safe = lambda s: "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s)  # noqa: E731
        method = f"{combo.method}{'+dynamics' if combo.dynamics else ''}"
        return self.out / JOBS_DIR / safe(combo.model) / method / safe(scheme) / safe(unit) / safe(fold)

    def run_job(self, combo: Combo, scheme: str, unit: str, fold: Fold, run_key: str) -> tuple[JobResult, Path]:
        folder = self.job_dir(combo, scheme, unit, fold.name)
        key = _key([run_key, combo.label, scheme, unit, fold.name])
        done = folder / "result.json"
        if done.is_file():
            saved = json.loads(done.read_text())
            if saved.get("key") == key:
                with np.load(folder / "predictions.npz", allow_pickle=False) as data:
                    preds = _unpack(data, self.labels.task)
                result = JobResult(preds, saved["history"], saved["best_epoch"], saved["stopped_early"],
                                   None if saved["scaler"] is None else tuple(saved["scaler"]), saved["class_weights"],
                                   saved.get("skipped_updates", 0))
                return result, folder
        model = self.build(combo, key, fold.train)
        trainable, total = count_parameters(model)
        label = f"{combo.label} {fold.name}" + (f" {unit}" if unit != "all" else "")
        self.say(f"{label}: training {trainable:,} of {total:,} parameters")
        result = train_job(model, self.inputs(combo, model), fold.train, fold.valid, fold.test,
                           self.settings(combo.method), key=key, label=label, out_dir=folder, dist_info=self.dist)
        if self.dist.is_main:
            with atomic_path(folder / "predictions.npz") as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **_pack(result.predictions, self.labels.task))
            with atomic_path(done) as tmp:
                tmp.write_text(json.dumps({"key": key, "history": result.history, "best_epoch": result.best_epoch,
                                           "stopped_early": result.stopped_early, "scaler": result.scaler,
                                           "class_weights": result.class_weights, "trainable": trainable,
                                           "total": total, "skipped_updates": result.skipped_updates}, indent=1))
        return result, folder


def _pack(predictions: Any, task: str) -> dict[str, np.ndarray]:
    if task != "residue":
        return {"values": np.asarray(predictions)}
    lengths = np.array([len(p) for p in predictions], dtype=np.int64)
    return {"values": np.concatenate(predictions) if len(predictions) else np.zeros(0), "lengths": lengths}


def _unpack(data: Any, task: str) -> Any:
    if task != "residue":
        return data["values"]
    return np.split(data["values"], np.cumsum(data["lengths"])[:-1])


def finetune(config: FinetuneConfig | None = None, *, resume: bool = False, overwrite: bool = False,
             report: Callable[[str], None] | None = None, **options: Any) -> FinetuneResult:
    """Fine-tune on your own labels: see docs/finetune.md. Give a :class:`FinetuneConfig` or its fields as keyword
    arguments (``model=`` and ``method=`` are accepted for ``models`` and ``methods``), e.g.
    ``seqdance.finetune(labels="stability.csv", task="protein", target="dg", model="ChaoHou/ESMDance",
    method="lora", output_dir="runs/dg")``."""
    from seqdance.finetuning.report import assemble, write_outputs

    if config is None:
        if "model" in options:
            options["models"] = options.pop("model")
        if "method" in options:
            options["methods"] = options.pop("method")
        for key in ("models", "methods", "labels"):
            if isinstance(options.get(key), (str, os.PathLike)):
                options[key] = [str(options[key])]
        config = FinetuneConfig.from_dict(options, origin="seqdance.finetune()")
    runner = Runner(config.validate(), report=report)
    runner.load()
    run_key = _check_run(runner.out, runner.identity, resume=resume, overwrite=overwrite) if runner.dist.is_main \
        else _key(runner.identity)
    if runner.dist.is_main:
        config.to_yaml(runner.out / "config.yaml")
    combos = [Combo(m, method, dyn) for m, _ in runner.specs for method in config.methods
              for dyn in config.dynamics_settings()]
    per_job: list[dict[str, Any]] = []
    baseline_parts: list[pd.DataFrame] = []
    for scheme in runner.schemes():
        for unit, rows in runner.units():
            sub = runner.labels.subset(rows)
            folds, notes = make_folds(sub, scheme, folds=config.folds, seed=config.seed,
                                      valid_fraction=config.valid_fraction, identity=config.identity,
                                      coverage=config.coverage)
            runner.notes += notes
            for fold in folds:
                full = [_expand(rows, m, runner.labels.n) for m in (fold.test, fold.valid)]
                fold_all = Fold(fold.scheme, fold.name, full[0], full[1])
                if config.baselines:
                    from seqdance.finetuning.report import baseline_predictions

                    baseline_parts.append(baseline_predictions(runner, scheme, unit, fold_all))
                for combo in combos:
                    result, folder = runner.run_job(combo, scheme, unit, fold_all, run_key)
                    per_job.append({"scheme": scheme, "unit": unit, "fold": fold_all, "combo": combo,
                                    "result": result, "folder": folder})
    tables = assemble(runner, per_job, baseline_parts)
    kept = None
    if config.keep != "none" and per_job:
        kept = keep_models(runner, tables, per_job, run_key)
    if runner.dist.is_main:
        write_outputs(runner, tables, per_job)
    from seqdance.train.distributed import barrier, shutdown

    barrier(runner.dist)
    shutdown(runner.dist)
    return FinetuneResult(kept, tables["metrics"], tables["summary"], tables["predictions"], runner.out,
                          list(dict.fromkeys(runner.notes)))


def _expand(rows: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[rows[mask]] = True
    return out


def keep_models(runner: Runner, tables: dict[str, pd.DataFrame], per_job: list[dict[str, Any]], run_key: str):
    """RUN/model: the best combination (first scheme's summary), refitted on every labelled row of each unit
    (``keep: refit``) or its best fold's model (``keep: best``)."""
    from seqdance.finetuning.files import save_finetuned
    from seqdance.finetuning.report import best_combination

    cfg = runner.cfg
    units = runner.units()
    kept: dict[str, FinetunedModel] = {}
    for unit, rows in units:
        combo, fold_name = best_combination(tables["summary"], tables["metrics"], unit, runner.labels)
        target_dir = runner.out / MODEL_DIR / (unit if len(units) > 1 else "")
        chosen = Combo(combo[0], combo[1], combo[2])
        if cfg.keep == "refit":
            rng = np.random.default_rng([cfg.seed, 99])
            from seqdance.finetuning.splits import _valid_from

            unit_mask = _expand(rows, np.ones(len(rows), dtype=bool), runner.labels.n)
            valid = _valid_from(unit_mask, cfg.valid_fraction, rng)
            fold = Fold("refit", "refit", np.zeros(runner.labels.n, dtype=bool), valid)
            train = unit_mask & ~valid
            key = _key([run_key, chosen.label, "refit", unit])
            model = runner.build(chosen, key, train)
            runner.say(f"{chosen.label}{' ' + unit if unit != 'all' else ''}: refit on {int(unit_mask.sum())} rows")
            result = train_job(model, runner.inputs(chosen, model), train, fold.valid, fold.test,
                               runner.settings(chosen.method), key=key, label=f"{chosen.label} refit",
                               out_dir=runner.job_dir(chosen, "refit", unit, "refit"), dist_info=runner.dist)
            selection = "refitted on all labelled rows"
        else:
            entry = next(j for j in per_job if j["combo"].label == chosen.label and j["unit"] == unit
                         and j["fold"].name == fold_name)
            key = _key([run_key, chosen.label, entry["scheme"], unit, fold_name])
            model = runner.build(chosen, key, entry["fold"].train)
            from seqdance.train.checkpoint import load_latest_checkpoint

            found = load_latest_checkpoint(entry["folder"])
            if found is None:
                raise InputError(f"{entry['folder']}: the checkpoint of the best fold is missing; "
                                 "rerun with --overwrite")
            model.load_state_dict(found[1]["best_state"], strict=False)
            result = entry["result"]
            selection = f"best fold {fold_name}"
        model.info.update({"target_scaler": None if result.scaler is None else list(result.scaler),
                           "selection": selection, "unit": unit})
        if runner.dist.is_main:
            save_finetuned(model, target_dir, merge=cfg.merge_lora)
            runner.say(f"kept {chosen.label} ({selection}) in {target_dir}")
        kept[unit] = model.eval()
    return kept["all"] if list(kept) == ["all"] else (kept[units[0][0]] if len(kept) == 1 else kept)


def primary_metric(labels: LabelSet) -> str:
    return "mcc" if labels.is_classification else "spearman"


def finite_or_nan(value: float) -> float:
    return value if math.isfinite(value) else math.nan


__all__ = ["FinetuneResult", "check_finite", "classification_metrics", "finetune", "regression_metrics"]
