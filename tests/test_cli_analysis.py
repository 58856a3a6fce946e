"""``seqdance analyze attention`` and ``seqdance probe`` end to end on local checkpoints and the shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _checkpoints import random_dynamics_model, random_esm2_mlm
from _store_fixtures import nma_rows, write_manifest
from conftest import require

from seqdance.analysis import attention_run
from seqdance.analysis.attention import METRIC_NAMES
from seqdance.cli.main import main


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    seqdance_dir, esm2_dir = root / "seqdance_tiny", root / "esm2_tiny"
    random_dynamics_model("tiny", "seqdance", seed=1).save_pretrained(seqdance_dir)
    random_esm2_mlm("tiny", seed=2).save_pretrained(esm2_dir)
    return {"seqdance": seqdance_dir, "esm2": esm2_dir}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_analyze_attention_writes_tables_and_heatmaps(md_store, model_dirs, tmp_path, capsys, one_torch_thread):
    for kind, model_dir in model_dirs.items():
        out = tmp_path / kind
        code = main(["analyze", "attention", "--model", str(model_dir), "--store", str(md_store), "-o", str(out),
                     "-q", "--device", "cpu"])
        assert code == 0
        per_head = pd.read_csv(out / "per_head.csv")
        assert list(per_head.columns[:5]) == ["protein", "source", "group", "layer", "head"]
        assert list(per_head.columns[5:]) == list(METRIC_NAMES)
        assert per_head["protein"].nunique() == 3 and len(per_head) == 3 * 2 * 4  # proteins x layers x heads
        assert set(per_head["group"]) == {"md", "idr"}
        summary = pd.read_csv(out / "summary.csv")
        assert set(summary["group"]) == {"all", "md", "idr"} and len(summary) == 3 * 8
        best = pd.read_csv(out / "best_heads.csv")
        assert len(best) == 3 * len(METRIC_NAMES)
        assert best.set_index(["group", "metric"]).loc[("idr", "sym_comove_pos_spearman"), "paper"] == 0.74
        for metric in METRIC_NAMES:
            assert (out / f"heatmap_{metric}.png").stat().st_size > 1000
        assert len(list((out / attention_run.PROTEINS_DIR).glob("*.csv"))) == 3  # one table per protein
        assert "Best head per metric" in capsys.readouterr().out


def test_analyze_attention_output_equals_a_float64_implementation(md_store, model_dirs, tmp_path, one_torch_thread):
    """The command's files, not only the helper: every value of per_head.csv equals the float64 reference (scipy,
    scikit-learn, the notebook transcribed) on the same float32 maps to 1e-9 (before, the CSV kept 6 digits:
    3.7e-6 relative), and summary.csv holds their exact medians."""
    from _attention_reference import maps_of, reference_metrics, reference_pairs

    from seqdance.model import load_model
    from seqdance.store import DynamicsStore

    out = tmp_path / "att"
    assert main(["analyze", "attention", "--model", str(model_dirs["seqdance"]), "--store", str(md_store),
                 "-o", str(out), "-q", "--device", "cpu"]) == 0
    per_head = pd.read_csv(out / "per_head.csv")
    model = load_model(str(model_dirs["seqdance"]))
    heads = model.esm2.config.num_heads
    worst, checked = 0.0, 0
    with DynamicsStore.open(md_store) as store:
        for name, rows in per_head.groupby("protein"):
            protein = store.read(name)
            t = min(1024, protein.pair.shape[0])
            maps = maps_of(model, protein.sequence, t)
            pairs = reference_pairs(protein.pair, protein.sequence, t)
            for _, row in rows.iterrows():
                ref = reference_metrics(maps[int(row["layer"]) * heads + int(row["head"])], pairs, t, protein.pair)
                for metric in METRIC_NAMES:
                    if np.isnan(ref[metric]):
                        assert np.isnan(row[metric]), (name, metric)
                        continue
                    worst = max(worst, abs(row[metric] - ref[metric]) / max(abs(ref[metric]), 1e-300))
                    checked += 1
    assert checked > 0.8 * per_head.shape[0] * len(METRIC_NAMES) and worst <= 1e-9, worst
    summary = pd.read_csv(out / "summary.csv")
    medians = per_head.groupby(["layer", "head"])[list(METRIC_NAMES)].median()
    mine = summary[summary["group"] == "all"].set_index(["layer", "head"])[list(METRIC_NAMES)]
    pd.testing.assert_frame_equal(mine, medians, check_exact=True)


def test_analyze_attention_says_what_it_left_out_and_refuses_tiny_windows(md_store, model_dirs, tmp_path, capsys,
                                                                           one_torch_thread):
    """`--split all` holds two NMA entries besides the three MD/IDR proteins: they are named as left out, with
    the reason, on the terminal and in summary.md; `--max-tokens` below 9 (the paper's metrics all NaN) is a
    usage error."""
    from seqdance.analysis.attention import MIN_TOKENS
    from seqdance.cli.analyze import ATTENTION_MIN_TOKENS
    from seqdance.store import DynamicsStore

    with DynamicsStore.open(md_store) as store:
        nma = sorted(n for n, k in zip(store.index["name"], store.index["kind"]) if k != "md")
    assert len(nma) == 2
    out = tmp_path / "all"
    base = ["analyze", "attention", "--model", str(model_dirs["esm2"]), "--store", str(md_store), "-q",
            "--device", "cpu"]
    assert main([*base, "-o", str(out), "--split", "all"]) == 0
    err = capsys.readouterr().err
    note = next(line for line in err.splitlines() if line.startswith("note:"))
    assert "2 protein(s) of the store left out: NMA entries have no co-movement or interaction maps" in note
    assert all(name in note for name in nma)
    assert "2 protein(s) of the store left out" in (out / "summary.md").read_text()
    assert pd.read_csv(out / "per_head.csv")["protein"].nunique() == 3
    assert main([*base, "-o", str(tmp_path / "test")]) == 0  # md_store's test split holds only MD/IDR proteins
    assert "left out" not in capsys.readouterr().err
    assert ATTENTION_MIN_TOKENS == MIN_TOKENS == 9
    for too_few in ("3", "8"):
        with pytest.raises(SystemExit) as exit_info:
            main([*base, "-o", str(tmp_path / "tiny"), "--max-tokens", too_few])
        assert exit_info.value.code == 2 and "must be at least 9" in capsys.readouterr().err
    assert not (tmp_path / "tiny").exists()
    assert main([*base, "-o", str(tmp_path / "nine"), "--max-tokens", "9", "--names", "mdcath_2hbaA00"]) == 0
    nine = pd.read_csv(tmp_path / "nine" / "per_head.csv")
    assert nine["comove_pos_spearman"].notna().any()
    assert nine[["sym_comove_pos_spearman", "sym_comove_neg_spearman", "sym_interact_spearman"]].notna().any().any()


def test_analyze_attention_resumes_and_refuses_another_run(md_store, model_dirs, tmp_path, capsys, monkeypatch,
                                                            one_torch_thread):
    out = tmp_path / "att"
    argv = ["analyze", "attention", "--model", str(model_dirs["seqdance"]), "--store", str(md_store), "-o", str(out),
            "-q", "--device", "cpu"]
    assert main(argv) == 0
    first = pd.read_csv(out / "per_head.csv")
    names = list(dict.fromkeys(first["protein"]))
    tables = out / attention_run.PROTEINS_DIR
    # a killed run's leftovers: one protein's table cut after 3 rows, another's without its key file
    cut = tables / f"{names[0]}.csv"
    cut.write_text("".join(cut.read_text().splitlines(keepends=True)[:4]))
    (tables / f"{names[-1]}.json").unlink()
    (out / "per_head.csv").unlink()
    computed = []
    real = attention_run._protein_rows
    monkeypatch.setattr(attention_run, "_protein_rows", lambda enc, st, name, *a: computed.append(name) or
                        real(enc, st, name, *a))
    assert main(argv) == 0
    assert sorted(computed) == sorted([names[0], names[-1]])
    again = pd.read_csv(out / "per_head.csv")
    pd.testing.assert_frame_equal(again, first)
    capsys.readouterr()
    other = ["analyze", "attention", "--model", str(model_dirs["esm2"]), "--store", str(md_store), "-o", str(out),
             "-q", "--device", "cpu"]
    assert main(other) == 1
    assert "another run (model differ)" in _one_error_line(capsys)
    assert main([*other, "--overwrite"]) == 0


def test_analyze_attention_bad_inputs(md_store, model_dirs, shared_data, tmp_path, capsys):
    from seqdance.store.builder import build_store

    base = ["analyze", "attention", "--model", str(model_dirs["seqdance"]), "-o", str(tmp_path / "x"), "-q"]
    assert main([*base, "--store", str(md_store), "--split", "validation"]) == 1
    assert "split 'validation' has no proteins" in _one_error_line(capsys)
    nma_store = tmp_path / "nma.h5"
    build_store(write_manifest(tmp_path / "m.csv", nma_rows(shared_data, 2, 0)), nma_store, workers=0)
    assert main([*base, "--store", str(nma_store), "--split", "all"]) == 1
    assert "has pair targets for attention analysis" in _one_error_line(capsys)
    assert main([*base, "--store", str(md_store), "--names", "nope"]) == 1
    assert "unknown protein name(s) nope" in _one_error_line(capsys)
    assert main(["analyze", "attention", "--model", str(tmp_path / "missing"), "--store", str(md_store), "-o",
                 str(tmp_path / "x")]) == 1
    assert "not found" in _one_error_line(capsys)


@pytest.fixture(scope="module")
def label_csv(shared_data, tmp_path_factory) -> Path:
    table = pd.read_csv(require(shared_data / "stability" / "tsuboyama_bioemu" / "system_info.csv"))
    rng = np.random.default_rng(0)
    families = sorted(set(table["name_wt"]))
    frame = pd.DataFrame({"name": table["name"], "sequence": table["sequence"], "dg": table["dg_exp"],
                          "length_label": table["sequence"].str.len() * 0.1})
    for k in range(3):
        test = set(rng.choice(families, size=len(families) // 5, replace=False))
        frame[f"split_{k}"] = ["test" if f in test else "train" for f in table["name_wt"]]
    path = tmp_path_factory.mktemp("labels") / "labels.csv"
    frame.to_csv(path, index=False)
    return path


def test_probe_two_models_and_cache(label_csv, model_dirs, tmp_path, capsys, one_torch_thread):
    out, cache = tmp_path / "probe", tmp_path / "cache"
    argv = ["probe", "--labels", str(label_csv), "--model", f"sd={model_dirs['seqdance']}", "--model",
            str(model_dirs["esm2"]), "--cache", str(cache), "-o", str(out), "-q", "--device", "cpu"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "728 embeddings computed, 0 from the cache" in captured.err  # 364 sequences x 2 models
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["features"]) == {"sd", "esm2_tiny", "baseline: length", "baseline: composition"}
    assert set(summary["label"]) == {"dg", "length_label"} and (summary["n_splits"] == 3).all()
    s = summary.set_index(["label", "features", "estimator"])
    assert s.loc[("length_label", "baseline: length", "linear"), "pearson_mean"] > 0.999  # label = 0.1 x length
    for name in ("per_split.csv", "predictions.csv", "summary.md", "scatter.png", "bars.png"):
        assert (out / name).stat().st_size > 100
    # probing one label again costs no forward pass
    assert main([*argv, "--label", "dg"]) == 0
    assert "0 embeddings computed, 728 from the cache" in capsys.readouterr().err


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.assign(dg=f["dg"].astype(object).where(f.index != 0, "")), "label 'dg' is missing at row 2"),
    (lambda f: f.assign(dg=f["dg"].astype(object).where(f.index != 1, "n/a")), "label 'dg' at row 3 .* not a finite"),
    (lambda f: f.assign(split_0="train"), "split 'split_0' has no test proteins"),
])
def test_probe_bad_label_files(label_csv, model_dirs, tmp_path, capsys, edit, message):
    bad = tmp_path / "bad.csv"
    edit(pd.read_csv(label_csv).head(20)).to_csv(bad, index=False)
    assert main(["probe", "--labels", str(bad), "--model", str(model_dirs["esm2"]), "-o", str(tmp_path / "o"),
                 "--no-cache"]) == 1
    line = _one_error_line(capsys)
    assert line.startswith("seqdance probe: error: ") and pytest.importorskip("re").search(message, line)


def test_probe_unknown_label_column(label_csv, model_dirs, tmp_path, capsys):
    assert main(["probe", "--labels", str(label_csv), "--label", "rg_mean", "--model", str(model_dirs["esm2"]),
                 "-o", str(tmp_path / "o")]) == 1
    assert "unknown label column(s) rg_mean" in _one_error_line(capsys)


def test_model_without_attention_maps(md_store):
    from seqdance.errors import InputError
    from seqdance.store import DynamicsStore

    with DynamicsStore.open(md_store) as store, pytest.raises(InputError, match="no attention maps"):
        attention_run.analyze_attention(torch.nn.Sequential(torch.nn.Linear(2, 2)), store)


def test_dataset_labels_export_feeds_the_probe(md_store, model_dirs, tmp_path, capsys, one_torch_thread):
    from seqdance.analysis.probe_run import read_label_table
    from seqdance.features.conformation import PROPERTY_NAMES
    from seqdance.store import DynamicsStore

    out = tmp_path / "conf.csv"
    assert main(["dataset", "labels", str(md_store), "-o", str(out), "--store-split"]) == 0
    err = capsys.readouterr().err
    assert "wrote" in err
    # ν is explained, and its fit's quality stands beside it (not as a label the probe would fit)
    note = next(line for line in err.splitlines() if line.startswith("note: nu is the Flory exponent"))
    assert "describes disordered chains" in note and "chain(s) here fit with R² < 0.9" in note
    table = pd.read_csv(out)
    assert {"info_nu_r2", "info_nu_s_min", "info_nu_s_max"} <= set(table.columns)
    assert (table["info_nu_s_min"] == 6).all() and (table["info_nu_s_max"] == table["info_n_residues"] - 1).all()
    assert table["info_nu_r2"].between(-1, 1).all()
    poor = int((table["info_nu_r2"] < 0.9).sum())
    assert f"{poor} of {len(table)} chain(s) here fit with R² < 0.9" in note
    with DynamicsStore.open(md_store) as store:
        assert sorted(table["name"]) == sorted(store.names)  # single-chain entries: one row each
        for _, row in table.iterrows():
            record = store.provenance(row["name"])["conformation"][0]
            for prop in PROPERTY_NAMES:
                assert row[prop] == pytest.approx(record[prop], rel=1e-5)
            assert row["split_store"] == store.row(row["name"])["label"]
    assert set(table["info_group"]) == {"md", "idr", "nma"}
    labels = read_label_table(out)
    assert list(labels.labels) == list(PROPERTY_NAMES) and [s.name for s in labels.splits] == ["split_store"]
    assert main(["dataset", "labels", str(md_store), "-o", str(tmp_path / "x.csv"), "--split", "nope"]) == 1
    assert "split 'nope' has no proteins" in _one_error_line(capsys)
    assert main(["dataset", "labels", str(md_store), "-o", str(tmp_path / "x.csv"), "--split", "test",
                 "--store-split"]) == 1
    assert "a split column needs train and test" in _one_error_line(capsys)
    only = tmp_path / "rg.csv"
    assert main(["dataset", "labels", str(md_store), "-o", str(only), "--groups", "md", "--properties", "rg_mean"]) == 0
    assert list(pd.read_csv(only).columns[:3]) == ["name", "sequence", "rg_mean"]
    assert "split_store" not in pd.read_csv(only).columns  # by default the probe makes its own splits
