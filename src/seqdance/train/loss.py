"""Training loss (docs/design.md#loss): per-protein RMSE of each property, mean over proteins, weighted sum per group.

For one protein and one property the RMSE runs over the property's valid entries (target != -1), all
channels of a multi-channel property (ss, chi, phi, psi) pooled together. The batch loss of a property is the
mean of the per-protein RMSEs over the proteins that have the property (a property masked for a protein, a
missing one of docs/design.md#missing-properties, contributes no term), and a source group's loss is
``Σ weight[group, property] × loss[property]`` over the properties that group trains (``schema.group_properties``).

Everything is vectorised over proteins, tokens and pairs: squared errors of a whole kind block are reduced to
per-(protein, channel) sums in one pass and then summed into properties with a 0/1 channel→property matrix.

Masking (``mask_mode``):

* ``"entry"`` (default, docs/design.md#loss): an entry counts when its own target is not -1, so undefined dihedral
  histograms (chi of Gly/Ala) are left out while the other channels of that residue still count;
* ``"reference"``: the released training code decided validity from the first channel of the stored block
  only (residue channel 0, pair channel 0) and so trained undefined angles towards -1. Kept as a switch to
  reproduce that behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

import torch

from seqdance import schema
from seqdance.errors import InputError

MaskMode = Literal["entry", "reference"]
MASK_MODES: tuple[str, ...] = ("entry", "reference")

#: RMSEs below sqrt of this are clamped so that the gradient of the square root stays finite.
_MSE_FLOOR = 1e-12


@dataclass(frozen=True)
class GroupLayout:
    """Which channels of the model output and of the stored targets a source group trains."""

    group: str
    kind: str
    properties: tuple[schema.Property, ...]  # schema order; residue ones first
    residue_model_channels: slice  # model-layout residue channels of the kind block
    pair_model_channels: slice
    residue_assign: torch.Tensor  # (C_res_stored, P) 0/1: stored residue channel -> property
    pair_assign: torch.Tensor  # (C_pair_stored, P)

    @property
    def property_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.properties)


@cache
def group_layout(group: str) -> GroupLayout:
    """Channel bookkeeping of one source group, derived from the schema."""
    kind = schema.GROUP_KIND.get(group)
    if kind is None:
        raise InputError(f"unknown source group {group!r}; expected one of {schema.SOURCE_GROUPS}")
    props = schema.group_properties(group)
    assign = {}
    for level in ("residue", "pair"):
        width = schema.stored_width(level, kind)
        mat = torch.zeros(width, len(props), dtype=torch.float32)
        for j, prop in enumerate(props):
            if prop.level == level:
                mat[prop.store_channels, j] = 1.0
        assign[level] = mat
    return GroupLayout(
        group=group,
        kind=kind,
        properties=props,
        residue_model_channels=schema.kind_channels("residue", kind),
        pair_model_channels=schema.kind_channels("pair", kind),
        residue_assign=assign["residue"],
        pair_assign=assign["pair"],
    )


def _valid_mask(target: torch.Tensor, mask_mode: str) -> torch.Tensor:
    if mask_mode == "entry":
        return target != schema.MASK_VALUE
    if mask_mode == "reference":
        return (target[..., :1] != schema.MASK_VALUE).expand_as(target)
    raise InputError(f"unknown loss mask mode {mask_mode!r}; expected one of {MASK_MODES}")


def _masked_channel_sums(
    pred: torch.Tensor, target: torch.Tensor, mask_mode: str, reduce_dims: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-(protein, channel) sum of squared errors and count of valid entries."""
    valid = _valid_mask(target, mask_mode)
    # Mask the difference *before* squaring: padding predictions may be non-finite and must not reach grads.
    diff = torch.where(valid, pred.float() - target.float(), torch.zeros((), device=pred.device))
    return diff.square().sum(dim=reduce_dims), valid.sum(dim=reduce_dims).to(torch.float32)


