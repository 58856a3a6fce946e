"""Conformational properties (docs/design.md#conformational-properties) against MDTraj and independent formulas on real
trajectories."""

from __future__ import annotations

import math

import mdtraj as md
import numpy as np
import pytest
from conftest import require

from seqdance.features.conformation import (
    ChainConformation,
    ConformationAccumulator,
    asphericity,
    chains_from_arrays,
    conformation_arrays,
    conformational_properties,
    end_to_end_distance,
    fit_flory_exponent,
    gyration_tensors,
    radius_of_gyration,
    rms_distance_by_separation,
)

TOL = 1e-6


def _calpha_trajectory(topology, trajectory, stride: int = 1) -> md.Trajectory:
    top = md.load_topology(str(topology))
    ca = top.select("name CA and protein")
    return md.load(str(trajectory), top=str(topology), atom_indices=ca, stride=stride)


@pytest.fixture(scope="module")
def mdcath_ca(shared_data) -> md.Trajectory:
    base = shared_data / "md" / "mdcath_2hbaA00"
    return _calpha_trajectory(require(base / "2hbaA00.pdb"), require(base / "2hbaA00_320_0.xtc"))


@pytest.fixture(scope="module")
def adk_ca() -> md.Trajectory:
    datafiles = pytest.importorskip("MDAnalysisTests.datafiles")
    return _calpha_trajectory(datafiles.PSF, datafiles.DCD)


