"""Trajectory frames in chunks: files MDTraj reads (DCD, XTC, TRR, NetCDF, Amber mdcrd, ...), the models of a
PDB/mmCIF file (:mod:`.ensembles`) and mdCATH groups (:mod:`.mdcath`), restricted to the protein atoms so that
memory stays bounded whatever the trajectory length.

Topology and trajectory are checked against each other up front (atom counts; a DCD that ends inside a frame) and
read errors are re-raised naming both files. Without a trajectory the topology file's own models are the frames.
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
from collections.abc import Iterator, Sequence

import mdtraj as md
import numpy as np

from seqdance.errors import InputError
from seqdance.features.inputs.ensembles import ModelFileSource
from seqdance.features.inputs.files import (
    MMCIF_SUFFIXES,
    PDB_SUFFIXES,
    FrameChunk,
    FrameSource,
    LoadedTopology,
    selected_count,
    suffix,
)
from seqdance.features.inputs.mdcath import MdcathSource, is_mdcath_file, mdcath_groups
from seqdance.features.inputs.spec import InputSpec, InputSpecLike, as_specs
from seqdance.io_utils import c_stdout_to_log

log = logging.getLogger(__name__)

#: Upper bound on the memory of one chunk of full frames (readers decode every atom before the protein subset).
MAX_CHUNK_BYTES = 256 * 1024**2

#: Formats whose header tells the atom count cheaply (checked against the topology before reading).
_COUNTABLE_SUFFIXES = (".dcd", ".xtc", ".trr", ".nc", ".ncdf", ".netcdf")


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


class MDTrajSource(FrameSource):
    """A trajectory file MDTraj reads, interpreted with the given topology file."""

    def __init__(self, path: str, topology: LoadedTopology) -> None:
        InputSpec(path).require("trajectory")
        self.path = path
        self.name = path
        self.topology = topology
        self._n_frames: int | None = None
        self._check_atom_count()

    def _check_atom_count(self) -> None:
        if suffix(self.path) not in _COUNTABLE_SUFFIXES:
            return
        if suffix(self.path) == ".dcd":
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
        except Exception as exc:  # the reader's failure, whatever its type: named as the file's problem
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


def open_sources(topology: LoadedTopology, trajectories: InputSpecLike | Sequence[InputSpecLike] | None
                 ) -> list[FrameSource]:
    """Frame sources for the trajectories (or the topology file's own frames when there are none)."""
    specs = as_specs(trajectories) or [InputSpec.parse(topology.path)]
    sources: list[FrameSource] = []
    for spec in specs:
        spec.require("trajectory")
        if is_mdcath_file(spec.path):
            sources.extend(MdcathSource(spec.path, t, r, topology) for t, r in mdcath_groups(spec.path, spec.selector))
        elif spec.selector:
            raise InputError(f"{spec}: a '#' selector picks a temperature/replica of an mdCATH file; {spec.path} is "
                             "not one")
        elif suffix(spec.path) in PDB_SUFFIXES + MMCIF_SUFFIXES:
            sources.append(ModelFileSource(spec.path, topology))
        else:
            sources.append(MDTrajSource(spec.path, topology))
    return sources


def count_frames(sources: Sequence[FrameSource], start: int, stop: int | None, stride: int) -> int | None:
    """Total selected frames over all sources, when every source knows its length."""
    total = 0
    for source in sources:
        n = selected_count(source.n_frames(), start, stop, stride)
        if n is None:
            return None
        total += n
    return total
