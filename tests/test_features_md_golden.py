"""MD features on the shipped 3tvj_I example against the reference pipeline's outputs (docs/design.md#test-data).

Golden files: ``3tvj_I_res_feature.csv`` (MDTraj features), ``3tvj_I_pair_feature.npz`` (reference-mode
interaction frequencies + Cα correlation) and GetContacts' own per-frame atom contacts ``*_contact.tsv``.
"""

from __future__ import annotations

import collections
from pathlib import Path

import mdtraj as md
import numpy as np
import pandas as pd
import pytest
from conftest import require

from seqdance.features import extract_md
from seqdance.features.inputs.protein import build_protein_topology
from seqdance.features.inputs.topology import load_topology
from seqdance.features.md.contact_geometry import atom_labels, build_contact_model
from seqdance.features.md.interactions import detect_contacts
from seqdance.features.results import MdFeatures, property_keys
from seqdance.schema import INTERACTION_NAMES, PAIR_PROPERTIES, SS_DSSP_CODES, properties_of_kind

#: GetContacts labels carry the topology's raw atom names; MDTraj standardises C-terminal oxygens.
_RAW_TO_STANDARD_NAME = {"OT1": "O", "OT2": "OXT"}


@pytest.fixture(scope="module")
def golden(shared_data: Path) -> dict[str, Path]:
    base = shared_data / "reference" / "md"
    files = {
        "pdb": base / "3tvj_I.pdb",
        "dcd": base / "3tvj_I_10frames.dcd",
        "csv": base / "3tvj_I_res_feature.csv",
        "npz": base / "3tvj_I_pair_feature.npz",
        "tsv": base / "3tvj_I_10frames_contact.tsv",
    }
    for path in files.values():
        require(path)
    return files


@pytest.fixture(scope="module")
def features(golden) -> dict:
    return extract_md(golden["pdb"], golden["dcd"], chunk_frames=4)


@pytest.fixture(scope="module")
def residue_table(golden) -> pd.DataFrame:
    return pd.read_csv(golden["csv"])


@pytest.fixture(scope="module")
def pair_table(golden) -> np.ndarray:
    return np.load(golden["npz"])["array"]


def test_keys_follow_the_schema_and_the_declared_type(features):
    """Every MD property of the schema, raw: RMSF under "rmsf" (not normalised); exactly the keys of MdFeatures."""
    expected = {"rmsf" if p.name == "rmsf_nor" else p.name for p in properties_of_kind("md")}
    assert expected == set(property_keys("md"))
    assert set(features) == set(MdFeatures.__required_keys__)
    assert expected <= set(features)
    assert {"sequence", "residue_ids", "chain_lengths", "chain_breaks", "n_frames", "frequency"} <= set(features)


def test_sequence_and_ids(features, residue_table):
    assert features["sequence"] == "GSGEVTCEPGTTFKDKCNTCRCGSDGKSAVCTKLWCNQ"
    assert len(features["residue_ids"]) == len(residue_table) == 38
    assert list(features["residue_ids"]["resSeq"]) == list(range(1, 39))
    assert features["n_frames"] == 10 and features["frequency"] == "reference"
    assert list(features["chain_lengths"]) == [38] and len(features["chain_breaks"]) == 0


def test_sasa_matches_reference(features, residue_table):
    # seqdance's Shrake-Rupley kernel (bit-identical to MDTraj's single-frame call) reproduces MDTraj 1.9.9 to
    # float32 precision; MDTraj 1.11's batched call would be up to 2.6e-3 nm² off.
    np.testing.assert_allclose(features["sasa_mean"], residue_table["sasa_mean"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(features["sasa_std"], residue_table["sasa_std"], rtol=0, atol=1e-6)


def test_rmsf_dssp_and_angles_match_reference(features, residue_table):
    np.testing.assert_allclose(features["rmsf"], residue_table["rmsf"], rtol=0, atol=1e-6)
    ss_columns = [f"dssp_{code}" for code in SS_DSSP_CODES]
    np.testing.assert_allclose(features["ss"], residue_table[ss_columns].to_numpy(), atol=1e-12)
    for kind in ("chi", "phi", "psi"):
        expected = residue_table[[f"{kind}_{i}" for i in range(12)]].to_numpy()
        got = features[kind]
        assert np.array_equal(np.isnan(got), np.isnan(expected)), kind  # Gly/Ala chi, terminal phi/psi
        np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)], atol=1e-12)
        defined = ~np.isnan(got[:, 0])
        np.testing.assert_allclose(got[defined].sum(axis=1), 1.0)


