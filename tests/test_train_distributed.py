"""``torchrun --nproc_per_node=2`` (gloo, CPU) trains with the same averaged gradients as one process.

The test launches this file under ``python -m torch.distributed.run``; each rank builds the trainer from the
same config, accumulates the gradients of update 1 (its half of the global batch, DDP all-reduce on the last
backward), writes them (rank 0), then trains on to the end. One in-process trainer does the same with the
whole global batch; gradients and the update-2 losses must agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqdance.train.data import micro_batch_loader
from seqdance.train.trainer import Trainer, read_log

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

from test_train_data import write_synthetic_store  # noqa: E402
from test_train_resume import tiny_config  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

def _config(store: Path, out: Path):
    # dropout 0 so both set-ups compute the same function; 4 sequences per group: 2 per rank
    return tiny_config(store, out, dropout=0.0, total_updates=3, checkpoint_interval=0,
                       **{"optim.warmup_updates": 0, "data.micro_batch_size": 1})


def first_update_gradients(trainer: Trainer) -> dict[str, torch.Tensor]:
    batches = micro_batch_loader(trainer.dataset, trainer.plan, 1, 1)
    trainer.forward_backward(1, batches)
    return {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


def _rank_main(store: str, out: str) -> None:
    trainer = Trainer(_config(Path(store), Path(out)))
    grads = first_update_gradients(trainer)
    if trainer.is_main:
        torch.save(grads, Path(out) / "grads_rank0.pt")
    trainer.optimizer_step()
    trainer.update = 1
    trainer.fit()
    if trainer.is_main:
        (Path(out) / "world.json").write_text(json.dumps({"world_size": trainer.dist.world_size,
                                                          "backend": trainer.dist.backend}))
    from seqdance.train.distributed import shutdown

    shutdown(trainer.dist)


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_process(tmp_path: Path) -> None:
    store = write_synthetic_store(tmp_path / "s.h5", per_group=5, n_test=1, max_len=30)
    ddp_out = tmp_path / "ddp"
    ddp_out.mkdir()
    # keep the caller's PYTHONPATH: the ranks must import the same seqdance as this process
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH", "")) if p)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE), str(store), str(ddp_out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((ddp_out / "world.json").read_text()) == {"world_size": 2, "backend": "gloo"}
    ddp_grads = torch.load(ddp_out / "grads_rank0.pt")

    single = Trainer(_config(store, tmp_path / "single"))
    assert single.dist.world_size == 1
    grads = first_update_gradients(single)
    assert grads.keys() == ddp_grads.keys()
    worst = max((grads[n] - ddp_grads[n]).abs().max().item() for n in grads)
    print(f"max |grad difference| torchrun x2 vs one process: {worst:.2e}")
    assert worst <= 1e-6, worst
    assert any(g.abs().max() > 1e-3 for g in grads.values())  # non-trivial gradients were compared

    single.optimizer_step()
    single.update = 1
    history = single.fit().history
    ddp_log = {r["update"]: r for r in read_log(ddp_out / "train_log.jsonl") if "loss" in r}
    for rec in history:
        assert ddp_log[rec["update"]]["loss"] == pytest.approx(rec["loss"], rel=1e-5)
        assert ddp_log[rec["update"]]["tokens"] == rec["tokens"]


if __name__ == "__main__":  # one rank under torchrun
    torch.set_num_threads(1)
    _rank_main(sys.argv[1], sys.argv[2])
