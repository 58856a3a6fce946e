"""seqdance.scoring: zero-shot mutation effects from predicted dynamics, ESM2 baselines and a DMS benchmark.

Main entry points: :func:`score_variants` (one table per wild type), :func:`score_dynamics`,
:func:`masked_marginal_scores`, :func:`wt_marginal_scores`, :func:`parse_mutants`, :func:`saturation_mutants`,
:func:`run_benchmark`, :func:`compare` (per-residue and pairwise changes of each variant, docs/compare.md),
:func:`score_indels` (insertions and deletions). See docs/scoring.md. Public names are imported on first use,
so the command line's choices (:mod:`seqdance.scoring.options`) load no torch.
"""

from __future__ import annotations

from seqdance.lazy import lazy_exports

_LAZY = {
    "combined_change": "seqdance.scoring.combine",
    "geometric_mean": "seqdance.scoring.combine",
    "quantile_normalise": "seqdance.scoring.combine",
    "REGIONS": "seqdance.scoring.options",
    "SCORE_EPSILON": "seqdance.scoring.dynamics_score",
    "score_dynamics": "seqdance.scoring.dynamics_score",
    "masked_marginal_scores": "seqdance.scoring.esm_baselines",
    "wt_marginal_scores": "seqdance.scoring.esm_baselines",
    "InvalidMutant": "seqdance.scoring.mutations",
    "MutationError": "seqdance.scoring.mutations",
    "Substitution": "seqdance.scoring.mutations",
    "Variant": "seqdance.scoring.mutations",
    "parse_mutant": "seqdance.scoring.mutations",
    "parse_mutants": "seqdance.scoring.mutations",
    "read_mutations": "seqdance.scoring.mutations",
    "saturation_mutants": "seqdance.scoring.mutations",
    "score_variants": "seqdance.scoring.scorer",
    "compare": "seqdance.scoring.compare",
    "VariantComparison": "seqdance.scoring.compare",
    "IndelVariant": "seqdance.scoring.mutations",
    "sequence_variant": "seqdance.scoring.mutations",
    "align_variant": "seqdance.scoring.alignment",
    "score_indels": "seqdance.scoring.indels",
    "pll_difference_scores": "seqdance.scoring.indels",
    "run_benchmark": "seqdance.scoring.dms",
    "discover_assays": "seqdance.scoring.dms",
}

__all__, __getattr__ = lazy_exports(__name__, _LAZY)
