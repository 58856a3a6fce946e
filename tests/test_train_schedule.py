"""The learning-rate schedule follows the piecewise-linear rule of docs/design.md#optimiser-and-schedule, and the config
reads YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from seqdance.train.config import TrainConfig
from seqdance.train.schedule import WarmupLinearDecay, build_optimizer, build_scheduler

PEAK = 1e-4


def rule_lr(n: int, total: int = 200_000, warmup: int = 2000) -> float:
    """The docs/design.md#optimiser-and-schedule rule written out independently: LR of the n-th update (1-based)."""
    decay_end = int(0.9 * total)
    if n < warmup:
        return PEAK * n / warmup
    if n < decay_end:
        return PEAK - (PEAK - 0.1 * PEAK) * (n - warmup) / (decay_end - warmup)
    return 0.1 * PEAK


@pytest.mark.parametrize("n", [1, 2, 1000, 1999, 2000, 2001, 91_000, 179_999, 180_000, 180_001, 200_000])
def test_rule_at_chosen_updates(n: int) -> None:
    rule = WarmupLinearDecay(200_000, 2000, 0.9, 0.1)
    assert PEAK * rule.factor(n) == pytest.approx(rule_lr(n), rel=1e-12, abs=1e-18)


def test_landmarks() -> None:
    rule = WarmupLinearDecay(200_000)
    assert rule.factor(1) == pytest.approx(1 / 2000)
    assert rule.factor(2000) == 1.0  # peak at the end of warm-up
    assert rule.factor(91_000) == pytest.approx(0.55)  # half-way down the decay
    assert rule.factor(180_000) == pytest.approx(0.1) and rule.factor(200_000) == pytest.approx(0.1)


def test_scheduler_drives_the_optimizer_lr() -> None:
    """The LR the optimiser uses for update n (after n-1 scheduler steps) is peak × f(n)."""
    total, warmup = 50, 5
    param = torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer([param], lr=PEAK)
    sched = build_scheduler(opt, WarmupLinearDecay(total, warmup, 0.9, 0.1))
    seen = []
    for _ in range(total):
        seen.append(opt.param_groups[0]["lr"])
        param.grad = torch.ones(3)
        opt.step()
        sched.step()
    assert seen == pytest.approx([rule_lr(n, total, warmup) for n in range(1, total + 1)], rel=1e-12)
    # the scheduler state round-trips (resume)
    fresh = build_scheduler(build_optimizer([torch.nn.Parameter(torch.zeros(3))], lr=PEAK),
                            WarmupLinearDecay(total, warmup, 0.9, 0.1))
    fresh.load_state_dict(sched.state_dict())
    assert fresh.last_epoch == total


def test_schedule_rejects_inconsistent_settings() -> None:
    with pytest.raises(ValueError, match="warm-up"):
        WarmupLinearDecay(100, warmup_updates=95)
    with pytest.raises(ValueError, match="total_updates"):
        WarmupLinearDecay(0)


def test_optimizer_defaults_and_frozen_parameters() -> None:
    frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    live = torch.nn.Parameter(torch.zeros(2))
    opt = build_optimizer([frozen, live])
    group = opt.param_groups[0]
    assert group["betas"] == (0.9, 0.98) and group["eps"] == 1e-8 and group["weight_decay"] == 0.01
    assert group["lr"] == 1e-4 and len(group["params"]) == 1


def test_config_yaml_overrides_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "model_select: esmdance\nencoder: 8M\ntotal_updates: 1000\n"
        "data:\n  store: [a.h5, b.h5]\n  curriculum:\n    - {until: 0.8, max_tokens: 256}\n"
        "    - {until: 1.0, max_tokens: 1024, micro_batch_size: 2}\n"
        "optim:\n  lr: 3e-4\n  warmup_updates: 100\n"
    )
    cfg = TrainConfig.from_yaml(path, ["optim.lr=2e-4", "data.micro_batch_size=8"])
    assert cfg.optim.lr == 2e-4 and cfg.data.store == ["a.h5", "b.h5"]
    assert cfg.stage_at(800).max_tokens == 256 and cfg.stage_at(801).max_tokens == 1024
    assert cfg.micro_batch_at(800) == 8 and cfg.micro_batch_at(1000) == 2
    cfg.to_yaml(tmp_path / "back.yaml")
    assert TrainConfig.from_yaml(tmp_path / "back.yaml").to_dict() == cfg.to_dict()
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['lrr'\] in optim"):
        TrainConfig.from_yaml(path, ["optim.lrr=1"])
    with pytest.raises(ValueError, match="model_select"):
        TrainConfig.from_yaml(path, ["model_select=esm"])
    with pytest.raises(ValueError, match="total_updates = 'many'"):
        TrainConfig.from_yaml(path, ["total_updates=many"])
    with pytest.raises(ValueError, match=r"data\.store is empty"):
        TrainConfig.from_dict({})
