"""Frozen features of fine-tuning in the one embedding store: the values of the model input fine-tuning reads,
reused by content across calls and runs (no encoder forward), never across models or token limits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _checkpoints import random_dynamics_model, write_released_checkpoint
from _finetune_data import random_sequences, write_protein_table

from seqdance.finetuning.inputs import feature_file, frozen_features, tokenize
from seqdance.inference.embedding_store import read_entries
from seqdance.inference.embeddings import cached_embeddings
from seqdance.inference.fingerprint import module_fingerprint
from seqdance.inference.sharding import text_digest

MAX_TOKENS = 16
# whole (fits 16 tokens), cut by residues, cut by its <eos> only (15 residues + <cls> = 16 tokens), a duplicate
SEQUENCES = ["MKTAYIAKQR", "GSHMLEACDEFGHIKLMNPQ", "ACDEFGHIKLMNPQR", "MKTAYIAKQR"]


def _direct(model, rows, kind):
    """Per-residue features of each row's model input, one row at a time (no batching, no cache)."""
    from seqdance.finetuning.model import dynamics_features

    out = []
    with torch.no_grad():
        for row in rows:
            ids = torch.from_numpy(row.ids)[None]
            mask = torch.ones_like(ids)
            residue_mask = torch.zeros_like(ids, dtype=torch.bool)
            residue_mask[0, torch.from_numpy(row.residues)] = True
            if kind == "hidden":
                values = model.esm2(ids, mask)[0][0].float()
            else:
                values = dynamics_features(model, ids, mask, residue_mask)[0]
            out.append(values[torch.from_numpy(row.residues)].numpy())
    return out


def _counting(model):
    calls = []
    model.esm2.register_forward_hook(lambda *args: calls.append(1))
    return calls


@pytest.mark.parametrize("kind", ["hidden", "dynamics"])
@pytest.mark.parametrize("pooled", [True, False])
def test_features_are_those_of_the_cut_input_and_reused_by_content(kind, pooled, tmp_path, one_torch_thread):
    model = random_dynamics_model("tiny", "seqdance", seed=1)
    rows = tokenize(SEQUENCES, [f"p{i}" for i in range(len(SEQUENCES))], MAX_TOKENS)
    assert [r.cut for r in rows] == [False, True, True, False]
    assert [len(r.residues) for r in rows] == [10, 15, 15, 10]
    calls = _counting(model)
    args = dict(kind=kind, pooled=pooled, max_tokens=MAX_TOKENS, cache_dir=tmp_path, description="tiny")
    first = frozen_features(model, SEQUENCES, rows, **args)
    direct = _direct(model, rows, kind)
    for got, want in zip(first, direct):
        np.testing.assert_allclose(got, want.mean(0) if pooled else want, rtol=1e-5, atol=1e-5)
    assert calls  # computed
    calls.clear()
    again = frozen_features(model, SEQUENCES, rows, **args)
    assert calls == []  # every row from the store: no encoder forward
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)

    fp = module_fingerprint(model)
    entries = read_entries(feature_file(tmp_path, fp, kind))
    whole_pooled_hidden = kind == "hidden" and pooled
    # whole sequences' pooled hidden states are the embedding path's own vectors, in the probe's cache file
    stored = {e.sequence: e for e in entries.values()}
    assert set(stored) == ({SEQUENCES[1], SEQUENCES[2]} if whole_pooled_hidden else set(SEQUENCES))
    assert stored[SEQUENCES[1]].kept == 15 and stored[SEQUENCES[1]].length == 20
    assert stored[SEQUENCES[2]].kept == 15  # its <eos> was cut: another input than the whole sequence's
    if not whole_pooled_hidden:
        assert stored[SEQUENCES[0]].kept is None
    assert all(json.loads(e.options) == {"feature": f"finetune-{kind}", "input": "first max_tokens tokens",
                                         "max_tokens": MAX_TOKENS} for e in entries.values())
    assert all(e.per_residue == (not pooled) for e in entries.values())
    if whole_pooled_hidden:
        probe = cached_embeddings(model, [SEQUENCES[0]], pooling="residues", cache_dir=tmp_path)
        assert probe.n_cached == 1
        np.testing.assert_array_equal(probe.values[0], first[0])
        assert list(read_entries(tmp_path / f"{fp}.h5")) == [text_digest(SEQUENCES[0])]

    # another token limit is another content: the cut rows are recomputed, the whole ones are not
    calls.clear()
    longer = tokenize(SEQUENCES, [f"p{i}" for i in range(len(SEQUENCES))], 32)
    wider = frozen_features(model, SEQUENCES, longer, **{**args, "max_tokens": 32})
    assert calls
    if pooled:
        np.testing.assert_allclose(wider[0], first[0], rtol=1e-5, atol=1e-6)
        assert not np.allclose(wider[1], first[1])
    else:
        assert wider[1].shape[0] == 20 and not np.allclose(wider[1][:15], first[1])


