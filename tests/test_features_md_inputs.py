"""extract_md on every input family (PSF/DCD, TPR/GRO + XTC/TRR, Amber, multi-model PDB, mdCATH PDB/XTC and
HDF5), multi-chain systems, periodic boxes, frame selection, replica pooling and bad input."""

from __future__ import annotations

from pathlib import Path

import h5py
import mdtraj as md
import numpy as np
import pytest
from conftest import require

from seqdance.features import extract_md
from seqdance.schema import INTERACTION_NAMES

MDA = pytest.importorskip("MDAnalysisTests.datafiles")

PER_RESIDUE = ("sasa_mean", "sasa_std", "rmsf", "ss", "chi", "phi", "psi")
PER_PAIR = ("corr", *INTERACTION_NAMES)


def assert_features_close(a: dict, b: dict, atol: float = 1e-6, *, sasa_atol: float | None = None,
                          same_chain_labels: bool = True) -> None:
    assert a["sequence"] == b["sequence"]
    fields = ("chain", "resSeq", "icode") if same_chain_labels else ("resSeq", "icode")
    for field in fields:
        np.testing.assert_array_equal(a["residue_ids"][field], b["residue_ids"][field])
    assert a["n_frames"] == b["n_frames"]
    for key in PER_RESIDUE + PER_PAIR:
        tol = sasa_atol if (sasa_atol is not None and key.startswith("sasa")) else atol
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=tol, err_msg=key)


def check_shapes(out: dict) -> int:
    n = len(out["sequence"].replace(":", ""))
    assert len(out["residue_ids"]) == n == int(out["chain_lengths"].sum())
    for key in ("sasa_mean", "sasa_std", "rmsf"):
        assert out[key].shape == (n,) and np.all(np.isfinite(out[key])) and np.all(out[key] >= 0)
    assert out["ss"].shape == (n, 8)
    np.testing.assert_allclose(out["ss"].sum(axis=1), 1.0)
    for key in ("chi", "phi", "psi"):
        assert out[key].shape == (n, 12)
    for key in PER_PAIR:
        assert out[key].shape == (n, n)
    return n


@pytest.fixture(scope="module")
def golden_files(shared_data: Path) -> tuple[Path, Path]:
    base = shared_data / "reference" / "md"
    return require(base / "3tvj_I.pdb"), require(base / "3tvj_I_10frames.dcd")


@pytest.fixture(scope="module")
def golden_full(golden_files) -> dict:
    return extract_md(*golden_files)


# --- input families ---------------------------------------------------------------------------------------

def test_psf_dcd_adenylate_kinase():
    out = extract_md(MDA.PSF, MDA.DCD, stop=2)
    assert check_shapes(out) == 214 and out["n_frames"] == 2
    assert out["sequence"].startswith("MRIILLGAPGAGKGTQ")
    assert out["vdw"].sum() > 100 and out["hbbb"].sum() > 50 and out["sb"].sum() > 0


def test_tpr_xtc_solvated_equals_gro_xtc():
    """GROMACS TPR (read by MDAnalysis) and GRO (read by MDTraj) with the same solvated, PBC-wrapped XTC."""
    from_tpr = extract_md(MDA.TPR, MDA.XTC, stop=2)
    from_gro = extract_md(MDA.GRO, MDA.XTC, stop=2)
    assert check_shapes(from_tpr) == 214
    # chain label: the TPR names the molecule ("AKeco"), the GRO has none ("A")
    assert_features_close(from_tpr, from_gro, atol=1e-9, same_chain_labels=False)
    assert from_tpr["residue_ids"]["chain"][0] == "AKeco"
    # the XTC splits the protein across the box; made whole, Cα fluctuations stay physical
    assert from_tpr["rmsf"].max() < 0.5


def test_gro_trr():
    out = extract_md(MDA.GRO, MDA.TRR, start=1, stop=3)
    assert check_shapes(out) == 214 and out["n_frames"] == 2


