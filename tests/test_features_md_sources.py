"""extract_md on every input kind of docs/design.md#input-kinds, on real trajectories: one-bead-per-residue traces (Cα
properties equal to the all-atom run's, conformational properties equal to an independent computation, the rest
missing), back-mapped traces, hydrogen-less all-atom inputs given hydrogens, PED-like multi-model ensembles (PDB and
mmCIF), and the one-line errors for bad input (file and frame/residue/model named)."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest
from _cg_files import write_calpha_files, write_heavy_files, write_martini_files
from conftest import require

from seqdance.errors import InputError
from seqdance.features import extract_md
from seqdance.features.options import BACKMAP_REPRODUCED, CALPHA_PROPERTIES
from seqdance.features.results import MdFeatures
from seqdance.schema import PROPERTY_BY_NAME, properties_of_kind

MDA = pytest.importorskip("MDAnalysisTests.datafiles", reason="MDAnalysisTests (test extra) holds the MD test data")
needs_pulchra = pytest.mark.skipif(
    find_spec("pypulchra") is None,
    reason="back-mapping needs pypulchra (pip install 'seqdance[backmap]'; it compiles with a C++ compiler)")
needs_openmm = pytest.mark.skipif(
    find_spec("openmm") is None, reason="adding hydrogens needs OpenMM (pip install 'seqdance[hydrogens]')")

MD_NAMES = tuple(p.name for p in properties_of_kind("md"))


def to_mmcif(pdb: Path, out: Path) -> Path:
    import gemmi

    structure = gemmi.read_structure(str(pdb))
    structure.setup_entities()
    structure.make_mmcif_document().write_file(str(out))
    return out


@pytest.fixture(scope="module")
def atlas(shared_data: Path) -> tuple[Path, Path]:
    ref = shared_data / "reference" / "md"
    return require(ref / "3tvj_I.pdb"), require(ref / "3tvj_I_10frames.dcd")


@pytest.fixture(scope="module")
def mdcath(shared_data: Path) -> tuple[Path, Path]:
    base = shared_data / "md" / "mdcath_2hbaA00"
    return require(base / "2hbaA00.pdb"), require(base / "2hbaA00_320_0.xtc")


def assert_missing(features: dict, names: tuple[str, ...], like: dict) -> None:
    """``names`` are listed as missing (schema order), NaN everywhere with the shapes of ``like``; others are not."""
    assert tuple(features["missing_properties"]) == tuple(n for n in MD_NAMES if n in names)
    for name in MD_NAMES:
        key = PROPERTY_BY_NAME[name].raw_key
        assert np.shape(features[key]) == np.shape(like[key]), key
        if name in names:
            assert np.isnan(features[key]).all(), key
        elif PROPERTY_BY_NAME[name].activation != "softmax":  # histograms are NaN where an angle is undefined
            assert np.isfinite(features[key]).all(), key


def independent_conformation(ca: np.ndarray) -> dict[str, float]:
    """Rg, Re, asphericity (means, s.d.) and the Flory fit of a single-chain Cα trace (F, N, 3) nm, written
    directly from the definitions of docs/design.md#conformational-properties (MDTraj for Rg; loops over separations;
    scipy's curve_fit)."""
    from scipy.optimize import curve_fit

    traj = md.Trajectory(ca.astype(np.float32), None)
    rg = md.compute_rg(traj)  # unweighted without masses
    ree = np.linalg.norm(ca[:, -1] - ca[:, 0], axis=1)
    centred = ca - ca.mean(axis=1, keepdims=True)
    tensors = np.einsum("fni,fnj->fij", centred, centred) / ca.shape[1]
    lam = np.linalg.eigvalsh(tensors)
    l1, l2, l3 = lam[:, 0], lam[:, 1], lam[:, 2]
    delta = 1 - 3 * (l1 * l2 + l2 * l3 + l3 * l1) / (l1 + l2 + l3) ** 2
    n = ca.shape[1]
    separations = np.arange(6, n)
    r_s = np.array([np.sqrt(np.mean(np.sum((ca[:, s:] - ca[:, :-s]) ** 2, axis=-1))) for s in separations])
    (r0, nu), _ = curve_fit(lambda s, a, b: a * s**b, separations.astype(float), r_s, p0=(0.4, 0.5), maxfev=10000)
    return {"rg_mean": rg.mean(), "rg_std": rg.std(), "ree_mean": ree.mean(), "ree_std": ree.std(),
            "asphericity_mean": delta.mean(), "asphericity_std": delta.std(), "nu": nu, "r0": r0}


