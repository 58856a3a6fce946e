"""The embedding store's entries of cropped inputs and its per-residue reads (what fine-tuning keeps in it)."""

from __future__ import annotations

import numpy as np
import pytest

from seqdance.errors import InputError
from seqdance.inference.embedding_store import EmbeddingWriter, read_embeddings, read_entries
from seqdance.inference.embeddings import Embedding

FP = "f" * 64


def _embedding(sequence: str, rows: int, dim: int = 4, seed: int = 0) -> Embedding:
    per_residue = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return Embedding(sequence, sequence, (len(sequence),), per_residue,
                     {"residues": per_residue.mean(0), "all": per_residue.mean(0) + 1})


def _writer(path, per_residue=True, options="crop"):
    return EmbeddingWriter(path, model="m", per_residue=per_residue, fingerprint=FP, options=options)


def test_cropped_entries_record_what_they_kept_and_read_back(tmp_path):
    path = tmp_path / "e.h5"
    writer = _writer(path)
    cropped, whole = _embedding("MKTAYIAK", 5, seed=1), _embedding("GSHM", 4, seed=2)
    writer.add(cropped, key="a", kept=5)
    writer.add(whole, key="b")
    writer.flush()
    assert writer.is_done("a", "MKTAYIAK") and writer.is_done("b", "GSHM")
    got = writer.read_per_residue(["a", "b"])  # from the part file
    np.testing.assert_array_equal(got["a"], cropped.per_residue)
    assert writer.close() == 2
    entries = read_entries(path)  # the merged file keeps the attribute
    assert (entries["a"].kept, entries["a"].length, entries["a"].per_residue_shape) == (5, 8, (5, 4))
    assert entries["b"].kept is None and entries["b"].problem(True) is None
    again = _writer(path)
    assert again.is_done("a", "MKTAYIAK") and not again.is_done("a", "MKTAYIAKQ")
    np.testing.assert_array_equal(again.read_per_residue(["b"])["b"], whole.per_residue)
    np.testing.assert_array_equal(again.read_pooled(["a"], "all")["a"], cropped.pooled["all"])
    assert read_embeddings(path, per_residue=True)["a"].shape == (5, 4)
    # another option (another token limit) is another content
    assert not _writer(path, options="crop 2").is_done("a", "MKTAYIAK")


def test_a_cropped_entry_whose_arrays_disagree_is_recomputed(tmp_path):
    path = tmp_path / "e.h5"
    writer = _writer(path)
    writer.add(_embedding("MKTAYIAK", 5), key="short", kept=6)  # 5 rows recorded as 6 kept
    writer.add(_embedding("MKT", 3), key="long", kept=4)  # more kept than the sequence has
    writer.close()
    entries = read_entries(path)
    assert entries["short"].problem(True) == "has per-residue embeddings of shape (5, 4), not (6, 4)"
    assert entries["long"].problem(False) == "records 4 kept residues for a sequence of 3"
    again = _writer(path)
    assert not again.is_done("short", "MKTAYIAK") and not again.is_done("long", "MKT")
    assert _writer(path, per_residue=False).is_done("short", "MKTAYIAK")  # its means still check out


def test_per_residue_read_of_a_pooled_entry_names_it(tmp_path):
    path = tmp_path / "e.h5"
    writer = _writer(path, per_residue=False)
    writer.add(_embedding("MKTAYIAK", 8), key="a")
    writer.close()
    with pytest.raises(InputError, match=r"e.h5: the entry of 'a' holds no per-residue embeddings"):
        _writer(path, per_residue=False).read_per_residue(["a"])
    with pytest.raises(InputError, match=r"e.h5: no embedding of 'z'"):
        _writer(path).read_per_residue(["z"])
