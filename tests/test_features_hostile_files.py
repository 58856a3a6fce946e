"""Hostile input files for ``features md`` / ``features nma``, each written by the test: damaged coordinates (NaN,
infinite, absurdly large) named by file, frame and atom; a PDB with insertion codes *and* alternate locations;
the renamed ``features nma`` flags with their deprecated old names."""

from __future__ import annotations

from pathlib import Path

import mdtraj as md
import numpy as np
import pytest
from _cg_files import write_calpha_files
from conftest import require

from seqdance.cli.main import main
from seqdance.features import extract_md, extract_nma
from seqdance.features.feature_files import load_nma_features


@pytest.fixture(scope="module")
def atlas(shared_data: Path) -> tuple[Path, Path]:
    base = shared_data / "reference" / "md"
    return require(base / "3tvj_I.pdb"), require(base / "3tvj_I_10frames.dcd")


@pytest.mark.parametrize(("value", "what"), [
    (np.nan, "not a number"),
    (np.inf, "infinite"),
    (1e30, "beyond any simulation box"),
])
def test_damaged_coordinate_is_one_line_naming_frame_and_atom(atlas, tmp_path: Path, value: float, what: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    traj = md.load(str(atlas[1]), top=str(atlas[0]))
    traj.xyz[3, 12, 1] = value  # frame 3, atom 13 (CA of SER 2)
    damaged = tmp_path / "damaged.dcd"
    traj.save_dcd(str(damaged))
    code = main(["features", "md", "-t", str(atlas[0]), "-x", str(damaged), "-o", str(tmp_path / "o.npz"), "-q"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"damaged.dcd: frame 3: atom {traj.topology.atom(12).name} of SER2" in err and what in err
    assert not (tmp_path / "o.npz").exists()
    # strided frames keep their numbers in the file
    with pytest.raises(ValueError, match=r"damaged\.dcd: frame 3: atom"):
        extract_md(atlas[0], damaged, start=1, stride=2)


def test_damaged_coordinate_of_a_trace_names_the_bead(atlas, tmp_path: Path) -> None:
    traj = md.load(str(atlas[1]), top=str(atlas[0]))
    pdb, dcd = write_calpha_files(traj, tmp_path, "trace")
    trace = md.load(str(dcd), top=str(pdb))
    trace.xyz[5, 2, 0] = np.nan
    trace.save_dcd(str(dcd))
    with pytest.raises(ValueError, match=r"trace\.dcd: frame 5: bead 3 \(\w+3 \(chain \w+\)\) has a coordinate that "
                                         r"is not a number"):
        extract_md(pdb, dcd)


def _insertion_and_altloc_pdb(source: Path, path: Path) -> None:
    """``source`` renumbered so that residue 5 is ``4A`` (an insertion code), with SER 2's OG given alternate
    locations A and B (MDTraj keeps A), written as two models so that the file is its own trajectory."""
    atoms = [line for line in source.read_text().splitlines() if line.startswith("ATOM")]
    first_model = atoms[: len(atoms)]
    rows: list[str] = []
    for line in first_model:
        number = int(line[22:26])
        if number >= 5:
            icode = "A" if number == 5 else " "
            line = f"{line[:22]}{number - 1:>4d}{icode}{line[27:]}"
        if line[22:26].strip() == "2" and line[12:16].strip() == "OG":
            rows.append(line[:16] + "A" + line[17:])
            x = float(line[30:38]) + 0.4
            rows.append(line[:16] + "B" + line[17:30] + f"{x:8.3f}" + line[38:])
            continue
        rows.append(line)
    models = []
    for model, shift in ((1, 0.0), (2, 0.05)):
        models.append(f"MODEL     {model:>4d}")
        for k, line in enumerate(rows):
            x = float(line[30:38]) + shift * np.sin(k)
            models.append(line[:30] + f"{x:8.3f}" + line[38:])
        models.append("ENDMDL")
    path.write_text("\n".join(models) + "\nEND\n")


def test_insertion_codes_with_alternate_locations(atlas, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The insertion code of each residue survives MDTraj dropping the altloc B atoms (they used to shift the
    per-atom codes, which were then thrown away: 'residue 4 of chain ... occurs twice')."""
    pdb = tmp_path / "icode_altloc.pdb"
    _insertion_and_altloc_pdb(atlas[0], pdb)
    out = tmp_path / "f.npz"
    assert main(["features", "md", "-t", str(pdb), "-o", str(out), "-q"]) == 0, capsys.readouterr().err
    with np.load(out) as data:
        ids = data["residue_ids"]
    labels = [f"{int(r['resSeq'])}{r['icode']}" for r in ids]
    assert labels[:6] == ["1", "2", "3", "4", "4A", "5"] and len(set(labels)) == len(labels)
    # features nma reads the same file: the same residues, insertion code included
    nma = extract_nma(pdb)
    assert [f"{int(r['resseq'])}{r['icode']}" for r in nma["residue_ids"]] == labels


def test_features_nma_output_and_model_index_flags_with_deprecated_names(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    structure = require(shared_data / "reference" / "nma" / "2g3r.pdb")
    assert main(["features", "nma", str(structure), "--output", str(tmp_path / "new"), "--model-index", "0",
                 "-q", "--workers", "1"]) == 0
    assert "deprecated" not in capsys.readouterr().err
    assert main(["features", "nma", str(structure), "--out-dir", str(tmp_path / "old"), "--model", "0", "-q",
                 "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert "--out-dir is deprecated and will be removed; use --output" in err
    assert "--model is deprecated and will be removed; use --model-index" in err
    new, old = load_nma_features(tmp_path / "new" / "2g3r.npz"), load_nma_features(tmp_path / "old" / "2g3r.npz")
    np.testing.assert_array_equal(new["nma_pair2"], old["nma_pair2"])
    with pytest.raises(SystemExit) as stop:  # still a usage error when neither name is given
        main(["features", "nma", str(structure), "-q"])
    assert stop.value.code == 2
    assert "one of the arguments -o/--output is required" in capsys.readouterr().err
