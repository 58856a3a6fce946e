"""``seqdance compare``: Δ against separate predictions, summary scores against ``score``, the alignment of a
deletion and an insertion on a real protein, long proteins, resuming by content, shards and ``merge``, pictures,
structure files, the background band and one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from _checkpoints import write_released_checkpoint
from conftest import require

from seqdance.cli.main import main
from seqdance.inference.predict import predict
from seqdance.io_utils import read_fasta
from seqdance.model import load_model
from seqdance.schema import PROPERTIES, PROPERTY_NAMES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MUTANTS = ["M1A", "K3P", "R23W:L26K", "V55D", "K3K"]
TOL = 1e-6


@pytest.fixture(scope="module")
def setup(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("compare")
    fasta = require(shared_data / "proteingym_single_dev" / "fasta" / "IF1_ECOLI_Kelsic_2016.fasta")
    wild_type = read_fasta(fasta)[0].sequence
    model_dir = write_released_checkpoint(root / "tiny", "tiny", "esmdance", seed=5)
    return {"root": root, "fasta": fasta, "wt": wild_type, "model_dir": model_dir,
            "model": load_model(str(model_dir)),
            "pdb": require(shared_data / "proteingym_single_dev" / "af2_pdb" / "IF1_ECOLI_Kelsic_2016.pdb"),
            "other_pdb": require(shared_data / "proteingym_single_dev" / "af2_pdb" / "CCDB_ECOLI_Adkar_2012.pdb")}


def _run(setup, out, *extra) -> int:
    return main(["compare", "--model", str(setup["model_dir"]), "--fasta", str(setup["fasta"]), "-o", str(out), "-q",
                 *extra])


@pytest.fixture(scope="module")
def substitutions(setup):
    out = setup["root"] / "subs"
    assert _run(setup, out, "--mutants", *MUTANTS) == 0
    return out


def _apply(wt: str, mutant: str) -> str:
    seq = list(wt)
    for token in mutant.split(":"):
        seq[int(token[1:-1]) - 1] = token[-1]
    return "".join(seq)


def test_delta_equals_separate_predictions_and_summary_equals_score(setup, substitutions, capsys):
    wt = setup["wt"]
    preds = predict(setup["model"], [wt] + [_apply(wt, m) for m in MUTANTS])
    for k, mutant in enumerate(MUTANTS):
        with np.load(substitutions / f"{mutant.replace(':', '_')}.npz") as data:
            for p in PROPERTIES:
                want = preds[k + 1][p.name].astype(np.float64) - preds[0][p.name]
                got = data[f"delta.{p.name}"].astype(np.float64)
                assert np.abs(got - want).max() <= TOL, (mutant, p.name)
                assert np.abs(data[f"wt.{p.name}"] - preds[0][p.name]).max() <= TOL
                assert np.abs(data[f"variant.{p.name}"] - preds[k + 1][p.name]).max() <= TOL
    assert (np.load(substitutions / "K3K.npz")["delta.corr"] == 0).all()  # identical to the wild type: Δ = 0
    table = setup["root"] / "muts.txt"
    table.write_text("\n".join(MUTANTS) + "\n")
    capsys.readouterr()
    assert main(["score", "--model", str(setup["model_dir"]), "--fasta", str(setup["fasta"]), "--mutations",
                 str(table), "-o", str(setup["root"] / "score.csv"), "-q"]) == 0
    scored = pd.read_csv(setup["root"] / "score.csv")
    summary = pd.read_csv(substitutions / "summary.csv")
    assert summary["variant"].tolist() == [m for m in MUTANTS]
    assert summary["kind"].tolist() == ["substitution"] * 4 + ["wild type"]
    columns = ["score", *[f"change_{p}" for p in PROPERTY_NAMES]]
    np.testing.assert_allclose(summary[columns].to_numpy(), scored[columns].to_numpy(), rtol=0, atol=TOL)
    assert summary["n_mutations"].tolist() == scored["n_mutations"].tolist()
    # the per-residue table: one row per wild-type position, the values of the arrays
    rows = pd.read_csv(substitutions / "K3P.csv")
    assert len(rows) == len(wt) and rows["status"].tolist().count("substituted") == 1
    assert rows.loc[2, "status"] == "substituted" and rows.loc[2, "variant_residue"] == "P"
    np.testing.assert_allclose(rows["rmsf_nor_delta"], preds[2]["rmsf_nor"] - preds[0]["rmsf_nor"], atol=2e-6)
    np.testing.assert_allclose(rows["corr_pair_delta"], np.abs(preds[2]["corr"] - preds[0]["corr"]).sum(axis=1),
                               rtol=1e-5)
    top = pd.read_csv(substitutions / "K3P.top.csv")
    first = top[(top["property"] == "rmsf_nor") & (top["rank"] == 1)].iloc[0]
    delta = preds[2]["rmsf_nor"] - preds[0]["rmsf_nor"]
    assert first["position_i"] == int(np.argmax(np.abs(delta))) + 1
    pairs = top[(top["property"] == "corr") & (top["kind"] == "pair")]
    sym = np.abs(0.5 * ((preds[2]["corr"] - preds[0]["corr"]) + (preds[2]["corr"] - preds[0]["corr"]).T))
    i, j = pairs.iloc[0][["position_i", "position_j"]].astype(int) - 1
    assert sym[i, j] == pytest.approx(np.triu(sym, 1).max(), rel=1e-5)


def test_deletion_and_insertion_on_a_real_protein(setup, tmp_path):
    import seqdance

    wt = setup["wt"]
    deletion = wt[:9] + wt[12:]
    insertion = wt[:20] + "GSG" + wt[20:]
    both = seqdance.compare(setup["model"], wt, [deletion, insertion, "Q10_T12del:T20_M21insGSGS"])
    assert [c.name for c in both] == ["Q10_T12del", "T20_M21insGSG", "Q10_T12del:T20_M21insGSGS"]
    del_map = [*range(9), -1, -1, -1, *range(9, len(wt) - 3)]
    ins_map = [*range(20), *range(23, len(wt) + 3)]
    assert both[0].alignment.wt_to_variant.tolist() == del_map
    assert both[1].alignment.wt_to_variant.tolist() == ins_map
    preds = predict(setup["model"], [wt, deletion, insertion])
    for comparison, pred, mapping in ((both[0], preds[1], del_map), (both[1], preds[2], ins_map)):
        index = np.asarray(mapping)
        ok = index >= 0
        for p in PROPERTIES:
            delta = comparison.delta[p.name].astype(np.float64)
            if p.is_pair:
                want = pred[p.name][np.ix_(index[ok], index[ok])] - preds[0][p.name][np.ix_(ok, ok)]
                assert np.abs(delta[np.ix_(ok, ok)] - want).max() <= TOL, p.name
                assert np.isnan(delta[~ok]).all() and np.isnan(delta[:, ~ok]).all()
            else:
                want = pred[p.name][index[ok]] - preds[0][p.name][ok]
                assert np.abs(delta[ok] - want).max() <= TOL, p.name
                assert np.isnan(delta[~ok]).all()
        assert np.abs(comparison.variant_values["rmsf_nor"] - pred["rmsf_nor"]).max() <= TOL
    # the files: the per-residue table has the deleted rows and the inserted rows after residue 20
    out = tmp_path / "indels"
    assert _run(setup, out, "--mutants", "Q10_T12del", "T20_M21insGSG", "--properties", "rmsf_nor", "corr") == 0
    rows = pd.read_csv(out / "T20_M21insGSG.csv", dtype={"wt_position": "Int64"})
    assert len(rows) == len(wt) + 3
    assert rows["status"].iloc[19:24].tolist() == ["same", "inserted", "inserted", "inserted", "same"]
    assert rows["variant_residue"].iloc[20:23].tolist() == list("GSG") and rows["wt_position"].iloc[20:23].isna().all()
    deleted = pd.read_csv(out / "Q10_T12del.csv")
    assert deleted["status"].iloc[9:12].tolist() == ["deleted"] * 3
    assert deleted["rmsf_nor_delta"].iloc[9:12].isna().all()
    summary = pd.read_csv(out / "summary.csv")
    assert summary["kind"].tolist() == ["indel", "indel"] and summary["length"].tolist() == [len(wt) - 3, len(wt) + 3]
    with np.load(out / "Q10_T12del.npz") as data:
        assert data["columns"].shape == (len(wt), 2) and str(data["description"]) == "Q10_T12del"


def test_long_protein_windows_follow_predict_and_score(setup, tmp_path, capsys):
    """Beyond the window, Δ is predict's (overlapping windows) and the scalars are score's (a window at the sites)."""
    wt = setup["wt"]
    out = tmp_path / "long"
    assert _run(setup, out, "--mutants", "K3P", "Q10_T12del", "--window", "30", "--properties", "sasa_mean",
                "corr") == 0
    preds = predict(setup["model"], [wt, _apply(wt, "K3P")], window=30)
    with np.load(out / "K3P.npz") as data:
        got = data["delta.corr"].astype(np.float64)
        want = preds[1]["corr"].astype(np.float64) - preds[0]["corr"]
        assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(got).any()  # far pairs share no window
        assert np.nanmax(np.abs(got - want)) <= TOL
    table = tmp_path / "m.txt"
    table.write_text("K3P\nQ10_T12del\n")
    assert main(["score", "--model", str(setup["model_dir"]), "--fasta", str(setup["fasta"]), "--mutations",
                 str(table), "--window", "30", "--properties", "sasa_mean", "corr", "-o", str(tmp_path / "s.csv"),
                 "-q"]) == 0
    scored = pd.read_csv(tmp_path / "s.csv")
    summary = pd.read_csv(out / "summary.csv")
    columns = ["score", "change_sasa_mean", "change_corr"]
    np.testing.assert_allclose(summary[columns].to_numpy(), scored[columns].to_numpy(), rtol=0, atol=TOL)


def test_resume_by_content_shards_and_merge(setup, substitutions, tmp_path, capsys, caplog):
    out = tmp_path / "resume"
    shutil.copytree(substitutions, out)
    capsys.readouterr()
    assert _run(setup, out, "--mutants", *MUTANTS) == 0
    assert "0 variants compared, 5 already done" in capsys.readouterr().out
    # a truncated table and a file of another variant are recomputed, and only they
    (out / "K3P.csv").write_text((out / "K3P.csv").read_text()[:200])
    shutil.copy(out / "M1A.npz", out / "V55D.npz")
    assert _run(setup, out, "--mutants", *MUTANTS, "G29A") == 0
    captured = capsys.readouterr()
    assert "3 variants compared, 3 already done" in captured.out
    assert "K3P.csv is cut short" in caplog.text and "V55D.npz records another content key" in caplog.text
    assert "computed 3 variants" in captured.err
    summary = pd.read_csv(out / "summary.csv")
    before = pd.read_csv(substitutions / "summary.csv")
    np.testing.assert_allclose(summary.set_index("variant").loc[MUTANTS, "change_corr"],
                               before.set_index("variant").loc[MUTANTS, "change_corr"], rtol=0, atol=TOL)
    # a folder of another wild type is refused in one line
    assert main(["compare", "--model", str(setup["model_dir"]), "--sequence", setup["wt"][:40], "--mutants", "M1A",
                 "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert "holds the comparisons of another wild type" in err and len(err.strip().splitlines()) == 1
    # two shards, then merge: the same summary as one process
    sharded = tmp_path / "sharded"
    for k in range(2):
        assert _run(setup, sharded, "--mutants", *MUTANTS, "--shard", f"{k}/2", "--batch-size", "2") == 0
    single = tmp_path / "single"
    assert _run(setup, single, "--mutants", *MUTANTS, "--batch-size", "2") == 0
    pd.testing.assert_frame_equal(pd.read_csv(sharded / "summary.csv"), pd.read_csv(single / "summary.csv"))
    (sharded / "summary.csv").unlink()
    assert main(["merge", str(sharded)]) == 0
    assert "shards of compare merged" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(sharded / "summary.csv"), pd.read_csv(single / "summary.csv"))


def test_pictures_structure_background_and_report(setup, tmp_path, capsys):
    out = tmp_path / "pictures"
    assert _run(setup, out, "--mutants", "K3P", "Q10_T12del", "T20_M21insGSG", "--properties", "rmsf_nor",
                "sasa_mean", "ss", "corr", "vdw", "hp", "--plots", "--structure", str(setup["pdb"]), "--background",
                "6", "--seed", "3", "--report") == 0
    err = capsys.readouterr().err
    assert "structure: wild type -> structure chain A: 72 residues aligned (72 identical)" in err
    for stem in ("K3P", "Q10_T12del", "T20_M21insGSG"):
        for suffix in ("profiles.png", "pairs.png", "delta_rmsf_nor.cif", "delta_rmsf_nor.defattr",
                       "delta_rmsf_nor.pml", "delta_rmsf_nor.cxc"):
            assert (out / f"{stem}.{suffix}").stat().st_size > 0, (stem, suffix)
    # the structure holds the signed Δ as B-factors (0 for deleted residues), the scripts a symmetric palette
    gemmi = pytest.importorskip("gemmi")
    with np.load(out / "Q10_T12del.npz") as data:
        delta = data["delta.rmsf_nor"].astype(np.float64)
    structure = gemmi.read_structure(str(out / "Q10_T12del.delta_rmsf_nor.cif"))
    bfactors = np.array([r[0].b_iso for r in structure[0]["A"]])
    np.testing.assert_allclose(bfactors, np.nan_to_num(delta), atol=1e-5)
    limit = np.nanmax(np.abs(delta))
    assert f"minimum={-limit:.6g}, maximum={limit:.6g}" in (out / "Q10_T12del.delta_rmsf_nor.pml").read_text()
    assert f"palette {-limit:.6g},blue:0,white:{limit:.6g},red" in (out / "Q10_T12del.delta_rmsf_nor.cxc").read_text()
    # background: seeded substitutions away from the variants' sites, a band per residue, a percentile per variant
    with np.load(out / "background.npz") as data:
        names = [str(n) for n in data["variants"]]
        assert len(names) == 6 and data["rmsf_nor"].shape == (3, len(setup["wt"]))
    sites = {2, 9, 10, 11, 19, 20}
    assert not {int(n[1:-1]) - 1 for n in names} & sites
    summary = pd.read_csv(out / "summary.csv")
    assert summary["background_percentile"].between(0, 100).all()
    assert {"top_flexibility", "n_changed_flexibility", "top_co-movement", "top_interactions"} <= set(summary.columns)
    # the report: one row per variant, the variant panel with Δ and symmetric maps
    html = (out / "report.html").read_text(encoding="utf-8")
    from test_report import page_payloads, page_table

    assert [r["id"] for r in page_table(html)["rows"]] == ["K3P", "Q10_T12del", "T20_M21insGSG"]
    panel = page_payloads(html)[1]["panels"][0]
    assert panel["kind"] == "variant"
    data = panel["data"]
    assert data["marks"]["deleted"] == [[10, 12]] and [p["name"] for p in data["profiles"]] == ["rmsf_nor",
                                                                                                 "sasa_mean"]
    assert all(m["lo"] == -m["hi"] for m in data["maps"])
    got = np.array([np.nan if v is None else v for v in data["profiles"][0]["delta"]])
    np.testing.assert_allclose(got, delta, atol=1e-6)


@pytest.mark.browser
def test_compare_report_in_a_browser(setup, tmp_path, browser):
    from _browser import console_errors, hover_point, screenshot, wait_for
    from selenium.webdriver.common.by import By

    out = tmp_path / "page"
    assert _run(setup, out, "--mutants", "K3P", "Q10_T12del", "--properties", "rmsf_nor", "corr", "vdw",
                "--report") == 0
    console_errors(browser)
    browser.get((out / "report.html").as_uri())
    wait_for(browser, "return document.body.dataset.ready === 'true'")
    sections = browser.find_elements(By.CSS_SELECTOR, "#protein section.panel")
    assert [s.get_attribute("data-kind") for s in sections] == ["variant"]
    assert browser.find_element(By.CSS_SELECTOR, "span.count").text == "2 of 2 variants"
    assert len(browser.find_elements(By.CSS_SELECTOR, ".variant-pair-plot.js-plotly-plot")) == 2
    plot = browser.find_element(By.CSS_SELECTOR, ".variant-profiles-plot")
    # the Δ bars (trace 2) of K3P: hovering residue 3 shows the Δ the file holds
    text = hover_point(browser, plot, 2, 2)
    with np.load(out / "K3P.npz") as data:
        delta = float(data["delta.rmsf_nor"][2])
    assert "K3" in text and "Δ = " in text
    import re

    shown = float(re.search(r"Δ = ([-−0-9.e]+)", text).group(1).replace("−", "-"))
    assert shown == pytest.approx(delta, rel=1e-3, abs=1e-6)
    zmin, zmax, scale = browser.execute_script(
        "const gd = document.querySelector('.variant-pair-plot'); const t = gd._fullData[0];"
        "return [t.zmin, t.zmax, t.colorscale];")
    assert zmin == -zmax and [0.5, "#f7f7f7"] in scale  # symmetric limits, white at the middle: 0 is white
    screenshot(browser, tmp_path / "compare.png", "compare_report.png")
    assert console_errors(browser) == []


def test_bad_inputs_are_one_line_errors(setup, tmp_path, capsys):
    out = tmp_path / "bad"
    assert _run(setup, out, "--mutants", "M1A", "X3A") == 1
    err = capsys.readouterr().err
    assert "row 2: 'X3A': the wild-type residue at position 3 is K, not X" in err and not out.exists()
    variants = tmp_path / "v.fasta"
    variants.write_text(f">ok\n{setup['wt'][:5]}W{setup['wt'][6:]}\n>bad\n{setup['wt'][:7]}1{setup['wt'][8:]}\n")
    assert _run(setup, out, "--variants", str(variants)) == 1
    err = capsys.readouterr().err
    assert "v.fasta:bad: character '1' at residue 8 of the variant sequence is not an amino-acid letter" in err
    assert len(err.strip().splitlines()) == 1
    assert _run(setup, out, "--mutants", "M1A", "--structure", str(setup["other_pdb"])) == 1
    err = capsys.readouterr().err
    assert "no chain of the prediction matches a chain of the structure" in err and len(err.strip().splitlines()) == 1
    assert _run(setup, out, "--mutants", "M1A", "M1A") == 1
    assert "variant 'M1A' is given twice" in capsys.readouterr().err
    assert _run(setup, out, "--mutants", "M1A", "K3K", "E4E", "--properties", "rmsf_nor") == 0
    err = capsys.readouterr().err
    assert err.count("identical to the wild type") == 1 and "2 variants identical to the wild type (K3K, E4E)" in err
    summary = pd.read_csv(out / "summary.csv")
    assert (summary.loc[1:, "change_rmsf_nor"] == 0).all()
    record = json.loads((out / "K3K.json").read_text())
    assert record["kind"] == "wild type"


def test_the_documented_example(setup, shared_data, tmp_path, monkeypatch, capsys):
    """docs/compare.md's worked example, as written (a local model for ChaoHou/ESMDance), and its file list."""
    import re
    import shlex

    from conftest import REPO_ROOT

    page = (REPO_ROOT / "docs" / "compare.md").read_text(encoding="utf-8")
    block = page[page.index("## Worked example"):].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    command = next(line for line in lines if line.startswith("seqdance compare"))
    command = command.replace("$SHARED", str(shared_data)).replace("ChaoHou/ESMDance", str(setup["model_dir"]))
    monkeypatch.chdir(tmp_path)
    assert main([*shlex.split(command)[1:], "-q"]) == 0
    assert "structure: wild type -> structure chain A: 72 residues aligned (72 identical)" in capsys.readouterr().err
    listing = page[page.index("if1_compare/\n"):].split("```", 1)[0]
    out = tmp_path / "if1_compare"
    for name in re.findall(r"^\s+(\S+\.(?:json|npz|csv|png|html))", listing, flags=re.M):
        assert (out / name).is_file(), name
    for stem in ("V13P", "L14D_L17D", "Q10_T12del", "T20_M21insGSG"):
        for suffix in ("npz", "csv", "top.csv", "json", "profiles.png", "pairs.png", "delta_rmsf_nor.cif",
                       "delta_rmsf_nor.defattr", "delta_rmsf_nor.cxc", "delta_rmsf_nor.pml"):
            assert (out / f"{stem}.{suffix}").is_file(), (stem, suffix)
    summary = pd.read_csv(out / "summary.csv")
    assert summary["variant"].tolist() == ["V13P", "L14D:L17D", "Q10_T12del", "T20_M21insGSG"]
    assert summary["kind"].tolist() == ["substitution", "substitution", "indel", "indel"]
    # the Python snippet of the page
    import seqdance

    wt = setup["wt"]
    found = seqdance.compare(setup["model"], wt, ["V13P", "Q10_T12del", wt[:20] + "GSG" + wt[20:]])
    c = found[1]
    assert (c.name, c.kind, c.description) == ("Q10_T12del", "indel", "Q10_T12del")
    assert c.delta["rmsf_nor"].shape == (72,) and np.isnan(c.delta["rmsf_nor"][9:12]).all()
    assert c.variant_values["sasa_mean"].shape == (69,) and c.delta["corr"].shape == (72, 72)
    assert found[2].name == "T20_M21insGSG"


