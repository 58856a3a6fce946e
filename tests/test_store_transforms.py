"""features_to_targets / targets_to_features: schema transforms and token alignment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _store_fixtures import synthetic_features
from conftest import require

from seqdance import tokenizer
from seqdance.schema import MASK_VALUE, PROPERTY_BY_NAME, properties_of_kind, stored_width
from seqdance.store.transforms import features_to_targets, targets_to_features


@pytest.mark.parametrize("kind", ["md", "nma"])
@pytest.mark.parametrize("sequence", ["MKTAYIAGLE", "MKTAYG:ACDW", "AG:W:KLV"])
def test_round_trip_and_alignment(kind: str, sequence: str) -> None:
    features = synthetic_features(sequence, kind, seed=3)
    residue, pair = features_to_targets(features, kind)
    enc = tokenizer.encode(sequence)
    n_tokens = enc.ids.shape[0]
    assert residue.shape == (n_tokens, stored_width("residue", kind))
    assert pair.shape == (n_tokens, n_tokens, stored_width("pair", kind))
    assert residue.dtype == np.float32 and pair.dtype == np.float32
    special = np.setdiff1d(np.arange(n_tokens), enc.residue_index)
    # <cls>, <eos> and every <eos><cls> linker are masked rows and columns
    assert len(special) == 2 + 2 * (sequence.count(":"))
    assert (residue[special] == MASK_VALUE).all()
    assert (pair[special] == MASK_VALUE).all() and (pair[:, special] == MASK_VALUE).all()

    scales = {"rmsf": float(features["rmsf"].max())} if kind == "md" else None
    back = targets_to_features(residue, pair, sequence, scales=scales)
    for key, value in features.items():
        if not isinstance(value, np.ndarray):
            continue
        np.testing.assert_allclose(back[key], value, rtol=2e-6, atol=2e-7, equal_nan=True, err_msg=key)


def test_md_transforms_follow_the_schema() -> None:
    features = synthetic_features("MKGAYIAGLE", "md", seed=1)
    residue, pair = features_to_targets(features, "md")
    rows = tokenizer.encode(features["sequence"]).residue_index
    res, prs = residue[rows], pair[np.ix_(rows, rows)]
    rmsf = PROPERTY_BY_NAME["rmsf_nor"]
    np.testing.assert_allclose(res[:, rmsf.store_channels.start], features["rmsf"] / features["rmsf"].max(), rtol=1e-6)
    assert res[:, rmsf.store_channels.start].max() == pytest.approx(1.0)
    vdw = PROPERTY_BY_NAME["vdw"]
    np.testing.assert_allclose(prs[:, :, vdw.store_channels.start], np.cbrt(features["vdw"]), rtol=1e-6, atol=1e-7)
    corr = PROPERTY_BY_NAME["corr"]
    np.testing.assert_allclose(prs[:, :, corr.store_channels.start], features["corr"], rtol=1e-6, atol=1e-7)
    chi = PROPERTY_BY_NAME["chi"]
    gly_ala = [i for i, a in enumerate("MKGAYIAGLE") if a in "GA"]
    assert (res[gly_ala, chi.store_channels] == MASK_VALUE).all()
    others = [i for i in range(10) if i not in gly_ala]
    np.testing.assert_allclose(res[others, chi.store_channels].sum(axis=1), 1.0, rtol=1e-6)


def test_nma_block_layout() -> None:
    features = synthetic_features("ACDEFGHIK", "nma", seed=2)
    residue, pair = features_to_targets(features, "nma")
    rows = tokenizer.encode(features["sequence"]).residue_index
    for i in range(3):
        np.testing.assert_allclose(residue[rows, PROPERTY_BY_NAME[f"nma_res{i + 1}"].store_channels.start],
                                   features[f"nma_res{i + 1}"], rtol=1e-6)
        np.testing.assert_allclose(
            pair[np.ix_(rows, rows)][:, :, PROPERTY_BY_NAME[f"nma_pair{i + 1}"].store_channels.start],
            features[f"nma_pair{i + 1}"], rtol=1e-6, atol=1e-7)


def test_undefined_hbond_maps_are_masked() -> None:
    features = synthetic_features("ACDEFG", "md")
    for name in ("hbbb", "hbsb", "hbss"):
        features[name] = np.full((6, 6), np.nan)
    residue, pair = features_to_targets(features, "md")
    for name in ("hbbb", "hbsb", "hbss"):
        assert (pair[:, :, PROPERTY_BY_NAME[name].store_channels.start] == MASK_VALUE).all()
    assert (pair[1:7, 1:7, PROPERTY_BY_NAME["vdw"].store_channels.start] >= 0).all()
    back = targets_to_features(residue, pair, "ACDEFG")
    assert np.isnan(back["hbbb"]).all()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f.__setitem__("sasa_mean", f["sasa_mean"][:-1]), "sasa_mean.*shape"),
        (lambda f: f.__setitem__("vdw", -f["vdw"] - 0.1), "negative"),
        (lambda f: f["sasa_std"].__setitem__(3, np.nan), "sasa_std.*residue 4"),
        (lambda f: f["corr"].__setitem__((1, 2), np.inf), r"corr.*\(2, 3\)"),
        (lambda f: f.__setitem__("rmsf", np.zeros(6)), "rmsf.*positive"),
        (lambda f: f.pop("ss"), "'ss' is missing"),
        (lambda f: f.__setitem__("sequence", "ACDEF1"), "not an amino-acid"),
    ],
)
def test_bad_features_name_the_problem(mutate, message: str) -> None:
    features = synthetic_features("ACDEFG", "md")
    mutate(features)
    with pytest.raises(ValueError, match=message):
        features_to_targets(features, "md", name="p1")


def test_reference_golden_features_transform(shared_data) -> None:
    """The reference pipeline's own 3tvj_I outputs (CSV + npz) go through the transforms as
    docs/design.md#property-schema says."""
    ref = shared_data / "reference" / "md"
    table = pd.read_csv(require(ref / "3tvj_I_res_feature.csv"))
    pair_ref = np.load(require(ref / "3tvj_I_pair_feature.npz"))["array"]
    import mdtraj

    top = mdtraj.load_topology(str(ref / "3tvj_I.pdb"))
    sequence = "".join(r.code for r in top.residues if r.is_protein)
    assert len(sequence) == len(table)
    features: dict = {"sequence": sequence, "sasa_mean": table["sasa_mean"].to_numpy(),
                      "sasa_std": table["sasa_std"].to_numpy(), "rmsf": table["rmsf"].to_numpy(),
                      "ss": table[[c for c in table.columns if c.startswith("dssp_")]].to_numpy()}
    for name in ("chi", "phi", "psi"):
        features[name] = table[[f"{name}_{i}" for i in range(12)]].to_numpy()
    for prop_name in ("vdw", "hbbb", "hbsb", "hbss", "hp", "sb", "pc", "ps", "ts", "corr"):
        prop = PROPERTY_BY_NAME[prop_name]
        features[prop.raw_key] = pair_ref[:, :, prop.start]
    residue, pair = features_to_targets(features, "md", name="3tvj_I")
    rows = tokenizer.encode(sequence).residue_index
    res = residue[rows]
    assert np.isnan(features["chi"]).any()  # the golden CSV has undefined chi rows -> masked
    chi = PROPERTY_BY_NAME["chi"].store_channels
    assert ((res[:, chi] == MASK_VALUE).all(axis=1) == np.isnan(features["chi"]).all(axis=1)).all()
    np.testing.assert_allclose(res[:, PROPERTY_BY_NAME["rmsf_nor"].start], table["rmsf"] / table["rmsf"].max(),
                               rtol=1e-6)
    np.testing.assert_allclose(pair[np.ix_(rows, rows)][:, :, :9], np.cbrt(pair_ref[:, :, :9]), rtol=1e-6, atol=1e-7)
    assert pair[np.ix_(rows, rows)][:, :, :9].max() > 1.0  # reference-mode frequencies exceed 1