@pytest.mark.parametrize("system", ["mdcath_2hbaA00", "adenylate_kinase"])
def test_calpha_input_gives_the_all_atom_runs_trace_properties(system: str, request, tmp_path: Path) -> None:
    if system == "mdcath_2hbaA00":
        top, traj_path = request.getfixturevalue("mdcath")
        stride = 10
    else:
        top, traj_path, stride = MDA.PSF, MDA.DCD, 4
    reference = extract_md(top, traj_path, stride=stride, missing_hydrogens="skip")
    traj = md.load(str(traj_path), top=str(top), stride=stride)
    pdb, dcd = write_calpha_files(traj, tmp_path, system)

    out = extract_md(pdb, dcd)
    assert set(out) == set(MdFeatures.__required_keys__)
    assert out["input_kind"] == "calpha" and reference["input_kind"] == "all_atom"
    assert out["sequence"] == reference["sequence"] and out["n_frames"] == reference["n_frames"]
    np.testing.assert_allclose(out["rmsf"], reference["rmsf"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out["corr"], reference["corr"], rtol=0, atol=1e-5)
    assert_missing(out, tuple(n for n in MD_NAMES if n not in CALPHA_PROPERTIES), reference)

    ca = md.load(str(dcd), top=str(pdb)).xyz.astype(np.float64)
    expected = independent_conformation(ca)
    for key, value in expected.items():
        # scipy's curve_fit stops ~1e-6 short of the optimum (ours converges to round-off): 1e-5 for the fit
        tolerance = 1e-5 if key in ("nu", "r0") else 1e-6
        assert out[f"conformation_{key}"][0] == pytest.approx(value, rel=1e-5, abs=tolerance), key
        assert out[f"conformation_{key}"][0] == pytest.approx(reference[f"conformation_{key}"][0], rel=1e-5,
                                                               abs=1e-6), key


@pytest.mark.parametrize("system", ["mdcath_2hbaA00", "adenylate_kinase"])
def test_martini_input_is_read_by_its_backbone_beads(system: str, request, tmp_path: Path) -> None:
    """A Martini-like model (BB + SC1 beads, water beads) of a real trajectory: the trace properties come from the
    BB beads exactly (as from a Cα trace at those positions), water is left out, the rest is missing; and they
    stay close to the all-atom run's Cα values (the BB bead sits at the backbone's centre)."""
    if system == "mdcath_2hbaA00":
        top, traj_path = request.getfixturevalue("mdcath")
        stride = 10
    else:
        top, traj_path, stride = MDA.PSF, MDA.DCD, 4
    traj = md.load(str(traj_path), top=str(top), stride=stride)
    pdb, dcd, backbone = write_martini_files(traj, tmp_path, system)
    calpha_pdb, calpha_dcd = write_calpha_files(md.Trajectory(backbone, traj.atom_slice(
        traj.topology.select("name CA and protein")).topology), tmp_path, "bb_as_calpha")

    out = extract_md(pdb, dcd)
    same = extract_md(calpha_pdb, calpha_dcd)  # the BB positions written as a one-bead trace
    assert out["input_kind"] == "martini" and same["input_kind"] == "calpha"
    assert out["sequence"] == same["sequence"] and out["n_frames"] == traj.n_frames
    for key in ("rmsf", "corr", "conformation_rg_mean", "conformation_ree_mean", "conformation_nu"):
        np.testing.assert_allclose(out[key], same[key], rtol=0, atol=1e-6, err_msg=key)
    assert tuple(out["missing_properties"]) == tuple(same["missing_properties"])
    assert_missing(out, tuple(n for n in MD_NAMES if n not in CALPHA_PROPERTIES), same)

    reference = extract_md(top, traj_path, stride=stride, missing_hydrogens="skip")  # Cα of the all-atom run
    assert np.corrcoef(out["rmsf"], reference["rmsf"])[0, 1] > 0.99
    upper = np.triu_indices(len(out["rmsf"]), 1)
    assert np.corrcoef(out["corr"][upper], reference["corr"][upper])[0, 1] > 0.99
    assert out["conformation_rg_mean"][0] == pytest.approx(reference["conformation_rg_mean"][0], rel=0.02)


def test_martini_inputs_that_cannot_be_read(atlas, tmp_path: Path) -> None:
    traj = md.load(str(atlas[1]), top=str(atlas[0]))
    pdb, dcd, _ = write_martini_files(traj, tmp_path, "cg")
    with pytest.raises(InputError, match=r"Martini model .* backward"):
        extract_md(pdb, dcd, backmap="pulchra")
    with pytest.raises(InputError, match="Martini model"):
        extract_md(pdb, dcd, add_hydrogens=True)
    # a residue whose backbone bead is missing: named, not mistaken for an all-atom input
    lines = pdb.read_text().splitlines()
    first_bb = next(k for k, line in enumerate(lines) if line.startswith("ATOM") and line[12:16].strip() == "BB")
    lines[first_bb] = lines[first_bb][:12] + " BX " + lines[first_bb][16:]
    broken = tmp_path / "broken.pdb"
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"broken\.pdb: .*Martini.* residue .*no backbone bead 'BB'"):
        extract_md(broken, dcd)