def test_esm2_baselines_in_the_summary(setup, tmp_path):
    from _checkpoints import write_esm2_mlm_checkpoint

    esm = write_esm2_mlm_checkpoint(setup["root"] / "esm", seed=2)
    out = tmp_path / "esm"
    variants = ["K3P", "Q10_T12del"]
    assert _run(setup, out, "--mutants", *variants, "--properties", "rmsf_nor", "--esm2", str(esm),
                "--esm2-pll") == 0
    table = tmp_path / "m.txt"
    table.write_text("\n".join(variants) + "\n")
    assert main(["score", "--model", str(setup["model_dir"]), "--fasta", str(setup["fasta"]), "--mutations",
                 str(table), "--properties", "rmsf_nor", "--esm2", str(esm), "--esm2-pll", "-o",
                 str(tmp_path / "s.csv"), "-q"]) == 0
    summary, scored = pd.read_csv(out / "summary.csv"), pd.read_csv(tmp_path / "s.csv")
    for column in ("score", "change_rmsf_nor", "esm2_masked_marginal", "esm2_wt_marginal", "esm2_pll"):
        np.testing.assert_allclose(summary[column], scored[column], rtol=0, atol=TOL, equal_nan=True)
    assert np.isnan(summary.loc[1, "esm2_masked_marginal"]) and np.isfinite(summary["esm2_pll"]).all()
