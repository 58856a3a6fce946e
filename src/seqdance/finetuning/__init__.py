"""seqdance.finetuning: fine-tuning on your own labels — a head, LoRA adapters or the whole model, for protein,
residue and mutant tasks, with the base model's predicted dynamics as optional extra inputs (docs/finetune.md).

``seqdance.finetune(...)`` is :func:`seqdance.finetuning.run.finetune`; a fine-tuned model folder loads with
``seqdance.load_model``. Public names are imported on first use (the command line reads only
:mod:`seqdance.finetuning.options`).
"""

from __future__ import annotations

from seqdance.lazy import lazy_exports

_LAZY = {
    "FinetuneConfig": "seqdance.finetuning.config",
    "FinetuneResult": "seqdance.finetuning.run",
    "finetune": "seqdance.finetuning.run",
    "FinetunedModel": "seqdance.finetuning.model",
    "load_finetuned": "seqdance.finetuning.files",
    "save_finetuned": "seqdance.finetuning.files",
    "is_finetuned_dir": "seqdance.finetuning.files",
    "predict_targets": "seqdance.finetuning.predict",
    "score_mutants_finetuned": "seqdance.finetuning.predict",
}

__all__, __getattr__ = lazy_exports(__name__, _LAZY)
