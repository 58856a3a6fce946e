"""How a mutation changes the predicted dynamics, residue by residue and pair by pair (docs/compare.md).

For each variant of a wild type, :class:`VariantComparison` holds the wild type's and the variant's predictions,
their difference Δ = variant − wild type on the wild type's residues, the variant's alignment to the wild type
(:mod:`seqdance.scoring.alignment`) and the relative change of each property that ``seqdance score`` reports
(``change_<property>``). Δ of a wild-type residue without a counterpart (deleted) is NaN; inserted residues have
values in the variant's prediction only.

How it is computed (:class:`Comparer`): the wild type is predicted once; variants of one length that fit the
model's window are batched through the model without padding, and each batch gives at once the arrays
(residue-aligned, as ``predict`` writes them) and the scalar changes (the reducer of ``score``, on the same
outputs). A protein longer than the window (``window``, 1,022 residues) is predicted as ``predict`` does it, in
overlapping windows merged by the most-central-window rule (docs/design.md#prediction-windows), so Δ is still
``predict(variant) − predict(wild type)``; its scalar changes then follow ``score``'s own rule for long proteins
(docs/design.md#long-proteins), which costs one more forward per variant.

Python: :func:`compare` (``seqdance.compare``) returns one :class:`VariantComparison` per variant.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from seqdance.devices import eval_mode, model_device
from seqdance.errors import InputError
from seqdance.schema import (
    ESM2_MAX_RESIDUES,
    INTERACTION_NAMES,
    PROPERTY_BY_NAME,
    SS_CLASSES,
    Property,
    get_properties,
)
from seqdance.scoring.alignment import Alignment, positional_alignment
from seqdance.scoring.dynamics_score import (
    DEFAULT_LOCAL_RADIUS,
    SCORE_EPSILON,
    _auto_batch_size,
    change_column,
    check_region,
    region_weights,
)
from seqdance.scoring.indels import AlignedChangeReducer, aligned_weights, indel_window
from seqdance.scoring.mutations import (
    AnyVariant,
    IndelVariant,
    MutationError,
    Variant,
    check_wild_type,
    looks_like_sequence,
    parse_mutants,
)
from seqdance.tokenizer import encode

#: Property families: how the summaries group properties (residue and pair families).
FAMILIES: dict[str, tuple[str, ...]] = {
    "flexibility": ("rmsf_nor", "nma_res1", "nma_res2", "nma_res3"),
    "exposure": ("sasa_mean", "sasa_std"),
    "conformation": ("ss", "chi", "phi", "psi"),
    "interactions": INTERACTION_NAMES,
    "co-movement": ("corr", "nma_pair1", "nma_pair2", "nma_pair3"),
}
#: A residue counts as changed in a family when its relative change (below) exceeds this.
DEFAULT_THRESHOLD = 0.1
#: Top residues and pairs listed per property.
DEFAULT_TOP = 10
#: Names of the kinds of variant.
WILD_TYPE, SUBSTITUTION, INDEL = "wild type", "substitution", "indel"


def _as_float(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


@dataclass(eq=False)
class VariantComparison:
    """One variant against its wild type.

    ``wild_type_values`` / ``variant_values``: property name -> the prediction of each sequence in its own
    residue coordinates, as ``predict`` gives it (residue properties (L,) or (L, C), pair properties (L, L));
    ``delta``: property name -> variant − wild type on the wild type's residues ((n,), (n, C) or (n, n)), NaN where
    a wild-type residue has no counterpart; ``changes``: ``change_<property>`` as ``score`` computes it.
    """

    name: str
    mutant: str
    wild_type: str
    sequence: str
    alignment: Alignment = field(repr=False)
    wild_type_values: Mapping[str, np.ndarray] = field(repr=False)
    variant_values: Mapping[str, np.ndarray] = field(repr=False)
    delta: Mapping[str, np.ndarray] = field(repr=False)
    changes: dict[str, float] = field(default_factory=dict)
    offset: int = 1
    scores: dict[str, float] = field(default_factory=dict)  # further scalar scores (ESM2 baselines)

    @property
    def kind(self) -> str:
        if self.alignment.is_identity:
            return WILD_TYPE
        return SUBSTITUTION if self.alignment.method == "positional" else INDEL

    @property
    def description(self) -> str:
        """The edits (``A23G``, ``L10_K12del``, ``A20_K21insGSG``; empty for the wild type)."""
        return self.alignment.describe(self.offset)

    @property
    def properties(self) -> tuple[str, ...]:
        return tuple(self.delta)

    @property
    def sites(self) -> tuple[int, ...]:
        """0-based wild-type positions of the edits."""
        return self.alignment.sites()

    def at_wild_type(self, name: str) -> np.ndarray:
        """The variant's values on the wild type's residues (NaN where deleted): (n,), (n, C) or (n, n)."""
        values = _as_float(self.variant_values[name])
        index = self.alignment.wt_to_variant
        ok = index >= 0
        if PROPERTY_BY_NAME[name].is_pair:
            out = np.full((len(index), len(index)), np.nan)
            out[np.ix_(ok, ok)] = values[np.ix_(index[ok], index[ok])]
            return out
        out = np.full((len(index), *values.shape[1:]), np.nan)
        out[ok] = values[index[ok]]
        return out

    def pair_summary(self, name: str) -> np.ndarray:
        """(n,) Σ over aligned partners j of |Δ_ij| of a pair property (NaN for a deleted residue)."""
        delta = _as_float(self.delta[name])
        out = np.nansum(np.abs(delta), axis=1)
        out[self.alignment.wt_to_variant < 0] = np.nan
        return out

    def magnitude(self, name: str) -> np.ndarray:
        """(n,) how much each wild-type residue changes in one property, in its units: |Δ| of a scalar, the total
        variation ½ Σ_c |Δ_c| of a distribution (ss, chi, phi, psi), Σ_j |Δ_ij| of a pair property."""
        prop = PROPERTY_BY_NAME[name]
        if prop.is_pair:
            return self.pair_summary(name)
        delta = _as_float(self.delta[name])
        return np.abs(delta) if delta.ndim == 1 else 0.5 * np.abs(delta).sum(axis=1)

    def relative_change(self, names: Iterable[str], eps: float = SCORE_EPSILON) -> np.ndarray:
        """(n,) per wild-type residue, the mean of |Δ| / (|P_wt| + eps) over the channels of ``names`` (and the
        aligned partners of pair properties): the relative change of ``score`` read residue by residue."""
        total = np.zeros(len(self.wild_type))
        count = 0
        for name in names:
            wt = _as_float(self.wild_type_values[name])
            rel = np.abs(_as_float(self.delta[name])) / (np.abs(wt) + eps)
            if PROPERTY_BY_NAME[name].is_pair:
                finite = np.isfinite(rel)
                total += np.where(finite, rel, 0.0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
            else:
                total += rel if rel.ndim == 1 else rel.mean(axis=1)
            count += 1
        out = total / max(count, 1)
        out[self.alignment.wt_to_variant < 0] = np.nan
        return out

    def _label(self, index: int) -> str:
        return f"{self.wild_type[index]}{index + self.offset}"

    def top_residues(self, k: int = DEFAULT_TOP) -> pd.DataFrame:
        """The ``k`` wild-type residues that change most in each property (by :meth:`magnitude`)."""
        rows = []
        for name in self.properties:
            magnitude = self.magnitude(name)
            order = [i for i in np.argsort(-np.nan_to_num(magnitude, nan=-1.0), kind="stable")
                     if np.isfinite(magnitude[i])][:k]
            prop = PROPERTY_BY_NAME[name]
            for rank, i in enumerate(order, start=1):
                row = {"property": name, "rank": rank, "position": i + self.offset, "residue": self.wild_type[i],
                       "magnitude": float(magnitude[i])}
                if prop.is_residue and prop.width == 1:
                    row.update(wild_type=float(self.wild_type_values[name][i]),
                               variant=float(self.at_wild_type(name)[i]), delta=float(self.delta[name][i]))
                elif prop.is_residue:
                    labels = _channel_labels(prop)
                    row.update(wild_type=labels[int(np.argmax(self.wild_type_values[name][i]))],
                               variant=labels[int(np.nanargmax(self.at_wild_type(name)[i]))], delta=np.nan)
                else:
                    row.update(wild_type=np.nan, variant=np.nan, delta=np.nan)
                rows.append(row)
        return pd.DataFrame(rows, columns=["property", "rank", "position", "residue", "magnitude", "wild_type",
                                           "variant", "delta"])

    def top_pairs(self, k: int = DEFAULT_TOP) -> pd.DataFrame:
        """The ``k`` residue pairs i < j whose pair properties change most. The maps are read symmetrised (the mean
        of (i, j) and (j, i): the model's maps are nearly, not exactly, symmetric)."""
        rows = []
        n = len(self.wild_type)
        upper = np.triu_indices(n, 1)
        for name in (p for p in self.properties if PROPERTY_BY_NAME[p].is_pair):
            delta = _as_float(self.delta[name])
            sym = 0.5 * (delta + delta.T)
            values = np.abs(sym[upper])
            finite = np.isfinite(values)
            if not finite.any():
                continue
            take = min(k, int(finite.sum()))
            scores = np.where(finite, values, -1.0)
            best = np.argpartition(-scores, take - 1)[:take]
            best = best[np.lexsort((best, -scores[best]))]
            wt = _as_float(self.wild_type_values[name])
            mine = self.at_wild_type(name)
            for rank, flat in enumerate(best, start=1):
                i, j = int(upper[0][flat]), int(upper[1][flat])
                rows.append({"property": name, "rank": rank, "position_i": i + self.offset,
                             "residue_i": self.wild_type[i], "position_j": j + self.offset,
                             "residue_j": self.wild_type[j], "wild_type": 0.5 * (wt[i, j] + wt[j, i]),
                             "variant": 0.5 * (mine[i, j] + mine[j, i]), "delta": float(sym[i, j])})
        return pd.DataFrame(rows, columns=["property", "rank", "position_i", "residue_i", "position_j", "residue_j",
                                           "wild_type", "variant", "delta"])

    def residue_table(self) -> pd.DataFrame:
        """One row per alignment column (every wild-type position, deleted ones included, and each inserted residue
        after the wild-type position it follows): positions, residues, status, and per property the wild-type
        value, the variant's and Δ (a distribution: its most probable class and the total variation; a pair
        property: Σ_j |Δ_ij|)."""
        columns = self.alignment.columns
        wt_i, var_j = columns[:, 0], columns[:, 1]
        has_wt, has_var = wt_i >= 0, var_j >= 0
        table = {
            "column": np.arange(1, len(columns) + 1),
            "wt_position": pd.array(np.where(has_wt, wt_i + self.offset, 0), dtype="Int64"),
            "wt_residue": [self.wild_type[i] if i >= 0 else "" for i in wt_i],
            "variant_position": pd.array(np.where(has_var, var_j + 1, 0), dtype="Int64"),
            "variant_residue": [self.sequence[j] if j >= 0 else "" for j in var_j],
            "status": self.alignment.status(),
        }
        table["wt_position"][~has_wt] = pd.NA
        table["variant_position"][~has_var] = pd.NA
        safe_i, safe_j = np.where(has_wt, wt_i, 0), np.where(has_var, var_j, 0)

        def spread(values: np.ndarray, index: np.ndarray, ok: np.ndarray) -> np.ndarray:
            out = np.full(len(columns), np.nan)
            out[ok] = values[index[ok]]
            return out

        for name in self.properties:
            prop = PROPERTY_BY_NAME[name]
            if prop.is_pair:
                table[f"{name}_pair_delta"] = spread(self.pair_summary(name), safe_i, has_wt)
                continue
            wt_values = _as_float(self.wild_type_values[name])
            var_values = _as_float(self.variant_values[name])
            if prop.width == 1:
                table[f"{name}_wt"] = spread(wt_values, safe_i, has_wt)
                table[f"{name}_variant"] = spread(var_values, safe_j, has_var)
                table[f"{name}_delta"] = spread(_as_float(self.delta[name]), safe_i, has_wt)
            else:
                labels = np.asarray(_channel_labels(prop), dtype=object)
                table[f"{name}_wt"] = np.where(has_wt, labels[np.argmax(wt_values, axis=1)[safe_i]], "")
                table[f"{name}_variant"] = np.where(has_var, labels[np.argmax(var_values, axis=1)[safe_j]], "")
                table[f"{name}_delta"] = spread(self.magnitude(name), safe_i, has_wt)
        return pd.DataFrame(table)

    def family_summary(self, *, threshold: float = DEFAULT_THRESHOLD, k: int = 3) -> dict[str, object]:
        """Per property family (:data:`FAMILIES`) scored here: its ``k`` most changed residues by relative change
        (``top_<family>``: ``Q10 (0.53); ...``; residues that do not change are not listed) and how many residues
        exceed ``threshold`` (``n_changed_<family>``)."""
        out: dict[str, object] = {}
        for family, names in FAMILIES.items():
            chosen = [n for n in names if n in self.delta]
            if not chosen:
                continue
            rel = self.relative_change(chosen)
            finite = np.isfinite(rel)
            order = [i for i in np.argsort(-np.where(finite, rel, -1.0), kind="stable") if finite[i] and rel[i] > 0][:k]
            out[f"top_{family}"] = "; ".join(f"{self._label(i)} ({rel[i]:.3g})" for i in order)
            out[f"n_changed_{family}"] = int((rel[finite] > threshold).sum())
        return out


def _channel_labels(prop: Property) -> list[str]:
    if prop.name == "ss":
        return list(SS_CLASSES)
    return [f"{prop.name}{k + 1}" for k in range(prop.width)]


def split_properties(residue: np.ndarray, pair: np.ndarray | None, props: Sequence[Property]) -> dict[str, np.ndarray]:
    """Property arrays from a residue block (L, 50) and a channel-first pair block (13, L, L)."""
    out: dict[str, np.ndarray] = {}
    for prop in props:
        if prop.is_residue:
            block = residue[:, prop.channels]
            out[prop.name] = np.ascontiguousarray(block[:, 0] if prop.width == 1 else block)
        elif pair is not None:
            out[prop.name] = pair[prop.start]
    return out


def _delta_at_wild_type(alignment: Alignment, wt: Mapping[str, np.ndarray], mine: Mapping[str, np.ndarray]
                        ) -> dict[str, np.ndarray]:
    """Δ on the wild type's residues through an alignment (NaN where a wild-type residue has no counterpart)."""
    index = alignment.wt_to_variant
    ok = index >= 0
    out = {}
    for name, values in wt.items():
        if PROPERTY_BY_NAME[name].is_pair:
            delta = np.full(values.shape, np.nan, dtype=np.float32)
            delta[np.ix_(ok, ok)] = mine[name][np.ix_(index[ok], index[ok])] - values[np.ix_(ok, ok)]
        else:
            delta = np.full(values.shape, np.nan, dtype=np.float32)
            delta[ok] = mine[name][index[ok]] - values[ok]
        out[name] = delta
    return out


@dataclass
class _WildTypeOutputs:
    """The wild type's model outputs on the device (short path) and its residue-aligned arrays."""

    residue: torch.Tensor  # (T, 50)
    pair: torch.Tensor | None  # (T, T, 13)
    values: dict[str, np.ndarray]
    reducer: AlignedChangeReducer


class Comparer:
    """Compares variants with one wild type on one model (module docstring). ``plan`` cuts the variants into the
    units a run computes; ``run`` computes one unit."""

    def __init__(
        self,
        model: torch.nn.Module,
        wild_type: str,
        *,
        properties: Sequence[str] | None = None,
        region: str = "reference",
        local_radius: int = DEFAULT_LOCAL_RADIUS,
        eps: float = SCORE_EPSILON,
        window: int = ESM2_MAX_RESIDUES,
        batch_size: int | None = None,
        offset: int = 1,
        esm_model: torch.nn.Module | None = None,
        esm_pll: bool = False,
    ) -> None:
        check_region(region, local_radius)
        self.model = model
        self.wild_type = check_wild_type(wild_type)
        self.props = get_properties(properties)
        self.need_pairs = any(p.is_pair for p in self.props)
        self.region, self.local_radius, self.eps = region, local_radius, eps
        self.window, self.batch_size, self.offset = window, batch_size, offset
        self.esm_model, self.esm_pll = esm_model, esm_pll
        self.device = model_device(model)
        self._short: _WildTypeOutputs | None = None
        self._long: dict[str, np.ndarray] | None = None

    # --- planning ------------------------------------------------------------------------------------------------

    def fits(self, variant: AnyVariant) -> bool:
        """Both sequences fit the model's window (one forward each, no windows)."""
        return max(len(self.wild_type), len(variant.apply(self.wild_type))) <= self.window

    def batch_size_for(self, length: int) -> int:
        return self.batch_size or _auto_batch_size(self.model, length + 2, self.need_pairs)

    def plan(self, variants: Sequence[AnyVariant]) -> list[list[int]]:
        """Units of variant indices: variants identical to the wild type together (nothing to run), those that fit
        the window batched by length (in input order), each longer one alone."""
        same = [k for k, v in enumerate(variants) if v.is_synonymous]
        by_length: dict[int, list[int]] = {}
        alone: list[list[int]] = []
        for k, v in enumerate(variants):
            if v.is_synonymous:
                continue
            if self.fits(v):
                by_length.setdefault(len(v.apply(self.wild_type)), []).append(k)
            else:
                alone.append([k])
        units = [same] if same else []
        for length, members in by_length.items():
            size = self.batch_size_for(length)
            units += [members[lo : lo + size] for lo in range(0, len(members), size)]
        return units + alone

    # --- the wild type ---------------------------------------------------------------------------------------------

    def wild_type_values(self) -> dict[str, np.ndarray]:
        """The wild type's prediction (residue-aligned arrays of the chosen properties)."""
        if len(self.wild_type) <= self.window:
            return self._short_wild_type().values
        return self._long_wild_type()

    def _short_wild_type(self) -> _WildTypeOutputs:
        if self._short is None:
            ids = torch.from_numpy(encode(self.wild_type, "wild type").ids).to(self.device)
            with eval_mode(self.model), torch.inference_mode():
                out = self.model(ids[None], None, pairs=self.need_pairs)
            residue = out.residue[0]
            pair = out.pair[0] if self.need_pairs else None
            values = _arrays(residue, pair, self.props)
            reducer = AlignedChangeReducer(self.props, residue, pair, eps=self.eps)
            self._short = _WildTypeOutputs(residue, pair, values, reducer)
        return self._short

    def _long_wild_type(self) -> dict[str, np.ndarray]:
        if self._long is None:
            self._long = self._predict([self.wild_type])[0]
        return self._long

    def _predict(self, sequences: list[str]) -> list[dict[str, np.ndarray]]:
        from seqdance.inference.predict import predict

        results = predict(self.model, sequences, pairs=self.need_pairs, window=self.window)
        return [{p.name: r[p.name] for p in self.props} for r in results]

    # --- computing ---------------------------------------------------------------------------------------------------

    def run(self, variants: Sequence[AnyVariant], names: Sequence[str]) -> list[VariantComparison]:
        """The comparisons of one unit (variants of one plan entry) in order."""
        if not variants:
            return []
        if all(v.is_synonymous for v in variants):
            return [self._identity(v, name) for v, name in zip(variants, names)]
        if len(variants) == 1 and not self.fits(variants[0]):
            result = [self._long_one(variants[0], names[0])]
        else:
            result = self._short_batch(variants, names)
        if self.esm_model is not None:
            from seqdance.scoring.scorer import esm2_scores

            table = esm2_scores(self.esm_model, self.wild_type, variants, window=self.window, pll=self.esm_pll)
            for k, comparison in enumerate(result):
                comparison.scores.update({c: float(table[c].iloc[k]) for c in table.columns})
        return result

    def _alignment(self, variant: AnyVariant) -> Alignment:
        if isinstance(variant, IndelVariant):
            return variant.alignment
        return positional_alignment(self.wild_type, variant.apply(self.wild_type))

    def _identity(self, variant: AnyVariant, name: str) -> VariantComparison:
        values = self.wild_type_values()
        delta = {k: np.zeros(v.shape, dtype=np.float32) for k, v in values.items()}
        comparison = VariantComparison(name, variant.mutant, self.wild_type, self.wild_type,
                                       positional_alignment(self.wild_type, self.wild_type), values, values, delta,
                                       {change_column(p.name): 0.0 for p in self.props}, self.offset)
        if self.esm_model is not None:
            comparison.scores.update({"esm2_masked_marginal": 0.0, "esm2_wt_marginal": 0.0,
                                      **({"esm2_pll": 0.0} if self.esm_pll else {})})
        return comparison

    def _short_batch(self, variants: Sequence[AnyVariant], names: Sequence[str]) -> list[VariantComparison]:
        wt = self._short_wild_type()
        sequences = [v.apply(self.wild_type) for v in variants]
        if len({len(s) for s in sequences}) != 1:
            raise InputError("a unit of compare holds variants of one length")
        n_tokens = len(sequences[0]) + 2
        ids = torch.stack([torch.from_numpy(encode(s, v.mutant).ids) for s, v in zip(sequences, variants)])
        with eval_mode(self.model), torch.inference_mode():
            out = self.model(ids.to(self.device), None, pairs=self.need_pairs)
            pair_out = out.pair if self.need_pairs else None
            changes = torch.zeros(len(variants), len(self.props), dtype=torch.float64)
            positional = [k for k, v in enumerate(variants) if not isinstance(v, IndelVariant)]
            if positional:
                sites = [[s.index + 1 for s in variants[k].substitutions if not s.is_synonymous] for k in positional]
                res_w, pair_w = region_weights(self.region, n_tokens, sites, local_radius=self.local_radius,
                                               pairs=self.need_pairs)
                index = torch.as_tensor(positional, device=self.device)
                chosen_pair = pair_out.index_select(0, index) if pair_out is not None else None
                reduced = wt.reducer(out.residue.index_select(0, index), chosen_pair, res_w, pair_w)
                changes[positional] = reduced.cpu()
            for k, v in enumerate(variants):
                if isinstance(v, IndelVariant):
                    spans = indel_window(v, self.wild_type, window=self.window)
                    res_w, pair_w = aligned_weights(self.region, spans, local_radius=self.local_radius,
                                                    pairs=self.need_pairs)
                    changes[k] = wt.reducer.aligned(out.residue[k], None if pair_out is None else pair_out[k],
                                                    spans.token_pairs, res_w, pair_w).cpu()
            result = []
            for k, (v, name) in enumerate(zip(variants, names)):
                residue = out.residue[k]
                pair = None if pair_out is None else pair_out[k]
                mine = _arrays(residue, pair, self.props)
                alignment = self._alignment(v)
                if isinstance(v, IndelVariant):
                    delta = _delta_at_wild_type(alignment, wt.values, mine)
                else:
                    delta = _arrays(residue - wt.residue, None if pair is None else pair - wt.pair, self.props)
                row = changes[k].numpy()
                result.append(VariantComparison(
                    name, v.mutant, self.wild_type, sequences[k], alignment, wt.values, mine, delta,
                    {change_column(p.name): float(row[j]) for j, p in enumerate(self.props)}, self.offset))
        return result

    def _long_one(self, variant: AnyVariant, name: str) -> VariantComparison:
        from seqdance.scoring.scorer import dynamics_changes

        wt = self._long_wild_type()
        sequence = variant.apply(self.wild_type)
        mine = self._predict([sequence])[0]
        alignment = self._alignment(variant)
        if isinstance(variant, IndelVariant):
            delta = _delta_at_wild_type(alignment, wt, mine)
        else:
            delta = {k: (mine[k] - wt[k]).astype(np.float32) for k in wt}
        table = dynamics_changes(self.model, self.wild_type, [variant], properties=[p.name for p in self.props],
                                 region=self.region, local_radius=self.local_radius, batch_size=self.batch_size,
                                 window=self.window)
        changes = {c: float(table[c].iloc[0]) for c in table.columns}
        return VariantComparison(name, variant.mutant, self.wild_type, sequence, alignment, wt, mine, delta, changes,
                                 self.offset)


def _arrays(residue: torch.Tensor, pair: torch.Tensor | None, props: Sequence[Property]) -> dict[str, np.ndarray]:
    """Residue-aligned float32 arrays of one model output ``<cls> ... <eos>`` (T, 50) and (T, T, 13)."""
    res = residue[1:-1].to(torch.float32).cpu().numpy()
    pair_np = None
    if pair is not None and any(p.is_pair for p in props):
        pair_np = pair[1:-1, 1:-1].to(torch.float32).permute(2, 0, 1).contiguous().cpu().numpy()
    return split_properties(res, pair_np, props)


def variant_name(variant: AnyVariant, offset: int = 1) -> str:
    """How a variant is named in outputs: its text as given, or the description of its edits when that text is
    a whole sequence (``wild_type`` for the wild type itself)."""
    text = variant.mutant.strip()
    if text and not (looks_like_sequence(text) and len(text) > 8):
        return text
    if isinstance(variant, IndelVariant):
        return variant.description
    described = ":".join(s.label(offset) for s in variant.substitutions if not s.is_synonymous)
    return described or "wild_type"


def as_variants(wild_type: str, variants: Iterable[AnyVariant | str], *, offset: int = 1) -> list[AnyVariant]:
    """Variants from objects, mutant texts (``A23G:L45P``) or full sequences; an invalid one is one error naming
    it and why."""
    out: list[AnyVariant] = []
    for k, item in enumerate(variants):
        if isinstance(item, (Variant, IndelVariant)):
            out.append(item)
            continue
        checked = parse_mutants([item], wild_type, offset=offset, indels=True)
        if checked.invalid:
            raise MutationError(f"variant {k + 1} ({str(item)[:40]!r}): {checked.invalid[0].reason}")
        out.append(checked.variants[0])
    return out


def compare(
    model: torch.nn.Module | str | os.PathLike[str],
    wild_type: str,
    variants: Iterable[AnyVariant | str],
    *,
    properties: Sequence[str] | None = None,
    region: str = "reference",
    local_radius: int = DEFAULT_LOCAL_RADIUS,
    window: int = ESM2_MAX_RESIDUES,
    batch_size: int | None = None,
    offset: int = 1,
    progress: bool = False,
) -> list[VariantComparison]:
    """How each variant changes the predicted dynamics of ``wild_type``: one :class:`VariantComparison` per variant,
    in order (the arrays ``seqdance compare`` writes). ``variants``: mutant texts (``A23G``, ``A23G:L45P``), full
    variant sequences (any length) or parsed variants; ``model``: a loaded model or a source for
    :func:`seqdance.load_model`."""
    if isinstance(model, (str, os.PathLike)):
        from seqdance.model import load_model

        model = load_model(model)
    wild_type = check_wild_type(wild_type)
    chosen = as_variants(wild_type, variants, offset=offset)
    comparer = Comparer(model, wild_type, properties=properties, region=region, local_radius=local_radius,
                        window=window, batch_size=batch_size, offset=offset)
    names = [variant_name(v, offset) for v in chosen]
    results: list[VariantComparison | None] = [None] * len(chosen)
    for unit, comparisons in iter_units(comparer, chosen, names, progress=progress):
        for k, comparison in zip(unit, comparisons):
            results[k] = comparison
    return results  # type: ignore[return-value]


def iter_units(comparer: Comparer, variants: Sequence[AnyVariant], names: Sequence[str], *,
               units: Sequence[Sequence[int]] | None = None, progress: bool = False
               ) -> Iterator[tuple[list[int], list[VariantComparison]]]:
    """Run ``units`` (default: the comparer's plan) and yield each unit's variant indices and comparisons."""
    plan = [list(u) for u in (units if units is not None else comparer.plan(variants))]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(u) for u in plan), desc="compare", unit="variant")
    try:
        for unit in plan:
            yield unit, comparer.run([variants[k] for k in unit], [names[k] for k in unit])
            if bar is not None:
                bar.update(len(unit))
    finally:
        if bar is not None:
            bar.close()


__all__ = [
    "FAMILIES",
    "Comparer",
    "VariantComparison",
    "as_variants",
    "compare",
    "iter_units",
    "split_properties",
    "variant_name",
]
