"""Back-mapping a real Cα trace to heavy atoms (PULCHRA) and adding hydrogens (OpenMM): atoms, geometry,
fidelity floors on real data, and clear errors naming file and frame."""

from __future__ import annotations

import warnings
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest
from conftest import require

from seqdance.errors import InputError
from seqdance.features import extract_md
from seqdance.features.inputs.backmapping import Backmapper, BackmappingError, backmap
from seqdance.features.inputs.coarse_grained import bead_topology, calpha_trace
from seqdance.features.inputs.protein import build_protein_topology

pytest.importorskip("pypulchra", reason="back-mapping needs pypulchra (pip install 'seqdance[backmap]'; "
                                        "it compiles with a C++ compiler)")


@pytest.fixture(scope="module")
def golden(shared_data: Path) -> tuple[md.Trajectory, object]:
    """ATLAS 3tvj_I (38 residues, 10 frames, with hydrogens) as extract_md's protein sees it."""
    base = shared_data / "reference" / "md"
    top, dcd = require(base / "3tvj_I.pdb"), require(base / "3tvj_I_10frames.dcd")
    traj = md.load(str(dcd), top=str(top))
    protein = build_protein_topology(traj.topology)
    traj = traj.atom_slice(protein.atom_indices)
    traj.topology = protein.topology
    return traj, protein


@pytest.fixture(scope="module")
def rebuilt(golden) -> tuple[md.Trajectory, object]:
    traj, protein = golden
    trace = calpha_trace(protein, traj.xyz)
    beads = bead_topology(traj.atom_slice(traj.topology.select("name CA")).topology)
    return backmap(trace, beads, source="3tvj_I_ca.dcd"), beads


def test_backmapped_frames_hold_every_heavy_atom_with_sane_geometry(golden, rebuilt) -> None:
    traj, protein = golden
    out, _ = rebuilt
    assert out.n_frames == traj.n_frames
    heavy = [(a.residue.index, a.name) for a in traj.topology.atoms if a.element.symbol != "H"]
    rebuilt_atoms = {(a.residue.index, a.name) for a in out.topology.atoms}
    # every heavy atom of the original exists in the rebuilt model (OXT included), with the same residues
    assert set(heavy) <= rebuilt_atoms
    assert [r.name for r in out.topology.residues] == list(protein.residue_names)
    assert all(a.element.symbol != "H" for a in out.topology.atoms)
    # Cα stay where the trace put them (PULCHRA's Cα optimisation moves them by at most ~0.1 Å)
    ca = out.topology.select("name CA")
    trace = calpha_trace(protein, traj.xyz)
    assert np.abs(out.xyz[:, ca] - trace).max() < 0.02
    # the peptide bonds are chemical bonds
    c = out.topology.select("name C")[:-1]
    n = out.topology.select("name N")[1:]
    bond = np.linalg.norm(out.xyz[:, c] - out.xyz[:, n], axis=-1)
    assert 0.12 < bond.min() and bond.max() < 0.145
    # and the model is close to the original (RMSD after superposition; measured 0.06-0.07 nm for the backbone,
    # 0.30-0.33 nm for all heavy atoms of this small, exposed toxin)
    index_out = {(a.residue.index, a.name): a.index for a in out.topology.atoms}
    index_in = {(a.residue.index, a.name): a.index for a in traj.topology.atoms}
    for names, limit in (({"N", "CA", "C", "O"}, 0.1), (None, 0.4)):
        common = [k for k in heavy if names is None or k[1] in names]
        a = traj.atom_slice(sorted(index_in[k] for k in common))
        b = out.atom_slice(sorted(index_out[k] for k in common))
        key_a = [(x.residue.index, x.name) for x in a.topology.atoms]
        order = [[(x.residue.index, x.name) for x in b.topology.atoms].index(k) for k in key_a]
        with warnings.catch_warnings():  # reordering b's atoms into a's order is the point of this slice
            warnings.filterwarnings("ignore", message="atom_indices are not monotonically increasing")
            b = b.atom_slice(order)
        rmsd = np.array([md.rmsd(b[k], a[k])[0] for k in range(traj.n_frames)])
        assert rmsd.max() < limit, (names, rmsd)


