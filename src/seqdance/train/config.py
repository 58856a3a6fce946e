"""Training configuration: one YAML file with every knob, read into dataclasses and validated.

Unknown keys are errors (a typo must not silently fall back to a default). ``overrides`` take
``dotted.key=value`` strings (values parsed as YAML), e.g. ``optim.lr=3e-4`` or ``total_updates=100``.
Relative paths are taken relative to the current working directory.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from seqdance import schema
from seqdance.devices import PRECISIONS
from seqdance.errors import InputError
from seqdance.io_utils import atomic_path
from seqdance.model.kinds import DEFAULT_ESM2_SOURCE, MODEL_SELECTS
from seqdance.train.loss import MASK_MODES
from seqdance.train.weights import BASELINE_FLOOR, MAX_WEIGHT_RATIO

#: A learning rate above this is a typo (the published recipes use 1e-4 to 2e-2): refused before training.
MAX_LEARNING_RATE = 10.0
#: What the trainer does with an update whose loss, targets or gradients are not finite.
NONFINITE_POLICIES: tuple[str, ...] = ("error", "skip")


@dataclass
class CurriculumStage:
    """Until ``until`` × total updates (inclusive), crops have at most ``max_tokens`` tokens."""

    until: float
    max_tokens: int
    micro_batch_size: int | None = None  # None: DataConfig.micro_batch_size


@dataclass
class DataConfig:
    store: list[str] = field(default_factory=list)  # one or several stores (paths as DynamicsStore.open takes)
    index: list[str] | None = None  # index CSV per store (released layout) when not beside it as <store>.csv
    train_split: str = "train"
    test_split: str = "test"
    groups: list[str] | None = None  # None: every group with training proteins
    loss_weights: str = "compute"  # "compute" (docs/design.md#loss-weights rules on the training split) or a CSV path
    weight_max_proteins: int | None = None  # subsample per group when computing weights
    # near-zero baselines (few proteins): floor as a share of the largest baseline of the same kind, and
    # cap weights at this multiple of the group's median weight; 0 / null give the plain
    # docs/design.md#loss-weights rule
    weight_baseline_floor: float = BASELINE_FLOOR
    weight_max_ratio: float | None = MAX_WEIGHT_RATIO
    sequences_per_group: int = 128  # per update, all ranks together
    micro_batch_size: int = 16  # per rank and forward pass
    curriculum: list[CurriculumStage] = field(
        default_factory=lambda: [CurriculumStage(0.8, 256, 16), CurriculumStage(1.0, 1024, 2)]
    )
    eval_max_tokens: int = schema.ESM2_MAX_TOKENS
    eval_batch_size: int = 4
    num_workers: int = 2  # data-loading processes per rank (0: load in the training process)
    loss_mask: str = "entry"  # "entry" (docs/design.md#loss) or "reference" (released code: channel-0 validity)
    target_clamp: list[float] | None = None  # e.g. [-2, 2] as the released data loader did


@dataclass
class OptimConfig:
    lr: float = 1e-4  # peak learning rate
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-8
    weight_decay: float = 0.01
    warmup_updates: int = 2000
    decay_end_fraction: float = 0.9
    final_lr_fraction: float = 0.1
    grad_clip_value: float | None = 0.5  # element-wise gradient value clipping (None: off)


@dataclass
class TrainConfig:
    model_select: str = "seqdance"
    encoder: str | dict[str, Any] = "35M"  # preset key, ESM2 name, or a dict of EncoderConfig fields
    dropout: float = 0.1
    esm2_weights: str | None = DEFAULT_ESM2_SOURCE  # ESMDance: pretrained encoder (None: random)
    init_from: str | None = None  # start from a trained model (seqdance.load_model source) to fine-tune
    total_updates: int = 200_000
    seed: int = 42
    precision: str = "auto"  # auto: bf16 on CUDA with bf16 support, else fp16 on CUDA, fp32 on CPU
    device: str = "auto"  # auto | cpu | cuda | cuda:N (under torchrun the local rank picks the GPU)
    output_dir: str = "runs/seqdance"
    checkpoint_interval: int = 1000
    keep_checkpoints: int = 3
    save_model_at_checkpoints: bool = False  # also write save_pretrained() dirs at checkpoints
    eval_interval: int = 0  # evaluate the test split every N updates (0: only at the end)
    eval_at_end: bool = True
    log_interval: int = 1  # JSONL line every N updates
    log_file: str = "train_log.jsonl"  # relative to output_dir
    tensorboard: bool = False
    progress: bool = True
    pair_block_rows: int | None = None  # forwarded to the model (memory/speed trade-off of the pair head)
    checkpoint_pair_blocks: bool = False  # recompute pair-head blocks in backward (less memory, more time)
    on_nonfinite: str = "error"  # a NaN/inf loss, target or gradient: "error" (stop, naming it) or "skip" the update
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    # --- derived ---------------------------------------------------------------------------------

    def stage_at(self, update: int) -> CurriculumStage:
        """Curriculum stage of update ``update`` (1-based)."""
        for stage in self.data.curriculum:
            if update <= stage.until * self.total_updates + 1e-9:
                return stage
        return self.data.curriculum[-1]

    def micro_batch_at(self, update: int) -> int:
        stage = self.stage_at(update)
        return stage.micro_batch_size or self.data.micro_batch_size

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)

    # --- validation ------------------------------------------------------------------------------

    def validate(self) -> TrainConfig:
        def bad(msg: str) -> None:
            raise InputError(f"training config: {msg}")

        if self.model_select not in MODEL_SELECTS:
            bad(f"model_select must be one of {MODEL_SELECTS}, got {self.model_select!r}")
        if self.precision not in PRECISIONS:
            bad(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.on_nonfinite not in NONFINITE_POLICIES:
            bad(f"on_nonfinite must be one of {NONFINITE_POLICIES}, got {self.on_nonfinite!r}")
        if self.total_updates < 1:
            bad("total_updates must be ≥ 1")
        if not 0.0 <= self.dropout < 1.0:
            bad(f"dropout must lie in [0, 1), got {self.dropout}")
        d = self.data
        if not d.store:
            bad("data.store is empty: give the path of a dataset store (or a list of stores)")
        if d.index is not None and len(d.index) != len(d.store):
            bad(f"data.index has {len(d.index)} entries but data.store has {len(d.store)}: give one per store")
        if d.groups is not None:
            unknown = [g for g in d.groups if g not in schema.SOURCE_GROUPS]
            if unknown:
                bad(f"data.groups has unknown group(s) {unknown}; expected among {schema.SOURCE_GROUPS}")
        if d.sequences_per_group < 1 or d.micro_batch_size < 1:
            bad("data.sequences_per_group and data.micro_batch_size must be ≥ 1")
        if d.loss_mask not in MASK_MODES:
            bad(f"data.loss_mask must be one of {MASK_MODES}, got {d.loss_mask!r}")
        if d.target_clamp is not None and (len(d.target_clamp) != 2 or d.target_clamp[0] >= d.target_clamp[1]):
            bad(f"data.target_clamp must be [low, high] with low < high, got {d.target_clamp}")
        if not d.curriculum:
            bad("data.curriculum needs at least one stage")
        last = 0.0
        for i, st in enumerate(d.curriculum):
            if not last < st.until <= 1.0:
                bad(f"data.curriculum[{i}].until must increase within (0, 1], got {st.until}")
            if st.max_tokens < 3:
                bad(f"data.curriculum[{i}].max_tokens must be ≥ 3, got {st.max_tokens}")
            if st.micro_batch_size is not None and st.micro_batch_size < 1:
                bad(f"data.curriculum[{i}].micro_batch_size must be ≥ 1")
            last = st.until
        if abs(last - 1.0) > 1e-9:
            bad("the last curriculum stage must have until: 1.0")
        o = self.optim
        if o.lr <= 0 or len(o.betas) != 2:
            bad("optim.lr must be > 0 and optim.betas a pair")
        if o.lr > MAX_LEARNING_RATE:
            bad(f"optim.lr = {o.lr:g} is beyond any usable learning rate (at most {MAX_LEARNING_RATE:g})")
        if not all(0.0 <= b < 1.0 for b in o.betas):
            bad(f"optim.betas must lie in [0, 1), got {o.betas}")
        if o.eps <= 0 or o.weight_decay < 0:
            bad(f"optim.eps must be > 0 and optim.weight_decay ≥ 0, got {o.eps:g} and {o.weight_decay:g}")
        if o.grad_clip_value is not None and o.grad_clip_value <= 0:
            bad("optim.grad_clip_value must be > 0 or null")
        if d.weight_baseline_floor < 0 or (d.weight_max_ratio is not None and d.weight_max_ratio < 0):
            bad("data.weight_baseline_floor and data.weight_max_ratio must be ≥ 0")
        if d.eval_max_tokens < 3 or d.eval_batch_size < 1 or d.num_workers < 0:
            bad("data.eval_max_tokens must be ≥ 3, data.eval_batch_size ≥ 1 and data.num_workers ≥ 0")
        if d.weight_max_proteins is not None and d.weight_max_proteins < 1:
            bad("data.weight_max_proteins must be ≥ 1 or null")
        if self.checkpoint_interval < 0 or self.keep_checkpoints < 1 or self.log_interval < 1:
            bad("checkpoint_interval must be ≥ 0, keep_checkpoints ≥ 1 and log_interval ≥ 1")
        if self.eval_interval < 0 or (self.pair_block_rows is not None and self.pair_block_rows < 1):
            bad("eval_interval must be ≥ 0 and pair_block_rows ≥ 1 or null")
        from seqdance.train.schedule import WarmupLinearDecay

        try:
            WarmupLinearDecay(self.total_updates, o.warmup_updates, o.decay_end_fraction, o.final_lr_fraction)
        except InputError as exc:
            bad(f"optim: {exc}")
        return self

    # --- (de)serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | os.PathLike[str]) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "config") -> TrainConfig:
        return _build(cls, data, origin).validate()

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> TrainConfig:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"training config not found: {path}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: the top level of a training config must be a mapping")
        apply_overrides(data, overrides)
        return cls.from_dict(data, origin=f"{path} (with overrides)" if overrides else str(path))


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set ``dotted.key=value`` entries (value parsed as YAML) in a nested dict, in place."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"override {item!r} is not of the form key=value (e.g. optim.lr=3e-4)")
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"override {item!r}: {part!r} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise InputError(f"override {item!r}: the value is not valid YAML ({yaml_problem(exc)}); quote it if it "
                             "is a string") from None
    return data


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line (PyYAML's spans several, with a caret under the place). A tag such as
    ``!!python/object`` asks to build an object, which safe YAML refuses: said as such."""
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
        tag = problem.split("tag", 1)[1].strip().replace("tag:yaml.org,2002:", "!!")
        problem = f"the tag {tag} is not allowed: a config holds plain values, and safe YAML builds no objects"
    mark = getattr(exc, "problem_mark", None)
    return problem + (f"; line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "")


def _coerce(hint: Any, value: Any, origin: str, path: str) -> Any:
    """Convert YAML scalars to the field's type (YAML 1.1 reads ``1e-4`` as a string)."""
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = typing.get_args(hint) if is_union else (hint,)
    optional = type(None) in args
    bases = [a for a in args if a is not type(None)]
    if value is None:
        if optional:
            return None
        raise InputError(f"{origin}: {path} may not be null")
    if isinstance(value, dict) and any((typing.get_origin(b) or b) is dict for b in bases):
        return value
    base = typing.get_origin(bases[0]) or bases[0]
    try:
        if base is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if base is int:
            if isinstance(value, bool):
                raise TypeError
            as_float = float(value)
            if not as_float.is_integer():
                raise TypeError
            return int(as_float)
        if base is float:
            if isinstance(value, bool):
                raise TypeError
            return _finite(float(value), origin, path)
        if base is str:
            if isinstance(value, (dict, list)):
                raise TypeError
            return str(value)
        if base is list:
            if not isinstance(value, list):
                raise TypeError
            inner = typing.get_args(bases[0])
            if inner and inner[0] is float:
                return [_finite(float(v), origin, f"{path}[{i}]") for i, v in enumerate(value)]
            if inner and inner[0] is str:
                return [str(v) for v in value]
            return value
    except InputError:
        raise
    except (TypeError, ValueError):
        raise InputError(f"{origin}: {path} = {value!r} is not a valid {getattr(base, '__name__', base)}") from None
    return value


def _finite(value: float, origin: str, path: str) -> float:
    """A numeric setting must be a finite number: NaN or infinity is an error before anything runs."""
    if not math.isfinite(value):
        raise InputError(f"{origin}: {path} = {value} is not a finite number")
    return value


def _build(cls: type, data: Any, origin: str, where: str = "") -> Any:
    if not isinstance(data, dict):
        raise InputError(f"{origin}: {where or 'top level'} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"{origin}: unknown key(s) {unknown}{' in ' + where if where else ''}; "
                         f"known: {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        path = f"{where}.{key}" if where else key
        if hint is DataConfig or hint is OptimConfig:
            kwargs[key] = _build(hint, value, origin, path)
        elif key == "curriculum":
            if not isinstance(value, list):
                raise InputError(f"{origin}: {path} must be a list of stages")
            kwargs[key] = [_build(CurriculumStage, v, origin, f"{path}[{i}]") for i, v in enumerate(value)]
        elif key in ("store", "index") and value is not None:
            kwargs[key] = [str(value)] if isinstance(value, (str, os.PathLike)) else [str(v) for v in value]
        else:
            kwargs[key] = _coerce(hint, value, origin, path)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise InputError(f"{origin}: {where or 'config'}: {exc}") from None
