"""Scores of variants of another length than the wild type (insertions, deletions; docs/design.md#indel-change).

The relative change of a property is the one of substitutions (docs/design.md#relative-change), averaged over the
entries the two predictions share through the variant's alignment to its wild type
(:mod:`seqdance.scoring.alignment`): the aligned tokens (``<cls>`` to ``<cls>``, ``<eos>`` to ``<eos>`` and every
aligned residue pair) and, for pair properties, every pair of aligned tokens. Deleted and inserted residues have
no counterpart and are left out. For a variant of the wild type's length every token is aligned and the formula
is exactly the substitutions' one (a substitution given as a full sequence is scored as a substitution anyway).

The public functions, for ``score``, ``benchmark-dms`` and ``compare``:

* :func:`score_indels` — ``change_<property>`` of each :class:`~seqdance.scoring.mutations.IndelVariant`, the
  same columns as :func:`seqdance.scoring.dynamics_score.score_dynamics` gives for substitutions;
* :func:`indel_window` — the wild-type and variant residue ranges a variant is scored on, and its aligned tokens;
* :func:`pll_difference_scores` — the optional ESM2 baseline of any variant: its pseudo-log-likelihood minus the
  wild type's (one masked forward per position of each sequence; off unless asked for, for its cost).

Variants of one wild-type window and one length are batched through the model without padding; the wild type is
predicted once per window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from seqdance.devices import eval_mode, model_device
from seqdance.errors import InputError
from seqdance.schema import ESM2_MAX_RESIDUES, get_properties
from seqdance.scoring.dynamics_score import (
    DEFAULT_LOCAL_RADIUS,
    SCORE_EPSILON,
    ChangeReducer,
    _auto_batch_size,
    change_column,
    check_region,
)
from seqdance.scoring.mutations import AnyVariant, IndelVariant
from seqdance.scoring.options import REGIONS
from seqdance.scoring.windows import variant_window
from seqdance.tokenizer import MASK_ID, encode

#: Tokens per batch of masked forwards for the pseudo-log-likelihood.
PLL_BATCH_TOKENS = 16384


@dataclass(frozen=True)
class IndelWindow:
    """What one variant is scored on: wild-type residues ``wt_span`` and variant residues ``variant_span`` (0-based,
    stop exclusive), the aligned token positions of the two model inputs (``token_pairs`` (K, 2): wild-type token,
    variant token; ``<cls>`` first and ``<eos>`` last) and the wild-type tokens of the edit sites."""

    wt_span: tuple[int, int]
    variant_span: tuple[int, int]
    token_pairs: np.ndarray
    site_tokens: tuple[int, ...]


def indel_window(variant: IndelVariant, wild_type: str, *, window: int = ESM2_MAX_RESIDUES,
                 step: int | None = None) -> IndelWindow:
    """The windows of a variant (the whole sequences when both fit ``window``): the wild-type window holds every
    edit site (:func:`seqdance.scoring.windows.variant_window`), the variant window its aligned residues and the
    insertions between them."""
    n = len(wild_type)
    start, stop = variant_window(variant, n, size=window, step=step)
    columns = variant.alignment.columns
    inside = np.flatnonzero((columns[:, 0] >= start) & (columns[:, 0] < stop))
    first = 0 if start == 0 else int(inside[0])
    last = len(columns) - 1 if stop == n else int(inside[-1])
    chosen = columns[first : last + 1]
    in_variant = chosen[chosen[:, 1] >= 0, 1]
    v_start, v_stop = int(in_variant.min()), int(in_variant.max()) + 1
    both = chosen[(chosen[:, 0] >= 0) & (chosen[:, 1] >= 0)]
    ends = np.array([[0, 0], [stop - start + 1, v_stop - v_start + 1]], dtype=np.int64)
    inner = np.stack([both[:, 0] - start + 1, both[:, 1] - v_start + 1], axis=1)
    pairs = np.concatenate([ends[:1], inner, ends[1:]]).astype(np.int64)
    sites = tuple(s - start + 1 for s in variant.indices if start <= s < stop)
    return IndelWindow((start, stop), (v_start, v_stop), pairs, sites)


def aligned_weights(region: str, window: IndelWindow, *, local_radius: int = DEFAULT_LOCAL_RADIUS,
                    pairs: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Residue weights (K,) and pair weights (K, K) over the aligned tokens for a region (None, None for
    ``reference``: every aligned token and pair). ``residues``: the aligned residues; ``local``: those whose
    wild-type token lies within ``local_radius`` of an edit site, and the pairs of aligned residues of which at
    least one is such a residue."""
    if region == "reference":
        return None, None
    tokens = torch.as_tensor(window.token_pairs[:, 0])
    residue = torch.ones(len(tokens), dtype=torch.float64)
    residue[0] = residue[-1] = 0.0
    if region == "residues":
        selected = residue
    elif region == "local":
        near = torch.zeros(len(tokens), dtype=torch.bool)
        for site in window.site_tokens:
            near |= (tokens - site).abs() <= local_radius
        selected = near.double() * residue
    else:
        raise InputError(f"unknown score region {region!r}; expected one of {REGIONS}")
    if not pairs:
        return selected, None
    both = residue[:, None] * residue[None, :]
    either = 1 - (1 - selected[:, None]) * (1 - selected[None, :])
    return selected, both * either


