"""One table of scores for the variants of one wild type: dynamics changes, combined score, ESM2 baselines.

Columns (every score follows ProteinGym's convention, higher = fitter, except the ``change_*`` columns):

* ``score``: minus the combined change (geometric mean of the quantile-normalised ``change_*`` columns,
  :mod:`seqdance.scoring.combine`); the normalisation runs over the distinct mutant sequences of the call
  (a repeated mutant counts once; all synonymous variants count once, as the wild-type sequence);
* ``change_<property>``: the relative change S ≥ 0 of each requested property;
* ``esm2_masked_marginal``, ``esm2_wt_marginal``: ESM2 log-likelihood ratios, when an ESM2 model is given.
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
from seqdance.scoring.mutations import Variant

SCORE_COLUMN = "score"
MASKED_MARGINAL_COLUMN = "esm2_masked_marginal"
WT_MARGINAL_COLUMN = "esm2_wt_marginal"


def combined_scores(changes: pd.DataFrame, variants: Sequence[Variant]) -> np.ndarray:
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


def score_variants(
    wild_type: str,
    variants: Sequence[Variant],
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
) -> pd.DataFrame:
    """Score variants of ``wild_type`` with a dynamics model and/or an ESM2 masked LM (one row each).

    ``window``: most residues per forward pass; longer proteins are scored on a window of this size around
    each variant's sites (:mod:`seqdance.scoring.windows`).
    """
    if model is None and esm_model is None:
        raise InputError("nothing to score with: give a dynamics model, an ESM2 model or both")
    table = pd.DataFrame(index=range(len(variants)))
    if model is not None:
        changes = score_dynamics(
            model, wild_type, variants, properties=properties, region=region, local_radius=local_radius,
            batch_size=batch_size, window=window, progress=progress,
        )
        check_finite_scores(changes, variants, "the dynamics model")
        table[SCORE_COLUMN] = combined_scores(changes, variants)
        for column in changes.columns:
            table[column] = changes[column].to_numpy()
    if esm_model is not None:
        table[MASKED_MARGINAL_COLUMN] = masked_marginal_scores(
            esm_model, wild_type, variants, batch_size=esm_batch_size, window=window, progress=progress
        )
        table[WT_MARGINAL_COLUMN] = wt_marginal_scores(esm_model, wild_type, variants, window=window)
        check_finite_scores(table[[MASKED_MARGINAL_COLUMN, WT_MARGINAL_COLUMN]], variants, "the ESM2 model")
    return table


def check_finite_scores(frame: pd.DataFrame, variants: Sequence[Variant], source: str) -> None:
    """Refuse NaN or infinite scores, naming the column and the first variant (nothing is reported as done)."""
    bad = ~np.isfinite(frame.to_numpy(dtype=np.float64))
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise NonFiniteError(
            f"{source} gives a non-finite {frame.columns[col]} for variant {variants[row].mutant!r} "
            f"({int(bad.sum())} non-finite value(s) in all): its weights are broken or its precision overflows"
        )
