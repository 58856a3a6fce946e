"""model.predict: residue-aligned outputs, batching, windows for long sequences, multi-chain input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _checkpoints import random_dynamics_model

from seqdance.inference.batching import PAIR_CELLS_PER_TOKEN, plan_batches
from seqdance.inference.predict import predict
from seqdance.inference.windows import split_windows, window_starts
from seqdance.model import DynamicsModel
from seqdance.schema import PAIR_PROPERTIES, PROPERTIES, RESIDUE_PROPERTIES
from seqdance.tokenizer import CLS_ID, EOS_ID, SequenceError, encode, pad_batch

AMINO = np.array(list("ACDEFGHIKLMNPQRSTVWY"))


def random_sequence(n: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(AMINO, n))


@pytest.fixture(scope="module")
def model() -> DynamicsModel:
    # every parameter random (biases and LayerNorms too), so a mis-sliced channel or position shows
    return random_dynamics_model("tiny", "esmdance", seed=0)


def raw_forward(model: DynamicsModel, sequence: str, **kwargs):
    enc = encode(sequence)
    ids, mask = pad_batch([enc])
    with torch.inference_mode():
        out = model(ids, mask, **kwargs)
    return enc, out


def test_shapes_and_keys_of_every_property(model):
    seq = random_sequence(17, 1)
    (res,) = predict(model, [seq], embeddings=True, attentions=True)
    cfg = model.encoder_config
    assert list(res) == [p.name for p in PROPERTIES]
    for prop in RESIDUE_PROPERTIES:
        assert res[prop.name].shape == ((17,) if prop.width == 1 else (17, prop.width)), prop.name
        assert res[prop.name].dtype == np.float32
    for prop in PAIR_PROPERTIES:
        assert res[prop.name].shape == (17, 17), prop.name
    assert res.embedding.shape == (17, cfg.hidden_size)
    assert res.attention.shape == (17, 17, cfg.num_layers * cfg.num_heads)
    assert res.id == "seq0" and res.sequence == seq and res.chain_lengths == (17,)
    with pytest.raises(KeyError, match="not a property"):
        res["rmsf"]


def test_equals_raw_forward_with_special_tokens_stripped(model):
    seq = random_sequence(23, 2)
    (res,) = predict(model, seq, embeddings=True, attentions=True)
    enc, out = raw_forward(model, seq, return_embeddings=True, return_attentions=True)
    idx = enc.residue_index
    assert idx.tolist() == list(range(1, 24))
    residue = out.residue[0].numpy()[idx]
    pair = out.pair[0].numpy()[np.ix_(idx, idx)]
    for prop in RESIDUE_PROPERTIES:
        np.testing.assert_allclose(res[prop.name], residue[:, prop.channels].squeeze(-1) if prop.width == 1
                                   else residue[:, prop.channels], rtol=0, atol=1e-6)
    for prop in PAIR_PROPERTIES:
        np.testing.assert_allclose(res[prop.name], pair[..., prop.start], rtol=0, atol=1e-6)
    np.testing.assert_allclose(res.embedding, out.embeddings[0].numpy()[idx], rtol=0, atol=1e-6)
    np.testing.assert_allclose(res.attention, out.attentions[0].numpy()[np.ix_(idx, idx)], rtol=0, atol=1e-6)


def test_batching_is_invariant_and_keeps_input_order(model):
    seqs = [random_sequence(n, 10 + n) for n in (5, 40, 12, 33, 12, 1)]
    ids = [f"p{i}" for i in range(len(seqs))]
    batched = predict(model, seqs, ids=ids, max_tokens_per_batch=200, embeddings=True)
    single = [predict(model, s, embeddings=True)[0] for s in seqs]
    assert [r.id for r in batched] == ids
    assert [r.sequence for r in batched] == seqs
    worst = 0.0
    for b, s in zip(batched, single):
        for name in b:
            worst = max(worst, float(np.abs(b[name] - s[name]).max()))
        worst = max(worst, float(np.abs(b.embedding - s.embedding).max()))
    assert worst <= 1e-5


def test_softmax_groups_sum_to_one_and_ranges(model):
    (res,) = predict(model, random_sequence(30, 3))
    for prop in PROPERTIES:
        values = res[prop.name]
        if prop.activation == "softmax":
            np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-5)
        elif prop.activation == "sigmoid":
            assert ((values > 0) & (values < 1)).all()
        elif prop.activation == "signed_sigmoid":
            assert ((values > -1) & (values < 1)).all()
        else:
            assert (values > 0).all()


def test_residue_only_path_matches_full_prediction(model):
    seqs = [random_sequence(25, 4), random_sequence(9, 5)]
    full = predict(model, seqs)
    fast = predict(model, seqs, pairs=False)
    assert set(fast[0]) == {p.name for p in RESIDUE_PROPERTIES}
    with pytest.raises(KeyError, match="pairs=True"):
        fast[0]["vdw"]
    for f, r in zip(full, fast):
        for prop in RESIDUE_PROPERTIES:
            np.testing.assert_allclose(r[prop.name], f[prop.name], rtol=0, atol=1e-5)


def test_multichain_linker_positions_stripped(model):
    chains = [random_sequence(7, 6), random_sequence(5, 7)]
    joined = ":".join(chains)
    res_joined, res_list = predict(model, [joined, chains], pairs=True, embeddings=True)
    assert res_joined.chain_lengths == (7, 5) and res_joined.sequence == joined
    assert res_joined["vdw"].shape == (12, 12) and res_joined.embedding.shape[0] == 12
    for name in res_joined:
        np.testing.assert_array_equal(res_joined[name], res_list[name])
    enc, out = raw_forward(model, joined)
    assert enc.ids[8:10].tolist() == [EOS_ID, CLS_ID]  # the linker after chain 1 (<cls> + 7 residues)
    idx = enc.residue_index
    assert 8 not in idx and 9 not in idx
    np.testing.assert_allclose(res_joined["sasa_mean"], out.residue[0, idx, 0].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(res_joined["corr"], out.pair[0].numpy()[np.ix_(idx, idx)][..., 9], rtol=0, atol=1e-6)


def test_bad_sequences_are_named():
    net = DynamicsModel("tiny", "seqdance")
    with pytest.raises(SequenceError, match=r"'second'.*'J' at residue 3"):
        predict(net, ["ACD", "ACJ"], ids=["first", "second"])
    with pytest.raises(ValueError, match="2 ids for 1 sequences"):
        predict(net, ["ACD"], ids=["a", "b"])


# --- windows -------------------------------------------------------------------------------------------------


def test_window_starts_cover_the_sequence():
    assert window_starts(20, 30, 15) == [0]
    assert window_starts(100, 30, 15) == [0, 15, 30, 45, 60, 70]
    assert window_starts(31, 30, 0) == [0, 1]
    with pytest.raises(ValueError, match="window_overlap"):
        window_starts(100, 30, 30)


def test_windows_never_start_or_end_inside_a_linker():
    seq = ":".join(random_sequence(n, n) for n in (9, 4, 11))
    enc = encode(seq)
    windows = split_windows(enc, 8, 4)
    covered = np.zeros(enc.n_residues, dtype=int)
    for w in windows:
        assert w.ids[0] == CLS_ID and w.ids[-1] == EOS_ID
        assert w.ids.shape[0] <= 8 + 2
        assert w.ids[1] not in (CLS_ID, EOS_ID) and w.ids[-2] not in (CLS_ID, EOS_ID)
        parent = enc.residue_index[w.first_residue : w.first_residue + w.n_residues]
        np.testing.assert_array_equal(w.ids[w.residue_index], enc.ids[parent])
        covered[w.first_residue : w.first_residue + w.n_residues] += 1
    assert (covered >= 1).all()


def expected_context(start: int, stop: int, n: int) -> np.ndarray:
    """Distance of residues start..stop-1 to the nearest window edge that is not a sequence end."""
    pos = np.arange(start, stop)
    left = pos - start if start > 0 else np.full(pos.shape, 10**9)
    right = stop - 1 - pos if stop < n else np.full(pos.shape, 10**9)
    return np.minimum(left, right)


def test_windowed_prediction_follows_the_most_central_window_rule(model):
    n, window, overlap = 100, 30, 15
    seq = random_sequence(n, 8)
    (res,) = predict(model, seq, window=window, window_overlap=overlap)
    starts = window_starts(n, window, overlap)
    assert res.n_windows == len(starts) == 6
    pieces = predict(model, [seq[s : s + window] for s in starts], window=None)
    # Independent statement of the rule: best context, earliest window on ties.
    best_res = np.full(n, -1)
    best_pair = np.full((n, n), -1)
    exp_res = np.full(n, np.nan, dtype=np.float32)
    exp_pair = np.full((n, n), np.nan, dtype=np.float32)
    for s, piece in zip(starts, pieces):
        ctx = expected_context(s, s + window, n)
        for a in range(window):
            if ctx[a] > best_res[s + a]:
                best_res[s + a], exp_res[s + a] = ctx[a], piece["rmsf_nor"][a]
            for b in range(window):
                c = min(ctx[a], ctx[b])
                if c > best_pair[s + a, s + b]:
                    best_pair[s + a, s + b] = c
                    exp_pair[s + a, s + b] = piece["hbbb"][a, b]
    np.testing.assert_allclose(res["rmsf_nor"], exp_res, rtol=0, atol=1e-6)
    np.testing.assert_allclose(res["hbbb"], exp_pair, rtol=0, atol=1e-6)
    # Pairs that share no window are NaN, every other output is finite; far pairs are the NaN ones.
    i, j = np.nonzero(np.isnan(res["hbbb"]))
    assert i.size and (np.abs(i - j) > overlap).all()
    assert np.isfinite(res["ss"]).all() and np.isfinite(res["corr"][np.abs(np.subtract.outer(
        np.arange(n), np.arange(n))) <= overlap]).all()
    # Residues far from every cut equal the prediction of their window alone: the first residues come from
    # window 0 (no cut on the left), the middle of window 3 (residues 45-74) from window 3.
    np.testing.assert_allclose(res["sasa_mean"][:10], pieces[0]["sasa_mean"][:10], rtol=0, atol=1e-6)
    np.testing.assert_allclose(res["sasa_mean"][56:63], pieces[3]["sasa_mean"][11:18], rtol=0, atol=1e-6)


def test_short_sequences_are_not_windowed(model):
    seq = random_sequence(28, 9)
    a, b = predict(model, [seq, seq], window=30)[0], predict(model, seq, window=None)[0]
    assert a.n_windows == 1
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=1e-6)


def test_windowed_multichain_and_embeddings(model):
    seq = ":".join([random_sequence(25, 11), random_sequence(20, 12)])
    (res,) = predict(model, seq, window=16, embeddings=True, attentions=True, pairs=True)
    assert res.n_windows > 1 and res.chain_lengths == (25, 20)
    assert res.embedding.shape == (45, model.encoder_config.hidden_size) and np.isfinite(res.embedding).all()
    assert res.attention.shape[:2] == (45, 45)
    assert np.isfinite(np.diagonal(res["vdw"])).all()


# --- batching -----------------------------------------------------------------------------------------------


def test_plan_batches_respects_budgets():
    lengths = [10, 300, 40, 40, 1000, 5, 300]
    batches = plan_batches(lengths, 700)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [4]  # longer than the budget: alone
    for b in batches[1:]:
        assert len(b) * max(lengths[i] for i in b) <= 700
    quad = plan_batches([100] * 8, 4096, quadratic=True)
    cells = 4096 * PAIR_CELLS_PER_TOKEN
    assert all(len(b) * 100 * 100 <= cells for b in quad)
    assert len(quad) == 1
    with pytest.raises(ValueError):
        plan_batches([3], 0)


def test_top_level_entry_points_take_a_model_or_a_source(tmp_path):
    from _checkpoints import write_released_checkpoint

    import seqdance

    checkpoint = write_released_checkpoint(tmp_path / "tiny", "tiny", "esmdance", seed=5)
    via_model = seqdance.predict(seqdance.load_model(str(checkpoint)), ["MKVLA", "GGSW"], pairs=False)
    via_source = seqdance.predict(str(checkpoint), ["MKVLA", "GGSW"], pairs=False)
    assert [p.id for p in via_source] == ["seq0", "seq1"]
    for a, b in zip(via_model, via_source):
        np.testing.assert_array_equal(a["ss"], b["ss"])
