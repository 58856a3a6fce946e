"""``benchmark-dms --reference-file`` on ProteinGym's own files and ``compare-dms``, end to end with tiny random
models: ProteinGym-layout copies of shared dev assays (cut to a few variants each, their reference rows from
DMS_substitutions.csv with the counts of the copies), the submission kit read back by ProteinGym's own merge and
performance scripts, mutation depth, indel assays, training-set identity and bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _checkpoints import write_esm2_mlm_checkpoint, write_released_checkpoint
from _proteingym import dev_reference, load_script, mutated, run_main, write_proteingym_assay
from conftest import require
from scipy.stats import spearmanr, wilcoxon

from seqdance.cli.main import main
from seqdance.errors import InputError
from seqdance.extras import is_installed
from seqdance.model.loading import load_model
from seqdance.scoring.dms import find_assays, load_indel_variants, score_indel_variants
from seqdance.scoring.mutations import sequence_variant
from seqdance.scoring.proteingym_export import check_export, entry_name
from seqdance.scoring.proteingym_reference import read_reference
from seqdance.scoring.scorer import score_variants

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not (is_installed("proteingym") and is_installed("sklearn")),
                       reason="the proteingym extra (proteingym, scikit-learn) is not installed"),
]

#: Small dev assays of every taxon and MSA depth (ProteinGym's script needs them all) and two selection types; the
#: last one's copy has no DMS_score_bin column.
ASSAYS = ["IF1_ECOLI_Kelsic_2016", "TAT_HV1BR_Fernandes_2016", "SYUA_HUMAN_Newberry_2020", "CCDB_ECOLI_Adkar_2012",
          "GFP_AEQVI_Sarkisyan_2016"]
ABSENT = "BLAT_ECOLX_Deng_2012"  # a DMS_id of the reference file with no assay file
N = 30  # variants per copy
BOOTSTRAP = ["--bootstrap-samples", "30", "--bootstrap-seed", "3"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return write_released_checkpoint(root / "dyn", seed=1), write_esm2_mlm_checkpoint(root / "esm", seed=2)


def _copies(shared_data, root, names, n=N):
    """ProteinGym-layout copies of dev assays (n variants each) and their reference rows (counts of the copies)."""
    reference = dev_reference(shared_data).set_index("DMS_id")
    rows = []
    for k, name in enumerate(names):
        row = reference.loc[name].copy()
        row["DMS_id"] = name
        source = pd.read_csv(shared_data / "proteingym_single_dev" / "mutant" / f"{name}.csv")
        source = source.sample(n, random_state=k).sort_index()
        write_proteingym_assay(root, row, source, with_bin=name != ASSAYS[-1])
        row["DMS_total_number_mutants"] = n
        rows.append(row)
    return pd.DataFrame(rows).reset_index(drop=True)


@pytest.fixture(scope="module")
def benchmark(shared_data, models, tmp_path_factory):
    """One run on the copies, a reduced-layout assay without reference row, a missing DMS_id, a training FASTA."""
    require(shared_data / "proteingym_single_dev" / "mutant")
    root = tmp_path_factory.mktemp("gym")
    assays = root / "DMS"
    rows = _copies(shared_data, assays, ASSAYS)
    full = pd.read_csv(shared_data / "proteingym_reference" / "DMS_substitutions.csv")
    reference = pd.concat([rows, full[full["DMS_id"] == ABSENT]], ignore_index=True)
    reference.to_csv(root / "DMS_substitutions.csv", index=False)
    wt = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"  # the current reduced layout keeps working beside them
    extra = [f"{wt[i]}{i + 1}{a}" for i in range(0, 24, 2) for a in "AG" if a != wt[i]]
    pd.DataFrame({"mutant": extra, "score": np.linspace(-1, 1, len(extra))}).to_csv(assays / "extra_assay.csv",
                                                                                    index=False)
    (assays / "extra_assay.fasta").write_text(f">extra_assay\n{wt}\n")
    if1 = rows.loc[0, "target_seq"]
    training = root / "training.fasta"
    training.write_text(f">if1_copy\n{if1}\n>unrelated\n{'GSW' * 40}\n")
    dyn, esm = models
    out, kit = root / "results", root / "kit"
    args = ["benchmark-dms", "--model", str(dyn), "--esm2", str(esm), "--assays", str(assays), "-o", str(out),
            "--reference-file", str(root / "DMS_substitutions.csv"), "--properties", "sasa_mean", "psi",
            "--proteingym-export", str(kit), "--export-name", "TinyDance", "--training-store", str(training),
            "--window", "200", "-q", *BOOTSTRAP]
    return {"root": root, "assays": assays, "rows": rows, "out": out, "kit": kit, "args": args}


@pytest.mark.slow
def test_reference_file_run_tables_export_and_resume(benchmark, capsys):
    root, out, kit, rows = benchmark["root"], benchmark["out"], benchmark["kit"], benchmark["rows"]
    assert main(benchmark["args"]) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    # a DMS_id without assay file: one line listing it, the rest run, and missing_assays.csv
    missing = [line for line in err if "no assay file" in line]
    assert len(missing) == 1 and ABSENT in missing[0]
    assert pd.read_csv(out / "missing_assays.csv")["DMS_id"].tolist() == [ABSENT]
    # DMS_score_bin derived from the cutoff, said once; the reduced-layout assay runs outside ProteinGym's tables
    assert sum("derived from the reference file's DMS_binarization_cutoff" in line for line in err) == 1
    assert any("left out of ProteinGym's tables: extra_assay" in line for line in err)
    assert sorted(pd.read_csv(out / "per_assay.csv")["assay"].unique()) == sorted([*ASSAYS, "extra_assay"])
    calm = pd.read_csv(out / "proteingym" / f"{ASSAYS[-1]}.csv")
    cutoff = rows.set_index("DMS_id").loc[ASSAYS[-1], "DMS_binarization_cutoff"]
    np.testing.assert_array_equal(calm["DMS_score_bin"], (calm["DMS_score"] >= cutoff).astype(int))
    # ProteinGym's tables: where and how its script writes them, per-assay values from the score files
    dms = pd.read_csv(out / "proteingym" / "Spearman" / "DMS_substitutions_Spearman_DMS_level.csv", index_col=0)
    assert list(dms.index) == ASSAYS  # reference-file order
    assert list(dms.columns)[-5:] == ["number_mutants", "Selection Type", "UniProt_ID", "MSA_Neff_L_category", "Taxon"]
    for name in ASSAYS:
        scores = pd.read_csv(out / "proteingym" / f"{name}.csv")
        for column in ("seqdance_combined", "esm2_masked_marginal"):
            assert dms.loc[name, column] == round(spearmanr(scores["DMS_score"], scores[column])[0], 3)
    summary = pd.read_csv(out / "proteingym" / "NDCG" / "Summary_performance_DMS_substitutions_NDCG.csv")
    assert set(summary["Model_name"]) == {"seqdance_combined", "seqdance_sasa_mean", "seqdance_psi",
                                          "esm2_masked_marginal", "esm2_wt_marginal"}
    # training-set identity: IF1's wild type is in the training FASTA
    identity = pd.read_csv(out / "training_identity.csv").set_index("assay")
    assert identity.loc[ASSAYS[0], "train_identity"] == 1.0 and identity.loc[ASSAYS[0], "train_target"] == "if1_copy"
    assert identity.drop(index=ASSAYS[0])["train_identity"].isna().all()
    per_assay = pd.read_csv(out / "per_assay.csv")
    assert (per_assay.loc[per_assay["assay"] == ASSAYS[0], "train_identity"] == 1.0).all()
    # the submission kit, read back as ProteinGym's scripts read it
    assert "export check: OK (5 assays" in captured.out
    config = json.loads((kit / "config.json").read_text())["model_list_zero_shot_substitutions_DMS"]
    assert config["TinyDance"] == {"input_score_name": "seqdance_combined", "location": "TinyDance",
                                   "directionality": 1, "key": "mutant", "model_type": "Single sequence"}
    readme = (kit / "README.md").read_text()
    assert "model fingerprint" in readme and "seqdance version" in readme and "--proteingym-export" in readme
    reference = read_reference(root / "DMS_substitutions.csv")
    files = {name: benchmark["assays"] / f"{name}.csv" for name in ASSAYS}
    check = check_export(kit, reference, files)
    assert check.ok and sorted(check.merged) == sorted(ASSAYS)
    merge = load_script("merge", root / "pg_merge")
    run_main(merge, ["--DMS_assays_location", str(benchmark["assays"]), "--model_scores_location", str(kit),
                     "--merged_scores_dir", "merged", "--DMS_reference_file", str(root / "DMS_substitutions.csv"),
                     "--config_file", str(kit / "config.json")])
    for name in ASSAYS:  # the check's merged tables are merge.py's files
        theirs = pd.read_csv(kit / "merged" / f"{name}.csv")
        pd.testing.assert_frame_equal(check.merged[name].reset_index(drop=True), theirs, check_dtype=False)
    perf = load_script("performance_DMS_benchmarks", root / "pg_perf")
    run_main(perf, ["--input_scoring_files_folder", str(kit / "merged"), "--output_performance_file_folder",
                    str(root / "pg_tables"), "--DMS_reference_file_path", str(root / "DMS_substitutions.csv"),
                    "--DMS_data_folder", str(benchmark["assays"]), "--config_file", str(kit / "config.json")],
             bootstrap_samples=30, seed=3)
    names = {entry_name("TinyDance", c): c for c in summary["Model_name"]}
    for metric in ("Spearman", "AUC", "MCC", "NDCG", "Top_recall"):
        stem = f"DMS_substitutions_{metric}"
        theirs = pd.read_csv(root / "pg_tables" / metric / f"{stem}_DMS_level.csv", index_col=0).rename(columns=names)
        ours = pd.read_csv(out / "proteingym" / metric / f"{stem}_DMS_level.csv", index_col=0)
        if metric in ("AUC", "MCC"):  # ProteinGym reads DMS_score_bin from the assay file, which the last copy lacks
            assert theirs.loc[ASSAYS[-1], "seqdance_combined"] != theirs.loc[ASSAYS[-1], "seqdance_combined"]
            assert np.isfinite(ours.loc[ASSAYS[-1], "seqdance_combined"])  # seqdance derived it from the cutoff
            ours, theirs = ours.drop(index=ASSAYS[-1]), theirs.drop(index=ASSAYS[-1])
        pd.testing.assert_frame_equal(ours, theirs[ours.columns])
        if metric in ("AUC", "MCC"):
            continue
        theirs = pd.read_csv(root / "pg_tables" / metric / f"Summary_performance_{stem}.csv")
        theirs["Model_name"] = theirs["Model_name"].map(names)
        pd.testing.assert_frame_equal(pd.read_csv(out / "proteingym" / metric / f"Summary_performance_{stem}.csv"),
                                      theirs)
    # resuming: everything checks out by content, nothing is recomputed
    mtime = (out / "scores" / f"{ASSAYS[0]}.csv").stat().st_mtime_ns
    assert main(benchmark["args"]) == 0
    assert "6 of 6 assays evaluated (6 from an earlier run)" in capsys.readouterr().out
    assert (out / "scores" / f"{ASSAYS[0]}.csv").stat().st_mtime_ns == mtime


def test_shards_write_the_same_proteingym_tables(benchmark, tmp_path, capsys):
    """Two shards of the run (same assays, models and settings) merge into the single process's tables."""
    out = benchmark["out"]
    if not (out / "per_assay.csv").is_file():
        assert main(benchmark["args"]) == 0
    args = benchmark["args"]
    args = args[: args.index("--proteingym-export")] + args[args.index("--window"):]
    args[args.index("-o") + 1] = str(tmp_path / "sharded")
    assert main([*args, "--shard", "0/2"]) == 0
    assert not (tmp_path / "sharded" / "proteingym" / "Spearman").exists()  # only the last shard merges
    assert main([*args, "--shard", "1/2"]) == 0
    capsys.readouterr()
    single = sorted(p.relative_to(out) for p in (out / "proteingym").glob("*/*.csv"))
    assert len(single) == 20
    for name in single:
        assert (tmp_path / "sharded" / name).read_bytes() == (out / name).read_bytes(), name


