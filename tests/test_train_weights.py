"""Loss weights computed by the docs/design.md#loss-weights rules satisfy the stated ratios; weight tables load
tolerantly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_train_data import write_synthetic_store

from seqdance import schema
from seqdance.store import DynamicsStore
from seqdance.train.weights import (
    LossWeights,
    compute_store_statistics,
    group_of_label,
    load_loss_weights,
    protein_baselines,
    read_channel_means,
    target_shares,
    write_statistics,
)

# The released table (source_feature_rmse_weight.csv of the HF dataset, as its notebook prints it).
RELEASED_CSV = """,ATLAS_GPCRmd_PED_mdCATH,IDRome,Proteinflow
rmsf_nor,0.223793,0.330730,0.000000
sasa_mean,0.073041,0.085186,0.000000
sasa_std,0.322492,0.489036,0.000000
ss,0.150150,0.746969,0.000000
chi,0.303766,0.354448,0.000000
phi,0.296824,1.235156,0.000000
psi,0.243907,1.443703,0.000000
vdw,0.348042,0.430570,0.000000
hbbb,0.808236,1.058827,0.000000
hbsb,1.370723,1.248722,0.000000
hbss,1.649684,2.149983,0.000000
hp,1.253907,1.771494,0.000000
sb,2.270222,3.241234,0.000000
pc,3.565133,4.454829,0.000000
ps,9.039787,17.344838,0.000000
ts,11.854707,15.784302,0.000000
corr,0.588429,0.447994,0.000000
nma_res1,0.000000,0.000000,16.533815
nma_pair1,0.000000,0.000000,0.829644
nma_res2,0.000000,0.000000,16.533815
nma_pair2,0.000000,0.000000,1.594754
nma_res3,0.000000,0.000000,16.533815
nma_pair3,0.000000,0.000000,2.974789
"""


def test_shares_follow_the_rules() -> None:
    for group in ("md", "idr"):
        s = target_shares(group)
        residue = [s[p.name] for p in schema.properties_of_kind("md", "residue")]
        inter = [s[n] for n in schema.INTERACTION_NAMES]
        corr = s["corr"]
        assert sum(s.values()) == pytest.approx(1.0)
        assert len(residue) == 7 and max(residue) == pytest.approx(min(residue))
        assert (sum(inter) + corr) / sum(residue) == pytest.approx(3.0)
        assert max(inter) == pytest.approx(min(inter)) and sum(inter) / corr == pytest.approx(3.0)
    s = target_shares("nma")
    assert sum(s.values()) == pytest.approx(1.0)
    for k in (1, 2, 3):
        assert s[f"nma_pair{k}"] / s[f"nma_res{k}"] == pytest.approx(3.0)
        assert s[f"nma_res{k}"] + s[f"nma_pair{k}"] == pytest.approx(1 / 3)


def test_protein_baseline_is_rmse_of_own_mean() -> None:
    rng = np.random.default_rng(0)
    res = rng.random((6, 47)).astype(np.float32)
    pair = rng.random((6, 6, 10)).astype(np.float32)
    res[[0, -1]] = -1
    pair[[0, -1]] = -1
    pair[:, [0, -1]] = -1
    ss = schema.PROPERTY_BY_NAME["ss"].store_channels
    res[2, ss] = -1  # one residue without SS data
    out = protein_baselines(res, pair, "md")
    vals = res[1:5, ss].astype(np.float64)
    ok = vals != -1
    means = np.array([vals[ok[:, c], c].mean() for c in range(vals.shape[1])])
    want = math.sqrt(np.mean(((vals - means) ** 2)[ok]))
    assert out["ss"] == pytest.approx(want, rel=1e-9)
    v = pair[1:5, 1:5, 9].astype(np.float64)
    assert out["corr"] == pytest.approx(math.sqrt(((v - v.mean()) ** 2).mean()), rel=1e-9)


def test_weights_from_a_store_satisfy_the_ratios(tmp_path: Path) -> None:
    store = DynamicsStore.open(write_synthetic_store(tmp_path / "s.h5", per_group=4, n_test=1))
    stats = compute_store_statistics(store, split="train")
    weights = stats.weights()
    # weighted baselines (= what each property contributes when predicting every protein's own mean)
    for group in schema.SOURCE_GROUPS:
        w, b = weights.for_group(group), stats.baselines[group]
        contrib = {n: w[n] * b[n] for n in w}
        assert sum(contrib.values()) == pytest.approx(1.0)  # groups contribute equally
        if group == "nma":
            for k in (1, 2, 3):
                assert contrib[f"nma_pair{k}"] / contrib[f"nma_res{k}"] == pytest.approx(3.0)
        else:
            res = [contrib[p.name] for p in schema.properties_of_kind("md", "residue")]
            inter = [contrib[n] for n in schema.INTERACTION_NAMES]
            assert (sum(inter) + contrib["corr"]) / sum(res) == pytest.approx(3.0)
            assert sum(inter) / contrib["corr"] == pytest.approx(3.0)
            assert np.ptp(inter) == pytest.approx(0.0, abs=1e-12) and np.ptp(res) == pytest.approx(0.0, abs=1e-12)
        assert stats.n_proteins[group]["vdw" if group != "nma" else "nma_res1"] == 4
    # baselines average the per-protein values of the training proteins only
    train = [n for n in store.names if store.row(n)["label"] == "train" and store.row(n)["group"] == "idr"]
    per = [protein_baselines(store.read(n).residue, store.read(n).pair, "md")["psi"] for n in train]
    assert stats.baselines["idr"]["psi"] == pytest.approx(np.mean(per), rel=1e-9)

    paths = write_statistics(stats, tmp_path / "w.csv")
    back = load_loss_weights(paths["weights"])
    for group in schema.SOURCE_GROUPS:
        assert back.for_group(group) == pytest.approx(weights.for_group(group), rel=1e-8)
    details = pd.read_csv(paths["details"])
    assert set(details.columns) >= {"group", "property", "baseline_rmse", "share", "weight", "n_proteins"}
    means = read_channel_means(paths["channel_means"])
    np.testing.assert_allclose(means["nma"]["residue"], stats.residue_means["nma"], rtol=1e-8)


def test_load_released_layout_and_variants(tmp_path: Path) -> None:
    path = tmp_path / "source_feature_rmse_weight.csv"
    path.write_text(RELEASED_CSV)
    w = load_loss_weights(path)
    assert w.groups == ("md", "idr", "nma")
    assert w.for_group("md")["ts"] == pytest.approx(11.854707)
    assert w.for_group("idr")["ss"] == pytest.approx(0.746969)
    assert w.for_group("nma") == pytest.approx({"nma_res1": 16.533815, "nma_res2": 16.533815,
                                                "nma_res3": 16.533815, "nma_pair1": 0.829644,
                                                "nma_pair2": 1.594754, "nma_pair3": 2.974789})
    # transposed (groups as rows) and long layouts give the same table
    frame = pd.read_csv(path, index_col=0)
    frame.T.to_csv(tmp_path / "t.csv")
    assert load_loss_weights(tmp_path / "t.csv").to_dict() == w.to_dict()
    long = frame.reset_index().melt(id_vars="index", var_name="group", value_name="weight")
    long.rename(columns={"index": "property"}).to_csv(tmp_path / "long.csv", index=False)
    long_w = load_loss_weights(tmp_path / "long.csv")
    for group in schema.SOURCE_GROUPS:
        assert long_w.for_group(group) == pytest.approx(w.for_group(group))
    # our own layout round-trips
    w.write_csv(tmp_path / "ours.csv")
    assert pd.read_csv(tmp_path / "ours.csv").columns.tolist() == ["property", "md", "idr", "nma"]
    ours = load_loss_weights(tmp_path / "ours.csv")
    for group in schema.SOURCE_GROUPS:
        assert ours.for_group(group) == pytest.approx(w.for_group(group))


def test_loader_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(RELEASED_CSV.replace("hbss,", "hbsss,"))
    with pytest.raises(ValueError, match="unknown property name"):
        load_loss_weights(bad)
    short = tmp_path / "short.csv"
    short.write_text("\n".join(RELEASED_CSV.splitlines()[:-1]) + "\n")
    with pytest.raises(ValueError, match=r"lacks weights for \['nma_pair3'\]"):
        load_loss_weights(short)
    odd = tmp_path / "odd.csv"
    odd.write_text(RELEASED_CSV.replace("IDRome", "my_sims"))
    with pytest.raises(ValueError, match="my_sims"):
        load_loss_weights(odd)
    with pytest.raises(FileNotFoundError):
        load_loss_weights(tmp_path / "absent.csv")
    assert group_of_label("proteinflow_sabdab") == "nma" and group_of_label("md:custom") == "md"
    with pytest.raises(ValueError, match="no column for source group"):
        LossWeights({"md": {}}).for_group("nma")


def test_small_store_guards_floor_and_cap_with_a_warning(caplog) -> None:
    import logging

    from seqdance.train.weights import weights_from_baselines

    # the baselines of one MD training protein (adenylate kinase, the walkthrough's store)
    md = {"sasa_mean": 0.40873, "sasa_std": 0.068627, "rmsf_nor": 0.22862, "ss": 0.27405, "chi": 0.18348,
          "phi": 0.15333, "psi": 0.18251, "vdw": 0.15066, "hbbb": 0.061806, "hbsb": 0.039446, "hbss": 0.04453,
          "hp": 0.036935, "sb": 0.037005, "pc": 0.011064, "ps": 0.001277, "ts": 0.00284, "corr": 0.55615}
    plain = weights_from_baselines({"md": md}, baseline_floor=0.0, max_weight_ratio=None).for_group("md")
    assert plain["ps"] == pytest.approx(48.94, abs=0.01) and plain["ts"] == pytest.approx(22.0, abs=0.01)
    adjustments: list = []
    with caplog.at_level(logging.WARNING, logger="seqdance.train.weights"):
        guarded = weights_from_baselines({"md": md}, n_proteins={"md": dict.fromkeys(md, 1)},
                                         adjustments=adjustments).for_group("md")
    assert sorted(a.prop for a in adjustments) == ["ps", "ts"]
    assert all(a.floored and a.capped and a.n_proteins == 1 for a in adjustments)
    assert "loss weight of ps is 13 instead of 48.9" in caplog.text and "1 training protein" in caplog.text
    median = float(np.median(list(plain.values())))
    assert guarded["ps"] == guarded["ts"] == pytest.approx(25 * np.median(
        [w for n, w in plain.items() if n not in ("ps", "ts")] + [0.0625 / (0.02 * 0.15066)] * 2), rel=1e-9)
    assert guarded["ps"] < 30 * median
    for name in md:  # everything else follows the rule exactly
        if name not in ("ps", "ts"):
            assert guarded[name] == pytest.approx(plain[name], rel=1e-12)
    # a property constant in the training proteins (baseline 0) is floored, not dropped
    zero = weights_from_baselines({"md": {**md, "ts": 0.0}}).for_group("md")
    assert 0 < zero["ts"] <= guarded["ps"] + 1e-12


def test_guards_leave_the_released_scale_alone(tmp_path: Path) -> None:
    from seqdance.train.weights import weights_from_baselines

    path = tmp_path / "released.csv"
    path.write_text(RELEASED_CSV)
    released = load_loss_weights(path)
    for group in ("md", "idr", "nma"):
        shares = target_shares(group)
        implied = {n: shares[n] / w for n, w in released.for_group(group).items()}  # the baselines it implies
        adjustments: list = []
        again = weights_from_baselines({group: implied}, adjustments=adjustments).for_group(group)
        assert adjustments == []
        assert again == pytest.approx(released.for_group(group), rel=1e-9)
