"""How a variant's residues correspond to its wild type's (docs/design.md#variant-alignment).

A variant of the wild type's length is aligned position by position (residue i to residue i, whatever the
residues). A variant of another length (insertions, deletions, truncations) is aligned by a global alignment
with affine gaps: a match scores +1, a mismatch −1 and a gap of k residues −(3 + k) (``GAP_OPEN`` + k ×
``GAP_EXTEND``), end gaps costing as much as inner ones (Needleman–Wunsch with Gotoh's three states). Between
alignments of equal score the gaps go as far towards the C-terminus as possible (the 3' rule of the HGVS variant
nomenclature): deleting one residue of ``AAA`` deletes the last ``A``, and a residue inserted next to an identical
one is placed after it.

Written here, not taken from a library, because the core install has no alignment package (gemmi is an extra)
and the tie rule must be stated and stable; the tests check its scores against Biopython's ``PairwiseAligner``.
The dynamic programme runs row by row in numpy (the horizontal gap state is a running maximum), so a 1,000 ×
1,000 alignment takes a few tens of milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from seqdance.errors import InputError

#: Alignment scores of a variant against its wild type.
MATCH, MISMATCH, GAP_OPEN, GAP_EXTEND = 1, -1, 3, 1
_NEG = np.iinfo(np.int32).min // 4
#: Status of one alignment column, as the per-variant tables write it.
SAME, SUBSTITUTED, DELETED, INSERTED = "same", "substituted", "deleted", "inserted"


@dataclass(frozen=True)
class Insertion:
    """Variant residues inserted after wild-type residue ``after`` (0-based; −1: before the first)."""

    after: int
    residues: str


@dataclass(frozen=True, eq=False)
class Alignment:
    """Residue correspondence of a variant to its wild type.

    ``columns`` (k, 2): the alignment in order, one (wild-type index, variant index) per column, −1 where a residue
    has no counterpart (a deleted wild-type residue, an inserted variant residue). ``method``: ``positional``
    (same length) or ``global`` (the alignment above, with its ``score``).
    """

    wild_type: str
    variant: str
    columns: np.ndarray = field(repr=False)
    method: str = "positional"
    score: int | None = None

    @cached_property
    def wt_to_variant(self) -> np.ndarray:
        """(n,) the variant index aligned to each wild-type residue, −1 for a deleted one."""
        out = np.full(len(self.wild_type), -1, dtype=np.int64)
        both = self.pairs
        out[both[:, 0]] = both[:, 1]
        return out

    @cached_property
    def variant_to_wt(self) -> np.ndarray:
        """(m,) the wild-type index aligned to each variant residue, −1 for an inserted one."""
        out = np.full(len(self.variant), -1, dtype=np.int64)
        both = self.pairs
        out[both[:, 1]] = both[:, 0]
        return out

    @cached_property
    def pairs(self) -> np.ndarray:
        """(a, 2) the aligned residue pairs (wild-type index, variant index), in order."""
        keep = (self.columns[:, 0] >= 0) & (self.columns[:, 1] >= 0)
        return np.ascontiguousarray(self.columns[keep])

    def token_pairs(self) -> np.ndarray:
        """(a + 2, 2) aligned token positions of the two model inputs ``<cls> ... <eos>``: ``<cls>`` to ``<cls>``,
        each aligned residue pair (shifted by one), ``<eos>`` to ``<eos>``."""
        inner = self.pairs + 1
        ends = np.array([[0, 0], [len(self.wild_type) + 1, len(self.variant) + 1]], dtype=np.int64)
        return np.concatenate([ends[:1], inner, ends[1:]])

    @property
    def is_identity(self) -> bool:
        """The variant is the wild type."""
        return self.wild_type == self.variant

    def status(self) -> list[str]:
        """``same``, ``substituted``, ``deleted`` or ``inserted`` for each column."""
        out = []
        for i, j in self.columns:
            if i < 0:
                out.append(INSERTED)
            elif j < 0:
                out.append(DELETED)
            else:
                out.append(SAME if self.wild_type[i] == self.variant[j] else SUBSTITUTED)
        return out

    def substitutions(self) -> list[tuple[int, str, str]]:
        """(wild-type index, wild-type residue, variant residue) of every aligned pair that differs."""
        return [(int(i), self.wild_type[i], self.variant[j]) for i, j in self.pairs
                if self.wild_type[i] != self.variant[j]]

    def deletions(self) -> list[tuple[int, int]]:
        """Runs of deleted wild-type residues, as (first, last) 0-based wild-type indices."""
        runs: list[tuple[int, int]] = []
        for i in (int(i) for i, j in self.columns if j < 0):
            if runs and runs[-1][1] == i - 1:
                runs[-1] = (runs[-1][0], i)
            else:
                runs.append((i, i))
        return runs

    def insertions(self) -> list[Insertion]:
        """Runs of inserted variant residues, each after the wild-type residue it follows."""
        runs: list[Insertion] = []
        last_wt = -1
        previous_inserted = False
        for i, j in self.columns:
            if i >= 0:
                last_wt = int(i)
                previous_inserted = False
                continue
            if previous_inserted and runs and runs[-1].after == last_wt:
                runs[-1] = Insertion(last_wt, runs[-1].residues + self.variant[j])
            else:
                runs.append(Insertion(last_wt, self.variant[j]))
            previous_inserted = True
        return runs

    @property
    def n_inserted(self) -> int:
        return int((self.columns[:, 0] < 0).sum())

    @property
    def n_deleted(self) -> int:
        return int((self.columns[:, 1] < 0).sum())

    def sites(self) -> tuple[int, ...]:
        """Wild-type indices of the edits: substituted and deleted residues, and both wild-type neighbours of an
        insertion (one at a sequence end)."""
        n = len(self.wild_type)
        found = {i for i, _, _ in self.substitutions()}
        for first, last in self.deletions():
            found.update(range(first, last + 1))
        for ins in self.insertions():
            found.update(k for k in (ins.after, ins.after + 1) if 0 <= k < n)
        return tuple(sorted(found))

    def n_events(self) -> int:
        """Edit events: substitutions, deletion runs and insertion runs."""
        return len(self.substitutions()) + len(self.deletions()) + len(self.insertions())

    def describe(self, offset: int = 1) -> str:
        """The edits in a compact HGVS-like notation, by wild-type position and joined by ``:`` — ``A23G``,
        ``L10del``, ``L10_K12del``, ``A20_K21insGSG`` (``start_M1insGS`` / ``K98_endinsGS`` at the ends); empty
        for the wild type itself."""
        wt, n = self.wild_type, len(self.wild_type)
        events: list[tuple[float, str]] = []
        for i, a, b in self.substitutions():
            events.append((i, f"{a}{i + offset}{b}"))
        for first, last in self.deletions():
            text = f"{wt[first]}{first + offset}" + ("" if first == last else f"_{wt[last]}{last + offset}")
            events.append((first, text + "del"))
        for ins in self.insertions():
            left = "start" if ins.after < 0 else f"{wt[ins.after]}{ins.after + offset}"
            right = "end" if ins.after + 1 >= n else f"{wt[ins.after + 1]}{ins.after + 1 + offset}"
            events.append((ins.after + 0.5, f"{left}_{right}ins{ins.residues}"))
        return ":".join(text for _, text in sorted(events))


def positional_alignment(wild_type: str, variant: str) -> Alignment:
    """Residue i to residue i (two sequences of one length)."""
    if len(wild_type) != len(variant):
        raise InputError(f"a positional alignment needs sequences of one length, not {len(wild_type)} and "
                         f"{len(variant)}")
    index = np.arange(len(wild_type), dtype=np.int64)
    return Alignment(wild_type, variant, np.stack([index, index], axis=1), "positional")


def align_variant(wild_type: str, variant: str) -> Alignment:
    """The alignment of a variant to its wild type: positional for one length, global otherwise (module doc)."""
    if not wild_type or not variant:
        raise InputError("cannot align an empty sequence")
    if len(wild_type) == len(variant):
        return positional_alignment(wild_type, variant)
    return global_alignment(wild_type, variant)


def _codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("ascii", "replace"), dtype=np.uint8)


def global_alignment(wild_type: str, variant: str) -> Alignment:
    """Needleman–Wunsch with affine gaps (Gotoh), gaps as far C-terminal as ties allow (module doc)."""
    a, b = _codes(wild_type), _codes(variant)
    n, m = len(a), len(b)
    o, e = GAP_OPEN, GAP_EXTEND
    match = np.zeros((n + 1, m + 1), dtype=np.int32)  # ends with a residue pair
    dele = np.zeros((n + 1, m + 1), dtype=np.int32)  # ends with a wild-type residue against a gap
    ins = np.zeros((n + 1, m + 1), dtype=np.int32)  # ends with a variant residue against a gap
    match[0, :] = _NEG
    match[:, 0] = _NEG
    match[0, 0] = 0
    dele[0, :] = _NEG
    dele[1:, 0] = -(o + e * np.arange(1, n + 1))
    ins[:, 0] = _NEG
    ins[0, 1:] = -(o + e * np.arange(1, m + 1))
    steps = e * np.arange(1, m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        scores = np.where(b == a[i - 1], MATCH, MISMATCH).astype(np.int32)
        prev = np.maximum(np.maximum(match[i - 1, :-1], dele[i - 1, :-1]), ins[i - 1, :-1])
        match[i, 1:] = prev + scores
        dele[i, 1:] = np.maximum(np.maximum(match[i - 1, 1:], ins[i - 1, 1:]) - (o + e), dele[i - 1, 1:] - e)
        # ins[i, j] = max over k < j of (best(match, dele)[i, k] - o - e (j - k)): a running maximum
        opened = np.maximum(match[i, :-1], dele[i, :-1]).astype(np.int64) + e * np.arange(0, m, dtype=np.int64)
        opened[0] = max(opened[0], int(ins[i, 0]) + o)  # a gap running on from column 0 (never better here)
        ins[i, 1:] = np.maximum.accumulate(opened) - o - steps
    columns = _traceback(a, b, match, dele, ins)
    best = int(max(match[n, m], dele[n, m], ins[n, m]))
    return Alignment(wild_type, variant, columns, "global", best)


def _traceback(a, b, match, dele, ins) -> np.ndarray:
    """The columns of an optimal alignment; ties prefer a gap (deletion, then insertion) over a residue pair, and
    extending a gap over opening one, which puts gaps as far C-terminal as possible."""
    o, e = GAP_OPEN, GAP_EXTEND
    i, j = len(a), len(b)
    tables = {"D": dele, "I": ins, "M": match}
    best = max(int(dele[i, j]), int(ins[i, j]), int(match[i, j]))
    state = next(s for s in ("D", "I", "M") if int(tables[s][i, j]) == best)
    out: list[tuple[int, int]] = []
    while i > 0 or j > 0:
        value = int(tables[state][i, j])
        if state == "M":
            out.append((i - 1, j - 1))
            target = value - (MATCH if a[i - 1] == b[j - 1] else MISMATCH)
            i, j = i - 1, j - 1
            if i == 0 and j == 0:
                break
            state = next(s for s in ("D", "I", "M") if int(tables[s][i, j]) == target)
        elif state == "D":
            out.append((i - 1, -1))
            i -= 1
            if i == 0 and j == 0:
                break
            if int(dele[i, j]) - e == value:
                continue
            state = next(s for s in ("I", "M") if int(tables[s][i, j]) - (o + e) == value)
        else:
            out.append((-1, j - 1))
            j -= 1
            if i == 0 and j == 0:
                break
            if int(ins[i, j]) - e == value:
                continue
            state = next(s for s in ("D", "M") if int(tables[s][i, j]) - (o + e) == value)
    out.reverse()
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)
