"""Group model inputs into batches by length under a token budget.

Inputs are sorted by length (longest first, so an out-of-memory error shows up at once) and cut greedily into
batches whose padded size stays within the budget. Padding is to the longest member, so sorting keeps it small.
"""

from __future__ import annotations

from collections.abc import Sequence

from seqdance.errors import InputError

#: Pair cells allowed per batch for each token of the token budget (4,096 tokens -> one 1,024² map).
PAIR_CELLS_PER_TOKEN = 256


def plan_batches(lengths: Sequence[int], max_tokens: int, *, quadratic: bool = False) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches, longest first.

    A batch of ``B`` inputs padded to ``T`` tokens obeys ``B*T <= max_tokens`` and, when ``quadratic`` (pair
    outputs or attention maps are computed, whose memory grows with T²), also
    ``B*T*T <= max_tokens * PAIR_CELLS_PER_TOKEN``. An input larger than the budget forms a batch alone.
    """
    if max_tokens < 1:
        raise InputError(f"max_tokens_per_batch must be positive, got {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    pair_budget = max_tokens * PAIR_CELLS_PER_TOKEN
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        t = lengths[i]
        new_width = max(width, t)
        size = len(current) + 1
        fits = size * new_width <= max_tokens and (not quadratic or size * new_width * new_width <= pair_budget)
        if current and not fits:
            batches.append(current)
            current, new_width = [], t
        current.append(i)
        width = new_width
    if current:
        batches.append(current)
    return batches
