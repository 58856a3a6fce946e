"""The one run protocol (seqdance.inference.sharded_run) as each command uses it: for predict, embed, score,
benchmark-dms and analyze attention, a truncated, empty or foreign output of one unit (another sequence, another
model) is recomputed on the next run, and ``merge`` refuses an output whose sequence differs from the plan, naming
the file. Every hostile file is written by the test itself (hostile-input audit, items 1, 2, 5, 9, 10, 19)."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from _checkpoints import write_released_checkpoint
from conftest import require

from seqdance.cli.main import main
from seqdance.errors import InputError
from seqdance.inference.embedding_store import read_embeddings
from seqdance.inference.prediction_io import unique_stems
from seqdance.inference.runs import RunOptions, run_embeddings, run_predictions
from seqdance.io_utils import read_fasta
from seqdance.model import load_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"dyn": write_released_checkpoint(root / "dyn", seed=5),
            "other": write_released_checkpoint(root / "other", seed=6)}


@pytest.fixture(scope="module")
def wild_types(shared_data) -> dict[str, str]:
    folder = require(shared_data / "proteingym_single_dev" / "fasta")
    return {p.stem: read_fasta(p)[0].sequence for p in sorted(folder.glob("*.fasta"))}


def write_fasta(path: Path, records: dict[str, str]) -> Path:
    path.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in records.items()))
    return path


def damage(path: Path, how: str) -> None:
    """Truncate a file to half, empty it, or replace it by text."""
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "text": b"not what it claims\n"}[how])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def npz_arrays(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as data:
            out[path.name] = {k: data[k] for k in data.files}
    return out


def same_arrays(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys(), name
        for key in a[name]:
            assert np.array_equal(a[name][key], b[name][key], equal_nan=a[name][key].dtype.kind == "f"), (name, key)


# --- predict -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def records(wild_types) -> dict[str, str]:
    seqs = list(wild_types.values())
    return {"a": seqs[0][:40], "b": seqs[1][:25], "c": seqs[2][:33]}


def test_predict_recomputes_damaged_and_foreign_outputs(models, records, tmp_path, capsys):
    fasta = write_fasta(tmp_path / "in.fasta", records)
    out = tmp_path / "out"
    argv = ["predict", str(fasta), "--model", str(models["dyn"]), "-q", "-o", str(out)]
    assert main(argv) == 0
    original = npz_arrays(out)
    table = (out / "residues.csv").read_bytes()
    capsys.readouterr()
    damage(out / "a.npz", "truncated")
    damage(out / "b.npz", "empty")
    np.savez(out / "c.npz", **original["a.npz"])  # c.npz holds a prediction of sequence a
    assert main(argv) == 0
    assert "3 predicted, 0 already done" in capsys.readouterr().err
    same_arrays(npz_arrays(out), original)  # the batch is recomputed whole: bitwise what it was
    assert (out / "residues.csv").read_bytes() == table
    # a file of another model under the same model name (other weights), a text file and object arrays
    stems = unique_stems(list(records))
    name = str(models["dyn"].resolve())
    run_predictions(load_model(str(models["other"])), list(records), list(records.values()), tmp_path / "scratch",
                    stems, model_name=name)
    shutil.copy(tmp_path / "scratch" / "a.npz", out / "a.npz")
    damage(out / "b.npz", "text")
    np.savez(out / "c.npz", **{**original["c.npz"], "vdw": np.array([object()], dtype=object)})
    assert main(argv) == 0
    assert "3 predicted, 0 already done" in capsys.readouterr().err
    same_arrays(npz_arrays(out), original)


def test_merge_refuses_a_prediction_of_another_sequence_and_damaged_files(models, records, shared_data, tmp_path,
                                                                           capsys):
    fasta = write_fasta(tmp_path / "in.fasta", records)
    done = tmp_path / "done"
    for i in range(2):
        assert main(["predict", str(fasta), "--model", str(models["dyn"]), "-q", "-o", str(done), "--shard",
                     f"{i}/2", "--batch-tokens", "40"]) == 0
    assert main(["merge", str(done)]) == 0
    victim = done / "a.npz"
    keep = tmp_path / "keep.npz"
    shutil.copy(victim, keep)
    owner = next(i for i in range(2) if '"a"' in (done / "shards" / f"shard-{i}-of-2.json").read_text())
    capsys.readouterr()
    shutil.copy(done / "b.npz", victim)  # a prediction of another sequence, under a's name
    assert main(["merge", str(done)]) == 1
    assert one_error_line(capsys) == (f"seqdance merge: error: {victim} holds a result of another sequence than the "
                                      f"run's input, so it is not merged; rerun shard {owner}/2 (it recomputes it)")
    structure = sorted(require(shared_data / "structures" / "bioemu_reference").rglob("*.pdb"))[0]
    for how in ("truncated", "text", "object"):
        shutil.copy(keep, victim)
        if how == "object":
            with np.load(keep) as data:
                np.savez(victim, **{**{k: data[k] for k in data.files}, "id": np.array(["a"], dtype=object)})
        else:
            damage(victim, how)
        assert main(["merge", str(done)]) == 1
        line = one_error_line(capsys)
        assert line.startswith(f"seqdance merge: error: {victim} is unreadable (") and "rerun shard" in line, line
        assert main(["map", str(victim), "--structure", str(structure), "-o", str(tmp_path / "x.pdb")]) == 1
        line = one_error_line(capsys)
        assert line.startswith(f"seqdance map: error: {victim}: not a readable seqdance prediction file ("), line
    shutil.copy(keep, victim)
    assert main(["merge", str(done)]) == 0


def test_a_shard_without_work_says_why(models, tmp_path, capsys):
    fasta = write_fasta(tmp_path / "four.fasta", {f"s{i}": "MKTAYIAKQR"[: 6 + i] for i in range(4)})
    out = tmp_path / "out"
    base = ["predict", str(fasta), "--model", str(models["dyn"]), "-q", "-o", str(out)]
    assert main([*base, "--shard", "1/2"]) == 0
    err = capsys.readouterr().err
    assert ("shard 1/2 received no batch: the run's 4 inputs make 1 batch, dealt whole to 2 shards, so 1 "
            "shard has nothing to compute") in err
    assert "shard 1/2: 0 predicted, 0 already done; 0 files" in err
    assert main([*base, "--shard", "0/2"]) == 0
    err = capsys.readouterr().err
    assert "received no" not in err and "all 2 shards finished; residues.csv written" in err


def test_the_callers_model_is_never_moved(models):
    from seqdance.inference.predict import iter_predictions

    model = load_model(str(models["dyn"]))
    with pytest.raises(InputError, match=r"the model is on cpu, not meta: move it first"):
        next(iter_predictions(model, ["MKTAYIAK"], device="meta"))
    assert next(model.parameters()).device.type == "cpu"
    assert next(iter_predictions(model, ["MKTAYIAK"], device="cpu"))[1].n_residues == 8


def test_each_sequence_is_tokenised_once(models, records, tmp_path, monkeypatch):
    import importlib

    calls: list[str] = []
    for name in ("predict", "records", "prediction_io"):  # every module of the predict path that tokenises
        module = importlib.import_module(f"seqdance.inference.{name}")
        real = module.encode
        monkeypatch.setattr(module, "encode", lambda seq, name=None, _real=real: calls.append(name) or _real(seq, name))
    fasta = write_fasta(tmp_path / "in.fasta", records)
    assert main(["predict", str(fasta), "--model", str(models["dyn"]), "-q", "-o", str(tmp_path / "o")]) == 0
    assert sorted(calls) == sorted(records)


# --- embed ---------------------------------------------------------------------------------------------------


def test_embed_recomputes_damaged_and_foreign_entries(models, records, tmp_path, capsys):
    fasta = write_fasta(tmp_path / "in.fasta", records)
    target = tmp_path / "emb.h5"
    argv = ["embed", str(fasta), "--model", str(models["dyn"]), "-q", "-o", str(target), "--per-residue"]
    assert main(argv) == 0
    means, per_residue = read_embeddings(target), read_embeddings(target, per_residue=True)
    capsys.readouterr()
    damage(target, "truncated")
    assert main(argv) == 0
    assert "3 embedded, 0 already done; 3 entries" in capsys.readouterr().err
    for rid, want in means.items():
        assert np.array_equal(read_embeddings(target)[rid], want)
        assert np.array_equal(read_embeddings(target, per_residue=True)[rid], per_residue[rid])
    # an entry of another sequence under a's name, left in a part file by some other run: recomputed
    name = str(models["dyn"].resolve())
    model = load_model(str(models["dyn"]))
    run_embeddings(model, ["a"], [records["b"]], tmp_path / "scratch.h5", model_name=name, per_residue=True)
    parts = tmp_path / "emb.h5.parts"
    parts.mkdir()
    shutil.copy(tmp_path / "scratch.h5", parts / "part-999999-0.h5")
    (parts / "part-999998-0.h5").write_bytes(b"")  # an empty part: recomputed, never a traceback
    assert main(argv) == 0
    assert "1 embedded, 2 already done" in capsys.readouterr().err
    assert np.array_equal(read_embeddings(target)["a"], means["a"])
    # shards: a truncated shard file and a shard entry of another sequence are named by merge
    sharded = tmp_path / "sharded.h5"
    for i in range(2):
        assert main([*argv[:-3], "-o", str(sharded), "--per-residue", "--shard", f"{i}/2", "--batch-tokens",
                     "40"]) == 0
    shard_files = sorted((tmp_path / "sharded.h5.shards").glob("*.h5"))
    owner = next(f for f in shard_files if "a" in read_embeddings_index(f))
    keep = tmp_path / "keep.h5"
    shutil.copy(owner, keep)
    capsys.readouterr()
    damage(owner, "truncated")
    assert main(["merge", str(sharded)]) == 1
    line = one_error_line(capsys)
    assert line.startswith(f"seqdance merge: error: {owner}: not a readable embeddings file ("), line
    shutil.copy(tmp_path / "scratch.h5", owner)
    assert main(["merge", str(sharded)]) == 1
    assert one_error_line(capsys) == (
        f"seqdance merge: error: {owner}: the entry 'a' holds a result of another sequence than the run's input, so "
        f"it is not merged; rerun shard {owner.name.split('-')[1]}/2 (it recomputes it)")
    shutil.copy(keep, owner)
    assert main(["merge", str(sharded)]) == 0


def read_embeddings_index(path: Path) -> set[str]:
    with h5py.File(path) as fh:
        return {str(fh["mean"][k].attrs["id"]) for k in fh["mean"]}


def test_probe_and_embed_give_identical_embeddings_for_1500_residues(models, wild_types, tmp_path):
    """One embedding path: a 1,500-residue protein (two windows) and short ones, both poolings, bitwise."""
    from seqdance.analysis.probe_run import probe_models, read_label_table

    long = next(s for s in wild_types.values() if len(s) >= 1500)[:1500]
    shorts = [s[:n] for s, n in zip(list(wild_types.values())[:5], (30, 45, 60, 52, 38))]
    sequences = {"long": long, **{f"s{k}": s for k, s in enumerate(shorts)}}
    write_fasta(tmp_path / "in.fasta", sequences)
    assert main(["embed", str(tmp_path / "in.fasta"), "--model", str(models["dyn"]), "-q", "-o",
                 str(tmp_path / "emb.h5")]) == 0
    labels = pd.DataFrame({"name": list(sequences), "sequence": list(sequences.values()),
                           "y": np.arange(len(sequences), dtype=float)})
    labels["split_0"] = ["test"] * 3 + ["train"] * (len(sequences) - 3)  # probe needs 3 test proteins
    labels.to_csv(tmp_path / "labels.csv", index=False)
    model = load_model(str(models["dyn"]))
    table = read_label_table(tmp_path / "labels.csv")
    for pooling in ("all", "residues"):
        cache = tmp_path / f"cache_{pooling}"
        result = probe_models([("m", model)], table, pooling=pooling, pca=None, estimators=["linear"],
                              cache_dir=cache)
        assert result.embedding_stats["windowed"].tolist() == [1]
        cached = read_embeddings(next(cache.glob("*.h5")), pooling=pooling)
        from seqdance.inference.sharding import text_digest

        embedded = read_embeddings(tmp_path / "emb.h5", pooling=pooling)
        for rid, seq in sequences.items():
            assert np.array_equal(cached[text_digest(seq)], embedded[rid]), (pooling, rid)
    # the notebook's pooling of a one-window protein is the mean over all its tokens of one forward pass
    from seqdance.tokenizer import encode

    ids = torch.as_tensor(encode(shorts[0]).ids)[None]
    with torch.no_grad():
        hidden = model(ids, pairs=False, return_embeddings=True).embeddings[0].double()
    np.testing.assert_allclose(read_embeddings(tmp_path / "emb.h5", pooling="all")["s0"], hidden.mean(0).numpy(),
                               atol=2e-5)


# --- score ---------------------------------------------------------------------------------------------------


def test_score_recomputes_cut_empty_and_foreign_tables(models, wild_types, tmp_path, capsys):
    seqs = list(wild_types.values())
    fasta = write_fasta(tmp_path / "wt.fasta", {"p0": seqs[0][:8], "p1": seqs[1][:12], "p2": seqs[2][:10]})
    out = tmp_path / "scan"
    argv = ["score", "--model", str(models["dyn"]), "--fasta", str(fasta), "--saturation", "--properties",
            "sasa_mean", "psi", "-q", "-o", str(out)]
    assert main(argv) == 0
    combined = (out / "scores.csv").read_bytes()
    assert len(pd.read_csv(out / "scores.csv")) == 19 * 30
    tables = out / "proteins"
    capsys.readouterr()
    p0 = tables / "p0.csv"
    p0.write_text("".join(p0.read_text().splitlines(keepends=True)[:11]))  # 10 rows of 152
    p1 = tables / "p1.csv"
    p1.write_bytes(p1.read_bytes()[:-7])  # cut in the middle of its last row
    (tables / "p2.csv").write_text("")
    assert main(argv) == 0
    assert "3 proteins scored, 0 already done, of 3" in capsys.readouterr().out
    assert (out / "scores.csv").read_bytes() == combined
    for suffix in (".csv", ".json"):  # p1's table and key under p0's name: another sequence
        shutil.copy(tables / f"p1{suffix}", tables / f"p0{suffix}")
    assert main(argv) == 0
    assert "1 protein scored, 2 already done, of 3" in capsys.readouterr().out
    assert (out / "scores.csv").read_bytes() == combined
    assert main([*argv, "--overwrite"]) == 0
    assert "3 proteins scored, 0 already done, of 3" in capsys.readouterr().out
    # merge refuses a table of another sequence
    sharded = tmp_path / "sharded"
    for i in range(2):
        assert main([*argv[:-1], str(sharded), "--shard", f"{i}/2"]) == 0
    for suffix in (".csv", ".json"):
        shutil.copy(sharded / "proteins" / f"p1{suffix}", sharded / "proteins" / f"p0{suffix}")
    capsys.readouterr()
    assert main(["merge", str(sharded)]) == 1
    line = one_error_line(capsys)
    assert (f"{sharded / 'proteins' / 'p0.csv'} holds a result of another sequence than the run's input, so it is "
            "not merged; rerun shard") in line


# --- benchmark-dms -------------------------------------------------------------------------------------------


@pytest.fixture
def assays(shared_data, tmp_path) -> Path:
    source = require(shared_data / "proteingym_single_dev")
    folder = tmp_path / "assays"
    for sub in ("mutant", "fasta"):
        (folder / sub).mkdir(parents=True)
    for name in ("CCDB_ECOLI_Adkar_2012", "SPG1_STRSG_Olson_2014"):
        shutil.copy(require(source / "mutant" / f"{name}.csv"), folder / "mutant")
        shutil.copy(require(source / "fasta" / f"{name}.fasta"), folder / "fasta")
    return folder


def test_benchmark_recomputes_damaged_and_foreign_results(models, assays, tmp_path, capsys, monkeypatch):
    base = ["benchmark-dms", "--assays", str(assays), "--max-variants", "12", "--window", "60", "--properties",
            "sasa_mean", "psi", "-q"]
    out = tmp_path / "results"
    argv = [*base, "--model", str(models["dyn"]), "-o", str(out)]
    assert main(argv) == 0
    per_assay = (out / "per_assay.csv").read_bytes()
    capsys.readouterr()
    damage(out / "scores" / "CCDB_ECOLI_Adkar_2012.csv", "truncated")
    (out / "metrics" / "SPG1_STRSG_Olson_2014.csv").write_text("")
    assert main(argv) == 0
    assert "2 of 2 assays evaluated (0 from an earlier run)" in capsys.readouterr().out
    assert (out / "per_assay.csv").read_bytes() == per_assay
    # the results of another model (its key file and tables) copied over one assay's: recomputed
    other = tmp_path / "other"
    assert main([*base, "--model", str(models["other"]), "-o", str(other)]) == 0
    for folder, suffix in (("scores", ".csv"), ("proteingym", ".csv"), ("metrics", ".csv"), ("keys", ".json")):
        shutil.copy(other / folder / f"CCDB_ECOLI_Adkar_2012{suffix}", out / folder)
    capsys.readouterr()
    assert main(argv) == 0
    assert "2 of 2 assays evaluated (1 from an earlier run)" in capsys.readouterr().out
    assert (out / "per_assay.csv").read_bytes() == per_assay
    # merge names the key file of another model's results
    sharded = tmp_path / "sharded"
    for i in range(2):
        assert main([*base, "--model", str(models["dyn"]), "-o", str(sharded), "--shard", f"{i}/2"]) == 0
    for folder, suffix in (("scores", ".csv"), ("proteingym", ".csv"), ("metrics", ".csv"), ("keys", ".json")):
        shutil.copy(other / folder / f"CCDB_ECOLI_Adkar_2012{suffix}", sharded / folder)
    capsys.readouterr()
    assert main(["merge", str(sharded)]) == 1
    assert (f"{sharded / 'keys' / 'CCDB_ECOLI_Adkar_2012.json'} holds a result of another model (its fingerprint "
            "differs), so it is not merged") in one_error_line(capsys)
    # only a user error is an assay's failure; a bug stops the run with its traceback
    import seqdance.scoring.dms as dms

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(dms, "score_variants", broken)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        dms.run_benchmark(dms.discover_assays(assays), tmp_path / "bug", model=load_model(str(models["dyn"])),
                          max_variants=12, window=60, properties=["psi"])


# --- analyze attention ---------------------------------------------------------------------------------------


def test_attention_recomputes_damaged_and_foreign_tables(md_store, models, tmp_path, capsys, monkeypatch):
    from seqdance.analysis import attention_run

    out = tmp_path / "att"
    argv = ["analyze", "attention", "--model", str(models["dyn"]), "--store", str(md_store), "-o", str(out), "-q",
            "--device", "cpu"]
    assert main(argv) == 0
    per_head = (out / "per_head.csv").read_bytes()
    names = list(dict.fromkeys(pd.read_csv(out / "per_head.csv")["protein"]))
    assert len(names) == 3
    other = tmp_path / "other"
    assert main([*argv[:3], str(models["other"]), *argv[4:7], str(other), *argv[8:]]) == 0
    tables = out / attention_run.PROTEINS_DIR
    damage(tables / f"{names[0]}.csv", "truncated")
    (tables / f"{names[1]}.csv").write_text("")
    for suffix in (".csv", ".json"):  # another model's table of the same protein
        shutil.copy(other / attention_run.PROTEINS_DIR / f"{names[2]}{suffix}", tables)
    computed = []
    real = attention_run._protein_rows
    monkeypatch.setattr(attention_run, "_protein_rows", lambda enc, st, name, *a: computed.append(name) or
                        real(enc, st, name, *a))
    capsys.readouterr()
    assert main(argv) == 0
    assert sorted(computed) == sorted(names)
    assert (out / "per_head.csv").read_bytes() == per_head
    # sharded: the last shard writes the report; merge refuses another protein's table under a name
    sharded = tmp_path / "sharded"
    for i in range(2):
        assert main([*argv[:7], str(sharded), *argv[8:], "--shard", f"{i}/2"]) == 0
    assert (sharded / "per_head.csv").read_bytes() == per_head
    for suffix in (".csv", ".json"):
        shutil.copy(sharded / "proteins" / f"{names[1]}{suffix}", sharded / "proteins" / f"{names[0]}{suffix}")
    capsys.readouterr()
    assert main(["merge", str(sharded)]) == 1
    assert (f"{sharded / 'proteins' / (names[0] + '.csv')} holds a result of another sequence than the run's input"
            in one_error_line(capsys))


def test_run_options_of_a_prediction_are_part_of_its_key(models, records, tmp_path):
    """Other window settings make other values: a file of the default window is not reused for window 20."""
    model = load_model(str(models["dyn"]))
    stems = unique_stems(list(records))
    first = run_predictions(model, list(records), list(records.values()), tmp_path, stems, model_name="m")
    assert first.n_computed == 3
    again = run_predictions(model, list(records), list(records.values()), tmp_path, stems, model_name="m",
                            options=RunOptions(window=20))
    assert (again.n_computed, again.n_done) == (3, 0)