def test_compare_dms(benchmark, tmp_path, capsys):
    out = benchmark["out"]
    if not (out / "per_assay.csv").is_file():
        assert main(benchmark["args"]) == 0
    other = tmp_path / "other_model"
    other.mkdir()
    rng = np.random.default_rng(1)
    for name in ASSAYS:
        table = pd.read_csv(out / "proteingym" / f"{name}.csv")
        pd.DataFrame({"mutant": table["mutant"], "DMS_score": table["DMS_score"],
                      "Other_score": table["DMS_score"] + rng.normal(0, 1, len(table))}
                     ).sample(frac=1.0, random_state=0).to_csv(other / f"{name}.csv", index=False)  # merged on mutant
    groups = tmp_path / "groups.csv"
    pd.DataFrame({"DMS_id": ASSAYS[:2], "designed": ["yes", "no"]}).to_csv(groups, index=False)
    result = tmp_path / "compare"
    args = ["compare-dms", "--scores", str(out / "proteingym"), "--reference-file",
            str(benchmark["root"] / "DMS_substitutions.csv"), "--model", "ESMDance=seqdance_combined",
            "--model", "ESM2=esm2_masked_marginal", "--model", f"Other={other}:Other_score",
            "--combine", "ESMDance+ESM2=ESMDance+ESM2", "--baseline", "ESM2", "--group-column", "designed",
            "--groups", str(groups), "-o", str(result), "-q"]
    assert main([*args, "--training-store", str(benchmark["root"] / "training.fasta"),
                 "--max-train-identity", "0.9"]) == 0
    captured = capsys.readouterr()
    assert "1 assay left out: identity to the training set above 0.9 (IF1_ECOLI_Kelsic_2016)" in captured.err
    per_assay = pd.read_csv(result / "per_assay.csv").set_index("DMS_id")
    assert not per_assay.loc[ASSAYS[0], "included"] and per_assay["included"].sum() == 4
    for name in ASSAYS:
        scores = pd.read_csv(out / "proteingym" / f"{name}.csv")
        esmdance = spearmanr(scores["DMS_score"], scores["seqdance_combined"])[0]
        esm2 = spearmanr(scores["DMS_score"], scores["esm2_masked_marginal"])[0]
        assert per_assay.loc[name, "ESMDance - ESM2"] == pytest.approx(esmdance - esm2, abs=1e-12)
    assert per_assay.loc[ASSAYS[2], "designed"] == "unknown" and per_assay.loc[ASSAYS[0], "designed"] == "yes"
    diffs = pd.read_csv(result / "paired_differences.csv")
    overall = diffs[(diffs["grouping"] == "all") & (diffs["comparison"] == "Other - ESM2")].iloc[0]
    kept = per_assay[per_assay["included"]]["Other - ESM2"].to_numpy()
    assert overall["n_assays"] == 4 and overall["wilcoxon_p"] == pytest.approx(wilcoxon(kept).pvalue)
    assert overall["mean_difference"] == pytest.approx(kept.mean())
    assert overall["se"] == pytest.approx(kept.std(ddof=1) / 2)
    assert {"all", "Taxon", "Selection Type", "MSA_Neff_L_category", "designed"} == set(diffs["grouping"])
    means = pd.read_csv(result / "category_means.csv")
    assert set(means["model"]) == {"ESMDance", "ESM2", "Other", "ESMDance+ESM2"}
    assert (result / "comparison.png").stat().st_size > 20_000
    # a model that leaves mutants unscored: one line naming the count
    first = other / f"{ASSAYS[1]}.csv"
    pd.read_csv(first).iloc[3:].to_csv(first, index=False)
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"Other has no score for 3 of the {N} mutants of {ASSAYS[1]}" in err[0]
    assert "ProteinGym requires every mutant scored" in err[0]


