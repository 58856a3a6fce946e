"""The docs/design.md#loss loss against an independent per-protein, per-property loop on hand-made tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqdance import schema
from seqdance.train.loss import batch_group_loss, group_layout, per_protein_rmse, weight_vector


def _targets(group: str, lengths: list[int], width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded stored targets with masked special tokens, masked entries and padding (all -1)."""
    kind = schema.GROUP_KIND[group]
    rng = np.random.default_rng(seed)
    c_res, c_pair = schema.stored_width("residue", kind), schema.stored_width("pair", kind)
    res = np.full((len(lengths), width, c_res), -1.0, dtype=np.float32)
    pair = np.full((len(lengths), width, width, c_pair), -1.0, dtype=np.float32)
    for b, t in enumerate(lengths):
        res[b, 1 : t - 1] = rng.random((t - 2, c_res))
        pair[b, 1 : t - 1, 1 : t - 1] = rng.random((t - 2, t - 2, c_pair))
        # sprinkle individual masked entries (e.g. undefined angle bins) over the valid block
        holes = rng.random((t - 2, c_res)) < 0.15
        res[b, 1 : t - 1][holes] = -1.0
        pholes = rng.random((t - 2, t - 2, c_pair)) < 0.1
        pair[b, 1 : t - 1, 1 : t - 1][pholes] = -1.0
    return torch.from_numpy(res), torch.from_numpy(pair)


def _independent_rmse(pred_res, pred_pair, tgt_res, tgt_pair, group) -> dict[tuple[int, str], float]:
    """Plain loops: for each protein and property, RMSE over its valid entries (channels pooled)."""
    out = {}
    for b in range(tgt_res.shape[0]):
        for prop in schema.group_properties(group):
            if prop.is_residue:
                p = pred_res[b, :, prop.channels].numpy().astype(np.float64)
                t = tgt_res[b, :, prop.store_channels].numpy().astype(np.float64)
            else:
                p = pred_pair[b, :, :, prop.channels].numpy().astype(np.float64)
                t = tgt_pair[b, :, :, prop.store_channels].numpy().astype(np.float64)
            valid = t != -1.0
            if valid.sum() == 0:
                out[(b, prop.name)] = math.nan
            else:
                out[(b, prop.name)] = math.sqrt(((p[valid] - t[valid]) ** 2).mean())
    return out


@pytest.mark.parametrize("group", ["md", "nma"])
def test_per_protein_rmse_matches_loop(group: str) -> None:
    lengths, width = [9, 6, 4], 9
    tgt_res, tgt_pair = _targets(group, lengths, width, seed=1)
    if group == "md":
        chi = schema.PROPERTY_BY_NAME["chi"].store_channels
        tgt_res[2, :, chi] = -1.0  # protein 2 has no defined chi angle at all
    gen = torch.Generator().manual_seed(0)
    pred_res = torch.rand(3, width, schema.N_RESIDUE_CHANNELS, generator=gen)
    pred_pair = torch.rand(3, width, width, schema.N_PAIR_CHANNELS, generator=gen)
    pred_res[1, 6:] = float("nan")  # padding predictions are unspecified: must not leak
    pred_pair[1, 6:, :] = float("nan")

    rmse, has_valid = per_protein_rmse(pred_res, pred_pair, tgt_res, tgt_pair, group)
    expected = _independent_rmse(pred_res, pred_pair, tgt_res, tgt_pair, group)
    names = group_layout(group).property_names
    assert rmse.shape == (3, len(names))
    for b in range(3):
        for j, name in enumerate(names):
            want = expected[(b, name)]
            if math.isnan(want):
                assert not has_valid[b, j] and rmse[b, j] == 0
            else:
                assert has_valid[b, j]
                assert rmse[b, j].item() == pytest.approx(want, abs=1e-6, rel=1e-6)
    if group == "md":
        assert not has_valid[2, names.index("chi")]


def test_group_loss_weighted_mean_over_proteins_and_gradients_finite() -> None:
    group = "md"
    lengths, width = [8, 5], 8
    tgt_res, tgt_pair = _targets(group, lengths, width, seed=3)
    gen = torch.Generator().manual_seed(1)
    pred_res = torch.rand(2, width, schema.N_RESIDUE_CHANNELS, generator=gen)
    pred_pair = torch.rand(2, width, width, schema.N_PAIR_CHANNELS, generator=gen)
    pred_res[1, 5:] = float("inf")
    pred_res.requires_grad_(True)
    pred_pair.requires_grad_(True)
    names = group_layout(group).property_names
    weights = {n: 0.5 + i for i, n in enumerate(names)}
    loss = batch_group_loss(pred_res, pred_pair, tgt_res, tgt_pair, group, weights)
    expected = _independent_rmse(pred_res.detach(), pred_pair.detach(), tgt_res, tgt_pair, group)
    want_total = sum(weights[n] * np.mean([expected[(b, n)] for b in range(2)]) for n in names)
    assert loss.total.item() == pytest.approx(want_total, rel=1e-6)
    for j, n in enumerate(names):
        assert loss.property_loss[j].item() == pytest.approx(np.mean([expected[(b, n)] for b in range(2)]), rel=1e-6)

    # a fixed denominator (the accumulated global batch) divides the RMSE sum instead
    fixed = batch_group_loss(pred_res, pred_pair, tgt_res, tgt_pair, group, weights, denominator=8.0)
    assert fixed.total.item() == pytest.approx(want_total * 2 / 8, rel=1e-6)

    loss.total.backward()
    assert torch.isfinite(pred_res.grad).all() and torch.isfinite(pred_pair.grad).all()
    assert (pred_res.grad[1, 5:] == 0).all()  # padding gets no gradient
    nma_block = schema.kind_channels("residue", "nma")
    assert (pred_res.grad[..., nma_block] == 0).all()  # the MD group does not train NMA channels


def test_reference_mask_mode_uses_first_channel_validity() -> None:
    group = "md"
    tgt_res, tgt_pair = _targets(group, [7], 7, seed=5)
    tgt_res[0, 1:6, 0] = 0.3  # channel 0 valid on all residues ...
    chi = schema.PROPERTY_BY_NAME["chi"]
    tgt_res[0, 3, chi.store_channels] = -1.0  # ... while residue 3 has an undefined chi histogram
    pred_res = torch.rand(1, 7, schema.N_RESIDUE_CHANNELS)
    pred_pair = torch.rand(1, 7, 7, schema.N_PAIR_CHANNELS)
    entry, _ = per_protein_rmse(pred_res, pred_pair, tgt_res, tgt_pair, group, mask_mode="entry")
    ref, _ = per_protein_rmse(pred_res, pred_pair, tgt_res, tgt_pair, group, mask_mode="reference")
    j = group_layout(group).property_names.index("chi")
    # reference mode: residue 3's chi bins are trained towards -1 like the released code did
    p = pred_res[0, 1:6, chi.channels].double()
    t = tgt_res[0, 1:6, chi.store_channels].double()
    assert ref[0, j].item() == pytest.approx(((p - t) ** 2).mean().sqrt().item(), rel=1e-6)
    assert entry[0, j].item() != pytest.approx(ref[0, j].item(), rel=1e-3)


def test_shape_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="residue targets have 3 channels"):
        per_protein_rmse(torch.zeros(1, 4, 50), None, torch.zeros(1, 4, 3), None, "md")
    with pytest.raises(ValueError, match="lack properties"):
        weight_vector({"vdw": 1.0}, "md")
