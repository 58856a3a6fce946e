"""Fine-tuning learns what is there and nothing that is not: labels made by a separate frozen tiny "teacher" from its
pooled (protein task) and per-residue (residue task) states are learned by LoRA and full fine-tuning of another tiny
random model to Spearman ≥ 0.9 on held-out proteins; the same labels shuffled give |Spearman| < 0.2 (300 proteins,
mean over three folds)."""

from __future__ import annotations

import numpy as np
import pytest
from _checkpoints import write_released_checkpoint
from _finetune_data import random_sequences, teacher_labels, write_protein_table, write_residue_table

N_PROTEINS = 300
SETTINGS = dict(split="kfold", folds=3, epochs=15, batch_size=32, baselines=False, keep="none", progress=False,
                patience=100, head_dropout=0.0)
LR = {"lora": 1e-2, "full": 3e-3}


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("learning")
    student = write_released_checkpoint(root / "student", "tiny", "seqdance", seed=1)
    sequences = random_sequences(N_PROTEINS, 10, 20, seed=0)
    names = [f"p{i}" for i in range(N_PROTEINS)]
    protein, residue = teacher_labels(sequences)
    shuffled = np.random.default_rng(1).permutation(protein)
    return {"student": str(student), "root": root,
            "protein": write_protein_table(root / "protein.csv", names, sequences, protein),
            "shuffled": write_protein_table(root / "shuffled.csv", names, sequences, shuffled),
            "residue": write_residue_table(root / "residue.csv", names, sequences, residue)}


def _mean_spearman(tables, table: str, task: str, method: str) -> float:
    import seqdance

    result = seqdance.finetune(labels=str(tables[table]), task=task, target="y", model=tables["student"],
                               method=method, optim={"lr": LR[method]},
                               output_dir=str(tables["root"] / f"{table}_{method}"), **SETTINGS)
    values = result.metrics.loc[result.metrics["metric"] == "spearman", "value"].to_numpy()
    assert len(values) == 3 and np.isfinite(values).all()
    return float(values.mean())


@pytest.mark.parametrize("method", ["lora", "full"])
def test_teacher_labels_are_learned_and_shuffled_ones_are_not(tables, method, one_torch_thread):
    assert _mean_spearman(tables, "protein", "protein", method) >= 0.9
    assert _mean_spearman(tables, "residue", "residue", method) >= 0.9
    assert abs(_mean_spearman(tables, "shuffled", "protein", method)) < 0.2
