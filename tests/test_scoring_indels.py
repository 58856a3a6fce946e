"""Insertions and deletions in scoring: the relative change over aligned tokens against a straightforward
computation, windows of long proteins, a substitution written as its full sequence, the ESM2 pseudo-log-likelihood
difference, and a synthetic indel assay through ``score`` and ``benchmark-dms``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from _checkpoints import random_dynamics_model, random_esm2_mlm, write_esm2_mlm_checkpoint, write_released_checkpoint
from conftest import require

from seqdance.cli.main import main
from seqdance.io_utils import read_fasta
from seqdance.schema import PROPERTIES, PROPERTY_NAMES
from seqdance.scoring.indels import indel_window, pll_difference_scores, score_indels
from seqdance.scoring.mutations import IndelVariant, parse_mutants, sequence_variant
from seqdance.scoring.scorer import score_variants
from seqdance.tokenizer import MASK_ID, encode

WT = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRV"
EPS = 0.01

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model64():
    return random_dynamics_model("tiny", "esmdance", seed=3).double()


def _outputs(model, sequence):
    with torch.no_grad():
        out = model(torch.from_numpy(encode(sequence).ids)[None], None, pairs=True)
    return out.residue[0].numpy(), out.pair[0].numpy()


def _reference(model, wt_text, var_text, mapping, sites, region="reference", radius=10):
    """The formula written out: ``mapping`` {wild-type residue index: variant residue index} of the aligned
    residues; tokens are residues + 1, <cls> and <eos> map to each other."""
    wt_res, wt_pair = _outputs(model, wt_text)
    var_res, var_pair = _outputs(model, var_text)
    wt_tok = [0] + [i + 1 for i in sorted(mapping)] + [len(wt_text) + 1]
    var_tok = [0] + [mapping[i] + 1 for i in sorted(mapping)] + [len(var_text) + 1]
    inner = np.array([False] + [True] * len(mapping) + [False])
    if region == "reference":
        res_sel = np.ones(len(wt_tok), bool)
        pair_sel = np.ones((len(wt_tok), len(wt_tok)), bool)
    else:
        res_sel = inner.copy()
        if region == "local":
            res_sel &= np.array([any(abs(t - (s + 1)) <= radius for s in sites) for t in wt_tok])
        pair_sel = inner[:, None] & inner[None, :] & (res_sel[:, None] | res_sel[None, :])
    row = {}
    for p in PROPERTIES:
        if p.is_residue:
            w = wt_res[wt_tok][res_sel][:, p.channels]
            m = var_res[var_tok][res_sel][:, p.channels]
        else:
            w = wt_pair[np.ix_(wt_tok, wt_tok)][pair_sel][:, p.channels]
            m = var_pair[np.ix_(var_tok, var_tok)][pair_sel][:, p.channels]
        row[f"change_{p.name}"] = float(np.mean(np.abs(m - w) / (np.abs(w) + EPS)))
    return row


DELETION = WT[:9] + WT[12:]  # residues 10-12 deleted
INSERTION = WT[:20] + "GSG" + WT[20:]  # GSG after residue 20
MIXED = WT[:4] + WT[6:30] + "W" + WT[30:]  # Y5, I6 deleted, W inserted after residue 30


@pytest.mark.parametrize("region", ["reference", "residues", "local"])
def test_indel_changes_match_the_formula(model64, region):
    variants = [sequence_variant("", s, WT) for s in (DELETION, INSERTION, MIXED, DELETION)]
    assert all(isinstance(v, IndelVariant) for v in variants)
    table = score_indels(model64, WT, variants, region=region, local_radius=3, batch_size=2)
    mappings = [
        {i: (i if i < 9 else i - 3) for i in range(len(WT)) if not 9 <= i <= 11},
        {i: (i if i < 20 else i + 3) for i in range(len(WT))},
        {i: (i if i < 4 else (i - 2 if i < 30 else i - 1)) for i in range(len(WT)) if i not in (4, 5)},
    ]
    sites = [(9, 10, 11), (19, 20), (4, 5, 29, 30)]
    for k in range(3):
        assert {int(i): int(j) for i, j in variants[k].alignment.pairs} == mappings[k]
        assert variants[k].indices == sites[k]
        want = _reference(model64, WT, variants[k].sequence, mappings[k], sites[k], region, radius=3)
        for column, value in want.items():
            assert table.loc[k, column] == pytest.approx(value, rel=1e-9, abs=1e-12), (k, column)
    assert (table.loc[0] == table.loc[3]).all()  # a repeated sequence: the same row


def test_long_protein_windows(model64):
    long_wt = WT + WT[:20]  # 60 residues, a window of 24
    variant = sequence_variant("", long_wt[:40] + long_wt[42:], long_wt)  # residues 41-42 deleted
    spans = indel_window(variant, long_wt, window=24, step=4)
    assert spans.wt_span[1] - spans.wt_span[0] == 24 and spans.wt_span[0] <= 40 and 41 < spans.wt_span[1]
    assert spans.variant_span[1] - spans.variant_span[0] == 22
    start, (v_start, v_stop) = spans.wt_span[0], spans.variant_span
    table = score_indels(model64, long_wt, [variant], window=24, window_step=4)
    mapping = {i - start: j - v_start for i, j in variant.alignment.pairs if start <= i < spans.wt_span[1]}
    want = _reference(model64, long_wt[slice(*spans.wt_span)], variant.sequence[v_start:v_stop], mapping,
                      [s - start for s in variant.indices])
    for column, value in want.items():
        assert table.loc[0, column] == pytest.approx(value, rel=1e-9, abs=1e-12)
    # an insertion: the wild-type window shrinks by the inserted residues so that the variant's fits the window
    grown = sequence_variant("", long_wt[:30] + "GGGG" + long_wt[30:], long_wt)
    spans = indel_window(grown, long_wt, window=24)
    assert spans.wt_span[1] - spans.wt_span[0] == 20 and spans.variant_span[1] - spans.variant_span[0] == 24


def test_a_substitution_given_as_its_sequence_scores_exactly_as_written(model64, tmp_path):
    rows = ["K2A", "x", "T3G:Q9W", "y", "del"]
    sequences = [None, WT[:1] + "A" + WT[2:], None, WT[:2] + "G" + WT[3:8] + "W" + WT[9:], DELETION]
    checked = parse_mutants(rows, WT, mutated_sequences=sequences, indels=True)
    assert [v.key for v in checked.variants[:2]] == [checked.variants[0].key] * 2
    table = score_variants(WT, checked.variants, model=model64)
    assert (table.loc[0] == table.loc[1]).all() and (table.loc[2] == table.loc[3]).all()
    alone = score_variants(WT, [checked.variants[0], checked.variants[2]], model=model64)
    assert (alone.drop(columns="score").to_numpy() == table.loc[[0, 2]].drop(columns="score").to_numpy()).all()


def test_pseudo_log_likelihood_difference():
    esm = random_esm2_mlm("tiny", seed=4).double()
    variants = [sequence_variant("", DELETION, WT), parse_mutants(["K2A"], WT).variants[0],
                parse_mutants(["K2K"], WT).variants[0]]

    def pll(text):
        ids = torch.from_numpy(encode(text).ids)
        total = 0.0
        for t in range(1, len(ids) - 1):
            masked = ids.clone()
            masked[t] = MASK_ID
            with torch.no_grad():
                total += float(torch.log_softmax(esm(masked[None], None)[0, t].double(), -1)[ids[t]])
        return total

    got = pll_difference_scores(esm, WT, variants, batch_size=7)
    assert got[0] == pytest.approx(pll(DELETION) - pll(WT), abs=1e-9)
    assert got[1] == pytest.approx(pll("MA" + WT[2:]) - pll(WT), abs=1e-9)
    assert got[2] == 0.0


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return write_released_checkpoint(root / "dyn", seed=1), write_esm2_mlm_checkpoint(root / "esm", seed=2)


def _indel_assay(wt: str, rng: np.random.Generator) -> pd.DataFrame:
    """Deletions, insertions and substitutions of a dev protein with a made-up fitness (ProteinGym's indel layout:
    the mutant column holds the full sequence)."""
    sequences = []
    for k in range(6):
        start = 3 + 9 * k
        sequences.append(wt[:start] + wt[start + 1 + k % 3:])  # deletions of 1-3 residues
        sequences.append(wt[:start] + "GSGS"[: 1 + k % 3] + wt[start:])  # insertions of 1-3 residues
        sequences.append(wt[:start] + ("A" if wt[start] != "A" else "G") + wt[start + 1:])  # substitutions
    score = [-abs(len(s) - len(wt)) + 0.1 * rng.standard_normal() for s in sequences]
    return pd.DataFrame({"mutant": sequences, "mutated_sequence": sequences, "DMS_score": score,
                         "DMS_score_bin": [int(v > -1) for v in score]})


def test_synthetic_indel_assay_through_score_and_benchmark_dms(shared_data, checkpoints, tmp_path, capsys):
    fasta = require(shared_data / "proteingym_single_dev" / "fasta" / "IF1_ECOLI_Kelsic_2016.fasta")
    wt = read_fasta(fasta)[0].sequence
    assay = _indel_assay(wt, np.random.default_rng(0))
    folder = tmp_path / "assays"
    (folder / "mutant").mkdir(parents=True)
    (folder / "fasta").mkdir()
    assay.to_csv(folder / "mutant" / "IF1_indels.csv", index=False)
    assay.drop(columns="mutant").to_csv(folder / "mutant" / "IF1_indels_nomutant.csv", index=False)
    labelled = assay.assign(mutant=[f"v{k}" for k in range(len(assay))])  # labels; the sequences say the variants
    labelled.to_csv(folder / "mutant" / "IF1_indels_labels.csv", index=False)
    for name in ("IF1_indels", "IF1_indels_nomutant", "IF1_indels_labels"):
        (folder / "fasta" / f"{name}.fasta").write_text(f">{name}\n{wt}\n")
    dyn, esm = checkpoints
    out = tmp_path / "results"
    code = main(["benchmark-dms", "--model", str(dyn), "--esm2", str(esm), "--esm2-pll", "--assays", str(folder),
                 "-o", str(out), "--properties", "sasa_mean", "psi", "corr", "-q"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    for name in ("IF1_indels", "IF1_indels_nomutant", "IF1_indels_labels"):
        gym = pd.read_csv(out / "proteingym" / f"{name}.csv")
        assert gym["mutated_sequence"].tolist() == assay["mutated_sequence"].tolist()
        assert gym["seqdance_combined"].notna().all() and gym["esm2_pll"].notna().all()
        # the marginals, undefined on indel rows, stay out of ProteinGym's files (every mutant must be scored there)
        assert "esm2_masked_marginal" not in gym.columns and "esm2_wt_marginal" not in gym.columns
        scored = pd.read_csv(out / "scores" / f"{name}.csv")
        indel = (gym["mutated_sequence"].str.len() != len(wt)).to_numpy()  # rows in the same order
        assert indel.any() and scored.loc[indel, "esm2_masked_marginal"].isna().all()
        assert scored.loc[~indel, "esm2_masked_marginal"].notna().all()
    per_assay = pd.read_csv(out / "per_assay.csv")
    row = per_assay[(per_assay["assay"] == "IF1_indels") & (per_assay["predictor"] == "combined")].iloc[0]
    assert np.isfinite(row["spearman"]) and row["n_variants"] == len(assay)
    scores = pd.read_csv(out / "scores" / "IF1_indels.csv")
    # the same assay through score gives the same numbers
    table = tmp_path / "assay.csv"
    assay.to_csv(table, index=False)
    assert main(["score", "--model", str(dyn), "--sequence", wt, "--mutations", str(table), "-o",
                 str(tmp_path / "s.csv"), "--properties", "sasa_mean", "psi", "corr", "-q"]) == 0
    single = pd.read_csv(tmp_path / "s.csv")
    assert single["n_mutations"].tolist() == [1] * len(assay)
    np.testing.assert_allclose(single["score"], scores["score"], rtol=0, atol=1e-12)
    assert set(PROPERTY_NAMES) >= {c.removeprefix("change_") for c in single.columns if c.startswith("change_")}
