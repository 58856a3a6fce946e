"""Adding hydrogens with OpenMM to frames stripped of theirs: same protonated topology as Modeller, H-bond maps
close to the original's on real trajectories, reproducibility, and clear errors."""

from __future__ import annotations

from pathlib import Path

import mdtraj as md
import numpy as np
import pytest
from conftest import require

from seqdance.errors import InputError
from seqdance.features import extract_md
from seqdance.features.inputs.hydrogens import HydrogenAdder, add_hydrogens
from seqdance.features.inputs.protein import build_protein_topology

pytest.importorskip("openmm", reason="adding hydrogens needs OpenMM (pip install 'seqdance[hydrogens]')")
HBONDS = ("hbbb", "hbsb", "hbss")


@pytest.fixture(scope="module")
def golden(shared_data: Path) -> tuple[Path, Path, md.Trajectory]:
    base = shared_data / "reference" / "md"
    top, dcd = require(base / "3tvj_I.pdb"), require(base / "3tvj_I_10frames.dcd")
    traj = md.load(str(dcd), top=str(top))
    protein = build_protein_topology(traj.topology)
    traj = traj.atom_slice(protein.atom_indices)
    traj.topology = protein.topology
    return top, dcd, traj


def strip(traj: md.Trajectory) -> md.Trajectory:
    return traj.atom_slice(traj.topology.select("not element H"))


def test_same_topology_as_modeller_and_heavy_atoms_untouched(golden) -> None:
    from openmm import app, unit

    _, _, traj = golden
    heavy = strip(traj)
    adder = HydrogenAdder(heavy.topology, heavy.xyz[0])
    bonded = heavy.topology.copy()
    bonded.create_disulfide_bonds(heavy.xyz[0])
    modeller = app.Modeller(bonded.to_openmm(), heavy.xyz[0] * unit.nanometer)
    modeller.addHydrogens(forcefield=app.ForceField("amber14-all.xml"), pH=7.0)
    expected = [(a.residue.index, a.name) for a in modeller.topology.atoms()]
    assert [(a.residue.index, a.name) for a in adder.topology.atoms] == expected
    out = adder.frames(heavy.xyz[:3])
    np.testing.assert_array_equal(out[:, adder.kept], heavy.xyz[:3])
    # every hydrogen at a bond length from its parent (Amber: 0.10-0.11 nm, 50 iterations leave a few 0.005 short)
    d = np.linalg.norm(out[:, adder.added] - out[:, adder.parent], axis=-1)
    assert 0.09 < d.min() and d.max() < 0.115
    # the three disulfides of this toxin (six cysteines) are recognised: no cysteine gets HG
    assert sum(r.name == "CYS" for r in heavy.topology.residues) == 6
    assert not any(a.name == "HG" and a.residue.name == "CYS" for a in adder.topology.atoms)
    # hydrogens clash with no heavy atom (closest non-parent heavy atom beyond 0.12 nm: a hydroxyl H, which Amber
    # gives no van der Waals radius, may sit ~0.14 nm from its acceptor)
    frame = out[0]
    dist = np.linalg.norm(frame[adder.added][:, None] - frame[adder.kept][None], axis=-1)
    dist[np.arange(len(adder.added)), np.searchsorted(adder.kept, adder.parent)] = np.inf
    assert dist.min() > 0.12


def test_reprotonated_hbond_maps_match_the_original(golden, tmp_path: Path) -> None:
    """Floors below the measured agreement (docs/coarse_grained.md: Pearson ≥ 0.98 for all three types)."""
    top, dcd, traj = golden
    protonated = add_hydrogens(strip(traj), source="3tvj_I")
    pdb, out_dcd = tmp_path / "h.pdb", tmp_path / "h.dcd"
    protonated[0].save_pdb(str(pdb))
    protonated.save_dcd(str(out_dcd))
    new = extract_md(pdb, out_dcd)
    ref = extract_md(top, dcd)
    for name in HBONDS:
        r = np.corrcoef(new[name].ravel(), ref[name].ravel())[0, 1]
        assert r > 0.95, (name, r)
        assert np.abs(new[name] - ref[name]).max() <= 0.5, name
    # atom-level properties that do not depend on hydrogens' exact places stay close
    np.testing.assert_allclose(new["rmsf"], ref["rmsf"], atol=1e-5)


