"""``seqdance features nma``: parallel, resumable, failures reported per file."""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _processes import HAS_PROC, spawned_workers
from conftest import require

from seqdance.cli import features_nma
from seqdance.features.feature_files import load_nma_features
from seqdance.features.nma.batch import FAILURE_LOG

SMALL = "structures/bioemu_reference/multiconf/oodval/P23895/7JK8_A.pdb"


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    features_nma.register(parser.add_subparsers())
    args = parser.parse_args(["nma", *argv])
    return args.func(args)


@pytest.fixture()
def inputs(shared_data: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(require(shared_data / "reference" / "nma" / "2g3r.pdb"), folder / "2g3r.pdb")
    with open(require(shared_data / SMALL), "rb") as src, gzip.open(folder / "7jk8.pdb.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    (folder / "broken.pdb").write_text("not a structure\n")
    (folder / "notes.txt").write_text("ignored: not a structure file name\n")
    return folder


def test_parallel_run_reports_failures_and_resumes(inputs: Path, tmp_path: Path, shared_data: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = _run([str(inputs), "-o", str(out), "--workers", "2", "--quiet"])
    assert code == 1  # one structure failed, the others were still computed
    assert sorted(p.name for p in out.glob("*.npz")) == ["2g3r.npz", "7jk8.npz"]
    err = capsys.readouterr().err
    assert "FAILED" in err and "broken.pdb" in err and "2 computed" in err and "1 failed" in err
    log = (out / FAILURE_LOG).read_text().splitlines()
    assert len(log) == 2 and log[1].startswith(str(inputs / "broken.pdb"))

    golden = np.load(require(shared_data / "reference" / "nma" / "nma_residue_pair_features_2g3r.npz"))
    written = load_nma_features(out / "2g3r.npz")
    np.testing.assert_allclose(written["nma_res2"], golden["gnm_msf"][1], rtol=1e-6)
    np.testing.assert_allclose(written["nma_pair3"], golden["anm_cor"][2], rtol=1e-6)

    stamp = (out / "7jk8.npz").stat().st_mtime_ns
    (inputs / "broken.pdb").unlink()
    assert _run([str(inputs / "2g3r.pdb"), str(inputs / "7jk8.pdb.gz"), "-o", str(out), "--workers", "1",
                 "--quiet"]) == 0
    assert "0 computed, 2 already done, 0 failed" in capsys.readouterr().err
    assert (out / "7jk8.npz").stat().st_mtime_ns == stamp
    assert not (out / FAILURE_LOG).exists()


def test_chain_option_and_float32(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run([str(inputs / "2g3r.pdb"), "-o", str(out), "--chains", "A", "--float32", "--workers", "1",
                 "--quiet"]) == 0
    assert load_nma_features(out / "2g3r.npz")["nma_pair1"].dtype == np.float32
    assert _run([str(inputs / "2g3r.pdb"), "-o", str(tmp_path / "z"), "--chains", "Z", "--quiet"]) == 1


def test_user_errors(inputs: Path, tmp_path: Path) -> None:
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(inputs / "2g3r.pdb", twin / "2g3r.pdb")
    with pytest.raises(ValueError, match="would both write"):
        _run([str(inputs / "2g3r.pdb"), str(twin / "2g3r.pdb"), "-o", str(tmp_path / "o")])
    with pytest.raises(FileNotFoundError, match=r"absent\.pdb"):
        _run([str(tmp_path / "absent.pdb"), "-o", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as stop:  # a range checked while parsing: a usage error
        _run([str(inputs / "2g3r.pdb"), "-o", str(tmp_path / "o"), "--workers", "0"])
    assert stop.value.code == 2


@pytest.mark.skipif(not HAS_PROC, reason="needs Linux /proc")
def test_a_killed_worker_costs_no_other_structure(shared_data: Path, tmp_path: Path) -> None:
    """kill -9 of one worker mid-run (as the OOM killer would): the structures in flight are re-run one at a
    time, every other structure completes, and the run ends normally."""
    folder = require(shared_data / "structures" / "bioemu_reference")
    structures = sorted(folder.rglob("*.pdb"))[:16]
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "seqdance.cli.main", "features", "nma", *map(str, structures), "-o", str(out),
         "--workers", "2", "--quiet"],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    victim = None
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            workers = spawned_workers(proc.pid)
            if len(workers) == 2 and len(list(out.glob("*.npz"))) >= 2:
                victim = workers[0]
                os.kill(victim, signal.SIGKILL)
                break
            time.sleep(0.02)
        _, err = proc.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert victim is not None, "the run finished before a worker could be killed"
    assert proc.returncode == 0, err
    assert f"{len(structures)} computed" in err and "0 failed" in err
    assert len(list(out.glob("*.npz"))) == len(structures)