def test_calpha_input_options_and_frame_selection(atlas, tmp_path: Path) -> None:
    traj = md.load(str(atlas[1]), top=str(atlas[0]))
    pdb, dcd = write_calpha_files(traj, tmp_path, "trace")
    part = extract_md(pdb, dcd, start=2, stride=3)
    assert part["n_frames"] == 3  # frames 2, 5, 8
    whole = extract_md(pdb, [dcd, dcd])  # two replicas pool their frames
    assert whole["n_frames"] == 2 * traj.n_frames
    with pytest.raises(InputError, match=r"trace\.pdb: a one-bead-per-residue topology has no atoms to add hydrogens"):
        extract_md(pdb, dcd, add_hydrogens=True)
    with pytest.raises(InputError, match="backmap_properties applies to back-mapped frames"):
        extract_md(pdb, dcd, backmap_properties="all")
    with pytest.raises(InputError, match=r"3tvj_I\.pdb: back-mapping rebuilds atoms from a one-bead-per-residue"):
        extract_md(atlas[0], atlas[1], backmap="pulchra")
    with pytest.raises(InputError, match="backmap must be one of"):
        extract_md(pdb, dcd, backmap="cg2all")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"pH for adding hydrogens must lie in \[0, 14\]"):
        extract_md(atlas[0], atlas[1], add_hydrogens=True, hydrogen_ph=15)