class AlignedChangeReducer(ChangeReducer):
    """The relative change of each property between a variant's outputs and the wild type's, over the aligned
    tokens of the two inputs (docs/design.md#indel-change)."""

    def aligned(
        self,
        residue: torch.Tensor,
        pair: torch.Tensor | None,
        token_pairs: np.ndarray,
        residue_weights: torch.Tensor | None = None,
        pair_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(n_properties,) float64 changes of ONE variant: ``residue`` (T_v, 50), ``pair`` (T_v, T_v, 13)."""
        device = residue.device
        wt_idx = torch.as_tensor(token_pairs[:, 0], device=device)
        var_idx = torch.as_tensor(token_pairs[:, 1], device=device)
        out = torch.zeros(len(self.properties), dtype=torch.float64, device=device)
        if self.residue_props:
            mine = residue[..., self.res_channels].to(self.dtype).index_select(0, var_idx)
            rel = (mine - self.wt_res.index_select(0, wt_idx)).abs_().mul_(self.inv_res.index_select(0, wt_idx))
            if residue_weights is None:
                sums, count = rel.sum(dim=0, dtype=torch.float64), float(rel.shape[0])
            else:
                w = residue_weights.to(device=device, dtype=self.dtype)
                sums, count = (rel * w[:, None]).sum(dim=0, dtype=torch.float64), float(w.sum())
            out[self.res_cols] = (sums @ self.res_group) / (count * self.res_width)
        if self.pair_props:
            if pair is None:
                raise InputError("pair properties requested but the model returned no pair outputs")
            mine = pair[..., self.pair_channels].to(self.dtype).index_select(0, var_idx).index_select(1, var_idx)
            wt = self.wt_pair.index_select(0, wt_idx).index_select(1, wt_idx)
            inv = self.inv_pair.index_select(0, wt_idx).index_select(1, wt_idx)
            rel = (mine - wt).abs_().mul_(inv)
            if pair_weights is None:
                sums, count = rel.sum(dim=(0, 1), dtype=torch.float64), float(rel.shape[0] * rel.shape[1])
            else:
                w = pair_weights.to(device=device, dtype=self.dtype)
                sums, count = (rel * w[:, :, None]).sum(dim=(0, 1), dtype=torch.float64), float(w.sum())
            out[self.pair_cols] = (sums @ self.pair_group) / (count * self.pair_width)
        return out


def score_indels(
    model: torch.nn.Module,
    wild_type: str,
    variants: Sequence[IndelVariant],
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
    """``change_<property>`` (≥ 0) of each indel variant, one row per variant in order (the columns of
    :func:`~seqdance.scoring.dynamics_score.score_dynamics`). Repeated sequences are run once."""
    check_region(region, local_radius)
    props = get_properties(properties)
    need_pairs = any(p.is_pair for p in props)
    result = np.zeros((len(variants), len(props)), dtype=np.float64)
    first_of: dict[str, int] = {}
    owner = np.arange(len(variants))
    windows: dict[int, IndelWindow] = {}
    groups: dict[tuple[int, int], dict[int, list[int]]] = {}
    for i, v in enumerate(variants):
        if not isinstance(v, IndelVariant):
            raise InputError(f"variant {v.mutant!r} has the wild type's length: score it with score_dynamics")
        if v.sequence in first_of:
            owner[i] = first_of[v.sequence]
            continue
        first_of[v.sequence] = i
        windows[i] = indel_window(v, wild_type, window=window, step=window_step)
        span = windows[i].variant_span
        groups.setdefault(windows[i].wt_span, {}).setdefault(span[1] - span[0], []).append(i)
    device = model_device(model)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(first_of), desc="score indels", unit="variant")
    try:
        with eval_mode(model), torch.inference_mode():
            for (start, stop), by_length in groups.items():
                wt_ids = torch.from_numpy(encode(wild_type[start:stop], "wild type").ids).to(device)
                wt_out = model(wt_ids[None], None, pairs=need_pairs)
                reducer = AlignedChangeReducer(props, wt_out.residue[0], wt_out.pair[0] if need_pairs else None,
                                               eps=eps)
                del wt_out
                for length, members in by_length.items():
                    size = batch_size or _auto_batch_size(model, length + 2, need_pairs)
                    for lo in range(0, len(members), size):
                        chunk = members[lo : lo + size]
                        ids = torch.stack([
                            torch.from_numpy(encode(variants[i].sequence[slice(*windows[i].variant_span)],
                                                    variants[i].mutant).ids) for i in chunk]).to(device)
                        out = model(ids, None, pairs=need_pairs)
                        for b, i in enumerate(chunk):
                            res_w, pair_w = aligned_weights(region, windows[i], local_radius=local_radius,
                                                            pairs=need_pairs)
                            changes = reducer.aligned(out.residue[b], out.pair[b] if need_pairs else None,
                                                      windows[i].token_pairs, res_w, pair_w)
                            result[i] = changes.cpu().numpy()
                        del out
                        if bar is not None:
                            bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    result = result[owner]
    return pd.DataFrame(result, columns=[change_column(p.name) for p in props])


def _pseudo_log_likelihood(model: torch.nn.Module, ids: torch.Tensor, batch_size: int | None) -> float:
    """Σ over the residue tokens of log p(residue | the sequence with that token masked), ESM2 masked LM."""
    n_tokens = int(ids.shape[0])
    positions = list(range(1, n_tokens - 1))
    size = batch_size or max(1, PLL_BATCH_TOKENS // n_tokens)
    total = 0.0
    for lo in range(0, len(positions), size):
        chunk = torch.tensor(positions[lo : lo + size], device=ids.device)
        batch = ids.repeat(len(chunk), 1)
        rows = torch.arange(len(chunk), device=ids.device)
        batch[rows, chunk] = MASK_ID
        logits = model(batch, None)[rows, chunk]
        log_probs = torch.log_softmax(logits.double(), dim=-1)
        total += float(log_probs[rows, ids[chunk]].sum())
    return total


def pll_difference_scores(
    esm_model: torch.nn.Module,
    wild_type: str,
    variants: Sequence[AnyVariant],
    *,
    window: int = ESM2_MAX_RESIDUES,
    batch_size: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """ESM2 pseudo-log-likelihood of each variant minus the wild type's (higher = fitter), on the windows the
    dynamics scores use; a synonymous variant scores 0. One masked forward per position of every distinct
    sequence (docs/design.md#indel-change)."""
    from seqdance.scoring.windows import mutation_window

    device = model_device(esm_model)
    scores = np.zeros(len(variants), dtype=np.float64)
    cache: dict[str, float] = {}

    def pll(text: str, name: str) -> float:
        if text not in cache:
            ids = torch.from_numpy(encode(text, name).ids).to(device)
            cache[text] = _pseudo_log_likelihood(esm_model, ids, batch_size)
        return cache[text]

    iterator = enumerate(variants)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=len(variants), desc="score esm2 pseudo-log-likelihood", unit="variant")
    with eval_mode(esm_model), torch.inference_mode():
        for k, v in iterator:
            if v.is_synonymous:
                continue
            if isinstance(v, IndelVariant):
                spans = indel_window(v, wild_type, window=window)
                wt_text = wild_type[slice(*spans.wt_span)]
                mine = v.sequence[slice(*spans.variant_span)]
            else:
                start, stop = mutation_window(v.indices, len(wild_type), size=window)
                wt_text, mine = wild_type[start:stop], v.apply(wild_type)[start:stop]
            scores[k] = pll(mine, v.mutant) - pll(wt_text, "wild type")
    return scores
