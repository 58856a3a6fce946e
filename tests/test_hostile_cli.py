"""Hostile inputs on the command line (issue 21, round three): each test builds the file or option itself and checks
the promised behaviour: one line and exit status 1, or a usage error (exit status 2), never a silent wrong result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seqdance.cli.main import main
from seqdance.inference.prediction import Prediction
from seqdance.inference.prediction_io import save_prediction
from seqdance.schema import PROPERTIES

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def status(argv: list[str]) -> int:
    """The exit status of ``seqdance ARGV`` run in this process (argparse's usage errors raise SystemExit)."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one ``error:`` line a command printed (and no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


# --- map: B-factors the format cannot hold (finding 3) ---------------------------------------------------------

_RESIDUES = ("MET", "LYS", "VAL", "ILE", "PHE", "LEU")


def _write_structure(path: Path) -> Path:
    """A six-residue Cα-only chain A, written column by column as the PDB format says."""
    lines = []
    for i, name in enumerate(_RESIDUES):
        lines.append(f"ATOM  {i + 1:5d}  CA  {name} A{i + 1:4d}    {3.8 * i:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00  0.00"
                     "           C")
    path.write_text("\n".join(lines) + "\nEND\n")
    return path


def _write_prediction(path: Path, rmsf: np.ndarray) -> Path:
    sequence = "MKVIFL"
    arrays = {p.name: np.zeros(len(sequence)) for p in PROPERTIES if p.is_residue and p.width == 1}
    arrays["rmsf_nor"] = rmsf
    save_prediction(path, Prediction(id="p", sequence=sequence, chain_lengths=(6,), values=arrays), model="test")
    return path


@pytest.fixture
def map_inputs(tmp_path: Path) -> tuple[Path, Path]:
    pytest.importorskip("gemmi", reason="map needs gemmi (the structure extra)")
    return (_write_prediction(tmp_path / "p.npz", np.array([0.2, 0.5, 1.0, 1.5, 2.5, 3.0])),
            _write_structure(tmp_path / "s.pdb"))


def test_map_refuses_b_factors_beyond_the_pdb_column(tmp_path, map_inputs, capsys) -> None:
    prediction, structure = map_inputs
    out = tmp_path / "out.pdb"
    # 1e6 × 3.0 would have been clamped to 999.99 without a word
    assert main(["map", str(prediction), "-s", str(structure), "-o", str(out), "--scale", "1e6"]) == 1
    line = one_line_error(capsys)
    assert "up to 3e+06" in line and "999.99" in line and "PDB B-factor column" in line
    assert not out.exists() and not out.with_suffix(".defattr").exists()
    # negative values below the column's -99.99
    assert main(["map", str(prediction), "-s", str(structure), "-o", str(out), "--scale", "-100"]) == 1
    line = one_line_error(capsys)
    assert "down to -300" in line and "-99.99" in line
    # the largest value that fits is written as it is
    assert main(["map", str(prediction), "-s", str(structure), "-o", str(out), "--scale", "333.33"]) == 0
    b = [float(line[60:66]) for line in out.read_text().splitlines() if line.startswith("ATOM")]
    assert b == pytest.approx([66.67, 166.67, 333.33, 500.0, 833.33, 999.99], abs=0.011)  # float32 values, two decimals


def test_map_refuses_non_finite_b_factors_in_pdb_and_mmcif(tmp_path, map_inputs, capsys) -> None:
    prediction, structure = map_inputs
    for suffix in (".pdb", ".cif"):
        out = tmp_path / f"out{suffix}"
        for option in (["--missing", "nan"], ["--scale", "inf"], ["--scale", "1e400"]):
            assert status(["map", str(prediction), "-s", str(structure), "-o", str(out), *option]) == 2
            assert "must be a finite number" in capsys.readouterr().err
        assert not out.exists()
    # mmCIF holds large finite values (no clamp) but not beyond a 32-bit float, which would be written as Inf
    assert main(["map", str(prediction), "-s", str(structure), "-o", str(tmp_path / "big.cif"), "--scale", "1e6"]) == 0
    assert main(["map", str(prediction), "-s", str(structure), "-o", str(tmp_path / "inf.cif"),
                 "--scale", "1e300"]) == 1
    line = one_line_error(capsys)
    assert "3e+300" in line and "32-bit float" in line and "3.40282e+38" in line


def test_map_library_refuses_a_missing_value_that_does_not_fit(tmp_path, map_inputs) -> None:
    from seqdance.display.structure_map import map_property
    from seqdance.errors import InputError

    _, structure = map_inputs
    values = np.array([0.2, 0.5, 1.0])  # three residues: the structure's other three get `missing`
    with pytest.raises(InputError, match=r"missing = nan\) does not fit the PDB B-factor column"):
        map_property(values, "MKV", (3,), structure, tmp_path / "o.pdb", property_name="rmsf_nor",
                     missing=float("nan"))
    with pytest.raises(InputError, match=r"missing = 1000\) does not fit"):
        map_property(values, "MKV", (3,), structure, tmp_path / "o.pdb", property_name="rmsf_nor", missing=1000)
    assert not (tmp_path / "o.pdb").exists()


# --- train --set: YAML the parser refuses, tags, non-finite numbers (finding 7) ---------------------------------

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("override, expected", [
    ("data.store=[unclosed", r"override 'data.store=\[unclosed': the value is not valid YAML \(expected ',' or ']'"),
    ("data.store=!!python/object/apply:os.system [echo hi]",
     r"the tag '!!python/object/apply:os.system' is not allowed"),
    ("data.store=!custom x", r"the tag '!custom' is not allowed"),
    ("optim.lr=.nan", r"optim.lr = nan is not a finite number"),
    ("optim.lr=.inf", r"optim.lr = inf is not a finite number"),
    ("optim.lr=-.inf", r"optim.lr = -inf is not a finite number"),
    ("optim.lr=1e30", r"optim.lr = 1e\+30 is beyond any usable learning rate"),
    ("optim.betas=[0.9, .nan]", r"optim.betas\[1\] = nan is not a finite number"),
    ("optim.betas=[0.9, 1.5]", r"optim.betas must lie in \[0, 1\)"),
    ("data.target_clamp=[-.inf, 2]", r"data.target_clamp\[0\] = -inf is not a finite number"),
    ("optim.eps=0", r"optim.eps must be > 0"),
    ("optim.warmup_updates=100000000", r"training config: optim: warm-up \(100000000 updates\) is longer"),
])
def test_train_settings_are_checked_before_training(tmp_path, capsys, override: str, expected: str) -> None:
    out = tmp_path / "run"
    code = status(["train", "--config", str(REPO_ROOT / "configs" / "tiny_cpu.yaml"), "--set",
                   f"output_dir={out}", "--set", override, "-q"])
    assert code == 1
    import re

    assert re.search(expected, one_line_error(capsys))
    assert not out.exists()  # nothing started: no checkpoint to blame, no output folder


def test_a_yaml_tag_in_a_config_file_is_one_line(tmp_path, capsys) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("model_select: seqdance\ndata:\n  store: !!python/object/new:os.system [echo hi]\n")
    assert status(["train", "--config", str(config)]) == 1
    line = one_line_error(capsys)
    assert f"{config}: not valid YAML (the tag '!!python/object/new:os.system' is not allowed" in line
    assert "line 3, column 10" in line


# --- HDF5 stores with links or virtual datasets (finding 8) ---------------------------------------------------

def _small_store(path: Path) -> Path:
    from _store_fixtures import synthetic_features

    from seqdance.store import DynamicsStore, StoredProtein, StoreWriter, features_to_targets

    with StoreWriter(path, metadata={"frequency": "reference"}) as writer:
        for k, (name, seq) in enumerate([("p1", "MKTAYIAKQRQISFVKSHFSRQ"), ("p2", "GSSGSSEEDDKKRRSPSPAV")]):
            residue, pair = features_to_targets(synthetic_features(seq, "md", seed=k), "md")
            writer.add(StoredProtein(name, seq, "ATLAS", "md", "test", "md", residue, pair, {}))
    DynamicsStore.open(path).close()
    return path


def _foreign_values(path: Path, shape: tuple[int, ...]) -> Path:
    """Another file whose dataset /x holds values far outside any target's range."""
    import h5py

    with h5py.File(path, "w") as fh:
        fh["x"] = np.full(shape, 1e6, dtype=np.float32)
    return path


def _relink(store: Path, key: str, how: str, foreign: Path) -> None:
    import h5py

    with h5py.File(store, "r+") as fh:
        shape, dtype = fh[key].shape, fh[key].dtype
        del fh[key]
        if how == "external":
            fh[key] = h5py.ExternalLink(str(foreign), "/x")
        elif how == "soft":
            fh[key] = h5py.SoftLink("/nothing/here")
        else:
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            layout[...] = h5py.VirtualSource(str(foreign), "x", shape=shape)
            fh.create_virtual_dataset(key, layout)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from _checkpoints import write_released_checkpoint

    return write_released_checkpoint(tmp_path_factory.mktemp("model") / "tiny", "tiny", "esmdance", seed=3)


@pytest.mark.parametrize("how, expected", [
    ("external", r"'p1_pair_feature' is an external link to .*other\.h5:/x; a store must be one self-contained file"),
    ("soft", r"'p1_pair_feature' is a soft link to /nothing/here \(broken: nothing is there\)"),
    ("virtual", r"dataset 'p1_pair_feature' is a virtual dataset \(its values come from .*other\.h5\)"),
])
def test_a_store_with_links_or_virtual_datasets_is_refused_naming_the_dataset(
        tmp_path, capsys, tiny_model_dir, how: str, expected: str) -> None:
    import re

    from seqdance.errors import UnsafeFileError
    from seqdance.store import DynamicsStore

    store = _small_store(tmp_path / "s.h5")
    with DynamicsStore.open(store) as opened:
        shape = opened.shapes("p1")[1]
    _relink(store, "p1_pair_feature", how, _foreign_values(tmp_path / "other.h5", shape))
    with pytest.raises(UnsafeFileError, match=expected):
        with DynamicsStore.open(store) as opened:
            opened.read("p1")  # a virtual dataset is found when read; links when the store is opened
    # the finding: analyze attention followed the link and analysed values from the other file
    out = tmp_path / "att"
    assert status(["analyze", "attention", "--model", str(tiny_model_dir), "--store", str(store), "-o", str(out),
                   "-q"]) == 1
    assert re.search(expected, one_line_error(capsys))
    assert not (out / "per_head.csv").exists()
    # dataset check names it too (a virtual dataset as one problem among the proteins; a link at opening)
    assert status(["dataset", "check", str(store), "-q"]) == 1
    out_text = capsys.readouterr()
    assert re.search(expected, out_text.out + out_text.err)


@pytest.mark.parametrize("how", ["external", "virtual"])
def test_an_embeddings_file_with_links_or_virtual_datasets_is_refused(tmp_path, caplog, tiny_model_dir,
                                                                       how: str) -> None:
    import h5py

    from seqdance.inference.embedding_store import EmbeddingFileError, read_embeddings

    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKTAYIAKQRQ\n>b\nGSSGSSEEDD\n")
    out = tmp_path / "emb.h5"
    assert status(["embed", str(fasta), "-o", str(out), "--model", str(tiny_model_dir), "-q"]) == 0
    with h5py.File(out, "r") as fh:
        shape = fh["mean/a"].shape
    _relink(out, "mean/a", how, _foreign_values(tmp_path / "other.h5", shape))
    with pytest.raises(EmbeddingFileError, match=r"'mean/a' is (an external link|a virtual dataset)"):
        read_embeddings(out)
    # embed run again takes nothing from the other file: it warns, recomputes the entries and rewrites the file
    assert status(["embed", str(fasta), "-o", str(out), "--model", str(tiny_model_dir), "-q"]) == 0
    assert "an embeddings file must be one self-contained file" in caplog.text
    with h5py.File(out, "r") as fh:
        assert isinstance(fh.get("mean/a", getlink=True), h5py.HardLink) and not fh["mean/a"].is_virtual
        assert np.abs(fh["mean/a"][()]).max() < 1e3
