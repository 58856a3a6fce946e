"""Fine-tuning configuration: one YAML file (or command-line options) read into a dataclass and validated.

Unknown keys are errors; ``--set key=value`` overrides any entry (value parsed as YAML), as for ``seqdance
train`` (:func:`seqdance.train.config.apply_overrides`). Learning rates left at ``null`` take the method's
default (head 1e-3, LoRA 1e-3, full 5e-5).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from seqdance.devices import PRECISIONS
from seqdance.errors import InputError
from seqdance.finetuning.options import (
    DEFAULT_LORA_TARGETS,
    DYNAMICS_CHOICES,
    KEEP,
    METHODS,
    NONFINITE_POLICIES,
    POOLINGS,
    PROTEINGYM_SCHEMES,
    SPLITS,
    TASKS,
)
from seqdance.io_utils import atomic_path
from seqdance.train.config import _coerce, apply_overrides

#: Peak learning rate of each method when ``optim.lr`` is null.
DEFAULT_LR: dict[str, float] = {"head": 1e-3, "lora": 1e-3, "full": 5e-5}


@dataclass
class LoraOptions:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))
    ffn: bool = False  # also adapt the feed-forward projections


@dataclass
class OptimOptions:
    lr: float | None = None  # null: the method's default (DEFAULT_LR)
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_fraction: float = 0.1  # of all updates; then cosine decay to final_lr_fraction
    final_lr_fraction: float = 0.0
    grad_clip_norm: float | None = 1.0
    layer_decay: float | None = None  # full: learning rate × decay^(layers above), e.g. 0.9


@dataclass
class FinetuneConfig:
    labels: list[str] = field(default_factory=list)  # label table(s); for mutant tasks assay CSVs or a folder
    task: str = "protein"
    target: str | None = None  # label column (mutant tasks: DMS_score, else score)
    models: list[str] = field(default_factory=lambda: ["ChaoHou/ESMDance"])
    model_select: str | None = None  # for training checkpoints that do not record it
    methods: list[str] = field(default_factory=lambda: ["head"])
    with_dynamics: str = "no"  # no | yes | both (side by side)
    dynamics_model: str | None = None  # supplies the dynamics inputs when the base is a plain ESM2
    classification: bool = False
    pooling: str = "mean"
    wild_types: str | None = None  # mutant tasks: FASTA of the wild types (record id = assay name)
    reference_csv: str | None = None  # mutant tasks: ProteinGym reference file (DMS_id, target_seq)
    sequences: str | None = None  # residue tasks with a long table: FASTA of the sequences
    max_rows: int | None = None  # mutant tasks: a seeded subset of at most this many rows per assay
    split: str = "auto"  # auto: columns if present, else fold_random_5 (mutant) / kfold
    folds: int = 5
    identity: float = 0.3  # split: identity
    coverage: float = 0.5
    valid_fraction: float = 0.1  # of each fold's training rows, for early stopping
    epochs: int = 20
    batch_size: int = 16
    patience: int = 5  # early stopping: epochs without a better validation loss
    head_hidden: int = 128
    head_dropout: float = 0.1
    max_tokens: int = 1024  # longer sequences are cut to their first max_tokens tokens (ESM2's context)
    gradient_checkpointing: bool = False
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    output_dir: str = "runs/finetune"
    cache_dir: str | None = None  # head features (null: OUTPUT_DIR/cache)
    baselines: bool = True
    keep: str = "refit"
    merge_lora: bool = False
    on_nonfinite: str = "error"
    progress: bool = True
    lora: LoraOptions = field(default_factory=LoraOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)

    # --- derived ---------------------------------------------------------------------------------------

    def lr_for(self, method: str) -> float:
        return float(self.optim.lr) if self.optim.lr is not None else DEFAULT_LR[method]

    def dynamics_settings(self) -> list[bool]:
        return {"no": [False], "yes": [True], "both": [False, True]}[self.with_dynamics]

    def resolved_split(self, has_columns: bool) -> str:
        if self.split != "auto":
            return self.split
        if has_columns:
            return "columns"
        return "fold_random_5" if self.task == "mutant" else "kfold"

    # --- validation ------------------------------------------------------------------------------------

    def validate(self) -> FinetuneConfig:
        def bad(msg: str) -> None:
            raise InputError(f"finetune config: {msg}")

        if not self.labels:
            bad("no label table given (--labels)")
        schemes = [s.strip() for s in self.split.split(",") if s.strip()]
        if not schemes or any(s not in SPLITS for s in schemes):
            bad(f"split must be one of {', '.join(SPLITS)} (mutant tasks: several joined by commas), "
                f"got {self.split!r}")
        if len(schemes) > 1 and (self.task != "mutant" or any(s not in PROTEINGYM_SCHEMES for s in schemes)):
            bad("several splits at once are ProteinGym's schemes of a mutant task (fold_random_5,fold_modulo_5,...)")
        for name, value, allowed in (("task", self.task, TASKS), ("pooling", self.pooling, POOLINGS),
                                     ("keep", self.keep, KEEP),
                                     ("with_dynamics", self.with_dynamics, DYNAMICS_CHOICES),
                                     ("on_nonfinite", self.on_nonfinite, NONFINITE_POLICIES),
                                     ("precision", self.precision, PRECISIONS)):
            if value not in allowed:
                bad(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            bad(f"methods must be among {', '.join(METHODS)}, got {self.methods}")
        if not self.models:
            bad("no model given (--model)")
        if any(s in PROTEINGYM_SCHEMES for s in schemes) and self.task != "mutant":
            bad(f"split {self.split} is ProteinGym's scheme for mutant tasks; use kfold or identity")
        if "identity" in schemes and self.task == "mutant":
            bad("split identity clusters different proteins; a mutant task uses the fold_* schemes")
        if self.classification and self.task == "mutant":
            bad("mutant tasks are regressions of DMS scores (drop --classification)")
        for name in ("folds", "epochs", "batch_size", "patience", "head_hidden"):
            if int(getattr(self, name)) < (2 if name == "folds" else 1):
                bad(f"{name} must be at least {2 if name == 'folds' else 1}, got {getattr(self, name)}")
        if not 0.0 < self.valid_fraction < 0.5:
            bad(f"valid_fraction must lie in (0, 0.5), got {self.valid_fraction}")
        if not 0.0 <= self.head_dropout < 1.0:
            bad(f"head_dropout must lie in [0, 1), got {self.head_dropout}")
        if self.max_tokens < 3 or self.max_tokens > 1026:
            bad(f"max_tokens must lie in [3, 1026], got {self.max_tokens}")
        if self.max_rows is not None and self.max_rows < 10:
            bad(f"max_rows must be at least 10, got {self.max_rows}")
        o = self.optim
        if o.lr is not None and not o.lr > 0:
            bad(f"optim.lr must be > 0, got {o.lr}")
        if not 0.0 <= o.warmup_fraction < 1.0 or not 0.0 <= o.final_lr_fraction <= 1.0:
            bad("optim.warmup_fraction must lie in [0, 1) and optim.final_lr_fraction in [0, 1]")
        if o.grad_clip_norm is not None and not o.grad_clip_norm > 0:
            bad("optim.grad_clip_norm must be > 0 or null")
        if o.layer_decay is not None and not 0.0 < o.layer_decay <= 1.0:
            bad(f"optim.layer_decay must lie in (0, 1], got {o.layer_decay}")
        if len(o.betas) != 2:
            bad("optim.betas must be a pair")
        if self.lora.rank < 1 or self.lora.alpha <= 0 or not 0 <= self.lora.dropout < 1:
            bad("lora.rank must be ≥ 1, lora.alpha > 0 and lora.dropout in [0, 1)")
        if not self.lora.target_modules:
            bad("lora.target_modules is empty")
        return self

    # --- (de)serialisation ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | os.PathLike[str]) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "finetune config") -> FinetuneConfig:
        return _build(cls, data, origin).validate()

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str] | None, overrides: Sequence[str] = (),
                  base: dict[str, Any] | None = None) -> FinetuneConfig:
        """Read ``path`` (optional), lay ``base`` (options given on the command line) over it, then
        ``overrides``."""
        data: dict[str, Any] = {}
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise FileNotFoundError(f"finetune config not found: {path}")
            try:
                data = yaml.safe_load(p.read_text()) or {}
            except yaml.YAMLError as exc:
                raise InputError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
            if not isinstance(data, dict):
                raise InputError(f"{path}: the top level of a finetune config must be a mapping")
        for key, value in (base or {}).items():
            node = data
            parts = key.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        apply_overrides(data, overrides)
        return cls.from_dict(data, origin=str(path) if path is not None else "finetune options")


_SECTIONS = {"lora": LoraOptions, "optim": OptimOptions}
_LISTS = ("labels", "models", "methods")


def _build(cls: type, data: Any, origin: str, where: str = "") -> Any:
    if not isinstance(data, dict):
        raise InputError(f"{origin}: {where or 'top level'} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"{origin}: unknown key(s) {unknown}{' in ' + where if where else ''}; known: {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key in _SECTIONS and not where:
            kwargs[key] = _build(_SECTIONS[key], value, origin, path)
        elif key == "with_dynamics" and isinstance(value, bool):
            kwargs[key] = "yes" if value else "no"
        elif key in _LISTS and isinstance(value, (str, os.PathLike)):
            kwargs[key] = [str(value)]
        else:
            kwargs[key] = _coerce(hints[key], value, origin, path)
    return cls(**kwargs)
