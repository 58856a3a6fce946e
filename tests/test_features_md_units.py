"""Building blocks of the MD features: running statistics, histograms, residue names, the interaction search."""

from __future__ import annotations

import mdtraj as md
import numpy as np
import pytest
from bench_md_features import straightforward_contacts
from conftest import require

from seqdance.errors import InputError
from seqdance.features.inputs.protein import build_protein_topology, normalise_residue_name
from seqdance.features.inputs.spec import InputSpec
from seqdance.features.inputs.topology import load_topology
from seqdance.features.md.contact_geometry import build_contact_model
from seqdance.features.md.interactions import ContactFrequencies, ContactRecords, detect_contacts
from seqdance.features.md.properties import (
    ANGLE_EDGES,
    CoordinateCovariance,
    DihedralHistogram,
    RunningMoments,
)
from seqdance.schema import INTERACTION_NAMES

MDA = pytest.importorskip("MDAnalysisTests.datafiles")


def test_running_moments_merge_chunks_exactly():
    rng = np.random.default_rng(0)
    values = rng.normal(5.0, 2.0, size=(37, 6))
    acc = RunningMoments()
    for lo, hi in ((0, 1), (1, 10), (10, 11), (11, 37)):
        acc.add(values[lo:hi])
    np.testing.assert_allclose(acc.mean, values.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(acc.std, values.std(axis=0), rtol=1e-12)


def test_coordinate_covariance_matches_direct_formula():
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(25, 7, 3)) + rng.normal(size=(1, 7, 3)) * 10
    acc = CoordinateCovariance()
    for lo in range(0, 25, 6):
        acc.add(xyz[lo:lo + 6])
    flat = xyz.reshape(25, -1)
    cov3 = np.cov(flat.T, bias=True).reshape(7, 3, 7, 3)
    cov = np.einsum("iaja->ij", cov3)
    np.testing.assert_allclose(acc.comoment / 25, cov, atol=1e-12)
    np.testing.assert_allclose(acc.rmsf(), np.sqrt(np.diag(cov)), rtol=1e-12)
    corr = acc.correlation()
    np.testing.assert_allclose(corr, cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov))), atol=1e-12)
    assert np.all(np.abs(corr) <= 1 + 1e-12)


def test_dihedral_histogram_is_numpy_histogram():
    rng = np.random.default_rng(2)
    angles = rng.uniform(-np.pi, np.pi, size=(50, 3))
    angles[0, 0], angles[1, 0], angles[2, 1] = -np.pi, np.pi, ANGLE_EDGES[4]  # edges
    hist = DihedralHistogram(5)
    hist.add(np.array([0, 2, 4]), angles[:20])
    hist.add(np.array([0, 2, 4]), angles[20:])
    out = hist.result(50)
    for col, row in enumerate((0, 2, 4)):
        expected = np.histogram(angles[:, col], bins=12, range=(-np.pi, np.pi))[0] / 50
        np.testing.assert_allclose(out[row], expected)
    assert np.isnan(out[1]).all() and np.isnan(out[3]).all()


@pytest.mark.parametrize(("raw", "standard"), [
    ("HSD", "HIS"), ("HIE", "HIS"), ("HISB", "HIS"), ("LYSH", "LYS"), ("CYX", "CYS"), ("CYSH", "CYS"),
    ("NALA", "ALA"), ("CLYS", "LYS"), ("NHIE", "HIS"), ("ASH", "ASP"), ("GLY", "GLY"), ("HOH", "HOH"),
    ("NME", "NME"),
])
def test_residue_name_normalisation(raw, standard):
    assert normalise_residue_name(raw) == standard


def test_selector_parsing(tmp_path):
    """One parser of ``file.h5#320/0`` (trajectory readers, fingerprints and the manifest all use it)."""
    assert InputSpec.parse("a/b.h5#348/2") == InputSpec("a/b.h5", "348/2")
    assert str(InputSpec.parse("a/b.h5#348/2")) == "a/b.h5#348/2"
    assert InputSpec.parse("a/b.h5") == InputSpec("a/b.h5")
    assert InputSpec.parse("weird#name.xtc") == InputSpec("weird#name.xtc")  # '#' in a name that is no HDF5 file
    odd = tmp_path / "odd.h5#1"
    odd.write_text("x")
    assert InputSpec.parse(odd) == InputSpec(str(odd))  # an existing file is never split
    with pytest.raises(InputError, match=r"b\.h5#320/0/1: the selector after '#' must be TEMPERATURE or "
                                         r"TEMPERATURE/REPLICA"):
        InputSpec.parse("b.h5#320/0/1")