def _independent_gyration(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame loop: gyration tensor by explicit outer products, asphericity from the traceless tensor."""
    tensors, deltas = [], []
    for frame in xyz.astype(np.float64):
        c = frame - frame.mean(axis=0)
        s = sum(np.outer(r, r) for r in c) / len(c)
        hat = s - np.trace(s) / 3 * np.eye(3)
        tensors.append(s)
        deltas.append(1.5 * np.trace(hat @ hat) / np.trace(s) ** 2)  # = 1 − 3 I2 / I1² (eigenvalue form)
    return np.array(tensors), np.array(deltas)


@pytest.mark.parametrize("name", ["mdcath_ca", "adk_ca"])
def test_matches_mdtraj_and_independent_gyration_tensor(name, request):
    traj = request.getfixturevalue(name)
    assert traj.n_frames > 50 and traj.n_atoms > 50
    xyz = traj.xyz
    rg = radius_of_gyration(xyz)
    np.testing.assert_allclose(rg, md.compute_rg(traj), rtol=0, atol=TOL)  # Cα only: equal masses
    tensors = gyration_tensors(xyz)
    np.testing.assert_allclose(tensors, md.compute_gyration_tensor(traj), rtol=0, atol=TOL)
    ref_tensors, ref_delta = _independent_gyration(xyz)
    np.testing.assert_allclose(tensors, ref_tensors, rtol=0, atol=TOL)
    np.testing.assert_allclose(asphericity(tensors), ref_delta, rtol=0, atol=TOL)
    np.testing.assert_allclose(rg, np.sqrt(np.trace(ref_tensors, axis1=1, axis2=2)), rtol=0, atol=TOL)
    ree = md.compute_distances(traj, [[0, traj.n_atoms - 1]], periodic=False)[:, 0]
    np.testing.assert_allclose(end_to_end_distance(xyz), ree, rtol=0, atol=TOL)

    (chain,) = conformational_properties(xyz)
    assert chain.n_frames == traj.n_frames and chain.n_residues == traj.n_atoms
    assert chain.rg_mean == pytest.approx(float(np.mean(md.compute_rg(traj))), abs=TOL)
    assert chain.rg_std == pytest.approx(float(np.std(md.compute_rg(traj))), abs=TOL)
    assert chain.ree_mean == pytest.approx(float(ree.mean()), abs=TOL)
    assert chain.ree_std == pytest.approx(float(ree.std()), abs=TOL)
    assert chain.asphericity_mean == pytest.approx(float(ref_delta.mean()), abs=TOL)
    assert chain.asphericity_std == pytest.approx(float(ref_delta.std()), abs=TOL)
    assert chain.scaled_rg == pytest.approx(chain.rg_mean / traj.n_atoms**0.366, rel=1e-12)
    assert 0 < chain.asphericity_mean < 1 and math.isfinite(chain.nu)


def test_rms_distance_by_separation_matches_pairwise_loop(mdcath_ca):
    xyz = mdcath_ca.xyz[::10].astype(np.float64)
    n = xyz.shape[1]
    d2 = ((xyz[:, :, None, :] - xyz[:, None, :, :]) ** 2).sum(-1)  # (F, N, N)
    expected = np.array([np.sqrt(np.mean([d2[:, i, i + s] for i in range(n - s)])) for s in range(n)])
    np.testing.assert_allclose(rms_distance_by_separation(xyz), expected, rtol=1e-10, atol=1e-12)


def test_chunked_accumulation_equals_one_pass(adk_ca):
    xyz = adk_ca.xyz
    acc = ConformationAccumulator()
    for start in range(0, len(xyz), 17):
        acc.add(xyz[start:start + 17])
    (chunked,) = acc.result()
    (whole,) = conformational_properties(xyz)
    for key, value in whole.as_dict().items():
        assert chunked.as_dict()[key] == pytest.approx(value, rel=1e-10, abs=1e-12), key


def test_chains_are_separate_and_rigid_motion_invariant(adk_ca):
    xyz = adk_ca.xyz[:20].astype(np.float64)
    first, second = xyz[:, :100], xyz[:, 100:]
    chains = conformational_properties(xyz, chain_lengths=[100, xyz.shape[1] - 100])
    assert [c.n_residues for c in chains] == [100, xyz.shape[1] - 100]
    assert chains[0] == conformational_properties(first)[0]
    assert chains[1] == conformational_properties(second)[0]
    # random rotation + translation per frame changes nothing
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(20, 3, 3)))
    moved = np.einsum("fij,fnj->fni", q, first) + rng.normal(size=(20, 1, 3))
    for key, value in chains[0].as_dict().items():
        assert conformational_properties(moved)[0].as_dict()[key] == pytest.approx(value, rel=1e-9, abs=1e-12)


def _fit_gradient(rms: np.ndarray, r0: float, nu: float) -> np.ndarray:
    """Gradient of the least-squares cost Σ (R(s) − R0 s^ν)² over s > 5, relative to the cost's own scale."""
    s = np.arange(rms.size, dtype=np.float64)[6:]
    y = rms[6:]
    model = r0 * s**nu
    residual = y - model
    grad = -2 * np.array([residual @ (model / r0), residual @ (model * np.log(s))])
    return grad / (2 * np.abs(y) @ np.abs(model) * np.log(s).max())


@pytest.mark.parametrize("name", ["mdcath_ca", "adk_ca"])
def test_flory_fit_is_converged_to_round_off_and_agrees_with_curve_fit(name, request):
    """The known failure of the rigid-motion test: ν moved by 7.5e-8 (relative) under a rotation because the
    iterative fit stopped at its tolerance on a folded chain's flat R(s). Now the fit is solved to round-off: its
    gradient is zero to ~1e-15 of the cost's scale, a rotated copy gives ν to 1e-12, and scipy's curve_fit (the
    reference's fit) lands on the same optimum to its own precision."""
    from scipy.optimize import curve_fit

    xyz = request.getfixturevalue(name).xyz.astype(np.float64)
    rms = rms_distance_by_separation(xyz)
    fit = fit_flory_exponent(rms)
    assert np.abs(_fit_gradient(rms, fit.r0, fit.nu)).max() < 1e-13
    fixed = fit_flory_exponent(rms, r0=0.55)
    s = np.arange(rms.size, dtype=np.float64)[6:]
    assert abs((rms[6:] - 0.55 * s**fixed.nu) @ (s**fixed.nu * np.log(s))) < 1e-12 * (rms[6:] @ s**fixed.nu)
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(xyz.shape[0], 3, 3)))
    moved = fit_flory_exponent(rms_distance_by_separation(np.einsum("fij,fnj->fni", q, xyz) + 5.0))
    assert moved.nu == pytest.approx(fit.nu, rel=1e-12) and moved.r0 == pytest.approx(fit.r0, rel=1e-12)
    (r0, nu), cov = curve_fit(lambda t, a, b: a * t**b, s, rms[6:], p0=(0.4, 0.5), maxfev=10000)
    assert nu == pytest.approx(fit.nu, rel=1e-3, abs=1e-6) and r0 == pytest.approx(fit.r0, rel=1e-4)
    assert fit.nu_stderr == pytest.approx(math.sqrt(cov[1, 1]), rel=1e-3)  # curve_fit's definition of the error


