"""Back-mapping a Cα trace to all-atom (heavy-atom) frames with PULCHRA (docs/design.md#backmapping).

The reference converted IDRome's one-bead CALVADOS trajectories to all-atom before feature extraction. This
module rebuilds the backbone and side chains of every frame from its Cα positions with PULCHRA (Rotkiewicz &
Skolnick 2008), through one of two PyPI packages:

* ``"pulchra"`` (default): ``pypulchra``, Python bindings of the original C/C++ PULCHRA (3.07-derived), ~20 ms
  per frame of a 50-residue chain;
* ``"pulchra-python"``: ``pulchra``, a pure-Python port of PULCHRA 3.06 with the same rotamer statistics,
  ~150x slower and not numerically identical (kept to cross-check the C build).

Both optimise the Cα positions slightly (≤ ~0.1 Å) before building, add no hydrogens (see
:mod:`seqdance.features.inputs.hydrogens`) and treat each chain on its own. The C build perturbs with the C library's
``rand()``; it is seeded before every frame (as the PULCHRA program does per structure), so a frame's rebuilt
atoms depend on that frame alone and results are reproducible. How faithfully the rebuilt frames reproduce
each MD property of the original all-atom trajectory is measured by ``benchmarks/bench_backmapping.py`` and
published in docs/coarse_grained.md. The per-frame work is done by the library; this module only writes the
trace in the library's input format, checks what comes back (same atoms in every frame, finite coordinates) and
assembles an MDTraj topology and frames.
"""

from __future__ import annotations

import mdtraj as md
import numpy as np

from seqdance.errors import InputError
from seqdance.features.inputs.protein import ProteinTopology
from seqdance.features.options import BACKMAP_ENGINES, BackmapEngine
from seqdance.schema import ANGSTROM_PER_NM

__all__ = ["BACKMAP_ENGINES", "BackmapEngine", "Backmapper", "BackmappingError", "backmap"]

#: The residues PULCHRA has rotamer statistics for.
STANDARD_RESIDUES = frozenset({
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
})
_ONE_TO_THREE = {
    "A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU", "G": "GLY", "H": "HIS",
    "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE", "P": "PRO", "S": "SER", "T": "THR", "W": "TRP",
    "Y": "TYR", "V": "VAL",
}
_THREE_TO_ONE = {v: k for k, v in _ONE_TO_THREE.items()}


class BackmappingError(InputError):
    """Back-mapping failed on a frame; the message names the source and the frame."""


def _require_engine(engine: str) -> None:
    if engine not in BACKMAP_ENGINES:
        raise InputError(f"back-mapping engine must be one of {BACKMAP_ENGINES}, got {engine!r}")
    module = "pypulchra" if engine == "pulchra" else "pulchra"
    try:
        __import__(module)
    except ImportError as exc:
        raise InputError(
            f"back-mapping with {engine!r} needs the PyPI package {module!r} (pip install {module}, or "
            "pip install 'seqdance[backmap]')"
        ) from exc


def _calpha_pdb(names: tuple[str, ...], xyz_angstrom: np.ndarray) -> str:
    """A Cα-only PDB text (chain A, residues numbered from 1) as PULCHRA reads it."""
    lines = [
        f"ATOM  {k + 1:5d}  CA  {name:3s} A{k + 1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           C"
        for k, (name, (x, y, z)) in enumerate(zip(names, xyz_angstrom))
    ]
    return "\n".join([*lines, "END", ""])


def _parse_atoms(pdb_text: str) -> tuple[list[tuple[int, str]], np.ndarray]:
    """(residue number, atom name) of each ATOM record and its coordinates (Å)."""
    records = [line for line in pdb_text.splitlines() if line.startswith("ATOM")]
    keys = [(int(line[22:26]), line[12:16].strip()) for line in records]
    coords = np.array([(line[30:38], line[38:46], line[46:54]) for line in records], dtype=np.float64)
    return keys, coords.reshape(-1, 3)


_LIBC = None


