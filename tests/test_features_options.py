"""The option objects are the one definition of the feature options: the command-line flags, the manifest columns
and the fingerprints derive from them; a Python user makes the fingerprint the command line records; errors name
each option as its interface spells it; one parser of ``file.h5#T/R`` serves readers, fingerprints and manifests."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import h5py
import mdtraj as md
import numpy as np
import pytest
from _cg_files import write_calpha_files
from conftest import require

from seqdance.cli import features_md, features_nma
from seqdance.cli.main import main
from seqdance.errors import InputError
from seqdance.features import MdOptions, NmaOptions, extract_md
from seqdance.features.feature_files import is_up_to_date, recorded_fingerprint
from seqdance.features.inputs.spec import InputSpec
from seqdance.features.options import OptionError
from seqdance.store.manifest import KNOWN_COLUMNS, ManifestError, read_manifest


@pytest.fixture(scope="module")
def trace(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-bead trace of the ATLAS golden trajectory (features in well under a second)."""
    base = shared_data / "reference" / "md"
    traj = md.load(str(require(base / "3tvj_I_10frames.dcd")), top=str(require(base / "3tvj_I.pdb")))
    return write_calpha_files(traj, tmp_path_factory.mktemp("trace"), "trace")


def _parser(module) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    module.register(parser.add_subparsers())
    return parser._subparsers._group_actions[0].choices[module.__name__.rsplit("_", 1)[1]]  # type: ignore[union-attr]


@pytest.mark.parametrize(("options", "module"), [(MdOptions, features_md), (NmaOptions, features_nma)])
def test_flags_derive_from_the_options(options, module) -> None:
    actions = {action.dest: action for action in _parser(module)._actions if not action.help == argparse.SUPPRESS}
    flagged = [(name, default, info) for name, default, info in options.option_fields() if info.flags]
    assert flagged
    for name, default, info in flagged:
        action = actions[name]
        assert tuple(action.option_strings) == info.flags and action.help == info.help
        assert action.default == (info.cli_default if info.cli_default is not None else default)
        if info.choices is not None:
            assert tuple(action.choices) == info.choices
    assert set(options.manifest_columns()) <= set(KNOWN_COLUMNS)


def test_python_makes_the_fingerprint_the_command_line_records(trace, tmp_path: Path) -> None:
    pdb, dcd = trace
    out = tmp_path / "f.npz"
    assert main(["features", "md", "-t", str(pdb), "-x", str(dcd), "-o", str(out), "-q", "--stride", "2",
                 "--chunk-frames", "3"]) == 0
    options = MdOptions(stride=2)
    assert recorded_fingerprint(out) == json.loads(json.dumps(options.fingerprint(pdb, dcd)))
    assert is_up_to_date(out, options.fingerprint(str(pdb), [dcd]))
    assert not is_up_to_date(out, MdOptions(stride=3).fingerprint(pdb, dcd))
    assert options.fingerprint(pdb, dcd) == MdOptions(stride=2, chunk_frames=7, threads=1).fingerprint(pdb, dcd)


def test_nma_fingerprint_is_the_one_features_nma_records(shared_data: Path, tmp_path: Path) -> None:
    structure = require(shared_data / "reference" / "nma" / "2g3r.pdb")
    assert main(["features", "nma", str(structure), "-o", str(tmp_path), "--chains", "A", "--float32", "-q",
                 "--workers", "1"]) == 0
    options = NmaOptions(chains="A", float32=True)
    assert options.chains == ("A",)
    assert recorded_fingerprint(tmp_path / "2g3r.npz") == options.fingerprint(structure)


def test_keyword_calls_build_the_same_options(trace) -> None:
    pdb, dcd = trace
    by_keywords = extract_md(pdb, dcd, stride=2, start=1)
    by_options = extract_md(pdb, dcd, MdOptions(stride=2, start=1))
    assert by_keywords["n_frames"] == by_options["n_frames"] == 5
    np.testing.assert_array_equal(by_keywords["corr"], by_options["corr"])
    assert extract_md(pdb, dcd, MdOptions(stride=2), stride=5)["n_frames"] == 2  # keywords change given options
    with pytest.raises(TypeError, match="stirde"):
        extract_md(pdb, dcd, stirde=2)