def test_flory_fit_reports_its_quality_beside_nu(adk_ca):
    """ν of a folded chain (adenylate kinase) is a fit without meaning: R² near 0; an ideal chain's is near 1."""
    (folded,) = conformational_properties(adk_ca.xyz.astype(np.float64))
    assert folded.nu_r2 < 0.1 and abs(folded.nu) < 0.05
    assert (folded.nu_s_min, folded.nu_s_max) == (6, folded.n_residues - 1)
    (ideal,) = conformational_properties(_random_walks(400, 60, bond=0.38, seed=2))
    assert ideal.nu_r2 > 0.99 and (ideal.nu_s_min, ideal.nu_s_max) == (6, 59)
    fit = fit_flory_exponent(rms_distance_by_separation(_random_walks(400, 60, bond=0.38, seed=2)))
    assert fit.r_squared == ideal.nu_r2 and fit.n_points == 54
    # the quality travels with ν: arrays of the feature files, and dicts of the store's provenance
    back = chains_from_arrays(conformation_arrays([folded, ideal]))
    assert back == [folded, ideal]
    assert ChainConformation.from_dict(folded.as_dict()) == folded
    old = {k: v for k, v in folded.as_dict().items() if not k.startswith("nu_")}  # a record written before
    assert math.isnan(ChainConformation.from_dict(old).nu_r2) and ChainConformation.from_dict(old).nu_s_max == 0


