"""Per-frame non-covalent interactions (GetContacts' default criteria) and their frequencies.

One neighbour search per frame (a KD-tree over heavy atoms, radius = the largest atom-pair criterion) yields
every candidate atom pair; van der Waals, hydrophobic, salt-bridge and hydrogen-bond tests are then boolean
masks over that pair list. Aromatic rings and cations are few, so pi-cation and pi/T-stacking use dense
broadcasting. No Python loop touches atoms or pairs; the only loop is over the frames of a chunk.

Records follow GetContacts: one record per atom pair (per cation-ring pair, per ring pair), written with the
atom whose label ``chain:resname:resid:name`` sorts first as atom 1. Frequencies
(docs/design.md#interaction-frequencies):

* ``reference``: records per residue pair / n_frames, row = atom 1's residue (asymmetric, may exceed 1) -
  what the released SeqDance data holds;
* ``fraction``: fraction of frames in which the residue pair has at least one contact of the type (symmetric).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from seqdance.errors import InputError
from seqdance.features.md.contact_geometry import ContactModel
from seqdance.features.options import FREQUENCIES, Frequency
from seqdance.schema import ANGSTROM_PER_NM, INTERACTION_NAMES

TYPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(INTERACTION_NAMES)}
_HB_BY_BACKBONE_COUNT = np.array([TYPE_INDEX["hbss"], TYPE_INDEX["hbsb"], TYPE_INDEX["hbbb"]])


@dataclass(frozen=True)
class ContactRecords:
    """Interaction records of a chunk of frames: one row per record, atoms are protein-topology indices."""

    frame: np.ndarray  # (n,) frame index within the chunk
    kind: np.ndarray  # (n,) index into INTERACTION_NAMES
    atom1: np.ndarray  # (n,) atom whose label sorts first
    atom2: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    @staticmethod
    def concatenate(parts: list[ContactRecords]) -> ContactRecords:
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return ContactRecords(empty, empty, empty, empty)
        return ContactRecords(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                                ("frame", "kind", "atom1", "atom2")))


def _folded_angle_cos(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """|cos| of the angle between vectors (last axis): the angle folded into [0°, 90°]."""
    num = np.abs(np.einsum("...k,...k->...", u, v))
    den = np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, 0.0)


def _hbond_angle_ok(model: ContactModel, xyz: np.ndarray, donor: np.ndarray, acceptor: np.ndarray) -> np.ndarray:
    """True where some hydrogen H of heavy atom ``donor`` makes angle D-H···A >= 180° - hbond_angle."""
    h = model.hydrogens[donor]  # (m, k)
    valid = h >= 0
    if not valid.any():
        return np.zeros(len(donor), dtype=bool)
    hx = xyz[np.where(valid, h, 0)]  # (m, k, 3)
    d = xyz[model.heavy[donor]][:, None, :] - hx
    a = xyz[model.heavy[acceptor]][:, None, :] - hx
    cos = np.einsum("mkc,mkc->mk", d, a) / (np.linalg.norm(d, axis=-1) * np.linalg.norm(a, axis=-1) + 1e-12)
    limit = np.cos(np.deg2rad(180.0 - model.criteria.hbond_angle))
    return (valid & (cos <= limit)).any(axis=1)


def _atom_pair_records(model: ContactModel, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """vdw, hp, sb and H-bond records of one frame from one KD-tree neighbour search over heavy atoms."""
    c = model.criteria
    hx = xyz[model.heavy]
    pairs = cKDTree(hx).query_pairs(model.neighbour_cutoff_nm, output_type="ndarray")
    if len(pairs) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    i, j = pairs[:, 0], pairs[:, 1]
    dist = np.linalg.norm(hx[i] - hx[j], axis=1)
    ai, aj = model.heavy[i], model.heavy[j]
    same_chain = model.chain[ai] == model.chain[aj]
    res_gap = np.abs(model.resseq[ai] - model.resseq[aj])

    kinds, first, second = [], [], []

    def emit(mask: np.ndarray, kind: np.ndarray | int) -> None:
        kinds.append(np.asarray(kind)[mask] if np.ndim(kind) else np.full(int(mask.sum()), kind))
        first.append(i[mask])
        second.append(j[mask])

    contact = dist < model.radius[i] + model.radius[j] + c.vdw_epsilon / ANGSTROM_PER_NM
    contact &= ~(same_chain & (res_gap < c.vdw_res_diff))
    if model.disulfide_keys.size and contact.any():
        ri, rj = model.residue[ai], model.residue[aj]
        key = np.minimum(ri, rj) * model.n_residues_topology + np.maximum(ri, rj)
        contact &= ~np.isin(key, model.disulfide_keys)
    emit(contact, TYPE_INDEX["vdw"])
    emit(contact & model.hydrophobic[i] & model.hydrophobic[j], TYPE_INDEX["hp"])

    ionic = (model.anion[i] & model.cation[j]) | (model.cation[i] & model.anion[j])
    emit(ionic & (dist <= c.salt_bridge_distance / ANGSTROM_PER_NM), TYPE_INDEX["sb"])

    hb = model.polar[i] & model.polar[j] & (dist <= c.hbond_distance / ANGSTROM_PER_NM)
    hb &= ~(same_chain & (res_gap < c.hbond_res_diff)) & (model.residue[ai] != model.residue[aj])
    cand = np.flatnonzero(hb)
    if cand.size:
        ok = _hbond_angle_ok(model, xyz, i[cand], j[cand]) | _hbond_angle_ok(model, xyz, j[cand], i[cand])
        hb[cand] = ok
        n_backbone = model.backbone[i].astype(np.int64) + model.backbone[j]
        emit(hb, _HB_BY_BACKBONE_COUNT[n_backbone])
    return (np.concatenate(kinds), model.heavy[np.concatenate(first)], model.heavy[np.concatenate(second)])


def _ring_geometry(model: ContactModel, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = xyz[model.rings]  # (R, 3 atoms, 3)
    centroid = p.mean(axis=1)
    normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    return centroid, normal


def _aromatic_records(model: ContactModel, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pi-cation, pi-stacking and T-stacking records of one frame (dense: rings and cations are few)."""
    c = model.criteria
    kinds, first, second = [], [], []
    if len(model.rings) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    centroid, normal = _ring_geometry(model, xyz)
    ring_residue = model.residue[model.rings[:, 0]]

    if len(model.pc_cations):
        to_cation = xyz[model.pc_cations][:, None, :] - centroid[None, :, :]  # (C, R, 3)
        near = np.linalg.norm(to_cation, axis=-1) <= c.pi_cation_distance / ANGSTROM_PER_NM
        near &= model.residue[model.pc_cations][:, None] != ring_residue[None, :]
        near &= _folded_angle_cos(normal[None, :, :], to_cation) >= np.cos(np.deg2rad(c.pi_cation_angle))
        ci, ri = np.nonzero(near)
        kinds.append(np.full(len(ci), TYPE_INDEX["pc"]))
        first.append(model.pc_cations[ci])
        second.append(model.ring_label_atom[ri])

    if len(model.rings) > 1:
        r1, r2 = np.triu_indices(len(model.rings), k=1)
        between = centroid[r2] - centroid[r1]
        dist = np.linalg.norm(between, axis=1)
        cos_normals = np.einsum("nk,nk->n", normal[r1], normal[r2]) / (
            np.linalg.norm(normal[r1], axis=1) * np.linalg.norm(normal[r2], axis=1))
        normals_angle = np.rad2deg(np.arccos(np.clip(cos_normals, -1.0, 1.0)))  # [0, 180]
        psi_cos = np.maximum(_folded_angle_cos(normal[r1], between), _folded_angle_cos(normal[r2], between))
        ring_atoms_gap = np.linalg.norm(
            xyz[model.rings[r1]][:, :, None, :] - xyz[model.rings[r2]][:, None, :, :], axis=-1
        ).min(axis=(1, 2))
        # GetContacts' 10 Å prefilter
        stacked = (dist <= c.pi_stack_distance / ANGSTROM_PER_NM) & (ring_atoms_gap < 1.0)
        stacked &= np.minimum(normals_angle, 180.0 - normals_angle) <= c.pi_stack_angle
        stacked &= psi_cos >= np.cos(np.deg2rad(c.pi_stack_psi))
        t_shaped = (dist <= c.t_stack_distance / ANGSTROM_PER_NM) & (ring_atoms_gap < 0.6)  # GetContacts' 6 Å prefilter
        t_shaped &= np.abs(normals_angle - 90.0) <= c.t_stack_angle
        t_shaped &= psi_cos >= np.cos(np.deg2rad(c.t_stack_psi))
        for mask, name in ((stacked, "ps"), (t_shaped, "ts")):
            kinds.append(np.full(int(mask.sum()), TYPE_INDEX[name]))
            first.append(model.ring_label_atom[r1[mask]])
            second.append(model.ring_label_atom[r2[mask]])
    if not kinds:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(kinds), np.concatenate(first), np.concatenate(second)


