import numpy as np
import pytest

from seqdance import tokenizer as tk


def test_vocab_matches_released_files(shared_data):
    for size in ("esm2_t6_8M_UR50D", "esm2_t12_35M_UR50D"):
        vocab = (shared_data / "esm2" / size / "vocab.txt").read_text().split()
        assert tuple(vocab) == tk.ESM2_VOCAB


def test_ids_equal_transformers_tokenizer(shared_data):
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(shared_data / "esm2" / "esm2_t12_35M_UR50D"))
    for seq in ["ACDEFGHIKLMNPQRSTVWYXBUZO", "MKT<mask>LLV", "A.-C", "MKV LLA\n"]:
        assert tk.encode(seq).ids.tolist() == hf(seq)["input_ids"]


def test_lower_case_and_errors():
    assert tk.encode("acd").ids.tolist() == tk.encode("ACD").ids.tolist()
    with pytest.raises(tk.SequenceError, match=r"'P1'.*'J' at residue 3"):
        tk.encode("ACJD", seq_id="P1")
    with pytest.raises(tk.SequenceError, match="chain 2 is empty"):
        tk.encode("ACD:", seq_id="P1")
    with pytest.raises(tk.SequenceError, match="residue 4"):
        tk.encode("AC:D1", seq_id="x")


def test_multichain_linker_and_roundtrip():
    enc = tk.encode("ACD:EF")
    assert enc.ids.tolist() == [0, 5, 23, 13, 2, 0, 9, 18, 2]
    assert enc.residue_index.tolist() == [1, 2, 3, 6, 7]
    assert enc.chain_lengths == (3, 2)
    assert tk.decode(enc.ids) == "ACD:EF"
    assert tk.encode(["ACD", "EF"]).ids.tolist() == enc.ids.tolist()
    ids, mask = tk.pad_batch([tk.encode("AC"), enc])
    assert ids.shape == (2, 9) and ids[0, 4:].eq(tk.PAD_ID).all() and mask.sum().item() == 13
    assert np.array_equal(tk.residue_token_mask(enc.ids).nonzero()[0], enc.residue_index)
