"""The alignment of a variant to its wild type: positional for one length, a global affine-gap alignment otherwise,
with the 3' rule for equivalent gaps; optimal scores checked against Biopython, mappings on a real protein."""

from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import require

from seqdance.io_utils import read_fasta
from seqdance.scoring.alignment import (
    DELETED,
    GAP_EXTEND,
    GAP_OPEN,
    INSERTED,
    MATCH,
    MISMATCH,
    SAME,
    SUBSTITUTED,
    align_variant,
    global_alignment,
)
from seqdance.scoring.mutations import IndelVariant, MutationError, Variant, parse_mutants, sequence_variant

AMINO = "ACDEFGHIKLMNPQRSTVWY"


def _column_score(a: str, b: str, columns: np.ndarray) -> int:
    """The alignment's score recomputed column by column (a gap run of k costs GAP_OPEN + k GAP_EXTEND)."""
    total, previous = 0, None
    for i, j in columns:
        if i >= 0 and j >= 0:
            total += MATCH if a[i] == b[j] else MISMATCH
            previous = None
        else:
            kind = "del" if j < 0 else "ins"
            total -= GAP_EXTEND + (GAP_OPEN if previous != kind else 0)
            previous = kind
    return total


def test_global_alignment_is_optimal_against_biopython() -> None:
    align = pytest.importorskip("Bio.Align")
    aligner = align.PairwiseAligner(mode="global", match_score=MATCH, mismatch_score=MISMATCH,
                                    open_gap_score=-(GAP_OPEN + GAP_EXTEND), extend_gap_score=-GAP_EXTEND)
    rng = random.Random(0)
    checked = 0
    while checked < 200:
        wt = "".join(rng.choice(AMINO[: rng.randint(2, 20)]) for _ in range(rng.randint(2, 60)))
        var = list(wt)
        for _ in range(rng.randint(1, 4)):
            k = rng.randrange(len(var) + 1)
            if rng.random() < 0.5 and len(var) > 1:
                del var[min(k, len(var) - 1)]
            else:
                var.insert(k, rng.choice(AMINO))
        var = "".join(var)
        if len(var) == len(wt):
            continue
        result = global_alignment(wt, var)
        assert result.score == aligner.score(wt, var), (wt, var)
        assert _column_score(wt, var, result.columns) == result.score
        assert "".join(wt[i] for i, _ in result.columns if i >= 0) == wt
        assert "".join(var[j] for _, j in result.columns if j >= 0) == var
        checked += 1


def test_same_length_is_positional_and_gaps_follow_the_3_prime_rule() -> None:
    positional = align_variant("MKTAYIAK", "MKTGYIWK")
    assert positional.method == "positional" and positional.columns.tolist() == [[i, i] for i in range(8)]
    assert positional.status() == [SAME, SAME, SAME, SUBSTITUTED, SAME, SAME, SUBSTITUTED, SAME]
    assert positional.describe() == "A4G:A7W"
    # deleting one A of AAA deletes the last; an A inserted beside an A goes after it
    deletion = align_variant("MKAAAY", "MKAAY")
    assert deletion.wt_to_variant.tolist() == [0, 1, 2, 3, -1, 4] and deletion.describe() == "A5del"
    insertion = align_variant("MKAY", "MKAAY")
    assert insertion.variant_to_wt.tolist() == [0, 1, 2, -1, 3] and insertion.describe() == "A3_Y4insA"
    ends = align_variant("KTAYIAK", "GSKTAYIAKW")
    assert ends.describe() == "start_K1insGS:K7_endinsW" and ends.sites() == (0, 6)
    assert ends.token_pairs()[[0, -1]].tolist() == [[0, 0], [8, 11]]  # <cls> and <eos> map to each other


@pytest.fixture(scope="module")
def if1(shared_data) -> str:
    path = require(shared_data / "proteingym_single_dev" / "fasta" / "IF1_ECOLI_Kelsic_2016.fasta")
    return read_fasta(path)[0].sequence