@needs_pulchra
@needs_openmm
def test_backmapped_input(atlas, tmp_path: Path) -> None:
    traj = md.load(str(atlas[1]), top=str(atlas[0]))
    reference = extract_md(*atlas, stride=3)
    pdb, dcd = write_calpha_files(traj, tmp_path, "trace")
    calpha = extract_md(pdb, dcd, stride=3)
    rebuilt = extract_md(pdb, dcd, stride=3, backmap="pulchra")
    assert rebuilt["input_kind"] == "backmapped" and rebuilt["n_frames"] == 4
    assert_missing(rebuilt, tuple(n for n in MD_NAMES if n not in BACKMAP_REPRODUCED), reference)
    for key in ("rmsf", "corr", "conformation_rg_mean", "conformation_nu"):  # from the trace, never rebuilt frames
        np.testing.assert_array_equal(rebuilt[key], calpha[key])
    assert np.corrcoef(rebuilt["sasa_mean"], reference["sasa_mean"])[0, 1] > 0.95
    np.testing.assert_allclose(rebuilt["ss"].sum(axis=1), 1.0)
    assert rebuilt["hbbb"].sum() > 0.5 * reference["hbbb"].sum()

    everything = extract_md(pdb, dcd, stride=3, backmap="pulchra", backmap_properties="all")
    assert everything["missing_properties"] == ()
    np.testing.assert_array_equal(everything["sasa_mean"], rebuilt["sasa_mean"])  # seeded: reproducible
    defined = ~np.isnan(reference["chi"]).any(axis=1)
    assert np.isfinite(everything["chi"][defined]).all()
    np.testing.assert_array_equal(np.isnan(everything["chi"]).any(axis=1), ~defined)  # Gly/Ala have no chi1
    assert everything["hp"].sum() > 0


@needs_openmm
def test_hydrogen_less_input_gets_hydrogens(atlas, tmp_path: Path) -> None:
    traj = md.load(str(atlas[1]), top=str(atlas[0]))
    reference = extract_md(*atlas, stride=2)
    pdb, dcd = write_heavy_files(traj, tmp_path, "heavy")
    with pytest.raises(InputError, match=r"heavy\.pdb: the protein has no hydrogens .*--add-hydrogens"):
        extract_md(pdb, dcd, stride=2)
    skipped = extract_md(pdb, dcd, stride=2, missing_hydrogens="skip")
    assert skipped["input_kind"] == "all_atom"
    assert_missing(skipped, ("hbbb", "hbsb", "hbss"), reference)

    protonated = extract_md(pdb, dcd, stride=2, add_hydrogens=True)
    assert protonated["input_kind"] == "all_atom_protonated" and protonated["missing_properties"] == ()
    for name in ("hbbb", "hbsb", "hbss"):
        r = np.corrcoef(protonated[name].ravel(), reference[name].ravel())[0, 1]
        assert r > 0.9, (name, r)  # docs/coarse_grained.md: r >= 0.98 on 20 frames
    np.testing.assert_array_equal(protonated["rmsf"], skipped["rmsf"])  # heavy atoms untouched
    np.testing.assert_array_equal(protonated["vdw"], skipped["vdw"])

    # an input that has hydrogens is used as it is
    unchanged = extract_md(*atlas, stride=2, add_hydrogens=True)
    assert unchanged["input_kind"] == "all_atom"
    for name in MD_NAMES:
        key = PROPERTY_BY_NAME[name].raw_key
        np.testing.assert_array_equal(unchanged[key], reference[key])


def write_models(traj: md.Trajectory, path: Path) -> Path:
    """Frames as MODEL records of one PDB file (a PED-style conformer set)."""
    traj.save_pdb(str(path))
    assert path.read_text().count("MODEL") == traj.n_frames
    return path


@needs_openmm
def test_ped_like_ensemble_without_hydrogens(atlas, tmp_path: Path) -> None:
    traj = md.load(str(atlas[1]), top=str(atlas[0]))
    heavy = traj.atom_slice(traj.topology.select("not element H"))
    ensemble = write_models(heavy, tmp_path / "ped_ensemble.pdb")
    out = extract_md(ensemble, add_hydrogens=True)  # the file is its own trajectory
    assert out["n_frames"] == traj.n_frames and out["input_kind"] == "all_atom_protonated"
    assert out["missing_properties"] == ()
    reference = extract_md(*atlas)
    np.testing.assert_allclose(out["rmsf"], reference["rmsf"], atol=1e-3)  # PDB holds coordinates to 1e-4 nm
    np.testing.assert_allclose(out["sasa_mean"], reference["sasa_mean"], rtol=0.1, atol=0.05)
    assert np.corrcoef(out["hbbb"].ravel(), reference["hbbb"].ravel())[0, 1] > 0.9
    from_cif = extract_md(to_mmcif(ensemble, tmp_path / "ped_ensemble.cif"), add_hydrogens=True)
    for name in MD_NAMES:
        key = PROPERTY_BY_NAME[name].raw_key
        np.testing.assert_allclose(from_cif[key], out[key], atol=1e-5, err_msg=key)


