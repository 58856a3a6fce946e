"""Inputs a careless user or an attacker gives: each ends in one clear line naming file, id or position, or is
handled (gzip, BOM); nothing is accepted silently (hostile-input audit, findings 4 and 5)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from _checkpoints import write_released_checkpoint
from conftest import require

from seqdance.cli.main import main
from seqdance.errors import InputError, SeqdanceError
from seqdance.io_utils import FastaError, read_fasta
from seqdance.tokenizer import SequenceError, encode

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_released_checkpoint(tmp_path_factory.mktemp("model") / "tiny", "tiny", "esmdance", seed=7)


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


# --- FASTA -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["<pad>", "<cls>", "<eos>", "<mask>", "<unk>"])
def test_special_tokens_in_fasta_are_errors_naming_record_and_position(tmp_path: Path, token: str) -> None:
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">ok\nMKTAY\n>bad one\nMKT\nAY{token}LLV\n")
    with pytest.raises(FastaError, match=rf"record 'bad', residue 6 \(line 5\): '{token}' is not a residue"):
        read_fasta(fasta)


def test_tokenizer_refuses_structural_tokens_but_keeps_mask() -> None:
    with pytest.raises(SequenceError, match=r"'p': special token '<pad>' at residue 3 is not a residue"):
        encode("MK<pad>LV", "p")
    masked = encode("MK<mask>LV", "p")
    assert masked.n_residues == 5  # <mask> stands for one residue: outputs stay aligned
    assert encode("MK<eos><cls>LV").chain_lengths == (2, 2)  # the released linker separates chains


def test_gaps_are_errors_or_removed_on_request(tmp_path: Path, tiny_model: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    fasta = tmp_path / "aln.fasta"
    fasta.write_text(">p1\nMK-TA\nY.IAK\n")
    with pytest.raises(FastaError, match=r"record 'p1', residue 3 \(line 2\): alignment gap '-'"):
        read_fasta(fasta)
    assert read_fasta(fasta, remove_gaps=True)[0].sequence == "MKTAYIAK"
    out = tmp_path / "pred"
    assert main(["predict", str(fasta), "-o", str(out), "--model", str(tiny_model), "-q", "--no-pairs"]) == 1
    assert "alignment gap" in _one_line_error(capsys)
    assert main(["predict", str(fasta), "-o", str(out), "--model", str(tiny_model), "-q", "--no-pairs",
                 "--remove-gaps"]) == 0
    with np.load(out / "p1.npz") as data:
        assert str(data["sequence"]) == "MKTAYIAK"


def test_gzip_bom_and_non_utf8_fasta(tmp_path: Path) -> None:
    plain = ">a desc\nMKTAY\n>b\nACDE\n"
    gz = tmp_path / "in.fa.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(plain)
    assert [(r.id, r.sequence) for r in read_fasta(gz)] == [("a", "MKTAY"), ("b", "ACDE")]
    bom = tmp_path / "bom.fasta"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.encode())
    assert read_fasta(bom)[0].id == "a"
    latin = tmp_path / "latin.fasta"
    latin.write_bytes(b">a\nMKTAY\n>b caf\xe9\nACDE\n")
    with pytest.raises(InputError, match=r"latin.fasta: line 3, column 7: byte 0xe9 is not UTF-8"):
        read_fasta(latin)
    broken = tmp_path / "cut.fa.gz"
    broken.write_bytes(gz.read_bytes()[:20])
    with pytest.raises(InputError, match="damaged or truncated gzip"):
        read_fasta(broken)


def test_ids_that_share_a_file_name_are_errors(tmp_path: Path, tiny_model: Path, shared_data: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    fasta = tmp_path / "ids.fasta"
    fasta.write_text(">a/b\nMKTAY\n>a_b\nMKTAY\n")
    assert main(["predict", str(fasta), "-o", str(tmp_path / "p"), "--model", str(tiny_model), "-q"]) == 1
    assert "'a/b' and 'a_b' map to the same file name" in _one_line_error(capsys)
    # structures whose names differ only in case would overwrite each other on macOS / Windows
    pdb = require(shared_data / "proteingym_single_dev" / "af2_pdb").glob("*.pdb")
    source = sorted(pdb)[0]
    for folder, name in (("x", "Prot.pdb"), ("y", "prot.pdb")):
        (tmp_path / folder).mkdir()
        shutil.copy(source, tmp_path / folder / name)
    assert main(["features", "nma", str(tmp_path / "x" / "Prot.pdb"), str(tmp_path / "y" / "prot.pdb"),
                 "-o", str(tmp_path / "nma"), "--quiet"]) == 1
    assert "would both write" in _one_line_error(capsys)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"name,source,structure\nAbc,proteinflow_pdb,{source}\nabc,proteinflow_pdb,{source}\n")
    from seqdance.store.manifest import read_manifest

    with pytest.raises(SeqdanceError, match="differs only in case from 'Abc'"):
        read_manifest(manifest)
    from seqdance.scoring.dms import discover_assays

    assays = tmp_path / "assays"
    assays.mkdir()
    for name in ("GFP.csv", "gfp.csv"):
        (assays / name).write_text("mutant,DMS_score\nM1A,0.1\n")
    with pytest.raises(SeqdanceError, match="differ only in case"):
        discover_assays(assays)


# --- mutation tables ---------------------------------------------------------------------------------------


def test_unquoted_comma_in_a_mutation_csv_names_the_line(tmp_path: Path, tiny_model: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "muts.csv"
    table.write_text("mutant,DMS_score\nM1A,0.5\nK2A,L3P,0.1\n")  # a multi-mutant written with a comma
    assert main(["score", "--model", str(tiny_model), "--sequence", "MKLVA", "--mutations", str(table),
                 "-o", str(tmp_path / "o.csv"), "--no-progress"]) == 1
    line = _one_line_error(capsys)
    assert "muts.csv: line 3 has 3 fields but the header (line 1) has 2" in line
    assert not (tmp_path / "o.csv").exists()


# --- trajectories and structures -------------------------------------------------------------------------


def test_truncated_dcd_names_file_and_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    datafiles = pytest.importorskip("MDAnalysisTests.datafiles")
    data = Path(datafiles.DCD).read_bytes()
    cut = tmp_path / "cut.dcd"
    cut.write_bytes(data[: len(data) // 2])  # ends inside a frame
    assert main(["features", "md", "-t", datafiles.PSF, "-x", str(cut), "-o", str(tmp_path / "o.npz"),
                 "--no-progress", "--missing-hydrogens", "skip"]) == 1
    line = _one_line_error(capsys)
    assert "cut.dcd is truncated: it ends inside frame 49" in line and "48 whole frame(s)" in line
    assert not (tmp_path / "o.npz").exists()


def _write_pdb(path: Path, numbers: list[int], names: list[str]) -> Path:
    lines, serial = [], 1
    for k, (number, resname) in enumerate(zip(numbers, names)):
        for atom, dx in (("N", -1.0), ("CA", 0.0), ("C", 1.0)):
            lines.append(f"ATOM  {serial:5d} {atom:^4s} {resname:3s} A{number:4d}    "
                         f"{3.8 * k + dx:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00  0.00           {atom[0]}")
            serial += 1
    path.write_text("\n".join(lines) + "\nEND\n")
    return path


def test_duplicate_residue_numbers_and_empty_structures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = ["ALA", "GLY", "SER", "LYS", "ARG", "VAL", "LEU", "ILE"]
    dup = _write_pdb(tmp_path / "dup.pdb", [1, 2, 3, 4, 4, 5, 6, 7], names)
    empty = tmp_path / "empty.pdb"
    empty.write_text("")
    assert main(["features", "nma", str(dup), str(empty), "-o", str(tmp_path / "o"), "--quiet",
                 "--workers", "1"]) == 1
    err = capsys.readouterr().err
    assert "dup.pdb: chain A has residue number 4 twice (LYS4 and ARG4)" in err
    assert "empty.pdb: the file is empty" in err and "fread" not in err
    assert not list((tmp_path / "o").glob("*.npz"))
    assert main(["features", "md", "-t", str(empty), "-o", str(tmp_path / "o.npz"), "--no-progress"]) == 1
    assert "empty.pdb is empty" in _one_line_error(capsys)


# --- numeric options --------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["evaluate", "--model", "m", "--store", "s.h5", "-o", "o", "--max-tokens", "0"],
    ["evaluate", "--model", "m", "--store", "s.h5", "-o", "o", "--batch-size", "-1"],
    ["predict", "in.fasta", "-o", "o", "--batch-tokens", "0"],
    ["score", "--model", "m", "--sequence", "MK", "--saturation", "-o", "o.csv", "--window", "0"],
    ["features", "md", "-t", "t.pdb", "-o", "o.npz", "--stride", "0"],
    ["features", "nma", "x.pdb", "-o", "o", "--model", "-1"],
    ["dataset", "build", "m.csv", "-o", "s.h5", "--workers", "-2"],
    ["dataset", "split", "s.h5", "--identity", "nan"],
    ["train", "--config", "c.yaml", "--stop-after", "0"],
    ["loss-weights", "--store", "s.h5", "-o", "w.csv", "--max-proteins", "0"],
])
def test_nonsensical_numbers_are_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    assert "error: argument --" in capsys.readouterr().err


# --- the command line: user errors vs bugs -----------------------------------------------------------------


def test_user_errors_print_one_line_and_bugs_a_traceback(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from seqdance.cli.main import BUG_EXIT_CODE, run_command

    assert main(["dataset", "check", str(tmp_path / "absent.h5"), "-q"]) == 1  # an OSError: one line
    assert "absent.h5" in _one_line_error(capsys)
    args = type("Args", (), {"verbose": 0})()

    def user_error(_args: object) -> int:
        raise InputError("a message naming the file")

    assert run_command(user_error, args, "seqdance x") == 1
    assert _one_line_error(capsys) == "seqdance x: error: a message naming the file"

    def bug(_args: object) -> int:
        return 1 // 0

    assert run_command(bug, args, "seqdance x") == BUG_EXIT_CODE
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err and "this is a bug in seqdance, please report it" in err


def test_library_user_errors_are_seqdance_errors(tmp_path: Path) -> None:
    from seqdance.schema import get_properties
    from seqdance.store.manifest import read_manifest
    from seqdance.train.config import TrainConfig

    bad_manifest = tmp_path / "m.csv"
    bad_manifest.write_text("name,source\nx,ATLAS\n")
    calls = [
        lambda: encode("MKJ", "p"),
        lambda: get_properties(["no_such_property"]),
        lambda: read_manifest(bad_manifest),
        lambda: TrainConfig.from_dict({"total_updates": 0, "data": {"store": "x.h5"}}),
    ]
    for call in calls:
        with pytest.raises(SeqdanceError):
            call()


def test_no_plain_value_error_is_raised_in_the_package() -> None:
    """The class, not the cases: every error raised for bad input derives from SeqdanceError (InputError and
    friends keep ValueError as a second base), so new code cannot slip back to a bare ValueError."""
    import re

    src = Path(__file__).resolve().parents[1] / "src" / "seqdance"
    offenders = [
        f"{path.relative_to(src)}:{number}"
        for path in sorted(src.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"\braise (ValueError|KeyError)\(", line)
    ]
    assert offenders == []