def test_performance_by_depth(shared_data, models, tmp_path, capsys):
    require(shared_data / "proteingym_single_dev" / "mutant")
    row = dev_reference(shared_data).set_index("DMS_id").loc["IF1_ECOLI_Kelsic_2016"]
    wt = row["target_seq"]
    rng = np.random.default_rng(0)
    mutants = []
    for depth, count in ((1, 12), (2, 6), (3, 5), (4, 5), (5, 4), (6, 3)):
        while sum(m.count(":") + 1 == depth for m in mutants) < count:
            sites = sorted(rng.choice(np.arange(1, len(wt)), depth, replace=False))
            mutant = ":".join(f"{wt[i]}{i + 1}{'A' if wt[i] != 'A' else 'G'}" for i in sites)
            if mutant not in mutants:
                mutants.append(mutant)
    table = pd.DataFrame({"mutant": mutants, "mutated_sequence": [mutated(wt, m) for m in mutants],
                          "DMS_score": rng.normal(size=len(mutants))})
    table["DMS_score_bin"] = (table["DMS_score"] >= 0).astype(int)
    (tmp_path / "DMS").mkdir()
    table.to_csv(tmp_path / "DMS" / row["DMS_filename"], index=False)
    reference = row.to_frame().T.rename_axis("DMS_id").reset_index()
    reference.to_csv(tmp_path / "ref.csv", index=False)
    dyn, _ = models
    out = tmp_path / "out"
    assert main(["benchmark-dms", "--model", str(dyn), "--assays", str(tmp_path / "DMS"), "-o", str(out),
                 "--reference-file", str(tmp_path / "ref.csv"), "--properties", "sasa_mean", "--performance-by-depth",
                 "-q", *BOOTSTRAP]) == 0
    summary = pd.read_csv(out / "proteingym" / "Spearman" / "Summary_performance_DMS_substitutions_Spearman.csv")
    depth = summary.set_index("Model_name")[["Depth_1", "Depth_2", "Depth_3", "Depth_4", "Depth_5+"]]
    assert depth.notna().all().all()
    scores = pd.read_csv(out / "proteingym" / "IF1_ECOLI_Kelsic_2016.csv")
    doubles = scores[scores["mutant"].str.count(":") == 1]
    expected = round(spearmanr(doubles["DMS_score"], doubles["seqdance_combined"])[0], 3)
    assert depth.loc["seqdance_combined", "Depth_2"] == expected  # one assay: its own per-depth value
    dms = pd.read_csv(out / "proteingym" / "Spearman" / "DMS_substitutions_Spearman_DMS_level.csv")
    assert not any(c.endswith(("_1", "_2", "_5+")) for c in dms.columns)  # as the script: depth only in the Summary
    capsys.readouterr()


