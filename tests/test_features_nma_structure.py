"""Reading Cα atoms from PDB/mmCIF files, and NMA feature files."""

from __future__ import annotations

import gzip
import itertools
import shutil
from pathlib import Path

import gemmi
import numpy as np
import pytest
from conftest import require

from seqdance.features.feature_files import is_complete_nma_file, load_nma_features, save_nma_features
from seqdance.features.inputs.structures import read_calpha_structure, structure_stem
from seqdance.features.nma import extract_nma

SMALL = "structures/bioemu_reference/multiconf/oodval/P23895/7JK8_A.pdb"  # 102 residues


@pytest.fixture(scope="module")
def golden_pdb(shared_data: Path) -> Path:
    return require(shared_data / "reference" / "nma" / "2g3r.pdb")


@pytest.fixture(scope="module")
def small_pdb(shared_data: Path) -> Path:
    return require(shared_data / SMALL)


def _atom_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.startswith(("ATOM", "HETATM"))]


def test_altlocs_first_conformer_and_non_protein_ignored(golden_pdb: Path) -> None:
    prody = pytest.importorskip("prody")
    prody.confProDy(verbosity="none")
    structure = read_calpha_structure(golden_pdb)
    text = golden_pdb.read_text()
    # waters, sulphate, alternate Cα positions
    assert "HOH" in text and "SO4" in text and any(ln[12:17] == " CA B" for ln in text.splitlines())
    assert structure.n_residues == 119 and structure.chain_ids == ("A",)
    reference = prody.parsePDB(str(golden_pdb)).select("calpha")  # ProDy keeps altloc A
    np.testing.assert_array_equal(structure.coords, reference.getCoords())
    assert structure.sequence == "".join(
        gemmi.find_tabulated_residue(name).one_letter_code.upper() for name in reference.getResnames()
    )
    assert tuple(structure.residue_ids[0]) == ("A", 1485, "") and structure.skipped == ()


