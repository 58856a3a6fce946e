"""Device selection and run state shared by every command: device names checked once with a clear error, a
model's device, numeric precision, and eval mode for a block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from seqdance.errors import InputError

if TYPE_CHECKING:  # torch is imported where it is used, so the command line can read PRECISIONS quickly
    import torch


def resolve_device(name: str | torch.device | None, *, default: str = "auto", local_rank: int = 0) -> torch.device:
    """The torch device for a user-given name; ``None`` means ``default``.

    ``auto`` (the default) picks CUDA when available, then Apple MPS, then the CPU; a bare ``cuda`` means the
    local rank's GPU (torchrun).
    A name torch does not know, or a device this machine does not have, raises a ValueError saying so.
    """
    import torch

    spec = default if name is None else name
    if isinstance(spec, torch.device):
        device = spec
    else:
        if spec == "auto":
            spec = auto_device_name()
        try:
            device = torch.device(spec)
        except RuntimeError as exc:
            raise InputError(f"unknown device {spec!r} (use cpu, cuda, cuda:N, mps or auto)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {str(spec)!r} requested but CUDA is not available in this torch build / machine")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {str(spec)!r} requested but Apple MPS is not available")
    return device


def auto_device_name() -> str:
    """The best device this machine has: ``cuda``, then ``mps``, then ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


#: What ``--device`` accepts, said once for every command that has it.
DEVICE_HELP = "auto (default: CUDA, then Apple MPS, then the CPU), cpu, cuda, cuda:N or mps"

#: The dtypes a model may run in (``--dtype``; :func:`seqdance.load_model`'s ``dtype``): float32 is exact,
#: bfloat16 and float16 trade digits for speed and memory (docs/predict.md#precision).
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
#: The precisions' short names, accepted as spellings of the dtypes.
DTYPE_ALIASES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def dtype_name(text: str) -> str:
    """The dtype a user named (``float32``, ``bfloat16``, ``float16``, or ``fp32``/``bf16``/``fp16``)."""
    name = DTYPE_ALIASES.get(str(text).lower(), str(text).lower().removeprefix("torch."))
    if name not in DTYPES:
        raise InputError(f"unknown dtype {text!r}; use {', '.join(DTYPES)}")
    return name


def model_dtype(name: str | None) -> str | None:
    """What :func:`seqdance.load_model` gets for a dtype name: None for float32 (the weights as stored, exactly as
    without the option), else the name."""
    if name is None:
        return None
    name = dtype_name(name)
    return None if name == "float32" else name


#: Numeric precisions of training and evaluation: ``auto`` picks bf16 / fp16 on GPUs, fp32 on CPU.
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU; fp16 needs CUDA."""
    import torch

    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise InputError("precision fp16 needs a CUDA device (use bf16 or fp32 on CPU)")
    return precision


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The ``torch.autocast`` dtype of a resolved precision (None: full fp32, no autocast)."""
    import torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a module's parameters live (CPU for a module without parameters)."""
    import torch

    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Run a block with ``model`` in eval mode (no dropout), restoring its previous train/eval mode after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
