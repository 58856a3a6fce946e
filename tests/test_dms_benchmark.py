"""``seqdance benchmark-dms`` end to end: the 49 ProteinGym dev assays with tiny random models, resuming,
per-assay failures, reference CSVs and category summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _checkpoints import write_esm2_mlm_checkpoint, write_released_checkpoint
from conftest import require

from seqdance.cli.main import main
from seqdance.schema import PROPERTY_NAMES
from seqdance.scoring.metrics import spearman

PREDICTORS = ["combined", *PROPERTY_NAMES, "esm2_masked_marginal", "esm2_wt_marginal"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return write_released_checkpoint(root / "dyn", seed=1), write_esm2_mlm_checkpoint(root / "esm", seed=2)


@pytest.mark.slow
def test_all_dev_assays_run_end_to_end(shared_data, checkpoints, tmp_path, capsys):
    assays = require(shared_data / "proteingym_single_dev")
    names = sorted(p.stem for p in (assays / "mutant").glob("*.csv"))
    assert len(names) == 49
    dyn, esm = checkpoints
    out = tmp_path / "results"
    # window 200 keeps the long proteins (up to 3,423 residues) cheap while using the same windowing code
    args = ["benchmark-dms", "--model", str(dyn), "--esm2", str(esm), "--assays", str(assays), "-o", str(out),
            "--max-variants", "12", "--window", "200", "--no-progress"]
    assert main(args) == 0
    per_assay = pd.read_csv(out / "per_assay.csv")
    assert sorted(per_assay["assay"].unique()) == names
    assert per_assay.groupby("assay")["predictor"].apply(list).map(lambda p: p == PREDICTORS).all()
    assert (per_assay["n_variants"] == 12).all()
    assert per_assay[["spearman", "ndcg", "top_decile_auc", "top_recall"]].notna().all().all()
    assert per_assay["spearman"].between(-1, 1).all() and per_assay["ndcg"].between(0, 1).all()
    summary = pd.read_csv(out / "summary.csv")
    assert summary["predictor"].tolist() == PREDICTORS and (summary["n_assays"] == 49).all()
    np.testing.assert_allclose(
        summary.set_index("predictor")["spearman"], per_assay.groupby("predictor")["spearman"].median()[PREDICTORS]
    )
    assert pd.read_csv(out / "failures.csv").empty
    # per-assay scores: valid mutants of the source table, metrics recomputable from them
    name = "BLAT_ECOLX_Stiffler_2015"
    scores = pd.read_csv(out / "scores" / f"{name}.csv")
    source = pd.read_csv(assays / "mutant" / f"{name}.csv").set_index("mutant")
    np.testing.assert_allclose(scores["DMS_score"], source.loc[scores["mutant"], "score"])
    assert (scores[[f"change_{p}" for p in PROPERTY_NAMES]] > 0).all().all()
    row = per_assay[(per_assay["assay"] == name) & (per_assay["predictor"] == "combined")].iloc[0]
    assert row["spearman"] == pytest.approx(spearman(scores["DMS_score"], scores["score"]))
    long_scores = pd.read_csv(out / "scores" / "A0A140D2T1_ZIKV_Sourisseau_growth_2019.csv")
    assert long_scores["score"].notna().all() and len(long_scores) == 12
    capsys.readouterr()

    # resuming: every assay is already done, nothing is recomputed
    mtime = (out / "scores" / f"{name}.csv").stat().st_mtime_ns
    assert main(args) == 0
    assert "49 of 49 assays evaluated (49 from an earlier run); 0 failed" in capsys.readouterr().out
    assert (out / "scores" / f"{name}.csv").stat().st_mtime_ns == mtime
    # other settings in the same folder are refused
    assert main([*args[:-5], "--max-variants", "20", "--window", "200", "--no-progress"]) == 1
    assert "other settings (differing: max_variants)" in capsys.readouterr().err


def _write_assay(root, name, rows, sequence=None, score_column="DMS_score", extra=None):
    (root / "mutant").mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"mutant": [r[0] for r in rows], score_column: [r[1] for r in rows], **(extra or {})})
    frame.to_csv(root / "mutant" / f"{name}.csv", index=False)
    if sequence is not None:
        (root / "fasta").mkdir(exist_ok=True)
        (root / "fasta" / f"{name}.fasta").write_text(f">{name}\n{sequence}\n")


def test_failures_reference_csv_and_categories(checkpoints, tmp_path, capsys):
    dyn, _ = checkpoints
    wt = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
    rng = np.random.default_rng(0)
    singles = [f"{wt[i]}{i + 1}{aa}" for i in range(0, 30, 3) for aa in "AGL" if aa != wt[i]]
    good = [(m, float(rng.normal())) for m in singles]
    root = tmp_path / "assays"
    _write_assay(root, "good_fasta", good, wt, extra={"DMS_score_bin": [int(s > 0) for _, s in good]})
    _write_assay(root, "good_ref", [*good[:12], ("M1A:K2G", 0.3)], None, score_column="score")
    _write_assay(root, "bad_mutant", [*good[:5], ("A2G", 0.1)], wt)
    _write_assay(root, "no_sequence", good[:5], None)
    reference = tmp_path / "reference.csv"
    pd.DataFrame({
        "DMS_id": ["good_fasta", "good_ref", "bad_mutant"],
        "target_seq": [None, wt, None],
        "taxon": ["Virus", "Human", "Virus"],
    }).to_csv(reference, index=False)
    out = tmp_path / "res"
    args = ["benchmark-dms", "--model", str(dyn), "--assays", str(root), "-o", str(out), "--reference-csv",
            str(reference), "--category-column", "taxon", "--properties", "sasa_mean,psi", "vdw", "--no-progress"]
    assert main(args) == 1  # some assays failed
    captured = capsys.readouterr()
    failures = pd.read_csv(out / "failures.csv").set_index("assay")["error"]
    assert sorted(failures.index) == ["bad_mutant", "no_sequence"]
    assert "row 6: 'A2G': the wild-type residue at position 2 is K, not A" in failures["bad_mutant"]
    assert "no wild-type sequence" in failures["no_sequence"]
    assert "bad_mutant: FAILED" in captured.err
    per_assay = pd.read_csv(out / "per_assay.csv")
    assert sorted(per_assay["assay"].unique()) == ["good_fasta", "good_ref"]
    assert per_assay["predictor"].unique().tolist() == ["combined", "sasa_mean", "psi", "vdw"]
    assert per_assay.loc[per_assay["assay"] == "good_fasta", "auc"].notna().all()  # DMS_score_bin present
    by_taxon = pd.read_csv(out / "summary_by_taxon.csv")
    assert set(by_taxon["taxon"]) == {"Virus", "Human"} and (by_taxon["n_assays"] == 1).all()

    # --skip-invalid on a resumed run: the finished assays are kept, the invalid row skipped
    assert main([*args, "--skip-invalid"]) == 1  # settings changed -> refused without --restart
    assert "differing: skip_invalid" in capsys.readouterr().err
    assert main([*args, "--skip-invalid", "--restart"]) == 1  # no_sequence still fails
    assert sorted(pd.read_csv(out / "per_assay.csv")["assay"].unique()) == ["bad_mutant", "good_fasta", "good_ref"]
    scored = pd.read_csv(out / "scores" / "bad_mutant.csv")
    assert scored["mutant"].tolist() == [m for m, _ in good[:5]]


def test_category_column_needs_reference(checkpoints, tmp_path, capsys):
    dyn, _ = checkpoints
    root = tmp_path / "a"
    _write_assay(root, "x", [("M1A", 1.0), ("K2A", 0.0)], "MKT")
    assert main(["benchmark-dms", "--model", str(dyn), "--assays", str(root), "-o", str(tmp_path / "o"),
                 "--category-column", "taxon"]) == 1
    assert "give --reference-file" in capsys.readouterr().err


def test_ties_proteingym_files_and_console_table(checkpoints, tmp_path, capsys):
    dyn, _ = checkpoints
    wt = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
    singles = [f"{wt[i]}{i + 1}{aa}" for i in range(0, 30, 2) for aa in "AGLW" if aa != wt[i]]
    # a third of the variants share the best score: ProteinGym's top decile is empty
    rows = [(m, 1.0 if k % 3 == 0 else -float(k)) for k, m in enumerate(singles)]
    root = tmp_path / "assays"
    _write_assay(root, "tied", rows, wt)
    out = tmp_path / "res"
    assert main(["benchmark-dms", "--model", str(dyn), "--assays", str(root), "-o", str(out),
                 "--properties", "rmsf_nor", "-q"]) == 0
    captured = capsys.readouterr()
    assert "warning: tied: top_decile_auc is undefined (NaN) for every predictor" in captured.err
    assert "top_recall is 0 for every predictor" in captured.err and "ProteinGym's top-decile rule" in captured.err
    header = next(line for line in captured.out.splitlines() if line.lstrip().startswith("predictor"))
    assert header.split() == ["predictor", "n_assays", "spearman", "ndcg", "top_decile_auc", "top_recall"]
    per_assay = pd.read_csv(out / "per_assay.csv")
    assert per_assay["top_decile_auc"].isna().all() and (per_assay["top_recall"] == 0).all()
    assert per_assay["note"].str.contains("share the top DMS_score").all()
    gym = pd.read_csv(out / "proteingym" / "tied.csv")
    assert gym.columns.tolist() == ["mutant", "mutated_sequence", "DMS_score", "seqdance_combined",
                                    "seqdance_rmsf_nor"]
    assert gym["mutant"].tolist() == [m for m, _ in rows]
    first = gym.iloc[0]
    position = int(first["mutant"][1:-1]) - 1
    assert first["mutated_sequence"] == wt[:position] + first["mutant"][-1] + wt[position + 1:]
    scores = pd.read_csv(out / "scores" / "tied.csv")
    np.testing.assert_allclose(gym["seqdance_combined"], scores["score"])
    np.testing.assert_allclose(gym["seqdance_rmsf_nor"], -scores["change_rmsf_nor"])
    (out / "proteingym" / "tied.csv").unlink()  # a finished assay without the file gets it on a resumed run
    assert main(["benchmark-dms", "--model", str(dyn), "--assays", str(root), "-o", str(out),
                 "--properties", "rmsf_nor", "-q"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "proteingym" / "tied.csv"), gym)
