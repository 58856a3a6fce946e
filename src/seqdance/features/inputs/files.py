"""What every input reader shares: file kinds by suffix, the loaded topology, and frame sources.

A :class:`FrameSource` yields :class:`FrameChunk` s (protein coordinates in nm and the periodic box) of one
trajectory; :mod:`.trajectories` (MDTraj formats), :mod:`.ensembles` (models of a PDB/mmCIF file) and
:mod:`.mdcath` (mdCATH HDF5 groups) implement it. :func:`check_coordinates` refuses what no reader may pass on:
non-finite or absurd coordinates, named by file, frame and atom.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mdtraj as md
import numpy as np

from seqdance.errors import InputError
from seqdance.features.inputs.spec import HDF5_SUFFIXES
from seqdance.features.options import MAX_COORDINATE_NM

__all__ = ["HDF5_SUFFIXES", "MDTRAJ_TOPOLOGY_SUFFIXES", "MMCIF_SUFFIXES", "PDB_SUFFIXES", "FrameChunk", "FrameSource",
           "LoadedTopology", "check_coordinates", "selected_count", "suffix"]

MDTRAJ_TOPOLOGY_SUFFIXES = (".pdb", ".pdb.gz", ".ent", ".cif", ".pdbx", ".psf", ".gro", ".prmtop", ".parm7",
                            ".prm7", ".mol2", ".hoomdxml", ".arc", ".h5", ".lh5")
PDB_SUFFIXES = (".pdb", ".pdb.gz", ".ent", ".ent.gz")
MMCIF_SUFFIXES = (".cif", ".pdbx")


@dataclass(frozen=True)
class LoadedTopology:
    """A file's full topology (all atoms) plus what MDTraj's topology cannot hold."""

    topology: md.Topology
    insertion_codes: np.ndarray | None  # one per atom, or None when the format has none
    path: str


def suffix(path: str | os.PathLike[str]) -> str:
    name = str(path).lower()
    for double in (".pdb.gz", ".ent.gz"):
        if name.endswith(double):
            return double
    return Path(name).suffix


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


def selected_count(n_total: int | None, start: int, stop: int | None, stride: int) -> int | None:
    if n_total is None:
        return None
    return len(range(start, n_total if stop is None else min(stop, n_total), stride))


def check_coordinates(xyz: np.ndarray, frame_numbers: np.ndarray, source: str,
                      describe_atom: Callable[[int], str] | None = None) -> None:
    """Raise :class:`InputError` naming ``source``, the frame and the atom when a coordinate is NaN, infinite or
    farther than :data:`~seqdance.features.options.MAX_COORDINATE_NM` from the origin (a damaged file: numeric
    code downstream would fail with messages about trees or array sizes, or compute garbage).

    ``xyz`` (F, atoms, 3) nm; ``frame_numbers`` (F,) the frames' numbers in ``source``; ``describe_atom(k)``
    names atom k (default: its 1-based position).
    """
    bad = ~(np.abs(xyz) <= MAX_COORDINATE_NM)  # NaN compares False: caught with inf and absurd values
    if not bad.any():
        return
    frame, atom, axis = (int(v) for v in np.argwhere(bad)[0])
    value = float(xyz[frame, atom, axis])
    if np.isnan(value):
        what = "not a number"
    elif np.isinf(value):
        what = "infinite"
    else:
        what = f"{value:.3g} nm, beyond any simulation box (|x| > {MAX_COORDINATE_NM:g} nm)"
    name = describe_atom(atom) if describe_atom is not None else f"atom {atom + 1}"
    raise InputError(f"{source}: frame {int(frame_numbers[frame])}: {name} has a coordinate that is {what} "
                     f"({'xyz'[axis]} = {value!r}); the file is damaged, or not in the units its format implies")
