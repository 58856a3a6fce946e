"""Sharded predict / embed / score / benchmark-dms: the union of N shards is exactly the single-process run
(N = 1, 2, 3, sequences of very different lengths), resume by content, a killed shard resumes, torchrun ranks
take their shards, and the shards of different runs are not merged."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from _checkpoints import write_esm2_mlm_checkpoint, write_released_checkpoint
from conftest import require

from seqdance.cli.main import main
from seqdance.inference.runs import RunOptions, run_predictions
from seqdance.inference.sharding import Shard
from seqdance.io_utils import read_fasta
from seqdance.model import load_model

REPO = Path(__file__).resolve().parents[1]
#: Residues of each test record: from 7 to 300, so that token balance and record balance differ.
LENGTHS = (300, 7, 45, 12, 160, 90, 25, 230, 60, 9, 120, 33)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def real_sequences(shared_data: Path, lengths) -> dict[str, str]:
    """Pieces of real ProteinGym wild types, cut to the given lengths (each from another protein)."""
    folder = require(shared_data / "proteingym_single_dev" / "fasta")
    sources = [read_fasta(p)[0].sequence for p in sorted(folder.glob("*.fasta"))]
    sources = [s for s in sources if len(s) >= max(lengths)]
    return {f"prot{k}|len{n}": sources[k % len(sources)][k : k + n] for k, n in enumerate(lengths)}


def write_fasta(path: Path, records: dict[str, str]) -> Path:
    path.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in records.items()))
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return write_released_checkpoint(root / "dyn", seed=5), write_esm2_mlm_checkpoint(root / "esm", seed=6)


@pytest.fixture(scope="module")
def fasta(shared_data, tmp_path_factory):
    return write_fasta(tmp_path_factory.mktemp("in") / "in.fasta", real_sequences(shared_data, LENGTHS))


def same_npz_dirs(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.glob("*.npz"))
    assert names and names == sorted(p.name for p in b.glob("*.npz"))
    for name in names:
        with np.load(a / name) as x, np.load(b / name) as y:
            assert x.files == y.files
            for key in x.files:
                assert np.array_equal(x[key], y[key], equal_nan=x[key].dtype.kind == "f"), (name, key)


def test_predict_shards_equal_one_process(checkpoints, fasta, tmp_path, capsys):
    dyn, _ = checkpoints
    base = ["predict", str(fasta), "--model", str(dyn), "-q", "--batch-tokens", "600"]
    single = tmp_path / "single"
    assert main([*base, "-o", str(single)]) == 0
    for n in (1, 2, 3):
        out = tmp_path / f"n{n}"
        for i in range(n):
            assert main([*base, "-o", str(out), "--shard", f"{i}/{n}"]) == 0
            err = capsys.readouterr().err
            finished = f"{'all ' if n > 1 else ''}{n} shard{'s' if n > 1 else ''} finished; residues.csv written"
            assert (finished in err) == (i == n - 1)
        same_npz_dirs(single, out)
        assert (out / "residues.csv").read_bytes() == (single / "residues.csv").read_bytes()
        # the explicit merge checks the run and writes the same table again
        assert main(["merge", str(out)]) == 0
        assert (out / "residues.csv").read_bytes() == (single / "residues.csv").read_bytes()
    # shards own whole batches, balanced by tokens: with 3 shards no shard owns more than ~half the tokens
    import json

    manifests = [json.loads(p.read_text()) for p in sorted((tmp_path / "n3" / "shards").glob("*.json"))]
    owned = [sum(int(name.split("len")[1]) for _, name, *_ in m["items"]) for m in manifests]
    assert sum(owned) == sum(LENGTHS) and max(owned) < 0.5 * sum(owned)


def test_windowed_predictions_shards_equal_one_process(checkpoints, shared_data, tmp_path):
    dyn, _ = checkpoints
    records = real_sequences(shared_data, (150, 20, 90, 8, 64, 66))
    ids, seqs = list(records), list(records.values())
    stems = {i: f"r{k}" for k, i in enumerate(ids)}
    model = load_model(str(dyn))
    options = RunOptions(window=40, window_overlap=16, max_tokens_per_batch=200)  # windows + NaN pairs
    run_predictions(model, ids, seqs, tmp_path / "single", stems, model_name="m", options=options)
    with np.load(tmp_path / "single" / "r0.npz") as data:
        assert np.isnan(data["vdw"]).any() and not np.isnan(data["sasa_mean"]).any()
    for n in (2, 3):
        for i in range(n):
            report = run_predictions(model, ids, seqs, tmp_path / f"n{n}", stems, model_name="m", options=options,
                                     shard=Shard(i, n))
        assert report.merged
        same_npz_dirs(tmp_path / "single", tmp_path / f"n{n}")


def test_embed_shards_equal_one_process(checkpoints, fasta, tmp_path, capsys):
    dyn, _ = checkpoints
    base = ["embed", str(fasta), "--model", str(dyn), "-q", "--batch-tokens", "600", "--per-residue"]
    single = tmp_path / "single.h5"
    assert main([*base, "-o", str(single)]) == 0
    for n in (1, 2, 3):
        out = tmp_path / f"n{n}.h5"
        for i in range(n):
            assert main([*base, "-o", str(out), "--shard", f"{i}/{n}"]) == 0
        with h5py.File(single) as a, h5py.File(out) as b:
            assert a["index/id"][()].tolist() == b["index/id"][()].tolist()
            assert a["index/length"][()].tolist() == b["index/length"][()].tolist() == list(LENGTHS)
            for group in ("mean", "per_residue"):
                assert sorted(a[group]) == sorted(b[group])
                for key in a[group]:
                    assert np.array_equal(a[group][key][()], b[group][key][()]), (group, key)
            assert a.attrs["model_fingerprint"] == b.attrs["model_fingerprint"]
    capsys.readouterr()
    # a rerun of one shard after the merge finds everything done
    assert main([*base, "-o", str(tmp_path / "n2.h5"), "--shard", "1/2"]) == 0
    assert "0 embedded" in capsys.readouterr().err


def test_score_many_proteins_shards_equal_one_process(checkpoints, shared_data, tmp_path, capsys):
    dyn, _ = checkpoints
    fasta = write_fasta(tmp_path / "wt.fasta", real_sequences(shared_data, (8, 30, 14, 22)))
    base = ["score", "--model", str(dyn), "--fasta", str(fasta), "--saturation", "--properties", "sasa_mean", "psi",
            "--no-progress"]
    single = tmp_path / "single"
    assert main([*base, "-o", str(single)]) == 0
    combined = pd.read_csv(single / "scores.csv")
    assert len(combined) == 19 * (8 + 30 + 14 + 22)
    assert combined["id"].unique().tolist() == [r.id for r in read_fasta(fasta)]
    assert list(combined.columns) == ["id", "mutant", "n_mutations", "score", "change_sasa_mean", "change_psi"]
    one = pd.read_csv(single / "proteins" / "prot2_len14.csv")
    pd.testing.assert_frame_equal(one, combined[combined["id"] == "prot2|len14"].drop(columns="id")
                                  .reset_index(drop=True))
    for n in (1, 2, 3):
        out = tmp_path / f"n{n}"
        for i in range(n):
            assert main([*base, "-o", str(out), "--shard", f"{i}/{n}"]) == 0
        assert (out / "scores.csv").read_bytes() == (single / "scores.csv").read_bytes()
        for table in (single / "proteins").glob("*.csv"):
            assert (out / "proteins" / table.name).read_bytes() == table.read_bytes()
    capsys.readouterr()
    # resume by content: a rerun scores nothing; a changed wild type is scored again, alone
    assert main([*base, "-o", str(single)]) == 0
    assert "0 proteins scored, 4 already done" in capsys.readouterr().out
    records = {r.id: r.sequence for r in read_fasta(fasta)}
    records["prot1|len30"] = "A" + records["prot1|len30"][1:]
    write_fasta(fasta, records)
    assert main([*base, "-o", str(single)]) == 0
    assert "1 protein scored, 3 already done" in capsys.readouterr().out
    assert pd.read_csv(single / "proteins" / "prot1_len30.csv")["mutant"].iloc[0] == "A1C"


def test_score_mutation_table_keyed_by_id_with_esm2(checkpoints, shared_data, tmp_path, capsys):
    dyn, esm = checkpoints
    records = real_sequences(shared_data, (12, 26, 40))
    fasta = write_fasta(tmp_path / "wt.fasta", records)
    rows = []
    for k, (rid, seq) in enumerate(records.items()):
        for pos in range(0, len(seq), 5):
            mt = "A" if seq[pos] != "A" else "G"
            rows.append({"protein": rid, "mutant": f"{seq[pos]}{pos + 1}{mt}", "DMS_score": float(pos + k)})
    rows.append({"protein": "unknown", "mutant": "A1G", "DMS_score": 0.0})
    table = tmp_path / "muts.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    base = ["score", "--model", str(dyn), "--esm2", str(esm), "--fasta", str(fasta), "--mutations", str(table),
            "--id-column", "protein", "--no-progress"]
    assert main([*base, "-o", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert f"1 invalid mutant(s): row {len(rows)} (unknown): 'A1G': no FASTA record with id 'unknown'" in err
    single = tmp_path / "single"
    assert main([*base, "--skip-invalid", "-o", str(single)]) == 0
    combined = pd.read_csv(single / "scores.csv")
    assert len(combined) == len(rows) - 1
    assert list(combined.columns[:4]) == ["id", "mutant", "n_mutations", "DMS_score"]
    assert {"score", "esm2_masked_marginal", "esm2_wt_marginal"} <= set(combined.columns)
    assert pd.read_csv(single / "invalid.csv")["row"].tolist() == [len(rows)]
    # same numbers as scoring each protein alone
    alone = tmp_path / "alone.csv"
    sub = pd.DataFrame([r for r in rows if r["protein"] == "prot1|len26"]).drop(columns="protein")
    sub.to_csv(tmp_path / "one.csv", index=False)
    assert main(["score", "--model", str(dyn), "--esm2", str(esm), "--sequence", records["prot1|len26"],
                 "--mutations", str(tmp_path / "one.csv"), "-o", str(alone), "--no-progress"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(alone),
                                  combined[combined["id"] == "prot1|len26"].drop(columns="id").reset_index(drop=True))
    out = tmp_path / "n2"
    for i in range(2):
        assert main([*base, "--skip-invalid", "-o", str(out), "--shard", f"{i}/2"]) == 0
    assert (out / "scores.csv").read_bytes() == (single / "scores.csv").read_bytes()


def test_bad_shards_and_mixed_runs_are_one_clear_line(checkpoints, fasta, tmp_path, capsys):
    dyn, _ = checkpoints
    base = ["predict", str(fasta), "--model", str(dyn), "-q"]
    for shard, message in (("3/2", "the shard index is 0-based and must lie in 0..1, got 3"),
                           ("0/0", "the number of shards must be at least 1, got 0"),
                           ("0/99999999999", "the number of shards must be at most 1,000,000, got 99,999,999,999"),
                           ("0/1000000000000000000000", "the number of shards must be at most 1,000,000, got "
                                                        "1,000,000,000,000,000,000,000")):
        with pytest.raises(SystemExit) as info:  # a number out of range is a usage error: exit status 2
            main([*base, "-o", str(tmp_path / "x"), "--shard", shard])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.strip().splitlines()[-1] == f"seqdance predict: error: argument --shard: {message}"
    assert not (tmp_path / "x").exists()
    # shard 0 with one model, shard 1 with another, into one folder: not merged, and merge says why
    out = tmp_path / "mixed"
    other = write_released_checkpoint(tmp_path / "other", seed=9)
    assert main([*base, "-o", str(out), "--shard", "0/2"]) == 0
    assert main(["predict", str(fasta), "--model", str(other), "-q", "-o", str(out), "--shard", "1/2"]) == 0
    assert not (out / "residues.csv").exists()
    capsys.readouterr()
    assert main(["merge", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert ("\n" not in err and "mixes shards of different runs" in err
            and "differs from shard-0-of-2.json in model" in err)
    # shards of 2 and of 3 in one folder
    out3 = tmp_path / "counts"
    assert main([*base, "-o", str(out3), "--shard", "0/2"]) == 0
    assert main([*base, "-o", str(out3), "--shard", "1/3"]) == 0
    capsys.readouterr()
    assert main(["merge", str(out3)]) == 1
    assert "differs from shard-0-of-2.json in n_shards" in capsys.readouterr().err
    assert main(["merge", str(tmp_path / "nothing")]) == 1
    assert "no shard manifests" in capsys.readouterr().err
    # outputs of other runs slipped into a finished run: the merge names the file
    done = tmp_path / "done"
    for i in range(2):
        assert main([*base, "-o", str(done), "--shard", f"{i}/2"]) == 0
    victim = sorted(done.glob("*.npz"))[0]
    shutil.copy(victim, tmp_path / "keep.npz")
    for extra, why in ((["--model", str(other)], "holds a result of another model (its fingerprint differs)"),
                       (["--model", str(dyn), "--no-pairs"],
                        "lacks corr, hbbb, hbsb ... (predicted with fewer outputs)")):
        sep = tmp_path / f"sep{len(extra)}"
        assert main(["predict", str(fasta), "-q", "-o", str(sep), *extra]) == 0
        shutil.copy(sep / victim.name, victim)
        capsys.readouterr()
        assert main(["merge", str(done)]) == 1
        err = capsys.readouterr().err.strip()
        assert f"{victim} {why}, so it is not merged; rerun shard" in err and "\n" not in err
    shutil.copy(tmp_path / "keep.npz", victim)
    assert main(["merge", str(done)]) == 0


def test_predict_resumes_by_content(checkpoints, tmp_path, capsys):
    dyn, _ = checkpoints
    records = {"a": "MKTAYIAKQR", "b": "ACDEFGHIKL", "c": "MKVLAGGSWH"}
    fasta = write_fasta(tmp_path / "in.fasta", records)
    model_dir = tmp_path / "model"
    shutil.copytree(dyn, model_dir)
    args = ["predict", str(fasta), "-o", str(tmp_path / "out"), "--model", str(model_dir), "-q"]
    assert main(args) == 0
    capsys.readouterr()
    records["b"] = "ACDEFGHIKM"  # one sequence changed, same id
    write_fasta(fasta, records)
    assert main(args) == 0
    assert "1 predicted, 2 already done" in capsys.readouterr().err
    with np.load(tmp_path / "out" / "b.npz") as data:
        assert str(data["sequence"]) == "ACDEFGHIKM"
    write_released_checkpoint(model_dir, seed=11)  # new weights under the same name: everything is recomputed
    assert main(args) == 0
    assert "3 predicted, 0 already done" in capsys.readouterr().err


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "seqdance.cli.main", *args]


@pytest.mark.slow
def test_killed_shard_resumes_to_the_same_result(shared_data, tmp_path):
    """kill -9 a shard while it writes, rerun it: the result is bitwise the uninterrupted run's."""
    model = write_released_checkpoint(tmp_path / "m8", "8M", seed=2)
    lengths = [40 + (37 * k) % 260 for k in range(80)]
    fasta = write_fasta(tmp_path / "in.fasta", real_sequences(shared_data, lengths))
    base = ["predict", str(fasta), "--model", str(model), "-q", "--batch-tokens", "400", "--no-pairs",
            "--embeddings", "--shard", "1/2"]
    reference = tmp_path / "reference"
    subprocess.run(_cli(*base, "-o", str(reference)), env=_env(), check=True, capture_output=True)
    n_files = len(list(reference.glob("*.npz")))
    assert n_files > 10

    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*base, "-o", str(out)), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        seen = len(list(out.glob("*.npz"))) if out.is_dir() else 0
        if seen >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the shard finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = len(list(out.glob("*.npz")))
    assert 3 <= written < n_files
    result = subprocess.run(_cli(*base, "-o", str(out)), env=_env(), check=True, capture_output=True, text=True)
    assert f"{written} already done" in result.stderr
    same_npz_dirs(reference, out)
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_torchrun_two_cpu_processes_equal_one_process(checkpoints, fasta, shared_data, tmp_path):
    dyn, _ = checkpoints
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                "seqdance.cli.main"]
    base = ["predict", str(fasta), "--model", str(dyn), "-q", "--batch-tokens", "600"]
    subprocess.run(_cli(*base, "-o", str(tmp_path / "one")), env=_env(), check=True, capture_output=True)
    run = subprocess.run([*launcher, *base, "-o", str(tmp_path / "two")], env=_env(), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    manifests = sorted(p.name for p in (tmp_path / "two" / "shards").glob("*.json"))
    assert manifests == ["shard-0-of-2.json", "shard-1-of-2.json"]
    same_npz_dirs(tmp_path / "one", tmp_path / "two")
    assert (tmp_path / "two" / "residues.csv").read_bytes() == (tmp_path / "one" / "residues.csv").read_bytes()

    wt = write_fasta(tmp_path / "wt.fasta", real_sequences(shared_data, (9, 17, 12)))
    score = ["score", "--model", str(dyn), "--fasta", str(wt), "--saturation", "--properties", "rmsf_nor",
             "--no-progress"]
    subprocess.run(_cli(*score, "-o", str(tmp_path / "s1")), env=_env(), check=True, capture_output=True)
    run = subprocess.run([*launcher, *score, "-o", str(tmp_path / "s2")], env=_env(), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "s2" / "scores.csv").read_bytes() == (tmp_path / "s1" / "scores.csv").read_bytes()


def test_benchmark_dms_shards_equal_one_process(shared_data, checkpoints, tmp_path, capsys):
    dyn, esm = checkpoints
    source = require(shared_data / "proteingym_single_dev")
    names = ["CCDB_ECOLI_Adkar_2012", "GCN4_YEAST_Staller_induction_2018", "BLAT_ECOLX_Stiffler_2015",
             "SPG1_STRSG_Olson_2014"]
    assays = tmp_path / "assays"
    for sub in ("mutant", "fasta"):
        (assays / sub).mkdir(parents=True)
    for name in names:
        shutil.copy(require(source / "mutant" / f"{name}.csv"), assays / "mutant")
        shutil.copy(require(source / "fasta" / f"{name}.fasta"), assays / "fasta")
    (assays / "mutant" / "broken.csv").write_text("mutant,DMS_score\nA1G,0.5\n")  # no wild type: fails alone
    base = ["benchmark-dms", "--model", str(dyn), "--esm2", str(esm), "--assays", str(assays), "--max-variants", "15",
            "--window", "120", "--properties", "sasa_mean", "psi", "--no-progress"]
    assert main([*base, "-o", str(tmp_path / "single")]) == 1  # one assay failed
    codes = [main([*base, "-o", str(tmp_path / "n3"), "--shard", f"{i}/3"]) for i in range(3)]
    assert sorted(codes) == [0, 0, 1]  # the shard that owns the broken assay reports its failure
    for table in ("per_assay.csv", "summary.csv", "failures.csv"):
        assert (tmp_path / "n3" / table).read_bytes() == (tmp_path / "single" / table).read_bytes(), table
    for name in names:
        assert ((tmp_path / "n3" / "scores" / f"{name}.csv").read_bytes()
                == (tmp_path / "single" / "scores" / f"{name}.csv").read_bytes())
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "n3")]) == 1  # merged again; the failed assay still counts
    assert "3 shards of benchmark-dms merged: 4 assays evaluated, 1 failed" in capsys.readouterr().out
    # a rerun skips every finished assay (content unchanged) and recomputes one whose file changed
    table = assays / "mutant" / f"{names[0]}.csv"
    frame = pd.read_csv(table)
    column = "DMS_score" if "DMS_score" in frame.columns else "score"
    frame.loc[0, column] += 1.0
    frame.to_csv(table, index=False)
    assert main([*base, "-o", str(tmp_path / "single")]) == 1
    assert f"{len(names)} of 5 assays evaluated ({len(names) - 1} from an earlier run)" in capsys.readouterr().out
