"""NMA features: golden reference file, ProDy (the reference's engine) on real structures, numerics, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from conftest import require

from seqdance.features import extract_nma
from seqdance.features.inputs.structures import read_calpha_structure
from seqdance.features.nma import modes as nma
from seqdance.features.results import NmaFeatures
from seqdance.schema import properties_of_kind

pytest.importorskip("prody")
from bench_nma import prody_calpha_coords, prody_reference_features, synthetic_chain

BIOEMU = "structures/bioemu_reference"
AF2 = "proteingym_single_dev/af2_pdb"
TRP_CAGE = f"{BIOEMU}/multiconf/localunfolding/trp-cage-cage/2JOF_A.pdb"  # 20 residues
SMALL_A = f"{BIOEMU}/multiconf/oodval/P23895/7JK8_A.pdb"  # 102
SMALL_B = f"{BIOEMU}/folding_free_energies/folding_free_energies/6FVC.pdb"  # 44
TINY_C = f"{BIOEMU}/multiconf/localunfolding/P15337_1/1KDX_B.pdb"  # 28
MEDIUM = f"{BIOEMU}/multiconf/domainmotion/P0205/2DRI_A.pdb"  # 271
GRB2 = f"{AF2}/GRB2_HUMAN_Faure_2021.pdb"  # 217, AlphaFold2 model
LARGE_AF2 = f"{AF2}/A0A2Z5U3Z0_9INFA_Wu_2014.pdb"  # 565, AlphaFold2 model
FLOPPY_AF2 = f"{AF2}/TADBP_HUMAN_Bolognesi_2019.pdb"  # 414, long disordered tails
LARGE_XRAY = f"{BIOEMU}/multiconf/oodval/P54708/7X23_A.pdb"  # 985

MSF_RTOL = 1e-9  # measured ≤ 3e-11 against ProDy
COR_ATOL = 1e-8  # measured ≤ 3e-10 against ProDy


def _stack(features: dict) -> tuple[np.ndarray, np.ndarray]:
    msf = np.stack([features[p.name] for p in properties_of_kind("nma", "residue")])
    cor = np.stack([features[p.name] for p in properties_of_kind("nma", "pair")])
    return msf, cor


def _path(shared_data: Path, rel: str) -> Path:
    return require(shared_data / rel)


# --- golden file --------------------------------------------------------------------------------


@pytest.mark.parametrize("zero_modes", ["rigid", "reference"])
def test_golden_2g3r(shared_data: Path, zero_modes: str) -> None:
    folder = shared_data / "reference" / "nma"
    golden = np.load(require(folder / "nma_residue_pair_features_2g3r.npz"))
    features = extract_nma(require(folder / "2g3r.pdb"), zero_modes=zero_modes)
    msf, cor = _stack(features)
    assert msf.shape == golden["gnm_msf"].shape == (3, 119)
    assert cor.shape == golden["anm_cor"].shape == (3, 119, 119)
    np.testing.assert_allclose(msf, golden["gnm_msf"], rtol=1e-6, atol=0)
    np.testing.assert_allclose(cor, golden["anm_cor"], rtol=1e-6, atol=0)
    assert features["gnm_zero_modes"] == 1 and features["anm_zero_modes"] == 6
    assert tuple(features["gnm_range_sizes"]) == (18, 41, 59)  # 118 GNM modes
    assert tuple(features["anm_range_sizes"]) == (15, 87, 249)  # 351 ANM modes
    assert len(features["sequence"]) == 119 and features["skipped_residues"] == []
    assert set(features) == set(NmaFeatures.__required_keys__)  # exactly the declared keys


# --- ProDy (the reference's engine) on other structures -----------------------------------------


def _write_complex(path: Path, first: Path, second: Path, gap: float = 7.0) -> None:
    """Two single-chain structures as chains A and B, B moved so the closest Cα pair is ``gap`` Å apart."""

    def atoms(file: Path) -> list[str]:
        return [line for line in file.read_text().splitlines() if line.startswith(("ATOM", "HETATM"))]

    def xyz(lines: list[str]) -> np.ndarray:
        return np.array([[float(ln[30:38]), float(ln[38:46]), float(ln[46:54])] for ln in lines])

    lines_a, lines_b = atoms(first), atoms(second)
    ca_a = xyz([ln for ln in lines_a if ln[12:16] == " CA "])
    ca_b = xyz([ln for ln in lines_b if ln[12:16] == " CA "])
    direction = np.array([1.0, 0.6, -0.3]) / np.linalg.norm([1.0, 0.6, -0.3])
    base = ca_a.mean(axis=0) - ca_b.mean(axis=0)
    lo, hi = 0.0, 200.0
    for _ in range(60):  # bisection on the offset along `direction` for the requested closest distance
        mid = 0.5 * (lo + hi)
        closest = np.min(np.linalg.norm(ca_a[:, None] - (ca_b + base + mid * direction)[None], axis=-1))
        lo, hi = (mid, hi) if closest < gap else (lo, mid)
    shift = base + hi * direction
    out = []
    for chain, lines, offset in (("A", lines_a, np.zeros(3)), ("B", lines_b, shift)):
        for ln in lines:
            x, y, z = xyz([ln])[0] + offset
            out.append(f"{ln[:21]}{chain}{ln[22:30]}{x:8.3f}{y:8.3f}{z:8.3f}{ln[54:]}")
        out.append("TER")
    path.write_text("\n".join([*out, "END"]) + "\n")


def _assert_equal_to_prody(features: dict, reference: dict) -> None:
    msf, cor = _stack(features)
    assert features["gnm_zero_modes"] == reference["gnm_zero_modes"]
    assert features["anm_zero_modes"] == reference["anm_zero_modes"]
    np.testing.assert_allclose(msf, reference["gnm_msf"], rtol=MSF_RTOL, atol=0)
    np.testing.assert_allclose(cor, reference["anm_cor"], rtol=0, atol=COR_ATOL)


@pytest.mark.parametrize("rel", [TRP_CAGE, SMALL_A, GRB2, MEDIUM, LARGE_AF2])
def test_equals_prody_single_chain(shared_data: Path, rel: str) -> None:
    path = _path(shared_data, rel)
    coords = prody_calpha_coords(path)
    features = extract_nma(path)
    assert len(features["nma_res1"]) == len(coords)
    _assert_equal_to_prody(features, prody_reference_features(coords))


def test_equals_prody_two_chain_complex(shared_data: Path, tmp_path: Path) -> None:
    complex_pdb = tmp_path / "complex.pdb"
    _write_complex(complex_pdb, _path(shared_data, SMALL_A), _path(shared_data, SMALL_B))
    features = extract_nma(complex_pdb)
    n_a, n_b = features["chain_lengths"]
    assert (n_a, n_b) == (102, 44)
    assert features["sequence"].count(":") == 1 and len(features["sequence"]) == n_a + n_b + 1
    assert list(np.unique(features["residue_ids"]["chain"])) == ["A", "B"]
    assert features["n_pieces"] == 1
    _assert_equal_to_prody(features, prody_reference_features(prody_calpha_coords(complex_pdb)))
    # the chains move together: some inter-chain correlations are far from zero
    assert np.abs(features["nma_pair1"][:n_a, n_a:]).max() > 0.3

    only_b = extract_nma(complex_pdb, chains="B")
    assert len(only_b["nma_res1"]) == n_b and only_b["sequence"] == features["sequence"].split(":")[1]


def test_disconnected_pieces_error_or_split(shared_data: Path, tmp_path: Path) -> None:
    apart = tmp_path / "apart.pdb"
    _write_complex(apart, _path(shared_data, SMALL_B), _path(shared_data, TINY_C), gap=40.0)
    with pytest.raises(ValueError, match="2 pieces"):
        extract_nma(apart)
    split = extract_nma(apart, disconnected="split")
    assert split["n_pieces"] == 2 and split["gnm_zero_modes"] == 2 and split["anm_zero_modes"] == 12
    n_a = split["chain_lengths"][0]
    for key in ("nma_res1", "nma_res3", "nma_pair1", "nma_pair2"):
        whole = split[key]
        piece_a = extract_nma(_path(shared_data, SMALL_B))[key]
        piece_b = extract_nma(_path(shared_data, TINY_C))[key]
        if whole.ndim == 1:
            np.testing.assert_allclose(whole, np.concatenate([piece_a, piece_b]), rtol=1e-9)
        else:
            np.testing.assert_allclose(whole[:n_a, :n_a], piece_a, atol=1e-9)
            np.testing.assert_allclose(whole[n_a:, n_a:], piece_b, atol=1e-9)
            np.testing.assert_array_equal(whole[:n_a, n_a:], 0.0)


def test_floppy_model_reference_switch(shared_data: Path) -> None:
    """ProDy's absolute 1e-6 threshold drops genuine soft modes of floppy models; 'reference' mode does too."""
    path = _path(shared_data, FLOPPY_AF2)
    coords = prody_calpha_coords(path)
    reference = prody_reference_features(coords)
    assert reference["anm_zero_modes"] > 6  # the defect this switch reproduces

    as_reference = extract_nma(path, zero_modes="reference")
    msf, cor = _stack(as_reference)
    assert as_reference["anm_zero_modes"] == reference["anm_zero_modes"]
    np.testing.assert_allclose(msf, reference["gnm_msf"], rtol=MSF_RTOL, atol=0)
    # the softest kept modes are nearly degenerate (λ ~ 1e-6): their split is rounding-sensitive
    np.testing.assert_allclose(cor, reference["anm_cor"], rtol=0, atol=1e-6)

    ours = extract_nma(path)
    assert ours["gnm_zero_modes"] == 1 and ours["anm_zero_modes"] == 6
    assert sum(ours["anm_range_sizes"]) == 3 * len(coords) - 6
    assert not np.allclose(ours["nma_pair1"], as_reference["nma_pair1"], atol=1e-3)