def _random_walks(n_chains: int, n_residues: int, bond: float, seed: int) -> np.ndarray:
    """Freely jointed chains: bonds of fixed length in uniformly random directions (an ideal chain)."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(n_chains, n_residues - 1, 3))
    steps *= bond / np.linalg.norm(steps, axis=-1, keepdims=True)
    return np.concatenate([np.zeros((n_chains, 1, 3)), np.cumsum(steps, axis=1)], axis=1)


def test_flory_exponent_of_ideal_random_walk_is_one_half():
    # 2,000 ideal chains of 200 residues: <R(s)^2> = s b^2 exactly, sampling noise in nu is ~0.005
    walks = _random_walks(2000, 200, bond=0.38, seed=7)
    (chain,) = conformational_properties(walks)
    assert chain.nu == pytest.approx(0.50, abs=0.03)
    assert chain.r0 == pytest.approx(0.38, rel=0.1)
    fixed = fit_flory_exponent(rms_distance_by_separation(walks), r0=0.38)
    assert fixed.r0_fixed and fixed.r0 == 0.38
    assert fixed.nu == pytest.approx(0.50, abs=0.03)
    # and Rg of an ideal chain: <Rg^2> = b^2 (N^2 - 1) / (6 N)
    assert np.mean(radius_of_gyration(walks) ** 2) == pytest.approx(0.38**2 * (200**2 - 1) / (6 * 200), rel=0.03)


def test_rod_and_single_structure():
    rod = np.zeros((40, 3))
    rod[:, 0] = np.arange(40) * 0.38
    (chain,) = conformational_properties(rod)  # one structure = one frame
    assert chain.n_frames == 1 and chain.rg_std == 0 and chain.ree_std == 0
    assert chain.nu == pytest.approx(1.0, abs=1e-8) and chain.r0 == pytest.approx(0.38, rel=1e-8)
    assert chain.asphericity_mean == pytest.approx(1.0, abs=1e-12)
    assert chain.ree_mean == pytest.approx(39 * 0.38)
    assert chain.rg_mean == pytest.approx(0.38 * math.sqrt((40**2 - 1) / 12))


def test_short_chain_has_no_flory_exponent_and_round_trips():
    (chain,) = conformational_properties(np.random.default_rng(0).normal(size=(5, 7, 3)))
    assert math.isnan(chain.nu) and math.isnan(chain.r0)
    data = chain.as_dict()
    assert data["nu"] is None and data["r0"] is None
    back = ChainConformation.from_dict(data)
    assert back.rg_mean == chain.rg_mean and math.isnan(back.nu)


def test_bad_coordinates_are_named():
    with pytest.raises(ValueError, match="expected"):
        conformational_properties(np.zeros((3, 4)))
    bad = np.zeros((3, 10, 3))
    bad[2, 4, 1] = np.nan
    with pytest.raises(ValueError, match="frame 2"):
        conformational_properties(bad)
    with pytest.raises(ValueError, match="add up"):
        conformational_properties(np.zeros((2, 10, 3)), chain_lengths=[4, 5])


def test_extract_md_reports_conformation_of_its_frames(shared_data):
    from seqdance.features.md import extract_md

    base = shared_data / "md" / "mdcath_2hbaA00"
    features = extract_md(require(base / "2hbaA00.pdb"), require(base / "2hbaA00_320_0.xtc"), stride=50)
    (chain,) = chains_from_arrays(features)
    traj = _calpha_trajectory(base / "2hbaA00.pdb", base / "2hbaA00_320_0.xtc", stride=50)
    assert chain.n_frames == traj.n_frames == features["n_frames"] and chain.n_residues == 52
    (expected,) = conformational_properties(traj.xyz)
    for key, value in expected.as_dict().items():
        assert chain.as_dict()[key] == pytest.approx(value, abs=TOL), key
    assert chain.rg_mean == pytest.approx(float(md.compute_rg(traj).mean()), abs=TOL)


def test_store_records_conformation_per_protein(md_store, shared_data):
    from seqdance.features.inputs.structures import read_calpha_structure
    from seqdance.store import DynamicsStore

    with DynamicsStore.open(md_store) as store:
        for name in store.names:
            records = store.provenance(name)["conformation"]
            assert len(records) == len(store.provenance(name)["chain_lengths"])
            chain = ChainConformation.from_dict(records[0])
            if name == "mdcath_2hbaA00":  # every 25th frame of the trajectory
                base = shared_data / "md" / "mdcath_2hbaA00"
                traj = _calpha_trajectory(base / "2hbaA00.pdb", base / "2hbaA00_320_0.xtc", stride=25)
                (expected,) = conformational_properties(traj.xyz)
                assert chain.n_frames == traj.n_frames
                assert chain.rg_mean == pytest.approx(expected.rg_mean, abs=TOL)
                assert chain.nu == pytest.approx(expected.nu, abs=TOL)
            elif store.row(name)["kind"] == "nma":  # the single structure, Å -> nm
                ((_, path),) = store.provenance(name)["spec"]["inputs"]
                structure = read_calpha_structure(path)
                (expected,) = conformational_properties(structure.coords / 10.0)
                assert chain.n_frames == 1 and chain.rg_std == 0
                assert chain.rg_mean == pytest.approx(expected.rg_mean, abs=TOL)
                assert chain.asphericity_mean == pytest.approx(expected.asphericity_mean, abs=TOL)
