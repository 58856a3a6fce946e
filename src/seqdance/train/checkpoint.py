"""Resumable training checkpoints: written atomically, everything needed to continue exactly.

A checkpoint is one ``torch.save`` file ``checkpoints/update_{N:08d}.pt`` holding the update counter, the
model, optimiser, LR-scheduler and grad-scaler states, the data-sampler state, the RNG states of python,
numpy and torch (CPU and CUDA) of *every* rank, the loss-weight table and the config. It is written to a
temporary file and renamed, then ``checkpoints/latest`` (a one-line text file) is replaced the same way, so
an interrupted write never leaves a checkpoint that looks finished.
"""

from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqdance.io_utils import atomic_path

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
_NAME = re.compile(r"^update_(\d+)\.pt$")
FORMAT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """RNG states of this process (python, numpy, torch CPU and every visible CUDA device)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (the legacy global state is what we save)
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002
    torch.manual_seed(seed)


def checkpoint_path(output_dir: str | os.PathLike[str], update: int) -> Path:
    return Path(output_dir) / CHECKPOINT_DIR / f"update_{update:08d}.pt"


def list_checkpoints(output_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Finished checkpoints of a run, oldest first."""
    folder = Path(output_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(output_dir: str | os.PathLike[str]) -> Path | None:
    """The checkpoint named by ``latest`` (falling back to the highest update number), or None."""
    folder = Path(output_dir) / CHECKPOINT_DIR
    pointer = folder / LATEST
    if pointer.is_file():
        target = folder / pointer.read_text().strip()
        if target.is_file():
            return target
        log.warning("%s names %s, which does not exist; using the newest checkpoint file", pointer, target)
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def save_checkpoint(state: dict[str, Any], output_dir: str | os.PathLike[str], update: int, *, keep: int = 3) -> Path:
    """Write ``state`` atomically as the checkpoint of ``update``, point ``latest`` at it, prune old ones."""
    path = checkpoint_path(output_dir, update)
    state = {"format_version": FORMAT_VERSION, "update": update, **state}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    with atomic_path(path.parent / LATEST) as tmp:
        tmp.write_text(path.name + "\n")
    for _, old in list_checkpoints(output_dir)[:-keep]:
        if old != path:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (on CPU)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file: say which
        raise ValueError(f"{path}: not a readable training checkpoint ({exc})") from None
    if not isinstance(state, dict) or "update" not in state or "model" not in state:
        raise ValueError(f"{path}: not a seqdance training checkpoint (no 'update'/'model' entries)")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {state['format_version']} is newer than this seqdance "
                         f"understands ({FORMAT_VERSION})")
    return state
