"""One table of scores for the variants of one wild type: dynamics changes, combined score, ESM2 baselines.

Columns (every score follows ProteinGym's convention, higher = fitter, except the ``change_*`` columns):

* ``score``: minus the combined change (geometric mean of the quantile-normalised ``change_*`` columns,
  :mod:`seqdance.scoring.combine`); the normalisation runs over the distinct mutant sequences of the call
  (a repeated mutant counts once; all synonymous variants count once, as the wild-type sequence);
* ``change_<property>``: the relative change S ≥ 0 of each requested property;
* ``esm2_masked_marginal``, ``esm2_wt_marginal``: ESM2 log-likelihood ratios, when an ESM2 model is given (not
  defined for insertions and deletions: empty for those rows);
* ``esm2_pll``: with ``esm_pll``, the ESM2 pseudo-log-likelihood of the variant minus the wild type's, for every
  row (:func:`seqdance.scoring.indels.pll_difference_scores`).

Variants of another length than the wild type (:class:`~seqdance.scoring.mutations.IndelVariant`) are scored by
:func:`seqdance.scoring.indels.score_indels` and combined with the substitutions into one ``score``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from seqdance.errors import InputError, NonFiniteError
from seqdance.schema import ESM2_MAX_RESIDUES
from seqdance.scoring.combine import combined_change
from seqdance.scoring.dynamics_score import DEFAULT_LOCAL_RADIUS, score_dynamics
from seqdance.scoring.esm_baselines import masked_marginal_scores, wt_marginal_scores
from seqdance.scoring.mutations import AnyVariant, IndelVariant

SCORE_COLUMN = "score"
MASKED_MARGINAL_COLUMN = "esm2_masked_marginal"
WT_MARGINAL_COLUMN = "esm2_wt_marginal"
PLL_COLUMN = "esm2_pll"


def combined_scores(changes: pd.DataFrame, variants: Sequence[AnyVariant]) -> np.ndarray:
    """``score`` of each variant: minus the combined change, normalised over distinct mutant sequences."""
    if len(variants) == 0:
        return np.zeros(0)
    keys = [v.key for v in variants]
    first: dict[tuple, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    unique_rows = np.fromiter(first.values(), dtype=np.int64)
    combined = combined_change(changes.to_numpy()[unique_rows])
    position = {k: j for j, k in enumerate(first)}
    return -combined[[position[k] for k in keys]]


def dynamics_changes(
    model: torch.nn.Module,
    wild_type: str,
    variants: Sequence[AnyVariant],
    **options,
) -> pd.DataFrame:
    """``change_<property>`` of every variant, substitutions through
    :func:`~seqdance.scoring.dynamics_score.score_dynamics` and indels through
    :func:`~seqdance.scoring.indels.score_indels` (same options), one row per variant in order."""
    indel_rows = [k for k, v in enumerate(variants) if isinstance(v, IndelVariant)]
    if not indel_rows:
        return score_dynamics(model, wild_type, variants, **options)
    from seqdance.scoring.indels import score_indels

    substitution_rows = [k for k, v in enumerate(variants) if not isinstance(v, IndelVariant)]
    indels = score_indels(model, wild_type, [variants[k] for k in indel_rows], **options)
    table = pd.DataFrame(np.zeros((len(variants), indels.shape[1])), columns=indels.columns)
    table.iloc[indel_rows] = indels.to_numpy()
    if substitution_rows:
        subs = score_dynamics(model, wild_type, [variants[k] for k in substitution_rows], **options)
        table.iloc[substitution_rows] = subs.to_numpy()
    return table


def score_variants(
    wild_type: str,
    variants: Sequence[AnyVariant],
    *,
    model: torch.nn.Module | None = None,
    esm_model: torch.nn.Module | None = None,
    properties: Sequence[str] | None = None,
    region: str = "reference",
    local_radius: int = DEFAULT_LOCAL_RADIUS,
    batch_size: int | None = None,
    esm_batch_size: int | None = None,
    window: int = ESM2_MAX_RESIDUES,
    progress: bool = False,
    esm_pll: bool = False,
) -> pd.DataFrame:
    """Score variants of ``wild_type`` with a dynamics model and/or an ESM2 masked LM (one row each).

    ``window``: most residues per forward pass; longer proteins are scored on a window of this size around
    each variant's sites (:mod:`seqdance.scoring.windows`). ``esm_pll``: also the ESM2 pseudo-log-likelihood
    difference (``esm2_pll``; one masked forward per position of every variant).
    """
    if model is None and esm_model is None:
        raise InputError("nothing to score with: give a dynamics model, an ESM2 model or both")
    if esm_pll and esm_model is None:
        raise InputError("the pseudo-log-likelihood difference needs an ESM2 model (--esm2)")
    table = pd.DataFrame(index=range(len(variants)))
    if model is not None:
        changes = dynamics_changes(
            model, wild_type, variants, properties=properties, region=region, local_radius=local_radius,
            batch_size=batch_size, window=window, progress=progress,
        )
        check_finite_scores(changes, variants, "the dynamics model")
        table[SCORE_COLUMN] = combined_scores(changes, variants)
        for column in changes.columns:
            table[column] = changes[column].to_numpy()
    if esm_model is not None:
        table = pd.concat([table, esm2_scores(esm_model, wild_type, variants, batch_size=esm_batch_size,
                                              window=window, progress=progress, pll=esm_pll)], axis=1)
    return table


def esm2_scores(
    esm_model: torch.nn.Module,
    wild_type: str,
    variants: Sequence[AnyVariant],
    *,
    batch_size: int | None = None,
    window: int = ESM2_MAX_RESIDUES,
    progress: bool = False,
    pll: bool = False,
) -> pd.DataFrame:
    """The ESM2 baselines of every variant: the marginals of substitutions (NaN for indels, where they are not
    defined) and, with ``pll``, the pseudo-log-likelihood difference of every variant."""
    subs = [k for k, v in enumerate(variants) if not isinstance(v, IndelVariant)]
    chosen = [variants[k] for k in subs]
    table = pd.DataFrame({MASKED_MARGINAL_COLUMN: np.full(len(variants), np.nan),
                          WT_MARGINAL_COLUMN: np.full(len(variants), np.nan)})
    if subs:
        table.loc[subs, MASKED_MARGINAL_COLUMN] = masked_marginal_scores(
            esm_model, wild_type, chosen, batch_size=batch_size, window=window, progress=progress)
        table.loc[subs, WT_MARGINAL_COLUMN] = wt_marginal_scores(esm_model, wild_type, chosen, window=window)
        check_finite_scores(table.loc[subs, [MASKED_MARGINAL_COLUMN, WT_MARGINAL_COLUMN]].reset_index(drop=True),
                            chosen, "the ESM2 model")
    if pll:
        from seqdance.scoring.indels import pll_difference_scores

        table[PLL_COLUMN] = pll_difference_scores(esm_model, wild_type, variants, window=window,
                                                  batch_size=batch_size, progress=progress)
        check_finite_scores(table[[PLL_COLUMN]], variants, "the ESM2 model")
    return table


def check_finite_scores(frame: pd.DataFrame, variants: Sequence[AnyVariant], source: str) -> None:
    """Refuse NaN or infinite scores, naming the column and the first variant (nothing is reported as done)."""
    bad = ~np.isfinite(frame.to_numpy(dtype=np.float64))
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise NonFiniteError(
            f"{source} gives a non-finite {frame.columns[col]} for variant {variants[row].mutant!r} "
            f"({int(bad.sum())} non-finite value(s) in all): its weights are broken or its precision overflows"
        )