# --- numerics -------------------------------------------------------------------------------------


def test_spring_constants_shell_bounds_inclusive() -> None:
    d = np.array([0.5, 4.0, 4.0 + 1e-9, 10.0, 10.0 + 1e-9, 15.0, 15.0 + 1e-9, 40.0])
    np.testing.assert_array_equal(nma.spring_constants(d * d), [10, 10, 2, 2, 1, 1, 0, 0])


def test_matrices_equal_pairwise_loop_definition() -> None:
    coords = synthetic_chain(25, seed=3)
    kirchhoff = nma.kirchhoff_matrix(coords)
    hessian = nma.hessian_matrix(coords)
    n = len(coords)
    expected_k = np.zeros((n, n))
    expected_h = np.zeros((3 * n, 3 * n))
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            r = coords[j] - coords[i]
            d2 = r @ r
            g = 10.0 if d2 <= 16 else 2.0 if d2 <= 100 else 1.0 if d2 <= 225 else 0.0
            expected_k[i, j] = -g
            expected_k[i, i] += g
            block = -g / d2 * np.outer(r, r)
            expected_h[3 * i : 3 * i + 3, 3 * j : 3 * j + 3] = block
            expected_h[3 * i : 3 * i + 3, 3 * i : 3 * i + 3] -= block
    np.testing.assert_allclose(kirchhoff, expected_k, rtol=0, atol=1e-12)
    np.testing.assert_allclose(hessian, expected_h, rtol=0, atol=1e-12)
    basis = nma.rigid_body_basis(coords, nma.network_pieces(coords), 3)
    np.testing.assert_allclose(basis.T @ basis, np.eye(6), atol=1e-12)
    assert np.abs(hessian @ basis).max() < 1e-12 * np.abs(hessian).max()