def _seed_c_random(seed: int = 0) -> None:
    """Seed the C library's ``rand()``, which PULCHRA's Cα optimisation draws from (its command line calls
    ``srand(0)`` before each structure; the Python binding does not, so without this a frame's atoms would depend
    on every earlier call in the process: measured up to 0.4 nm apart)."""
    global _LIBC
    if _LIBC is None:
        import ctypes
        import sys

        _LIBC = ctypes.cdll.msvcrt if sys.platform == "win32" else ctypes.CDLL(None)
    _LIBC.srand(int(seed))


def _run_pulchra_c(names: tuple[str, ...], xyz_angstrom: np.ndarray) -> tuple[list[tuple[int, str]], np.ndarray]:
    import pypulchra

    _seed_c_random(0)  # every frame rebuilt as the PULCHRA program rebuilds one structure: reproducibly
    result = pypulchra.run_from_pdb_str(_calpha_pdb(names, xyz_angstrom))
    return _parse_atoms(result.pdb_str)


_PY_ENGINE = None


def _run_pulchra_python(names: tuple[str, ...], xyz_angstrom: np.ndarray
                        ) -> tuple[list[tuple[int, str]], np.ndarray]:
    global _PY_ENGINE
    import warnings

    from pulchra import Pulchra

    if _PY_ENGINE is None:
        _PY_ENGINE = Pulchra()
    sequence = "".join(_THREE_TO_ONE[n] for n in names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's align_vectors warns on degenerate local frames
        molecule = _PY_ENGINE.reconstruct_coords(np.asarray(xyz_angstrom, dtype=np.float64), sequence)
    keys, coords = [], []
    for k, residue in enumerate(molecule.residues, start=1):
        for atom in residue.atoms:
            keys.append((k, atom.name.strip()))
            coords.append(atom.coords)
    return keys, np.asarray(coords, dtype=np.float64).reshape(-1, 3)


_RUNNERS = {"pulchra": _run_pulchra_c, "pulchra-python": _run_pulchra_python}

#: Backbone first, then side chain, per residue: the order of the rebuilt topology (PULCHRA's output order
#: differs between the two builds).
_BACKBONE_ORDER = ("N", "CA", "C", "O", "OXT")


def _canonical_order(keys: list[tuple[int, str]]) -> np.ndarray:
    """Permutation sorting atoms by residue, backbone (N, CA, C, O, OXT) before side chain, side chain as given."""
    rank = [(res, _BACKBONE_ORDER.index(name) if name in _BACKBONE_ORDER else len(_BACKBONE_ORDER), k)
            for k, (res, name) in enumerate(keys)]
    return np.array([k for *_, k in sorted(rank)], dtype=np.int64)


def _element(name: str) -> md.element.Element:
    return md.element.get_by_symbol(name[0])


class Backmapper:
    """Rebuilds all-atom frames of a one-bead-per-residue system, frame by frame, with one topology.

    ``protein``: the bead topology (:func:`seqdance.features.inputs.coarse_grained.bead_topology`); ``source``: the
    file named in errors. The all-atom topology is fixed by the first frame rebuilt; every later frame must
    yield the same atoms. Call :meth:`frames` on consecutive chunks.
    """

    def __init__(self, protein: ProteinTopology, *, engine: BackmapEngine = "pulchra", source: str = "trace") -> None:
        _require_engine(engine)
        self.protein = protein
        self.engine = engine
        self.source = source
        self._run = _RUNNERS[engine]
        for row, name in enumerate(protein.residue_names):
            if name not in STANDARD_RESIDUES:
                raise InputError(
                    f"{source}: residue {protein.describe_residue(row)} cannot be back-mapped: PULCHRA knows the "
                    "20 standard amino acids only"
                )
        ends = np.cumsum(protein.chain_lengths)
        self._chains = [(int(e - n), int(e)) for e, n in zip(ends, protein.chain_lengths)]
        self._chain_keys: list[list[tuple[int, str]]] | None = None
        self._chain_order: list[np.ndarray] = []
        self.topology: md.Topology | None = None

    def _build_topology(self, chain_keys: list[list[tuple[int, str]]]) -> md.Topology:
        top = md.Topology()
        for (lo, _), keys, label in zip(self._chains, chain_keys, self.protein.chain_labels):
            chain = top.add_chain()
            chain.chain_id = label
            residue = None
            current = None
            for res, name in keys:
                if res != current:
                    row = lo + res - 1
                    residue = top.add_residue(self.protein.residue_names[row], chain,
                                              resSeq=int(self.protein.residue_ids[row]["resSeq"]))
                    current = res
                top.add_atom(name, _element(name), residue)
        top.create_standard_bonds()
        return top

    def frame(self, xyz: np.ndarray, frame_number: int) -> np.ndarray:
        """(n_atoms, 3) nm all-atom coordinates rebuilt from one frame's Cα positions ``xyz`` (N, 3) nm."""
        per_chain = []
        chain_keys = []
        for c, (lo, hi) in enumerate(self._chains):
            names = self.protein.residue_names[lo:hi]
            where = f"{self.source}: frame {frame_number}"
            if hi - lo < 2:
                raise BackmappingError(f"{where}: chain {self.protein.chain_labels[c]} has one residue; PULCHRA "
                                       "needs at least 2")
            try:
                keys, coords = self._run(names, np.asarray(xyz[lo:hi], dtype=np.float64) * ANGSTROM_PER_NM)
            except Exception as exc:  # the library's own failure, whatever its type
                raise BackmappingError(f"{where}: back-mapping ({self.engine}) failed: {type(exc).__name__}: "
                                       f"{exc}") from exc
            if not keys:
                raise BackmappingError(f"{where}: back-mapping ({self.engine}) returned no atoms for chain "
                                       f"{self.protein.chain_labels[c]}")
            if self._chain_keys is None:
                order = _canonical_order(keys)
                self._chain_order.append(order)
                chain_keys.append([keys[k] for k in order])
            else:
                order = self._chain_order[c]
                if len(keys) != len(order) or [keys[k] for k in order] != self._chain_keys[c]:
                    raise BackmappingError(
                        f"{where}: back-mapping ({self.engine}) produced {len(keys)} atoms for chain "
                        f"{self.protein.chain_labels[c]}, not the {len(self._chain_keys[c])} atoms of the first "
                        "frame"
                    )
            per_chain.append(coords[order])
        if self._chain_keys is None:
            self._chain_keys = chain_keys
            self.topology = self._build_topology(chain_keys)
        out = np.concatenate(per_chain) / ANGSTROM_PER_NM
        if not np.isfinite(out).all():
            raise BackmappingError(f"{self.source}: frame {frame_number}: back-mapping ({self.engine}) returned "
                                   "non-finite coordinates")
        return out.astype(np.float32)

    def frames(self, xyz: np.ndarray, *, first_frame: int = 0, stride: int = 1) -> np.ndarray:
        """(F, n_atoms, 3) nm rebuilt from a chunk ``xyz`` (F, N, 3) nm whose frame k is numbered
        ``first_frame + k * stride`` in errors."""
        xyz = np.asarray(xyz)
        if xyz.ndim != 3 or xyz.shape[1:] != (self.protein.n_residues, 3):
            raise InputError(f"Cα positions must have shape (frames, {self.protein.n_residues}, 3), "
                             f"got {xyz.shape}")
        return np.stack([self.frame(xyz[k], first_frame + k * stride) for k in range(len(xyz))])


def backmap(xyz: np.ndarray, protein: ProteinTopology, *, engine: BackmapEngine = "pulchra",
            source: str = "trace", first_frame: int = 0, stride: int = 1) -> md.Trajectory:
    """All-atom (heavy-atom) MDTraj trajectory rebuilt from a Cα trace ``xyz`` (F, N, 3) nm of ``protein``."""
    mapper = Backmapper(protein, engine=engine, source=source)
    frames = mapper.frames(xyz, first_frame=first_frame, stride=stride)
    assert mapper.topology is not None
    return md.Trajectory(frames, mapper.topology)