def detect_contacts(model: ContactModel, xyz_chunk: np.ndarray, *, with_hbonds: bool = True) -> ContactRecords:
    """Interaction records of each frame of ``xyz_chunk`` (F, n_atoms, 3) in nm.

    With ``with_hbonds=False`` H-bond records are dropped (used when the input has no hydrogens).
    """
    parts = []
    for f, frame in enumerate(np.asarray(xyz_chunk, dtype=np.float64)):
        k1, a1, b1 = _atom_pair_records(model, frame)
        k2, a2, b2 = _aromatic_records(model, frame)
        kind = np.concatenate([k1, k2]).astype(np.int64)
        a = np.concatenate([a1, a2]).astype(np.int64)
        b = np.concatenate([b1, b2]).astype(np.int64)
        swap = model.label_rank[a] > model.label_rank[b]
        a, b = np.where(swap, b, a), np.where(swap, a, b)
        if not with_hbonds:
            keep = ~np.isin(kind, _HB_BY_BACKBONE_COUNT)
            kind, a, b = kind[keep], a[keep], b[keep]
        parts.append(ContactRecords(np.full(len(kind), f, dtype=np.int64), kind, a, b))
    return ContactRecords.concatenate(parts)


class ContactFrequencies:
    """Accumulates interaction records of successive chunks into per-residue-pair frequencies."""

    def __init__(self, model: ContactModel, n_residues: int, frequency: Frequency = "reference") -> None:
        if frequency not in FREQUENCIES:
            raise InputError(f"frequency must be one of {FREQUENCIES}, got {frequency!r}")
        self.model = model
        self.n_residues = n_residues
        self.frequency = frequency
        self.counts = np.zeros((len(INTERACTION_NAMES), n_residues, n_residues), dtype=np.int64)
        self.n_frames = 0

    def add(self, records: ContactRecords, n_frames: int) -> None:
        """Fold in the records of a chunk of ``n_frames`` frames."""
        n = self.n_residues
        row = self.model.output_residue[records.atom1]
        col = self.model.output_residue[records.atom2]
        keep = (row >= 0) & (col >= 0)
        kind, row, col, frame = records.kind[keep], row[keep], col[keep], records.frame[keep]
        if self.frequency == "fraction":
            lo, hi = np.minimum(row, col), np.maximum(row, col)
            per_frame = np.unique(((frame * len(INTERACTION_NAMES) + kind) * n + lo) * n + hi)
            pair_key = per_frame % (len(INTERACTION_NAMES) * n * n)
            keys, counts = np.unique(pair_key, return_counts=True)
            kind, rest = np.divmod(keys, n * n)
            lo, hi = np.divmod(rest, n)
            np.add.at(self.counts, (kind, lo, hi), counts)
            np.add.at(self.counts, (kind, hi, lo), counts)
        else:
            keys, counts = np.unique((kind * n + row) * n + col, return_counts=True)
            self.counts.reshape(-1)[keys] += counts
        self.n_frames += n_frames

    def result(self) -> dict[str, np.ndarray]:
        """Frequency map per interaction type, (N, N) float64."""
        if self.n_frames == 0:
            raise InputError("no frames were accumulated")
        return {name: self.counts[k] / self.n_frames for k, name in enumerate(INTERACTION_NAMES)}
