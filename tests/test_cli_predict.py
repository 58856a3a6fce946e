"""``seqdance predict`` / ``seqdance embed`` end to end on a locally saved tiny model."""

from __future__ import annotations

import argparse

import h5py
import numpy as np
import pandas as pd
import pytest
from _checkpoints import write_released_checkpoint

from seqdance.cli import embed as embed_cli
from seqdance.cli import predict as cli
from seqdance.inference.embedding_store import EmbeddingWriter, read_embeddings
from seqdance.inference.embeddings import embed_sequences, window_options
from seqdance.inference.fingerprint import module_fingerprint
from seqdance.inference.predict import predict
from seqdance.inference.prediction_io import METADATA_KEYS, RESIDUE_TABLE_COLUMNS, load_prediction, safe_stem
from seqdance.model import load_model
from seqdance.schema import PROPERTY_NAMES, RESIDUE_PROPERTIES, SS_CLASSES

RECORDS = {
    "p1": "MKTAYIAKQRQISFVKSHFSRQ",
    "sp|P0A7|TEST protein": "ACDEFGHIKLMNPQRSTVWY",  # id needs sanitising for a file name
    "cplx": "MKVLA:GGSWH",
}


def write_fasta(path, records):
    path.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in records.items()))
    return path


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli.register(sub)
    embed_cli.register(sub)
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_released_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", "tiny", "esmdance", seed=3)


@pytest.fixture(scope="module")
def expected(checkpoint):
    model = load_model(str(checkpoint))
    ids = [rid.split()[0] for rid in RECORDS]
    return {p.id: p for p in predict(model, list(RECORDS.values()), ids=ids, embeddings=True)}


def test_predict_writes_npz_and_residue_table(tmp_path, checkpoint, expected, capsys):
    fasta = write_fasta(tmp_path / "in.fasta", RECORDS)
    out = tmp_path / "out"
    assert run("predict", str(fasta), "-o", str(out), "--model", str(checkpoint), "-q") == 0
    assert sorted(p.name for p in out.glob("*.npz")) == ["cplx.npz", "p1.npz", "sp_P0A7_TEST.npz"]
    assert safe_stem("sp|P0A7|TEST") == "sp_P0A7_TEST"
    with np.load(out / "cplx.npz") as data:
        assert set(data.files) == {*PROPERTY_NAMES, *METADATA_KEYS}
        assert str(data["id"]) == "cplx" and data["chain_lengths"].tolist() == [5, 5]
        assert data["vdw"].shape == (10, 10) and data["ss"].shape == (10, 8)
    for rid, want in expected.items():
        got = load_prediction(out / f"{safe_stem(rid)}.npz")
        assert got.id == rid and got.sequence == want.sequence
        for name in PROPERTY_NAMES:
            np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-6)

    table = pd.read_csv(out / "residues.csv")
    scalars = [p.name for p in RESIDUE_PROPERTIES if p.width == 1]
    assert list(table.columns) == ["id", "chain", "position", "residue", *scalars, "ss"]
    assert tuple(table.columns) == RESIDUE_TABLE_COLUMNS
    assert len(table) == sum(len(s.replace(":", "")) for s in RECORDS.values())
    cplx = table[table["id"] == "cplx"]
    assert cplx["chain"].tolist() == [1] * 5 + [2] * 5 and cplx["position"].tolist() == [1, 2, 3, 4, 5] * 2
    assert "".join(cplx["residue"]) == "MKVLAGGSWH"
    p1 = table[table["id"] == "p1"]
    np.testing.assert_allclose(p1["rmsf_nor"], expected["p1"]["rmsf_nor"], rtol=1e-5)
    assert p1["ss"].tolist() == [SS_CLASSES[k] for k in expected["p1"]["ss"].argmax(axis=1)]
    assert "3 predicted, 0 already done" in capsys.readouterr().err