def test_per_residue_request_recomputes_pooled_only_entries_and_a_changed_model_never_reuses(tmp_path,
                                                                                            one_torch_thread):
    model = random_dynamics_model("tiny", "seqdance", seed=2)
    rows = tokenize(SEQUENCES, [f"p{i}" for i in range(len(SEQUENCES))], MAX_TOKENS)
    args = dict(kind="dynamics", max_tokens=MAX_TOKENS, cache_dir=tmp_path)
    pooled = frozen_features(model, SEQUENCES, rows, pooled=True, **args)
    calls = _counting(model)
    per_residue = frozen_features(model, SEQUENCES, rows, pooled=False, **args)
    assert calls  # the pooled entries hold no per-residue arrays
    for p, r in zip(pooled, per_residue):
        np.testing.assert_allclose(p, r.mean(0), rtol=1e-5, atol=1e-6)
    calls.clear()
    frozen_features(model, SEQUENCES, rows, pooled=True, **args)  # per-residue entries also serve pooled requests
    assert calls == []
    fp = module_fingerprint(model)
    with torch.no_grad():
        model.esm2.encoder.layer[0].intermediate.dense.weight.mul_(1.5)
    assert module_fingerprint(model, refresh=True) != fp
    changed = frozen_features(model, SEQUENCES, rows, pooled=True, **args)
    assert calls and not np.allclose(changed[0], pooled[0])
    assert feature_file(tmp_path, module_fingerprint(model), "dynamics").is_file()


def test_head_reads_the_store_in_a_later_run_without_an_encoder_forward(tmp_path, one_torch_thread):
    from seqdance.finetuning.config import FinetuneConfig
    from seqdance.finetuning.loop import train_job
    from seqdance.finetuning.run import Combo, Runner
    from seqdance.finetuning.splits import make_folds

    sequences = random_sequences(24, 12, 40, seed=4)
    names = [f"p{i}" for i in range(len(sequences))]
    table = write_protein_table(tmp_path / "y.csv", names, sequences, [s.count("K") for s in sequences])
    checkpoint = str(write_released_checkpoint(tmp_path / "dyn", "tiny", "seqdance", seed=3))
    config = dict(labels=[str(table)], task="protein", target="y", models=[checkpoint], progress=False, epochs=3,
                  batch_size=8, max_tokens=24, cache_dir=str(tmp_path / "cache"), with_dynamics="yes")

    def run(out):
        runner = Runner(FinetuneConfig.from_dict({**config, "output_dir": str(tmp_path / out)}))
        runner.load()
        calls = _counting(runner.bases["dyn"])
        fold = make_folds(runner.labels, "kfold", folds=2)[0][0]
        combo = Combo("dyn", "head", True)
        model = runner.build(combo, "job", fold.train)
        inputs = runner.inputs(combo, model)
        before = len(calls)
        train_job(model, inputs, fold.train, fold.valid, fold.test, runner.settings("head"), key="job",
                  label="test", out_dir=None)
        return before, len(calls), inputs

    first_features, first_total, first_inputs = run("a")
    assert first_features > 0 and first_total == first_features  # epochs read the features, never the encoder
    second_features, second_total, second_inputs = run("b")
    assert (second_features, second_total) == (0, 0)  # another run: everything from the store
    for a, b in zip(first_inputs.hidden + first_inputs.dynamics, second_inputs.hidden + second_inputs.dynamics):
        np.testing.assert_array_equal(a, b)
