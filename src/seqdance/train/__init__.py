"""seqdance.train: loss, loss weights, schedule, data sampling, the trainer and evaluation
(docs/design.md#training, #evaluation-metrics).

Public names are imported on first use, so ``import seqdance.train`` stays light.
"""

from __future__ import annotations

from seqdance.lazy import lazy_exports

_LAZY = {
    "TrainConfig": "seqdance.train.config",
    "Trainer": "seqdance.train.trainer",
    "train": "seqdance.train.trainer",
    "evaluate_model": "seqdance.train.evaluate",
    "write_report": "seqdance.train.evaluate",
    "LossWeights": "seqdance.train.weights",
    "load_loss_weights": "seqdance.train.weights",
    "compute_store_statistics": "seqdance.train.weights",
    "batch_group_loss": "seqdance.train.loss",
    "per_protein_rmse": "seqdance.train.loss",
    "WarmupLinearDecay": "seqdance.train.schedule",
}

__all__, __getattr__ = lazy_exports(__name__, _LAZY)
