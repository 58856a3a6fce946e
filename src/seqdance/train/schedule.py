"""Optimiser and learning-rate schedule of docs/design.md#optimiser-and-schedule.

The n-th update (n = 1, 2, ...) uses ``peak × f(n)`` with the piecewise-linear rule

* ``f(n) = n / W`` for n < W (linear warm-up over W updates),
* ``f(n) = 1 − (1 − r)·(n − W) / (D − W)`` for W ≤ n < D, where ``D = int(fraction × total)``,
* ``f(n) = r`` for n ≥ D (constant ``r × peak``; r = 0.1, fraction = 0.9 in the reference).

This is the released schedule exactly: its LambdaLR was stepped before the optimiser, so its update n used
the factor at n. Here the LambdaLR is stepped after the optimiser as usual and looks one update ahead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from seqdance.errors import InputError


@dataclass
class WarmupLinearDecay:
    """Learning-rate factor of update n (callable; picklable so LambdaLR can save it)."""

    total_updates: int
    warmup_updates: int = 2000
    decay_end_fraction: float = 0.9
    final_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.total_updates < 1:
            raise InputError(f"total_updates must be ≥ 1, got {self.total_updates}")
        if not 0.0 < self.decay_end_fraction <= 1.0:
            raise InputError(f"decay_end_fraction must lie in (0, 1], got {self.decay_end_fraction}")
        if not 0.0 <= self.final_fraction <= 1.0:
            raise InputError(f"final_fraction must lie in [0, 1], got {self.final_fraction}")
        if self.warmup_updates < 0:
            raise InputError(f"warmup_updates must be ≥ 0, got {self.warmup_updates}")
        if self.warmup_updates > self.decay_end:
            raise InputError(
                f"warm-up ({self.warmup_updates} updates) is longer than the decay phase end "
                f"({self.decay_end} = {self.decay_end_fraction} × {self.total_updates} updates); lower "
                "warmup_updates or raise total_updates"
            )

    @property
    def decay_end(self) -> int:
        return int(self.total_updates * self.decay_end_fraction)

    def factor(self, update: int) -> float:
        """Factor of the peak LR used by update ``update`` (1-based)."""
        w, d, r = self.warmup_updates, self.decay_end, self.final_fraction
        if update < w:
            return update / w
        if update < d:
            return 1.0 - (1.0 - r) * (update - w) / (d - w)
        return r

    def __call__(self, completed: int) -> float:
        # LambdaLR passes the number of completed updates; the next update is completed + 1.
        return self.factor(completed + 1)


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    *,
    lr: float = 1e-4,
    betas: tuple[float, float] = (0.9, 0.98),
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (frozen ones are left out)."""
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise InputError("the model has no trainable parameters")
    kwargs = {"fused": fused} if fused is not None else {}
    return torch.optim.AdamW(trainable, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, **kwargs)


def build_scheduler(optimizer: torch.optim.Optimizer, rule: WarmupLinearDecay) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR applying ``rule`` to the optimiser's base LR (the peak)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, rule)
