"""mdCATH HDF5 files (one file per CATH domain): topology and trajectory in one file.

Layout: a top-level group named after the domain holding ``pdbProteinAtoms`` (PDB text of the protein atoms) and
one group per temperature (``"320"``, ``"348"``, ...) each with one group per replica (``"0"``..``"4"``) holding
``coords`` (frames × atoms × 3, Å). Select with a suffix (:class:`~seqdance.features.inputs.spec.InputSpec`):
``file.h5#348/2`` (one replica), ``file.h5#348`` (all replicas of 348 K); no suffix = all replicas of the lowest
temperature. The file may serve as its own topology.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from seqdance.errors import InputError
from seqdance.features.inputs.files import HDF5_SUFFIXES, FrameChunk, FrameSource, LoadedTopology, suffix
from seqdance.schema import ANGSTROM_PER_NM


def is_mdcath_file(path: str) -> bool:
    """True for an HDF5 file laid out like mdCATH (a domain group with ``pdbProteinAtoms``)."""
    if suffix(path) not in HDF5_SUFFIXES:
        return False
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            return any(isinstance(h5[k], h5py.Group) and "pdbProteinAtoms" in h5[k] for k in h5)
    except OSError:
        return False


def mdcath_domain(h5) -> str:
    import h5py

    domains = [k for k in h5 if isinstance(h5[k], h5py.Group) and "pdbProteinAtoms" in h5[k]]
    if len(domains) != 1:
        raise InputError(f"{h5.filename}: expected one mdCATH domain group with 'pdbProteinAtoms', found {domains}")
    return domains[0]


def mdcath_pdb_text(path: str) -> str:
    """The PDB text of the protein atoms an mdCATH file holds (its topology)."""
    import h5py

    with h5py.File(path, "r") as h5:
        raw = h5[mdcath_domain(h5)]["pdbProteinAtoms"][()]
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class MdcathSource(FrameSource):
    """One temperature/replica group of an mdCATH HDF5 file (coords in Å, converted to nm)."""

    def __init__(self, path: str, temperature: str, replica: str, topology: LoadedTopology) -> None:
        self.path, self.temperature, self.replica = path, temperature, replica
        self.name = f"{path}#{temperature}/{replica}"
        import h5py

        with h5py.File(path, "r") as h5:
            group = h5[mdcath_domain(h5)][temperature][replica]
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
            group = h5[mdcath_domain(h5)][self.temperature][self.replica]
            coords = group["coords"]
            box = np.asarray(group["box"][()], dtype=np.float32) if "box" in group else None
            if box is not None and box.shape != (3, 3):
                box = np.diag(box.ravel()[:3]) if box.size >= 3 else None  # lengths only
            step = chunk_frames * stride
            for lo in range(start, end, step):
                block = np.asarray(coords[lo:min(lo + step, end):stride], dtype=np.float32)
                xyz = np.ascontiguousarray(block[:, atom_indices] / np.float32(ANGSTROM_PER_NM))
                boxes = None if box is None else np.repeat(box[None], len(xyz), axis=0)
                yield FrameChunk(xyz, boxes)


def mdcath_groups(path: str, selector: str | None) -> list[tuple[str, str]]:
    """(temperature, replica) groups an mdCATH path selects (see module docstring)."""
    import h5py

    with h5py.File(path, "r") as h5:
        domain = h5[mdcath_domain(h5)]
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
