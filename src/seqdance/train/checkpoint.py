"""Resumable training checkpoints: written atomically, everything needed to continue exactly.

A checkpoint is one ``torch.save`` file ``checkpoints/update_{N:08d}.pt`` holding the update counter, the
model, optimiser, LR-scheduler and grad-scaler states, the data-sampler state, the RNG states of python,
numpy and torch (CPU and CUDA) of *every* rank, the loss-weight table and the config. It is written to a
temporary file and renamed, then ``checkpoints/latest`` (a one-line text file) is replaced the same way, so
an interrupted write never leaves a checkpoint that looks finished.

Reading is safe with hostile files: checkpoints load with ``torch.load(weights_only=True)`` (tensors, plain
containers and numpy arrays; a pickle that would run code is refused), ``latest`` may only name a checkpoint file
of its own folder, and a latest checkpoint that cannot be read (truncated by a full disk, damaged) is skipped,
with a warning, for the newest one that can.
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

from seqdance.errors import InputError, NonFiniteError
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


def _pointed_checkpoint(folder: Path) -> Path | None:
    """The checkpoint ``latest`` names, when it names a checkpoint file of ``folder`` itself (else a warning)."""
    pointer = folder / LATEST
    if not pointer.is_file():
        return None
    try:
        text = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("%s is unreadable (%s); using the newest checkpoint file", pointer, exc)
        return None
    if not _NAME.match(text):
        log.warning("%s names %r, which is not a checkpoint file of this folder (update_N.pt); ignored, using the "
                    "newest checkpoint file", pointer, text[:200])
        return None
    target = folder / text
    if not target.is_file():
        log.warning("%s names %s, which does not exist; using the newest checkpoint file", pointer, target)
        return None
    if not _inside(target, folder):
        log.warning("%s names %s, which leads outside %s (a link?); ignored", pointer, target, folder)
        return None
    return target


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().parent == folder.resolve()


def latest_checkpoint(output_dir: str | os.PathLike[str]) -> Path | None:
    """The checkpoint named by ``latest`` (falling back to the highest update number), or None.

    ``latest`` may only name a checkpoint file inside the run's own ``checkpoints/`` folder.
    """
    candidates = resume_candidates(output_dir)
    return candidates[0] if candidates else None


def resume_candidates(output_dir: str | os.PathLike[str]) -> list[Path]:
    """Checkpoints to resume from, in order of preference: the one ``latest`` names, then newest first."""
    folder = Path(output_dir) / CHECKPOINT_DIR
    found = [p for _, p in reversed(list_checkpoints(output_dir)) if _inside(p, folder)]
    pointed = _pointed_checkpoint(folder)
    if pointed is not None:
        found = [pointed, *(p for p in found if p != pointed)]
    return found


def load_latest_checkpoint(output_dir: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]] | None:
    """(path, state) of the newest usable checkpoint of a run, or None when it has none.

    A checkpoint that cannot be read (truncated, damaged, with non-finite weights) is skipped with a warning for
    the previous one; a file that would run code is refused (:class:`~seqdance.errors.UnsafeFileError`), never
    skipped silently.
    """
    from seqdance.model.files import CheckpointError

    skipped: list[str] = []
    for path in resume_candidates(output_dir):
        try:
            state = load_checkpoint(path)
        except (CheckpointError, NonFiniteError, InputError) as exc:  # UnsafeFileError is none of these
            log.warning("cannot resume from %s (%s); trying the previous checkpoint", path, exc)
            skipped.append(f"{path.name}: {exc}")
            continue
        if skipped:
            log.warning("resuming from %s: the newer checkpoint(s) %s could not be used", path,
                        ", ".join(s.split(":")[0] for s in skipped))
        return path, state
    if skipped:
        raise InputError(f"{Path(output_dir) / CHECKPOINT_DIR}: no usable checkpoint to resume from ("
                         + "; ".join(skipped) + ")")
    return None


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
    """Read a checkpoint written by :func:`save_checkpoint` (on CPU), without running any code from it.

    Raises :class:`~seqdance.errors.UnsafeFileError` for a file holding other Python objects than tensors, plain
    containers and numpy arrays, ``CheckpointError`` for an unreadable one and
    :class:`~seqdance.errors.NonFiniteError` when the saved model weights are not all finite.
    """
    from seqdance.model.files import CheckpointError, torch_load_safe

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = torch_load_safe(p)
    if not isinstance(state, dict) or "update" not in state or "model" not in state:
        raise CheckpointError(f"{path}: not a seqdance training checkpoint (no 'update'/'model' entries)")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {state['format_version']} is newer than this seqdance "
                              f"understands ({FORMAT_VERSION})")
    model = state["model"]
    if isinstance(model, dict):
        bad = [k for k, v in model.items()
               if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise NonFiniteError(f"{path}: the saved model has NaN or infinite values in {len(bad)} tensor(s), "
                                 f"e.g. {bad[0]}")
    return state