def test_bad_input_is_one_line_each(shared_data, models, tmp_path, capsys):
    require(shared_data / "proteingym_single_dev" / "mutant")
    names = ["IF1_ECOLI_Kelsic_2016", "TAT_HV1BR_Fernandes_2016", "SUMO1_HUMAN_Weile_2017"]
    rows = _copies(shared_data, tmp_path / "DMS", names, n=12)
    wrong = rows.loc[1, "target_seq"]
    first = pd.read_csv(tmp_path / "DMS" / rows.loc[1, "DMS_filename"])["mutant"].str[1:-1].astype(int).min()
    rows.loc[1, "target_seq"] = wrong[: first - 1] + ("W" if wrong[first - 1] != "W" else "Y") + wrong[first:]
    no_score = pd.read_csv(tmp_path / "DMS" / rows.loc[2, "DMS_filename"]).rename(columns={"DMS_score": "fitness"})
    no_score.to_csv(tmp_path / "DMS" / rows.loc[2, "DMS_filename"], index=False)
    rows.to_csv(tmp_path / "ref.csv", index=False)
    dyn, _ = models
    out = tmp_path / "out"
    assert main(["benchmark-dms", "--model", str(dyn), "--assays", str(tmp_path / "DMS"), "-o", str(out),
                 "--reference-file", str(tmp_path / "ref.csv"), "--properties", "sasa_mean", "-q", *BOOTSTRAP]) == 1
    capsys.readouterr()
    failures = pd.read_csv(out / "failures.csv").set_index("assay")["error"]
    assert sorted(failures.index) == sorted(names[1:])
    assert "\n" not in "".join(failures)
    # every mutated_sequence was made from the true wild type, so all 12 rows disagree with the altered one
    assert f"12 of 12 mutant(s) disagree with the target_seq of {names[1]} in ref.csv" in failures[names[1]]
    assert "no measured-fitness column (DMS_score or score)" in failures[names[2]]
    tables = out / "proteingym" / "Spearman" / "DMS_substitutions_Spearman_DMS_level.csv"
    assert pd.read_csv(tables, index_col=0).index.tolist() == [names[0]]  # the rest ran


