"""Steps that compose: feature files as dataset inputs, features md resume by content, tables beside them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import require

from seqdance.cli.main import main
from seqdance.features.feature_files import load_feature_file, recorded_fingerprint
from seqdance.io_utils import sha256_file
from seqdance.store import DynamicsStore
from seqdance.store.builder import build_store, failures_path


@pytest.fixture(scope="module")
def md_inputs(shared_data: Path) -> tuple[Path, Path]:
    base = shared_data / "reference" / "md"
    return require(base / "3tvj_I.pdb"), require(base / "3tvj_I_10frames.dcd")


@pytest.fixture(scope="module")
def feature_files(md_inputs, shared_data, tmp_path_factory) -> dict[str, Path]:
    """`features md` and `features nma` outputs (with --csv) made through the command line."""
    folder = tmp_path_factory.mktemp("features")
    top, traj = md_inputs
    structure = require(shared_data / "reference" / "nma" / "2g3r.pdb")
    assert main(["features", "md", "-t", str(top), "-x", str(traj), "-o", str(folder / "md.npz"), "--csv",
                 "-q"]) == 0
    assert main(["features", "nma", str(structure), "-o", str(folder / "nma"), "--csv", "-q", "--workers", "1"]) == 0
    return {"md": folder / "md.npz", "nma": folder / "nma" / "2g3r.npz", "top": top, "traj": traj,
            "structure": structure}


def _write(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_feature_files_build_the_same_targets_without_recomputing(feature_files, tmp_path) -> None:
    direct = _write(tmp_path / "direct.csv", [
        {"name": "md1", "source": "ATLAS", "topology": str(feature_files["top"]),
         "trajectory": str(feature_files["traj"]), "structure": ""},
        {"name": "nma1", "source": "proteinflow_pdb", "structure": str(feature_files["structure"]),
         "topology": "", "trajectory": ""},
    ])
    reused = _write(tmp_path / "reused.csv", [
        {"name": "md1", "source": "ATLAS", "features": str(feature_files["md"])},
        {"name": "nma1", "source": "proteinflow_pdb", "features": str(feature_files["nma"])},
    ])
    assert build_store(direct, tmp_path / "direct.h5", workers=0).failed == 0
    report = build_store(reused, tmp_path / "reused.h5", workers=0)
    assert report.failed == 0 and report.computed == 2
    leftovers = [p.name for p in tmp_path.iterdir() if p.suffix in (".lock", ".tmp") or p.name.endswith(".journal")]
    assert leftovers == []  # a successful build leaves the store and its index only
    with DynamicsStore.open(tmp_path / "direct.h5") as a, DynamicsStore.open(tmp_path / "reused.h5") as b:
        for name in ("md1", "nma1"):
            pa, pb = a.read(name), b.read(name)
            assert pa.sequence == pb.sequence and pa.group == pb.group
            np.testing.assert_array_equal(pa.residue, pb.residue)
            np.testing.assert_array_equal(pa.pair, pb.pair)
        md = b.provenance("md1")
        assert md["inputs"][0]["role"] == "features"
        assert md["inputs"][0]["sha256"] == sha256_file(feature_files["md"])
        original = {i["role"]: i["sha256"] for i in md["derived_from"]["inputs"]}
        assert original == {"topology": sha256_file(feature_files["top"]),
                            "trajectory": sha256_file(feature_files["traj"])}
        assert md["frequency"] == "reference" and md["n_frames"] == 10
        nma = b.provenance("nma1")
        assert nma["derived_from"]["inputs"][0]["sha256"] == sha256_file(feature_files["structure"])
        assert nma["skipped_residues"] == a.provenance("nma1")["skipped_residues"]
        for name in ("md1", "nma1"):  # conformational properties come along from either kind of feature file
            assert b.provenance(name)["conformation"] == a.provenance(name)["conformation"]
            assert len(a.provenance(name)["conformation"]) >= 1


def test_feature_file_of_the_wrong_kind_or_frequency_fails_its_protein(feature_files, tmp_path) -> None:
    manifest = _write(tmp_path / "m.csv", [
        {"name": "wrong_kind", "source": "ATLAS", "features": str(feature_files["nma"])},
        {"name": "wrong_freq", "source": "ATLAS", "features": str(feature_files["md"])},
    ])
    report = build_store(manifest, tmp_path / "s.h5", workers=0, frequency="fraction")
    assert report.failed == 2
    errors = pd.read_csv(failures_path(tmp_path / "s.h5")).set_index("name")["error"]
    assert "holds NMA features" in errors["wrong_kind"] and "group 'md'" in errors["wrong_kind"]
    assert "'reference' interaction frequencies" in errors["wrong_freq"] and "--frequency" in errors["wrong_freq"]


def test_feature_rows_refuse_compute_options(tmp_path) -> None:
    from seqdance.store.manifest import ManifestError, read_manifest

    path = _write(tmp_path / "m.csv", [{"name": "a", "source": "ATLAS", "features": "a.npz", "stride": 2}])
    with pytest.raises(ManifestError, match="stride cannot apply to a feature file"):
        read_manifest(path)
    path = _write(tmp_path / "n.csv", [{"name": "a", "source": "ATLAS", "features": "a.npz", "topology": "t.pdb"}])
    with pytest.raises(ManifestError, match="not both"):
        read_manifest(path)
    path = _write(tmp_path / "h.csv", [{"name": "a", "source": "ATLAS", "features": "a.npz", "add_hydrogens": "yes"}])
    with pytest.raises(ManifestError, match="add_hydrogens cannot apply to a feature file"):
        read_manifest(path)


def test_features_md_skips_an_up_to_date_output_by_content(feature_files, tmp_path, capsys) -> None:
    top, traj = feature_files["top"], feature_files["traj"]
    copied = tmp_path / "renamed.dcd"
    shutil.copy(traj, copied)
    out = tmp_path / "f.npz"
    args = ["features", "md", "-t", str(top), "-x", str(traj), "-o", str(out), "-q"]
    assert main(args) == 0
    stamp = out.stat().st_mtime_ns
    capsys.readouterr()
    assert main(["features", "md", "-t", str(top), "-x", str(copied), "-o", str(out), "-q"]) == 0
    assert "up to date" in capsys.readouterr().out and out.stat().st_mtime_ns == stamp  # same content, new name
    assert main([*args, "--stride", "2"]) == 0  # other options: recomputed
    assert int(load_feature_file(out)[1]["n_frames"]) == 5
    assert recorded_fingerprint(out)["options"]["stride"] == 2
    stamp = out.stat().st_mtime_ns
    assert main([*args, "--stride", "2", "--overwrite"]) == 0
    assert out.stat().st_mtime_ns != stamp
    with open(copied, "r+b") as fh:  # same name, other content: recomputed
        fh.seek(-8, 2)
        fh.write(b"\x00" * 8)
    stamp = out.stat().st_mtime_ns
    main(["features", "md", "-t", str(top), "-x", str(copied), "-o", str(out), "-q", "--stride", "2"])
    assert out.stat().st_mtime_ns != stamp


def test_residue_tables_beside_the_feature_files(feature_files) -> None:
    md = pd.read_csv(feature_files["md"].with_suffix(".csv"), keep_default_na=False)
    _, features, _ = load_feature_file(feature_files["md"])
    assert len(md) == 38 and md["residue"].str.cat() == features["sequence"]
    np.testing.assert_allclose(md["rmsf"], features["rmsf"], rtol=1e-5)
    np.testing.assert_allclose(md["rmsf_nor"], features["rmsf"] / features["rmsf"].max(), rtol=1e-5)
    ss_columns = [c for c in md.columns if c.startswith("ss_")]
    np.testing.assert_allclose(md[ss_columns].sum(axis=1), 1.0, atol=1e-5)
    nma = pd.read_csv(feature_files["nma"].with_suffix(".csv"), keep_default_na=False)
    _, nfeatures, _ = load_feature_file(feature_files["nma"])
    assert list(nma.columns[:4]) == ["chain", "residue_number", "insertion_code", "residue"]
    np.testing.assert_allclose(nma["nma_res2"], nfeatures["nma_res2"], rtol=1e-5)


def test_dcd_reader_chatter_stays_off_stdout(md_inputs, tmp_path) -> None:
    """VMD's DCD plugin prints from C to file descriptor 1; the command's stdout holds only its own summary."""
    import os
    import subprocess
    import sys

    top, traj = md_inputs
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "seqdance.cli.main", "features", "md", "-t", str(top), "-x",
                           str(traj), "-o", str(tmp_path / "f.npz"), "-q"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [line for line in done.stdout.splitlines() if line.startswith("wrote ")]
    assert len(done.stdout.splitlines()) == 1 and "dcdplugin" not in done.stdout + done.stderr
    assert done.stderr == ""  # -q: no bar, no reader messages
