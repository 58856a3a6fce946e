"""seqdance.scoring: zero-shot mutation effects from predicted dynamics, ESM2 baselines and a DMS benchmark.

Main entry points: :func:`score_variants` (one table per wild type), :func:`score_dynamics`,
:func:`masked_marginal_scores`, :func:`wt_marginal_scores`, :func:`parse_mutants`, :func:`saturation_mutants`,
:func:`run_benchmark`. See docs/scoring.md.
"""

from __future__ import annotations

from seqdance.scoring.combine import combined_change, geometric_mean, quantile_normalise
from seqdance.scoring.dynamics_score import REGIONS, SCORE_EPSILON, score_dynamics
from seqdance.scoring.esm_baselines import masked_marginal_scores, wt_marginal_scores
from seqdance.scoring.mutations import (
    InvalidMutant,
    MutationError,
    Substitution,
    Variant,
    parse_mutant,
    parse_mutants,
    read_mutations,
    saturation_mutants,
)
from seqdance.scoring.scorer import score_variants


def __getattr__(name: str):  # the DMS harness and metrics load on demand
    if name in ("run_benchmark", "discover_assays"):
        from seqdance.scoring import dms

        return getattr(dms, name)
    raise AttributeError(f"module 'seqdance.scoring' has no attribute {name!r}")


__all__ = [
    "REGIONS",
    "SCORE_EPSILON",
    "InvalidMutant",
    "MutationError",
    "Substitution",
    "Variant",
    "combined_change",
    "discover_assays",
    "geometric_mean",
    "masked_marginal_scores",
    "parse_mutant",
    "parse_mutants",
    "quantile_normalise",
    "read_mutations",
    "run_benchmark",
    "saturation_mutants",
    "score_dynamics",
    "score_variants",
    "wt_marginal_scores",
]