def test_nmr_ensemble_end_to_end(tmp_path: Path) -> None:
    """The 24-model NMR ensemble of neopetrosiamide (MDAnalysisTests; hydrogens present): models superposed,
    every feature defined, PDB and mmCIF alike, frames selectable."""
    out = extract_md(MDA.PDB_multiframe)
    assert out["n_frames"] == 24 and out["input_kind"] == "all_atom" and out["missing_properties"] == ()
    assert len(out["sequence"]) == 28 and (out["rmsf"] > 0).all()
    np.testing.assert_allclose(np.diag(out["corr"]), 1.0, atol=1e-9)
    for name in MD_NAMES:
        if PROPERTY_BY_NAME[name].activation != "softmax":
            assert np.isfinite(out[PROPERTY_BY_NAME[name].raw_key]).all(), name
    assert out["hbbb"].sum() > 0
    from_cif = extract_md(to_mmcif(Path(MDA.PDB_multiframe), tmp_path / "nmr.cif"))
    np.testing.assert_allclose(from_cif["rmsf"], out["rmsf"], atol=1e-6)
    np.testing.assert_allclose(from_cif["hbbb"], out["hbbb"], atol=1e-9)
    assert extract_md(MDA.PDB_multiframe, start=2, stride=5)["n_frames"] == 5  # models 2, 7, 12, 17, 22


def _edit_model(source: Path, target: Path, model: int, edit) -> Path:
    """A copy of a multi-model PDB whose model ``model`` (1-based) has ``edit`` applied to its first HA record."""
    out, current, done = [], 0, False
    for line in source.read_text().splitlines():
        if line.startswith("MODEL"):
            current += 1
        if current == model and not done and line.startswith("ATOM") and line[12:16] == " HA ":
            done = True
            line = edit(line)
            if line is None:
                continue
        out.append(line)
    target.write_text("\n".join(out) + "\n")
    return target


def test_models_that_disagree_name_the_file_and_the_model(tmp_path: Path) -> None:
    source = Path(MDA.PDB_multiframe)
    dropped = _edit_model(source, tmp_path / "dropped.pdb", 3, lambda line: None)
    message = r"dropped\.pdb: model 3 has 391 atoms, model 1 has 392 \(first difference at atom 15: HB2 of PHE 1"
    with pytest.raises(InputError, match=message):
        extract_md(dropped)
    with pytest.raises(InputError, match=r"dropped\.cif: model 3 has 391 atoms, model 1 has 392"):
        extract_md(to_mmcif(dropped, tmp_path / "dropped.cif"))
    renamed = _edit_model(source, tmp_path / "renamed.pdb", 7, lambda line: line[:12] + " HX " + line[16:])
    with pytest.raises(InputError, match=r"renamed\.pdb: model 7 holds other atoms than model 1 \(first difference "
                                         r"at atom 15: HX of PHE 1 \(chain A\) here, HA of PHE 1 \(chain A\)"):
        extract_md(renamed)
    # as the trajectory of another topology, too
    with pytest.raises(InputError, match=r"renamed\.pdb: model 7 holds other atoms"):
        extract_md(MDA.PDB_multiframe, renamed)


def _bead_file(tmp_path: Path, names: list[str], xyz: np.ndarray, stem: str) -> tuple[Path, Path]:
    top = md.Topology()
    chain = top.add_chain()
    for k, name in enumerate(names, start=1):
        top.add_atom("CA", md.element.carbon, top.add_residue(name, chain, resSeq=k))
    traj = md.Trajectory(xyz.astype(np.float32), top)
    pdb, dcd = tmp_path / f"{stem}.pdb", tmp_path / f"{stem}.dcd"
    traj[0].save_pdb(str(pdb))
    traj.save_dcd(str(dcd))
    return pdb, dcd


