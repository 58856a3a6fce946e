"""Pictures and structure colouring of predictions: ``predict --plots`` and ``seqdance map``."""

from __future__ import annotations

import numpy as np
import pytest
from _checkpoints import write_released_checkpoint
from conftest import require

from seqdance.cli.main import main
from seqdance.display.plots import plot_pair_maps, plot_residue_profiles, summed_interactions
from seqdance.inference.prediction import Prediction
from seqdance.inference.prediction_io import save_prediction
from seqdance.schema import INTERACTION_NAMES, PROPERTIES

THREE_TO_ONE = {"ALA": "A", "ARG": "R", "ASN": "N", "ASP": "D", "CYS": "C", "GLN": "Q", "GLU": "E", "GLY": "G",
                "HIS": "H", "ILE": "I", "LEU": "L", "LYS": "K", "MET": "M", "PHE": "F", "PRO": "P", "SER": "S",
                "THR": "T", "TRP": "W", "TYR": "Y", "VAL": "V"}


def _png_shape(path) -> tuple[int, ...]:
    from matplotlib.image import imread

    return imread(path).shape


def test_predict_plots_end_to_end(tmp_path) -> None:
    checkpoint = write_released_checkpoint(tmp_path / "ckpt", "tiny", "esmdance", seed=2)
    fasta = tmp_path / "in.fa"
    fasta.write_text(">single\nMKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ\n>cplx\nMKVLAGGSWH:GGSWHMKV\n")
    out = tmp_path / "out"
    assert main(["predict", str(fasta), "-o", str(out), "--model", str(checkpoint), "--plots", "-q",
                 "--device", "cpu"]) == 0
    for stem in ("single", "cplx"):
        for kind in ("profiles", "pairs"):
            shape = _png_shape(out / f"{stem}.{kind}.png")
            assert shape[0] > 300 and shape[1] > 600 and shape[2] in (3, 4)
    before = (out / "single.profiles.png").stat().st_mtime_ns
    assert main(["predict", str(fasta), "-o", str(out), "--model", str(checkpoint), "--plots", "-q"]) == 0
    assert (out / "single.profiles.png").stat().st_mtime_ns == before  # done and drawn: nothing redone
    (out / "cplx.pairs.png").unlink()
    (out / "cplx.profiles.png").unlink()
    assert main(["predict", str(fasta), "-o", str(out), "--model", str(checkpoint), "--plots", "-q"]) == 0
    assert (out / "cplx.pairs.png").is_file()  # a missing figure is drawn again


def test_residue_only_prediction_draws_profiles_only(tmp_path) -> None:
    rng = np.random.default_rng(0)
    n = 40
    values = {"rmsf_nor": rng.random(n), "sasa_mean": rng.random(n), "sasa_std": rng.random(n) * 0.1,
              "ss": rng.dirichlet(np.ones(8), size=n), **{f"nma_res{k}": rng.random(n) * 0.01 for k in (1, 2, 3)}}
    assert plot_residue_profiles(tmp_path / "p.png", values, (25, 15), title="t").is_file()
    assert plot_pair_maps(tmp_path / "m.png", values, (25, 15)) is None
    assert not (tmp_path / "m.png").exists()


def test_summed_interactions_is_the_frequency_sum() -> None:
    rng = np.random.default_rng(1)
    values = {name: rng.random((5, 5)) for name in INTERACTION_NAMES}
    expected = sum(values[name] ** 3 for name in INTERACTION_NAMES)
    np.testing.assert_allclose(summed_interactions(values), expected, rtol=1e-12)
    assert summed_interactions({"corr": np.zeros((5, 5))}) is None


# --- map ----------------------------------------------------------------------------------------------


def _chain_residues(path, chain: str) -> list[tuple[str, int, str]]:
    """(residue name, number, insertion code) of the amino acids of one chain (read independently)."""
    import gemmi

    structure = gemmi.read_structure(str(path))
    return [(r.name, r.seqid.num, r.seqid.icode.strip()) for r in structure[0][chain] if r.name in THREE_TO_ONE]


def _prediction(sequence: str, values: np.ndarray) -> Prediction:
    arrays = {p.name: np.zeros(len(sequence)) for p in PROPERTIES if p.is_residue and p.width == 1}
    arrays["rmsf_nor"] = values
    return Prediction(id="probe", sequence=sequence, chain_lengths=(len(sequence),), values=arrays)


@pytest.mark.parametrize("suffix", [".pdb", ".cif"])
def test_map_writes_the_predicted_values_into_the_aligned_residues(tmp_path, shared_data, capsys, suffix) -> None:
    import gemmi

    structure = require(shared_data / "reference" / "nma" / "2g3r.pdb")
    residues = _chain_residues(structure, "A")
    observed = "".join(THREE_TO_ONE[name] for name, _, _ in residues)
    # the prediction lacks the structure's first 3 residues, carries one point mutation and 2 extra C-terminal
    # residues the structure does not have
    mutated_at = 20
    core = observed[3:]
    sequence = core[:mutated_at] + ("W" if core[mutated_at] != "W" else "A") + core[mutated_at + 1:] + "GS"
    values = np.round(np.random.default_rng(5).random(len(sequence)), 6) + 0.005
    save_prediction(tmp_path / "probe.npz", _prediction(sequence, values), model="test")
    out = tmp_path / f"mapped{suffix}"
    assert main(["map", str(tmp_path / "probe.npz"), "--structure", str(structure), "--property", "rmsf_nor",
                 "-o", str(out), "--missing", "-1"]) == 0
    err = capsys.readouterr().err
    name, number, icode = residues[3 + mutated_at]
    assert f"1 differ: A:{name}{number}{icode}" in err and "2 predicted residues not in the structure" in err
    assert "3 structure residues without a prediction" in err

    expected = {(num, ic): -1.0 for _, num, ic in residues}
    for k in range(len(core)):
        _, num, ic = residues[3 + k]
        expected[(num, ic)] = float(values[k])
    written = gemmi.read_structure(str(out))
    tolerance = 0.005 + 1e-9 if suffix == ".pdb" else 1e-5  # PDB keeps two decimals, mmCIF six digits
    checked = 0
    for residue in written[0]["A"]:
        key = (residue.seqid.num, residue.seqid.icode.strip())
        if residue.name not in THREE_TO_ONE:
            continue
        for atom in residue:
            assert abs(atom.b_iso - expected[key]) <= tolerance, (key, atom.name, atom.b_iso, expected[key])
            checked += 1
    assert checked > 8 * len(core)
    lines = out.with_suffix(".defattr").read_text().splitlines()
    assert lines[:3] == ["attribute: seqdance_rmsf_nor", "match mode: 1-to-1", "recipient: residues"]
    attributes = dict(line.strip().split("\t") for line in lines[3:])
    assert len(attributes) == len(core)
    for k in range(len(core)):
        _, num, ic = residues[3 + k]
        assert float(attributes[f"/A:{num}{ic}"]) == pytest.approx(values[k], abs=1e-9)


def test_map_refuses_an_unrelated_structure(tmp_path, shared_data) -> None:
    structure = require(shared_data / "reference" / "nma" / "2g3r.pdb")
    save_prediction(tmp_path / "p.npz", _prediction("MKVIFLKDVKGMGKKGEIKNVADGYANNFLFKQ", np.ones(33)))
    assert main(["map", str(tmp_path / "p.npz"), "-s", str(structure), "-o", str(tmp_path / "o.pdb")]) == 1
    assert not (tmp_path / "o.pdb").exists()
