"""The dynamics heads of docs/design.md#model-architecture and the schema's output activations.

The pair head as the reference wrote it builds concat(q_j ⊙ k_i, q_j − k_i) for every pair (an L×L×2d tensor,
4 GB at L=1024) and then concat(middle, attention). Both linear maps act before any non-linearity, so here
they are computed without those tensors:

* ``pair_middle_linear`` W = [W1 | W2]:  middle(i, j) = Σ_c W1[:, c] k_i[c] q_j[c]  +  W2 q_j  −  W2 k_i  +  b,
  the first term a batched matmul of (k_i ⊙ W1 rows) against q_j, the others rank-one broadcasts;
* ``pair_pred_linear`` V = [Vm | Va]:  out(i, j) = Vm gelu(middle(i, j)) + Va attn(i, j) + c, where the
  attention term is accumulated layer by layer by the caller (see :class:`AttentionProjector`).

Rows i are computed in blocks so the (rows, A, T) intermediate stays bounded; the output is allocated once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from seqdance.errors import InputError
from seqdance.schema import (
    PAIR_PROPERTIES,
    RESIDUE_PROPERTIES,
    SOFTPLUS_BETA,
    SOFTPLUS_THRESHOLD,
    Property,
)

#: Elements of one block's (B, rows, A, T) pair intermediate when ``block_rows`` is chosen automatically.
AUTO_BLOCK_ELEMENTS = 1 << 25


def mlp_head(hidden_size: int, out_features: int, dropout: float) -> nn.Sequential:
    """Linear(d,d) → GELU → LayerNorm → Dropout → Linear(d,out); indices 0 and 4 are the Linear layers."""
    return nn.Sequential(
        nn.Linear(hidden_size, hidden_size),
        nn.GELU(),
        nn.LayerNorm(hidden_size),
        nn.Dropout(dropout),
        nn.Linear(hidden_size, out_features),
    )


# --- activations -----------------------------------------------------------------------------------------


def _activation_runs(props: tuple[Property, ...]) -> list[tuple[slice, str]]:
    """(channels, activation) runs; neighbouring element-wise activations of the same kind are merged."""
    runs: list[tuple[slice, str]] = []
    for prop in props:
        if runs and prop.activation != "softmax" and runs[-1][1] == prop.activation and runs[-1][0].stop == prop.start:
            runs[-1] = (slice(runs[-1][0].start, prop.start + prop.width), prop.activation)
        else:
            runs.append((prop.channels, prop.activation))
    return runs


_RESIDUE_RUNS = _activation_runs(RESIDUE_PROPERTIES)
_PAIR_RUNS = _activation_runs(PAIR_PROPERTIES)


def _apply(x: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "softplus":
        return F.softplus(x, beta=SOFTPLUS_BETA, threshold=SOFTPLUS_THRESHOLD)
    if activation == "sigmoid":
        return torch.sigmoid(x)
    if activation == "softmax":
        return torch.softmax(x, dim=-1)
    if activation == "signed_sigmoid":
        return torch.sigmoid(x) * 2 - 1.0
    raise InputError(f"unknown activation {activation!r}")


def _activate_level(logits: torch.Tensor, runs: list[tuple[slice, str]], inplace: bool) -> torch.Tensor:
    out = logits if inplace else torch.empty_like(logits)
    for channels, activation in runs:
        out[..., channels] = _apply(logits[..., channels], activation)
    return out


def activate(
    residue_logits: torch.Tensor | None,
    pair_logits: torch.Tensor | None,
    *,
    inplace: bool = False,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Apply the schema's activations: residue (..., 50) and pair (..., 13) logits -> property values.

    softplus(β=1, threshold=2), sigmoid, softmax over each multi-channel property, 2·sigmoid−1.
    ``inplace=True`` overwrites the logits (inference; saves one pair-sized tensor).
    """
    residue = None if residue_logits is None else _activate_level(residue_logits, _RESIDUE_RUNS, inplace)
    pair = None if pair_logits is None else _activate_level(pair_logits, _PAIR_RUNS, inplace)
    return residue, pair


# --- the pair head -----------------------------------------------------------------------------------------


class AttentionProjector:
    """Accumulates Va · attention(i, j) over layers, consuming each layer's maps as the encoder makes them.

    ``weight`` is the attention block Va (O, layers×heads) of ``pair_pred_linear``. The sum is kept as
    (B, O, T, T). ``grad_enabled`` decides whether autograd records the projection (the encoder itself may
    run under ``no_grad`` when frozen while Va still needs its gradient).
    """

    def __init__(self, weight: torch.Tensor, num_heads: int, grad_enabled: bool) -> None:
        self.weight = weight
        self.num_heads = num_heads
        self.grad_enabled = grad_enabled
        self.total: torch.Tensor | None = None

    def __call__(self, layer: int, probs: torch.Tensor) -> None:
        batch, heads, length, _ = probs.shape
        with torch.set_grad_enabled(self.grad_enabled):
            w = self.weight[:, layer * self.num_heads : (layer + 1) * self.num_heads].to(probs.dtype)
            flat = probs.reshape(batch, heads, length * length)
            if self.total is None:
                self.total = torch.matmul(w, flat)
            elif self.grad_enabled and torch.is_grad_enabled():
                self.total = self.total + torch.matmul(w, flat)
            else:
                self.total.baddbmm_(w.expand(batch, -1, -1), flat)

    def result(self, length: int) -> torch.Tensor:
        if self.total is None:
            raise RuntimeError("AttentionProjector received no attention maps")
        return self.total.view(self.total.shape[0], self.total.shape[1], length, length)


