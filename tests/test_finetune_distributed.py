"""``torchrun --nproc_per_node=2`` (gloo, CPU): each rank takes half of every batch, the gradients are summed over
ranks (the trainer's process group), and the run gives the single process's predictions."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
from _checkpoints import write_released_checkpoint
from _finetune_data import random_sequences, write_protein_table


def test_two_ranks_match_one_process(tmp_path):
    sequences = random_sequences(30, 10, 20, seed=5)
    labels = write_protein_table(tmp_path / "y.csv", [f"p{i}" for i in range(30)], sequences,
                                 [s.count("K") - s.count("D") for s in sequences])
    model = write_released_checkpoint(tmp_path / "m", "tiny", "esmdance", seed=3)  # no dropout in the encoder
    args = ["finetune", "--labels", str(labels), "--target", "y", "--model", str(model), "--method", "lora",
            "--epochs", "3", "--folds", "2", "--batch-size", "6", "--no-baselines", "--keep", "none", "-q",
            "--lora-dropout", "0", "--set", "head_dropout=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "seqdance.cli.main", *args, "-o", str(tmp_path / "ddp")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert ddp.returncode == 0, ddp.stdout[-2000:] + ddp.stderr[-2000:]
    single = subprocess.run([sys.executable, "-m", "seqdance.cli.main", *args, "-o", str(tmp_path / "one")],
                            capture_output=True, text=True, env=env)
    assert single.returncode == 0, single.stderr
    a = pd.read_csv(tmp_path / "ddp" / "predictions.csv")
    b = pd.read_csv(tmp_path / "one" / "predictions.csv")
    assert list(a["name"]) == list(b["name"])
    np.testing.assert_allclose(a["predicted"], b["predicted"], rtol=1e-4, atol=1e-5)
    assert np.ptp(b["predicted"]) > 1e-3  # a trained model, not a constant
