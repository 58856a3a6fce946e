"""Bad input to fine-tuning: one line naming the problem (file, row, protein, fold or module), exit status 1."""

from __future__ import annotations

import pandas as pd
import pytest
from _checkpoints import write_released_checkpoint

from seqdance.errors import InputError


def _protein(path, values, names=None, sequences=None):
    names = names or [f"p{i}" for i in range(len(values))]
    sequences = sequences or ["MKTAYIAKQR"] * len(values)
    pd.DataFrame({"name": names, "sequence": sequences, "y": values}).to_csv(path, index=False)
    return str(path)


def test_missing_and_non_numeric_labels_name_the_row(tmp_path):
    from seqdance.finetuning.labels import read_protein_labels

    with pytest.raises(InputError, match=r"label 'y' at row 3 \(p1\) is missing"):
        read_protein_labels(_protein(tmp_path / "a.csv", ["1", "", "2"]), "y")
    with pytest.raises(InputError, match=r"label 'y' at row 4 \(p2\) is 'high', not a finite number"):
        read_protein_labels(_protein(tmp_path / "b.csv", ["1", "2", "high"]), "y")
    with pytest.raises(InputError, match=r"unknown target column 'dg' \(columns in the file: name, sequence, y\)"):
        read_protein_labels(_protein(tmp_path / "c.csv", ["1", "2"]), "dg")


def test_residue_label_count_must_match_the_sequence(tmp_path):
    from seqdance.finetuning.labels import read_residue_labels

    path = tmp_path / "r.csv"
    pd.DataFrame({"name": ["a", "b"], "sequence": ["MKT", "MKTAY"],
                  "y": ["1 0 1", "1,0,nan,1"]}).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"row 3 \(b\): 4 residue label\(s\) in 'y' but the sequence has 5 residues"):
        read_residue_labels(str(path), "y")


def test_single_member_class_and_empty_fold(tmp_path):
    from seqdance.finetuning.labels import read_protein_labels
    from seqdance.finetuning.splits import make_folds

    labels = read_protein_labels(_protein(tmp_path / "k.csv", ["a", "a", "b", "b", "c", "a"]), "y",
                                 classification=True)
    with pytest.raises(InputError, match=r"class 'c' has a single member \(p4\); a split needs at least two"):
        make_folds(labels, "kfold", folds=2)
    path = tmp_path / "s.csv"
    pd.DataFrame({"name": ["a", "b", "c"], "sequence": ["MKT"] * 3, "y": [1, 2, 3],
                  "split_x": ["train", "train", "valid"]}).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"fold split_x of split columns has no test rows"):
        make_folds(read_protein_labels(str(path), "y"), "columns")


def test_mutant_that_does_not_match_its_wild_type(tmp_path):
    from seqdance.finetuning.labels import read_mutant_labels

    table = tmp_path / "A.csv"
    pd.DataFrame({"mutant": ["M1A", "K2G", "Q3L"], "DMS_score": [0.1, 0.2, 0.3]}).to_csv(table, index=False)
    (tmp_path / "A.fasta").write_text(">A\nMKTAY\n")
    with pytest.raises(InputError, match=r"A.csv: row 4: mutant 'Q3L' does not match the wild type \(the wild-type "
                                         r"residue at position 3 is T, not Q\)"):
        read_mutant_labels([str(table)], None, wild_types=str(tmp_path / "A.fasta"))


def test_unknown_lora_target_module():
    from seqdance.finetuning.model import add_lora
    from seqdance.model import DynamicsModel

    encoder = DynamicsModel("tiny", "seqdance").esm2
    with pytest.raises(InputError, match=r"LoRA target module\(s\) qkv do not exist in the model .*attention.output"
                                         r".*attention.self.query"):
        add_lora(encoder, rank=4, alpha=8, dropout=0.0, targets=["query", "qkv"])


def test_the_command_line_prints_one_line(tmp_path, capsys):
    """The CLI turns these into one line and exit status 1 (here: a non-numeric label)."""
    from seqdance.cli.main import main

    model = write_released_checkpoint(tmp_path / "m", "tiny", "seqdance")
    labels = _protein(tmp_path / "bad.csv", ["1", "2", "3", "n/a"])
    code = main(["finetune", "--labels", labels, "--target", "y", "--model", str(model), "-o", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(lines) == 1 and "label 'y' at row 5 (p3) is 'n/a', not a finite number" in lines[0]
    assert not (tmp_path / "out").exists()
