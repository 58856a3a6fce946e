"""Resume by content, damaged outputs and stores, a full disk (hostile-input audit, findings 3, 5 and 6)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import require

from seqdance.cli.main import main
from seqdance.store import DynamicsStore
from seqdance.store.builder import build_store, journal_dir
from seqdance.store.check import check_store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def structures(shared_data: Path) -> list[Path]:
    found = sorted(require(shared_data / "structures" / "bioemu_reference").rglob("*.pdb"))[:4]
    if len(found) < 4:
        pytest.skip("needs four structures in structures/bioemu_reference")
    return found


def _nma_manifest(tmp_path: Path, files: list[Path]) -> Path:
    manifest = tmp_path / "m.csv"
    pd.DataFrame({"name": [f"p{i}" for i in range(len(files))], "source": "proteinflow_pdb",
                  "structure": [str(f) for f in files]}).to_csv(manifest, index=False)
    return manifest


# --- features nma ------------------------------------------------------------------------------------------


def test_features_nma_resumes_by_content(structures: list[Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "in"
    work.mkdir()
    a, b = work / "a.pdb", work / "b.pdb"
    shutil.copy(structures[0], a)
    shutil.copy(structures[1], b)
    out = tmp_path / "out"

    def run(*extra: str) -> str:
        assert main(["features", "nma", str(a), str(b), "-o", str(out), "--quiet", "--workers", "1", *extra]) == 0
        return capsys.readouterr().err

    assert "2 computed, 0 already done" in run()
    assert "0 computed, 2 already done" in run()
    shutil.copy(structures[2], a)  # same name, other content
    assert "1 computed, 1 already done" in run()
    from seqdance.features.feature_files import load_nma_features
    from seqdance.features.inputs.structures import read_calpha_structure

    assert str(load_nma_features(out / "a.npz")["sequence"]) == read_calpha_structure(structures[2]).sequence
    assert "2 computed, 0 already done" in run("--zero-modes", "reference")  # another option: recomputed
    # a truncated and a corrupted output are recomputed, not a traceback
    data = (out / "a.npz").read_bytes()
    (out / "a.npz").write_bytes(data[: len(data) // 2])
    raw = bytearray((out / "b.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (out / "b.npz").write_bytes(bytes(raw))
    assert "2 computed, 0 already done" in run("--zero-modes", "reference")


# --- features md -------------------------------------------------------------------------------------------


def test_features_md_resumes_by_content(shared_data: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    ref = shared_data / "reference" / "md"
    pdb, dcd = require(ref / "3tvj_I.pdb"), require(ref / "3tvj_I_10frames.dcd")
    traj = tmp_path / "traj.dcd"
    shutil.copy(dcd, traj)
    out = tmp_path / "f.npz"
    argv = ["features", "md", "-t", str(pdb), "-x", str(traj), "-o", str(out), "--no-progress", "--stop", "6"]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(argv) == 0
    assert "up to date" in capsys.readouterr().out
    assert main([*argv[:-2], "--stop", "8"]) == 0  # another option: recomputed
    assert "wrote" in capsys.readouterr().out
    with np.load(out) as data:
        assert int(data["n_frames"]) == 8
    raw = bytearray(traj.read_bytes())  # same name, other content (a coordinate changed)
    raw[-20] ^= 0x01
    traj.write_bytes(bytes(raw))
    assert main([*argv[:-2], "--stop", "8"]) == 0
    assert "wrote" in capsys.readouterr().out


# --- dataset build ----------------------------------------------------------------------------------------


def test_dataset_build_recomputes_inputs_whose_content_changed(structures: list[Path], tmp_path: Path) -> None:
    work = tmp_path / "in"
    work.mkdir()
    files = [work / f"s{i}.pdb" for i in range(2)]
    for src, dst in zip(structures, files):
        shutil.copy(src, dst)
    manifest = _nma_manifest(tmp_path, files)
    store = tmp_path / "s.h5"
    assert build_store(manifest, store, workers=0).computed == 2
    assert build_store(manifest, store, workers=0).skipped == 2
    shutil.copy(structures[3], files[1])  # the same path now holds another structure
    report = build_store(manifest, store, workers=0)
    assert (report.computed, report.skipped) == (1, 1)
    from seqdance.features.inputs.structures import read_calpha_structure

    with DynamicsStore.open(store) as opened:
        assert opened.read("p1").sequence == read_calpha_structure(structures[3]).sequence
        assert opened.provenance("p1")["inputs"][0]["sha256"] != ""
    # the changed input now fails: its stale values are dropped, not kept as if current
    files[1].write_text("HEADER    NOT A STRUCTURE\nEND\n")
    report = build_store(manifest, store, workers=0)
    assert report.failed == 1
    with DynamicsStore.open(store) as opened:
        assert opened.names == ["p0"]


# --- stores: checksums and damaged chunks ------------------------------------------------------------------


def _flip_byte_of(store: Path, dataset: str) -> None:
    with h5py.File(store, "r") as fh:
        ds = fh[dataset]
        info = ds.id.get_chunk_info(0)  # chunked datasets: the first chunk's place in the file
        offset = info.byte_offset + info.size // 2
    with open(store, "r+b") as fh:
        fh.seek(offset)
        value = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([value[0] ^ 0x10]))


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_check_finds_flipped_bytes_and_goes_on(structures: list[Path], tmp_path: Path, compression: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "s.h5"
    build_store(_nma_manifest(tmp_path, structures[:3]), store, workers=0,
                compression=None if compression == "none" else compression)
    with h5py.File(store, "r") as fh:
        assert all(fh[k].fletcher32 for k in fh if k.endswith("_feature"))
    assert check_store(store).ok
    _flip_byte_of(store, "p1_pair_feature")
    report = check_store(store)
    assert report.n_checked == 3 and report.offending == ["p1"]
    assert report.problems[0].check == "read" and "damaged" in report.problems[0].detail
    assert main(["dataset", "check", str(store), "-q"]) == 1
    out = capsys.readouterr().out
    assert "p1: [read]" in out and "3 proteins checked" in out


def test_released_layout_reads_unchanged(tmp_path: Path) -> None:
    """An unchunked, unchecksummed file in the released layout (index CSV beside it) still reads."""
    from test_train_data import _random_targets

    rng = np.random.default_rng(0)
    seq = "MKTAYIAK"
    res, pair = _random_targets(len(seq) + 2, "nma", rng)
    with h5py.File(tmp_path / "rel.h5", "w") as fh:
        fh["x_res_feature"], fh["x_pair_feature"] = res, pair
    (tmp_path / "rel.csv").write_text(f"name,modify_seq,source,label\nx,{seq},proteinflow_pdb,train\n")
    with DynamicsStore.open(tmp_path / "rel.h5") as store:
        assert store.released and np.array_equal(store.read("x").residue, res)


# --- a full disk ------------------------------------------------------------------------------------------

_FULL_DISK_SCRIPT = textwrap.dedent("""
    import resource, signal, sys
    if __name__ == "__main__":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
        limit = int(sys.argv[3])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        from seqdance.cli.main import main
        sys.exit(main(["dataset", "build", sys.argv[1], "-o", sys.argv[2], "--workers", "0", "-q",
                       "--compression", "none"]))
""")


def test_full_disk_during_build_is_a_clear_error(structures: list[Path], tmp_path: Path) -> None:
    manifest = _nma_manifest(tmp_path, structures)
    script = tmp_path / "build_with_file_limit.py"
    script.write_text(_FULL_DISK_SCRIPT)
    store = tmp_path / "s.h5"
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    # journal entries (~45 kB each) fit; the folded store (all proteins in one file) does not
    proc = subprocess.run([sys.executable, str(script), str(manifest), str(store), "150000"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]  # not 139 (segfault)
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "File too large" in errors[0] and "nothing was half-written" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not store.exists() and not list(tmp_path.glob(".s.h5.*"))  # nothing that looks complete
    assert len(list(journal_dir(store).glob("*.npz"))) == len(structures)  # finished work is kept
    # with room again, the next run folds the kept work without recomputing it
    proc = subprocess.run([sys.executable, str(script), str(manifest), str(store), str(1 << 30)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"0 computed, {len(structures)} already done" in proc.stdout
    assert check_store(store).ok
