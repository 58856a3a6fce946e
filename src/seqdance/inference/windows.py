"""Overlapping windows for sequences longer than the encoder's context, and the rule that merges them.

A sequence whose inner token span (everything between the outer ``<cls>`` and ``<eos>``, chain linkers
included) is longer than ``window`` tokens is cut into windows of ``window`` tokens that start every
``window - overlap`` tokens; the last window is aligned to the sequence end. Each window is fed to the model
as ``<cls> tokens <eos>`` (trimmed so it never starts or ends inside a chain linker).

**Merge rule (most-central window).** A residue takes its value from the window in which it is furthest
from an artificial cut: its *context* in a window is the distance (in tokens) to the nearest window edge that
is not a true end of the sequence (true ends never count as cuts). A pair (i, j) takes its value from the
window that contains both residues and maximises ``min(context(i), context(j))``. Ties go to the earlier
window. Pairs that share no window are NaN. Every residue is covered, so residue outputs are never NaN.
With ``overlap`` tokens of overlap, every pair up to ``overlap`` tokens apart shares a window.

The same rule merges token-level outputs (every token of the parent input, chain linkers included, for the
``all`` pooling of :mod:`seqdance.inference.embeddings`): an inner token takes its value from the window where it
is most central; the parent's ``<cls>`` comes from the first window and its ``<eos>`` from the last (the only
windows where they are true ends). On residue tokens this is exactly the residue rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqdance.errors import InputError
from seqdance.tokenizer import CLS_ID, EOS_ID, Encoded

#: Context value of a residue whose window edges on both sides are true sequence ends.
_UNBOUNDED = np.iinfo(np.int32).max


@dataclass(frozen=True)
class Window:
    """One window of a parent sequence: the model input and where its residues sit in the parent."""

    ids: np.ndarray  # (t,) int64 model input: <cls> parent tokens <eos>
    residue_index: np.ndarray  # (n,) positions of the window's residues in ``ids``
    first_residue: int  # the window covers parent residues [first_residue, first_residue + n)
    context: np.ndarray  # (n,) int32 distance of each residue to the nearest artificial cut
    token_start: int = 1  # parent position of the window's first inner token (its input position 1)
    token_context: np.ndarray | None = None  # (t - 2,) int32 context of each inner token (None: no cut)

    @property
    def n_residues(self) -> int:
        return int(self.residue_index.shape[0])

    def inner_tokens(self) -> Window:
        """The window seen token by token: every inner token as a 'residue' of the parent's inner tokens (for
        :class:`WindowMerger` over token-level outputs)."""
        t = int(self.ids.shape[0])
        context = self.token_context
        if context is None:
            context = np.full(t - 2, _UNBOUNDED, dtype=np.int32)
        return Window(self.ids, np.arange(1, t - 1), self.token_start - 1, context)


def window_starts(n_inner: int, window: int, overlap: int) -> list[int]:
    """Start offsets (in inner-token coordinates) of the windows covering ``n_inner`` tokens."""
    if window < 1:
        raise InputError(f"window must be at least 1 token, got {window}")
    if not 0 <= overlap < window:
        raise InputError(f"window_overlap must be in [0, window={window}), got {overlap}")
    if n_inner <= window:
        return [0]
    stride = window - overlap
    last = n_inner - window
    starts = list(range(0, last, stride))
    starts.append(last)
    return starts


def split_windows(encoded: Encoded, window: int | None, overlap: int) -> list[Window]:
    """Cut one encoded sequence into model-sized windows (a single window when it fits)."""
    ids = encoded.ids
    n_inner = ids.shape[0] - 2
    pos = encoded.residue_index  # token positions of the residues in the parent, increasing
    if window is None or n_inner <= window:
        context = np.full(pos.shape[0], _UNBOUNDED, dtype=np.int32)
        return [Window(ids, pos, 0, context)]
    windows: list[Window] = []
    for start in window_starts(n_inner, window, overlap):
        lo, hi = start + 1, start + 1 + window  # parent token span [lo, hi)
        first = int(np.searchsorted(pos, lo, side="left"))
        stop = int(np.searchsorted(pos, hi, side="left"))
        if stop <= first:  # a span of linker tokens only (window of 1-2 tokens); nothing to predict
            continue
        members = pos[first:stop]
        tokens = np.arange(members[0], members[-1] + 1)  # parent positions of the window's inner tokens
        piece = np.concatenate(([CLS_ID], ids[members[0] : members[-1] + 1], [EOS_ID])).astype(np.int64)
        windows.append(
            Window(
                ids=piece,
                residue_index=members - members[0] + 1,
                first_residue=first,
                context=_context(members, lo, hi, ids.shape[0]),
                token_start=int(members[0]),
                token_context=_context(tokens, lo, hi, ids.shape[0]),
            )
        )
    return windows


def _context(positions: np.ndarray, lo: int, hi: int, n_tokens: int) -> np.ndarray:
    """Distance of parent ``positions`` to the nearest artificial cut of the span [lo, hi) (true ends never cut)."""
    left = positions - lo if lo > 1 else np.full(positions.shape, _UNBOUNDED)
    right = hi - 1 - positions if hi < n_tokens - 1 else np.full(positions.shape, _UNBOUNDED)
    return np.minimum(left, right).astype(np.int32)


class WindowMerger:
    """Accumulates per-window outputs into parent-sized arrays by the most-central-window rule.

    Residue-level arrays have the residue axis first, ``(n, ...)``; pair-level arrays have the two residue
    axes LAST, ``(..., n, n)``, so that one pair property is one contiguous slice.
    """

    def __init__(self, n_residues: int) -> None:
        self.n = n_residues
        self._residue_best = np.full(n_residues, -1, dtype=np.int64)
        self._pair_best: np.ndarray | None = None
        self.residue: dict[str, np.ndarray] = {}
        self.pair: dict[str, np.ndarray] = {}

    def add(self, window: Window, residue: dict[str, np.ndarray], pair: dict[str, np.ndarray]) -> None:
        """Merge one window's outputs (residue-aligned to the window) into the parent arrays."""
        a, b = window.first_residue, window.first_residue + window.n_residues
        ctx = window.context.astype(np.int64)
        take = ctx > self._residue_best[a:b]
        for name, values in residue.items():
            if name not in self.residue:
                self.residue[name] = np.full((self.n, *values.shape[1:]), np.nan, dtype=values.dtype)
            target = self.residue[name][a:b]
            target[take] = values[take]
        self._residue_best[a:b] = np.maximum(self._residue_best[a:b], ctx)
        if not pair:
            return
        if self._pair_best is None:
            self._pair_best = np.full((self.n, self.n), -1, dtype=np.int64)
        pair_ctx = np.minimum(ctx[:, None], ctx[None, :])
        best = self._pair_best[a:b, a:b]
        take_pair = pair_ctx > best
        for name, values in pair.items():
            if name not in self.pair:
                self.pair[name] = np.full((*values.shape[:-2], self.n, self.n), np.nan, dtype=values.dtype)
            target = self.pair[name][..., a:b, a:b]
            np.copyto(target, values, where=take_pair)
        np.maximum(best, pair_ctx, out=best)
