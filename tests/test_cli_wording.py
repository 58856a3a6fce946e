"""What the commands print reads right (issue 21, finding 20): counted nouns ("1 file", never "1 files"), one
vocabulary of progress units, progress bars and error lines named after the full command, no nested notes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from seqdance.cli.main import main
from seqdance.wording import counted, plural

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src" / "seqdance"


def test_counted_nouns() -> None:
    assert [counted(1, "file"), counted(2, "file"), counted(0, "sequence")] == ["1 file", "2 files", "0 sequences"]
    assert counted(1234, "sequence") == "1,234 sequences"
    assert [plural("entry"), plural("batch"), plural("assay"), plural("protein x head row")] == \
        ["entries", "batches", "assays", "protein x head rows"]
    assert counted(3, "datum") == "3 data" and counted(1, "index") == "1 index"


#: A count placeholder followed by a plural noun: what counted() is for.
NOUNS = ("files", "sequences", "proteins", "structures", "variants", "assays", "residues", "entries", "chains",
         "frames", "shards", "stores", "models", "labels", "failures", "problems", "queries", "embeddings", "tokens",
         "rows", "atoms", "substitutions", "mutants", "figures", "inputs", "batches")
PLURAL_AFTER_COUNT = re.compile(r"\{x\}\)? (?:[a-z-]+ )?(?:" + "|".join(NOUNS) + r")\b")
#: Printed lines whose count can only be plural (e.g. above the residue window) are none: everything goes through
#: counted(); rates ("{x:.2f} sequences/s") and fixed counts are not counts of a noun.
RATE = re.compile(r"/s\b")


def _printed_fstrings(path: Path) -> list[str]:
    """The f-strings passed to print() in a module, with their placeholders as {...}."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
            for arg in node.args:
                for part in ast.walk(arg):
                    if isinstance(part, ast.JoinedStr):
                        out.append("".join(v.value if isinstance(v, ast.Constant) else "{x}" for v in part.values))
    return out


def test_printed_counts_use_counted_nouns() -> None:
    offenders = []
    for path in sorted((SRC / "cli").glob("*.py")):
        for text in _printed_fstrings(path):
            for match in PLURAL_AFTER_COUNT.finditer(text):
                if not RATE.search(text[match.end():match.end() + 3]) and "(s)" not in match.group(0):
                    offenders.append(f"{path.name}: {text!r}")
            if "(s)" in text:
                offenders.append(f"{path.name}: {text!r} ('(s)': use counted())")
    assert not offenders, "\n".join(offenders)


#: The one vocabulary of progress-bar units.
UNITS = {"sequence", "protein", "structure", "frame", "variant", "assay", "site", "update", "batch", "metric"}


def test_progress_bars_use_one_unit_vocabulary_and_name_their_command() -> None:
    from seqdance.cli.main import build_parser

    commands = set()
    for action in build_parser()._subparsers._group_actions:
        commands |= set(action.choices)
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "tqdm"):
                continue
            keywords = {k.arg: k.value for k in node.keywords}
            unit = keywords.get("unit")
            assert isinstance(unit, ast.Constant) and unit.value in UNITS, (path.name, ast.unparse(node))
            desc = keywords.get("desc")
            if isinstance(desc, ast.JoinedStr):
                desc = desc.values[0]
            if isinstance(desc, ast.Constant):  # a variable desc is the caller's command name (predict, embed)
                assert desc.value.split()[0] in commands, (path.name, desc.value)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from _checkpoints import write_released_checkpoint

    return write_released_checkpoint(tmp_path_factory.mktemp("model") / "tiny", "tiny", "esmdance", seed=2)


def test_one_sequence_is_said_in_the_singular(tmp_path, capsys, tiny_model, one_torch_thread) -> None:
    fasta = tmp_path / "one.fasta"
    fasta.write_text(">p\nMKTAYIAKQRQ\n")
    assert main(["predict", str(fasta), "-o", str(tmp_path / "out"), "--model", str(tiny_model), "-q",
                 "--no-pairs"]) == 0
    err = capsys.readouterr().err
    assert "1 file and residues.csv (11 residues)" in err and "computed 1 sequence (13 tokens)" in err, err
    assert not re.search(r"\b1 (files|sequences|tokens)\b", err)
    assert main(["embed", str(fasta), "-o", str(tmp_path / "e.h5"), "--model", str(tiny_model), "-q"]) == 0
    err = capsys.readouterr().err
    assert "1 entry in" in err and "1 entries" not in err


def test_errors_name_the_full_command(tmp_path, capsys) -> None:
    pytest.importorskip("mdtraj", reason="features md needs the md extra")
    assert main(["features", "md", "-t", str(tmp_path / "missing.pdb"), "-o", str(tmp_path / "f.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("seqdance features md: error:") and "missing.pdb" in err


def test_a_subset_note_is_not_nested(tmp_path) -> None:
    import numpy as np
    import pandas as pd

    from seqdance.scoring.dms import Assay, load_assay_variants

    wild_type = "MKTAYIAKQRQISFVK"
    rng = np.random.default_rng(0)
    rows = [f"{wild_type[i]}{i + 1}{a}" for i in range(len(wild_type)) for a in "ACDE" if a != wild_type[i]]
    pd.DataFrame({"mutant": rows, "DMS_score": rng.normal(size=len(rows))}).to_csv(tmp_path / "a.csv", index=False)
    assay = Assay(name="a", table_path=tmp_path / "a.csv", wild_type=wild_type)
    _, variants, _, note = load_assay_variants(assay, skip_invalid=False, max_variants=10, seed=0)
    assert len(variants) == 10 and note == f"a random subset of the {len(rows)}, seed 0"
