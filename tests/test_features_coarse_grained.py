"""One-bead-per-residue inputs: detection, validation errors, periodic chains, and Cα RMSF / movement correlation
equal to extract_md's on the same real trajectories reduced to Cα."""

from __future__ import annotations

from pathlib import Path

import mdtraj as md
import numpy as np
import pytest
from _cg_files import write_calpha_files
from conftest import require

from seqdance.errors import InputError
from seqdance.features import extract_md
from seqdance.features.inputs.coarse_grained import (
    bead_topology,
    calpha_trace,
    check_chain_continuity,
    is_one_bead_per_residue,
    iter_bead_chunks,
    load_bead_topology,
)
from seqdance.features.inputs.protein import build_protein_topology
from seqdance.features.md.properties import CalphaFluctuations

MDA = pytest.importorskip("MDAnalysisTests.datafiles")


def read_trace(topology, trajectory=None, **kwargs):
    """(bead topology, every selected frame (F, N, 3) nm) of a one-bead trajectory, through the chunked reader."""
    chunks = list(iter_bead_chunks(topology, trajectory, **kwargs))
    return chunks[0][0], np.concatenate([xyz for *_, xyz in chunks])


def fluctuations(xyz: np.ndarray) -> dict[str, np.ndarray]:
    """Cα RMSF and movement correlation of a whole trace, frames superposed on the first."""
    acc = CalphaFluctuations()
    acc.add(xyz)
    return acc.result()


@pytest.fixture(scope="module")
def mdcath(shared_data: Path) -> tuple[Path, Path]:
    base = shared_data / "md" / "mdcath_2hbaA00"
    return require(base / "2hbaA00.pdb"), require(base / "2hbaA00_320_0.xtc")


