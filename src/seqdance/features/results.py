"""What :func:`~seqdance.features.extract_md` and :func:`~seqdance.features.extract_nma` return, described once.

Both return plain dicts (easy to save with ``np.savez`` and to extend), typed here. Property arrays are keyed by
:attr:`seqdance.schema.Property.raw_key` and hold raw, residue-aligned values: no cube root on interaction
frequencies, no RMSF normalisation (the dataset store applies the schema's transforms,
:mod:`seqdance.store.transforms`). N is the number of residues, chains concatenated in order.
:func:`property_keys` gives the property keys of each kind from the schema; a test checks these types agree.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from seqdance.schema import FeatureKind, properties_of_kind


class ChainLayout(TypedDict):
    """Which residues the arrays hold, in both feature families."""

    #: One-letter sequence, chains joined by ":".
    sequence: str
    #: (N,) structured: chain id, residue number, insertion code (field names differ: see each family).
    residue_ids: np.ndarray
    #: (chains,) int64: residues per chain, in order.
    chain_lengths: np.ndarray


class Conformation(TypedDict):
    """Conformational properties of each chain's Cα trace over the frames (docs/design.md#conformational-properties; one
    frame for a structure), (chains,) each; :func:`seqdance.features.conformation.conformation_arrays` writes them and
    :func:`~seqdance.features.conformation.chains_from_arrays` reads them back."""

    conformation_n_residues: np.ndarray  # int64
    conformation_n_frames: np.ndarray  # int64
    conformation_rg_mean: np.ndarray  # nm, unweighted radius of gyration, mean over frames
    conformation_rg_std: np.ndarray  # nm, its standard deviation over frames
    conformation_ree_mean: np.ndarray  # nm, end-to-end (first to last Cα) distance
    conformation_ree_std: np.ndarray
    conformation_asphericity_mean: np.ndarray  # gyration-tensor asphericity, 0 (sphere) .. 1 (rod)
    conformation_asphericity_std: np.ndarray
    conformation_scaled_rg: np.ndarray  # nm, rg_mean / N^0.366
    conformation_nu: np.ndarray  # Flory exponent of R(s) = R0 s^nu over s > 5 (NaN for chains too short)
    conformation_r0: np.ndarray  # nm, its fitted prefactor
    conformation_nu_r2: np.ndarray  # R² of that fit of R(s): near 1 for a power law (disordered chains), not folded
    conformation_nu_s_min: np.ndarray  # int64, the fitted separations s_min..s_max (0, 0: no fit)
    conformation_nu_s_max: np.ndarray  # int64


class MdFeatures(ChainLayout, Conformation):
    """Raw MD features of one trajectory (or pooled replicas); docs/design.md#md-features."""

    sasa_mean: np.ndarray  # (N,) nm², Shrake-Rupley, mean over frames
    sasa_std: np.ndarray  # (N,) nm², its standard deviation over frames
    rmsf: np.ndarray  # (N,) nm, Cα after superposition on frame 0 (stored as rmsf_nor = rmsf / max)
    ss: np.ndarray  # (N, 8) fraction of frames in each DSSP class, order schema.SS_CLASSES
    chi: np.ndarray  # (N, 12) chi1 histogram / frames; NaN rows where a residue has no chi1 (Gly, Ala)
    phi: np.ndarray  # (N, 12) phi histogram / frames; NaN rows where undefined (chain starts)
    psi: np.ndarray  # (N, 12) psi histogram / frames; NaN rows where undefined (chain ends)
    vdw: np.ndarray  # (N, N) interaction frequencies of the nine types (frequency mode below);
    hbbb: np.ndarray  # H-bond maps are NaN everywhere when the input has no hydrogens and
    hbsb: np.ndarray  # missing_hydrogens="skip" (every property in missing_properties is NaN)
    hbss: np.ndarray
    hp: np.ndarray
    sb: np.ndarray
    pc: np.ndarray
    ps: np.ndarray
    ts: np.ndarray
    corr: np.ndarray  # (N, N) Cα movement correlation, in [-1, 1], diagonal 1
    #: (N,) 3-letter residue names as normalised by the topology reader.
    residue_names: np.ndarray
    #: Row index at which each chain after the first starts.
    chain_breaks: np.ndarray
    #: Frames pooled over all trajectories.
    n_frames: int
    #: "reference" (atom-pair records per frame, as the released data) or "fraction" (frames with a contact).
    frequency: str
    #: What the input was (seqdance.features.options.INPUT_KINDS): "all_atom", "all_atom_protonated" (hydrogens
    #: added here), "calpha" (one bead per residue) or "backmapped" (a one-bead trace rebuilt to all atoms).
    input_kind: str
    #: Schema names of the properties this input cannot give (docs/design.md#missing-properties), schema order: their
    #: arrays above are NaN with their usual shapes (never zero), and the store masks them for this protein.
    missing_properties: tuple[str, ...]


class NmaFeatures(ChainLayout, Conformation):
    """Normal-mode features of one structure (float64); docs/design.md#nma-features."""

    nma_res1: np.ndarray  # (N,) GNM mean-square fluctuation, low-frequency modes
    nma_res2: np.ndarray  # (N,) mid-frequency modes
    nma_res3: np.ndarray  # (N,) high-frequency modes
    nma_pair1: np.ndarray  # (N, N) ANM correlation, low-frequency modes
    nma_pair2: np.ndarray  # (N, N) mid-frequency modes
    nma_pair3: np.ndarray  # (N, N) high-frequency modes
    #: Protein residues without a Cα atom (``seqdance.features.inputs.structures.SkippedResidue``), left out.
    skipped_residues: list
    #: Zero-mode rule ("rigid" or "reference") and disconnected-structure rule ("error" or "split") used.
    zero_modes: str
    disconnected: str
    #: Pieces analysed separately (1 unless disconnected="split" found several).
    n_pieces: int
    #: (3,) modes in the low / mid / high range of GNM and of ANM.
    gnm_range_sizes: np.ndarray
    anm_range_sizes: np.ndarray
    #: Zero-eigenvalue modes removed from GNM and ANM.
    gnm_zero_modes: int
    anm_zero_modes: int


def property_keys(kind: FeatureKind) -> tuple[str, ...]:
    """The property keys a feature dict of this kind holds (schema order)."""
    return tuple(p.raw_key for p in properties_of_kind(kind))