def test_gzip_and_mmcif_give_the_same_atoms(golden_pdb: Path, tmp_path: Path) -> None:
    plain = read_calpha_structure(golden_pdb)
    gz = tmp_path / "2g3r.pdb.gz"
    with open(golden_pdb, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    st = gemmi.read_structure(str(golden_pdb))
    st.setup_entities()
    cif = tmp_path / "2g3r.cif"
    st.make_mmcif_document().write_file(str(cif))
    cif_gz = tmp_path / "2g3r.cif.gz"
    with open(cif, "rb") as src, gzip.open(cif_gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    for other in (gz, cif, cif_gz):
        read = read_calpha_structure(other)
        np.testing.assert_allclose(read.coords, plain.coords, atol=1e-3)
        assert read.sequence == plain.sequence
        np.testing.assert_array_equal(read.residue_ids, plain.residue_ids)


def test_residue_without_calpha_is_skipped_and_reported(small_pdb: Path, tmp_path: Path) -> None:
    lines = _atom_lines(small_pdb)
    ca_lines = [ln for ln in lines if ln[12:16] == " CA "]
    victim = ca_lines[10]
    chain, resseq, resname = victim[21], int(victim[22:26]), victim[17:20]
    broken = tmp_path / "broken.pdb"
    broken.write_text("\n".join(ln for ln in lines if ln != victim) + "\nEND\n")
    full = read_calpha_structure(small_pdb)
    read = read_calpha_structure(broken)
    assert read.n_residues == full.n_residues - 1
    assert [(s.chain, s.resseq, s.resname) for s in read.skipped] == [(chain, resseq, resname)]
    assert read.sequence == full.sequence[:10] + full.sequence[11:]
    features = extract_nma(broken)
    assert len(features["nma_res1"]) == full.n_residues - 1
    assert [s.resseq for s in features["skipped_residues"]] == [resseq]


def test_modified_residues_kept_ions_and_ligands_ignored(small_pdb: Path, tmp_path: Path) -> None:
    lines = _atom_lines(small_pdb)
    first_met = next(ln for ln in lines if ln[17:20] == "MET")
    met_id = first_met[21:27]
    edited = []
    for ln in lines:
        if ln[21:27] == met_id:  # MET -> selenomethionine HETATM
            ln = "HETATM" + ln[6:17] + "MSE" + ln[20:]
        edited.append(ln)
    x, y, z = (float(first_met[30:38]) + 30, float(first_met[38:46]), float(first_met[46:54]))
    edited.append(f"HETATM99990 CA    CA A 900    {x:8.3f}{y:8.3f}{z:8.3f}  1.00 20.00          CA  ")
    edited.append(f"HETATM99991  CA  ACE A 901    {x + 3:8.3f}{y:8.3f}{z:8.3f}  1.00 20.00           C  ")
    path = tmp_path / "modified.pdb"
    path.write_text("\n".join(edited) + "\nEND\n")
    full = read_calpha_structure(small_pdb)
    read = read_calpha_structure(path)
    assert read.n_residues == full.n_residues and read.sequence == full.sequence
    assert "MSE" in read.resnames


def test_chain_and_model_selection_and_errors(small_pdb: Path, tmp_path: Path) -> None:
    lines = _atom_lines(small_pdb)
    moved = [f"{ln[:30]}{float(ln[30:38]) + 10:8.3f}{ln[38:]}" for ln in lines]
    multi = tmp_path / "two_models.pdb"
    multi.write_text("MODEL        1\n" + "\n".join(lines) + "\nENDMDL\nMODEL        2\n"
                     + "\n".join(moved) + "\nENDMDL\nEND\n")
    first, second = read_calpha_structure(multi), read_calpha_structure(multi, model=1)
    np.testing.assert_allclose(second.coords - first.coords, [[10.0, 0.0, 0.0]] * first.n_residues, atol=2e-3)
    with pytest.raises(ValueError, match="model 2 requested but the file has 2"):
        read_calpha_structure(multi, model=2)
    chain = first.chain_ids[0]
    assert read_calpha_structure(small_pdb, chains=chain).n_residues == first.n_residues
    with pytest.raises(ValueError, match=r"chain\(s\) \['Z'\] not found"):
        read_calpha_structure(small_pdb, chains="Z")
    with pytest.raises(FileNotFoundError):
        read_calpha_structure(tmp_path / "absent.pdb")
    junk = tmp_path / "junk.pdb"
    junk.write_text("this is not a structure\n")
    with pytest.raises(ValueError, match=r"junk\.pdb"):
        read_calpha_structure(junk)
    water = tmp_path / "water.pdb"
    water.write_text("HETATM    1  O   HOH A   1       1.000   2.000   3.000  1.00 20.00           O\nEND\n")
    with pytest.raises(ValueError, match="no protein Cα atoms"):
        read_calpha_structure(water)


def test_structure_stem() -> None:
    assert structure_stem("/x/1abc.cif.gz") == "1abc"
    assert structure_stem("2g3r.pdb") == "2g3r"
    assert structure_stem("model.v2.PDB") == "model.v2"
    assert structure_stem("noext") == "noext"


def test_feature_file_round_trip(small_pdb: Path, tmp_path: Path) -> None:
    features = extract_nma(small_pdb)
    out = tmp_path / "7jk8.npz"
    save_nma_features(out, features)
    assert is_complete_nma_file(out)
    back = load_nma_features(out)
    assert set(back) == set(features)
    for key, value in features.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(back[key], value)
        else:
            assert back[key] == value, key
    small = tmp_path / "small.npz"
    save_nma_features(small, features, dtype=np.float32, compress=True)
    assert load_nma_features(small)["nma_pair1"].dtype == np.float32
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(out.read_bytes()[:1000])
    assert not is_complete_nma_file(truncated) and not is_complete_nma_file(tmp_path / "none.npz")


def test_structure_conformation_equals_an_independent_computation(small_pdb: Path) -> None:
    """extract_nma reports each chain's Rg, end-to-end distance and asphericity of its one structure (nm)."""
    features = extract_nma(small_pdb)
    coords = read_calpha_structure(small_pdb).coords / 10.0  # Å -> nm
    starts = np.concatenate([[0], np.cumsum(features["chain_lengths"])])
    assert len(features["conformation_rg_mean"]) == len(features["chain_lengths"])
    for k, (lo, hi) in enumerate(itertools.pairwise(starts)):
        chain = coords[lo:hi]
        centred = chain - chain.mean(axis=0)
        rg = np.sqrt((centred**2).sum(axis=1).mean())
        eigen = np.linalg.eigvalsh(centred.T @ centred / len(chain))
        asphericity = ((eigen[:, None] - eigen[None, :]) ** 2).sum() / 2 / (2 * eigen.sum() ** 2)
        assert features["conformation_rg_mean"][k] == pytest.approx(rg, rel=1e-12)
        assert features["conformation_ree_mean"][k] == pytest.approx(np.linalg.norm(chain[-1] - chain[0]), rel=1e-12)
        assert features["conformation_asphericity_mean"][k] == pytest.approx(asphericity, rel=1e-9)
        assert features["conformation_rg_std"][k] == 0.0 and features["conformation_n_frames"][k] == 1
