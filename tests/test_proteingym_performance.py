"""ProteinGym's metrics, aggregation and tables against ProteinGym's own code (the ``proteingym`` package, 1.3):
per-assay metrics against its functions (≤ 1e-9), every written table against running its
``performance_DMS_benchmarks.py`` main() on the same score files (byte for byte, standard errors included with a
shared seed), on ProteinGym-layout copies of the shared dev assays."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from _proteingym import dev_reference, load_script, mutated, run_main, synthetic_scores, write_proteingym_assay
from conftest import require

from seqdance.errors import InputError
from seqdance.extras import is_installed
from seqdance.scoring import proteingym_performance as perf
from seqdance.scoring.proteingym_package import performance_module, version

pytestmark = pytest.mark.skipif(not (is_installed("proteingym") and is_installed("sklearn")),
                                reason="the proteingym extra (proteingym, scikit-learn) is not installed")

COLUMNS = ["good", "random", "tied"]
SAMPLES = 100  # bootstrap resamples (ProteinGym: 10,000); equal streams need only equal seeds
ROWS = 400  # variants kept per assay (a seeded sample of the larger ones), to keep the files small


@pytest.fixture(scope="module")
def dev_scores(shared_data, tmp_path_factory):
    """The 38 dev assays with a v1 DMS_id in ProteinGym's layout (at most ROWS variants each), their reference rows
    and merged score files."""
    require(shared_data / "proteingym_single_dev" / "mutant")
    root = tmp_path_factory.mktemp("pg")
    reference = dev_reference(shared_data)
    assert len(reference) == 38
    for k, row in reference.iterrows():
        source = pd.read_csv(shared_data / "proteingym_single_dev" / "mutant" / f"{row['DMS_id']}.csv")
        if len(source) > ROWS:
            source = source.sample(ROWS, random_state=k).sort_index()
        path = write_proteingym_assay(root / "DMS", row, source)
        (root / "scores").mkdir(exist_ok=True)
        synthetic_scores(pd.read_csv(path), seed=k).to_csv(root / "scores" / f"{row['DMS_id']}.csv", index=False)
    reference.to_csv(root / "reference.csv", index=False)
    config = {"model_list_zero_shot_substitutions_DMS": {
        c: {"input_score_name": c, "location": c, "directionality": 1, "key": "mutant",
            "model_type": "Single sequence"} for c in COLUMNS}}
    (root / "config.json").write_text(json.dumps(config))
    return root, reference


def _ours(root, reference, *, by_depth=False, seed=7, mutation_type="substitutions", lookup=None):
    results = []
    for _, row in reference.iterrows():
        scores = pd.read_csv(root / "scores" / f"{row['DMS_id']}.csv")
        info = perf.AssayInfo(row["DMS_id"], row["UniProt_ID"], row["coarse_selection_type"],
                              perf.capitalise_category(row["MSA_Neff_L_category"]), row["taxon"])
        found = perf.assay_performance(scores, COLUMNS, by_depth=by_depth, where=row["DMS_id"])
        results.append(perf.AssayPerformance(info, len(scores), found))
    tables = perf.performance_tables(results, reference if lookup is None else lookup, COLUMNS,
                                     model_types=dict.fromkeys(COLUMNS, "Single sequence"),
                                     mutation_type=mutation_type, by_depth=by_depth, bootstrap_samples=SAMPLES,
                                     seed=seed)
    perf.write_performance(tables, root / "ours")
    return results


def _theirs(root, *, extra=(), seed=7):
    script = load_script("performance_DMS_benchmarks", root / "script")
    run_main(script, ["--input_scoring_files_folder", str(root / "scores"), "--output_performance_file_folder",
                      str(root / "theirs"), "--DMS_reference_file_path", str(root / "reference.csv"),
                      "--DMS_data_folder", str(root / "DMS"), "--config_file", str(root / "config.json"), *extra],
             bootstrap_samples=SAMPLES, seed=seed)


def _same_csv_files(root) -> list[str]:
    theirs = sorted(p.relative_to(root / "theirs") for p in (root / "theirs").rglob("*.csv"))
    ours = sorted(p.relative_to(root / "ours") for p in (root / "ours").rglob("*.csv"))
    assert ours == theirs
    for name in theirs:
        assert (root / "ours" / name).read_bytes() == (root / "theirs" / name).read_bytes(), name
    return [str(n) for n in theirs]


def test_proteingym_is_used_from_its_file_without_its_package_init():
    with pytest.raises(ImportError):
        import proteingym  # noqa: F401  (1.3's __init__ imports a module the wheel does not ship)
    filters = list(warnings.filters)
    module = performance_module()
    assert warnings.filters == filters  # its module-level simplefilter did not leak
    assert all(callable(getattr(module, n)) for n in ("calc_ndcg", "calc_toprecall", "standardization"))
    assert version() == "1.3"


def test_per_assay_metrics_equal_proteingym_functions(dev_scores):
    from scipy.stats import spearmanr
    from sklearn.metrics import matthews_corrcoef, roc_auc_score

    root, reference = dev_scores
    pg = performance_module()
    worst, checked = 0.0, 0
    for _, row in reference.iterrows():
        scores = pd.read_csv(root / "scores" / f"{row['DMS_id']}.csv")
        ours = perf.assay_performance(scores, COLUMNS)
        for column in COLUMNS:
            y, s, b = scores["DMS_score"], scores[column], scores["DMS_score_bin"]
            expected = {"Spearman": spearmanr(y, s)[0], "NDCG": pg.calc_ndcg(y, s),
                        "Top_recall": pg.calc_toprecall(y, s),
                        "MCC": matthews_corrcoef(b, (s >= s.median()).astype(int))}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected["AUC"] = roc_auc_score(b, s) if b.nunique() > 1 else np.nan
            for metric, value in expected.items():
                got = ours[metric][column]
                assert np.isnan(got) == np.isnan(value), (row["DMS_id"], column, metric)
                if not np.isnan(value):
                    worst = max(worst, abs(got - value))
                    checked += 1
    assert checked >= 38 * 3 * 4 and worst <= 1e-9, worst


def test_tables_equal_the_scripts_byte_for_byte(dev_scores):
    root, reference = dev_scores
    results = _ours(root, reference)
    _theirs(root)
    names = _same_csv_files(root)
    assert len(names) == 20  # 5 metrics x DMS level, UniProt level, selection-type level, Summary
    dms = pd.read_csv(root / "ours" / "Spearman" / "DMS_substitutions_Spearman_DMS_level.csv", index_col="DMS ID")
    assert list(dms.columns) == [*COLUMNS, *perf.INFO_COLUMNS] and list(dms.index) == list(reference["DMS_id"])
    unrounded = {r.info.dms_id: r.metrics["Spearman"]["good"] for r in results}
    np.testing.assert_array_equal(dms["good"], [round(unrounded[d], 3) for d in dms.index])  # 3 decimals
    summary = pd.read_csv(root / "ours" / "Spearman" / "Summary_performance_DMS_substitutions_Spearman.csv")
    assert summary["Average_Spearman"].is_monotonic_decreasing and summary["Model_name"].iloc[-1] == "random"
    # the standard error is that of each score's difference to the best one: 0 for the best, > 0 for the others
    assert summary["Bootstrap_standard_error_Spearman"].iloc[0] == 0.0
    assert (summary["Bootstrap_standard_error_Spearman"].iloc[1:] > 0).all()
    # the average is the mean over selection types of the mean over UniProt IDs of the rounded per-assay values
    per_uniprot = dms.groupby(["UniProt_ID", "Selection Type"])["random"].mean()
    expected = per_uniprot.groupby("Selection Type").mean().mean()
    assert summary.set_index("Model_name").loc["random", "Average_Spearman"] == round(expected, 3)


def test_standard_errors_follow_the_seed(dev_scores):
    root, reference = dev_scores
    _ours(root, reference, seed=1)
    first = pd.read_csv(root / "ours" / "MCC" / "Summary_performance_DMS_substitutions_MCC.csv")
    _ours(root, reference, seed=2)
    second = pd.read_csv(root / "ours" / "MCC" / "Summary_performance_DMS_substitutions_MCC.csv")
    assert not first["Bootstrap_standard_error_MCC"].equals(second["Bootstrap_standard_error_MCC"])
    assert first["Average_MCC"].equals(second["Average_MCC"])


@pytest.mark.slow
def test_performance_by_depth_on_multi_mutants(dev_scores, tmp_path):
    root, reference = dev_scores
    work = tmp_path / "depth"
    for sub in ("DMS", "scores"):
        (work / sub).mkdir(parents=True)
    rng = np.random.default_rng(5)
    for _, row in reference.iterrows():
        scores = pd.read_csv(root / "scores" / f"{row['DMS_id']}.csv")
        if row["DMS_id"] == "BLAT_ECOLX_Jacquier_2013":  # add 2- to 7-site mutants of its singles
            singles = scores["mutant"].tolist()
            multi = set()
            for depth in (2, 3, 4, 5, 7):
                while sum(m.count(":") + 1 == depth for m in multi) < 30:
                    picks = sorted({singles[i][:-1]: singles[i] for i in rng.choice(len(singles), depth)}.values(),
                                   key=lambda m: int(m[1:-1]))
                    if len(picks) == depth:
                        multi.add(":".join(picks))
            extra = pd.DataFrame({"mutant": sorted(multi)})
            extra["mutated_sequence"] = [mutated(row["target_seq"], m) for m in extra["mutant"]]
            extra["DMS_score"] = rng.normal(size=len(extra))
            extra["DMS_score_bin"] = (extra["DMS_score"] >= row["DMS_binarization_cutoff"]).astype(int)
            scores = pd.concat([scores, synthetic_scores(extra, seed=99)], ignore_index=True)
        scores.to_csv(work / "scores" / f"{row['DMS_id']}.csv", index=False)
        scores[["mutant", "mutated_sequence", "DMS_score", "DMS_score_bin"]].to_csv(work / "DMS" / row["DMS_filename"],
                                                                                 index=False)
    for name in ("reference.csv", "config.json"):
        (work / name).write_bytes((root / name).read_bytes())
    _ours(work, reference, by_depth=True)
    _theirs(work, extra=["--performance_by_depth"])
    _same_csv_files(work)
    summary = pd.read_csv(work / "ours" / "Spearman" / "Summary_performance_DMS_substitutions_Spearman.csv")
    depth = summary[[f"Depth_{d}" for d in perf.DEPTHS]]
    assert depth.notna().all().all()  # singles from every assay, 2..5+ from the one with multi-mutants
    assert summary.set_index("Model_name").loc["good", "Depth_1"] > 0.3


def test_indel_tables_equal_the_scripts(shared_data, tmp_path):
    """ProteinGym's indel mode (DMS_indels.csv rows, files keyed by mutated_sequence) on assays built from dev
    proteins: deletions and insertions of their wild types with random measurements."""
    indels = pd.read_csv(require(shared_data / "proteingym_reference" / "DMS_indels.csv"))
    rng = np.random.default_rng(3)
    rows = indels.groupby("coarse_selection_type").head(2).reset_index(drop=True)
    for sub in ("DMS", "scores"):
        (tmp_path / sub).mkdir()
    for k, row in rows.iterrows():
        wt = row["target_seq"]
        sequences = sorted({wt[:i] + wt[i + 1 + (i % 3):] for i in range(0, len(wt) - 4, 2)}
                           | {wt[:i] + "G" * (1 + i % 2) + wt[i:] for i in range(1, len(wt), 3)})
        frame = pd.DataFrame({"mutated_sequence": sequences, "DMS_score": rng.normal(size=len(sequences))})
        frame["DMS_score_bin"] = (frame["DMS_score"] >= row["DMS_binarization_cutoff"]).astype(int)
        frame.to_csv(tmp_path / "DMS" / row["DMS_filename"], index=False)
        synthetic_scores(frame, seed=k).to_csv(tmp_path / "scores" / f"{row['DMS_id']}.csv", index=False)
    rows.to_csv(tmp_path / "reference.csv", index=False)
    config = {"model_list_zero_shot_indels_DMS": {
        c: {"input_score_name": c, "location": c, "directionality": 1, "key": "mutated_sequence",
            "model_type": "Single sequence"} for c in COLUMNS}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    _ours(tmp_path, rows, mutation_type="indels")
    _theirs(tmp_path, extra=["--indel_mode"])
    names = _same_csv_files(tmp_path)
    assert all("DMS_indels_" in n for n in names) and len(names) == 10  # DMS level + Summary per metric


def test_unscored_mutants_and_a_missing_measurement_are_named():
    scores = pd.DataFrame({"mutant": ["A1G", "A1L", "K2A", "K2G"], "DMS_score": [0.1, 0.5, -0.2, 0.3],
                           "model": [1.0, np.nan, np.nan, 0.2]})
    with pytest.raises(InputError, match=r"A: column 'model' has no score \(NaN or not a number\) for 2 of 4 mutants; "
                       "ProteinGym requires every mutant scored"):
        perf.assay_performance(scores, ["model"], where="A")
    with pytest.raises(InputError, match="B: no DMS_score column"):
        perf.assay_performance(scores.drop(columns="DMS_score"), ["model"], where="B")
