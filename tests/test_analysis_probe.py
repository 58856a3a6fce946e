"""Embedding probe (docs/design.md#embedding-probes) on real sequences: the 364 Tsuboyama stability sequences of the
shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _checkpoints import random_dynamics_model, random_esm2_mlm
from conftest import require

from seqdance.analysis.probe import (
    COMPOSITION_BASELINE,
    LENGTH_BASELINE,
    composition_features,
    fit_predict,
    regression_metrics,
    splits_by_clustering,
)
from seqdance.analysis.probe_run import probe_models, read_label_table, write_probe_report
from seqdance.errors import InputError
from seqdance.inference.embedding_store import read_entries
from seqdance.inference.embeddings import cached_embeddings as pooled_embeddings
from seqdance.inference.fingerprint import module_fingerprint
from seqdance.inference.sharding import text_digest
from seqdance.tokenizer import encode


@pytest.fixture(scope="module")
def stability(shared_data) -> pd.DataFrame:
    table = pd.read_csv(require(shared_data / "stability" / "tsuboyama_bioemu" / "system_info.csv"))
    assert len(table) > 300
    return table


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return [("seqdance_tiny", random_dynamics_model("tiny", "seqdance", seed=1)),
            ("esm2_tiny", random_esm2_mlm("tiny", seed=2))]


def _label_file(path: Path, stability: pd.DataFrame, exact: np.ndarray, n_splits: int = 5) -> Path:
    """name, sequence, labels and split_* columns holding out 20% of the wild-type families each."""
    rng = np.random.default_rng(0)
    families = sorted(set(stability["name_wt"]))
    frame = pd.DataFrame({"name": stability["name"], "sequence": stability["sequence"],
                          "exact": exact, "shuffled": rng.permutation(exact), "dg": stability["dg_exp"]})
    for k in range(n_splits):
        test = set(rng.choice(families, size=len(families) // 5, replace=False))
        frame[f"split_{k}"] = ["test" if f in test else "train" for f in stability["name_wt"]]
    frame.to_csv(path, index=False)
    return path


def test_pooling_matches_a_direct_forward(models, stability, one_torch_thread):
    _, model = models[0]
    sequences = [*stability["sequence"][:5], "MKTAYIAK:GSHMLE"]
    pooled_all = pooled_embeddings(model, sequences, pooling="all").values
    pooled_res = pooled_embeddings(model, sequences, pooling="residues").values
    for k, seq in enumerate(sequences):
        enc = encode(seq)
        with torch.no_grad():
            hidden = model(torch.as_tensor(enc.ids)[None], pairs=False, return_embeddings=True).embeddings[0]
        np.testing.assert_allclose(pooled_all[k], hidden.mean(0).numpy(), atol=2e-5)
        np.testing.assert_allclose(pooled_res[k], hidden[torch.as_tensor(enc.residue_index)].mean(0).numpy(),
                                   atol=2e-5)


def test_probe_recovers_linear_label_rejects_shuffled_and_reports_baselines(
        models, stability, tmp_path, one_torch_thread):
    sequences = list(stability["sequence"])
    pooled = pooled_embeddings(models[0][1], sequences).values.astype(np.float64)
    w = np.random.default_rng(3).normal(size=pooled.shape[1])
    labels = _label_file(tmp_path / "labels.csv", stability, pooled @ w + 3.0)
    table = read_label_table(labels)
    assert len(table.splits) == 5 and list(table.labels) == ["exact", "shuffled", "dg"]
    cache = tmp_path / "cache"
    result = probe_models(models, table, cache_dir=cache)
    s = result.summary.set_index(["label", "features", "estimator"])
    # an exact linear function of model 1's pooled embedding is recovered (PCA to all 32 components + OLS)
    assert s.loc[("exact", "seqdance_tiny", "linear"), "pearson_mean"] > 0.999
    assert s.loc[("exact", "seqdance_tiny", "ridge"), "pearson_mean"] > 0.99
    # a shuffled label is not
    for model in ("seqdance_tiny", "esm2_tiny"):
        for estimator in ("linear", "ridge"):
            r = s.loc[("shuffled", model, estimator), "pearson_mean"]
            assert abs(r) < 0.2 or np.isnan(r), (model, estimator, r)
    # both models and both baselines, every label and estimator, 5 splits each
    for label in ("exact", "shuffled", "dg"):
        for features in ("seqdance_tiny", "esm2_tiny", LENGTH_BASELINE, COMPOSITION_BASELINE):
            for estimator in ("linear", "ridge"):
                assert s.loc[(label, features, estimator), "n_splits"] == 5
    assert set(result.per_split["split"]) == {f"split_{k}" for k in range(5)}
    assert (result.per_split["n_test"] > 30).all()
    assert result.per_split.loc[result.per_split["features"] == "seqdance_tiny", "pca_components"].eq(32).all()
    assert result.embedding_stats["computed"].tolist() == [len(set(sequences))] * 2

    paths = write_probe_report(result, tmp_path / "out")
    for key in ("per_split", "summary", "predictions", "markdown", "scatter", "bars"):
        assert paths[key].is_file() and paths[key].stat().st_size > 100
    assert "baseline: composition" in paths["markdown"].read_text()

    # another label file with the same sequences costs no forward pass: the cache answers
    other = tmp_path / "dg_only.csv"
    pd.read_csv(labels)[["name", "sequence", "dg", "split_0"]].to_csv(other, index=False)
    calls = []
    for _, model in models:
        encoder = model.esm2 if hasattr(model, "esm2") else model.esm
        encoder.register_forward_hook(lambda *args: calls.append(1))
    again = probe_models(models, read_label_table(other), cache_dir=cache)
    assert calls == [] and again.embedding_stats["cached"].tolist() == [len(sequences)] * 2
    assert again.embedding_stats["computed"].tolist() == [0, 0]


def test_cache_is_keyed_by_model_content(models, tmp_path, one_torch_thread):
    model = random_dynamics_model("tiny", "seqdance", seed=5)
    fp = module_fingerprint(model)
    assert fp == module_fingerprint(random_dynamics_model("tiny", "seqdance", seed=5))
    first = pooled_embeddings(model, ["MKTAYIAKQR"], cache_dir=tmp_path)
    assert first.n_computed == 1 and (tmp_path / f"{fp}.h5").is_file()
    with torch.no_grad():
        model.esm2.encoder.layer[0].intermediate.dense.weight.mul_(1.5)  # changed weights -> another fingerprint
    assert module_fingerprint(model, refresh=True) != fp
    second = pooled_embeddings(model, ["MKTAYIAKQR"], cache_dir=tmp_path)
    assert second.n_computed == 1 and not np.allclose(first.values, second.values)
    # the old model's entry is kept in its own file; the new weights got a file of their own
    assert list(read_entries(tmp_path / f"{fp}.h5")) == [text_digest("MKTAYIAKQR")]
    assert len(list(tmp_path.glob("*.h5"))) == 2


def test_clustered_splits_keep_families_together(stability):
    wild = stability[~stability["mutant"]].head(30)
    mutants = stability[stability["name_wt"].isin(wild["name"]) & stability["mutant"]]
    frame = pd.concat([wild, mutants])
    splits, clusters = splits_by_clustering(list(frame["name"]), list(frame["sequence"]), n_splits=4,
                                            method="python")
    assert len(splits) == 4 and len({tuple(s.train) for s in splits}) > 1
    family = dict(zip(frame["name"], frame["name_wt"]))
    cluster_of = dict(zip(clusters["name"], clusters["cluster"]))
    for split in splits:
        assert 0 < split.test.sum() < len(frame)
        test_clusters = {cluster_of[n] for n, t in zip(frame["name"], split.test) if t}
        train_clusters = {cluster_of[n] for n, t in zip(frame["name"], split.train) if t}
        assert not test_clusters & train_clusters
    # point mutants are near-identical to their wild type: far fewer clusters than sequences
    assert clusters["cluster"].nunique() <= len({family[n] for n in frame["name"]})


def test_baseline_features_and_metrics():
    comp = composition_features(["AAC", "WY:WY"])
    assert comp[0, 0] == pytest.approx(2 / 3) and comp[0, 1] == pytest.approx(1 / 3)
    assert comp[1].sum() == pytest.approx(1.0)
    m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.5, 2.5]))
    assert m["mae"] == pytest.approx(1 / 3) and m["mse"] == pytest.approx(0.5 / 3)
    x = np.random.default_rng(0).normal(size=(50, 5))
    y = x @ np.arange(5.0)
    train = np.arange(50) < 40
    predicted, details = fit_predict(x, y, train, estimator="linear", pca=3)
    assert details["pca_components"] == 3 and predicted.shape == (10,)
    predicted, details = fit_predict(x, y, train, estimator="ridge")
    assert np.isfinite(details["alpha"]) and regression_metrics(y[~train], predicted)["pearson"] > 0.99


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.assign(dg=f["dg"].astype(object).where(f.index != 3, "")), "label 'dg' is missing at row 5"),
    (lambda f: f.assign(dg=f["dg"].astype(object).where(f.index != 2, "abc")), r"label 'dg' at row 4 .* 'abc'"),
    (lambda f: f.drop(columns=["sequence"]), "missing column"),
    (lambda f: pd.concat([f, f.head(1)]), "duplicate name"),
    (lambda f: f.assign(split_a="train"), "split 'split_a' has no test proteins"),
    (lambda f: f.assign(split_a="validation"), "'validation' is not 'train' or 'test'"),
    (lambda f: f.assign(sequence=f["sequence"].where(f.index != 1, "MK1T")), "row 3: sequence"),
])
def test_bad_label_tables_give_one_clear_error(stability, tmp_path, edit, message):
    frame = pd.DataFrame({"name": stability["name"][:10], "sequence": stability["sequence"][:10],
                          "dg": stability["dg_exp"][:10]})
    path = tmp_path / "labels.csv"
    edit(frame).to_csv(path, index=False)
    with pytest.raises(InputError, match=message):
        read_label_table(path)


def test_unknown_label_column(stability, tmp_path):
    path = tmp_path / "labels.csv"
    pd.DataFrame({"name": ["a", "b"], "sequence": ["MKT", "GSH"], "rg": [1.0, 2.0]}).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"unknown label column.*nu.*rg"):
        read_label_table(path, ["nu"])


def test_cache_keeps_old_entries_across_saves(tmp_path, one_torch_thread):
    model = random_esm2_mlm("tiny", seed=9)
    fp = module_fingerprint(model)
    first = pooled_embeddings(model, ["MKTAYIAKQR", "GSHMLE"], cache_dir=tmp_path, fingerprint=fp)
    assert first.n_computed == 2
    more = pooled_embeddings(model, ["ACDEFG", "GSHMLE"], cache_dir=tmp_path, fingerprint=fp)
    assert (more.n_computed, more.n_cached) == (1, 1)
    np.testing.assert_array_equal(more.values[1], first.values[1])
    assert sorted(read_entries(tmp_path / f"{fp}.h5")) == sorted(text_digest(s) for s in ("MKTAYIAKQR", "GSHMLE",
                                                                                          "ACDEFG"))
    again = pooled_embeddings(model, ["GSHMLE", "MKTAYIAKQR", "GSHMLE"], cache_dir=tmp_path, fingerprint=fp)
    assert again.n_computed == 0 and again.n_cached == 3
    np.testing.assert_array_equal(again.values, first.values[[1, 0, 1]])
    # a damaged cache file is recomputed and replaced, never a traceback
    (tmp_path / f"{fp}.h5").write_bytes(b"not HDF5")
    damaged = pooled_embeddings(model, ["GSHMLE"], cache_dir=tmp_path, fingerprint=fp)
    assert damaged.n_computed == 1
    np.testing.assert_allclose(damaged.values[0], first.values[1], atol=1e-5)  # batched alone: float rounding
    assert list(read_entries(tmp_path / f"{fp}.h5")) == [text_digest("GSHMLE")]


def _degenerate_labels(path: Path, stability: pd.DataFrame) -> Path:
    """60 real sequences; ``rg_std`` 0 for all but two (structures have no spread), ``flat`` one value for all,
    ``size`` a length-like label; six split_* columns of which four hold no non-zero rg_std protein in test."""
    frame = stability.drop_duplicates("sequence").iloc[:60]
    n = len(frame)
    rg_std = np.zeros(n)
    rg_std[[3, 17]] = [0.05, 0.08]
    table = pd.DataFrame({"name": frame["name"], "sequence": frame["sequence"], "rg_std": rg_std, "flat": 1.5,
                          "size": frame["sequence"].str.len() * 0.01 + np.linspace(0, 0.2, n)})
    for k in range(6):
        test = np.zeros(n, dtype=bool)
        test[np.arange(k * 10, k * 10 + 10)] = True  # splits 0 and 1 test one non-zero rg_std protein each
        table[f"split_{k}"] = np.where(test, "test", "train")
    table.to_csv(path, index=False)
    return path


def test_constant_labels_are_named_and_skipped(stability, tmp_path, capsys, monkeypatch, one_torch_thread):
    """A label with one value for every protein (blank correlations, baselines at -1 ± 0 before) is left out
    with its reason; a label constant within the test proteins of some splits is probed on the others only; a
    table whose every label is constant is one clear error."""
    from seqdance.cli.main import main

    labels = _degenerate_labels(tmp_path / "labels.csv", stability)
    model_dir = tmp_path / "m"
    random_esm2_mlm("tiny", seed=2).save_pretrained(model_dir)
    monkeypatch.setenv("SEQDANCE_CACHE", str(tmp_path / "cache"))
    assert main(["probe", "--labels", str(labels), "--model", f"esm2={model_dir}", "--pca", "5", "--estimator",
                 "linear", "-o", str(tmp_path / "out"), "-q", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "note: flat left out: flat is 1.5 for every protein: nothing to predict" in err
    assert ("note: rg_std: 4 of 6 splits left out, their test proteins (at least 3 needed) or training proteins "
            "all share one value (58 of 60 proteins have rg_std = 0)") in err
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert set(summary["label"]) == {"rg_std", "size"}
    assert (summary.loc[summary["label"] == "rg_std", "n_splits"] == 2).all()
    assert (summary.loc[summary["label"] == "size", "n_splits"] == 6).all()
    assert summary[["pearson_mean", "mae_mean"]].notna().all().all()  # no blank metric left
    assert "flat left out" in (tmp_path / "out" / "summary.md").read_text()
    only_flat = ["probe", "--labels", str(labels), "--label", "flat", "--model", f"esm2={model_dir}", "-o",
                 str(tmp_path / "o2"), "-q", "--device", "cpu"]
    assert main(only_flat) == 1
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and "no label can be probed: flat is 1.5 for every protein" in message[0]


def test_probe_pictures_are_readable(tmp_path, monkeypatch):
    """MAE error bars stop at 0 (an error is never negative); the scatter plot is square panels with equal x and
    y limits, grouped by label and wrapped into rows, with fonts of at least 8 points — not one tall column."""
    from seqdance.analysis import probe_run
    from seqdance.analysis.probe import summarise_probe

    rng = np.random.default_rng(0)
    rows, preds = [], []
    labels = [f"label_{k}" for k in range(9)]
    for label in labels:
        for features in ("model", LENGTH_BASELINE, COMPOSITION_BASELINE):
            for split in range(4):
                mae = [0.01, 0.5, 0.02, 0.6][split]  # sd > mean: a symmetric bar would reach below 0
                rows.append({"label": label, "features": features, "estimator": "linear", "split": f"s{split}",
                             "n_train": 40, "n_test": 10, "mse": mae**2, "mae": mae, "pearson": rng.uniform(-1, 1),
                             "spearman": rng.uniform(-1, 1), "pca_components": np.nan, "alpha": np.nan})
                true = rng.normal(size=10)
                preds.append(pd.DataFrame({"label": label, "features": features, "estimator": "linear",
                                           "split": f"s{split}", "name": [f"p{i}" for i in range(10)],
                                           "true": true, "predicted": true + rng.normal(scale=0.3, size=10)}))
    per_split = pd.DataFrame(rows)
    result = probe_run.ProbeResult(per_split, summarise_probe(per_split), pd.concat(preds), pd.DataFrame(), "test")
    figures = {}

    def keep(figure, path, **kwargs):
        figures[Path(path).name] = figure
        figure.canvas.draw()
        return Path(path)

    monkeypatch.setattr(probe_run, "save_figure", keep)
    monkeypatch.setattr("matplotlib.pyplot.close", lambda *a, **k: None)
    probe_run.plot_bars(result, tmp_path / "bars.png")
    lows = [segment[:, 1].min() for ax in figures["bars.png"].axes for container in ax.containers
            if getattr(container, "errorbar", None) is not None
            for segment in container.errorbar.lines[2][0].get_segments()]
    assert lows and min(lows) >= 0
    probe_run.plot_scatter(result, tmp_path / "scatter.png")
    figure = figures["scatter.png"]
    width, height = figure.get_size_inches()
    assert width <= 20 and height <= 20 and 0.5 < width / height < 2  # 9 labels x 3 sets: a compact grid
    panels = [ax for ax in figure.axes if ax.get_visible()]
    assert len(panels) == 27
    for ax in panels:
        assert ax.get_xlim() == ax.get_ylim()
        box = ax.get_window_extent()
        assert abs(box.width - box.height) < 0.02 * box.width  # square on the page
        assert min(label.get_fontsize() for label in ax.get_xticklabels()) >= 8
