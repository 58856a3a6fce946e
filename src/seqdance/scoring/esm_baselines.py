"""ESM2 zero-shot baselines: wild-type-marginal and masked-marginal log-likelihood ratios
(docs/design.md#esm2-baselines).

For a substitution wt→mt at position i the score is ``log p(mt | context) - log p(wt | context)``, with
log-probabilities from a log-softmax over the full 33-token ESM2 vocabulary (as ProteinGym and the ESM
variant-prediction scripts do). The context is

* wild-type marginal: the unmasked wild type (one forward per protein);
* masked marginal: the wild type with position i masked (one forward per mutated position, shared by
  every variant mutated there; positions are batched).

Multi-mutants sum the per-site ratios; synonymous substitutions contribute 0. Proteins longer than the
model's window are scored on the window around each variant's sites (:mod:`seqdance.scoring.windows`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from seqdance.devices import eval_mode, model_device
from seqdance.schema import ESM2_MAX_RESIDUES
from seqdance.scoring.mutations import Variant
from seqdance.scoring.windows import mutation_window
from seqdance.tokenizer import MASK_ID, TOKEN_TO_ID, encode

#: Tokens per batch of masked forwards.
ESM_BATCH_TOKENS = 16384

Span = tuple[int, int]


def _plan(wild_type: str, variants: Sequence[Variant], window: int, step: int | None) -> list[Span | None]:
    """Window of every variant (None for synonymous ones)."""
    return [
        None if v.is_synonymous else mutation_window(v.indices, len(wild_type), size=window, step=step)
        for v in variants
    ]


def _sum_ratios(
    variants: Sequence[Variant], spans: Sequence[Span | None], log_probs: dict[tuple[Span, int], np.ndarray]
) -> np.ndarray:
    """Sum over each variant's substitutions of log p(mt) - log p(wt) from per-(window, site) rows."""
    scores = np.zeros(len(variants), dtype=np.float64)
    for k, (v, span) in enumerate(zip(variants, spans)):
        if span is None:
            continue
        for s in v.substitutions:
            if not s.is_synonymous:
                row = log_probs[(span, s.index)]
                scores[k] += float(row[TOKEN_TO_ID[s.mt]] - row[TOKEN_TO_ID[s.wt]])
    return scores


def _log_softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.log_softmax(logits.double(), dim=-1).cpu().numpy()


def wt_marginal_scores(
    model: torch.nn.Module,
    wild_type: str,
    variants: Sequence[Variant],
    *,
    window: int = ESM2_MAX_RESIDUES,
    window_step: int | None = None,
) -> np.ndarray:
    """Wild-type-marginal log-likelihood ratio of each variant (higher = more like the wild type's context)."""
    spans = _plan(wild_type, variants, window, window_step)
    device = model_device(model)
    log_probs: dict[tuple[Span, int], np.ndarray] = {}
    with eval_mode(model), torch.inference_mode():
        for span in sorted({s for s in spans if s is not None}):
            start, stop = span
            ids = torch.from_numpy(encode(wild_type[start:stop], "wild type").ids).to(device)
            rows = _log_softmax(model(ids[None], None)[0])
            for index in range(start, stop):
                log_probs[(span, index)] = rows[index - start + 1]
    return _sum_ratios(variants, spans, log_probs)


def masked_marginal_scores(
    model: torch.nn.Module,
    wild_type: str,
    variants: Sequence[Variant],
    *,
    batch_size: int | None = None,
    window: int = ESM2_MAX_RESIDUES,
    window_step: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Masked-marginal log-likelihood ratio of each variant: one masked forward per mutated position."""
    spans = _plan(wild_type, variants, window, window_step)
    sites: dict[Span, set[int]] = {}
    for v, span in zip(variants, spans):
        if span is not None:
            sites.setdefault(span, set()).update(v.indices)
    device = model_device(model)
    log_probs: dict[tuple[Span, int], np.ndarray] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(s) for s in sites.values()), desc="score esm2 masked marginal", unit="site")
    try:
        with eval_mode(model), torch.inference_mode():
            for span in sorted(sites):
                start, stop = span
                wt_ids = torch.from_numpy(encode(wild_type[start:stop], "wild type").ids).to(device)
                positions = sorted(sites[span])
                size = batch_size or max(1, ESM_BATCH_TOKENS // wt_ids.shape[0])
                for lo in range(0, len(positions), size):
                    chunk = positions[lo : lo + size]
                    tokens = torch.tensor([i - start + 1 for i in chunk], device=device)
                    ids = wt_ids.repeat(len(chunk), 1)
                    rows_idx = torch.arange(len(chunk), device=device)
                    ids[rows_idx, tokens] = MASK_ID
                    logits = model(ids, None)[rows_idx, tokens]  # (b, vocab) at each masked position
                    rows = _log_softmax(logits)
                    for index, row in zip(chunk, rows):
                        log_probs[(span, index)] = row
                    if bar is not None:
                        bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return _sum_ratios(variants, spans, log_probs)
