"""dataset check: every rule catches its violation and names the protein; valid stores pass."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from _store_fixtures import synthetic_features

from seqdance import tokenizer
from seqdance.schema import MASK_VALUE, PROPERTY_BY_NAME
from seqdance.store import StoredProtein, StoreWriter, features_to_targets
from seqdance.store.check import check_protein, check_store

SEQ_MD = "MKTAYIAKQRQISFVKSHFSRQ"
SEQ_NMA = "ACDEFGHIK:LMNPQRSTVWY"


def _targets(kind: str, seq: str, frequency: str = "reference"):
    return features_to_targets(synthetic_features(seq, kind, seed=5, frequency=frequency), kind)


def _rows(seq: str) -> np.ndarray:
    return tokenizer.encode(seq).residue_index


def _corrupt(kind: str, how: str):
    seq = SEQ_MD if kind == "md" else SEQ_NMA
    residue, pair = _targets(kind, seq)
    rows = _rows(seq)
    r0, r1 = rows[0], rows[1]
    if how == "softmax-sum":
        residue[r1, PROPERTY_BY_NAME["ss"].store_channels] *= 1.5
    elif how == "nan":
        pair[r0, r1, 0] = np.nan
    elif how == "rmsf-range":
        residue[r1, PROPERTY_BY_NAME["rmsf_nor"].start] = 1.2
    elif how == "normalisation":
        residue[rows, PROPERTY_BY_NAME["rmsf_nor"].start] *= 0.5
    elif how == "corr-range":
        pair[r0, r1, PROPERTY_BY_NAME["corr"].store_channels.start] = 1.5
    elif how == "symmetry":
        ch = PROPERTY_BY_NAME["nma_pair2"].store_channels.start
        pair[r0, r1, ch] = 0.3
        pair[r1, r0, ch] = -0.2
    elif how == "diagonal":
        pair[r1, r1, PROPERTY_BY_NAME["nma_pair1"].store_channels.start] = 0.5
    elif how == "special-mask":
        residue[0, 0] = 0.0
    elif how == "negative":
        pair[r0, r1, PROPERTY_BY_NAME["sb"].store_channels.start] = -0.3
    elif how == "nma-negative":
        residue[r1, PROPERTY_BY_NAME["nma_res3"].store_channels.start] = -0.01
    elif how == "mask":
        residue[r1, PROPERTY_BY_NAME["psi"].store_channels.start] = MASK_VALUE
    return seq, residue, pair


CASES = [
    ("md", "softmax-sum", "softmax-sum"), ("md", "nan", "nan"), ("md", "rmsf-range", "range"),
    ("md", "normalisation", "normalisation"), ("md", "corr-range", "range"), ("nma", "symmetry", "symmetry"),
    ("nma", "diagonal", "diagonal"), ("md", "special-mask", "special-mask"), ("md", "negative", "range"),
    ("nma", "nma-negative", "range"), ("md", "mask", "mask"),
]


@pytest.mark.parametrize(("kind", "how", "check"), CASES)
def test_each_rule_catches_its_violation(kind: str, how: str, check: str) -> None:
    seq, residue, pair = _corrupt(kind, how)
    group = "md" if kind == "md" else "nma"
    problems = check_protein("bad", seq, group, residue, pair, frequency="reference")
    assert problems and problems[0].check == check, problems
    assert all(p.name == "bad" for p in problems)
    named = {"softmax-sum": "residue 2 ", "rmsf-range": "residue 2 ", "mask": "residue 2 ", "symmetry": "(1, 2)",
             "corr-range": "(1, 2)", "negative": "(1, 2)", "nma-negative": "residue 2 ", "diagonal": "residue 2"}
    if how in named:
        assert named[how] in problems[0].detail, problems[0].detail  # the corrupted residue, 1-based


def test_valid_targets_pass_and_shape_kind_length_are_checked() -> None:
    for kind, seq, group in (("md", SEQ_MD, "md"), ("md", SEQ_MD, "idr"), ("nma", SEQ_NMA, "nma")):
        residue, pair = _targets(kind, seq)
        assert check_protein("ok", seq, group, residue, pair) == []
    residue, pair = _targets("md", SEQ_MD)
    assert [p.check for p in check_protein("x", SEQ_MD + "A", "md", residue, pair)] == ["shape"]
    assert [p.check for p in check_protein("x", SEQ_MD, "nma", residue, pair)] == ["kind"]
    assert [p.check for p in check_protein("x", SEQ_MD, "md", residue, pair, length=3)] == ["length"]
    # fraction-mode frequencies are at most 1 and symmetric; reference-mode ones need not be
    residue, pair = _targets("md", SEQ_MD, frequency="reference")
    assert ({p.check for p in check_protein("x", SEQ_MD, "md", residue, pair, frequency="fraction")}
            == {"range", "symmetry"})
    residue, pair = _targets("md", SEQ_MD, frequency="fraction")
    assert check_protein("x", SEQ_MD, "md", residue, pair, frequency="fraction") == []


def test_check_store_names_offenders_and_orphans(tmp_path) -> None:
    path = tmp_path / "s.h5"
    with StoreWriter(path, metadata={"frequency": "reference"}) as writer:
        for k, (kind, how) in enumerate([("md", None), ("md", "softmax-sum"), ("nma", None), ("nma", "diagonal")]):
            seq, residue, pair = _corrupt(kind, how) if how else (
                (SEQ_MD, *_targets("md", SEQ_MD)) if kind == "md" else (SEQ_NMA, *_targets("nma", SEQ_NMA)))
            group = "md" if kind == "md" else "nma"
            writer.add(StoredProtein(f"p{k}", seq, "ATLAS" if kind == "md" else "proteinflow_pdb", group, "train",
                                     kind, residue, pair))
    with h5py.File(path, "r+") as fh:
        fh.create_dataset("stray_res_feature", data=np.zeros((3, 3), np.float32))
        del fh["p2_pair_feature"]
    report = check_store(path)
    assert not report.ok
    assert report.offending == ["stray", "p1", "p2", "p3"]
    checks = {(p.name, p.check) for p in report.problems}
    assert checks == {("stray", "index"), ("p1", "softmax-sum"), ("p2", "missing"), ("p3", "diagonal")}
    assert "4 proteins" not in report.summary() and "problem" in report.summary()


ATOM_LEVEL = ("sasa_mean", "sasa_std", "ss", "chi", "phi", "psi", "vdw", "hbbb", "hbsb", "hbss", "hp", "sb", "pc", "ps",
              "ts")


def _calpha_targets(seq: str = SEQ_MD):
    """Stored targets of a one-bead (Cα) protein: every atom-level property masked
    (docs/design.md#missing-properties)."""
    features = synthetic_features(seq, "md", seed=5)
    features["missing_properties"] = ATOM_LEVEL
    return features_to_targets(features, "md")


def test_masks_are_allowed_exactly_where_the_metadata_lists_missing_properties() -> None:
    residue, pair = _calpha_targets()
    assert check_protein("cg", SEQ_MD, "idr", residue, pair, missing=ATOM_LEVEL) == []
    # without metadata (a store built before it existed) the earlier rule holds: masks anywhere
    assert check_protein("cg", SEQ_MD, "idr", residue, pair) == []
    # the same masks with metadata that lists nothing: each masked property is reported
    problems = check_protein("cg", SEQ_MD, "idr", residue, pair, missing=[])
    assert {p.detail.split(":")[0] for p in problems} == set(ATOM_LEVEL)
    assert {p.check for p in problems} == {"mask"}
    # an all-atom protein with a property masked that its metadata does not list
    full, full_pair = _targets("md", SEQ_MD)
    assert check_protein("aa", SEQ_MD, "md", full, full_pair, missing=[]) == []  # undefined dihedrals are fine
    rows = _rows(SEQ_MD)
    damaged = full.copy()
    damaged[rows[4], PROPERTY_BY_NAME["sasa_mean"].start] = MASK_VALUE
    (problem,) = check_protein("aa", SEQ_MD, "md", damaged, full_pair, missing=[])
    assert (problem.check, problem.detail) == ("mask", "sasa_mean: residue 5 is masked but the protein's metadata "
                                                       "does not list the property as missing")
    damaged_pair = full_pair.copy()
    damaged_pair[rows[2], rows[7], PROPERTY_BY_NAME["hp"].store_channels.start] = MASK_VALUE
    (problem,) = check_protein("aa", SEQ_MD, "md", full, damaged_pair, missing=[])
    assert problem.check == "mask" and problem.detail.startswith("hp: residue pair (3, 8) is masked")
    # a property listed as missing that holds values
    problems = check_protein("aa", SEQ_MD, "md", full, full_pair, missing=["hbss", "sasa_std"])
    assert [(p.check, p.detail.split(":")[0]) for p in problems] == [("missing-property", "sasa_std"),
                                                                      ("missing-property", "hbss")]
    # an undefined-everywhere dihedral is fine when the sequence defines none (chi of Gly/Ala only)
    gly, gly_pair = _targets("md", "GAGAGG")
    assert (gly[_rows("GAGAGG"), PROPERTY_BY_NAME["chi"].store_channels.start] == MASK_VALUE).all()
    assert check_protein("ga", "GAGAGG", "md", gly, gly_pair, missing=[]) == []
    # NaN is reported whatever the metadata lists
    residue[rows[3], PROPERTY_BY_NAME["sasa_mean"].start] = np.nan
    assert [p.check for p in check_protein("cg", SEQ_MD, "idr", residue, pair, missing=ATOM_LEVEL)] == ["nan"]


def test_check_store_reads_the_missing_properties_from_provenance(tmp_path) -> None:
    path = tmp_path / "mixed.h5"
    residue, pair = _calpha_targets()
    full, full_pair = _targets("md", SEQ_MD)
    with StoreWriter(path, metadata={"frequency": "reference"}) as writer:
        writer.add(StoredProtein("cg_ok", SEQ_MD, "IDRome", "idr", "train", "md", residue, pair),
                   provenance={"input_kind": "calpha", "missing_properties": list(ATOM_LEVEL)})
        writer.add(StoredProtein("cg_unlisted", SEQ_MD, "IDRome", "idr", "train", "md", residue, pair),
                   provenance={"input_kind": "calpha", "missing_properties": ["sasa_mean"]})
        writer.add(StoredProtein("aa", SEQ_MD, "ATLAS", "md", "train", "md", full, full_pair),
                   provenance={"input_kind": "all_atom", "missing_properties": []})
        writer.add(StoredProtein("old", SEQ_MD, "ATLAS", "md", "train", "md", residue, pair))  # no metadata
    report = check_store(path)
    assert report.offending == ["cg_unlisted"]
    assert len(report.problems) == len(ATOM_LEVEL) - 1
    assert "2 with missing properties" in report.summary()
