"""Reading MD inputs: topologies and trajectories of any format MDTraj reads, GROMACS TPR, and mdCATH HDF5.

Trajectories are read in chunks of frames restricted to the protein atoms, so memory stays bounded whatever the
trajectory length. Topology and trajectory are checked against each other up front (atom counts) and read
errors are re-raised naming both files.

Supported inputs
----------------
* topology: anything ``mdtraj.load_topology`` reads (PDB/mmCIF, PSF, GRO, PRMTOP/PARM7, MDTraj HDF5, ...);
  GROMACS ``.tpr`` (and other formats MDTraj does not read) through MDAnalysis.
* trajectory: anything ``mdtraj.iterload`` reads with that topology (DCD, XTC, TRR, NetCDF, Amber mdcrd, DCD,
  ...). Without a trajectory the topology file's own models are the frames.
* multi-model PDB and mmCIF files (conformer ensembles such as PED's, NMR models, trajectories written as MODEL
  records), as trajectory or as their own frames: every model must hold the same atoms as the first (checked
  before reading; a model that differs is an error naming the file and the model), and the models are read with
  ``mdtraj.load`` (MDTraj reads these formats whole anyway; its ``iterload`` cannot read mmCIF).
* mdCATH HDF5 (one file per domain): a top-level group named after the domain holding ``pdbProteinAtoms``
  (PDB text of the protein atoms) and one group per temperature (``"320"``, ``"348"``, ...) each with one group
  per replica (``"0"``..``"4"``) holding ``coords`` (frames × atoms × 3, Å). Select with a suffix:
  ``file.h5#348/2`` (one replica), ``file.h5#348`` (all replicas of 348 K); no suffix = all replicas of the
  lowest temperature. The file may serve as its own topology.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import struct
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import mdtraj as md
import numpy as np

from seqdance.errors import InputError
from seqdance.io_utils import c_stdout_to_log

log = logging.getLogger(__name__)

MDTRAJ_TOPOLOGY_SUFFIXES = (".pdb", ".pdb.gz", ".ent", ".cif", ".pdbx", ".psf", ".gro", ".prmtop", ".parm7",
                            ".prm7", ".mol2", ".hoomdxml", ".arc", ".h5", ".lh5")
_PDB_SUFFIXES = (".pdb", ".pdb.gz", ".ent", ".ent.gz")
_MMCIF_SUFFIXES = (".cif", ".pdbx")
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
#: Upper bound on the memory of one chunk of full frames (readers decode every atom before the protein subset).
MAX_CHUNK_BYTES = 256 * 1024**2

#: Formats whose header tells the atom count cheaply (checked against the topology before reading).
_COUNTABLE_SUFFIXES = (".dcd", ".xtc", ".trr", ".nc", ".ncdf", ".netcdf")


@dataclass(frozen=True)
class LoadedTopology:
    """A file's full topology (all atoms) plus what MDTraj's topology cannot hold."""

    topology: md.Topology
    insertion_codes: np.ndarray | None  # one per atom, or None when the format has none
    path: str


def _suffix(path: str | os.PathLike[str]) -> str:
    name = str(path).lower()
    for double in (".pdb.gz", ".ent.gz"):
        if name.endswith(double):
            return double
    return Path(name).suffix


def split_selector(path: str | os.PathLike[str]) -> tuple[str, str | None]:
    """``file.h5#320/0`` -> (``file.h5``, ``320/0``); plain paths have no selector."""
    text = str(path)
    if "#" in text:
        base, _, selector = text.rpartition("#")
        if _suffix(base) in _HDF5_SUFFIXES:
            return base, selector
    return text, None


