"""Dynamics changes, combined score and ESM2 baselines against independent straightforward computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _checkpoints import random_dynamics_model, random_esm2_mlm

from seqdance.schema import PROPERTIES, get_properties
from seqdance.scoring.combine import combined_change, geometric_mean, quantile_normalise
from seqdance.scoring.dynamics_score import score_dynamics
from seqdance.scoring.esm_baselines import masked_marginal_scores, wt_marginal_scores
from seqdance.scoring.mutations import parse_mutants, saturation_mutants
from seqdance.scoring.scorer import score_variants
from seqdance.tokenizer import MASK_ID, TOKEN_TO_ID, encode

WT = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRV"
MUTANTS = ["K2A", "T3G:Q9W", "A4A", "R10P", "K2A", "Y5F:A7C:R10D", "Q9W:T3G", "A4A:K8E"]
EPS = 0.01


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model64():
    return random_dynamics_model("tiny", "esmdance", seed=3).double()


@pytest.fixture(scope="module")
def esm64():
    return random_esm2_mlm("tiny", seed=4).double()


def _outputs(model, sequence):
    ids = torch.from_numpy(encode(sequence).ids)[None]
    with torch.no_grad():
        out = model(ids, None, pairs=True)
    return out.residue[0].numpy(), out.pair[0].numpy()


def _reference_changes(model, wild_type, variants, region="reference", radius=10):
    """Straightforward per-mutant recomputation: one forward per sequence, the formula on raw outputs."""
    wt_res, wt_pair = _outputs(model, wild_type)
    t = wt_res.shape[0]
    rows = []
    for v in variants:
        mut_res, mut_pair = _outputs(model, v.apply(wild_type))
        if region == "reference":
            res_sel = np.ones(t, bool)
            pair_sel = np.ones((t, t), bool)
        else:
            residue = np.zeros(t, bool)
            residue[1:-1] = True
            if region == "residues":
                res_sel = residue
            elif v.is_synonymous:  # no mutated site: no local region; the change is 0 by definition
                rows.append({f"change_{p.name}": 0.0 for p in PROPERTIES})
                continue
            else:
                tokens = np.arange(t)
                res_sel = residue & np.any([abs(tokens - (i + 1)) <= radius for i in v.indices], axis=0)
            pair_sel = residue[:, None] & residue[None, :] & (res_sel[:, None] | res_sel[None, :])
        row = {}
        for p in PROPERTIES:
            if p.is_residue:
                m, w = mut_res[res_sel][:, p.channels], wt_res[res_sel][:, p.channels]
            else:
                m, w = mut_pair[pair_sel][:, p.channels], wt_pair[pair_sel][:, p.channels]
            row[f"change_{p.name}"] = float(np.mean(np.abs(m - w) / (np.abs(w) + EPS)))
        rows.append(row)
    return rows


@pytest.mark.parametrize("region", ["reference", "residues", "local"])
def test_changes_match_formula_on_raw_outputs(model64, region):
    variants = parse_mutants(MUTANTS, WT).variants
    table = score_dynamics(model64, WT, variants, region=region, local_radius=3, batch_size=3)
    expected = _reference_changes(model64, WT, variants, region, radius=3)
    assert list(table.columns) == [f"change_{p.name}" for p in PROPERTIES]
    for i, row in enumerate(expected):
        for column, value in row.items():
            assert table.loc[i, column] == pytest.approx(value, abs=1e-9, rel=1e-9), (MUTANTS[i], column)
    # synonymous -> 0 exactly; repeated and reordered mutants -> identical rows
    assert (table.loc[2] == 0).all() and (table.loc[0] == table.loc[4]).all()
    assert (table.loc[1] == table.loc[6]).all()
    assert (table.to_numpy() > 0).sum() == table.size - 23  # every other change strictly positive


def test_residue_region_matches_formula_on_predict_outputs(model64):
    """From ``predict`` (residue-aligned, special tokens stripped) the formula gives the ``residues`` region."""
    from seqdance.inference.predict import predict

    variants = parse_mutants(["K2A", "T3G:Q9W", "Y5F:A7C:R10D"], WT).variants
    table = score_dynamics(model64, WT, variants, region="residues")
    wt, *mutants = predict(model64, [WT, *(v.apply(WT) for v in variants)])
    for k, mut in enumerate(mutants):
        for p in PROPERTIES:
            w = wt[p.name].astype(np.float64)
            want = np.mean(np.abs(mut[p.name] - w) / (np.abs(w) + EPS))
            assert table.loc[k, f"change_{p.name}"] == pytest.approx(want, abs=1e-6), (variants[k].mutant, p.name)


def test_float32_batched_changes_close_to_batch_one():
    model = random_dynamics_model("tiny", "esmdance", seed=5)
    variants = parse_mutants(MUTANTS[:4], WT).variants
    table = score_dynamics(model, WT, variants, batch_size=4)
    expected = _reference_changes(model, WT, variants)
    got = table.to_numpy()
    want = np.array([[r[c] for c in table.columns] for r in expected])
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)


def test_property_subset_and_residue_fast_path(model64, monkeypatch):
    variants = parse_mutants(MUTANTS, WT).variants
    full = score_dynamics(model64, WT, variants)
    calls = []
    original = type(model64).forward

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("pairs"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model64), "forward", spy)
    sub = score_dynamics(model64, WT, variants, properties=["psi", "sasa_mean"])
    assert list(sub.columns) == ["change_sasa_mean", "change_psi"]  # schema order
    assert calls and not any(calls)  # pairs=False on every forward (SDPA, no pair head)
    np.testing.assert_allclose(sub.to_numpy(), full[sub.columns].to_numpy(), rtol=1e-9, atol=1e-12)
    calls.clear()
    pair_only = score_dynamics(model64, WT, variants, properties=["corr"])
    assert all(calls)
    np.testing.assert_allclose(pair_only["change_corr"], full["change_corr"], rtol=1e-9, atol=1e-12)


def test_long_protein_window(model64):
    """A protein longer than the window is scored on the window around the sites (window shrunk for speed)."""
    variants = parse_mutants(["K2A", "L30P", "G39D:D41N"], WT + WT[:20]).variants
    long_wt = WT + WT[:20]
    table = score_dynamics(model64, long_wt, variants, window=24, window_step=4)
    from seqdance.scoring.windows import mutation_window

    for i, v in enumerate(variants):
        start, stop = mutation_window(v.indices, len(long_wt), size=24, step=4)
        assert stop - start == 24
        local = parse_mutants([v.mutant], long_wt).variants[0]
        shifted = parse_mutants(
            [":".join(f"{s.wt}{s.index - start + 1}{s.mt}" for s in local.substitutions)], long_wt[start:stop]
        ).variants
        want = _reference_changes(model64, long_wt[start:stop], shifted)[0]
        for column, value in want.items():
            assert table.loc[i, column] == pytest.approx(value, rel=1e-9, abs=1e-9)


def _naive_quantile_normalise(x):
    """Bolstad quantile normalisation, tie blocks averaged, written as plain loops."""
    n, p = x.shape
    sorted_cols = np.sort(x, axis=0)
    rank_mean = [np.mean(sorted_cols[k, :]) for k in range(n)]
    out = np.empty_like(x)
    for j in range(p):
        for i in range(n):
            smaller = int(np.sum(x[:, j] < x[i, j]))
            equal = int(np.sum(x[:, j] == x[i, j]))
            out[i, j] = np.mean(rank_mean[smaller : smaller + equal])
    return out


def test_quantile_normalisation_and_geometric_mean():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, size=(30, 23))
    # without ties: identical to the reference's argsort-of-argsort formulation
    ranks = np.argsort(np.argsort(x, axis=0), axis=0)
    reference = np.sort(x, axis=0).mean(axis=1)[ranks]
    np.testing.assert_allclose(quantile_normalise(x), reference, rtol=1e-12)
    # with ties (e.g. several synonymous variants): blocks get their average rank mean
    x[:4] = 0.0
    x[10, 3] = x[11, 3]
    q = quantile_normalise(x)
    np.testing.assert_allclose(q, _naive_quantile_normalise(x), rtol=1e-12)
    assert np.all(q[:4] == q[0])  # identical variants, identical normalised values
    # every column ends with the same distribution
    np.testing.assert_allclose(np.sort(quantile_normalise(rng.random((9, 4))), axis=0).std(axis=1), 0, atol=1e-12)
    want = np.array([np.prod(row + 1e-8) ** (1 / len(row)) for row in q])
    np.testing.assert_allclose(combined_change(x), want, rtol=1e-10)
    np.testing.assert_allclose(geometric_mean(np.array([[1.0, 4.0]]), eps=0), [2.0])


def test_score_column_is_minus_combined_over_distinct_variants(model64):
    variants = parse_mutants(MUTANTS, WT).variants
    table = score_variants(WT, variants, model=model64)
    changes = table[[c for c in table.columns if c.startswith("change_")]].to_numpy()
    distinct = [0, 1, 2, 3, 5, 7]  # rows 4 and 6 repeat rows 0 and 1
    combined = geometric_mean(_naive_quantile_normalise(changes[distinct]))
    expected = dict(zip(distinct, -combined))
    expected[4], expected[6] = expected[0], expected[1]
    np.testing.assert_allclose(table["score"], [expected[i] for i in range(len(variants))], rtol=1e-10)
    assert table["score"].iloc[2] == pytest.approx(-1e-8)  # synonymous: no change


def _naive_log_probs(esm, ids):
    with torch.no_grad():
        return torch.log_softmax(esm(torch.as_tensor(ids)[None], None)[0].double(), -1).numpy()


def test_masked_and_wt_marginal_equal_naive_per_mutant(esm64):
    variants = parse_mutants(MUTANTS, WT).variants
    masked = masked_marginal_scores(esm64, WT, variants, batch_size=4)
    wt_marg = wt_marginal_scores(esm64, WT, variants)
    ids = encode(WT).ids
    wt_lp = _naive_log_probs(esm64, ids)
    for k, v in enumerate(variants):
        want_masked = want_wt = 0.0
        for s in v.substitutions:
            masked_ids = ids.copy()
            masked_ids[s.index + 1] = MASK_ID
            lp = _naive_log_probs(esm64, masked_ids)[s.index + 1]
            want_masked += lp[TOKEN_TO_ID[s.mt]] - lp[TOKEN_TO_ID[s.wt]]
            want_wt += wt_lp[s.index + 1, TOKEN_TO_ID[s.mt]] - wt_lp[s.index + 1, TOKEN_TO_ID[s.wt]]
        assert masked[k] == pytest.approx(want_masked, abs=1e-10), v.mutant
        assert wt_marg[k] == pytest.approx(want_wt, abs=1e-10), v.mutant
    assert masked[2] == 0 and masked[0] == masked[4] and masked[0] != 0


def test_masked_marginal_long_protein_and_saturation(esm64):
    long_wt = WT + WT[:20]
    variants = saturation_mutants(long_wt)[::37]
    got = masked_marginal_scores(esm64, long_wt, variants, window=24, window_step=4)
    from seqdance.scoring.windows import mutation_window

    for k, v in enumerate(variants):
        s = v.substitutions[0]
        start, stop = mutation_window([s.index], len(long_wt), size=24, step=4)
        ids = encode(long_wt[start:stop]).ids
        ids[s.index - start + 1] = MASK_ID
        lp = _naive_log_probs(esm64, ids)[s.index - start + 1]
        assert got[k] == pytest.approx(lp[TOKEN_TO_ID[s.mt]] - lp[TOKEN_TO_ID[s.wt]], abs=1e-10)


def test_score_variants_columns(model64, esm64):
    variants = parse_mutants(MUTANTS[:3], WT).variants
    table = score_variants(WT, variants, model=model64, esm_model=esm64, properties=["sasa_mean", "psi"])
    assert list(table.columns) == ["score", "change_sasa_mean", "change_psi", "esm2_masked_marginal",
                                   "esm2_wt_marginal"]
    assert len(get_properties(["psi"])) == 1
    with pytest.raises(ValueError, match="nothing to score"):
        score_variants(WT, variants)