MD_NAMES = tuple(p.name for p in properties_of_kind("md"))
ATOM_LEVEL = tuple(n for n in MD_NAMES if n not in ("rmsf_nor", "corr"))


def test_listed_missing_properties_are_masked_for_the_whole_protein() -> None:
    """A Cα trace's features (docs/design.md#missing-properties): the listed properties are NaN and become MASK_VALUE
    everywhere; the others are stored as usual."""
    features = synthetic_features("MKTAYIAK", "md", seed=3)
    for name in ATOM_LEVEL:
        features[PROPERTY_BY_NAME[name].raw_key] = np.full_like(np.asarray(features[PROPERTY_BY_NAME[name].raw_key]),
                                                                np.nan)
    features["missing_properties"] = np.array(ATOM_LEVEL)  # as read back from a features .npz
    residue, pair = features_to_targets(features, "md", name="cg")
    rows = tokenizer.encode("MKTAYIAK").residue_index
    for name in ATOM_LEVEL:
        prop = PROPERTY_BY_NAME[name]
        block = residue[:, prop.store_channels] if prop.level == "residue" else pair[:, :, prop.store_channels]
        assert (block == MASK_VALUE).all(), name
    rmsf = residue[rows, PROPERTY_BY_NAME["rmsf_nor"].start]
    np.testing.assert_allclose(rmsf, features["rmsf"] / features["rmsf"].max(), rtol=1e-6)
    corr = pair[np.ix_(rows, rows)][:, :, PROPERTY_BY_NAME["corr"].store_channels.start]
    np.testing.assert_allclose(corr, features["corr"], rtol=1e-6, atol=1e-7)
    # listed means masked, whatever the values (back-mapped frames compute properties that stay missing)
    valued = synthetic_features("MKTAYIAK", "md", seed=3)
    valued["missing_properties"] = ("chi", "hp")
    residue2, pair2 = features_to_targets(valued, "md")
    assert (residue2[:, PROPERTY_BY_NAME["chi"].store_channels] == MASK_VALUE).all()
    assert (pair2[:, :, PROPERTY_BY_NAME["hp"].store_channels.start] == MASK_VALUE).all()
    assert (residue2[rows, PROPERTY_BY_NAME["sasa_mean"].start] > 0).all()


def test_unlisted_nan_is_still_an_error() -> None:
    features = synthetic_features("MKTAYIAK", "md", seed=3)
    features["missing_properties"] = ("hbbb", "hbsb", "hbss")
    for name in ("hbbb", "hbsb", "hbss", "vdw"):
        features[name] = np.full((8, 8), np.nan)  # vdw NaN although not listed
    with pytest.raises(ValueError, match=r"protein 'p': property 'vdw' is NaN/inf at residue pair \(1, 1\)"):
        features_to_targets(features, "md", name="p")
    features["vdw"] = synthetic_features("MKTAYIAK", "md", seed=3)["vdw"]
    features["sasa_mean"][2] = np.nan
    with pytest.raises(ValueError, match=r"property 'sasa_mean' is NaN/inf at residue 3"):
        features_to_targets(features, "md", name="p")
    features["missing_properties"] = ("sasa_mean", "nma_res1")
    with pytest.raises(ValueError, match=r"missing_properties lists \['nma_res1'\], which are not md properties"):
        features_to_targets(features, "md", name="p")