def test_frequency_ranges_inclusive_ends() -> None:
    shares = np.array([0.3, 0.2, 0.15, 0.15, 0.1, 0.1])  # C = .3 .5 .65 .8 .9 1
    ranges = nma.frequency_ranges(1.0 / shares)
    assert ranges == (slice(0, 1), slice(1, 3), slice(3, 6))  # C_end1 = .3 -> target .65 at mode 3
    with pytest.raises(nma.NmaError, match="three frequency ranges"):
        nma.frequency_ranges(np.array([1.0, 2.0]))


def _plain_nonzero_eigvals(matrix: np.ndarray, n_zero: int) -> np.ndarray:
    return scipy.linalg.eigh(matrix, eigvals_only=True)[n_zero:]


def test_zero_modes_tiny_protein(shared_data: Path) -> None:
    coords = read_calpha_structure(_path(shared_data, TRP_CAGE)).coords
    assert len(coords) == 20
    pieces = nma.network_pieces(coords)
    for matrix, dim, n_zero in ((nma.kirchhoff_matrix(coords), 1, 1), (nma.hessian_matrix(coords), 3, 6)):
        modes = nma.nonzero_modes(matrix, nma.rigid_body_basis(coords, pieces, dim))
        assert modes.n_zero == n_zero and len(modes.eigvals) == dim * 20 - n_zero
        np.testing.assert_allclose(modes.eigvals, _plain_nonzero_eigvals(matrix, n_zero), rtol=1e-10)
        np.testing.assert_allclose(modes.eigvecs_rows @ modes.eigvecs_rows.T, np.eye(len(modes.eigvals)), atol=1e-12)


