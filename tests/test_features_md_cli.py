"""``seqdance features md``: arguments, the .npz it writes, and user errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from conftest import require

from seqdance.cli import features_md


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="seqdance features")
    sub = parser.add_subparsers(dest="features_command")
    features_md.register(sub)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def golden(shared_data: Path) -> tuple[Path, Path]:
    base = shared_data / "reference" / "md"
    return require(base / "3tvj_I.pdb"), require(base / "3tvj_I_10frames.dcd")


def test_writes_npz_with_all_features(tmp_path, golden, capsys):
    pdb, dcd = golden
    out = tmp_path / "sub" / "3tvj.npz"
    args = _parse(["md", "-t", str(pdb), "-x", str(dcd), "-o", str(out), "--frequency", "fraction",
                   "--stride", "2", "--no-progress"])
    assert args.func(args) == 0
    assert "38 residues, 5 frames, fraction" in capsys.readouterr().out
    with np.load(out) as z:  # no pickle needed: every field is a plain or structured array
        assert z["vdw"].shape == (38, 38) and np.array_equal(z["vdw"], z["vdw"].T)
        assert str(z["frequency"]) == "fraction" and int(z["n_frames"]) == 5
        assert str(z["sequence"]).startswith("GSGEVTC")
        assert z["residue_ids"]["resSeq"][0] == 1
        assert list(z["frames"]) == [0, -1, 2]
        assert list(z["source_trajectories"]) == [str(dcd)]
        # docs/design.md#conformational-properties conformational properties of the one chain over the 5 frames
        assert z["conformation_n_frames"].tolist() == [5] and z["conformation_n_residues"].tolist() == [38]
        assert 0.5 < z["conformation_rg_mean"][0] < 2.0 and 0 < z["conformation_asphericity_mean"][0] < 1
    assert [p.name for p in out.parent.iterdir()] == ["3tvj.npz"]  # atomic write leaves no temporary file


def test_replicas_and_defaults(golden):
    pdb, dcd = golden
    args = _parse(["md", "--topology", str(pdb), "--trajectory", str(dcd), "--trajectory", str(dcd), "-o", "x.npz"])
    assert args.trajectory == [str(dcd), str(dcd)]
    assert args.frequency == "reference" and args.stride == 1 and args.start == 0 and args.stop is None
    assert args.missing_hydrogens == "error"
    assert args.sasa == "auto" and args.device == "auto" and args.threads is None  # auto: a GPU when there is one


def test_sasa_engine_options(tmp_path, golden):
    pdb, dcd = golden
    outputs = {}
    for engine in ("auto", "mdtraj"):
        out = tmp_path / f"{engine}.npz"
        args = _parse(["md", "-t", str(pdb), "-x", str(dcd), "-o", str(out), "--stop", "3", "--sasa", engine,
                       "--threads", "1", "--device", "cpu", "--no-progress"])
        assert args.func(args) == 0
        with np.load(out) as z:
            outputs[engine] = z["sasa_mean"]
    np.testing.assert_allclose(outputs["auto"], outputs["mdtraj"], rtol=0, atol=1e-5)
    with pytest.raises(SystemExit):
        _parse(["md", "-t", str(pdb), "-o", "x.npz", "--sasa", "fast"])


def test_user_errors_raise_clear_exceptions(tmp_path, golden):
    pdb, dcd = golden
    with pytest.raises(SystemExit):  # an output name that is not .npz: a usage error while parsing
        _parse(["md", "-t", str(pdb), "-x", str(dcd), "-o", str(tmp_path / "out.txt")])
    args = _parse(["md", "-t", str(pdb), "-x", str(tmp_path / "missing.xtc"), "-o", str(tmp_path / "o.npz")])
    with pytest.raises(FileNotFoundError, match=r"missing\.xtc"):
        args.func(args)
    assert not (tmp_path / "o.npz").exists()
    with pytest.raises(SystemExit):
        _parse(["md", "-t", str(pdb), "-o", "x.npz", "--frequency", "counts"])