def test_deletion_and_insertion_on_a_real_protein(if1) -> None:
    wt = if1
    n = len(wt)
    deletion = align_variant(wt, wt[:9] + wt[12:])  # residues 10-12 deleted
    assert deletion.wt_to_variant.tolist() == [*range(9), -1, -1, -1, *range(9, n - 3)]
    assert deletion.describe() == f"{wt[9]}10_{wt[11]}12del" and deletion.deletions() == [(9, 11)]
    insertion = align_variant(wt, wt[:20] + "GSG" + wt[20:])  # GSG inserted after residue 20
    assert insertion.variant_to_wt.tolist() == [*range(20), -1, -1, -1, *range(20, n)]
    assert insertion.describe() == f"{wt[19]}20_{wt[20]}21insGSG"
    assert [(x.after, x.residues) for x in insertion.insertions()] == [(19, "GSG")]
    # both in one variant (one residue longer than the wild type)
    variant = wt[:9] + wt[12:20] + "GSGS" + wt[20:]
    both = align_variant(wt, variant)
    expected_wt = [i if i < 9 else (-1 if i < 12 else (i - 3 if i < 20 else i + 1)) for i in range(n)]
    assert both.wt_to_variant.tolist() == expected_wt
    expected_var = [j if j < 9 else (j + 3 if j < 17 else (-1 if j < 21 else j - 1)) for j in range(len(variant))]
    assert both.variant_to_wt.tolist() == expected_var
    assert both.describe() == f"{wt[9]}10_{wt[11]}12del:{wt[19]}20_{wt[20]}21insGSGS"
    status = both.status()
    assert status.count(DELETED) == 3 and status.count(INSERTED) == 4 and SUBSTITUTED not in status
    # the inserted rows come right after the wild-type position they follow
    columns = both.columns.tolist()
    k = columns.index([19, 16])
    assert columns[k + 1 : k + 6] == [[-1, 17], [-1, 18], [-1, 19], [-1, 20], [20, 21]]
    # a deletion and an insertion of one size keep the length: aligned position by position, as substitutions
    assert align_variant(wt, wt[:9] + wt[12:20] + "GSG" + wt[20:]).method == "positional"


def test_sequence_variants_and_their_errors(if1) -> None:
    wt = if1
    same = sequence_variant("given", wt[:22] + "W" + wt[23:], wt)
    assert isinstance(same, Variant) and [s.label() for s in same.substitutions] == [f"{wt[22]}23W"]
    indel = sequence_variant("", wt[:9] + wt[12:], wt)
    assert isinstance(indel, IndelVariant) and indel.mutant == indel.description == f"{wt[9]}10_{wt[11]}12del"
    assert indel.indices == (9, 10, 11) and indel.n_changes == 1 and indel.apply(wt) == wt[:9] + wt[12:]
    with pytest.raises(MutationError, match="character '1' at residue 3"):
        sequence_variant("x", wt[:2] + "1" + wt[3:], wt)
    with pytest.raises(MutationError, match=r"'X' at position 4 .* not one of the 20 standard"):
        sequence_variant("x", wt[:3] + "X" + wt[3:], wt)
    with pytest.raises(MutationError, match="not a variant of the wild type"):
        sequence_variant("x", "MKTAYIAKQR", wt)
    # parse_mutants reads indels only when asked, from mutated_sequence or a mutant that is a sequence
    rows = ["del", wt[:30] + wt[31:], f"{wt[0]}1A"]
    plain = parse_mutants(rows, wt, mutated_sequences=[wt[:5] + wt[6:], None, None])
    assert len(plain.variants) == 1 and [i.row for i in plain.invalid] == [1, 2]
    mixed = parse_mutants(rows, wt, mutated_sequences=[wt[:5] + wt[6:], None, None], indels=True)
    assert [type(v).__name__ for v in mixed.variants] == ["IndelVariant", "IndelVariant", "Variant"]
    # residues 31 and 32 are both V: deleting residue 31 is written as the 3' rule places it, V32del
    assert wt[30:32] == "VV" and mixed.variants[0].mutant == "del" and mixed.variants[1].description == "V32del"