@pytest.mark.slow
def test_zero_modes_large_protein(shared_data: Path) -> None:
    """~1,000 residues (ANM 2,955 dof): exactly the 6 rigid-body modes go; the rest match plain eigenvalues."""
    coords = read_calpha_structure(_path(shared_data, LARGE_XRAY)).coords
    hessian = nma.hessian_matrix(coords)
    plain = _plain_nonzero_eigvals(hessian, 6)
    modes = nma.nonzero_modes(hessian, nma.rigid_body_basis(coords, nma.network_pieces(coords), 3), overwrite=True)
    assert modes.n_zero == 6 and len(modes.eigvals) == 3 * len(coords) - 6
    np.testing.assert_allclose(modes.eigvals, plain, rtol=1e-8)
    assert plain[0] > 1e3 * np.finfo(float).eps * plain[-1]  # a clear gap above the rounding level


def test_zero_modes_gnm_2000_residues(shared_data: Path) -> None:
    coords = read_calpha_structure(_path(shared_data, f"{AF2}/BRCA1_HUMAN_Findlay_2018.pdb")).coords
    assert len(coords) > 1800
    kirchhoff = nma.kirchhoff_matrix(coords)
    modes = nma.nonzero_modes(kirchhoff, nma.rigid_body_basis(coords, nma.network_pieces(coords), 1))
    assert modes.n_zero == 1
    np.testing.assert_allclose(modes.eigvals, _plain_nonzero_eigvals(kirchhoff, 1), rtol=1e-9)


# --- bad input: clear errors, never NaN ----------------------------------------------------------


def test_too_few_residues() -> None:
    with pytest.raises(nma.NmaError, match="at least 4"):
        nma.nma_features(np.array([[0.0, 0, 0], [3.8, 0, 0], [7.6, 1.0, 0]]))


def test_collinear_chain_is_rejected() -> None:
    line = np.column_stack([np.arange(8) * 3.8, np.zeros(8), np.zeros(8)])
    with pytest.raises(nma.NmaError, match="collinear"):
        nma.nma_features(line)


def test_hinge_without_restoring_force_is_rejected() -> None:
    rng = np.random.default_rng(0)
    blob_a = rng.normal(scale=1.5, size=(12, 3))
    blob_b = rng.normal(scale=1.5, size=(12, 3)) + np.array([26.0, 0.0, 0.0])
    pivot = np.array([[13.0, 0.0, 0.0]])  # the only atom within 15 Å of both blobs
    coords = np.vstack([blob_a, pivot, blob_b])
    assert len(nma.network_pieces(coords)) == 1
    with pytest.raises(nma.NmaError, match="zero-frequency motion"):
        nma.nma_features(coords)


def test_coincident_atoms_are_rejected() -> None:
    coords = synthetic_chain(10)
    coords[5] = coords[2] + 0.01
    with pytest.raises(nma.NmaError, match="closer than"):
        nma.nma_features(coords, labels=[f"A:ALA{i}" for i in range(10)])


def test_features_are_finite_and_bounded() -> None:
    result = nma.nma_features(synthetic_chain(60, seed=1))
    assert np.isfinite(result.gnm_msf).all() and (result.gnm_msf > 0).all()
    assert np.isfinite(result.anm_cor).all() and np.abs(result.anm_cor).max() <= 1.0
    np.testing.assert_array_equal(np.diagonal(result.anm_cor, axis1=1, axis2=2), 1.0)
    np.testing.assert_array_equal(result.anm_cor, np.swapaxes(result.anm_cor, 1, 2))