def test_amber_prmtop_mdcrd():
    out = extract_md(MDA.PRM, MDA.TRJ)
    assert check_shapes(out) == 14 and out["n_frames"] == 11
    assert out["sequence"] == "AEFHRWSSYMVHWK"


def test_amber_prmtop_netcdf_solvated():
    out = extract_md(MDA.PRMncdf, MDA.NCDF, stride=10)
    assert check_shapes(out) >= 1 and out["n_frames"] == 3


def test_multi_model_pdb_uses_its_models_as_frames():
    out = extract_md(MDA.PDB_multiframe)
    assert check_shapes(out) == 28 and out["n_frames"] == 24


def test_mdcath_pdb_xtc(shared_data):
    base = shared_data / "md" / "mdcath_2hbaA00"
    out = extract_md(require(base / "2hbaA00.pdb"), require(base / "2hbaA00_320_0.xtc"), stride=100)
    assert check_shapes(out) == 52 and out["n_frames"] == 5
    assert out["sequence"].startswith("MKVIFLKDVKG")  # CHARMM caps (CAY, CY, ...) stay inside residue 1


def _write_mdcath_h5(path: Path, pdb: Path, xyz_nm: np.ndarray, groups: dict[str, dict[str, slice]]) -> None:
    with h5py.File(path, "w") as h5:
        domain = h5.create_group("2hbaA00")
        domain.create_dataset("pdbProteinAtoms", data=np.bytes_(pdb.read_text()))
        for temp, replicas in groups.items():
            for replica, frames in replicas.items():
                group = domain.create_group(f"{temp}/{replica}")
                group.create_dataset("coords", data=(xyz_nm[frames] * 10.0).astype(np.float32))
                group.create_dataset("box", data=np.eye(3, dtype=np.float32) * 5.0)


def test_mdcath_hdf5_layout(tmp_path, shared_data):
    base = shared_data / "md" / "mdcath_2hbaA00"
    pdb, xtc = require(base / "2hbaA00.pdb"), require(base / "2hbaA00_320_0.xtc")
    xyz = md.load(str(xtc), top=str(pdb))[:12].xyz
    h5 = tmp_path / "mdcath_dataset_2hbaA00.h5"
    _write_mdcath_h5(h5, pdb, xyz, {"320": {"0": slice(0, 6), "1": slice(6, 12)}, "348": {"0": slice(3, 9)}})

    pooled = extract_md(h5)  # default: every replica of the lowest temperature
    direct = extract_md(pdb, xtc, stop=12)
    assert pooled["n_frames"] == 12
    # coordinates pass through Å (float32) and back: allow float32 rounding (SASA's sphere points are sensitive)
    assert_features_close(pooled, direct, atol=1e-4, sasa_atol=2e-3)
    one = extract_md(h5, f"{h5}#348/0")
    assert one["n_frames"] == 6
    assert_features_close(one, extract_md(pdb, xtc, start=3, stop=9), atol=1e-4, sasa_atol=2e-3)
    assert extract_md(pdb, f"{h5}#320/1")["n_frames"] == 6  # PDB topology + h5 trajectory
    with pytest.raises(ValueError, match="no temperature group '400'"):
        extract_md(h5, f"{h5}#400")
    with pytest.raises(ValueError, match="no replica '7'"):
        extract_md(h5, f"{h5}#320/7")


