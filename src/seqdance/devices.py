"""Device selection shared by every command: names checked once, with a clear error, and a model's device."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device | None, *, default: str = "cpu", local_rank: int = 0) -> torch.device:
    """The torch device for a user-given name; ``None`` means ``default``.

    ``auto`` picks CUDA when available, else CPU; a bare ``cuda`` means the local rank's GPU (torchrun).
    A name torch does not know, or a device this machine does not have, raises a ValueError saying so.
    """
    spec = default if name is None else name
    if isinstance(spec, torch.device):
        device = spec
    else:
        if spec == "auto":
            spec = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            device = torch.device(spec)
        except RuntimeError as exc:
            raise ValueError(f"unknown device {spec!r} (use cpu, cuda, cuda:N, mps or auto)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(spec)!r} requested but CUDA is not available in this torch build / machine")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(spec)!r} requested but Apple MPS is not available")
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a module's parameters live (CPU for a module without parameters)."""
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")
