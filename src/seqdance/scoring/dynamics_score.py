"""Zero-shot mutation effects from predicted dynamics (docs/design.md#relative-change).

For each property the change of a variant is

    S = mean over output entries of |P_mut - P_wt| / (|P_wt| + eps),   eps = 0.01,

where P are the model's activated outputs. Which entries are averaged is the *region*:

* ``reference`` (default; the reference notebook's definition, so released models reproduce the paper):
  every token position including ``<cls>`` and ``<eos>``, every channel of the property, and for pair
  properties every (i, j) of the (L+2)×(L+2) map;
* ``residues``: residue tokens only (special-token rows and columns left out);
* ``local``: residue tokens within ``local_radius`` residues of a mutated site; for pair properties the
  pairs (i, j) of residues with i or j in that set.

Speed: all variants of one wild type have its length, so they are batched through
``DynamicsModel.forward`` without padding; the wild-type prediction is computed once per window and
reused; every batch is reduced to its per-property scalars at once (never more than one batch of L×L maps in
memory); only the requested properties are reduced; when they are all residue properties the model runs
with ``pairs=False`` (fused attention, no pair head). Synonymous variants are not run (their change is 0
exactly) and repeated variants are run once. Proteins longer than the model's 1,022-residue window are
scored on a window around the mutated sites (:mod:`seqdance.scoring.windows`); S then averages over that
window's tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from seqdance.devices import eval_mode, model_device
from seqdance.errors import InputError
from seqdance.schema import ESM2_MAX_RESIDUES, N_PAIR_CHANNELS, Property, as_channel_list, get_properties
from seqdance.scoring.mutations import Variant
from seqdance.scoring.options import DEFAULT_LOCAL_RADIUS, REGIONS
from seqdance.scoring.windows import mutation_window
from seqdance.tokenizer import TOKEN_TO_ID, encode

#: The reference's epsilon in the denominator of the relative change.
SCORE_EPSILON = 0.01
#: Default memory budget of one batch when pair outputs are computed (bytes, estimated).
PAIR_BATCH_BYTES = 1 << 30
#: Default tokens per batch for residue-only scoring.
RESIDUE_BATCH_TOKENS = 16384


def change_column(name: str) -> str:
    """Name of the output column holding the change of one property."""
    return f"change_{name}"


def _channel_index(channels: list[int], device: torch.device) -> slice | torch.Tensor:
    """A slice (a view, no copy) when the channels are contiguous, else an index tensor."""
    if channels and channels == list(range(channels[0], channels[-1] + 1)):
        return slice(channels[0], channels[-1] + 1)
    return torch.tensor(channels, dtype=torch.long, device=device)


def _property_matrix(props: Sequence[Property], level: str) -> torch.Tensor:
    """(channels, properties) 0/1 matrix summing each property's channels."""
    chosen = [p for p in props if p.level == level]
    width = sum(p.width for p in chosen)
    out = torch.zeros(width, len(chosen), dtype=torch.float64)
    row = 0
    for k, p in enumerate(chosen):
        out[row : row + p.width, k] = 1.0
        row += p.width
    return out