def test_bad_bead_inputs_are_one_line_errors(atlas, tmp_path: Path) -> None:
    traj = md.load(str(atlas[1]), top=str(atlas[0]))
    ca = traj.atom_slice(traj.topology.select("name CA"))
    names = [r.name for r in ca.topology.residues]
    unknown = names.copy()
    unknown[4] = "UNK"
    pdb, dcd = _bead_file(tmp_path, unknown, ca.xyz, "unknown")
    with pytest.raises(InputError, match=r"unknown\.pdb: bead 5 \(residue 'UNK' 5, chain A\) is not an amino acid"):
        extract_md(pdb, dcd)
    broken = ca.xyz.copy()
    broken[6, 20:] += 1.0  # frame 6: the chain falls apart between residues 20 and 21
    pdb, dcd = _bead_file(tmp_path, names, broken, "broken")
    with pytest.raises(InputError, match=r"broken\.dcd: frame 6: chain break between consecutive beads \w+20 "
                                         r"\(chain A\) and \w+21 \(chain A\)"):
        extract_md(pdb, dcd)


@needs_pulchra
def test_backmapping_failure_names_file_and_frame(atlas, tmp_path: Path) -> None:
    traj = md.load(str(atlas[1]), top=str(atlas[0]))
    ca = traj.atom_slice(traj.topology.select("name CA"))
    xyz = ca.xyz.copy()
    xyz[3] = 0.0  # frame 3 zero-filled, as a crashed writer leaves it: no chain break, but PULCHRA fails
    pdb, dcd = _bead_file(tmp_path, [r.name for r in ca.topology.residues], xyz, "collapsed")
    with pytest.raises(InputError, match=r"collapsed\.dcd: frame 3: back-mapping \(pulchra\) failed"):
        extract_md(pdb, dcd, backmap="pulchra")
    assert extract_md(pdb, dcd)["n_frames"] == 10  # the trace itself is fine


def test_features_md_command_writes_input_kind_and_missing_properties(atlas, tmp_path: Path, capsys) -> None:
    from seqdance.cli.main import main

    traj = md.load(str(atlas[1]), top=str(atlas[0]))
    pdb, dcd = write_calpha_files(traj, tmp_path, "trace")
    out = tmp_path / "trace.npz"
    assert main(["features", "md", "-t", str(pdb), "-x", str(dcd), "-o", str(out), "--no-progress"]) == 0
    assert "calpha input (missing: sasa_mean, sasa_std" in capsys.readouterr().out
    with np.load(out) as data:
        assert str(data["input_kind"]) == "calpha"
        assert tuple(data["missing_properties"]) == tuple(n for n in MD_NAMES if n not in CALPHA_PROPERTIES)
        assert np.isnan(data["sasa_mean"]).all() and np.isfinite(data["rmsf"]).all()
        options = json.loads(str(data["fingerprint"]))["options"]
    assert options["backmap"] is None and options["add_hydrogens"] is False and options["hydrogen_ph"] == 7.0
    assert main(["features", "md", "-t", str(pdb), "-x", str(dcd), "-o", str(out), "--no-progress"]) == 0
    assert "up to date" in capsys.readouterr().out
    # a changed option recomputes; a hydrogen option without hydrogens to add is refused (as in a manifest)
    assert main(["features", "md", "-t", str(pdb), "-x", str(dcd), "-o", str(out), "--no-progress",
                 "--stride", "2"]) == 0
    assert "up to date" not in capsys.readouterr().out
    assert main(["features", "md", "-t", str(pdb), "-x", str(dcd), "-o", str(out), "--no-progress",
                 "--hydrogen-ph", "6.5"]) == 1
    assert "--hydrogen-ph/--hydrogen-forcefield apply when hydrogens are added" in capsys.readouterr().err
