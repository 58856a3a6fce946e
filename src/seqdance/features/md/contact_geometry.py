"""Who can interact with whom: the static atom classes behind the nine interaction types (docs/design.md#interactions).

GetContacts (the tool the reference used) needs VMD and is not installable, so its default criteria are
re-implemented here; the chemistry tables below follow its selections, and the radii are Bondi's van der Waals
radii as GetContacts uses them. Everything that does not change along a trajectory is computed once from the
topology and the first frame (hydrogen attachment, "carbon bonded only to C/H", disulfides), so the per-frame
work in :mod:`seqdance.features.md.interactions` is pure array arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import mdtraj as md
import numpy as np
from scipy.spatial import cKDTree

from seqdance.features.inputs.protein import ProteinTopology
from seqdance.schema import ANGSTROM_PER_NM

#: Bondi van der Waals radii (Å) by element, as used by GetContacts; other elements default to 1.7 Å.
VDW_RADII_ANGSTROM: dict[str, float] = {
    "H": 1.20, "C": 1.70, "N": 1.55, "O": 1.52, "F": 1.47, "P": 1.80, "S": 1.80, "CL": 1.75, "SE": 1.90,
    "BR": 1.85, "I": 1.98,
}
DEFAULT_VDW_RADIUS_ANGSTROM = 1.70

#: H-bond classification: donor/acceptor atoms with these names are backbone (GetContacts' rule).
BACKBONE_POLAR_NAMES = frozenset({"N", "O"})
#: Salt-bridge partners.
ANION_ATOMS: dict[str, frozenset[str]] = {"ASP": frozenset({"OD1", "OD2"}), "GLU": frozenset({"OE1", "OE2"})}
CATION_ATOMS: dict[str, frozenset[str]] = {
    "LYS": frozenset({"NZ"}), "ARG": frozenset({"NH1", "NH2"}), "HIS": frozenset({"ND1", "NE2"}),
}
#: Three ring atoms that stand for each aromatic ring (centroid and normal are taken from them).
RING_ATOMS: dict[str, tuple[str, str, str]] = {
    "PHE": ("CG", "CE1", "CE2"), "TYR": ("CG", "CE1", "CE2"), "TRP": ("CD2", "CZ2", "CZ3"),
    "HIS": ("CG", "CE1", "CD2"),
}
#: Residues whose carbons bonded only to carbon/hydrogen make hydrophobic contacts.
HYDROPHOBIC_RESIDUES = frozenset({"ALA", "PHE", "GLY", "ILE", "LEU", "PRO", "VAL", "TRP"})

#: Covalent-bond guess used where the topology cannot be trusted to carry bonds (Å): hydrogen to its heavy
#: atom, "bonded to" for the hydrophobic-carbon test (GetContacts' 1.7 Å), and S-S for disulfides.
HYDROGEN_BOND_LENGTH_MAX = 1.3
HYDROPHOBIC_NEIGHBOUR_RADIUS = 1.7
DISULFIDE_SG_MAX = 2.5


@dataclass(frozen=True)
class ContactCriteria:
    """Geometric criteria (GetContacts defaults; distances in Å, angles in degrees)."""

    hbond_distance: float = 3.5  # donor-acceptor heavy atoms
    hbond_angle: float = 70.0  # largest deviation of D-H···A from linear (angle D-H-A >= 110°)
    hbond_res_diff: int = 1  # skip donor/acceptor pairs with |Δresid| below this (same chain)
    salt_bridge_distance: float = 4.0
    pi_cation_distance: float = 6.0
    pi_cation_angle: float = 60.0
    pi_stack_distance: float = 7.0
    pi_stack_angle: float = 30.0
    pi_stack_psi: float = 45.0
    t_stack_distance: float = 5.0
    t_stack_angle: float = 30.0
    t_stack_psi: float = 45.0
    vdw_epsilon: float = 0.5
    vdw_res_diff: int = 2


@dataclass(frozen=True)
class ContactModel:
    """Per-atom classes of the protein atoms (indices refer to the protein-only topology)."""

    criteria: ContactCriteria
    heavy: np.ndarray  # (H,) atom indices of heavy atoms
    radius: np.ndarray  # (H,) vdW radius, nm
    chain: np.ndarray  # (n_atoms,) chain index
    resseq: np.ndarray  # (n_atoms,) residue number from the topology
    residue: np.ndarray  # (n_atoms,) residue index in the protein topology
    output_residue: np.ndarray  # (n_atoms,) output row, -1 for caps
    label_rank: np.ndarray  # (n_atoms,) rank of "chain:resname:resid:name": decides record order
    polar: np.ndarray  # (H,) bool: N or O (H-bond donor/acceptor candidates)
    backbone: np.ndarray  # (H,) bool: backbone N/O
    hydrogens: np.ndarray  # (H, k) attached hydrogen atom indices, -1 padded
    amide_n: np.ndarray  # (H,) bool: backbone N of a non-proline residue (should carry an H)
    anion: np.ndarray  # (H,) bool
    cation: np.ndarray  # (H,) bool
    hydrophobic: np.ndarray  # (H,) bool
    disulfide_keys: np.ndarray  # sorted residue-pair keys (r1 * n_res + r2, r1 < r2) of S-S bonded Cys
    rings: np.ndarray  # (R, 3) ring atom indices
    ring_label_atom: np.ndarray  # (R,) atom standing for the ring in records (smallest label)
    pc_cations: np.ndarray  # (C,) cation atom indices for pi-cation
    n_residues_topology: int

    @property
    def has_hydrogens(self) -> bool:
        return bool((self.hydrogens >= 0).any())

    @property
    def neighbour_cutoff_nm(self) -> float:
        """Largest pair distance any atom-pair criterion can accept (the neighbour-search radius)."""
        c = self.criteria
        vdw = 2 * float(self.radius.max(initial=0.0)) + c.vdw_epsilon / ANGSTROM_PER_NM
        return max(vdw, c.hbond_distance / ANGSTROM_PER_NM, c.salt_bridge_distance / ANGSTROM_PER_NM)

    def backbone_hydrogen_coverage(self) -> float:
        """Fraction of backbone amide N (not proline) carrying a hydrogen: ~1 with hydrogens, 0 without."""
        if not self.amide_n.any():
            return 1.0
        return float((self.hydrogens[self.amide_n] >= 0).any(axis=1).mean())


def _element_symbol(atom: md.core.topology.Atom) -> str:
    element = getattr(atom, "element", None)
    symbol = getattr(element, "symbol", None) if element is not None else None
    if symbol and symbol not in ("VS", "D"):
        return symbol.upper()
    letters = "".join(ch for ch in atom.name if ch.isalpha()).upper()
    return letters[:1] or "X"


def atom_labels(protein: ProteinTopology) -> list[str]:
    """GetContacts-style label "chain:resname:resid:name" of each protein atom (decides record order)."""
    top = protein.topology
    icode_of_residue: dict[int, str] = {}
    for row, res_index in enumerate(protein.residue_rows):
        icode_of_residue[int(res_index)] = str(protein.residue_ids[row]["icode"])
    labels = []
    for atom in top.atoms:
        res = atom.residue
        chain = protein.chain_labels[res.chain.index]
        labels.append(f"{chain}:{res.name}:{res.resSeq}{icode_of_residue.get(res.index, '')}:{atom.name}")
    return labels


def build_contact_model(protein: ProteinTopology, first_frame_nm: np.ndarray,
                        criteria: ContactCriteria | None = None) -> ContactModel:
    """Classify the protein atoms once; ``first_frame_nm`` (n_atoms, 3) supplies bond geometry."""
    criteria = criteria or ContactCriteria()
    top = protein.topology
    xyz = np.asarray(first_frame_nm, dtype=np.float64)
    atoms = list(top.atoms)
    n_atoms = len(atoms)
    elements = np.array([_element_symbol(a) for a in atoms])
    names = np.array([a.name for a in atoms])
    resnames = np.array([a.residue.name for a in atoms])
    residue = np.array([a.residue.index for a in atoms], dtype=np.int64)
    chain = np.array([a.residue.chain.index for a in atoms], dtype=np.int64)
    resseq = np.array([a.residue.resSeq for a in atoms], dtype=np.int64)

    is_h = elements == "H"
    heavy = np.flatnonzero(~is_h)
    hydrogens = np.flatnonzero(is_h)
    local_of_atom = np.full(n_atoms, -1, dtype=np.int64)
    local_of_atom[heavy] = np.arange(len(heavy))

    radius = (np.array([VDW_RADII_ANGSTROM.get(e, DEFAULT_VDW_RADIUS_ANGSTROM) for e in elements[heavy]])
              / ANGSTROM_PER_NM)
    heavy_elements = elements[heavy]
    polar = np.isin(heavy_elements, ("N", "O"))
    backbone = np.isin(names[heavy], tuple(BACKBONE_POLAR_NAMES))

    # Hydrogens: each belongs to its nearest heavy atom (a covalent bond, ~1 Å); works without topology bonds.
    attached = np.full((len(heavy), 4), -1, dtype=np.int64)
    if hydrogens.size:
        tree = cKDTree(xyz[heavy])
        dist, nearest = tree.query(xyz[hydrogens], k=1)
        bonded = dist <= HYDROGEN_BOND_LENGTH_MAX / ANGSTROM_PER_NM
        owners = nearest[bonded]
        h_atoms = hydrogens[bonded]
        order = np.argsort(owners, kind="stable")
        owners, h_atoms = owners[order], h_atoms[order]
        first = np.searchsorted(owners, owners, side="left")
        slot = np.arange(len(owners)) - first
        keep = slot < attached.shape[1]
        attached[owners[keep], slot[keep]] = h_atoms[keep]

    anion = np.zeros(len(heavy), dtype=bool)
    cation = np.zeros(len(heavy), dtype=bool)
    for table, mask in ((ANION_ATOMS, anion), (CATION_ATOMS, cation)):
        for resname, atom_names in table.items():
            mask |= (resnames[heavy] == resname) & np.isin(names[heavy], tuple(atom_names))

    # Hydrophobic carbons: carbons of the hydrophobic residues whose neighbours within 1.7 Å are all C or H.
    hydrophobic = (heavy_elements == "C") & np.isin(resnames[heavy], tuple(HYDROPHOBIC_RESIDUES))
    candidates = np.flatnonzero(hydrophobic)
    if candidates.size:
        tree_all = cKDTree(xyz)
        neighbours = tree_all.query_ball_point(xyz[heavy[candidates]], r=HYDROPHOBIC_NEIGHBOUR_RADIUS / ANGSTROM_PER_NM)
        lengths = np.array([len(n) for n in neighbours])
        flat = np.concatenate([np.asarray(n, dtype=np.int64) for n in neighbours])
        owner = np.repeat(np.arange(len(candidates)), lengths)
        bad = ~np.isin(elements[flat], ("C", "H"))
        polar_neighbour = np.bincount(owner[bad], minlength=len(candidates)) > 0
        hydrophobic[candidates[polar_neighbour]] = False

    # Disulfides: Cys SG pairs closer than 2.5 Å (topology bonds are often absent, e.g. PDB without CONECT).
    sg = np.flatnonzero((resnames == "CYS") & (names == "SG"))
    disulfide_keys = np.zeros(0, dtype=np.int64)
    n_res = top.n_residues
    if sg.size >= 2:
        pairs = cKDTree(xyz[sg]).query_pairs(DISULFIDE_SG_MAX / ANGSTROM_PER_NM, output_type="ndarray")
        if len(pairs):
            r = np.sort(residue[sg[pairs]], axis=1)
            disulfide_keys = np.unique(r[:, 0] * n_res + r[:, 1])

    rings, ring_label_atom = [], []
    labels = atom_labels(protein)
    label_rank = np.empty(n_atoms, dtype=np.int64)
    label_rank[np.argsort(np.array(labels), kind="stable")] = np.arange(n_atoms)
    for res in top.residues:
        ring_names = RING_ATOMS.get(res.name)
        if ring_names is None:
            continue
        by_name = {a.name: a.index for a in res.atoms}
        if all(n in by_name for n in ring_names):
            idx = [by_name[n] for n in ring_names]
            rings.append(idx)
            ring_label_atom.append(min(idx, key=lambda i: label_rank[i]))
    pc_cations = heavy[cation]

    return ContactModel(
        criteria=criteria,
        heavy=heavy,
        radius=radius,
        chain=chain,
        resseq=resseq,
        residue=residue,
        output_residue=protein.atom_residue.astype(np.int64),
        label_rank=label_rank,
        polar=polar,
        backbone=backbone,
        hydrogens=attached,
        amide_n=(names[heavy] == "N") & (resnames[heavy] != "PRO"),
        anion=anion,
        cation=cation,
        hydrophobic=hydrophobic,
        disulfide_keys=disulfide_keys,
        rings=np.asarray(rings, dtype=np.int64).reshape(-1, 3),
        ring_label_atom=np.asarray(ring_label_atom, dtype=np.int64),
        pc_cations=pc_cations,
        n_residues_topology=n_res,
    )
