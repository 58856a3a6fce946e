"""Adding hydrogens to all-atom frames that have none (PED conformers, X-ray ensembles, back-mapped frames).

Hydrogen bonds (docs/design.md#interactions) need explicit hydrogens. OpenMM's ``Modeller.addHydrogens`` chooses the
protonation state of every residue at the given pH (standard pKa values; His tautomer from its hydrogen-bond
partners), places the hydrogens and relaxes them by energy minimisation with the heavy atoms fixed. Run per
frame it rebuilds the force-field system each time (~1.7 s per frame of a 214-residue protein). This module
asks Modeller once, on the first frame, for the protonated topology and the residue variants, builds the same
minimisation system once (the force field's ``createSystem`` with the heavy atoms made immobile, as Modeller
does), and for every frame only sets the positions and minimises: the hydrogen start positions follow
Modeller's rule (0.1 nm from the parent, away from its heavy neighbours, slightly jittered, here with a seeded
generator so that results are reproducible; hydrogens sharing a parent start spread apart rather than on one
line) and the minimiser settings are Modeller's (tolerance 1 kJ/mol/nm,
50 iterations).

Force field: Amber ff14SB (``amber14-all.xml``, shipped with OpenMM) by default. Its electrostatics turn polar
hydrogens towards their acceptors; without a force field (``forcefield=None``: Modeller's purely geometric
repulsion, which is also what PDBFixer uses by default) hydrogen-bond maps come out markedly too sparse
(docs/coarse_grained.md has the numbers). A residue the force field has no template for (caps, non-standard
residues, a C-terminus without OXT) is an error that names it; ``forcefield=None`` accepts any residue.
Protonation states are those chosen on the first frame for every frame, so all frames share one topology;
cysteines whose SG atoms are closer than 0.3 nm in the first frame (MDTraj's disulfide rule) are disulfides
and get no HG. Results are reproducible bit for bit: seeded start positions, OpenMM's deterministic force
summation, and one OpenMM thread by default (with several, the minimisation is not reproducible: measured up to
0.002 nm apart for hydrogens alone and 0.07 nm when every atom but Cα relaxes on a back-mapped frame).
"""

from __future__ import annotations

from typing import Literal

import mdtraj as md
import numpy as np

from seqdance.errors import InputError

HydrogenForceField = Literal["amber14"] | None
Relax = Literal["hydrogens", "all_but_calpha"]
RELAX_MODES: tuple[str, ...] = ("hydrogens", "all_but_calpha")
#: Minimiser iterations: Modeller's 50 for hydrogens alone; more when side chains and backbone move too.
_ITERATIONS = {"hydrogens": 50, "all_but_calpha": 200}
#: Closest two atoms that are not bonded may come after relaxation (nm); closer is a failed frame.
_MIN_NONBONDED_NM = 0.03
_FORCEFIELD_FILES = {"amber14": ("amber14-all.xml",)}
#: Modeller.addHydrogens' minimisation settings (tolerance kJ/mol/nm, iterations).
_MINIMISE_TOLERANCE = 1.0
_H_BOND_NM = 0.1
#: Minimisations tried per frame, each from freshly jittered start positions, before the frame is an error.
_ATTEMPTS = 3


def _openmm():
    try:
        import openmm
        from openmm import app, unit
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise InputError("adding hydrogens needs OpenMM (pip install openmm, or pip install 'seqdance[hydrogens]')"
                         ) from exc
    return openmm, app, unit


def _geometric_system(openmm, app, topology, added: np.ndarray):
    """Modeller's force-field-free system: H-parent bonds, hydroxyl angles, r⁻⁴ repulsion; heavy atoms fixed."""
    system = openmm.System()
    nonbonded = openmm.CustomNonbondedForce("100/(r/0.1)^4")
    nonbonded.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffNonPeriodic)
    nonbonded.setCutoffDistance(1.0)
    bonds = openmm.HarmonicBondForce()
    angles = openmm.HarmonicAngleForce()
    for force in (nonbonded, bonds, angles):
        system.addForce(force)
    is_added = np.zeros(topology.getNumAtoms(), dtype=bool)
    is_added[added] = True
    bonded_to: list[list] = [[] for _ in range(topology.getNumAtoms())]
    for atom in topology.atoms():
        nonbonded.addParticle([])
        system.addParticle(1.0 if is_added[atom.index] else 0.0)
    hydrogen = app.element.hydrogen
    for a, b in topology.bonds():
        if a.element == hydrogen or b.element == hydrogen:
            bonds.addBond(a.index, b.index, _H_BOND_NM, 100000.0)
        bonded_to[a.index].append(b)
        bonded_to[b.index].append(a)
    for atom in topology.atoms():
        partners = bonded_to[atom.index]
        if atom.element == app.element.oxygen and len(partners) == 2 and any(p.element == hydrogen for p in partners):
            angles.addAngle(partners[0].index, atom.index, partners[1].index, 1.894, 460.24)
    return system