def test_results_are_reproducible(golden) -> None:
    _, _, traj = golden
    heavy = strip(traj)[:2]
    a = add_hydrogens(heavy).xyz
    b = add_hydrogens(heavy).xyz
    # seeded start positions and deterministic forces; the minimiser's threaded reductions leave ~1e-4 nm
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-3)


def test_geometric_placement_accepts_residues_without_a_template(golden) -> None:
    """A C-terminus without OXT has no Amber template: a clear error; geometric placement accepts it."""
    _, _, traj = golden
    heavy = strip(traj)
    no_oxt = heavy.atom_slice(heavy.topology.select("not name OXT"))
    with pytest.raises(InputError, match=r"ped_model\.pdb: cannot add hydrogens with the amber14 force field: .*"
                                         r"forcefield=None"):
        HydrogenAdder(no_oxt.topology, no_oxt.xyz[0], source="ped_model.pdb")
    adder = HydrogenAdder(no_oxt.topology, no_oxt.xyz[0], forcefield=None)
    out = adder.frames(no_oxt.xyz[:2])
    assert np.isfinite(out).all() and len(adder.added) > 200


def test_non_finite_frame_is_an_error(golden) -> None:
    _, _, traj = golden
    heavy = strip(traj)
    adder = HydrogenAdder(heavy.topology, heavy.xyz[0], source="ens.pdb")
    xyz = heavy.xyz[:3].copy()
    xyz[2, 5] = np.nan
    with pytest.raises(InputError, match=r"ens\.pdb: frame 12: non-finite"):
        adder.frames(xyz, first_frame=2, stride=5)


def test_relaxing_all_but_calpha_removes_clashes_of_a_backmapped_disordered_chain() -> None:
    """A self-avoiding Cα walk with CALVADOS geometry back-maps with clashing side chains (PULCHRA); relaxing every
    atom but Cα removes them and keeps Cα exactly where the trace put them."""
    pytest.importorskip("pypulchra", reason="back-mapping needs pypulchra (pip install 'seqdance[backmap]'; "
                                            "it compiles with a C++ compiler)")
    from bench_cg_cost import bead_chain, random_sequence, self_avoiding_walk

    from seqdance.features.inputs.backmapping import Backmapper
    from seqdance.features.inputs.coarse_grained import bead_topology
    from seqdance.features.inputs.hydrogens import overlapping_atoms

    rng = np.random.default_rng(4)
    n = 40
    beads = bead_topology(bead_chain(random_sequence(n, rng)))
    mapper = Backmapper(beads)
    clashing = None
    for _ in range(20):
        heavy = mapper.frames(self_avoiding_walk(n, rng)[None].astype(np.float32))[0]
        bonded = mapper.topology.copy()
        bonds = np.array([(a.index, b.index) for a, b in bonded.bonds], dtype=np.int64)
        if len(overlapping_atoms(heavy.astype(np.float64), bonds, 0.1)):
            clashing = heavy
            break
    assert clashing is not None, "no back-mapped walk with a clash in 20 tries"
    adder = HydrogenAdder(mapper.topology, clashing, relax="all_but_calpha")
    out = adder.frame(clashing)
    assert len(overlapping_atoms(out.astype(np.float64), adder.bonds, 0.1)) == 0
    ca = [a.index for a in adder.topology.atoms if a.name == "CA"]
    ca_in = [a.index for a in mapper.topology.atoms if a.name == "CA"]
    np.testing.assert_array_equal(out[ca], clashing[ca_in])