def test_indel_assay_from_the_reference_file_is_scored(shared_data, models, tmp_path, capsys):
    """An indel assay built from a dev protein, in ProteinGym's DMS_indels layout: found by its reference row, read
    with mutated_sequence as the key, scored over aligned tokens (equal to score_variants on the same sequences),
    and written into ProteinGym's DMS_indels tables."""
    indels = pd.read_csv(require(shared_data / "proteingym_reference" / "DMS_indels.csv"))
    dev = dev_reference(shared_data).set_index("DMS_id").loc["IF1_ECOLI_Kelsic_2016"]
    wt = dev["target_seq"]
    row = indels.iloc[0].copy()
    row["DMS_id"], row["DMS_filename"], row["target_seq"] = "IF1_ECOLI_indels", "IF1_ECOLI_indels.csv", wt
    pd.DataFrame([row]).to_csv(tmp_path / "DMS_indels.csv", index=False)
    sequences = [wt[:5] + wt[6:], wt[:10] + "G" + wt[10:], wt[:20] + wt[23:], wt]
    (tmp_path / "DMS").mkdir()
    pd.DataFrame({"mutated_sequence": sequences, "DMS_score": [0.1, -0.5, -1.2, 0.3]}).to_csv(
        tmp_path / "DMS" / "IF1_ECOLI_indels.csv", index=False)
    found = find_assays(tmp_path / "DMS", reference_file=tmp_path / "DMS_indels.csv", mutation_type="indels")
    (assay,) = found.assays
    assert assay.name == "IF1_ECOLI_indels" and assay.mutation_type == "indels" and assay.info is not None
    wild_type, variants, frame, _ = load_indel_variants(assay, max_variants=None, seed=0)
    assert wild_type == wt and [s for _, s in variants] == sequences and [i for i, _ in variants] == sequences
    cutoff = float(row["DMS_binarization_cutoff"])
    np.testing.assert_array_equal(frame["DMS_score_bin"], [int(v >= cutoff) for v in (0.1, -0.5, -1.2, 0.3)])
    dyn, esm = models
    model = load_model(dyn)
    scored = score_indel_variants(wild_type, variants, model=model, properties=["rmsf_nor", "corr"])
    direct = score_variants(wild_type, [sequence_variant(i, s, wt) for i, s in variants], model=model,
                            properties=["rmsf_nor", "corr"])
    pd.testing.assert_frame_equal(scored, direct)
    assert scored.loc[3, "change_rmsf_nor"] == 0.0  # the wild type itself
    with pytest.raises(InputError, match=r"IF1_ECOLI_indels.csv: row 2: .*not a variant of the wild type"):
        score_indel_variants(wild_type, [variants[0], ("x", "W" * 40)], source=str(assay.table_path),
                             model=model)
    out = tmp_path / "o"
    assert main(["benchmark-dms", "--model", str(dyn), "--esm2", str(esm), "--esm2-pll", "--assays",
                 str(tmp_path / "DMS"), "-o", str(out), "--reference-file", str(tmp_path / "DMS_indels.csv"),
                 "--indels", "--bootstrap-samples", "20", "-q"]) == 0
    capsys.readouterr()
    gym = pd.read_csv(out / "proteingym" / "IF1_ECOLI_indels.csv")
    assert gym["mutated_sequence"].tolist() == sequences and gym["mutant"].tolist() == sequences
    assert gym["seqdance_combined"].notna().all() and gym["esm2_pll"].notna().all()
    assert gym.loc[3, "esm2_pll"] == 0.0
    spearman = out / "proteingym" / "Spearman" / "DMS_indels_Spearman_DMS_level.csv"
    assert pd.read_csv(spearman, index_col=0).index.tolist() == ["IF1_ECOLI_indels"]