@pytest.mark.parametrize("system", ["mdcath_2hbaA00", "adenylate_kinase"])
def test_calpha_properties_equal_all_atom_run(system: str, request, tmp_path: Path) -> None:
    if system == "mdcath_2hbaA00":
        top, traj_path = request.getfixturevalue("mdcath")
        stride = 10
    else:
        top, traj_path, stride = MDA.PSF, MDA.DCD, 4
    reference = extract_md(top, traj_path, stride=stride, missing_hydrogens="skip")
    traj = md.load(str(traj_path), top=str(top), stride=stride)
    pdb, dcd = write_calpha_files(traj, tmp_path, system)

    beads, xyz = read_trace(pdb, dcd)
    assert beads.sequence == reference["sequence"]
    assert len(xyz) == reference["n_frames"]
    np.testing.assert_array_equal(beads.residue_ids["resSeq"], reference["residue_ids"]["resSeq"])
    out = fluctuations(xyz)
    np.testing.assert_allclose(out["rmsf"], reference["rmsf"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out["corr"], reference["corr"], rtol=0, atol=1e-5)
    # Without the file round trip (DCD stores Å in float32) the numbers are the same to the last bit.
    protein = build_protein_topology(traj.topology)
    exact = fluctuations(calpha_trace(protein, traj.atom_slice(protein.atom_indices).xyz))
    np.testing.assert_allclose(exact["corr"], reference["corr"], rtol=0, atol=1e-12)


def test_chunked_accumulation_equals_one_pass(mdcath, tmp_path: Path) -> None:
    traj = md.load(str(mdcath[1]), top=str(mdcath[0]), stride=5)
    pdb, dcd = write_calpha_files(traj, tmp_path, "2hba")
    acc = CalphaFluctuations()
    for _, _, _, xyz in iter_bead_chunks(pdb, dcd, chunk_frames=7):
        acc.add(xyz)
    whole = fluctuations(read_trace(pdb, dcd)[1])
    assert acc.n_frames == traj.n_frames
    np.testing.assert_allclose(acc.result()["corr"], whole["corr"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.diag(whole["corr"]), 1.0, atol=1e-12)


def test_detection(mdcath) -> None:
    assert not is_one_bead_per_residue(md.load_topology(str(mdcath[0])))
    assert load_bead_topology(mdcath[0]) is None
    assert not is_one_bead_per_residue(md.Topology())
    top = md.load_topology(MDA.PSF)
    assert is_one_bead_per_residue(top.subset(top.select("name CA")))


def _bead_chain(names: list[str]) -> md.Topology:
    top = md.Topology()
    chain = top.add_chain()
    for k, name in enumerate(names, start=1):
        residue = top.add_residue(name, chain, resSeq=k)
        top.add_atom("CA", md.element.carbon, residue)
    return top


def test_unknown_residue_name_is_an_error_naming_file_and_residue(tmp_path: Path) -> None:
    top = _bead_chain(["MET", "LYS", "XYZ", "GLY"])
    xyz = np.arange(12, dtype=np.float32).reshape(1, 4, 3) * 0.1
    path = tmp_path / "bad_names.pdb"
    md.Trajectory(xyz, top).save_pdb(str(path))
    with pytest.raises(InputError, match=r"bad_names\.pdb: bead 3 \(residue 'XYZ' 3, chain A\) is not an amino acid"):
        read_trace(path)
    # force-field variants are amino acids
    protein = bead_topology(_bead_chain(["HSD", "LYS", "CYX"]))
    assert protein.sequence == "HKC"


def test_chain_break_is_an_error_naming_file_frame_and_residues(mdcath, tmp_path: Path) -> None:
    traj = md.load(str(mdcath[1]), top=str(mdcath[0]), stride=50)
    ca = traj.topology.select("name CA")
    trace = traj.atom_slice(ca)
    trace.unitcell_vectors = None
    trace.xyz[7, 20:] += np.float32(1.0)  # frame 7: residue 21 onwards moved 1.7 nm away
    pdb, dcd = tmp_path / "broken.pdb", tmp_path / "broken.dcd"
    trace[0].save_pdb(str(pdb))
    trace.save_dcd(str(dcd))
    with pytest.raises(InputError, match=r"broken\.dcd: frame 7: chain break between consecutive beads "
                                         r"ASN20 \(chain \w+\) and VAL21 \(chain \w+\): 1\.\d+ nm apart"):
        read_trace(pdb, dcd)
    # frame numbers count in the original trajectory when frames are strided
    with pytest.raises(InputError, match=r"frame 7: chain break"):
        read_trace(pdb, dcd, start=1, stride=3)
    # a tolerant threshold accepts it
    assert len(read_trace(pdb, dcd, max_bond_nm=5.0)[1]) == traj.n_frames


def test_non_finite_coordinates_are_an_error() -> None:
    protein = bead_topology(_bead_chain(["MET", "LYS", "GLY"]))
    xyz = np.zeros((3, 3, 3), dtype=np.float32)
    xyz[:, :, 0] = [0.0, 0.38, 0.76]
    xyz[2, 1, 1] = np.nan
    with pytest.raises(InputError, match=r"trace\.dcd: frame 4: non-finite"):
        check_chain_continuity(xyz, protein, source="trace.dcd", first_frame=0, stride=2)


def test_chain_split_across_the_box_is_made_whole(mdcath, tmp_path: Path) -> None:
    """Wrap the beads into a 2 nm box (splitting the chain); with the box in the DCD the result is unchanged."""
    traj = md.load(str(mdcath[1]), top=str(mdcath[0]), stride=25)
    trace = traj.atom_slice(traj.topology.select("name CA"))
    expected = fluctuations(trace.xyz)
    box = np.float32(2.0)
    wrapped = trace.xyz - np.floor(trace.xyz / box) * box
    wrapped_traj = md.Trajectory(wrapped, trace.topology, unitcell_lengths=np.full((trace.n_frames, 3), box),
                                 unitcell_angles=np.full((trace.n_frames, 3), 90.0))
    pdb, dcd = tmp_path / "wrapped.pdb", tmp_path / "wrapped.dcd"
    wrapped_traj[0].save_pdb(str(pdb))
    wrapped_traj.save_dcd(str(dcd))
    out = fluctuations(read_trace(pdb, dcd)[1])
    np.testing.assert_allclose(out["rmsf"], expected["rmsf"], atol=1e-5)
    np.testing.assert_allclose(out["corr"], expected["corr"], atol=1e-4)


def test_multiple_chains_and_replicas(tmp_path: Path) -> None:
    top = md.load_topology(MDA.PSF)
    traj = md.load(MDA.DCD, top=MDA.PSF, stride=10)
    trace = traj.atom_slice(top.select("name CA"))
    # split adenylate kinase's Cα trace into two chains at residue 100 (two molecules, e.g. a CG dimer)
    two = md.Topology()
    for part in (range(0, 100), range(100, trace.n_atoms)):
        chain = two.add_chain()
        for k in part:
            residue = trace.topology.residue(k)
            two.add_atom("CA", md.element.carbon, two.add_residue(residue.name, chain, resSeq=residue.resSeq))
    dimer = md.Trajectory(trace.xyz, two)
    pdb, dcd_a, dcd_b = tmp_path / "dimer.pdb", tmp_path / "a.dcd", tmp_path / "b.dcd"
    dimer[0].save_pdb(str(pdb))
    dimer[:5].save_dcd(str(dcd_a))
    dimer[5:].save_dcd(str(dcd_b))
    beads, xyz = read_trace(pdb, [dcd_a, dcd_b])
    assert beads.chain_lengths.tolist() == [100, trace.n_atoms - 100]
    assert ":" in beads.sequence and len(xyz) == trace.n_frames
    np.testing.assert_allclose(xyz, trace.xyz, atol=1e-6)


def test_too_few_frames(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="at least 2 frames"):
        fluctuations(np.zeros((1, 4, 3), dtype=np.float32))
