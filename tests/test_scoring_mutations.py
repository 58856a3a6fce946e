"""Mutation parsing/validation, saturation scans, mutation files and long-protein windows."""

from __future__ import annotations

import pytest

from seqdance.scoring.mutations import (
    MutationError,
    check_wild_type,
    invalid_summary,
    parse_mutant,
    parse_mutants,
    read_mutations,
    saturation_mutants,
)
from seqdance.scoring.windows import mutation_window
from seqdance.tokenizer import AMINO_ACIDS

WT = "MKTAYIAKQR"


def test_parse_single_and_multi_mutant():
    v = parse_mutant("K2A", WT)
    assert v.substitutions[0].index == 1 and v.apply(WT) == "MATAYIAKQR"
    multi = parse_mutant("R10G:M1A", WT)
    assert [s.index for s in multi.substitutions] == [0, 9]  # sorted by position
    assert multi.apply(WT) == "AKTAYIAKQG"
    assert multi.key == parse_mutant("M1A:R10G", WT).key  # order does not matter
    assert parse_mutant("k2a", WT).apply(WT) == "MATAYIAKQR"  # lower case accepted


def test_offset_numbering():
    v = parse_mutant("K25A", WT, offset=24)
    assert v.substitutions[0].index == 1
    with pytest.raises(MutationError, match=r"position 2 is outside the sequence \(residues 24\.\.33\)"):
        parse_mutant("K2A", WT, offset=24)


@pytest.mark.parametrize(
    ("mutant", "reason"),
    [
        ("A2G", "wild-type residue at position 2 is K, not A"),
        ("K11A", "position 11 is outside the sequence (residues 1..10)"),
        ("K0A", "position 0 is outside"),
        ("K2", "malformed substitution 'K2'"),
        ("2A", "malformed substitution"),
        ("K2B", "mutant residue 'B' is not one of the 20 standard amino acids"),
        ("K2A:K2G", "position 2 is substituted more than once"),
        ("K2A:", "empty substitution"),
        ("", "empty mutant"),
    ],
)
def test_invalid_mutants_name_row_and_reason(mutant, reason):
    checked = parse_mutants(["M1A", mutant, "T3G"], WT)
    assert [v.mutant for v in checked.variants] == ["M1A", "T3G"]
    assert checked.rows == [1, 3]
    assert len(checked.invalid) == 1
    bad = checked.invalid[0]
    assert bad.row == 2 and reason in bad.reason
    text = invalid_summary(checked.invalid, "muts.csv")
    assert "muts.csv: 1 invalid" in text and "row 2" in text and reason in text


def test_mutated_sequence_is_checked():
    checked = parse_mutants(["K2A", "K2A"], WT, mutated_sequences=["MATAYIAKQR", "MKTAYIAKQR"])
    assert checked.rows == [1]
    assert "mutated_sequence does not equal" in checked.invalid[0].reason


def test_synonymous_and_repeated_mutants():
    checked = parse_mutants(["K2K", "K2A", "K2A", "K2K:T3G", "T3G"], WT)
    syn, a, b, mixed, t3g = checked.variants
    assert syn.is_synonymous and syn.indices == () and syn.apply(WT) == WT
    assert a.key == b.key
    assert mixed.key == t3g.key and not mixed.is_synonymous  # K2K adds nothing


def test_saturation_covers_19_per_position():
    variants = saturation_mutants(WT, offset=5)
    assert len(variants) == 19 * len(WT)
    assert variants[0].mutant == "M5A"
    assert {v.apply(WT) for v in variants}.__len__() == len(variants)
    assert all(v.substitutions[0].mt in AMINO_ACIDS and not v.is_synonymous for v in variants)


def test_check_wild_type_errors():
    assert check_wild_type(" mkt\nay ") == "MKTAY"
    with pytest.raises(ValueError, match="multi-chain"):
        check_wild_type("MKT:AAY")
    with pytest.raises(ValueError, match="residue 3"):
        check_wild_type("MK1A")


def test_read_mutations_csv_tsv_and_plain_list(tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_text("mutant,DMS_score\nK2A,0.5\nM1A:T3G,-1\n")
    table = read_mutations(csv)
    assert table["mutant"].tolist() == ["K2A", "M1A:T3G"] and "DMS_score" in table
    tsv = tmp_path / "m.tsv"
    tsv.write_text("id\tmutant\n1\tK2A\n")
    assert read_mutations(tsv)["mutant"].tolist() == ["K2A"]
    plain = tmp_path / "m.txt"
    plain.write_text("# my mutants\nK2A\n\nM1A:T3G\n")
    assert read_mutations(plain)["mutant"].tolist() == ["K2A", "M1A:T3G"]
    bad = tmp_path / "bad.csv"
    bad.write_text("variant,score\nK2A,1\n")
    with pytest.raises(ValueError, match="no 'mutant' column"):
        read_mutations(bad)
    with pytest.raises(FileNotFoundError):
        read_mutations(tmp_path / "missing.csv")


def test_mutation_window_short_and_long():
    assert mutation_window([3], 500) == (0, 500)
    start, stop = mutation_window([1500], 3000, size=1022, step=64)
    assert stop - start == 1022 and start % 64 == 0 and start <= 1500 < stop
    assert abs((start + stop - 1) / 2 - 1500) <= 32
    assert mutation_window([2], 3000) == (0, 1022)
    assert mutation_window([2999], 3000) == (3000 - 1022, 3000)
    # multi-site: every site inside
    start, stop = mutation_window([100, 1000], 3000)
    assert start <= 100 and 1000 < stop
    with pytest.raises(ValueError, match="span 1101 residues"):
        mutation_window([0, 1100], 3000)
    # many nearby sites share few windows
    starts = {mutation_window([i], 3000)[0] for i in range(3000)}
    assert len(starts) <= 3000 // 64 + 2
