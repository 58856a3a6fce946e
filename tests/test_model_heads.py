"""The factorised pair head against the straightforward (materialised) formulation, and the activations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqdance.model.heads import activate, auto_block_rows, pair_logits_factorised, project_attention_maps
from seqdance.schema import N_PAIR_CHANNELS, N_RESIDUE_CHANNELS, PAIR_PROPERTIES, RESIDUE_PROPERTIES


def _straightforward(q, k, middle: nn.Linear, pred: nn.Linear, maps: torch.Tensor) -> torch.Tensor:
    """Exactly the reference: concat(q_j*k_i, q_j-k_i) at (i, j), GELU, concat with the maps (B,T,T,A)."""
    prod = q[:, None, :, :] * k[:, :, None, :]
    diff = q[:, None, :, :] - k[:, :, None, :]
    pair_middle = F.gelu(middle(torch.cat([prod, diff], dim=-1)))
    return pred(torch.cat([pair_middle, maps.permute(0, 2, 3, 1)], dim=-1))


def _setup(batch=2, length=13, hidden=24, maps=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, length, hidden, generator=gen)
    k = torch.randn(batch, length, hidden, generator=gen)
    attn = torch.softmax(torch.randn(batch, maps, length, length, generator=gen), dim=-1)
    torch.manual_seed(seed)
    middle = nn.Linear(2 * hidden, maps)
    pred = nn.Linear(2 * maps, N_PAIR_CHANNELS)
    with torch.no_grad():
        middle.bias.normal_()
        pred.bias.normal_()
    return q, k, attn, middle, pred


@pytest.mark.parametrize("block_rows", [None, 1, 4, 13, 100])
def test_factorised_pair_head_equals_straightforward(block_rows) -> None:
    q, k, attn, middle, pred = _setup()
    with torch.no_grad():
        expected = _straightforward(q, k, middle, pred, attn)
        term = project_attention_maps(attn, pred.weight[:, middle.out_features :])
        got = pair_logits_factorised(q, k, middle, pred, term, block_rows=block_rows)
    assert got.shape == (2, 13, 13, N_PAIR_CHANNELS) and got.is_contiguous()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # the row/column convention matters: the transposed pairing differs
    assert not torch.allclose(got, expected.transpose(1, 2), atol=1e-3)


def test_factorised_pair_head_gradients_equal_straightforward() -> None:
    q, k, attn, middle, pred = _setup(length=9)
    q.requires_grad_(True)
    k.requires_grad_(True)
    weights = torch.randn(2, 9, 9, N_PAIR_CHANNELS)

    def grads(fn):
        for t in (q, k, middle.weight, middle.bias, pred.weight, pred.bias):
            t.grad = None
        (fn() * weights).sum().backward()
        return [t.grad.clone() for t in (q, k, middle.weight, middle.bias, pred.weight, pred.bias)]

    expected = grads(lambda: _straightforward(q, k, middle, pred, attn))
    term_fn = lambda: project_attention_maps(attn, pred.weight[:, middle.out_features :])  # noqa: E731
    for checkpoint_blocks in (False, True):
        got = grads(
            lambda cb=checkpoint_blocks: pair_logits_factorised(
                q, k, middle, pred, term_fn(), block_rows=4, checkpoint_blocks=cb
            )
        )
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)


def test_auto_block_rows_bounds_the_intermediate() -> None:
    rows = auto_block_rows(batch=1, maps=240, length=1024, hidden=480)
    assert 1 <= rows < 1024 and rows * 240 * 1024 <= 1 << 25
    assert auto_block_rows(batch=1, maps=8, length=10, hidden=32) == 10
    q, k, _, middle, pred = _setup()
    with pytest.raises(ValueError, match="at least 1"):
        pair_logits_factorised(q, k, middle, pred, None, block_rows=0)


def test_activate_follows_the_schema() -> None:
    gen = torch.Generator().manual_seed(0)
    res = torch.randn(2, 7, N_RESIDUE_CHANNELS, generator=gen) * 3
    pair = torch.randn(2, 7, 7, N_PAIR_CHANNELS, generator=gen) * 3
    r, p = activate(res, pair)
    for prop in RESIDUE_PROPERTIES:
        x, y = res[..., prop.channels], r[..., prop.channels]
        expected = {
            "softplus": lambda t: torch.where(t > 2, t, torch.log1p(torch.exp(t))),
            "sigmoid": torch.sigmoid,
            "softmax": lambda t: torch.exp(t) / torch.exp(t).sum(-1, keepdim=True),
        }[prop.activation](x)
        torch.testing.assert_close(y, expected, msg=prop.name)
    for prop in PAIR_PROPERTIES:
        x, y = pair[..., prop.channels], p[..., prop.channels]
        if prop.activation == "signed_sigmoid":
            torch.testing.assert_close(y, 2 / (1 + torch.exp(-x)) - 1, msg=prop.name)
        else:
            torch.testing.assert_close(y, torch.where(x > 2, x, torch.log1p(torch.exp(x))), msg=prop.name)
    r2, p2 = activate(res.clone(), pair.clone(), inplace=True)
    torch.testing.assert_close(r2, r)
    torch.testing.assert_close(p2, p)
    assert activate(None, pair)[0] is None
