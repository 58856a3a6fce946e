"""Choices of ``seqdance finetune``, defined once and light (no numeric library), so the command line reads them
without importing torch."""

from __future__ import annotations

TASKS: tuple[str, ...] = ("protein", "residue", "mutant")
METHODS: tuple[str, ...] = ("head", "lora", "full")
POOLINGS: tuple[str, ...] = ("mean", "attention")
#: How rows are split into folds. ``columns``: the table's ``split_*`` columns (train/valid/test) or, for mutant
#: tasks, its ``fold_*`` columns; ``kfold``: seeded random k-fold; ``identity``: k folds of sequence-identity
#: clusters (protein and residue tasks); the three ProteinGym supervised schemes for mutant tasks.
PROTEINGYM_SCHEMES: tuple[str, ...] = ("fold_random_5", "fold_modulo_5", "fold_contiguous_5")
SPLITS: tuple[str, ...] = ("auto", "columns", "kfold", "identity", *PROTEINGYM_SCHEMES)
#: ``refit``: RUN/model is the best combination refitted on all labelled rows; ``best``: its best fold's model.
KEEP: tuple[str, ...] = ("refit", "best", "none")
DYNAMICS_CHOICES: tuple[str, ...] = ("no", "yes", "both")
NONFINITE_POLICIES: tuple[str, ...] = ("error", "skip")
#: Default LoRA targets: the encoder's attention projections (names of seqdance.model.encoder's modules).
DEFAULT_LORA_TARGETS: tuple[str, ...] = ("query", "key", "value", "attention.output.dense")
#: Added by ``lora.ffn: true``: the feed-forward projections of every layer.
LORA_FFN_TARGETS: tuple[str, ...] = ("intermediate.dense", "output.dense")