def test_ca_correlation_matches_reference(features, pair_table):
    corr_channel = [p.name for p in PAIR_PROPERTIES].index("corr")
    np.testing.assert_allclose(features["corr"], pair_table[..., corr_channel], atol=1e-6)
    np.testing.assert_allclose(np.diag(features["corr"]), 1.0, atol=1e-9)


@pytest.mark.parametrize("name", INTERACTION_NAMES)
def test_interaction_maps_match_reference(features, pair_table, name):
    """Done-criterion: symmetrised map within 5% (total abs difference) of the symmetrised golden channel."""
    golden_map = pair_table[..., INTERACTION_NAMES.index(name)]
    ours = features[name]
    golden_sym, ours_sym = golden_map + golden_map.T, ours + ours.T
    assert np.abs(ours_sym - golden_sym).sum() <= 0.05 * golden_sym.sum() + 1e-12
    # In fact the asymmetric reference-mode map (row = first atom's residue) is reproduced exactly.
    np.testing.assert_allclose(ours, golden_map, atol=1e-12)


def test_types_present_in_golden_are_nonzero(pair_table):
    present = [n for i, n in enumerate(INTERACTION_NAMES) if pair_table[..., i].sum() > 0]
    assert present == ["vdw", "hbbb", "hbsb", "hbss", "hp", "sb", "pc"]


def _tsv_contacts(path: Path) -> dict[str, set[tuple[int, str, str]]]:
    out: dict[str, set] = collections.defaultdict(set)
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        frame, kind, *atoms = line.split("\t")

        def norm(label: str) -> str:
            _, resname, resid, name = label.split(":")
            return f"{resname}:{resid}:{_RAW_TO_STANDARD_NAME.get(name, name)}"

        out[kind].add((int(frame), norm(atoms[0]), norm(atoms[1])))
    return out


def per_type_match(golden) -> dict[str, tuple[float, float, int, int]]:
    """(precision, recall, ours, golden) of per-frame atom-pair records against GetContacts' TSV, per type."""
    loaded = load_topology(golden["pdb"])
    protein = build_protein_topology(loaded.topology, loaded.insertion_codes)
    xyz = md.load(str(golden["dcd"]), top=str(golden["pdb"])).xyz[:, protein.atom_indices]
    model = build_contact_model(protein, xyz[0])
    labels = [label.split(":", 1)[1] for label in atom_labels(protein)]
    records = detect_contacts(model, xyz)
    ours: dict[str, set] = collections.defaultdict(set)
    for f, k, a, b in zip(records.frame, records.kind, records.atom1, records.atom2):
        ours[INTERACTION_NAMES[k]].add((int(f), labels[a], labels[b]))
    reference = _tsv_contacts(golden["tsv"])
    result = {}
    for name in INTERACTION_NAMES:
        hit = len(ours[name] & reference[name])
        precision = hit / len(ours[name]) if ours[name] else 1.0
        recall = hit / len(reference[name]) if reference[name] else 1.0
        result[name] = (precision, recall, len(ours[name]), len(reference[name]))
    return result


def test_per_frame_atom_contacts_match_getcontacts(golden):
    match = per_type_match(golden)
    for name, (precision, recall, n_ours, n_ref) in match.items():
        assert precision == 1.0 and recall == 1.0, (name, precision, recall, n_ours, n_ref)
    assert match["vdw"][3] == 1117 and match["hbbb"][3] == 135


def test_fraction_mode_is_symmetric_and_bounded(golden, features):
    fraction = extract_md(golden["pdb"], golden["dcd"], frequency="fraction")
    assert fraction["frequency"] == "fraction"
    for name in INTERACTION_NAMES:
        m = fraction[name]
        np.testing.assert_array_equal(m, m.T)
        assert m.min() >= 0 and m.max() <= 1
        assert np.all(np.diag(m) == 0)
        # a residue pair in contact in some frame has a record in reference mode and vice versa
        ref = features[name]
        np.testing.assert_array_equal(m > 0, (ref + ref.T) > 0)
        # fraction of frames can never exceed the record count per frame
        assert np.all(m <= ref + ref.T + 1e-12)
    for key in ("sasa_mean", "rmsf", "ss", "corr"):  # other chunking (4 vs 100 frames): same up to rounding
        np.testing.assert_allclose(fraction[key], features[key], rtol=1e-12, atol=1e-14)
