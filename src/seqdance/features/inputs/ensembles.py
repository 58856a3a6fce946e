"""Ensembles: the models of a multi-model PDB or mmCIF file (PED conformers, NMR models, trajectories written as
MODEL records) as frames of one system.

Every model must hold the same atoms as the first, checked before reading (:func:`check_models_agree`: a model
that differs is an error naming the file, the model and the first differing atom); the models are then read with
``mdtraj.load`` (MDTraj reads these formats whole anyway; its ``iterload`` cannot read mmCIF).
"""

from __future__ import annotations

import gzip
import warnings
from collections.abc import Iterator

import mdtraj as md
import numpy as np

from seqdance.errors import InputError
from seqdance.features.inputs.files import MMCIF_SUFFIXES, FrameChunk, FrameSource, LoadedTopology, suffix
from seqdance.features.inputs.spec import InputSpec


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
    except Exception as exc:  # the reader's failure, whatever its type: named as the file's problem
        raise InputError(f"{path}: cannot read the models ({type(exc).__name__}: {exc})") from exc
    for position, model in enumerate(structure, start=1):
        serial = str(getattr(model, "num", None) or getattr(model, "name", "") or position)
        atoms = [f"{atom.name:>4.4}{residue.name:>3.3} {chain.name[:1]:1}{residue.seqid.num:>4d}"
                 f"{residue.seqid.icode.strip() or ' ':1}" for chain in model for residue in chain for atom in residue]
        yield position, serial, atoms


def _describe_atom(identity: str) -> str:
    """'HB2 of PHE 1 (chain A)' from a PDB-column identity (see :func:`_pdb_model_atoms`)."""
    name, resname, chain, number = (identity[0:4].strip(), identity[4:7].strip(), identity[8:9].strip(),
                                    identity[9:].strip())
    return f"{name} of {resname} {number}" + (f" (chain {chain})" if chain else "")


def check_models_agree(path: str) -> int:
    """Number of models in a PDB/mmCIF file; raises :class:`InputError` naming the file and the first model whose
    atoms (names, residues, chains, order) differ from the first model's (an ensemble's models are frames of one
    system)."""
    reader = _mmcif_model_atoms if suffix(path) in MMCIF_SUFFIXES else _pdb_model_atoms
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
        InputSpec(path).require("trajectory")
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
        except Exception as exc:  # the reader's failure, whatever its type: named as the file's problem
            raise InputError(
                f"reading the models of {self.path} with topology {self.topology.path} failed "
                f"({type(exc).__name__}: {exc}); do they describe the same system?"
            ) from exc
        xyz = traj.xyz[selected.start:selected.stop:selected.step]
        box = (None if traj.unitcell_vectors is None
               else traj.unitcell_vectors[selected.start:selected.stop:selected.step])
        for lo in range(0, len(xyz), chunk_frames):
            yield FrameChunk(np.ascontiguousarray(xyz[lo:lo + chunk_frames]),
                             None if box is None else box[lo:lo + chunk_frames])
