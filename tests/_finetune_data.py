"""Label tables for the fine-tuning tests, generated from tiny random models (no network, no real labels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _checkpoints import random_dynamics_model

AMINO = "ACDEFGHIKLMNPQRSTVWY"


def random_sequences(n: int, low: int, high: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(AMINO), int(rng.integers(low, high + 1)))) for _ in range(n)]


@torch.no_grad()
def teacher_labels(sequences: list[str], seed: int = 7) -> tuple[np.ndarray, list[np.ndarray]]:
    """A separate frozen tiny "teacher" encoder's states through a fixed nonlinear map: per protein tanh of the
    standardised projection of its mean-pooled residue states, per residue the same of each residue's state."""
    from seqdance.tokenizer import encode

    teacher = random_dynamics_model("tiny", "seqdance", seed=seed).esm2.eval()
    direction = torch.from_numpy(np.random.default_rng(seed).normal(size=teacher.config.hidden_size)).float()
    pooled, per_residue = [], []
    for seq in sequences:
        states = teacher(torch.from_numpy(encode(seq).ids)[None])[0][0, 1:-1]
        per_residue.append((states @ direction).numpy().astype(np.float64))
        pooled.append(float(states.mean(0) @ direction))
    pooled_arr = np.asarray(pooled)
    protein = np.tanh((pooled_arr - pooled_arr.mean()) / pooled_arr.std())
    flat = np.concatenate(per_residue)
    residue = [np.tanh((r - flat.mean()) / flat.std()) for r in per_residue]
    return protein, residue


def write_protein_table(path: Path, names, sequences, values, column: str = "y") -> Path:
    pd.DataFrame({"name": names, "sequence": sequences, column: values}).to_csv(path, index=False)
    return path


def write_residue_table(path: Path, names, sequences, values, column: str = "y") -> Path:
    text = [" ".join("nan" if not np.isfinite(v) else f"{v:.5f}" for v in row) for row in values]
    pd.DataFrame({"name": names, "sequence": sequences, column: text}).to_csv(path, index=False)
    return path


def write_assay(folder: Path, name: str = "ASSAY_TEST", seed: int = 0) -> tuple[Path, Path]:
    """A small single-substitution DMS assay (ProteinGym layout) and its wild type."""
    rng = np.random.default_rng(seed)
    wild_type = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEV"
    rows = []
    for i, wt in enumerate(wild_type):
        for mt in "AEKLGW":
            if mt != wt:
                rows.append((f"{wt}{i + 1}{mt}", float((mt in "KR") - (mt == "E") + rng.normal(0, 0.2))))
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / f"{name}.csv"
    pd.DataFrame(rows, columns=["mutant", "DMS_score"]).to_csv(table, index=False)
    fasta = folder / f"{name}.fasta"
    fasta.write_text(f">{name}\n{wild_type}\n")
    return table, fasta
