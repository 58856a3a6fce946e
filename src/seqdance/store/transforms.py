"""Raw dynamic features <-> stored training targets (docs/design.md#property-schema, #targets).

The one place where the schema's target transforms are applied: cube root of interaction frequencies,
RMSF divided by the protein's own maximum, undefined dihedral histograms (NaN rows) masked with
:data:`~seqdance.schema.MASK_VALUE`, and alignment to the ESM token sequence ``<cls> residues <eos>``
(chains joined by ``<eos><cls>``), with the mask value at every special-token row and column.

Feature dictionaries are those of :func:`seqdance.features.extract_md` / :func:`seqdance.features.extract_nma`
(:mod:`seqdance.features.results`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from seqdance import tokenizer
from seqdance.errors import InputError, NonFiniteError
from seqdance.schema import (
    MASK_VALUE,
    FeatureKind,
    Property,
    properties_of_kind,
    stored_width,
)


def token_layout(sequence: str) -> tuple[int, np.ndarray]:
    """Token count ``T`` and the token position of every residue for a ``:``-joined (multi-chain) sequence."""
    enc = tokenizer.encode(sequence)
    return int(enc.ids.shape[0]), enc.residue_index


def _as_sequence(features: Mapping[str, Any]) -> str:
    seq = features.get("sequence")
    if not isinstance(seq, str) or not seq:
        raise InputError("features have no 'sequence' string (one-letter codes, chains joined by ':')")
    return seq


def _checked(features: Mapping[str, Any], key: str, shape: tuple[int, ...], label: str) -> np.ndarray:
    if key not in features:
        raise InputError(f"{label}: feature {key!r} is missing")
    arr = np.array(features[key], dtype=np.float64)  # a copy: the caller's arrays are never modified
    if arr.shape != shape:
        raise InputError(f"{label}: feature {key!r} has shape {arr.shape}, expected {shape}")
    return arr


def _transform(prop: Property, raw: np.ndarray, label: str) -> np.ndarray:
    """Apply the schema transform of one property to its raw (residue-aligned) values."""
    key = prop.raw_key
    finite = raw[np.isfinite(raw)]
    if prop.transform == "cube_root":
        if finite.size and finite.min() < 0:
            raise InputError(f"{label}: interaction frequency {key!r} has negative values (min {finite.min():g})")
        return np.cbrt(raw)
    if prop.transform == "max_normalise":
        if finite.size != raw.size:
            raise NonFiniteError(f"{label}: {key!r} has NaN/inf values")
        peak = float(raw.max()) if raw.size else 0.0
        if not peak > 0:
            raise InputError(f"{label}: {key!r} has no positive value to normalise by (max {peak:g})")
        if raw.min() < 0:
            raise InputError(f"{label}: {key!r} has negative values (min {raw.min():g})")
        return raw / peak
    return raw


def missing_properties(features: Mapping[str, Any], kind: FeatureKind,
                       label: str = "features") -> frozenset[str] | None:
    """The schema names a feature dict lists as missing (``missing_properties``, docs/design.md#missing-properties),
    checked against the schema; ``None`` when the dict has no such key (features written before the key existed)."""
    if "missing_properties" not in features:
        return None
    raw = features["missing_properties"]
    names = [raw] if isinstance(raw, str) else [str(v) for v in np.asarray(raw, dtype=object).ravel()]
    known = {p.name for p in properties_of_kind(kind)}
    unknown = sorted(set(names) - known)
    if unknown:
        raise InputError(f"{label}: missing_properties lists {unknown}, which are not {kind} properties of the schema "
                         f"({', '.join(sorted(known))})")
    return frozenset(names)


def features_to_targets(
    features: Mapping[str, Any], kind: FeatureKind, *, name: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Stored targets ``(residue (T, 47|3), pair (T, T, 10|3))`` float32 from raw features,
    ``T = L + 2 (+2 per linker)``.

    A property the features list in ``missing_properties`` (an input that cannot give it: a Cα trace, a trajectory
    without hydrogens; docs/design.md#missing-properties) is masked for the whole protein, whatever its values.
    Otherwise NaN is allowed only where a property's histogram is undefined (a dihedral a residue does not have); those
    entries, and every special-token row/column, hold :data:`MASK_VALUE`. Any other NaN/inf is an error naming the
    protein and property. (Features without a ``missing_properties`` key, written before it existed, keep the old rule:
    a pair property NaN everywhere, H-bonds without hydrogens, is masked.)
    """
    if kind not in ("md", "nma"):
        raise InputError(f"feature kind must be 'md' or 'nma', not {kind!r}")
    label = f"protein {name!r}" if name else "features"
    missing = missing_properties(features, kind, label)
    sequence = _as_sequence(features)
    n_tokens, residue_index = token_layout(sequence)
    n = residue_index.shape[0]

    residue = np.full((n_tokens, stored_width("residue", kind)), MASK_VALUE, dtype=np.float32)
    block = np.full((n, residue.shape[1]), MASK_VALUE, dtype=np.float64)
    for prop in properties_of_kind(kind, "residue"):
        shape = (n,) if prop.width == 1 else (n, prop.width)
        if missing is not None and prop.name in missing:
            continue  # masked for this protein (block is MASK_VALUE already)
        raw = _checked(features, prop.raw_key, shape, label).reshape(n, prop.width)
        if prop.activation == "softmax":
            undefined = np.isnan(raw).any(axis=1)  # a residue without this angle has no histogram
            raw = np.where(undefined[:, None], 0.0, raw)
        else:
            undefined = np.zeros(n, dtype=bool)
        if not np.isfinite(raw).all():
            bad = int(np.flatnonzero(~np.isfinite(raw).all(axis=1))[0])
            raise NonFiniteError(f"{label}: property {prop.name!r} is NaN/inf at residue {bad + 1}")
        values = _transform(prop, raw, label)
        values[undefined] = MASK_VALUE
        block[:, prop.store_channels] = values
    residue[residue_index] = block

    pair = np.full((n_tokens, n_tokens, stored_width("pair", kind)), MASK_VALUE, dtype=np.float32)
    pair_block = np.empty((n, n, pair.shape[2]), dtype=np.float32)
    for prop in properties_of_kind(kind, "pair"):
        if missing is not None and prop.name in missing:
            pair_block[:, :, prop.store_channels.start] = MASK_VALUE
            continue
        raw = _checked(features, prop.raw_key, (n, n), label)
        if missing is None and np.isnan(raw).all():  # old features: H-bonds without hydrogens, masked
            pair_block[:, :, prop.store_channels.start] = MASK_VALUE
            continue
        if not np.isfinite(raw).all():
            i, j = np.argwhere(~np.isfinite(raw))[0]
            raise NonFiniteError(f"{label}: property {prop.name!r} is NaN/inf at residue pair ({i + 1}, {j + 1})")
        pair_block[:, :, prop.store_channels.start] = _transform(prop, raw, label)
    pair[np.ix_(residue_index, residue_index)] = pair_block
    return residue, pair


def rmsf_scale(features: Mapping[str, Any]) -> dict[str, float]:
    """The per-protein scales that max normalisation divides by (``{"rmsf": max}``), for provenance/inverse."""
    out: dict[str, float] = {}
    missing = missing_properties(features, "md") or frozenset()
    for prop in properties_of_kind("md"):
        key = prop.raw_key
        if prop.transform == "max_normalise" and key in features and prop.name not in missing:
            out[key] = float(np.max(np.asarray(features[key], dtype=np.float64)))
    return out


def targets_to_features(
    residue: np.ndarray,
    pair: np.ndarray,
    sequence: str,
    *,
    kind: FeatureKind | None = None,
    scales: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Inverse of :func:`features_to_targets`: residue-aligned raw features from stored targets (for analysis).

    Special-token rows/columns are dropped, masked dihedral rows become NaN and cube roots are cubed. A
    max-normalised property is returned raw under its raw key when ``scales`` gives its maximum (e.g.
    ``{"rmsf": 0.42}``), otherwise normalised under its own name (``rmsf_nor``).
    """
    from seqdance.schema import kind_of_stored_width

    residue = np.asarray(residue)
    pair = np.asarray(pair)
    if kind is None:
        kind = kind_of_stored_width("residue", residue.shape[-1])
    n_tokens, residue_index = token_layout(sequence.replace("<eos><cls>", tokenizer.CHAIN_SEPARATOR))
    if residue.shape != (n_tokens, stored_width("residue", kind)):
        raise InputError(f"residue targets have shape {residue.shape}; "
                         f"expected {(n_tokens, stored_width('residue', kind))}")
    if pair.shape != (n_tokens, n_tokens, stored_width("pair", kind)):
        raise InputError(f"pair targets have shape {pair.shape}; "
                         f"expected {(n_tokens, n_tokens, stored_width('pair', kind))}")
    res = residue[residue_index].astype(np.float64)
    prs = pair[np.ix_(residue_index, residue_index)].astype(np.float64)
    out: dict[str, Any] = {"sequence": sequence.replace("<eos><cls>", tokenizer.CHAIN_SEPARATOR)}
    for prop in properties_of_kind(kind, "residue"):
        values = res[:, prop.store_channels]
        if prop.activation == "softmax":
            values = np.where((values == MASK_VALUE).all(axis=1, keepdims=True), np.nan, values)
        values = values[:, 0] if prop.width == 1 else values
        key = prop.name
        if prop.transform == "max_normalise" and scales and prop.raw_key in scales:
            key = prop.raw_key
            values = values * float(scales[key])
        out[key] = values
    for prop in properties_of_kind(kind, "pair"):
        values = prs[:, :, prop.store_channels.start]
        if prop.transform == "cube_root":
            values = np.where(values == MASK_VALUE, np.nan, values**3)  # no frequency is negative: masked
        out[prop.raw_key] = values
    return out