def test_backmapped_features_reproduce_the_original(golden, rebuilt, tmp_path: Path, shared_data: Path) -> None:
    """Floors well below the measured fidelity (docs/coarse_grained.md): a regression, not a benchmark."""
    out, _ = rebuilt
    pdb, dcd = tmp_path / "bm.pdb", tmp_path / "bm.dcd"
    out[0].save_pdb(str(pdb))
    out.save_dcd(str(dcd))
    new = extract_md(pdb, dcd, missing_hydrogens="skip", frequency="fraction")
    base = shared_data / "reference" / "md"
    ref = extract_md(base / "3tvj_I.pdb", base / "3tvj_I_10frames.dcd", frequency="fraction")
    assert new["sequence"] == ref["sequence"]
    assert np.corrcoef(new["sasa_mean"], ref["sasa_mean"])[0, 1] > 0.95
    ss_agreement = 1 - 0.5 * np.abs(new["ss"] - ref["ss"]).sum(axis=1).mean()
    assert ss_agreement > 0.8
    vdw = np.minimum(new["vdw"], ref["vdw"]).sum() / np.maximum(new["vdw"], ref["vdw"]).sum()
    assert vdw > 0.5
    assert np.isnan(new["hbbb"]).all()  # no hydrogens yet


def test_engines_build_the_same_atoms(golden) -> None:
    pytest.importorskip("pulchra", reason="the pure-Python PULCHRA engine needs the PyPI package pulchra (test extra)")
    traj, protein = golden
    trace = calpha_trace(protein, traj.xyz[:1])
    beads = bead_topology(traj.atom_slice(traj.topology.select("name CA")).topology)
    c = Backmapper(beads, engine="pulchra")
    py = Backmapper(beads, engine="pulchra-python")
    xc, xp = c.frames(trace), py.frames(trace)
    assert ([(a.residue.index, a.name) for a in c.topology.atoms]
            == [(a.residue.index, a.name) for a in py.topology.atoms])
    ca = c.topology.select("name CA")
    assert np.abs(xc[0, ca] - xp[0, ca]).max() < 0.02


def test_failure_on_one_frame_names_file_and_frame(golden, monkeypatch) -> None:
    traj, protein = golden
    trace = calpha_trace(protein, traj.xyz[:4])
    beads = bead_topology(traj.atom_slice(traj.topology.select("name CA")).topology)
    import seqdance.features.inputs.backmapping as bm

    real = bm._RUNNERS["pulchra"]
    calls = {"n": 0}

    def flaky(names, xyz):
        calls["n"] += 1
        if calls["n"] == 3:
            return [], np.zeros((0, 3))  # what pypulchra returns when it cannot rebuild a frame
        return real(names, xyz)

    monkeypatch.setitem(bm._RUNNERS, "pulchra", flaky)
    mapper = Backmapper(beads, source="idr_0001/traj.dcd")
    with pytest.raises(BackmappingError,
                       match=r"idr_0001/traj\.dcd: frame 25: back-mapping \(pulchra\) returned no atoms"):
        mapper.frames(trace, first_frame=5, stride=10)

    def raising(names, xyz):
        raise RuntimeError("grid overflow")

    monkeypatch.setitem(bm._RUNNERS, "pulchra", raising)
    with pytest.raises(BackmappingError, match=r"t\.dcd: frame 0: back-mapping \(pulchra\) failed: RuntimeError: grid"):
        Backmapper(beads, source="t.dcd").frames(trace[:1])


def test_inconsistent_atoms_between_frames_is_an_error(golden, monkeypatch) -> None:
    traj, protein = golden
    trace = calpha_trace(protein, traj.xyz[:2])
    beads = bead_topology(traj.atom_slice(traj.topology.select("name CA")).topology)
    import seqdance.features.inputs.backmapping as bm

    real = bm._RUNNERS["pulchra"]
    calls = {"n": 0}

    def drops_an_atom(names, xyz):
        calls["n"] += 1
        keys, coords = real(names, xyz)
        return (keys[:-1], coords[:-1]) if calls["n"] == 2 else (keys, coords)

    monkeypatch.setitem(bm._RUNNERS, "pulchra", drops_an_atom)
    with pytest.raises(BackmappingError, match=r"frame 1: back-mapping \(pulchra\) produced \d+ atoms .* not the \d+"):
        Backmapper(beads, source="x.dcd").frames(trace)


def test_bad_input() -> None:
    top = md.Topology()
    chain = top.add_chain()
    for k, name in enumerate(["MET", "SEC", "GLY"], start=1):
        top.add_atom("CA", md.element.carbon, top.add_residue(name, chain, resSeq=k))
    beads = bead_topology(top)
    with pytest.raises(InputError, match=r"cg\.pdb: residue SEC2 \(chain A\) cannot be back-mapped"):
        Backmapper(beads, source="cg.pdb")
    with pytest.raises(ValueError, match="engine must be one of"):
        Backmapper(beads, engine="modeller")  # type: ignore[arg-type]