def test_multi_chain_with_insertion_code(tmp_path, golden_files, golden_full):
    """Two copies of 3tvj_I 10 nm apart as chains A and B (multi-model PDB), one insertion code in chain B."""
    pdb, dcd = golden_files
    traj = md.load(str(dcd), top=str(pdb))
    far = md.Trajectory(traj.xyz + np.array([10.0, 0, 0], dtype=np.float32), traj.topology)
    both = traj.stack(far)
    path = tmp_path / "dimer.pdb"
    both.save_pdb(str(path))
    lines = path.read_text().splitlines()
    chains = sorted({line[21] for line in lines if line.startswith("ATOM")})
    assert len(chains) == 2
    second = chains[1]
    first_label = chains[0].strip() or "A"  # a blank chain ID is labelled by position
    edited = []
    for line in lines:
        if line.startswith("ATOM") and line[21] == second and int(line[22:26]) == 5:
            line = line[:26] + "A" + line[27:]  # residue B5 becomes B5A
        edited.append(line)
    path.write_text("\n".join(edited) + "\n")

    out = extract_md(path)
    n = check_shapes(out)
    assert n == 76 and list(out["chain_lengths"]) == [38, 38] and list(out["chain_breaks"]) == [38]
    assert out["sequence"] == golden_full["sequence"] + ":" + golden_full["sequence"]
    ids = out["residue_ids"]
    assert tuple(ids[38 + 4]) == (second, 5, "A") and tuple(ids[0]) == (first_label, 1, "")
    for key in ("vdw", "hbbb", "sb"):  # (corr differs: the dimer is superposed as a whole)
        np.testing.assert_allclose(out[key][:38, :38], golden_full[key], atol=1e-12)
        np.testing.assert_allclose(out[key][38:, 38:], golden_full[key], atol=1e-12)
    for key in INTERACTION_NAMES:
        assert out[key][:38, 38:].sum() == 0 and out[key][38:, :38].sum() == 0  # 10 nm apart
    # Shrake-Rupley's sphere-point grid is not rotation invariant and the dimer is superposed differently
    # (and PDB coordinates carry 3 decimals in Å): ~0.3% differences.
    np.testing.assert_allclose(out["sasa_mean"][38:], golden_full["sasa_mean"], atol=1e-2)


def test_periodic_wrapping_is_undone(tmp_path, golden_files, golden_full):
    """Wrap 3tvj_I into a 2.5 nm box (splitting the protein); with the box in the DCD the features come back."""
    pdb, dcd = golden_files
    traj = md.load(str(dcd), top=str(pdb))
    box = 2.5
    wrapped = md.Trajectory(np.mod(traj.xyz, box), traj.topology,
                            unitcell_lengths=np.full((traj.n_frames, 3), box),
                            unitcell_angles=np.full((traj.n_frames, 3), 90.0))
    path = tmp_path / "wrapped.dcd"
    wrapped.save_dcd(str(path))
    out = extract_md(pdb, path)
    for key in ("vdw", "hbbb", "hbsb", "hbss", "hp", "sb"):
        assert np.abs(out[key] - golden_full[key]).sum() <= 0.01 * golden_full[key].sum() + 0.2, key
    np.testing.assert_allclose(out["rmsf"], golden_full["rmsf"], atol=1e-4)
    np.testing.assert_allclose(out["sasa_mean"], golden_full["sasa_mean"], atol=5e-3)
    # without the box the split protein is detected, not silently measured
    no_box = md.Trajectory(np.mod(traj.xyz, box), traj.topology)
    path2 = tmp_path / "wrapped_nobox.xtc"
    no_box.save_xtc(str(path2))
    with pytest.raises(ValueError, match="split across the periodic box"):
        extract_md(pdb, path2)


# --- frame selection, chunking and replicas ---------------------------------------------------------------

def test_chunking_does_not_change_results(golden_files, golden_full):
    chunked = extract_md(*golden_files, chunk_frames=1)
    assert_features_close(chunked, golden_full, atol=1e-12)


def test_stride_start_stop_and_replica_pooling(tmp_path, golden_files):
    pdb, dcd = golden_files
    traj = md.load(str(dcd), top=str(pdb))
    traj[::3].save_dcd(str(tmp_path / "every3.dcd"))
    traj[2:7].save_dcd(str(tmp_path / "mid.dcd"))
    traj[:4].save_dcd(str(tmp_path / "first.dcd"))
    traj[4:].save_dcd(str(tmp_path / "second.dcd"))
    assert_features_close(extract_md(pdb, dcd, stride=3), extract_md(pdb, tmp_path / "every3.dcd"), atol=1e-5)
    assert_features_close(extract_md(pdb, dcd, start=2, stop=7), extract_md(pdb, tmp_path / "mid.dcd"), atol=1e-5)
    pooled = extract_md(pdb, [tmp_path / "first.dcd", tmp_path / "second.dcd"])
    assert_features_close(pooled, extract_md(pdb, dcd), atol=1e-5)
    assert extract_md(pdb, [dcd, dcd], start=8)["n_frames"] == 4  # selection applies to each replica