def project_attention_maps(maps: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Va · attention for stacked maps (B, A, T, T) -> (B, O, T, T)."""
    batch, channels, length, _ = maps.shape
    out = torch.matmul(weight.to(maps.dtype), maps.reshape(batch, channels, length * length))
    return out.view(batch, -1, length, length)


def auto_block_rows(batch: int, maps: int, length: int, hidden: int) -> int:
    """Row block size keeping one block's (B, rows, A, max(T, d)) intermediate near AUTO_BLOCK_ELEMENTS."""
    per_row = max(1, batch * maps * max(length, hidden))
    return int(max(1, min(length, AUTO_BLOCK_ELEMENTS // per_row)))


def _pair_block(
    q: torch.Tensor,
    k_rows: torch.Tensor,
    w_product: torch.Tensor,
    diff_q: torch.Tensor,
    diff_k_rows: torch.Tensor,
    w_out: torch.Tensor,
    inplace: bool = False,
) -> torch.Tensor:
    """Pre-bias logits (B, rows, O, T) of pairs (i in the block, any j) without the attention term."""
    batch, rows, hidden = k_rows.shape
    maps = w_product.shape[0]
    scaled = (k_rows[:, :, None, :] * w_product).reshape(batch, rows * maps, hidden)
    middle = torch.bmm(scaled, q.transpose(1, 2)).view(batch, rows, maps, -1)
    del scaled
    if inplace:
        middle.add_(diff_q[:, None, :, :]).sub_(diff_k_rows[..., None])
    else:
        middle = middle + diff_q[:, None, :, :] - diff_k_rows[..., None]
    middle = F.gelu(middle)
    return torch.matmul(w_out, middle)


def pair_logits_factorised(
    q: torch.Tensor,
    k: torch.Tensor,
    middle_linear: nn.Linear,
    pred_linear: nn.Linear,
    attention_term: torch.Tensor | None,
    *,
    block_rows: int | None = None,
    checkpoint_blocks: bool = False,
) -> torch.Tensor:
    """Pair logits (B, T, T, O) of the reference pair head, computed without the (B, T, T, 2d) tensor.

    Row i uses k_i and column j uses q_j, as in the reference (prod = q[:, None] * k[:, :, None]).
    ``attention_term`` is Va · attention as (B, O, T, T) (or None when the head has no attention input).
    ``block_rows`` bounds the rows computed at once (None: chosen from the sizes). ``checkpoint_blocks``
    (training only) recomputes each block in the backward pass instead of keeping its (rows, A, T)
    intermediates: memory B·T²·O instead of about 3·B·T²·A, for one more forward of the head.
    """
    batch, length, hidden = q.shape
    maps = middle_linear.out_features
    w_product = middle_linear.weight[:, :hidden]
    w_diff = middle_linear.weight[:, hidden:]
    w_out = pred_linear.weight[:, :maps]
    diff_q = torch.matmul(q, w_diff.t()).transpose(1, 2)  # (B, A, T): W2 q_j
    diff_k = torch.matmul(k, w_diff.t())  # (B, T, A): W2 k_i
    if middle_linear.bias is not None:
        diff_k = diff_k - middle_linear.bias
    rows = block_rows if block_rows is not None else auto_block_rows(batch, maps, length, hidden)
    if rows < 1:
        raise InputError(f"pair_block_rows must be at least 1, got {rows}")

    def add_rest(block: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        block = block.transpose(2, 3)  # (B, rows, T, O)
        if attention_term is not None:
            block = block + attention_term[:, :, start:stop].permute(0, 2, 3, 1)
        if pred_linear.bias is not None:
            block = block + pred_linear.bias
        return block

    if torch.is_grad_enabled():  # autograd-friendly: no writes into a preallocated output
        blocks = []
        for s in range(0, length, rows):
            args = (q, k[:, s : s + rows], w_product, diff_q, diff_k[:, s : s + rows], w_out)
            if checkpoint_blocks:
                block = torch.utils.checkpoint.checkpoint(_pair_block, *args, use_reentrant=False)
            else:
                block = _pair_block(*args)
            blocks.append(add_rest(block, s, s + rows))
        return torch.cat(blocks, dim=1)
    out = torch.empty(batch, length, length, w_out.shape[0], dtype=q.dtype, device=q.device)
    for start in range(0, length, rows):
        stop = min(length, start + rows)
        block = _pair_block(q, k[:, start:stop], w_product, diff_q, diff_k[:, start:stop], w_out, inplace=True)
        target = out[:, start:stop]
        target.copy_(block.transpose(2, 3))
        del block
        if attention_term is not None:
            target.add_(attention_term[:, :, start:stop].permute(0, 2, 3, 1))
        if pred_linear.bias is not None:
            target.add_(pred_linear.bias)
    return out
