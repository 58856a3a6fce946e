"""The builder: resume, failures, kill -9 + restart = identical store, shards + merge, local and Dask backends."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from _processes import HAS_PROC, children, spawned_workers
from _store_fixtures import md_rows, nma_rows, write_manifest

from seqdance.cli.dataset import main as dataset_main
from seqdance.store import DynamicsStore
from seqdance.store.builder import build_store, failures_path, journal_dir, merge_stores
from seqdance.store.check import check_store

N_KILL = 30  # small NMA structures for the kill/resume tests


def assert_stores_identical(a: Path, b: Path, *, metadata: bool = True) -> None:
    """Same proteins in the same order, same index rows and provenance, bit-identical datasets."""
    with DynamicsStore.open(a) as sa, DynamicsStore.open(b) as sb:
        pd.testing.assert_frame_equal(sa.index, sb.index)
        if metadata:
            ma = {k: v for k, v in sa.metadata.items() if k != "created"}
            mb = {k: v for k, v in sb.metadata.items() if k != "created"}
            assert ma == mb
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        keys = sorted(k for k in fa.keys() if k != "seqdance")
        assert keys == sorted(k for k in fb.keys() if k != "seqdance")
        for key in keys:
            assert fa[key].dtype == fb[key].dtype and fa[key].shape == fb[key].shape, key
            np.testing.assert_array_equal(fa[key][()], fb[key][()], err_msg=key)


@pytest.fixture(scope="module")
def kill_manifest(shared_data, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("kill_manifest")
    rows = nma_rows(shared_data, N_KILL, 0)
    if len(rows) < N_KILL:
        pytest.skip("shared structures absent")
    return write_manifest(folder / "manifest.csv", rows)


@pytest.fixture(scope="module")
def reference_build(kill_manifest, tmp_path_factory) -> Path:
    """The uninterrupted build every crash/shard test must reproduce."""
    store = tmp_path_factory.mktemp("reference_build") / "ref.h5"
    report = build_store(kill_manifest, store, workers=0)
    assert report.computed == N_KILL and report.failed == 0
    return store


def _subset_manifest(manifest: Path, rows: int, out: Path) -> Path:
    pd.read_csv(manifest, dtype=str, keep_default_na=False).head(rows).to_csv(out, index=False)
    return out


def test_kill_9_mid_build_then_resume_gives_identical_store(kill_manifest, reference_build, tmp_path) -> None:
    store = tmp_path / "s.h5"
    # a previous complete store with the first 8 proteins: a crash must never damage it
    first = build_store(_subset_manifest(kill_manifest, 8, tmp_path / "first.csv"), store, workers=0)
    assert first.computed == 8
    proc = subprocess.Popen(
        [sys.executable, "-m", "seqdance.cli.dataset", "build", str(kill_manifest), "-o", str(store),
         "--workers", "1", "-q"],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    journal = journal_dir(store)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if journal.is_dir() and len(list(journal.glob("*.npz"))) >= 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the build ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
    os.killpg(proc.pid, signal.SIGKILL)  # the builder and its worker processes, as a batch scheduler would
    proc.wait()
    done_before = len(list(journal.glob("*.npz")))
    assert 4 <= done_before < N_KILL - 8
    with DynamicsStore.open(store) as old:  # the previous store is intact
        assert len(old) == 8
    resumed = build_store(kill_manifest, store, workers=0)
    assert resumed.skipped == 8 + done_before  # journal entries and stored proteins are never recomputed
    assert resumed.computed == N_KILL - 8 - done_before
    assert not journal.exists()
    assert_stores_identical(store, reference_build)


@pytest.mark.skipif(not HAS_PROC, reason="needs Linux /proc")
def test_workers_exit_when_only_the_builder_is_killed(kill_manifest, tmp_path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "seqdance.cli.dataset", "build", str(kill_manifest), "-o", str(tmp_path / "s.h5"),
         "--workers", "2", "-q"], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(children(proc.pid)) < 2 and proc.poll() is None:
            time.sleep(0.05)
        workers = children(proc.pid)
        assert len(workers) >= 2 and proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)  # the builder alone: its workers must not linger as orphans
        proc.wait()
        deadline = time.time() + 15
        while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
            time.sleep(0.1)
        assert not any(Path(f"/proc/{w}").exists() for w in workers)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.skipif(not HAS_PROC, reason="needs Linux /proc")
def test_a_killed_worker_is_replaced_and_its_protein_retried(kill_manifest, reference_build, tmp_path) -> None:
    import threading

    result: dict = {}
    store = tmp_path / "s.h5"
    thread = threading.Thread(target=lambda: result.update(report=build_store(kill_manifest, store, workers=2)),
                              daemon=True)
    thread.start()
    journal = journal_dir(store)
    deadline = time.time() + 120
    victim = None
    while time.time() < deadline and thread.is_alive():
        spawned = spawned_workers(os.getpid())
        if spawned and journal.is_dir() and len(list(journal.glob("*.npz"))) >= 3:
            victim = spawned[0]
            os.kill(victim, signal.SIGKILL)  # as the OOM killer would
            break
        time.sleep(0.02)
    thread.join(timeout=300)
    assert not thread.is_alive(), "the build hung after a worker was killed"
    assert victim is not None, "the build finished before a worker could be killed"
    report = result["report"]
    assert report.failed == 0 and report.computed == N_KILL
    assert_stores_identical(store, reference_build)


def test_crash_during_fold_then_resume_gives_identical_store(kill_manifest, reference_build, tmp_path) -> None:
    """The state a kill during the fold leaves: full journal, a half-written store temp file, a half-written
    journal temp file. The restart deletes the temporaries, computes nothing and folds again."""
    store = tmp_path / "s.h5"
    build_store(kill_manifest, store, workers=0)
    # put every protein back into the journal, as if the fold had not finished
    journal = journal_dir(store)
    journal.mkdir()
    from seqdance.store.journal import Journal

    with DynamicsStore.open(store) as s:
        for name in s.names:
            p = s.read(name)
            row = s.row(name)
            record = {"name": name, "sequence": p.sequence, "source": p.source, "group": p.group, "kind": p.kind,
                      "label": None, "order": int(row["order"]), "provenance": p.provenance}
            Journal(journal).write(record, p.residue, p.pair)
    store.unlink()
    (tmp_path / f".{store.name}.abc123.tmp").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 1000)
    (journal / ".x.npz.def456.tmp").write_bytes(b"PK\x03\x04 truncated")
    report = build_store(kill_manifest, store, workers=0)
    assert report.computed == 0 and report.skipped == N_KILL
    assert not list(tmp_path.glob("*.tmp")) and not journal.exists()
    assert_stores_identical(store, reference_build)


def test_shards_then_merge_equal_a_single_build(kill_manifest, reference_build, tmp_path) -> None:
    shards = []
    for i in range(3):
        out = tmp_path / f"shard{i}.h5"
        assert dataset_main(["build", str(kill_manifest), "-o", str(out), "--shard", f"{i}/3", "--workers", "0",
                             "-q"]) == 0
        shards.append(out)
    sizes = [len(DynamicsStore.open(s)) for s in shards]
    assert sum(sizes) == N_KILL and min(sizes) > 0
    assert dataset_main(["merge", *map(str, shards), "-o", str(tmp_path / "merged.h5"), "-q"]) == 0
    assert_stores_identical(tmp_path / "merged.h5", reference_build, metadata=False)
    with pytest.raises(ValueError, match="in both"):
        merge_stores([shards[0], shards[0]], tmp_path / "dup.h5")


def test_periodic_folds_give_the_same_store(kill_manifest, reference_build, tmp_path) -> None:
    report = build_store(kill_manifest, tmp_path / "s.h5", workers=0, fold_every=7)
    assert report.computed == N_KILL and not journal_dir(tmp_path / "s.h5").exists()
    assert_stores_identical(tmp_path / "s.h5", reference_build)


def test_resume_failures_labels_and_changed_inputs(shared_data, tmp_path) -> None:
    rows = nma_rows(shared_data, 3, 0) + md_rows(shared_data)[:1]
    rows.append({"name": "missing_file", "source": "proteinflow_pdb", "structure": "nowhere/x.pdb"})
    rows.append({"name": "not_a_structure", "source": "proteinflow_pdb", "structure": str(tmp_path / "junk.pdb")})
    (tmp_path / "junk.pdb").write_text("this is not a PDB file\n")
    manifest = write_manifest(tmp_path / "m.csv", rows)
    store = tmp_path / "out" / "s.h5"
    report = build_store(manifest, store, workers=0)
    assert (report.computed, report.failed) == (len(rows) - 2, 2)
    failures = pd.read_csv(failures_path(store))
    assert set(failures["name"]) == {"missing_file", "not_a_structure"}
    assert failures.set_index("name").loc["missing_file", "error"].startswith(
        "MissingFileError: structure file not found")
    assert str(tmp_path / "nowhere" / "x.pdb") in failures.set_index("name").loc["missing_file", "error"]
    mtime = store.stat().st_mtime_ns
    again = build_store(manifest, store, workers=0)
    assert (again.computed, again.skipped, again.failed) == (0, len(rows) - 2, 2)
    assert store.stat().st_mtime_ns == mtime  # nothing changed: the store is not rewritten
    # labels from the manifest update the index without recomputation
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    df.loc[0, "label"] = "test"
    df.to_csv(manifest, index=False)
    relabel = build_store(manifest, store, workers=0)
    assert relabel.computed == 0
    with DynamicsStore.open(store) as s:
        assert s.read(df.loc[0, "name"]).label == "test"
    # changing an input option recomputes exactly that protein
    md_name = md_rows(shared_data)[0]["name"]
    df.loc[df["name"] == md_name, "stride"] = "2"
    df.to_csv(manifest, index=False)
    changed = build_store(manifest, store, workers=0)
    assert changed.computed == 1
    with DynamicsStore.open(store) as s:
        assert s.read(md_name).provenance["n_frames"] == 5
    # one frequency mode per store
    with pytest.raises(ValueError, match="frequency"):
        build_store(manifest, store, workers=0, frequency="fraction")


def test_cli_build_check_split_homology(shared_data, tmp_path, capsys) -> None:
    manifest = write_manifest(tmp_path / "m.csv", nma_rows(shared_data, 12, 0))
    store = tmp_path / "s.h5"
    assert dataset_main(["build", str(manifest), "-o", str(store), "--workers", "2", "-q"]) == 0
    assert "12 computed" in capsys.readouterr().out
    assert dataset_main(["check", str(store), "-q"]) == 0
    assert dataset_main(["split", str(store), "--method", "python", "--test-fraction", "0.2",
                         "--clusters", str(tmp_path / "c.tsv"), "--stats", str(tmp_path / "st.json")]) == 0
    stats = json.loads((tmp_path / "st.json").read_text())
    assert stats["proteins"] == 12 and stats["parameters"]["method"] == "python"
    labels = DynamicsStore.open(store).index["label"]
    assert set(labels) == {"train", "test"}
    # homology: a training sequence itself and a shuffled one
    train = DynamicsStore.open(store).index.query("label == 'train'").iloc[0]
    seq = train["modify_seq"]
    shuffled = "".join(np.random.default_rng(0).permutation(list(seq)))
    (tmp_path / "q.fasta").write_text(f">same\n{seq}\n>shuffled\n{shuffled}\n")
    capsys.readouterr()
    assert dataset_main(["homology", str(tmp_path / "q.fasta"), "--store", str(store), "--method", "python",
                         "-o", str(tmp_path / "h.csv")]) == 0
    hits = pd.read_csv(tmp_path / "h.csv").set_index("query")
    assert bool(hits.loc["same", "has_homolog"]) and hits.loc["same", "identity"] == 1.0
    assert not bool(hits.loc["shuffled", "has_homolog"])
    # a corrupted protein makes check fail, naming it
    name = train["name"]
    with h5py.File(store, "r+") as fh:
        fh[f"{name}_res_feature"][1, 0] = np.nan
    capsys.readouterr()
    assert dataset_main(["check", str(store), "-q"]) == 1
    assert name in capsys.readouterr().out


@pytest.mark.slow
def test_all_shared_structures_two_local_workers_and_dask(shared_data, tmp_path) -> None:
    """The 300+ shared structures through 2 local worker processes and a dask.distributed LocalCluster."""
    distributed = pytest.importorskip("distributed")
    rows = nma_rows(shared_data, None, None)
    if len(rows) < 300:
        pytest.skip("fewer than 300 shared structures present")
    manifest = write_manifest(tmp_path / "all.csv", rows)
    max_residues = 500  # keeps this test ~1 min per backend (ANM cost grows as N³); longer ones become failures
    local = build_store(manifest, tmp_path / "local.h5", workers=2, threads_per_worker=1, max_residues=max_residues)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dask = build_store(manifest, tmp_path / "dask.h5", scheduler=cluster.scheduler_address,
                           max_residues=max_residues)
    for report in (local, dask):
        print(report.summary())
        assert report.computed + report.failed == len(rows)
        assert report.computed >= 300
        assert all("max_residues" in f["error"] for f in report.failures)
    assert_stores_identical(tmp_path / "local.h5", tmp_path / "dask.h5", metadata=False)
    assert check_store(tmp_path / "local.h5").ok
