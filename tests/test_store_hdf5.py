"""DynamicsStore / StoreWriter: our layout, the released layout both ways, O(one protein) reads."""

from __future__ import annotations

import io
import os
import pickle

import h5py
import numpy as np
import pandas as pd
import pytest
from _store_fixtures import synthetic_features
from conftest import require

from seqdance.schema import MASK_VALUE
from seqdance.store import DynamicsStore, StoredProtein, StoreWriter, features_to_targets
from seqdance.store.hdf5 import PAIR_CHUNK, index_csv_path

PROTEINS = [
    ("p_md", "MKTAYIAKQRQISFVKSHFSRQ", "ATLAS", "md"),
    ("p_idr", "GSSGSSEEDDKKRRSPSP", "IDRome", "idr"),
    ("p_nma", "ACDEFGHIKLMNPQRSTVWY" * 5, "proteinflow_pdb", "nma"),
    ("p_complex", "MKTAYIAK:GSHMLE", "proteinflow_sabdab", "nma"),
]


def _write(path, compression="gzip"):
    targets = {}
    with StoreWriter(path, metadata={"frequency": "reference"}, compression=compression) as writer:
        for k, (name, seq, source, group) in enumerate(PROTEINS):
            kind = "nma" if group == "nma" else "md"
            residue, pair = features_to_targets(synthetic_features(seq, kind, seed=k), kind)
            targets[name] = (residue, pair)
            writer.add(StoredProtein(name, seq, source, group, "test" if k == 1 else "train", kind, residue, pair,
                                     {"note": name}))
    DynamicsStore.open(path).export_index(index_csv_path(path))
    return targets


def test_round_trip_index_metadata_windows(tmp_path) -> None:
    path = tmp_path / "s.h5"
    targets = _write(path)
    store = DynamicsStore.open(path)
    assert store.names == [p[0] for p in PROTEINS]
    assert list(store.index.columns[:4]) == ["name", "modify_seq", "source", "label"]
    assert store.index.set_index("name").loc["p_complex", "modify_seq"] == "MKTAYIAK<eos><cls>GSHMLE"
    assert store.metadata["frequency"] == "reference" and store.metadata["format"] == "seqdance-store"
    assert "numpy" in store.metadata["versions"]
    for name, seq, source, group in PROTEINS:
        got = store.read(name)
        np.testing.assert_array_equal(got.residue, targets[name][0])
        np.testing.assert_array_equal(got.pair, targets[name][1])
        assert (got.sequence, got.source, got.group) == (seq, source, group)
        assert got.kind == ("nma" if group == "nma" else "md")
        assert got.provenance == {"note": name}
        assert got.length == len(seq.replace(":", ""))
    assert store.read("p_idr").label == "test"
    crop = store.read("p_nma", window=(10, 40))
    np.testing.assert_array_equal(crop.residue, targets["p_nma"][0][10:40])
    np.testing.assert_array_equal(crop.pair, targets["p_nma"][1][10:40, 10:40])
    with pytest.raises(KeyError, match="nope"):
        store.read("nope")
    # chunked and compressed: random access touches only one protein's chunks
    with h5py.File(path) as fh:
        ds = fh["p_nma_pair_feature"]
        assert ds.chunks == (PAIR_CHUNK, PAIR_CHUNK, 3) and ds.compression == "gzip"
    # picklable for DataLoader workers; reopened lazily
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.read("p_md").pair, targets["p_md"][1])
    store.close()


def test_independent_minimal_reader_reads_our_store(tmp_path, shared_data) -> None:
    """Our store, read the way the released description says (plain h5py + pandas + the HF ESM tokenizer)."""
    transformers = pytest.importorskip("transformers")
    vocab_dir = require(shared_data / "esm2" / "esm2_t12_35M_UR50D")
    hf = transformers.AutoTokenizer.from_pretrained(str(vocab_dir))
    path = tmp_path / "ours.h5"
    targets = _write(path)
    df = pd.read_csv(tmp_path / "ours.csv")
    assert list(df.columns) == ["name", "modify_seq", "source", "label"]
    with h5py.File(path, "r") as fh:
        for row in df.itertuples():
            res = fh[f"{row.name}_res_feature"][:]
            pair = fh[f"{row.name}_pair_feature"][:]
            n_tokens = len(hf(row.modify_seq)["input_ids"])
            assert res.shape[0] == n_tokens and pair.shape[:2] == (n_tokens, n_tokens)
            assert res.shape[1] in (47, 3) and pair.shape[2] in (10, 3)
            assert (res[0] == -1).all() and (res[-1] == -1).all()
            np.testing.assert_array_equal(res, targets[row.name][0])
            np.testing.assert_array_equal(pair, targets[row.name][1])


