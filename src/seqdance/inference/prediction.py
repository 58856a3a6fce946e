"""The result of predicting one sequence: residue-aligned numpy arrays keyed by property name."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from seqdance.errors import NotFoundError
from seqdance.schema import PROPERTY_BY_NAME


@dataclass(frozen=True, eq=False)
class Prediction(Mapping[str, np.ndarray]):
    """Predicted dynamic properties of one (possibly multi-chain) sequence.

    ``prediction[name]`` is residue-aligned (special tokens and chain linkers removed): residue properties are
    ``(L,)`` or ``(L, C)`` (ss ``(L, 8)``, chi/phi/psi ``(L, 12)``), pair properties ``(L, L)`` with row i,
    column j. Only the properties that were predicted are keys (no pair properties with ``pairs=False``).
    Pairs of a long sequence that shared no window are NaN (see :mod:`seqdance.inference.windows`).
    """

    id: str
    sequence: str  # one-letter residues, chains joined by ":"
    chain_lengths: tuple[int, ...]
    values: dict[str, np.ndarray] = field(repr=False)
    embedding: np.ndarray | None = field(default=None, repr=False)  # (L, d) last hidden state
    #: (layers*heads, L, L) attention probabilities, layer-major; see :attr:`attention`.
    attention_maps: np.ndarray | None = field(default=None, repr=False)
    n_windows: int = 1

    # Mapping's value equality would compare arrays element-wise; predictions compare by identity.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.values[name]
        except KeyError:
            if name in PROPERTY_BY_NAME:
                raise NotFoundError(f"{name!r} was not predicted (pair properties need pairs=True)") from None
            raise NotFoundError(f"{name!r} is not a property name; predicted: {', '.join(self.values)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def n_residues(self) -> int:
        return int(sum(self.chain_lengths))

    @property
    def attention(self) -> np.ndarray | None:
        """``(L, L, layers*heads)`` attention maps (a view of :attr:`attention_maps`), or None."""
        return None if self.attention_maps is None else np.moveaxis(self.attention_maps, 0, -1)

    def __repr__(self) -> str:
        return (
            f"Prediction(id={self.id!r}, n_residues={self.n_residues}, chains={len(self.chain_lengths)}, "
            f"properties={len(self.values)}, embedding={self.embedding is not None}, "
            f"attention={self.attention_maps is not None})"
        )
