"""ProteinGym's supervised fold schemes on a real dev assay, and the other split schemes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import require

ASSAY = "IF1_ECOLI_Kelsic_2016"  # 72 residues, 1,367 single substitutions


@pytest.fixture(scope="module")
def assay_labels(shared_data):
    from seqdance.finetuning.labels import read_mutant_labels

    root = shared_data / "proteingym_single_dev"
    table = require(root / "mutant" / f"{ASSAY}.csv")
    return read_mutant_labels([str(table)], None, wild_types=str(require(root / "fasta" / f"{ASSAY}.fasta")))


def _fold_of(folds, n):
    out = np.full(n, -1)
    for k, fold in enumerate(folds):
        assert (out[fold.test] == -1).all()  # each row is tested once
        out[fold.test] = k
    assert (out >= 0).all()
    return out


@pytest.mark.parametrize("scheme", ["fold_modulo_5", "fold_contiguous_5"])
def test_position_schemes_keep_every_position_in_one_fold(assay_labels, scheme):
    from seqdance.finetuning.splits import make_folds

    labels = assay_labels
    folds, _ = make_folds(labels, scheme, seed=0)
    assert len(folds) == 5
    fold = _fold_of(folds, labels.n)
    position = np.array([p[0] for p in labels.positions])
    for pos in np.unique(position):
        assert len(set(fold[position == pos])) == 1, pos
    positions_per_fold = [len(np.unique(position[fold == k])) for k in range(5)]
    mutants_per_position = np.bincount(position).max()
    sizes = np.bincount(fold, minlength=5)
    assert sizes.max() - sizes.min() <= mutants_per_position  # within one position block of equal
    if scheme == "fold_modulo_5":
        assert (fold == position % 5).all()
    else:
        assert max(positions_per_fold) - min(positions_per_fold) <= 1
        bounds = [(position[fold == k].min(), position[fold == k].max()) for k in range(5)]
        assert all(bounds[k][1] < bounds[k + 1][0] for k in range(4))  # contiguous blocks in order
    for f in folds:  # early-stopping rows come from the training side
        assert not (f.valid & f.test).any() and f.valid.sum() > 0


def test_random_scheme_is_balanced_and_seeded(assay_labels):
    from seqdance.finetuning.splits import make_folds

    a = _fold_of(make_folds(assay_labels, "fold_random_5", seed=0)[0], assay_labels.n)
    b = _fold_of(make_folds(assay_labels, "fold_random_5", seed=0)[0], assay_labels.n)
    c = _fold_of(make_folds(assay_labels, "fold_random_5", seed=1)[0], assay_labels.n)
    sizes = np.bincount(a, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    assert (a == b).all() and (a != c).any()


def test_fold_columns_are_used_as_given_and_multi_mutants_get_random_folds(tmp_path):
    from seqdance.finetuning.labels import read_mutant_labels
    from seqdance.finetuning.splits import make_folds

    wild_type = "MKTAYIAKQRQISFVKSHFS"
    mutants = [f"{wild_type[i]}{i + 1}A" for i in range(20) if wild_type[i] != "A"] + ["M1G:K2L", "T3G:A4W"]
    given = [(3 * i) % 5 for i in range(len(mutants))]
    table = tmp_path / "X.csv"
    pd.DataFrame({"mutant": mutants, "DMS_score": np.arange(len(mutants), dtype=float),
                  "fold_modulo_5": given}).to_csv(table, index=False)
    (tmp_path / "X.fasta").write_text(f">X\n{wild_type}\n")
    labels = read_mutant_labels([str(table)], None, wild_types=str(tmp_path / "X.fasta"))
    folds, notes = make_folds(labels, "fold_modulo_5")
    assert (_fold_of(folds, labels.n) == np.array(given)).all()
    assert any("as given" in n for n in notes)
    pd.DataFrame({"mutant": mutants, "DMS_score": np.arange(len(mutants), dtype=float)}).to_csv(table, index=False)
    labels = read_mutant_labels([str(table)], None, wild_types=str(tmp_path / "X.fasta"))
    folds, notes = make_folds(labels, "fold_contiguous_5")
    assert any("2 multi-mutant(s) got random folds" in n for n in notes)


def test_identity_folds_keep_clusters_together():
    from seqdance.finetuning.labels import LabelSet
    from seqdance.finetuning.splits import make_folds

    rng = np.random.default_rng(0)
    families = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 40)) for _ in range(8)]
    sequences, names = [], []
    for f, seq in enumerate(families):
        for k in range(4):  # four close variants per family
            variant = list(seq)
            variant[k] = "W"
            sequences.append("".join(variant))
            names.append(f"f{f}_{k}")
    labels = LabelSet("protein", "y", "mem", names, sequences, rng.normal(size=len(names)),
                      groups=np.array(["all"] * len(names)))
    folds, _ = make_folds(labels, "identity", folds=4, identity=0.5)
    fold = _fold_of(folds, labels.n)
    for f in range(8):
        assert len(set(fold[f * 4 : f * 4 + 4])) == 1
