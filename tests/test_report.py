"""``seqdance report`` and ``--report``: the page's data against the run's files, its size budget, the notes it
must carry, one-line errors; and the page itself in a real browser (Debian's chromium, tests/_browser.py)."""

from __future__ import annotations

import base64
import gzip
import json
import re

import numpy as np
import pandas as pd
import pytest
from _browser import console_errors, hover_cell, hover_point, screenshot, wait_for
from _checkpoints import write_released_checkpoint

from seqdance.cli.main import main
from seqdance.inference.prediction import Prediction
from seqdance.inference.prediction_io import load_prediction, save_prediction, write_residue_csv
from seqdance.report.panels import UNITS, check_units, saturation_payload
from seqdance.report.views import PAIR_DISPLAY_MAX
from seqdance.schema import PROPERTIES, PROPERTY_NAMES, SS_CLASSES
from seqdance.tokenizer import AMINO_ACIDS


def synthetic_prediction(seq_id: str, length: int, rng: np.random.Generator, chains: tuple[int, ...] = ()):
    """Random values of every property, shaped as a prediction (worst case for compression)."""
    chains = chains or (length,)
    sequence = ":".join("".join(rng.choice(list(AMINO_ACIDS), n)) for n in chains)
    values = {}
    for p in PROPERTIES:
        shape = (length, length) if p.is_pair else ((length,) if p.width == 1 else (length, p.width))
        raw = rng.random(shape).astype(np.float32)
        values[p.name] = raw / raw.sum(axis=1, keepdims=True) if p.width > 1 else raw
    return Prediction(seq_id, sequence, chains, values)


def write_run(folder, predictions, model="tiny-model", fingerprint="f" * 64):
    folder.mkdir(parents=True, exist_ok=True)
    for p in predictions:
        save_prediction(folder / f"{p.id}.npz", p, model=model,
                        metadata={"model_fingerprint": fingerprint, "options": '{"window": 1022}'})
    write_residue_csv(folder / "residues.csv", [folder / f"{p.id}.npz" for p in predictions])
    return folder


def page_payloads(html: str) -> list[dict]:
    blobs = re.findall(r'<script type="text/plain" id="protein-(\d+)">([^<]*)</script>', html)
    return [json.loads(gzip.decompress(base64.b64decode(text))) for _, text in sorted(blobs, key=lambda b: int(b[0]))]