# --- bad input ----------------------------------------------------------------------------------------------

def test_missing_files_are_named(golden_files):
    pdb, dcd = golden_files
    with pytest.raises(FileNotFoundError, match=r"trajectory file not found: .*nope\.dcd"):
        extract_md(pdb, "nope.dcd")
    with pytest.raises(FileNotFoundError, match=r"topology file not found: .*nope\.pdb"):
        extract_md("nope.pdb", dcd)


def test_mismatched_topology_names_both_files(shared_data, golden_files):
    _, dcd = golden_files
    other = require(shared_data / "md" / "mdcath_2hbaA00" / "2hbaA00.pdb")
    with pytest.raises(ValueError, match=r"3tvj_I_10frames.dcd has 531 atoms .* topology .*2hbaA00.pdb has 834"):
        extract_md(other, dcd)


def test_truncated_trajectory_names_both_files(tmp_path):
    data = Path(MDA.XTC).read_bytes()
    broken = tmp_path / "cut.xtc"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.xtc with topology .*adk_oplsaa.gro failed"):
        extract_md(MDA.GRO, broken)


def test_missing_hydrogens_is_an_error_or_explicit_nan(tmp_path, golden_files, golden_full):
    pdb, dcd = golden_files
    traj = md.load(str(dcd), top=str(pdb))
    heavy = traj.atom_slice(traj.topology.select("not element H"))
    heavy[0].save_pdb(str(tmp_path / "heavy.pdb"))
    heavy.save_dcd(str(tmp_path / "heavy.dcd"))
    with pytest.raises(ValueError, match="hydrogens"):
        extract_md(tmp_path / "heavy.pdb", tmp_path / "heavy.dcd")
    out = extract_md(tmp_path / "heavy.pdb", tmp_path / "heavy.dcd", missing_hydrogens="skip")
    for name in ("hbbb", "hbsb", "hbss"):
        assert np.isnan(out[name]).all()
    for name in ("vdw", "hp", "sb", "pc"):  # heavy-atom criteria are unaffected by the missing hydrogens
        np.testing.assert_allclose(out[name], golden_full[name], atol=1e-12)


def test_bad_options_and_too_few_frames(golden_files):
    pdb, dcd = golden_files
    for kwargs, message in (({"stride": 0}, "stride"), ({"start": -1}, "start"), ({"start": 5, "stop": 5}, "stop"),
                            ({"frequency": "counts"}, "frequency"), ({"chunk_frames": 0}, "chunk_frames"),
                            ({"missing_hydrogens": "add"}, "missing_hydrogens")):
        with pytest.raises(ValueError, match=message):
            extract_md(pdb, dcd, **kwargs)
    with pytest.raises(ValueError, match="at least 2 frames"):
        extract_md(pdb)  # a single-model PDB
    with pytest.raises(ValueError, match="no frames selected"):
        extract_md(pdb, dcd, start=50)


def test_no_protein_is_an_error(tmp_path):
    water = tmp_path / "water.pdb"
    water.write_text(
        "HETATM    1  O   HOH A   1       0.000   0.000   0.000  1.00  0.00           O\n"
        "HETATM    2  H1  HOH A   1       0.957   0.000   0.000  1.00  0.00           H\n"
        "HETATM    3  H2  HOH A   1      -0.240   0.927   0.000  1.00  0.00           H\nEND\n"
    )
    with pytest.raises(ValueError, match="no protein residues"):
        extract_md(water)