def test_predict_resumes_and_completes_missing_outputs(tmp_path, checkpoint, capsys):
    fasta = write_fasta(tmp_path / "in.fasta", RECORDS)
    out = tmp_path / "out"
    assert run("predict", str(fasta), "-o", str(out), "--model", str(checkpoint), "-q", "--no-pairs") == 0
    with np.load(out / "p1.npz") as data:
        assert "vdw" not in data.files and "sasa_mean" in data.files
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npz")}
    (out / "p1.npz").unlink()
    capsys.readouterr()
    assert run("predict", str(fasta), "-o", str(out), "--model", str(checkpoint), "-q", "--no-pairs") == 0
    assert "1 predicted, 2 already done" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.npz") if p.name != "p1.npz"} == {
        k: v for k, v in stamps.items() if k != "p1.npz"
    }
    assert len(pd.read_csv(out / "residues.csv")) == 22 + 20 + 10
    # Asking for more (pairs, embeddings) recomputes the files that lack it.
    assert run("predict", str(fasta), "-o", str(out), "--model", str(checkpoint), "-q", "--embeddings") == 0
    assert "3 predicted" in capsys.readouterr().err
    with np.load(out / "cplx.npz") as data:
        assert "vdw" in data.files and data["embedding"].shape == (10, 32)
    # Another model into the same directory is refused.
    other = write_released_checkpoint(tmp_path / "other", "tiny", "esmdance", seed=4)
    with pytest.raises(ValueError, match="was predicted with model"):
        run("predict", str(fasta), "-o", str(out), "--model", str(other), "-q")
    assert not list(out.glob(".*.tmp"))


def test_bad_record_stops_the_run_or_is_skipped(tmp_path, checkpoint, capsys):
    fasta = write_fasta(tmp_path / "in.fasta", {"good": "MKVLA", "bad1": "MKJLA", "bad2": "AC:"})
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"2 invalid record\(s\).*'bad1'.*'J' at residue 3.*'bad2'"):
        run("predict", str(fasta), "-o", str(out), "--model", str(checkpoint), "-q")
    assert not out.exists() or not list(out.glob("*.npz"))
    assert run("predict", str(fasta), "-o", str(out), "--model", str(checkpoint), "-q", "--skip-invalid") == 0
    assert "skipped invalid record: sequence 'bad1'" in capsys.readouterr().err
    assert [p.name for p in out.glob("*.npz")] == ["good.npz"]


def test_colliding_ids_are_refused(tmp_path, checkpoint):
    fasta = write_fasta(tmp_path / "in.fasta", {"a|b": "MKV", "a_b": "MKV"})
    with pytest.raises(ValueError, match="same file name"):
        run("predict", str(fasta), "-o", str(tmp_path / "out"), "--model", str(checkpoint), "-q")


def test_embed_writes_hdf5_and_resumes(tmp_path, checkpoint, expected, capsys):
    fasta = write_fasta(tmp_path / "in.fasta", RECORDS)
    target = tmp_path / "emb.h5"
    # An interrupted earlier run left a part with one entry of this model: it is kept and not recomputed.
    model = load_model(str(checkpoint))
    writer = EmbeddingWriter(target, model=str(checkpoint.resolve()), per_residue=True,
                             fingerprint=module_fingerprint(model), options=window_options())
    writer.add(embed_sequences(model, [RECORDS["p1"]], ids=["p1"])[0])
    writer.flush()
    assert run("embed", str(fasta), "-o", str(target), "--model", str(checkpoint), "--per-residue", "-q") == 0
    assert "2 embedded, 1 already done; 3 entries" in capsys.readouterr().err
    assert not (tmp_path / "emb.h5.parts").exists()
    with h5py.File(target) as fh:
        assert fh.attrs["embedding_dim"] == 32
        assert [s.decode() for s in fh["index/id"][()]] == ["p1", "sp|P0A7|TEST", "cplx"]
        assert fh["index/length"][()].tolist() == [22, 20, 10]
    means = read_embeddings(target)
    per_residue = read_embeddings(target, per_residue=True)
    # embed runs the residue-only (SDPA) path, ``expected`` the eager one: equal up to float rounding
    for rid, want in expected.items():
        np.testing.assert_allclose(means[rid], want.embedding.mean(axis=0), rtol=0, atol=1e-5)
        np.testing.assert_allclose(per_residue[rid], want.embedding, rtol=0, atol=1e-5)
    assert per_residue["cplx"].shape == (10, 32)
    assert run("embed", str(fasta), "-o", str(target), "--model", str(checkpoint), "-q") == 0
    assert "0 embedded, 3 already done" in capsys.readouterr().err


def test_unavailable_device_is_a_clear_error(tmp_path, checkpoint):
    fasta = write_fasta(tmp_path / "in.fasta", {"p": "MKV"})
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        run("predict", str(fasta), "-o", str(tmp_path / "o"), "--model", str(checkpoint), "--device", "gpu")
