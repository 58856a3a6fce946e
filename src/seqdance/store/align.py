"""Batched Smith-Waterman local alignment with identity and coverage statistics, in numpy.

The fallback aligner for clustering small sequence sets when MMseqs2 is not installed. Written by hand
because what is needed is many pairs at once with the alignment statistics MMseqs2 filters on (identical
residues, alignment columns, aligned span on each sequence), which scipy does not offer and Biopython (not a
dependency) only gives through a per-pair Python traceback.

Scoring follows MMseqs2/BLAST defaults: BLOSUM62, a gap of length k costs ``gap_open + k * gap_extend``
(11 + k). The dynamic programme runs over anti-diagonals for a whole batch of pairs at once, carrying for every
cell the statistics of the best path ending there, so no traceback is needed. Ties prefer the diagonal move,
then a gap in the first sequence, then in the second; the reported alignment ends at the first best-scoring cell
in anti-diagonal order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seqdance.errors import InputError

#: BLOSUM62 alphabet (B, Z, X ambiguity codes; any other letter is scored as X).
ALPHABET = "ARNDCQEGHILKMFPSTWYVBZX"
_BLOSUM62_ROWS = """
 4 -1 -2 -2  0 -1 -1  0 -2 -1 -1 -1 -1 -2 -1  1  0 -3 -2  0 -2 -1  0
-1  5  0 -2 -3  1  0 -2  0 -3 -2  2 -1 -3 -2 -1 -1 -3 -2 -3 -1  0 -1
-2  0  6  1 -3  0  0  0  1 -3 -3  0 -2 -3 -2  1  0 -4 -2 -3  3  0 -1
-2 -2  1  6 -3  0  2 -1 -1 -3 -4 -1 -3 -3 -1  0 -1 -4 -3 -3  4  1 -1
 0 -3 -3 -3  9 -3 -4 -3 -3 -1 -1 -3 -1 -2 -3 -1 -1 -2 -2 -1 -3 -3 -2
-1  1  0  0 -3  5  2 -2  0 -3 -2  1  0 -3 -1  0 -1 -2 -1 -2  0  3 -1
-1  0  0  2 -4  2  5 -2  0 -3 -3  1 -2 -3 -1  0 -1 -3 -2 -2  1  4 -1
 0 -2  0 -1 -3 -2 -2  6 -2 -4 -4 -2 -3 -3 -2  0 -2 -2 -3 -3 -1 -2 -1
-2  0  1 -1 -3  0  0 -2  8 -3 -3 -1 -2 -1 -2 -1 -2 -2  2 -3  0  0 -1
-1 -3 -3 -3 -1 -3 -3 -4 -3  4  2 -3  1  0 -3 -2 -1 -3 -1  3 -3 -3 -1
-1 -2 -3 -4 -1 -2 -3 -4 -3  2  4 -2  2  0 -3 -2 -1 -2 -1  1 -4 -3 -1
-1  2  0 -1 -3  1  1 -2 -1 -3 -2  5 -1 -3 -1  0 -1 -3 -2 -2  0  1 -1
-1 -1 -2 -3 -1  0 -2 -3 -2  1  2 -1  5  0 -2 -1 -1 -1 -1  1 -3 -1 -1
-2 -3 -3 -3 -2 -3 -3 -3 -1  0  0 -3  0  6 -4 -2 -2  1  3 -1 -3 -3 -1
-1 -2 -2 -1 -3 -1 -1 -2 -2 -3 -3 -1 -2 -4  7 -1 -1 -4 -3 -2 -2 -1 -2
 1 -1  1  0 -1  0  0  0 -1 -2 -2  0 -1 -2 -1  4  1 -3 -2 -2  0  0  0
 0 -1  0 -1 -1 -1 -1 -2 -2 -1 -1 -1 -1 -2 -1  1  5 -2 -2  0 -1 -1  0
-3 -3 -4 -4 -2 -2 -3 -2 -2 -3 -2 -3 -1  1 -4 -3 -2 11  2 -3 -4 -3 -2
-2 -2 -2 -3 -2 -1 -2 -3  2 -1 -1 -2 -1  3 -3 -2 -2  2  7 -1 -3 -2 -1
 0 -3 -3 -3 -1 -2 -2 -3 -3  3  1 -2  1 -1 -2 -2  0 -3 -1  4 -3 -2 -1
-2 -1  3  4 -3  0  1 -1  0 -3 -4  0 -3 -3 -2  0 -1 -4 -3 -3  4  1 -1
-1  0  0  1 -3  3  4 -2  0 -3 -3  1 -1 -3 -1  0 -1 -3 -2 -2  1  4 -1
 0 -1 -1 -1 -2 -1 -1 -1 -1 -1 -1 -1 -1 -1 -2  0  0 -2 -1 -1 -1 -1 -1