def _level_sums(
    level: str,
    pred: torch.Tensor,
    target: torch.Tensor,
    channels: slice,
    assign: torch.Tensor,
    group: str,
    kind: str,
    mask_mode: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-protein, per-property squared-error sums and valid counts of one level (residue or pair)."""
    token_dims = 1 if level == "residue" else 2
    if target.shape[-1] != channels.stop - channels.start:
        raise InputError(
            f"group {group!r}: {level} targets have {target.shape[-1]} channels, expected "
            f"{channels.stop - channels.start} ({kind} block)"
        )
    if pred.shape[: 1 + token_dims] != target.shape[: 1 + token_dims]:
        raise InputError(f"{level} prediction {tuple(pred.shape)} and target "
                         f"{tuple(target.shape)} differ in batch/token size")
    sq, cnt = _masked_channel_sums(pred[..., channels], target, mask_mode, tuple(range(1, 1 + token_dims)))
    assign = assign.to(sq.device)
    return sq @ assign, cnt @ assign


def per_protein_rmse(
    residue_pred: torch.Tensor,
    pair_pred: torch.Tensor | None,
    residue_target: torch.Tensor,
    pair_target: torch.Tensor | None,
    group: str,
    *,
    mask_mode: str = "entry",
) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSE of every protein for every property the group trains.

    ``residue_pred`` (B,T,50) and ``pair_pred`` (B,T,T,13) are activated model outputs (model layout);
    ``residue_target`` (B,T,C) and ``pair_target`` (B,T,T,C') are stored targets of the group's kind (store
    layout, -1 where masked, padding included). Returns ``rmse`` (B,P) float32 and ``has_valid`` (B,P) bool
    in the order of ``group_layout(group).properties``; a protein without any valid entry of a property has
    RMSE 0 there. ``pair_pred``/``pair_target`` may be None, leaving pair properties at 0 / invalid.
    """
    layout = group_layout(group)
    sums, counts = _level_sums(
        "residue", residue_pred, residue_target, layout.residue_model_channels, layout.residue_assign,
        group, layout.kind, mask_mode,
    )
    if pair_pred is not None and pair_target is not None:
        pair_sums, pair_counts = _level_sums(
            "pair", pair_pred, pair_target, layout.pair_model_channels, layout.pair_assign,
            group, layout.kind, mask_mode,
        )
        sums, counts = sums + pair_sums, counts + pair_counts
    has_valid = counts > 0
    mse = sums / counts.clamp_min(1.0)
    rmse = torch.where(has_valid, mse.clamp_min(_MSE_FLOOR).sqrt(), torch.zeros((), device=mse.device))
    return rmse, has_valid


def weight_vector(weights: Mapping[str, float], group: str, device: torch.device | str | None = None) -> torch.Tensor:
    """Weights of a group's properties as a (P,) tensor in layout order (absent properties raise)."""
    names = group_layout(group).property_names
    missing = [n for n in names if n not in weights]
    if missing:
        raise InputError(f"loss weights of group {group!r} lack properties {missing}")
    return torch.tensor([float(weights[n]) for n in names], dtype=torch.float32, device=device)


@dataclass
class GroupLoss:
    """Loss of one source group on one (micro-)batch."""

    total: torch.Tensor  # scalar: Σ_p w_p × property_loss_p
    property_loss: torch.Tensor  # (P,) mean per-protein RMSE of each property
    rmse_sum: torch.Tensor  # (P,) Σ over proteins of the per-protein RMSE (for logging / reduction)
    valid_count: torch.Tensor  # (P,) number of proteins with at least one valid entry


def group_loss(
    rmse: torch.Tensor,
    has_valid: torch.Tensor,
    weights: torch.Tensor,
    *,
    denominator: float | torch.Tensor | None = None,
) -> GroupLoss:
    """Combine per-protein RMSEs (B,P) into the weighted group loss.

    ``denominator`` is the number of proteins each property's RMSE sum is divided by (a scalar, or (P,) one per
    property). Training passes, per property, the number of proteins of the whole (global, accumulated) group
    batch that have the property (``TrainPlan.property_counts``: not masked as missing for that protein,
    docs/design.md#missing-properties), so that the summed gradients of micro-batches and ranks equal the gradient of
    the mean over those proteins and a protein lacking the property adds no term; ``None`` divides by the proteins that
    have valid entries of each property in these rows (the evaluation convention).
    """
    rmse_sum = rmse.sum(dim=0)
    valid_count = has_valid.sum(dim=0).to(rmse.dtype)
    denom = valid_count.clamp_min(1.0) if denominator is None else denominator
    property_loss = rmse_sum / denom
    total = (property_loss * weights.to(property_loss.device)).sum()
    return GroupLoss(total, property_loss, rmse_sum, valid_count)


def batch_group_loss(
    residue_pred: torch.Tensor,
    pair_pred: torch.Tensor | None,
    residue_target: torch.Tensor,
    pair_target: torch.Tensor | None,
    group: str,
    weights: torch.Tensor | Mapping[str, float],
    *,
    mask_mode: str = "entry",
    denominator: float | torch.Tensor | None = None,
) -> GroupLoss:
    """Per-protein RMSE followed by :func:`group_loss` (the whole docs/design.md#loss loss of one group batch)."""
    rmse, has_valid = per_protein_rmse(
        residue_pred, pair_pred, residue_target, pair_target, group, mask_mode=mask_mode
    )
    if not isinstance(weights, torch.Tensor):
        weights = weight_vector(weights, group, rmse.device)
    return group_loss(rmse, has_valid, weights, denominator=denominator)


def property_names(group: str) -> Sequence[str]:
    """Names of the properties a group trains, in the order of the loss vectors."""
    return group_layout(group).property_names