class HydrogenAdder:
    """Adds hydrogens to heavy-atom frames of one system; every frame gets the same protonated topology.

    ``topology``: the heavy-atom topology (standard residue names; hydrogens present in it are dropped and
    rebuilt); ``first_frame`` (n_atoms, 3) nm decides the protonation states. ``ph``: pH for the protonation
    states (default 7). ``forcefield``: "amber14" (default) or None (geometric placement, any residue).
    ``threads``: CPU threads OpenMM may use (default 1, reproducible; None: OpenMM's default, all cores, faster on
    large systems but not bit-reproducible). ``source`` names the input in errors.
    """

    def __init__(self, topology: md.Topology, first_frame: np.ndarray, *, ph: float = 7.0,
                 forcefield: HydrogenForceField = "amber14", relax: Relax = "hydrogens",
                 max_iterations: int | None = None, cutoff_nm: float = 1.0, threads: int | None = 1,
                 seed: int = 0, source: str = "structure") -> None:
        openmm, app, unit = _openmm()
        if forcefield is not None and forcefield not in _FORCEFIELD_FILES:
            raise InputError(f"forcefield must be one of {sorted(_FORCEFIELD_FILES)} or None, got {forcefield!r}")
        if relax not in RELAX_MODES:
            raise InputError(f"relax must be one of {RELAX_MODES}, got {relax!r}")
        if relax == "all_but_calpha" and forcefield is None:
            raise InputError("relax='all_but_calpha' needs a force field (heavy atoms move)")
        self.relax = relax
        self.max_iterations = int(max_iterations if max_iterations is not None else _ITERATIONS[relax])
        self.source = source
        first_frame = np.asarray(first_frame, dtype=np.float64)
        if first_frame.shape != (topology.n_atoms, 3):
            raise InputError(f"first_frame must have shape ({topology.n_atoms}, 3), got {first_frame.shape}")
        self.heavy = np.array([a.index for a in topology.atoms if not _is_hydrogen(a)], dtype=np.int64)
        heavy_top = topology.subset(self.heavy)
        if heavy_top.n_bonds == 0:
            heavy_top.create_standard_bonds()
        # Disulfide-bonded cysteines (SG-SG bond in the first frame) get no HG: Modeller reads the bond.
        heavy_top.create_disulfide_bonds(first_frame[self.heavy])
        modeller = app.Modeller(heavy_top.to_openmm(), first_frame[self.heavy] * unit.nanometer)
        ff = app.ForceField(*_FORCEFIELD_FILES[forcefield]) if forcefield is not None else None
        try:
            self.variants = modeller.addHydrogens(forcefield=ff, pH=ph)
        except ValueError as exc:
            raise InputError(f"{source}: cannot add hydrogens with the {forcefield} force field: {exc} (a residue "
                             "the force field has no template for: pass forcefield=None for geometric placement, "
                             "or complete the structure, e.g. add the terminal OXT)") from exc
        protonated = modeller.topology
        self.topology = md.Topology.from_openmm(protonated)
        is_h = np.array([a.element == app.element.hydrogen for a in protonated.atoms()])
        self.added = np.flatnonzero(is_h)
        self.kept = np.flatnonzero(~is_h)  # heavy atoms of the protonated topology, in input (heavy) order
        names_in = [(a.residue.index, a.name) for a in heavy_top.atoms]
        names_out = [(a.residue.index, a.name) for a in protonated.atoms() if a.element != app.element.hydrogen]
        if names_in != names_out:  # pragma: no cover - Modeller keeps heavy atoms in order
            raise RuntimeError(f"{source}: OpenMM reordered heavy atoms while adding hydrogens")
        self._start_geometry(protonated, app)
        self.fixed = self.kept if relax == "hydrogens" else np.array(
            [a.index for a in protonated.atoms() if a.name == "CA" and a.element == app.element.carbon], dtype=np.int64)
        self.bonds = np.array([(a.index, b.index) for a, b in protonated.bonds()], dtype=np.int64).reshape(-1, 2)
        if ff is not None:
            system = ff.createSystem(protonated, rigidWater=False, nonbondedMethod=app.CutoffNonPeriodic,
                                     nonbondedCutoff=cutoff_nm * unit.nanometer)
            for k in self.fixed:
                system.setParticleMass(int(k), 0.0)
            system.addForce(_hydrogen_wall(openmm, protonated, self.added, system))
        else:
            system = _geometric_system(openmm, app, protonated, self.added)
        platform = openmm.Platform.getPlatformByName("CPU")
        properties = {"DeterministicForces": "true"}
        if threads:
            properties["Threads"] = str(int(threads))
        self._context = openmm.Context(system, openmm.VerletIntegrator(0.0), platform, properties)
        self._openmm = openmm
        self._nanometer = unit.nanometer
        self._rng = np.random.default_rng(seed)

    def _start_geometry(self, protonated, app) -> None:
        """Per added hydrogen: its parent and the parent's heavy neighbours (padded with the parent itself)."""
        hydrogen = app.element.hydrogen
        neighbours: dict[int, list[int]] = {}
        parent = {}
        for a, b in protonated.bonds():
            for x, y in ((a, b), (b, a)):
                if x.element == hydrogen:
                    parent[x.index] = y.index
                elif y.element != hydrogen:
                    neighbours.setdefault(x.index, []).append(y.index)
        self.parent = np.array([parent[int(h)] for h in self.added], dtype=np.int64)
        width = max((len(neighbours.get(int(p), [])) for p in self.parent), default=0)
        table = np.tile(self.parent[:, None], (1, max(width, 1)))
        for row, p in enumerate(self.parent):
            mates = neighbours.get(int(p), [])
            table[row, :len(mates)] = mates
        self.parent_neighbours = table
        # Hydrogens sharing a parent (CH2, CH3, NH3+): their rank among the siblings and the sibling count.
        order = np.argsort(self.parent, kind="stable")
        _, first, counts = np.unique(self.parent[order], return_index=True, return_counts=True)
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order)) - np.repeat(first, counts)
        self.sibling_rank = rank
        self.sibling_count = np.repeat(counts, counts)[np.argsort(order, kind="stable")]

    @property
    def n_atoms(self) -> int:
        return self.topology.n_atoms

    def _initial(self, heavy_xyz: np.ndarray) -> np.ndarray:
        positions = np.zeros((self.n_atoms, 3), dtype=np.float64)
        positions[self.kept] = heavy_xyz
        p = positions[self.parent]
        direction = (p[:, None, :] - positions[self.parent_neighbours]).sum(axis=1)
        norm = np.linalg.norm(direction, axis=1, keepdims=True)
        random_dir = self._rng.random(direction.shape)
        direction = np.where(norm > 1e-9, direction / np.maximum(norm, 1e-12), random_dir)
        # Unlike Modeller, which starts all hydrogens of one parent on the same line (a strained frame may then not
        # separate them in 50 iterations), siblings start spread around that line at the tetrahedral 70.5°.
        axis = np.where(np.abs(direction[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
        u = np.cross(direction, axis)
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        v = np.cross(direction, u)
        turn = 2 * np.pi * self.sibling_rank / self.sibling_count
        tilt = np.where(self.sibling_count > 1, np.tan(np.deg2rad(70.5)), 0.0)[:, None]
        direction = direction + tilt * (np.cos(turn)[:, None] * u + np.sin(turn)[:, None] * v)
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        direction = direction + 0.5 * self._rng.random(direction.shape)  # Modeller: + 0.05 nm jitter on 0.1 nm
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        positions[self.added] = p + _H_BOND_NM * direction
        return positions

    def frame(self, xyz: np.ndarray, frame_number: int = 0) -> np.ndarray:
        """(n_atoms_with_H, 3) nm: one frame ``xyz`` (input atoms, nm) with hydrogens added and relaxed."""
        heavy_xyz = np.asarray(xyz, dtype=np.float64)[self.heavy]
        if not np.isfinite(heavy_xyz).all():
            raise InputError(f"{self.source}: frame {frame_number}: non-finite coordinates")
        problem = ""
        for _ in range(_ATTEMPTS):
            start = self._initial(heavy_xyz)
            self._context.setPositions(start)
            try:
                self._openmm.LocalEnergyMinimizer.minimize(self._context, _MINIMISE_TOLERANCE, self.max_iterations)
            except self._openmm.OpenMMException as exc:  # a start position on top of an atom: new jitter
                problem = str(exc).split(".")[0]
                continue
            state = self._context.getState(getPositions=True)
            out = np.asarray(state.getPositions(asNumpy=True).value_in_unit(self._nanometer), dtype=np.float64)
            if not np.isfinite(out).all():
                problem = "non-finite positions"
                continue
            out[self.fixed] = start[self.fixed]  # immobile atoms: copy them bit-exactly
            close = overlapping_atoms(out, self.bonds, _MIN_NONBONDED_NM)
            if len(close):
                atoms = list(self.topology.atoms)
                i, j = close[0]
                problem = f"{atoms[i]} and {atoms[j]} {np.linalg.norm(out[i] - out[j]):.3f} nm apart"
                continue
            return out.astype(np.float32)
        hint = ("heavy atoms of this frame clash; relax='all_but_calpha' lets them move"
                if self.relax == "hydrogens" else "the frame is too strained to relax")
        raise InputError(f"{self.source}: frame {frame_number}: adding hydrogens failed {_ATTEMPTS} times "
                         f"({problem}); {hint}")

    def frames(self, xyz: np.ndarray, *, first_frame: int = 0, stride: int = 1) -> np.ndarray:
        """(F, n_atoms_with_H, 3) nm for a chunk ``xyz`` (F, n_atoms, 3) nm (frame k numbered
        ``first_frame + k * stride`` in errors)."""
        return np.stack([self.frame(xyz[k], first_frame + k * stride) for k in range(len(xyz))])


def _hydrogen_wall(openmm, topology, added: np.ndarray, system):
    """A steep, short-ranged wall 4ε(σ/r)¹² (σ = 0.1 nm, ε = 1 kJ/mol) between each added hydrogen that has no
    Lennard-Jones term and every atom. Amber gives hydroxyl and thiol hydrogens no van der Waals radius, so in a
    strained frame the minimiser can pull one onto an acceptor (r → 0). The wall is negligible at hydrogen-bond
    distances (< 0.004 kJ/mol beyond 0.18 nm). It excludes the pairs the force field's nonbonded force excludes (1-2 to
    1-4; OpenMM requires identical exclusions)."""
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    wall = openmm.CustomNonbondedForce("4*(0.1/r)^12")
    wall.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffNonPeriodic)
    wall.setCutoffDistance(0.3)
    for _ in range(topology.getNumAtoms()):
        wall.addParticle([])
    for k in range(nonbonded.getNumExceptions()):
        i, j, *_ = nonbonded.getExceptionParameters(k)
        wall.addExclusion(i, j)
    bare = {int(h) for h in added if nonbonded.getParticleParameters(int(h))[2].value_in_unit(
        openmm.unit.kilojoule_per_mole) == 0.0}  # hydrogens without a Lennard-Jones well
    wall.addInteractionGroup(bare, set(range(topology.getNumAtoms())))
    return wall


def overlapping_atoms(xyz: np.ndarray, bonds: np.ndarray, min_distance_nm: float) -> np.ndarray:
    """(k, 2) pairs of atoms closer than ``min_distance_nm`` that are not bonded (clashes, collapsed atoms)."""
    from scipy.spatial import cKDTree

    pairs = cKDTree(xyz).query_pairs(min_distance_nm, output_type="ndarray")
    if not len(pairs) or not len(bonds):
        return pairs.reshape(-1, 2)
    n = len(xyz)
    bonded = np.union1d(bonds[:, 0] * n + bonds[:, 1], bonds[:, 1] * n + bonds[:, 0])
    return pairs[~np.isin(pairs[:, 0] * n + pairs[:, 1], bonded)]


def _is_hydrogen(atom: md.core.topology.Atom) -> bool:
    element = getattr(atom, "element", None)
    return getattr(element, "symbol", None) == "H"


def add_hydrogens(traj: md.Trajectory, *, ph: float = 7.0, forcefield: HydrogenForceField = "amber14",
                  relax: Relax = "hydrogens", threads: int | None = 1, source: str = "structure") -> md.Trajectory:
    """``traj`` with hydrogens added to every frame (protonation states from its first frame, pH ``ph``)."""
    adder = HydrogenAdder(traj.topology, traj.xyz[0], ph=ph, forcefield=forcefield, relax=relax, threads=threads,
                          source=source)
    out = md.Trajectory(adder.frames(traj.xyz), adder.topology)
    out.unitcell_vectors = traj.unitcell_vectors
    return out