"""
#: Index of the padding symbol: scored so low that no alignment reaches it.
_PAD = len(ALPHABET)
_PAD_SCORE = -10_000
_X = ALPHABET.index("X")


def _substitution_matrix() -> np.ndarray:
    core = np.array([[int(v) for v in line.split()] for line in _BLOSUM62_ROWS.strip().splitlines()], dtype=np.int32)
    size = len(ALPHABET)
    if core.shape != (size, size) or not (core == core.T).all():
        raise RuntimeError("BLOSUM62 table is malformed")
    full = np.full((size + 1, size + 1), _PAD_SCORE, dtype=np.int32)
    full[:size, :size] = core
    return full


BLOSUM62 = _substitution_matrix()
_LOOKUP = np.full(256, _X, dtype=np.int8)
for _code, _letter in enumerate(ALPHABET):
    _LOOKUP[ord(_letter)] = _code
    _LOOKUP[ord(_letter.lower())] = _code


def encode(sequence: str) -> np.ndarray:
    """Alphabet indices of a sequence (letters outside BLOSUM62's alphabet become X; ':' chain breaks dropped)."""
    raw = np.frombuffer(sequence.replace(":", "").encode("ascii", "replace"), dtype=np.uint8)
    return _LOOKUP[raw].astype(np.int64)


@dataclass(frozen=True)
class AlignmentStats:
    """Best local alignment of each pair: score, identical residues, columns (incl. gaps), 1-based spans."""

    score: np.ndarray
    identities: np.ndarray
    columns: np.ndarray
    a_start: np.ndarray
    a_end: np.ndarray
    b_start: np.ndarray
    b_end: np.ndarray
    a_length: np.ndarray
    b_length: np.ndarray

    @property
    def identity(self) -> np.ndarray:
        """Identical residues / alignment columns (MMseqs2 ``--seq-id-mode 0``); 0 where nothing aligned."""
        return np.where(self.columns > 0, self.identities / np.maximum(self.columns, 1), 0.0)

    @property
    def a_coverage(self) -> np.ndarray:
        return np.where(self.columns > 0, (self.a_end - self.a_start + 1) / self.a_length, 0.0)

    @property
    def b_coverage(self) -> np.ndarray:
        return np.where(self.columns > 0, (self.b_end - self.b_start + 1) / self.b_length, 0.0)


# Statistics of the best path into a cell, packed in one int64 so that each DP state carries a single array:
# identical residues << 48 | alignment columns << 32 | first aligned position of a << 16 | of b (1-based).
_ID_UNIT = np.int64(1) << 48
_COL_UNIT = np.int64(1) << 32
_A_UNIT = np.int64(1) << 16
_FIELD = (1 << 16) - 1
#: Longest sequence the packed statistics can hold (alignment columns must stay below 2**16).
MAX_LENGTH = 30_000


def _align_batch(a_codes: list[np.ndarray], b_codes: list[np.ndarray], gap_open: int, gap_extend: int) -> np.ndarray:
    """Run the DP for one batch; returns (B, 7): score, ids, cols, a_start, a_end, b_start, b_end."""
    n = len(a_codes)
    la = np.array([len(a) for a in a_codes])
    lb = np.array([len(b) for b in b_codes])
    ma, mb = int(la.max()), int(lb.max())
    # 1-based padded sequences; index 0 and positions past the end hold the padding symbol.
    A = np.full((n, ma + 1), _PAD, dtype=np.int64)
    Bq = np.full((n, mb + 1), _PAD, dtype=np.int64)
    for k, (a, b) in enumerate(zip(a_codes, b_codes)):
        A[k, 1 : len(a) + 1] = a
        Bq[k, 1 : len(b) + 1] = b
    a_rows = A * (len(ALPHABET) + 1)
    sub_flat = BLOSUM62.ravel()
    width = ma + 1
    i_all = np.arange(width, dtype=np.int64)
    neg = np.int32(-(1 << 28))
    open_cost = np.int32(gap_open + gap_extend)
    ext_cost = np.int32(gap_extend)
    rows_n = np.arange(n)

    def fresh(i: np.ndarray | int, d: int) -> np.ndarray | np.int64:
        # stats of a fresh start at cell (i, d - i): the alignment would begin at the next diagonal cell
        return ((np.int64(1) * i + 1) << 16) + (d - i + 1)

    # three rotating buffers (diagonals d, d-1, d-2) of H, its stats, E, E stats, F, F stats
    bufs = []
    for d0 in (0, 1, 2):
        hs0 = np.broadcast_to(fresh(i_all, d0), (n, width)).copy()
        bufs.append([np.zeros((n, width), np.int32), hs0, np.full((n, width), neg, np.int32),
                     np.zeros((n, width), np.int64), np.full((n, width), neg, np.int32),
                     np.zeros((n, width), np.int64)])
    best = np.zeros(n, dtype=np.int32)
    best_stats = np.zeros(n, dtype=np.int64)
    best_i = np.zeros(n, dtype=np.int64)
    best_d = np.zeros(n, dtype=np.int64)

    for d in range(2, ma + mb + 1):
        h2, hs2 = bufs[(d - 2) % 3][:2]
        h1, hs1, e1, es1, f1, fs1 = bufs[(d - 1) % 3]
        h, hs, e, es, f, fs = bufs[d % 3]
        lo, hi = max(1, d - mb), min(ma, d - 1)  # cells (i, d - i) inside the padded matrix
        # the cells just outside the band are the only ones later diagonals read: make them fresh boundaries
        for edge in (lo - 1, hi + 1):
            if 0 <= edge <= ma:
                h[:, edge], hs[:, edge], e[:, edge], f[:, edge] = 0, fresh(edge, d), neg, neg
        if lo > hi:
            continue
        cur = slice(lo, hi + 1)
        prv = slice(lo - 1, hi)
        i_idx = i_all[cur]
        b_here = Bq[:, d - i_idx]
        a_here = A[:, cur]
        sub = sub_flat[a_rows[:, cur] + b_here].astype(np.int32)
        # E: gap in a (consumes b_j), from the left cell (i, j-1) = index i on diagonal d-1
        e_open, e_ext = h1[:, cur] - open_cost, e1[:, cur] - ext_cost
        use = e_ext > e_open
        ec = np.where(use, e_ext, e_open)
        esc = np.where(use, es1[:, cur], hs1[:, cur]) + _COL_UNIT
        # F: gap in b (consumes a_i), from the upper cell (i-1, j) = index i-1 on diagonal d-1
        f_open, f_ext = h1[:, prv] - open_cost, f1[:, prv] - ext_cost
        use = f_ext > f_open
        fc = np.where(use, f_ext, f_open)
        fsc = np.where(use, fs1[:, prv], hs1[:, prv]) + _COL_UNIT
        # H: best of a fresh start, the diagonal move, E and F (ties: fresh, diagonal, E, F)
        diag = h2[:, prv] + sub
        hc = np.maximum(diag, 0)
        hsc = np.where(diag > 0, hs2[:, prv] + _COL_UNIT + (a_here == b_here) * _ID_UNIT, fresh(i_idx, d))
        take = ec > hc
        hc = np.where(take, ec, hc)
        hsc = np.where(take, esc, hsc)
        take = fc > hc
        hc = np.where(take, fc, hc)
        hsc = np.where(take, fsc, hsc)
        h[:, cur], hs[:, cur], e[:, cur], es[:, cur], f[:, cur], fs[:, cur] = hc, hsc, ec, esc, fc, fsc
        # best real cell so far (padding cells excluded; first occurrence in anti-diagonal order wins)
        real = (i_idx[None, :] <= la[:, None]) & ((d - i_idx)[None, :] <= lb[:, None])
        masked = np.where(real, hc, -1)
        where = masked.argmax(axis=1)
        top = masked[rows_n, where]
        better = top > best
        if better.any():
            r = np.flatnonzero(better)
            best[r] = top[r]
            best_stats[r] = hsc[r, where[r]]
            best_i[r] = i_idx[where[r]]
            best_d[r] = d

    out = np.zeros((n, 7), dtype=np.int64)
    out[:, 0] = best
    out[:, 1] = best_stats >> 48
    out[:, 2] = (best_stats >> 32) & _FIELD
    out[:, 3] = (best_stats >> 16) & _FIELD
    out[:, 4] = best_i
    out[:, 5] = best_stats & _FIELD
    out[:, 6] = best_d - best_i
    return out


def align_pairs(
    a_sequences: Sequence[str | np.ndarray],
    b_sequences: Sequence[str | np.ndarray],
    *,
    gap_open: int = 11,
    gap_extend: int = 1,
    cells_per_batch: int = 400_000,
) -> AlignmentStats:
    """Best local alignment statistics for each pair ``(a_sequences[k], b_sequences[k])``.

    Pairs are grouped by length so that padding is small; each group is one vectorised DP.
    """
    if len(a_sequences) != len(b_sequences):
        raise InputError("align_pairs needs as many first as second sequences")
    a_codes = [s if isinstance(s, np.ndarray) else encode(s) for s in a_sequences]
    b_codes = [s if isinstance(s, np.ndarray) else encode(s) for s in b_sequences]
    n = len(a_codes)
    la = np.array([len(a) for a in a_codes], dtype=np.int64)
    lb = np.array([len(b) for b in b_codes], dtype=np.int64)
    if n and (la.min() == 0 or lb.min() == 0):
        raise InputError("cannot align an empty sequence")
    if n and max(la.max(), lb.max()) > MAX_LENGTH:
        raise InputError(f"sequences longer than {MAX_LENGTH} residues cannot be aligned here")
    out = np.zeros((n, 7), dtype=np.int64)
    order = np.lexsort((lb, la))
    start = 0
    while start < n:
        # grow the batch while its padded DP (rows x diagonal width) stays within the cell budget
        stop = start + 1
        while stop < n:
            width = la[order[stop]] + 1
            if (stop + 1 - start) * width > cells_per_batch or lb[order[stop]] > 2 * lb[order[start]] + 16:
                break
            stop += 1
        idx = order[start:stop]
        out[idx] = _align_batch([a_codes[k] for k in idx], [b_codes[k] for k in idx], gap_open, gap_extend)
        start = stop
    return AlignmentStats(
        score=out[:, 0], identities=out[:, 1], columns=out[:, 2],
        a_start=out[:, 3], a_end=out[:, 4], b_start=out[:, 5], b_end=out[:, 6],
        a_length=la, b_length=lb,
    )