def page_table(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="seqdance-run">(.*?)</script>', html, re.S)
    return json.loads(found.group(1))


def test_report_of_ten_proteins_is_self_contained_and_within_budget(tmp_path) -> None:
    rng = np.random.default_rng(0)
    predictions = [synthetic_prediction(f"p{k}", 300 + k, rng) for k in range(10)]
    run = write_run(tmp_path / "run", predictions)
    assert main(["report", str(run), "-o", str(tmp_path / "r.html"), "-q"]) == 0
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    size = (tmp_path / "r.html").stat().st_size
    assert size <= 6_000_000, f"{size / 1e6:.2f} MB"  # the budget, with incompressible random maps
    # nothing is fetched: no element loads a script, style or picture from anywhere
    assert re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=(?!\"data:)", html) is None
    assert "plotly.js v" not in html[:2000]  # the library is inlined packed, not as text
    table = page_table(html)
    assert [r["id"] for r in table["rows"]] == [p.id for p in predictions]
    assert table["columns"][:2] == ["residues", "chains"]
    assert [r["values"][0] for r in table["rows"]] == [300 + k for k in range(10)]
    payloads = page_payloads(html)
    assert len(payloads) == 10
    first = payloads[0]
    assert [panel["kind"] for panel in first["panels"]] == ["profiles", "pairs"]
    rmsf = first["panels"][0]["data"]["rows"][0]["traces"][0]
    assert rmsf["name"] == "rmsf_nor" and rmsf["unit"] == UNITS["rmsf_nor"]
    want = np.asarray([float(f"{v:.6g}") for v in predictions[0]["rmsf_nor"]])
    np.testing.assert_array_equal(rmsf["values"], want)  # six significant digits, as residues.csv
    corr = first["panels"][1]["data"]["maps"][0]
    codes = np.frombuffer(base64.b64decode(corr["codes"]), dtype=np.uint8).reshape(300, 300)
    shown = corr["lo"] + codes * (corr["hi"] - corr["lo"]) / (corr["levels"] - 1)
    assert np.abs(shown - predictions[0]["corr"]).max() <= (corr["hi"] - corr["lo"]) / (corr["levels"] - 1) / 2 + 1e-9
    for fact in ("tiny-model", "f" * 64, "seqdance report", "0.1.0"):
        assert fact in html


def test_long_pair_maps_are_averaged_for_display_and_the_page_says_so(tmp_path) -> None:
    rng = np.random.default_rng(1)
    long = synthetic_prediction("long", 2 * PAIR_DISPLAY_MAX + 10, rng)
    run = write_run(tmp_path / "run", [long])
    out = tmp_path / "r.html"
    assert main(["report", str(run), "-o", str(out), "-q"]) == 0
    pairs = page_payloads(out.read_text(encoding="utf-8"))[0]["panels"][1]
    factor = 3  # ceil(810 / 400)
    assert pairs["data"]["factor"] == factor and pairs["data"]["maps"][0]["n"] == 270
    assert any(f"averaged over blocks of {factor} × {factor}" in note for note in pairs["notes"])
    block = long["corr"][:factor, :factor].mean()
    codes = np.frombuffer(base64.b64decode(pairs["data"]["maps"][0]["codes"]), dtype=np.uint8)
    assert abs(-1 + int(codes[0]) * 2 / 254 - block) <= 1 / 254 + 1e-6
    assert load_prediction(run / "long.npz")["corr"].shape == (810, 810)  # the files keep full resolution


def test_saturation_payload_against_the_score_table() -> None:
    wild = "MKTAY"
    rows = [{"mutant": f"{w}{i + 1}{m}"} for i, w in enumerate(wild) for m in AMINO_ACIDS if m != w]
    rows.append({"mutant": "M1A:K2G"})
    table = pd.DataFrame(rows)
    rng = np.random.default_rng(2)
    for name in ("sasa_mean", "psi", "corr"):
        table[f"change_{name}"] = rng.random(len(table))
    table["score"] = -table[[c for c in table if c.startswith("change_")]].mean(axis=1)
    table["n_mutations"] = table["mutant"].str.count(":") + 1
    payload = saturation_payload(table)
    data = payload["data"]
    assert data["positions"] == [1, 2, 3, 4, 5] and "".join(data["wild_type"]) == wild
    assert data["n_single"] == 95 and any("1 multi-mutant" in n for n in payload["notes"])
    grid = data["columns"][0]["grid"]
    k = AMINO_ACIDS.index("W")
    row = table.index[table["mutant"] == "T3W"][0]
    assert grid[k][2] == pytest.approx(table.loc[row, "score"], rel=1e-3)
    assert grid[AMINO_ACIDS.index("T")][2] is None  # the wild-type cell has no score
    # most changed: the properties with the highest percentile rank of this variant's change
    ranks = table[["change_sasa_mean", "change_psi", "change_corr"]].rank(pct=True).loc[row]
    expected = [c.removeprefix("change_") for c in ranks.sort_values(ascending=False, kind="stable").index]
    assert [data["top"]["properties"][i] for i in data["top"]["index"][k][2]] == expected


def test_report_of_a_score_folder_of_several_proteins(tmp_path) -> None:
    run = tmp_path / "scans"
    (run / "proteins").mkdir(parents=True)
    rows = [{"id": pid, "mutant": f"{wt}{i + 1}{m}", "n_mutations": 1, "score": -0.1 * i, "change_psi": 0.1 * i}
            for pid, wild in (("a", "MKT"), ("b", "GSW")) for i, wt in enumerate(wild) for m in "AC" if m != wt]
    pd.DataFrame(rows).to_csv(run / "scores.csv", index=False)
    (run / "proteins" / "a.json").write_text(json.dumps({"id": "a", "model": "9" * 64, "esm2": None}))
    assert main(["report", str(run), "-q"]) == 0
    html = (run / "report.html").read_text(encoding="utf-8")
    table = page_table(html)
    assert [r["id"] for r in table["rows"]] == ["a", "b"] and table["columns"][0] == "variants"
    assert [r["values"][0] for r in table["rows"]] == [6, 6]  # two substitutions at each of three positions
    assert "9" * 64 in html
    payloads = page_payloads(html)
    assert [p["panels"][0]["kind"] for p in payloads] == ["saturation", "saturation"]
    assert payloads[1]["panels"][0]["data"]["wild_type"] == ["G", "S", "W"]


def test_units_cover_the_schema_and_file_names_match_the_runs() -> None:
    from seqdance.inference.runs import RESIDUE_CSV
    from seqdance.report import sources
    from seqdance.scoring.proteins import COMBINED_CSV, PROTEINS_DIR

    assert check_units() == [] and set(PROPERTY_NAMES) <= set(UNITS)
    assert (sources.RESIDUE_CSV, sources.COMBINED_CSV, sources.PROTEINS_DIR) == (RESIDUE_CSV, COMBINED_CSV,
                                                                                 PROTEINS_DIR)
    assert len(SS_CLASSES) == 8


def test_bad_report_inputs_are_one_line_errors(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path / "nothing"), "-o", str(tmp_path / "r.html")]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "not a seqdance run" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    assert main(["report", str(tmp_path / "table.csv")]) == 1
    assert "no 'mutant' column" in capsys.readouterr().err
    run = write_run(tmp_path / "run", [synthetic_prediction("p0", 20, np.random.default_rng(3))])
    assert main(["report", str(run), "--ids", "nope", "-q"]) == 1
    assert "no protein 'nope'" in capsys.readouterr().err
    assert not (run / "report.html").exists()