class ChangeReducer:
    """Reduces batches of mutant outputs to per-property changes against one wild-type prediction.

    ``wt_residue`` (T, 50) and ``wt_pair`` (T, T, 13) are the wild type's activated outputs for the same
    token layout as the mutants. Regions other than ``reference`` take per-variant weights over tokens.
    """

    def __init__(
        self,
        properties: Sequence[Property],
        wt_residue: torch.Tensor,
        wt_pair: torch.Tensor | None,
        *,
        eps: float = SCORE_EPSILON,
    ) -> None:
        self.properties = tuple(properties)
        self.residue_props = [p for p in self.properties if p.is_residue]
        self.pair_props = [p for p in self.properties if p.is_pair]
        device = wt_residue.device
        self.res_channels = _channel_index(as_channel_list(self.properties, "residue"), device)
        self.pair_channels = _channel_index(as_channel_list(self.properties, "pair"), device)
        self.res_group = _property_matrix(self.properties, "residue").to(device)
        self.pair_group = _property_matrix(self.properties, "pair").to(device)
        self.res_width = self.res_group.sum(0)
        self.pair_width = self.pair_group.sum(0)
        work = torch.float32 if wt_residue.dtype in (torch.float16, torch.bfloat16) else wt_residue.dtype
        self.dtype = work
        self.wt_res = wt_residue[..., self.res_channels].to(work)
        self.inv_res = 1.0 / (self.wt_res.abs() + eps)
        if self.pair_props:
            if wt_pair is None:
                raise InputError("pair properties requested but the wild-type prediction has no pair outputs")
            self.wt_pair = wt_pair[..., self.pair_channels].to(work)
            self.inv_pair = 1.0 / (self.wt_pair.abs() + eps)
        # Output column of each property in the order given.
        order = {p.name: k for k, p in enumerate(self.properties)}
        self.res_cols = [order[p.name] for p in self.residue_props]
        self.pair_cols = [order[p.name] for p in self.pair_props]

    def __call__(
        self,
        residue: torch.Tensor,
        pair: torch.Tensor | None,
        residue_weights: torch.Tensor | None = None,
        pair_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, n_properties) float64 changes.

        ``residue_weights`` (B, T) and ``pair_weights`` (B, T, T) in {0, 1} restrict the averaged entries;
        None averages over all of them (the reference definition).
        """
        batch = residue.shape[0]
        out = torch.zeros(batch, len(self.properties), dtype=torch.float64, device=residue.device)
        if self.residue_props:
            rel = (residue[..., self.res_channels].to(self.dtype) - self.wt_res).abs_().mul_(self.inv_res)
            if residue_weights is None:
                sums = rel.sum(dim=1, dtype=torch.float64)  # (B, C)
                count = torch.full((batch,), float(rel.shape[1]), dtype=torch.float64, device=rel.device)
            else:
                w = residue_weights.to(device=rel.device, dtype=self.dtype)
                sums = torch.einsum("btc,bt->bc", rel, w).double()
                count = w.sum(1).double()
            out[:, self.res_cols] = (sums @ self.res_group) / (count[:, None] * self.res_width)
        if self.pair_props:
            if pair is None:
                raise InputError("pair properties requested but the model returned no pair outputs")
            rel = (pair[..., self.pair_channels].to(self.dtype) - self.wt_pair).abs_().mul_(self.inv_pair)
            if pair_weights is None:
                sums = rel.sum(dim=(1, 2), dtype=torch.float64)
                cells = float(rel.shape[1] * rel.shape[2])
                count = torch.full((batch,), cells, dtype=torch.float64, device=rel.device)
            else:
                w = pair_weights.to(device=rel.device, dtype=self.dtype)
                sums = torch.einsum("bijc,bij->bc", rel, w).double()
                count = w.sum(dim=(1, 2)).double()
            out[:, self.pair_cols] = (sums @ self.pair_group) / (count[:, None] * self.pair_width)
        return out


def region_weights(
    region: str,
    n_tokens: int,
    token_sites: Sequence[Sequence[int]],
    *,
    local_radius: int = DEFAULT_LOCAL_RADIUS,
    pairs: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Residue weights (B, T) and pair weights (B, T, T) of a region, or (None, None) for ``reference``.

    ``token_sites`` are the token positions of each variant's mutated sites (residues are tokens 1..T-2).
    ``residues``: every residue token, and every pair of residue tokens. ``local``: residue tokens within
    ``local_radius`` of a site, and the pairs of residue tokens of which at least one is such a token.
    """
    if region == "reference":
        return None, None
    batch = len(token_sites)
    residue = torch.zeros(batch, n_tokens, dtype=torch.float64)
    residue[:, 1 : n_tokens - 1] = 1.0
    if region == "residues":
        selected = residue
    elif region == "local":
        offsets = torch.arange(n_tokens)
        near = torch.zeros(batch, n_tokens, dtype=torch.bool)
        for b, sites in enumerate(token_sites):
            for site in sites:
                near[b] |= (offsets - site).abs() <= local_radius
        selected = near.double() * residue
    else:
        raise InputError(f"unknown score region {region!r}; expected one of {REGIONS}")
    if not pairs:
        return selected, None
    both = residue[:, :, None] * residue[:, None, :]
    either = 1 - (1 - selected[:, :, None]) * (1 - selected[:, None, :])
    return selected, both * either


