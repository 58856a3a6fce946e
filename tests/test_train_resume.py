"""A tiny run interrupted and resumed gives exactly the losses of an uninterrupted run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train_data import write_synthetic_store

from seqdance.train import checkpoint as ckpt
from seqdance.train.config import TrainConfig
from seqdance.train.trainer import Trainer, read_log, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(store: Path, out: Path, **overrides: object) -> TrainConfig:
    data = {
        "model_select": "seqdance",
        "encoder": "tiny",
        "dropout": 0.1,  # dropout on: the RNG streams must be restored too
        "total_updates": 6,
        "seed": 11,
        "output_dir": str(out),
        "checkpoint_interval": 2,
        "keep_checkpoints": 2,
        "progress": False,
        "eval_at_end": False,
        "data": {
            "store": str(store),
            "sequences_per_group": 4,
            "micro_batch_size": 2,
            "num_workers": 0,
            "curriculum": [{"until": 0.5, "max_tokens": 16}, {"until": 1.0, "max_tokens": 24}],
        },
        "optim": {"lr": 2e-3, "warmup_updates": 2},
    }
    for key, value in overrides.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]  # type: ignore[index]
        node[parts[-1]] = value  # type: ignore[index]
    return TrainConfig.from_dict(data)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_store(tmp_path_factory.mktemp("resume") / "s.h5", per_group=5, n_test=1, max_len=30)


def _losses(history: list[dict]) -> dict[int, tuple[float, ...]]:
    return {h["update"]: tuple(v for k, v in sorted(h.items()) if k.startswith(("loss", "rmse/"))) for h in history}


def test_resume_continues_exactly(store: Path, tmp_path: Path) -> None:
    full = Trainer(tiny_config(store, tmp_path / "full"))
    full_history = full.fit().history
    assert [h["update"] for h in full_history] == [1, 2, 3, 4, 5, 6]
    assert full_history[-1]["loss"] < full_history[0]["loss"]  # it learns something at all

    first = Trainer(tiny_config(store, tmp_path / "split"))
    part = first.fit(stop_after=3)
    assert part.last_update == 3 and not part.stopped_early
    saved = [u for u, _ in ckpt.list_checkpoints(tmp_path / "split")]
    assert saved == [2, 3]  # keep_checkpoints=2 pruned update 1's? (interval 2: 2, then the stop at 3)
    del first

    # the resumed run loads data in worker processes: the data order must not depend on that
    second = Trainer(tiny_config(store, tmp_path / "split", **{"data.num_workers": 1}))
    assert second.resume()
    assert second.update == 3
    rest = second.fit().history
    assert [h["update"] for h in rest] == [4, 5, 6]

    want, got = _losses(full_history), _losses(rest)
    for update in (4, 5, 6):
        diff = max(abs(a - b) for a, b in zip(got[update], want[update]))
        print(f"update {update}: max |loss difference| resumed vs uninterrupted: {diff:.2e}")
        assert diff <= 1e-6, (update, diff)
    for (name, a), b in zip(full.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), name

    # the log of the split run holds every update once, like the uninterrupted one
    log = [r for r in read_log(tmp_path / "split" / "train_log.jsonl") if "loss" in r]
    assert [r["update"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "split" / "model" / "model.safetensors").is_file()


def test_resume_rejects_another_model(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    Trainer(tiny_config(store, out, total_updates=2, checkpoint_interval=1, **{"optim.warmup_updates": 0})).fit()
    other = Trainer(tiny_config(store, out, total_updates=2, model_select="esmdance", esm2_weights=None,
                                **{"optim.warmup_updates": 0}))
    with pytest.raises(ValueError, match="model_select"):
        other.resume()
    with pytest.raises(ValueError, match="already holds a training run"):  # no silent overwrite
        train(tiny_config(store, out, total_updates=2, **{"optim.warmup_updates": 0}))
    fresh = Trainer(tiny_config(store, tmp_path / "empty", total_updates=2, **{"optim.warmup_updates": 0}))
    assert not fresh.resume()


def test_bf16_autocast_on_cpu_close_to_fp32(store: Path, tmp_path: Path) -> None:
    settings = {"total_updates": 1, "checkpoint_interval": 0, "dropout": 0.0, "optim.warmup_updates": 0}
    fp32 = Trainer(tiny_config(store, tmp_path / "fp32", precision="fp32", **settings)).fit().history[0]
    bf16 = Trainer(tiny_config(store, tmp_path / "bf16", precision="bf16", **settings))
    assert bf16.autocast_dtype is torch.bfloat16
    rec = bf16.fit().history[0]
    assert rec["loss"] == pytest.approx(fp32["loss"], rel=0.02)  # bf16 rounding only
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        Trainer(tiny_config(store, tmp_path / "fp16", precision="fp16", **settings))
