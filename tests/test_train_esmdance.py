"""ESMDance training keeps the pretrained encoder frozen; fine-tuning starts from a saved model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _checkpoints import write_esm2_mlm_checkpoint
from test_train_data import write_synthetic_store
from test_train_resume import tiny_config

from seqdance.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_esmdance_trains_heads_only_and_fine_tunes(tmp_path: Path) -> None:
    store = write_synthetic_store(tmp_path / "s.h5", per_group=3, n_test=1, max_len=20)
    esm2 = write_esm2_mlm_checkpoint(tmp_path / "esm2_tiny", "tiny", seed=3)
    settings = {"total_updates": 2, "checkpoint_interval": 0, "optim.warmup_updates": 0}
    trainer = Trainer(tiny_config(store, tmp_path / "run", model_select="esmdance", esm2_weights=str(esm2),
                                  **settings))
    model = trainer.model
    encoder_before = {k: v.clone() for k, v in model.esm2.state_dict().items()}
    heads_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("esm2.")}
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimised == {id(p) for n, p in model.named_parameters() if not n.startswith("esm2.")}
    assert not model.esm2.training  # frozen encoder stays in eval mode (no dropout) while training

    result = trainer.fit()
    for key, value in model.esm2.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key
    changed = [k for k, v in model.state_dict().items() if k in heads_before and not torch.equal(v, heads_before[k])]
    assert changed  # the heads learned
    assert result.model_dir is not None

    # fine-tuning: a new run starts from the saved model (weights identical before its first update)
    tuned = Trainer(tiny_config(store, tmp_path / "tune", model_select="esmdance", esm2_weights=None,
                                init_from=str(result.model_dir), **settings))
    for (key, a), b in zip(model.state_dict().items(), tuned.model.state_dict().values()):
        assert torch.equal(a, b), key
