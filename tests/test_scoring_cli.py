"""``seqdance score`` end to end with tiny random checkpoints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _checkpoints import write_esm2_mlm_checkpoint, write_released_checkpoint

from seqdance.cli.main import main
from seqdance.model import load_esm2_masked_lm, load_model
from seqdance.schema import PROPERTY_NAMES
from seqdance.scoring.mutations import parse_mutants
from seqdance.scoring.scorer import score_variants

WT = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return write_released_checkpoint(root / "dyn", seed=7), write_esm2_mlm_checkpoint(root / "esm", seed=8)


def test_score_mutation_file(checkpoints, tmp_path, capsys):
    dyn, esm = checkpoints
    muts = tmp_path / "muts.csv"
    pd.DataFrame({
        "mutant": ["K2A", "T3G:Q9W", "A4A", "K2A", "Q9Z", "X3A", "Q9W:T3G"],
        "score": [1.0, 2.0, 3.0, 1.0, 0.0, 0.0, 2.0],
    }).to_csv(muts, index=False)
    out = tmp_path / "out.csv"
    base = ["score", "--model", str(dyn), "--esm2", str(esm), "--sequence", WT, "--mutations", str(muts),
            "-o", str(out), "--no-progress"]
    assert main(base) == 1
    err = capsys.readouterr().err
    assert "row 5: 'Q9Z': mutant residue 'Z' is not one of the 20 standard amino acids" in err
    assert "row 6: 'X3A': the wild-type residue at position 3 is T, not X" in err
    assert "--skip-invalid" in err and not out.exists()

    assert main([*base, "--skip-invalid"]) == 0
    captured = capsys.readouterr()
    assert "skipped 2 invalid mutants" in captured.err
    table = pd.read_csv(out)
    assert table["mutant"].tolist() == ["K2A", "T3G:Q9W", "A4A", "K2A", "Q9W:T3G"]
    assert table["score_input"].tolist() == [1.0, 2.0, 3.0, 1.0, 2.0]  # input column kept, renamed
    assert table["n_mutations"].tolist() == [1, 2, 0, 1, 2]
    expected_cols = ["score", *[f"change_{p}" for p in PROPERTY_NAMES], "esm2_masked_marginal", "esm2_wt_marginal"]
    assert list(table.columns[3:]) == expected_cols
    invalid = pd.read_csv(tmp_path / "out.invalid.csv")
    assert invalid["row"].tolist() == [5, 6]
    # same numbers as the library on the loaded models
    variants = parse_mutants(table["mutant"], WT).variants
    lib = score_variants(WT, variants, model=load_model(dyn), esm_model=load_esm2_masked_lm(esm))
    np.testing.assert_allclose(table[expected_cols].to_numpy(), lib[expected_cols].to_numpy(), rtol=1e-6, atol=1e-9)
    assert (table.loc[2, [f"change_{p}" for p in PROPERTY_NAMES]] == 0).all()  # synonymous
    assert table.loc[0, "score"] == table.loc[3, "score"] and table.loc[1, "score"] == table.loc[4, "score"]


def test_score_saturation_fasta_offset_heatmap(checkpoints, tmp_path, capsys):
    dyn, _ = checkpoints
    fasta = tmp_path / "wt.fasta"
    fasta.write_text(f">a\n{WT}\n>b\n{WT[:10]}\n")
    out, png = tmp_path / "sat.csv", tmp_path / "sat.png"
    args = ["score", "--model", str(dyn), "--fasta", str(fasta), "--saturation", "-o", str(out), "--offset", "24",
            "--properties", "sasa_mean", "psi", "--heatmap", str(png), "--no-progress"]
    assert main(args) == 2  # a usage error: a .csv name for a folder
    assert "scoring several proteins writes a folder" in capsys.readouterr().err
    assert main([*args, "--fasta-id", "b"]) == 0
    table = pd.read_csv(out)
    assert len(table) == 19 * 10 and table["mutant"].iloc[0] == "M24A" and table["mutant"].iloc[-1] == "R33Y"
    assert list(table.columns) == ["mutant", "n_mutations", "score", "change_sasa_mean", "change_psi"]
    assert (table["score"] < 0).all()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "heat map of 190 substitutions" in capsys.readouterr().out


def test_score_argument_errors(checkpoints, tmp_path, capsys):
    dyn, _ = checkpoints
    out = str(tmp_path / "o.csv")
    assert main(["score", "--model", str(dyn), "--sequence", WT, "--saturation", "-o", out,
                 "--properties", "sasa", "--no-progress"]) == 1
    assert "unknown property name(s) ['sasa']" in capsys.readouterr().err
    assert main(["score", "--model", str(dyn), "--sequence", "MK:TA", "--saturation", "-o", out]) == 1
    assert "multi-chain" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # a range checked while parsing: a usage error (status 2)
        main(["score", "--model", str(dyn), "--sequence", WT, "--saturation", "-o", out, "--window", "5000"])
    assert stop.value.code == 2
    assert "--window: must be between 1 and 1022, got 5000" in capsys.readouterr().err


def test_score_long_protein_window_and_too_wide_multi_mutant(checkpoints, tmp_path, capsys):
    dyn, esm = checkpoints
    muts = tmp_path / "m.txt"
    muts.write_text("M1A:R10G\nM1A:Q11A\nL23P\n")
    out = tmp_path / "o.csv"
    args = ["score", "--model", str(dyn), "--esm2", str(esm), "--sequence", WT, "--mutations", str(muts),
            "-o", str(out), "--window", "10", "--no-progress"]
    assert main(args) == 1
    assert "row 2: 'M1A:Q11A': the mutated sites span 11 residues" in capsys.readouterr().err
    assert main([*args, "--skip-invalid"]) == 0
    err = capsys.readouterr().err
    assert "more than the 10-residue window" in err and "skipped 1 invalid mutant" in err
    table = pd.read_csv(out)
    assert table["mutant"].tolist() == ["M1A:R10G", "L23P"]
    assert table.drop(columns="mutant").notna().all().all()