def test_errors_name_each_option_as_its_interface_spells_it(trace, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(OptionError, match=r"^backmap_properties applies to back-mapped frames; give backmap too$"):
        MdOptions(backmap_properties="all")
    with pytest.raises(OptionError, match=r"^stop \(3\) must be greater than start \(5\)$"):
        MdOptions(start=5, stop=3)
    with pytest.raises(OptionError, match="stride must be an integer, got '2'"):
        MdOptions(stride="2")  # type: ignore[arg-type]
    assert MdOptions(stride=np.int64(3)).stride == 3 and type(MdOptions(stride=np.int64(3)).stride) is int
    pdb, dcd = trace
    argv = ["features", "md", "-t", str(pdb), "-x", str(dcd), "-o", str(tmp_path / "o.npz"), "-q"]
    assert main([*argv, "--start", "5", "--stop", "3"]) == 1
    assert "--stop (3) must be greater than --start (5)" in capsys.readouterr().err
    manifest = tmp_path / "m.csv"
    manifest.write_text("name,source,topology,trajectory,start,stop\na,ATLAS,t.pdb,t.dcd,5,3\n")
    with pytest.raises(ManifestError, match=r"row 2 \(a\): 'stop' \(3\) must be greater than 'start' \(5\)"):
        read_manifest(manifest)


def test_one_selector_parser_serves_readers_fingerprints_and_manifests(shared_data: Path, tmp_path: Path) -> None:
    """A manifest row may name an mdCATH replica (``file.h5#348/0``): the build reads that replica and records the
    selector in its provenance, as a feature file's fingerprint does."""
    from seqdance.store.builder import build_store
    from seqdance.store.hdf5 import DynamicsStore

    base = shared_data / "md" / "mdcath_2hbaA00"
    pdb, xtc = require(base / "2hbaA00.pdb"), require(base / "2hbaA00_320_0.xtc")
    xyz = md.load(str(xtc), top=str(pdb))[:8].xyz
    h5 = tmp_path / "2hbaA00.h5"
    with h5py.File(h5, "w") as handle:
        domain = handle.create_group("2hbaA00")
        domain.create_dataset("pdbProteinAtoms", data=np.bytes_(pdb.read_text()))
        domain.create_dataset("320/0/coords", data=(xyz[:4] * 10.0).astype(np.float32))
        domain.create_dataset("348/0/coords", data=(xyz[4:] * 10.0).astype(np.float32))
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"name,source,topology,trajectory\nhot,mdCATH,{h5.name},{h5.name}#348/0\n")
    (entry,) = read_manifest(manifest)
    assert [str(spec) for _, spec in entry.inputs] == [str(h5), f"{h5}#348/0"]
    report = build_store(manifest, tmp_path / "s.h5", workers=0, missing_hydrogens="skip")
    assert report.failed == 0, report.failures
    with DynamicsStore.open(tmp_path / "s.h5") as store:
        provenance = store.provenance("hot")
    assert provenance["n_frames"] == 4
    assert provenance["inputs"][1] == InputSpec.parse(f"{h5}#348/0").record("trajectory")
    assert MdOptions(missing_hydrogens="skip").fingerprint(h5, f"{h5}#348/0")["inputs"] == provenance["inputs"]
    with pytest.raises(InputError, match=r"s\.h5#320: a '#' selector picks a temperature/replica of an mdCATH file"):
        extract_md(pdb, f"{tmp_path / 's.h5'}#320")  # an HDF5 file, but not an mdCATH one


def test_input_readers_do_not_import_the_feature_families() -> None:
    """``features/inputs`` reads files; ``md``/``nma`` build on it, never the other way round."""
    grimp = pytest.importorskip("grimp")
    src = str(Path(__file__).resolve().parents[1] / "src")
    sys.path.insert(0, src)
    try:
        graph = grimp.build_graph("seqdance", cache_dir=None)
    finally:
        sys.path.remove(src)
    readers = graph.find_descendants("seqdance.features.inputs") | {"seqdance.features.inputs"}
    families = {m for root in ("seqdance.features.md", "seqdance.features.nma")
                for m in graph.find_descendants(root) | {root}}
    imported = {target for module in readers for target in graph.find_modules_directly_imported_by(module)}
    assert not imported & families, imported & families
