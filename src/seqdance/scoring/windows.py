"""Which part of a long wild type a variant is scored on.

ESM2-style encoders see at most 1,022 residues. A protein longer than that is scored on a window of
``size`` residues that contains every mutated site, placed so the sites sit as close to its centre as
possible. Window starts are snapped to a grid of ``step`` residues (default ``size // 16``, 63 for 1,022;
the last possible start is always allowed) so that the many variants of a saturation scan share few windows
and hence few wild-type predictions; the centre of the mutated sites is then at most ``step / 2`` residues
from the window centre. Without snapping (``step=1``) the window is centred exactly, as ProteinGym does
for ESM.
"""

from __future__ import annotations

from collections.abc import Sequence

from seqdance.errors import InputError
from seqdance.schema import ESM2_MAX_RESIDUES
from seqdance.scoring.mutations import AnyVariant, InvalidMutant, MutantSet

#: Window starts lie on a grid of ``size // WINDOW_GRID_DIVISOR`` residues.
WINDOW_GRID_DIVISOR = 16


def default_step(size: int) -> int:
    """Grid of window starts for a window of ``size`` residues."""
    return max(1, size // WINDOW_GRID_DIVISOR)


def mutation_window(
    indices: Sequence[int], length: int, *, size: int = ESM2_MAX_RESIDUES, step: int | None = None
) -> tuple[int, int]:
    """``(start, stop)`` residue range (0-based, stop exclusive) to score a variant mutated at ``indices``.

    The whole sequence when it fits. Raises ValueError when the mutated sites span more than ``size``.
    """
    step = default_step(size) if step is None else step
    if size < 1 or step < 1:
        raise InputError(f"window size and step must be positive, got size={size}, step={step}")
    if length <= size:
        return 0, length
    if not indices:
        indices = (length // 2,)
    lo, hi = min(indices), max(indices)
    if hi - lo + 1 > size:
        raise InputError(
            f"the mutated sites span {hi - lo + 1} residues (positions {lo + 1}..{hi + 1}), more than the "
            f"{size}-residue window the model can see"
        )
    last_start = length - size
    centre = (lo + hi) / 2
    ideal = centre - (size - 1) / 2
    candidates = {min(last_start, step * k) for k in (int(ideal // step), int(ideal // step) + 1)}
    candidates |= {0, last_start}
    feasible = [s for s in candidates if 0 <= s <= lo and hi < s + size]
    if not feasible:  # the grid has no window holding every site: centre exactly
        start = round(min(max(ideal, 0.0), float(last_start)))
        start = min(max(start, hi - size + 1), lo)
        return start, start + size
    start = min(feasible, key=lambda s: (abs(s - ideal), s))
    return start, start + size


def variant_window(
    variant: AnyVariant, length: int, *, size: int = ESM2_MAX_RESIDUES, step: int | None = None
) -> tuple[int, int]:
    """The wild-type residue range a variant is scored on (:func:`mutation_window` of its sites). A variant that
    inserts k residues is scored on a wild-type window of ``size - k`` residues, so that its own window, the same
    residues with the insertions, still fits ``size`` (docs/design.md#indel-change)."""
    inserted = variant.n_inserted
    if inserted >= size:
        raise InputError(f"the variant inserts {inserted} residues, as many as the {size}-residue window the model "
                         "can see")
    step = default_step(size) if step is None else step
    return mutation_window(variant.indices, length, size=size - inserted, step=step)


def drop_unscorable(checked: MutantSet, length: int, *, size: int = ESM2_MAX_RESIDUES) -> MutantSet:
    """Move variants whose sites span more than ``size`` residues to the invalid list (with the reason)."""
    if length + max((v.n_inserted for v in checked.variants), default=0) <= size:
        return checked
    variants, rows, invalid = [], [], list(checked.invalid)
    for v, row in zip(checked.variants, checked.rows):
        try:
            variant_window(v, length, size=size)
        except ValueError as exc:
            invalid.append(InvalidMutant(row, v.mutant, str(exc)))
            continue
        variants.append(v)
        rows.append(row)
    invalid.sort(key=lambda item: item.row)
    return MutantSet(variants, rows, invalid)