def check_region(region: str, local_radius: int) -> None:
    """Refuse an unknown score region or a negative local radius, in one line."""
    if region not in REGIONS:
        raise InputError(f"unknown score region {region!r}; expected one of {REGIONS}")
    if local_radius < 0:
        raise InputError(f"local_radius must be >= 0, got {local_radius}")


def _auto_batch_size(model: torch.nn.Module, n_tokens: int, pairs: bool) -> int:
    if not pairs:
        return max(1, RESIDUE_BATCH_TOKENS // n_tokens)
    maps = int(getattr(getattr(model, "encoder_config", None), "num_attention_maps", 240))
    per_variant = n_tokens * n_tokens * (2 * maps + 3 * N_PAIR_CHANNELS) * 4
    return max(1, min(256, PAIR_BATCH_BYTES // per_variant))


def score_dynamics(
    model: torch.nn.Module,
    wild_type: str,
    variants: Sequence[Variant],
    *,
    properties: Sequence[str] | None = None,
    region: str = "reference",
    local_radius: int = DEFAULT_LOCAL_RADIUS,
    eps: float = SCORE_EPSILON,
    batch_size: int | None = None,
    window: int = ESM2_MAX_RESIDUES,
    window_step: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Per-property changes ``change_<property>`` (≥ 0) of each variant, one row per variant in order.

    ``model`` is a :class:`seqdance.model.DynamicsModel` (any module with its ``forward`` contract).
    """
    check_region(region, local_radius)
    props = get_properties(properties)
    columns = [change_column(p.name) for p in props]
    result = np.zeros((len(variants), len(props)), dtype=np.float64)
    need_pairs = any(p.is_pair for p in props)

    # Unique non-synonymous mutant sequences, grouped by the window they are scored on.
    first_of: dict[tuple, int] = {}
    owner = np.full(len(variants), -1, dtype=np.int64)
    by_window: dict[tuple[int, int], list[int]] = {}
    for i, v in enumerate(variants):
        if v.is_synonymous:
            continue
        key = v.key
        if key in first_of:
            owner[i] = first_of[key]
            continue
        first_of[key] = i
        owner[i] = i
        span = mutation_window(v.indices, len(wild_type), size=window, step=window_step)
        by_window.setdefault(span, []).append(i)

    device = model_device(model)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(first_of), desc="score dynamics", unit="variant")
    try:
        with eval_mode(model), torch.inference_mode():
            for (start, stop), members in by_window.items():
                wt_ids = torch.from_numpy(encode(wild_type[start:stop], "wild type").ids).to(device)
                wt_out = model(wt_ids[None], None, pairs=need_pairs)
                reducer = ChangeReducer(
                    props, wt_out.residue[0], wt_out.pair[0] if need_pairs else None, eps=eps
                )
                del wt_out
                n_tokens = wt_ids.shape[0]
                size = batch_size or _auto_batch_size(model, n_tokens, need_pairs)
                for lo in range(0, len(members), size):
                    chunk = members[lo : lo + size]
                    ids = wt_ids.repeat(len(chunk), 1)
                    sites: list[list[int]] = []
                    for b, i in enumerate(chunk):
                        token_sites = []
                        for s in variants[i].substitutions:
                            if not s.is_synonymous:
                                ids[b, s.index - start + 1] = TOKEN_TO_ID[s.mt]
                                token_sites.append(s.index - start + 1)
                        sites.append(token_sites)
                    res_w, pair_w = region_weights(
                        region, n_tokens, sites, local_radius=local_radius, pairs=need_pairs
                    )
                    out = model(ids, None, pairs=need_pairs)
                    changes = reducer(out.residue, out.pair if need_pairs else None, res_w, pair_w)
                    result[chunk] = changes.cpu().numpy()
                    del out
                    if bar is not None:
                        bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    dup = (owner >= 0) & (owner != np.arange(len(variants)))
    result[dup] = result[owner[dup]]
    return pd.DataFrame(result, columns=columns)