def _require_file(path: str, role: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{role} file not found: {path}")
    if os.path.isdir(path):
        raise InputError(f"{role} path is a directory, not a file: {path}")
    if os.path.getsize(path) == 0:
        raise InputError(f"{role} file {path} is empty")


def is_mdcath_file(path: str) -> bool:
    """True for an HDF5 file laid out like mdCATH (a domain group with ``pdbProteinAtoms``)."""
    if _suffix(path) not in _HDF5_SUFFIXES:
        return False
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            return any(isinstance(h5[k], h5py.Group) and "pdbProteinAtoms" in h5[k] for k in h5)
    except OSError:
        return False


def _pdb_insertion_codes(text: str) -> np.ndarray:
    """Insertion code (column 27) of each ATOM/HETATM record of the first model of a PDB text."""
    codes = []
    for line in io.StringIO(text):
        record = line[:6]
        if record in ("ATOM  ", "HETATM"):
            codes.append(line[26:27].strip() if len(line) > 26 else "")
        elif record.startswith("ENDMDL") and codes:
            break
    return np.array(codes, dtype=object)


def _read_text(path: str) -> str:
    if path.lower().endswith(".gz"):
        import gzip

        with gzip.open(path, "rt", errors="replace") as fh:
            return fh.read()
    with open(path, errors="replace") as fh:
        return fh.read()


def _element(symbol: str, name: str) -> md.element.Element:
    """Element by symbol, else guessed from the atom name's first letter (protein atoms: H, C, N, O, S)."""
    try:
        return md.element.get_by_symbol(symbol.strip().capitalize())
    except (KeyError, AttributeError):
        letter = "".join(ch for ch in name if ch.isalpha())[:1].upper()
        if letter in ("H", "C", "N", "O", "S", "P"):
            return md.element.get_by_symbol(letter)
        return md.element.virtual_site


def _topology_from_mdanalysis(path: str) -> LoadedTopology:
    """Topology of a file MDTraj cannot read (GROMACS TPR, TOP/ITP, ...) converted from MDAnalysis."""
    try:
        import MDAnalysis as mda
    except ImportError as exc:  # pragma: no cover - MDAnalysis is an optional dependency
        raise InputError(f"{path}: reading this topology format needs MDAnalysis (pip install MDAnalysis)") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            universe = mda.Universe(path)
    except Exception as exc:
        raise InputError(f"{path}: cannot read topology ({type(exc).__name__}: {exc})") from exc
    atoms = universe.atoms
    names = [str(n) for n in atoms.names]
    symbols = [str(e) for e in atoms.elements] if hasattr(atoms, "elements") else [""] * len(atoms)
    chain_ids = [str(c) for c in (atoms.chainIDs if hasattr(atoms, "chainIDs") else atoms.segids)]
    segids = [str(s) for s in atoms.segids]
    resids, resnames, resindices = atoms.resids, atoms.resnames, atoms.resindices

    topology = md.Topology()
    chain = residue = None
    last_chain = last_residue = None
    for k in range(len(atoms)):
        if chain_ids[k] != last_chain:
            chain, last_chain, last_residue = topology.add_chain(), chain_ids[k], None
            chain.chain_id = chain_ids[k]
        if resindices[k] != last_residue:
            residue = topology.add_residue(str(resnames[k]), chain, resSeq=int(resids[k]), segment_id=segids[k])
            last_residue = resindices[k]
        topology.add_atom(names[k], _element(symbols[k], names[k]), residue, serial=k + 1)
    if hasattr(universe, "bonds"):
        atom_list = list(topology.atoms)
        for i, j in np.asarray(universe.bonds.indices, dtype=np.int64).reshape(-1, 2):
            topology.add_bond(atom_list[i], atom_list[j])
    icodes = np.asarray(atoms.icodes, dtype=object) if hasattr(atoms, "icodes") else None
    return LoadedTopology(topology, icodes, path)


def _mdcath_domain(h5) -> str:
    import h5py

    domains = [k for k in h5 if isinstance(h5[k], h5py.Group) and "pdbProteinAtoms" in h5[k]]
    if len(domains) != 1:
        raise InputError(f"{h5.filename}: expected one mdCATH domain group with 'pdbProteinAtoms', found {domains}")
    return domains[0]


def _mdcath_topology(path: str) -> LoadedTopology:
    import h5py

    with h5py.File(path, "r") as h5:
        raw = h5[_mdcath_domain(h5)]["pdbProteinAtoms"][()]
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    with tempfile.NamedTemporaryFile("w", suffix=".pdb", delete=False) as fh:
        fh.write(text)
        tmp = fh.name
    try:
        topology = md.load_topology(tmp)
    finally:
        os.unlink(tmp)
    return LoadedTopology(topology, _pdb_insertion_codes(text), path)


def load_topology(path: str | os.PathLike[str]) -> LoadedTopology:
    """Full topology of a topology file (see module docstring for the formats)."""
    spec = str(path)
    path, _ = split_selector(spec)
    _require_file(path, "topology")
    if is_mdcath_file(path):
        loaded = _mdcath_topology(path)
        return LoadedTopology(loaded.topology, loaded.insertion_codes, spec)
    suffix = _suffix(path)
    if suffix in MDTRAJ_TOPOLOGY_SUFFIXES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                topology = md.load_topology(path)
        except Exception as exc:
            if suffix in _PDB_SUFFIXES + _MMCIF_SUFFIXES:
                check_models_agree(path)  # models that disagree: say which, rather than MDTraj's generic message
            raise InputError(f"{path}: cannot read topology ({type(exc).__name__}: {exc})") from exc
        icodes = _pdb_insertion_codes(_read_text(path)) if suffix in _PDB_SUFFIXES else None
        if icodes is not None and len(icodes) != topology.n_atoms:
            icodes = None
        return LoadedTopology(topology, icodes, path)
    return _topology_from_mdanalysis(path)


@dataclass(frozen=True)
class FrameChunk:
    """Consecutive selected frames: protein coordinates and the periodic box (both nm)."""

    xyz: np.ndarray  # (F, n_protein_atoms, 3) float32
    box: np.ndarray | None  # (F, 3, 3) unit cell vectors, or None without periodic box

    def __len__(self) -> int:
        return len(self.xyz)


class FrameSource:
    """One trajectory (one replica): yields chunks of protein coordinates (nm)."""

    name: str

    def n_frames(self) -> int | None:
        """Number of frames in the file when cheaply known."""
        return None

    def chunks(self, atom_indices: np.ndarray, *, start: int, stop: int | None, stride: int,
               chunk_frames: int) -> Iterator[FrameChunk]:
        raise NotImplementedError


def _dcd_int(data: bytes, offset: int, endian: str) -> int:
    return int(struct.unpack_from(endian + "i", data, offset)[0])


def check_dcd_complete(path: str) -> None:
    """Raise naming the file and frame counts when a DCD ends inside a frame (a truncated copy or a disk that
    filled up); MDTraj would silently read only the whole frames. A header that announces more frames than the
    file holds whole is only logged (trimmed trajectories often keep the original count, e.g. MDAnalysis's adk
    test file). Files with fixed atoms, or that do not parse as DCD, are left to the reader."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if len(head) < 100:
        raise InputError(f"trajectory {path}: only {size} bytes, too short to be a DCD file (truncated?)")
    endian = "<" if _dcd_int(head, 0, "<") == 84 else ">" if _dcd_int(head, 0, ">") == 84 else None
    if endian is None or head[4:8] != b"CORD":
        return  # not a standard DCD header: MDTraj's reader reports what is wrong
    control = struct.unpack_from(endian + "20i", head, 8)
    n_set, n_fixed, has_cell, four_dims, charmm = control[0], control[8], control[10], control[11], control[19]
    if n_fixed:
        return
    offset = 4 + 84 + 4
    title_bytes = _dcd_int(head, offset, endian)
    offset += 4 + title_bytes + 4
    if offset + 12 > len(head):
        return
    n_atoms = _dcd_int(head, offset + 4, endian)
    offset += 12
    if n_atoms <= 0:
        return
    frame = 3 * (4 * n_atoms + 8)
    if charmm and has_cell:
        frame += 48 + 8
    if charmm and four_dims:
        frame += 4 * n_atoms + 8
    whole, extra = divmod(size - offset, frame)
    if extra:
        raise InputError(
            f"trajectory {path} is truncated: it ends inside frame {whole + 1} (its header announces {n_set} "
            f"frame(s); {whole} whole frame(s) of {n_atoms} atoms, then {extra} stray byte(s)); copy or write it "
            "again"
        )
    if n_set > whole:
        log.warning("trajectory %s: its header announces %d frames but the file holds %d; using those %d",
                    path, n_set, whole, whole)


def _selected_count(n_total: int | None, start: int, stop: int | None, stride: int) -> int | None:
    if n_total is None:
        return None
    return len(range(start, n_total if stop is None else min(stop, n_total), stride))


class MDTrajSource(FrameSource):
    """A trajectory file MDTraj reads, interpreted with the given topology file."""

    def __init__(self, path: str, topology: LoadedTopology) -> None:
        _require_file(path, "trajectory")
        self.path = path
        self.name = path
        self.topology = topology
        self._n_frames: int | None = None
        self._check_atom_count()

    def _check_atom_count(self) -> None:
        if _suffix(self.path) not in _COUNTABLE_SUFFIXES:
            return
        if _suffix(self.path) == ".dcd":
            check_dcd_complete(self.path)
        try:
            with warnings.catch_warnings(), c_stdout_to_log(log):
                warnings.simplefilter("ignore")
                with md.open(self.path) as fh:
                    first = fh.read(n_frames=1)
                    xyz = first[0] if isinstance(first, tuple) else first
                    try:
                        self._n_frames = len(fh)
                    except (NotImplementedError, TypeError):
                        self._n_frames = None
        except Exception as exc:
            raise InputError(f"cannot read trajectory {self.path} ({type(exc).__name__}: {exc})") from exc
        n_atoms = int(np.shape(xyz)[1]) if np.ndim(xyz) == 3 else None
        if n_atoms is not None and n_atoms != self.topology.topology.n_atoms:
            raise InputError(
                f"trajectory {self.path} has {n_atoms} atoms per frame but topology {self.topology.path} has "
                f"{self.topology.topology.n_atoms}: they do not describe the same system"
            )
        if n_atoms is not None and len(np.shape(xyz)) == 3 and np.shape(xyz)[0] == 0:
            raise InputError(f"trajectory {self.path} contains no frames")

    def n_frames(self) -> int | None:
        return self._n_frames

    def chunks(self, atom_indices: np.ndarray, *, start: int, stop: int | None, stride: int,
               chunk_frames: int) -> Iterator[FrameChunk]:
        remaining = None if stop is None else len(range(start, stop, stride))
        if remaining == 0:
            return
        frame = start
        frame_bytes = 12 * max(1, self.topology.topology.n_atoms)
        chunk_frames = max(1, min(chunk_frames, MAX_CHUNK_BYTES // frame_bytes))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                iterator = md.iterload(self.path, top=self.topology.topology, chunk=chunk_frames,
                                       atom_indices=atom_indices, stride=stride, skip=start)
                while True:
                    with c_stdout_to_log(log):  # the DCD plugin prints from C when it opens a file
                        traj = next(iterator, None)
                    if traj is None:
                        break
                    if remaining is not None:
                        traj = traj[:remaining]
                        remaining -= len(traj)
                    frame += len(traj) * stride
                    if len(traj):
                        yield FrameChunk(traj.xyz, traj.unitcell_vectors)
                    if remaining == 0:
                        return
        except (ValueError, OSError, IndexError, RuntimeError, TypeError) as exc:
            raise InputError(
                f"reading trajectory {self.path} with topology {self.topology.path} failed near frame {frame} "
                f"({type(exc).__name__}: {exc}); are the files truncated or from different systems?"
            ) from exc


def _pdb_model_atoms(path: str) -> Iterator[tuple[int, str | None, list[str]]]:
    """(position 1.., MODEL serial, identity of each atom) of each model of a PDB file, one model at a time (bounded
    memory). The identity is the record's columns 13-16 and 18-27 (atom name, residue name, chain, residue number,
    insertion code; the altloc letter is left out)."""
    opener = gzip.open if path.lower().endswith(".gz") else open
    position, serial, atoms = 0, None, []
    with opener(path, "rt", errors="replace") as fh:
        for line in fh:
            record = line[:6]
            if record in ("ATOM  ", "HETATM"):
                atoms.append(line[12:16] + line[17:27])
            elif record == "MODEL ":
                if atoms:  # records before the first MODEL, or a model without ENDMDL
                    position += 1
                    yield position, serial, atoms
                serial, atoms = line[6:].strip() or None, []
            elif record == "ENDMDL":
                position += 1
                yield position, serial, atoms
                serial, atoms = None, []
    if atoms:
        yield position + 1, serial, atoms


def _mmcif_model_atoms(path: str) -> Iterator[tuple[int, str | None, list[str]]]:
    """The same for an mmCIF file (read with gemmi)."""
    import gemmi

    try:
        structure = gemmi.read_structure(path)
    except Exception as exc:
        raise InputError(f"{path}: cannot read the models ({type(exc).__name__}: {exc})") from exc
    for position, model in enumerate(structure, start=1):
        serial = str(getattr(model, "num", None) or getattr(model, "name", "") or position)
        atoms = [f"{atom.name:>4.4}{residue.name:>3.3} {chain.name[:1]:1}{residue.seqid.num:>4d}"
                 f"{residue.seqid.icode.strip() or ' ':1}" for chain in model for residue in chain for atom in residue]
        yield position, serial, atoms


def _describe_atom(identity: str) -> str:
    """'HB2 of PHE 1 (chain A)' from a PDB-column identity (see :func:`_pdb_model_atoms`)."""
    name, resname, chain, number = identity[0:4].strip(), identity[4:7].strip(), identity[8:9].strip(), identity[9:].strip()
    return f"{name} of {resname} {number}" + (f" (chain {chain})" if chain else "")


def check_models_agree(path: str) -> int:
    """Number of models in a PDB/mmCIF file; raises :class:`InputError` naming the file and the first model whose
    atoms (names, residues, chains, order) differ from the first model's (an ensemble's models are frames of one
    system)."""
    reader = _mmcif_model_atoms if _suffix(path) in _MMCIF_SUFFIXES else _pdb_model_atoms
    first: list[str] | None = None
    count = 0
    for position, serial, atoms in reader(path):
        count = position
        if first is None:
            first = atoms
            continue
        if atoms == first:
            continue
        label = f"model {position}" + (f" (MODEL {serial})" if serial and serial != str(position) else "")
        what = (f"has {len(atoms)} atoms, model 1 has {len(first)}" if len(atoms) != len(first)
                else "holds other atoms than model 1")
        n = min(len(first), len(atoms))
        k = next((i for i in range(n) if first[i] != atoms[i]), n)
        detail = (f"first difference at atom {k + 1}: {_describe_atom(atoms[k])} here, {_describe_atom(first[k])} in "
                  "model 1" if k < n else f"its first {n} atoms agree")
        raise InputError(f"{path}: {label} {what} ({detail}); every model of an ensemble must hold the same atoms "
                         "in the same order")
    return count


class ModelFileSource(FrameSource):
    """The models of a PDB/mmCIF file as frames (checked to hold the same atoms; see module docstring)."""

    def __init__(self, path: str, topology: LoadedTopology) -> None:
        _require_file(path, "trajectory")
        self.path = path
        self.name = path
        self.topology = topology
        self._n_frames = check_models_agree(path)
        if self._n_frames == 0:
            raise InputError(f"trajectory {path} contains no atoms")

    def n_frames(self) -> int | None:
        return self._n_frames

    def chunks(self, atom_indices: np.ndarray, *, start: int, stop: int | None, stride: int,
               chunk_frames: int) -> Iterator[FrameChunk]:
        selected = range(start, self._n_frames if stop is None else min(stop, self._n_frames), stride)
        if not len(selected):
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traj = md.load(self.path, top=self.topology.topology, atom_indices=atom_indices)
        except Exception as exc:
            raise InputError(
                f"reading the models of {self.path} with topology {self.topology.path} failed "
                f"({type(exc).__name__}: {exc}); do they describe the same system?"
            ) from exc
        xyz = traj.xyz[selected.start:selected.stop:selected.step]
        box = None if traj.unitcell_vectors is None else traj.unitcell_vectors[selected.start:selected.stop:selected.step]
        for lo in range(0, len(xyz), chunk_frames):
            yield FrameChunk(np.ascontiguousarray(xyz[lo:lo + chunk_frames]),
                             None if box is None else box[lo:lo + chunk_frames])


class MdcathSource(FrameSource):
    """One temperature/replica group of an mdCATH HDF5 file (coords in Å, converted to nm)."""

    def __init__(self, path: str, temperature: str, replica: str, topology: LoadedTopology) -> None:
        self.path, self.temperature, self.replica = path, temperature, replica
        self.name = f"{path}#{temperature}/{replica}"
        import h5py

        with h5py.File(path, "r") as h5:
            group = h5[_mdcath_domain(h5)][temperature][replica]
            if "coords" not in group:
                raise InputError(f"{self.name}: no 'coords' dataset")
            shape = group["coords"].shape
        if len(shape) != 3 or shape[2] != 3:
            raise InputError(f"{self.name}: 'coords' has shape {shape}, expected (frames, atoms, 3)")
        if shape[1] != topology.topology.n_atoms:
            raise InputError(
                f"trajectory {self.name} has {shape[1]} atoms per frame but topology {topology.path} has "
                f"{topology.topology.n_atoms}: they do not describe the same system"
            )
        self._n_frames = int(shape[0])

    def n_frames(self) -> int | None:
        return self._n_frames

    def chunks(self, atom_indices: np.ndarray, *, start: int, stop: int | None, stride: int,
               chunk_frames: int) -> Iterator[FrameChunk]:
        import h5py

        end = self._n_frames if stop is None else min(stop, self._n_frames)
        with h5py.File(self.path, "r") as h5:
            group = h5[_mdcath_domain(h5)][self.temperature][self.replica]
            coords = group["coords"]
            box = np.asarray(group["box"][()], dtype=np.float32) if "box" in group else None
            if box is not None and box.shape != (3, 3):
                box = np.diag(box.ravel()[:3]) if box.size >= 3 else None  # lengths only
            step = chunk_frames * stride
            for lo in range(start, end, step):
                block = np.asarray(coords[lo:min(lo + step, end):stride], dtype=np.float32)
                xyz = np.ascontiguousarray(block[:, atom_indices] / np.float32(10.0))
                boxes = None if box is None else np.repeat(box[None], len(xyz), axis=0)
                yield FrameChunk(xyz, boxes)


def mdcath_groups(path: str, selector: str | None) -> list[tuple[str, str]]:
    """(temperature, replica) groups an mdCATH path selects (see module docstring)."""
    import h5py

    with h5py.File(path, "r") as h5:
        domain = h5[_mdcath_domain(h5)]
        temps = sorted((k for k in domain if isinstance(domain[k], h5py.Group)), key=_numeric_key)
        if not temps:
            raise InputError(f"{path}: the mdCATH domain group has no temperature groups")
        if selector:
            temp, _, replica = selector.partition("/")
            if temp not in domain:
                raise InputError(f"{path}: no temperature group {temp!r}; available: {temps}")
            replicas = sorted(domain[temp], key=_numeric_key)
            if replica:
                if replica not in domain[temp]:
                    raise InputError(f"{path}: no replica {replica!r} at {temp}; available: {replicas}")
                return [(temp, replica)]
            return [(temp, r) for r in replicas]
        temp = temps[0]
        return [(temp, r) for r in sorted(domain[temp], key=_numeric_key)]


def _numeric_key(text: str) -> tuple[int, float | str]:
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)


def open_sources(topology: LoadedTopology, trajectories: Sequence[str | os.PathLike[str]] | None) -> list[FrameSource]:
    """Frame sources for the trajectories (or the topology file's own frames when there are none)."""
    paths = [str(p) for p in trajectories] if trajectories else [topology.path]
    sources: list[FrameSource] = []
    for spec in paths:
        path, selector = split_selector(spec)
        _require_file(path, "trajectory")
        if is_mdcath_file(path):
            sources.extend(MdcathSource(path, t, r, topology) for t, r in mdcath_groups(path, selector))
        elif _suffix(path) in _PDB_SUFFIXES + _MMCIF_SUFFIXES:
            sources.append(ModelFileSource(path, topology))
        else:
            sources.append(MDTrajSource(path, topology))
    return sources


def count_frames(sources: Sequence[FrameSource], start: int, stop: int | None, stride: int) -> int | None:
    """Total selected frames over all sources, when every source knows its length."""
    total = 0
    for source in sources:
        n = _selected_count(source.n_frames(), start, stop, stride)
        if n is None:
            return None
        total += n
    return total
