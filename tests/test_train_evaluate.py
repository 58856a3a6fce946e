"""Evaluation metrics (docs/design.md#evaluation-metrics), the evaluation loop and the train/evaluate/loss-weights
commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from test_train_data import write_synthetic_store

from seqdance import schema, tokenizer
from seqdance.cli import train as train_cli
from seqdance.store import DynamicsStore
from seqdance.train.evaluate import (
    MIN_SEPARATION,
    correlation_properties,
    evaluate_model,
    fluctuation_properties,
    masked_pearson,
    protein_metrics,
    write_report,
)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_store(tmp_path_factory.mktemp("eval") / "s.h5", per_group=3, n_test=3, max_len=24)


def test_masked_pearson_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((3, 40)), rng.random((3, 40))
    y[1] = 2 * x[1] + 0.1 * y[1]
    mask = rng.random((3, 40)) > 0.3
    mask[2] = False
    mask[2, :1] = True  # a single entry: undefined
    r = masked_pearson(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask))
    for b in range(2):
        assert r[b].item() == pytest.approx(np.corrcoef(x[b, mask[b]], y[b, mask[b]])[0, 1], rel=1e-10)
    assert torch.isnan(r[2])


def test_pair_metric_uses_pairs_beyond_five() -> None:
    rng = np.random.default_rng(1)
    t = 14
    target = np.full((1, t, t, 10), -1.0, dtype=np.float32)
    target[0, 1:-1, 1:-1] = rng.random((t - 2, t - 2, 10))
    pred = np.zeros((1, t, t, schema.N_PAIR_CHANNELS), dtype=np.float32)
    corr = correlation_properties("md")[0]
    pred[..., corr.start] = target[..., corr.store_channels.start] + 0.3 * rng.random((1, t, t))
    i, j = np.indices((t, t))
    near = np.abs(i - j) <= MIN_SEPARATION
    pred[0, near, corr.start] = -5.0  # nonsense close to the diagonal must not matter
    res_t = np.full((1, t, 47), -1.0, dtype=np.float32)
    res_t[0, 1:-1] = rng.random((t - 2, 47))
    res_p = rng.random((1, t, schema.N_RESIDUE_CHANNELS)).astype(np.float32)
    out = protein_metrics(torch.from_numpy(res_p), torch.from_numpy(pred), torch.from_numpy(res_t),
                          torch.from_numpy(target), "md")
    sel = (j - i > MIN_SEPARATION) & (target[0, ..., corr.store_channels.start] != -1)
    want = np.corrcoef(pred[0, ..., corr.start][sel], target[0, ..., corr.store_channels.start][sel])[0, 1]
    assert out[f"r_{corr.name}"].item() == pytest.approx(want, rel=1e-9)
    rmsf = fluctuation_properties("md")[0]
    ok = res_t[0, :, rmsf.store_channels.start] != -1
    want_res = np.corrcoef(res_p[0, ok, rmsf.start], res_t[0, ok, rmsf.store_channels.start])[0, 1]
    assert out[f"r_{rmsf.name}"].item() == pytest.approx(want_res, rel=1e-9)
    assert {p.name for p in fluctuation_properties("nma")} == {"nma_res1", "nma_res2", "nma_res3"}


class OracleModel(torch.nn.Module):
    """Returns the stored targets of each protein (model layout): a perfect predictor."""

    def __init__(self, store: DynamicsStore) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.table = {}
        for name in store.names:
            prot = store.read(name)
            kind = schema.GROUP_KIND[prot.group]
            t = prot.residue.shape[0]
            res = np.zeros((t, schema.N_RESIDUE_CHANNELS), dtype=np.float32)
            pair = np.zeros((t, t, schema.N_PAIR_CHANNELS), dtype=np.float32)
            res[:, schema.kind_channels("residue", kind)] = prot.residue
            pair[..., schema.kind_channels("pair", kind)] = prot.pair
            self.table[tuple(tokenizer.encode(prot.sequence).ids.tolist())] = (res, pair)

    def forward(self, input_ids, attention_mask=None, *, pairs=True, pair_block_rows=None):
        b, w = input_ids.shape
        res = torch.zeros(b, w, schema.N_RESIDUE_CHANNELS)
        pair = torch.zeros(b, w, w, schema.N_PAIR_CHANNELS)
        for i in range(b):
            n = int(attention_mask[i].sum())
            r, p = self.table[tuple(input_ids[i, :n].tolist())]
            res[i, :n], pair[i, :n, :n] = torch.from_numpy(r), torch.from_numpy(p)
        return SimpleNamespace(residue=res, pair=pair)


def test_oracle_scores_perfectly_and_baseline_does_not(store_path: Path, tmp_path: Path) -> None:
    store = DynamicsStore.open(store_path)
    means = {g: {"residue": np.full(schema.stored_width("residue", schema.GROUP_KIND[g]), 0.5),
                 "pair": np.full(schema.stored_width("pair", schema.GROUP_KIND[g]), 0.5)} for g in schema.SOURCE_GROUPS}
    result = evaluate_model(OracleModel(store), [store], split="test", channel_means=means, batch_size=2)
    assert result is not None
    assert len(result.per_protein) == 9 and set(result.per_protein["group"]) == set(schema.SOURCE_GROUPS)
    rmse_cols = [c for c in result.per_protein.columns if c.startswith("rmse/")]
    assert np.nanmax(result.per_protein[rmse_cols].to_numpy()) < 1e-5
    assert (result.metrics["median_r"] > 0.99999).all()
    totals = result.group_losses()
    base = result.baseline_group_losses()
    for g in schema.SOURCE_GROUPS:
        assert totals[g] < 1e-4 < base[g]  # 1e-6 per property: the RMSE floor of the loss
    paths = write_report(result, tmp_path / "report", title="oracle")
    assert {"per_protein", "losses", "metrics", "summary", "plot"} <= set(paths)
    text = paths["summary"].read_text()
    assert "| md | residue fluctuation | rmsf_nor | 3 |" in text
    assert paths["plot"].stat().st_size > 1000


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    train_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_loss_weights_and_evaluate_commands(store_path: Path, tmp_path: Path, capsys) -> None:
    from seqdance.model import DynamicsModel

    assert _run(["loss-weights", "--store", str(store_path), "-o", str(tmp_path / "w.csv"), "-q"]) == 0
    weights = pd.read_csv(tmp_path / "w.csv", index_col=0)
    assert list(weights.columns) == ["md", "idr", "nma"] and (weights.loc["nma_pair1", "nma"] > 0)
    assert (tmp_path / "w_channel_means.csv").is_file()

    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    DynamicsModel("tiny", "seqdance").save_pretrained(model_dir)
    code = _run(["evaluate", "--model", str(model_dir), "--store", str(store_path), "-o", str(tmp_path / "ev"),
                 "--weights", str(tmp_path / "w.csv"), "--baseline-means", str(tmp_path / "w_channel_means.csv"),
                 "--device", "cpu", "-q"])
    assert code == 0
    losses = pd.read_csv(tmp_path / "ev" / "losses.csv")
    assert {"baseline_rmse", "weight"} <= set(losses.columns)
    assert "Dynamic-property metrics" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no proteins with split label 'nope'"):
        _run(["evaluate", "--model", str(model_dir), "--store", str(store_path), "-o", str(tmp_path / "ev2"),
              "--split", "nope", "--device", "cpu", "-q"])


def test_metrics_per_data_source(store_path: Path, tmp_path: Path) -> None:
    store = DynamicsStore.open(store_path)
    result = evaluate_model(OracleModel(store), [store], split="test", batch_size=2)
    assert result is not None
    sources = dict(zip(store.index["name"], store.index["source"]))
    assert result.per_protein["source"].tolist() == [sources[n] for n in result.per_protein["name"]]
    by_source = result.metrics_by_source
    assert set(zip(by_source["group"], by_source["source"])) == set(
        zip(result.per_protein["group"], result.per_protein["source"]))
    # the breakdown is the group median restricted to each source (random per-protein r values here)
    from seqdance.train.evaluate import summarise

    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"group": "md", "source": ["ATLAS"] * 5 + ["mdCATH"] * 4, "name": [f"p{k}" for k in range(9)],
                         "r_rmsf_nor": rng.uniform(-1, 1, 9), "r_corr": rng.uniform(-1, 1, 9)})
    for prop in schema.group_properties("md"):
        rows[f"rmse/{prop.name}"] = 0.1
    summary = summarise(rows)
    table = summary.metrics_by_source.set_index(["source", "property"])
    for source in ("ATLAS", "mdCATH"):
        part = rows[rows["source"] == source]
        assert table.loc[(source, "rmsf_nor"), "median_r"] == pytest.approx(part["r_rmsf_nor"].median())
        assert table.loc[(source, "corr"), "median_r"] == pytest.approx(part["r_corr"].median())
        assert table.loc[(source, "corr"), "n_proteins"] == len(part)
    paths = write_report(summary, tmp_path / "by_source")
    assert "metrics_by_source" in paths and "per data source" in paths["summary"].read_text()