# --- the commands' --report, and the page in a real browser -------------------------------------------------------

RECORDS = {"p1": "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "cplx": "MKVLAGGSWH:GGSWHMKVLA", "p3": "ACDEFGHIKLMNPQRSTVWY"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A predict run and a saturation scan of a tiny local model, each with --report."""
    folder = tmp_path_factory.mktemp("report-runs")
    model = write_released_checkpoint(folder / "tiny", "tiny", "esmdance", seed=5)
    fasta = folder / "in.fasta"
    fasta.write_text("".join(f">{k}\n{v}\n" for k, v in RECORDS.items()))
    assert main(["predict", str(fasta), "-o", str(folder / "pred"), "--model", str(model), "-q", "--report"]) == 0
    assert main(["score", "--model", str(model), "--sequence", RECORDS["p3"][:12], "--saturation",
                 "-o", str(folder / "scan.csv"), "--properties", "sasa_mean", "psi", "rmsf_nor", "-q",
                 "--report"]) == 0
    return folder


def test_report_flags_write_the_pages(runs) -> None:
    from seqdance.inference.fingerprint import module_fingerprint
    from seqdance.model import load_model

    html = (runs / "pred" / "report.html").read_text(encoding="utf-8")
    assert [r["id"] for r in page_table(html)["rows"]] == list(RECORDS)
    assert "seqdance predict" in html and "--report" in html  # the command that made it
    scan = (runs / "scan.html").read_text(encoding="utf-8")
    assert module_fingerprint(load_model(str(runs / "tiny"))) in scan  # recorded by score --report
    kinds = [p["kind"] for p in page_payloads(scan)[0]["panels"]]
    assert kinds == ["saturation"]


@pytest.mark.browser
def test_report_in_a_browser(runs, browser, tmp_path) -> None:
    from selenium.webdriver.common.by import By

    console_errors(browser)  # drain what earlier tests of this browser session left in its log
    browser.get((runs / "pred" / "report.html").as_uri())
    wait_for(browser, "return document.body.dataset.ready === 'true'")
    assert console_errors(browser) == []
    sections = browser.find_elements(By.CSS_SELECTOR, "#protein section.panel")
    assert [s.get_attribute("data-kind") for s in sections] == ["profiles", "pairs"]
    for section in sections:
        assert section.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"), section.get_attribute("data-kind")
    assert len(browser.find_elements(By.CSS_SELECTOR, ".pair-plot.js-plotly-plot")) == 3
    # hovering one residue shows the value predict wrote for it
    written = load_prediction(runs / "pred" / "p1.npz")
    k = 7
    text = hover_point(browser, browser.find_element(By.CSS_SELECTOR, ".profiles-plot"), 0, k)
    assert f"{RECORDS['p1'][k]}{k + 1}" in text and "rmsf_nor" in text and UNITS["rmsf_nor"] in text
    shown = float(re.search(r"rmsf_nor = ([-0-9.e]+)", text).group(1))
    assert shown == float(f"{written['rmsf_nor'][k]:.4g}")
    screenshot(browser, tmp_path / "report.png", "report.png")
    # the table: search, sort, select another protein (a complex: its residues are named by chain)
    search = browser.find_element(By.ID, "protein-search")
    search.send_keys("cpl")
    rows = browser.find_elements(By.CSS_SELECTOR, "#protein-table tbody tr")
    assert [r.get_attribute("data-id") for r in rows] == ["cplx"]
    rows[0].click()
    wait_for(browser, "return document.querySelector('#protein h2').textContent.startsWith('cplx')")
    text = hover_point(browser, browser.find_element(By.CSS_SELECTOR, ".profiles-plot"), 0, 12)
    assert "S3 (chain 2)" in text  # residue 13 of MKVLAGGSWH:GGSWHMKVLA
    search.clear()
    search.send_keys(" ")
    browser.find_element(By.XPATH, "//th[text()='residues']").click()
    ids = [r.get_attribute("data-id") for r in browser.find_elements(By.CSS_SELECTOR, "#protein-table tbody tr")]
    assert ids == ["cplx", "p3", "p1"]  # 20, 20, 33 residues (stable among equals)
    assert console_errors(browser) == []

    # the saturation heat map of a score run: hover gives mutant, score and the most changed properties
    browser.get((runs / "scan.html").as_uri())
    wait_for(browser, "return document.body.dataset.ready === 'true'")
    table = pd.read_csv(runs / "scan.csv")
    text = hover_cell(browser, browser.find_element(By.CSS_SELECTOR, ".saturation-plot"),
                      AMINO_ACIDS.index("W"), 2)
    row = table[table["mutant"] == f"{RECORDS['p3'][2]}3W"].iloc[0]
    assert f"{RECORDS['p3'][2]}3W" in text and "most changed:" in text
    assert float(re.search(r"score = ([-0-9.e]+)", text).group(1)) == pytest.approx(row["score"], rel=1e-3)
    assert console_errors(browser) == []