@pytest.fixture(scope="module")
def adk_frames():
    loaded = load_topology(MDA.PSF)
    protein = build_protein_topology(loaded.topology, loaded.insertion_codes)
    traj = md.load(MDA.DCD, top=MDA.PSF, frame=None)[[0, 40, 97]]
    return protein, traj.xyz[:, protein.atom_indices]


def test_kdtree_search_equals_full_distance_matrix(adk_frames):
    protein, xyz = adk_frames
    model = build_contact_model(protein, xyz[0])
    records = detect_contacts(model, xyz)
    ours = set(zip(records.frame.tolist(), records.kind.tolist(), records.atom1.tolist(), records.atom2.tolist()))
    reference = straightforward_contacts(model, xyz)
    assert ours == reference
    kinds = {INTERACTION_NAMES[k] for _, k, _, _ in ours}
    assert {"vdw", "hbbb", "hbsb", "hbss", "hp", "sb", "pc"} <= kinds  # a real protein exercises every test


def test_kdtree_search_equals_full_matrix_on_aromatic_rich_domain(shared_data):
    pdb = require(shared_data / "md" / "mdcath_2hbaA00" / "2hbaA00.pdb")
    xtc = require(shared_data / "md" / "mdcath_2hbaA00" / "2hbaA00_320_0.xtc")
    loaded = load_topology(pdb)
    protein = build_protein_topology(loaded.topology, loaded.insertion_codes)
    xyz = md.load(str(xtc), top=str(pdb), stride=25).xyz[:, protein.atom_indices]
    model = build_contact_model(protein, xyz[0])
    records = detect_contacts(model, xyz)
    ours = set(zip(records.frame.tolist(), records.kind.tolist(), records.atom1.tolist(), records.atom2.tolist()))
    assert ours == straightforward_contacts(model, xyz)
    assert {"ps", "ts", "pc"} & {INTERACTION_NAMES[k] for _, k, _, _ in ours}


def test_contact_model_classes_on_adk(adk_frames):
    protein, xyz = adk_frames
    model = build_contact_model(protein, xyz[0])
    top = protein.topology
    names = {(top.atom(a).residue.name, top.atom(a).name) for a in model.heavy[model.hydrophobic]}
    assert ("LEU", "CD1") in names and ("ALA", "CB") in names and ("PHE", "CZ") in names
    assert not any(n in ("CA", "C") for _, n in names)  # bonded to N / O
    assert ("PRO", "CD") not in names  # bonded to N
    assert model.backbone_hydrogen_coverage() > 0.99
    # every polar atom with hydrogens is an N or O bonded to them
    donors = model.heavy[(model.hydrogens >= 0).any(axis=1) & model.polar]
    assert {top.atom(d).element.symbol for d in donors} <= {"N", "O"}
    assert len(model.rings) == sum(r.name in ("PHE", "TYR", "TRP", "HIS") for r in top.residues)


def test_frequency_accumulation_modes():
    """Two frames; residue pair (0, 1) has two vdw records in frame 0 and one in frame 1."""

    class _Model:
        output_residue = np.array([0, 0, 1, 1, 2])

    records = ContactRecords(
        frame=np.array([0, 0, 1, 1]),
        kind=np.array([0, 0, 0, 5]),
        atom1=np.array([0, 1, 2, 4]),
        atom2=np.array([2, 3, 0, 3]),
    )
    ref = ContactFrequencies(_Model(), 3, "reference")
    ref.add(records, 2)
    out = ref.result()
    assert out["vdw"][0, 1] == 1.0 and out["vdw"][1, 0] == 0.5  # row = first atom's residue
    assert out["sb"][2, 1] == 0.5
    frac = ContactFrequencies(_Model(), 3, "fraction")
    frac.add(records, 2)
    out = frac.result()
    assert out["vdw"][0, 1] == out["vdw"][1, 0] == 1.0  # in contact in both frames
    assert out["sb"][1, 2] == out["sb"][2, 1] == 0.5
    with pytest.raises(ValueError, match="frequency"):
        ContactFrequencies(_Model(), 3, "weird")  # type: ignore[arg-type]
