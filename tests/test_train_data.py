"""Training data: token counts, the deterministic per-rank stream, crops and collation.

Also home of :func:`write_synthetic_store`, a small store of random (but well-formed) targets used by the
other training tests where real data would only cost time (resume, DDP equivalence).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqdance import schema, tokenizer
from seqdance.store import DynamicsStore, StoredProtein, StoreWriter
from seqdance.train.data import (
    Catalog,
    GroupStream,
    MicroBatchDataset,
    TrainPlan,
    collate,
    crop_start,
    load_sample,
    token_counts,
)

SOURCES = {"md": "ATLAS", "idr": "IDRome", "nma": "proteinflow_pdb"}


def _random_targets(n_tokens: int, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    c_res, c_pair = schema.stored_width("residue", kind), schema.stored_width("pair", kind)
    res = rng.random((n_tokens, c_res)).astype(np.float32)
    for prop in schema.properties_of_kind(kind, "residue"):
        if prop.width > 1:  # histograms sum to one
            block = res[:, prop.store_channels]
            res[:, prop.store_channels] = block / block.sum(axis=1, keepdims=True)
    pair = rng.random((n_tokens, n_tokens, c_pair)).astype(np.float32)
    pair = 0.5 * (pair + pair.transpose(1, 0, 2))
    res[[0, -1]] = schema.MASK_VALUE
    pair[[0, -1], :] = schema.MASK_VALUE
    pair[:, [0, -1]] = schema.MASK_VALUE
    return res, pair


def write_synthetic_store(path: Path, *, per_group: int = 6, n_test: int = 2, min_len: int = 8,
                          max_len: int = 40, seed: int = 0) -> Path:
    """A store with ``per_group`` train + ``n_test`` test proteins in each of the three source groups."""
    rng = np.random.default_rng(seed)
    with StoreWriter(path, compression=None) as writer:
        for group, source in SOURCES.items():
            kind = schema.GROUP_KIND[group]
            for i in range(per_group + n_test):
                length = int(rng.integers(min_len, max_len + 1))
                seq = "".join(rng.choice(list(tokenizer.AMINO_ACIDS), size=length))
                res, pair = _random_targets(length + 2, kind, rng)
                writer.add(StoredProtein(
                    name=f"{group}_{i}", sequence=seq, source=source, group=group,
                    label="train" if i < per_group else "test", kind=kind, residue=res, pair=pair,
                ))
    return path


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_store(tmp_path_factory.mktemp("store") / "synthetic.h5")


def test_token_counts_match_tokenizer() -> None:
    seqs = pd.Series(["MKTAYIAK", "ACDE:FGH", "MK<eos><cls>LLV", " mkt ay "])
    want = [len(tokenizer.encode(s).ids) for s in seqs]
    assert token_counts(seqs).tolist() == want


def test_stream_is_a_sequence_of_permutations() -> None:
    members = np.arange(10, 17)
    stream = GroupStream(members, seed=3, group_id=0)
    first = stream.items(0, 7)
    assert sorted(first.tolist()) == members.tolist()  # one epoch visits each protein once
    spanning = stream.items(5, 12)
    assert spanning.tolist() == first[5:].tolist() + stream.items(7, 12).tolist()
    again = GroupStream(members, seed=3, group_id=0).items(5, 12)
    assert spanning.tolist() == again.tolist()
    assert GroupStream(members, seed=4, group_id=0).items(0, 7).tolist() != first.tolist()


def test_crop_start_is_uniform_and_deterministic() -> None:
    starts = [crop_start(1, 0, p, tokens=20, max_tokens=8) for p in range(3000)]
    assert min(starts) == 0 and max(starts) == 12
    counts = np.bincount(starts, minlength=13)
    assert counts.min() > 150  # ~231 expected per start
    assert crop_start(1, 0, 7, 20, 8) == starts[7]
    assert crop_start(1, 0, 7, tokens=8, max_tokens=8) == 0


def test_plan_shards_the_same_global_batch_over_ranks(synthetic_store: Path) -> None:
    store = DynamicsStore.open(synthetic_store)
    catalog = Catalog.from_stores([store])

    def plan(rank: int, world: int) -> TrainPlan:
        return TrainPlan(catalog, schema.SOURCE_GROUPS, label="train", seed=5, sequences_per_group=4,
                         rank=rank, world_size=world, max_tokens_at=lambda u: 16, micro_batch_at=lambda u: 2)

    single = plan(0, 1)
    for update in (1, 2, 5):
        for group in single.groups:
            whole = sorted((s.row, s.start) for s in single.group_samples(update, group))
            split = sorted((s.row, s.start) for r in range(2) for s in plan(r, 2).group_samples(update, group))
            assert whole == split
            assert all(catalog.labels[row] == "train" and catalog.groups[row] == group for row, _ in whole)
    keys = list(single.keys(3, 4))
    assert [k.update for k in keys] == [3] * 6 + [4] * 6
    assert [k.group for k in keys[:6]] == ["md", "md", "idr", "idr", "nma", "nma"]
    with pytest.raises(ValueError, match="divisible"):
        plan(0, 3)


def test_window_read_and_collation(synthetic_store: Path) -> None:
    store = DynamicsStore.open(synthetic_store)
    whole = store.read("md_0")
    n = whole.residue.shape[0]
    sample = load_sample(store, "md_0", 3, 3 + 10)
    ids = tokenizer.encode(whole.sequence).ids
    np.testing.assert_array_equal(sample.ids, ids[3:13])
    np.testing.assert_array_equal(sample.residue, whole.residue[3:13])
    np.testing.assert_array_equal(sample.pair, whole.pair[3:13, 3:13])
    other = load_sample(store, "md_1", 0, None)
    batch = collate([sample, other], "md")
    width = max(10, len(other.ids))
    assert batch.input_ids.shape == (2, width)
    assert batch.residue_target.shape == (2, width, 47) and batch.pair_target.shape == (2, width, width, 10)
    assert int(batch.attention_mask[0].sum()) == 10
    assert (batch.input_ids[0, 10:] == tokenizer.PAD_ID).all()
    assert (batch.residue_target[0, 10:] == -1).all() and (batch.pair_target[0, :, 10:] == -1).all()
    with pytest.raises(ValueError, match="trains the nma block"):
        collate([sample], "nma")
    assert n > 0


def test_dataset_reads_plan_keys(synthetic_store: Path) -> None:
    store = DynamicsStore.open(synthetic_store)
    catalog = Catalog.from_stores([store])
    plan = TrainPlan(catalog, ["nma"], label="train", seed=0, sequences_per_group=3, max_tokens_at=lambda u: 12,
                     micro_batch_at=lambda u: 2)
    ds = MicroBatchDataset([store], catalog)
    batches = [ds[k] for k in plan.keys(1, 1)]
    assert [len(b.names) for b in batches] == [2, 1]
    assert all(b.input_ids.shape[1] <= 12 for b in batches)
    assert batches[0].residue_target.shape[-1] == 3