def test_reads_a_file_built_the_reference_way(tmp_path) -> None:
    """Unchunked float64 datasets at the root, no metadata group, index CSV with the released columns."""
    rows = []
    expected = {}
    with h5py.File(tmp_path / "released.h5", "w") as fh:
        for k, (name, seq, source, group) in enumerate(PROTEINS):
            kind = "nma" if group == "nma" else "md"
            residue, pair = features_to_targets(synthetic_features(seq, kind, seed=10 + k), kind)
            fh.create_dataset(f"{name}_res_feature", data=residue.astype(np.float64))
            fh.create_dataset(f"{name}_pair_feature", data=pair.astype(np.float64))
            expected[name] = (residue, pair)
            rows.append({"name": name, "sequence": seq.replace(":", ""), "source": source,
                         "modify_seq": seq.replace(":", "<eos><cls>"), "label": "test" if k == 0 else "train"})
    pd.DataFrame(rows).to_csv(tmp_path / "index.csv", index=False)
    with pytest.raises(ValueError, match="index CSV"):
        DynamicsStore.open(tmp_path / "released.h5")
    store = DynamicsStore.open(tmp_path / "released.h5", index=tmp_path / "index.csv")
    assert store.released and store.metadata == {"format": "released"}
    assert list(store.index["group"]) == ["md", "idr", "nma", "nma"]
    for name, seq, _, _ in PROTEINS:
        got = store.read(name)
        assert got.residue.dtype == np.float32
        np.testing.assert_array_equal(got.residue, expected[name][0])
        np.testing.assert_array_equal(got.pair, expected[name][1])
        assert got.sequence == seq
    assert store.read("p_md").label == "test"
    from seqdance.store.check import check_store

    report = check_store(tmp_path / "released.h5", index=tmp_path / "index.csv")
    assert report.ok and report.n_checked == len(PROTEINS), [str(p) for p in report.problems]
    # a sibling CSV with the store's stem is found without index=
    pd.DataFrame(rows).drop(columns="label").to_csv(tmp_path / "released.csv", index=False)
    sibling = DynamicsStore.open(tmp_path / "released.h5")
    assert set(sibling.index["label"]) == {"train"}  # no label column: everything is training data
    # converting the released file into our layout (float32, chunked, with an internal index) keeps every value
    from seqdance.store.builder import merge_stores

    assert merge_stores([tmp_path / "released.h5"], tmp_path / "converted.h5") == len(PROTEINS)
    converted = DynamicsStore.open(tmp_path / "converted.h5")
    assert not converted.released and converted.names == [p[0] for p in PROTEINS]
    for name, seq, _, _ in PROTEINS:
        np.testing.assert_array_equal(converted.read(name).pair, expected[name][1])
        assert converted.read(name).sequence == seq


class _CountingFile(io.RawIOBase):
    def __init__(self, path):
        self._fh = open(path, "rb")
        self.bytes_read = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=0):
        return self._fh.seek(offset, whence)

    def tell(self):
        return self._fh.tell()

    def readinto(self, buffer):
        n = self._fh.readinto(buffer)
        self.bytes_read += n
        return n

    def close(self):
        self._fh.close()
        super().close()


def test_reading_one_protein_costs_its_size_not_the_file(tmp_path) -> None:
    path = tmp_path / "big.h5"
    rng = np.random.default_rng(0)
    small = ("small", "MKTAYIAKQR", "ATLAS", "md")
    with StoreWriter(path, compression=None) as writer:
        for k in range(6):  # ~6 x 12 MB of incompressible pair data around one tiny protein
            seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), 550))
            residue, pair = features_to_targets(synthetic_features(seq, "md", seed=k), "md")
            pair[pair != MASK_VALUE] = rng.random(int((pair != MASK_VALUE).sum()))
            writer.add(StoredProtein(f"big{k}", seq, "ATLAS", "md", "train", "md", residue, pair))
            if k == 2:
                r, p = features_to_targets(synthetic_features(small[1], "md"), "md")
                writer.add(StoredProtein(small[0], small[1], "ATLAS", "md", "train", "md", r, p))
    file_size = os.path.getsize(path)
    store = DynamicsStore.open(path)
    counter = _CountingFile(path)
    store._handle, store._pid = h5py.File(counter, "r"), os.getpid()
    before = counter.bytes_read
    got = store.read("small")
    cost = counter.bytes_read - before
    assert got.pair.shape == (12, 12, 10)
    assert cost < 200_000, f"reading a 12-token protein read {cost} bytes of a {file_size}-byte store"
    before = counter.bytes_read
    crop = store.read("big4", window=(0, 64))
    crop_cost = counter.bytes_read - before
    assert crop.pair.shape == (64, 64, 10)
    assert crop_cost < 4 * 64 * 64 * 10 * 4 + 200_000  # a 64-token crop touches ~one chunk of a 552-token map
    assert file_size > 50_000_000
    store.close()


def test_writer_rejects_bad_input_and_leaves_no_file(tmp_path) -> None:
    path = tmp_path / "s.h5"
    residue, pair = features_to_targets(synthetic_features("ACDEF", "md"), "md")
    with pytest.raises(ValueError, match="needs"):
        with StoreWriter(path) as writer:
            writer.add(StoredProtein("x", "ACDEFG", "ATLAS", "md", "train", "md", residue, pair))
    assert not path.exists() and not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="twice"):
        with StoreWriter(path) as writer:
            writer.add(StoredProtein("x", "ACDEF", "ATLAS", "md", "train", "md", residue, pair))
            writer.add(StoredProtein("x", "ACDEF", "ATLAS", "md", "train", "md", residue, pair))
    with pytest.raises(ValueError, match="not usable"):
        with StoreWriter(path) as writer:
            writer.add(StoredProtein("a/b", "ACDEF", "ATLAS", "md", "train", "md", residue, pair))
    assert not path.exists()
    with StoreWriter(path):
        pass  # an empty store is valid
    assert len(DynamicsStore.open(path)) == 0
