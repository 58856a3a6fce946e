"""A store mixing every MD input kind of docs/design.md#input-kinds, end to end on real data: ``dataset build`` (per-row
back-mapping and hydrogen options, a changed option recomputing that protein alone, a bad input failing alone with a
one-line error), ``dataset check`` (the missing-property rule), training a few updates and ``evaluate``."""

from __future__ import annotations

import csv
import json
from importlib.util import find_spec
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest
from _cg_files import write_calpha_files, write_martini_files
from conftest import require

from seqdance import schema
from seqdance.features.options import BACKMAP_REPRODUCED, CALPHA_PROPERTIES
from seqdance.store import DynamicsStore
from seqdance.store.builder import build_store
from seqdance.store.check import check_store

MDA = pytest.importorskip("MDAnalysisTests.datafiles", reason="MDAnalysisTests (test extra) holds the MD test data")
pytestmark = [
    pytest.mark.skipif(find_spec("pypulchra") is None, reason="back-mapping needs pypulchra (pip install "
                       "'seqdance[backmap]'; it compiles with a C++ compiler)"),
    pytest.mark.skipif(find_spec("openmm") is None, reason="adding hydrogens needs OpenMM (pip install "
                       "'seqdance[hydrogens]')"),
    pytest.mark.usefixtures("one_torch_thread"),
]

MD_NAMES = tuple(p.name for p in schema.properties_of_kind("md"))
COLUMNS = ["name", "source", "structure", "topology", "trajectory", "stride", "label", "backmap", "backmap_properties",
           "add_hydrogens"]


def write_manifest(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in COLUMNS})
    return path


@pytest.fixture(scope="module")
def inputs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """Manifest rows: 3tvj_I all-atom (ATLAS), its Cα trace back-mapped (IDRome), its heavy-atom frames as a PED-like
    MODEL ensemble given hydrogens (PED), the Cα traces of mdCATH 2hbaA00 and adenylate kinase (IDRome, Cα only),
    a Martini-like model of 2hbaA00 (user MD source, read by its backbone beads) and one NMA structure."""
    folder = tmp_path_factory.mktemp("mixed_inputs")
    ref = shared_data / "reference" / "md"
    top, dcd = require(ref / "3tvj_I.pdb"), require(ref / "3tvj_I_10frames.dcd")
    atlas = md.load(str(dcd), top=str(top))
    mdcath = shared_data / "md" / "mdcath_2hbaA00"
    ntl9 = md.load(str(require(mdcath / "2hbaA00_320_0.xtc")), top=str(require(mdcath / "2hbaA00.pdb")), stride=10)
    adk = md.load(MDA.DCD, top=MDA.PSF, stride=10)
    atlas.atom_slice(atlas.topology.select("not element H")).save_pdb(str(folder / "ped_3tvj.pdb"))
    structure = sorted((shared_data / "structures" / "bioemu_reference").rglob("*.pdb"))[0]
    rows = [
        {"name": "aa_3tvj", "source": "ATLAS", "topology": str(top), "trajectory": str(dcd), "label": "train"},
        {"name": "ped_3tvj", "source": "PED", "topology": "ped_3tvj.pdb", "stride": 2, "add_hydrogens": "yes",
         "label": "test"},
        {"name": "bm_3tvj", "source": "IDRome", "topology": "cg_3tvj.pdb", "trajectory": "cg_3tvj.dcd", "stride": 3,
         "backmap": "pulchra", "label": "train"},
        {"name": "cg_2hba", "source": "IDRome", "topology": "cg_2hba.pdb", "trajectory": "cg_2hba.dcd",
         "label": "train"},
        {"name": "cg_adk", "source": "IDRome", "topology": "cg_adk.pdb", "trajectory": "cg_adk.dcd", "label": "test"},
        {"name": "mt_2hba", "source": "md:martini_runs", "topology": "mt_2hba.pdb", "trajectory": "mt_2hba.dcd",
         "label": "train"},
        {"name": "nma_one", "source": "proteinflow_pdb", "structure": str(structure), "label": "train"},
    ]
    write_martini_files(ntl9, folder, "mt_2hba")
    write_calpha_files(atlas, folder, "cg_3tvj")
    write_calpha_files(ntl9, folder, "cg_2hba")
    write_calpha_files(adk, folder, "cg_adk")
    return folder, rows


@pytest.fixture(scope="module")
def built(inputs) -> tuple[Path, Path, list[dict]]:
    folder, rows = inputs
    manifest = write_manifest(folder / "manifest.csv", rows)
    store = folder / "mixed.h5"
    report = build_store(manifest, store, workers=0)
    assert report.failed == 0, report.failures
    assert report.computed == len(rows)
    return store, manifest, rows


EXPECTED_KIND = {"aa_3tvj": "all_atom", "ped_3tvj": "all_atom_protonated", "bm_3tvj": "backmapped",
                 "cg_2hba": "calpha", "cg_adk": "calpha", "mt_2hba": "martini"}


def _expected_missing(kind: str) -> list[str]:
    keep = {"calpha": CALPHA_PROPERTIES, "martini": CALPHA_PROPERTIES, "backmapped": BACKMAP_REPRODUCED}.get(kind,
                                                                                                     MD_NAMES)
    return [n for n in MD_NAMES if n not in keep]


def test_mixed_store_records_and_masks_missing_properties(built) -> None:
    store_path, _, _ = built
    with DynamicsStore.open(store_path) as store:
        groups = dict(zip(store.index["name"], store.index["group"]))
        assert groups == {"aa_3tvj": "md", "ped_3tvj": "md", "bm_3tvj": "idr", "cg_2hba": "idr", "cg_adk": "idr",
                          "mt_2hba": "md", "nma_one": "nma"}
        for name, kind in EXPECTED_KIND.items():
            provenance = store.provenance(name)
            assert provenance["input_kind"] == kind
            assert provenance["missing_properties"] == _expected_missing(kind)
            if name == "ped_3tvj":
                assert provenance["spec"]["options"] == {"add_hydrogens": True, "stride": 2}
            protein = store.read(name)
            for prop_name in MD_NAMES:
                prop = schema.PROPERTY_BY_NAME[prop_name]
                block = (protein.residue[:, prop.store_channels] if prop.level == "residue"
                         else protein.pair[:, :, prop.store_channels])
                assert (block == schema.MASK_VALUE).all() == (prop_name in provenance["missing_properties"]), \
                    (name, prop_name)
        assert store.provenance("nma_one")["missing_properties"] == []
    report = check_store(store_path)
    assert report.ok, [str(p) for p in report.problems]


def test_a_changed_option_recomputes_only_that_protein_and_a_bad_input_fails_alone(built, tmp_path: Path) -> None:
    store_path, manifest, rows = built
    folder = manifest.parent
    work = tmp_path / "again.h5"
    work.write_bytes(store_path.read_bytes())
    changed = [dict(r, backmap_properties="all") if r["name"] == "bm_3tvj" else dict(r) for r in rows]
    broken = md.load(str(folder / "cg_2hba.dcd"), top=str(folder / "cg_2hba.pdb"))
    broken.xyz[4, 30:] += 1.0  # frame 4 of this copy: the chain falls apart
    broken.save_dcd(str(folder / "cg_broken.dcd"))
    changed.append({"name": "cg_broken", "source": "IDRome", "topology": "cg_2hba.pdb", "trajectory": "cg_broken.dcd",
                    "label": "train"})
    report = build_store(write_manifest(folder / "changed.csv", changed), work, workers=0)
    assert (report.computed, report.skipped, report.failed) == (1, len(rows) - 1, 1)
    (failure,) = report.failures
    assert failure["name"] == "cg_broken"
    assert "cg_broken.dcd: frame 4: chain break between consecutive beads" in failure["error"]
    assert "\n" not in failure["error"]
    with DynamicsStore.open(work) as store:
        assert store.provenance("bm_3tvj")["missing_properties"] == []
        assert store.provenance("bm_3tvj")["spec"]["options"]["backmap_properties"] == "all"
        assert "cg_broken" not in store
    assert check_store(work).ok


def test_mixed_store_trains_and_evaluates(built, tmp_path: Path) -> None:
    from test_train_resume import tiny_config

    from seqdance.model import DynamicsModel
    from seqdance.train.evaluate import evaluate_model
    from seqdance.train.trainer import Trainer

    store_path, _, _ = built
    config = tiny_config(store_path, tmp_path / "run", **{
        "total_updates": 3, "optim.warmup_updates": 1, "data.sequences_per_group": 2, "data.micro_batch_size": 1,
        "data.curriculum": [{"until": 1.0, "max_tokens": 96}],
    })
    trainer = Trainer(config)
    history = trainer.fit().history
    assert [h["update"] for h in history] == [1, 2, 3]
    assert all(np.isfinite(h["loss"]) for h in history)
    weights = trainer.weights.for_group("idr")
    assert weights["sasa_mean"] > 0 and weights["hp"] == 0.0  # only bm_3tvj has SASA in idr; no idr protein has hp
    trainer.save_model(tmp_path / "model")

    model = DynamicsModel.from_pretrained(tmp_path / "model")
    store = DynamicsStore.open(store_path)
    result = evaluate_model(model, [store], split="test", weights=trainer.weights.to_dict(), batch_size=1)
    assert result is not None
    rows = result.per_protein.set_index("name")
    assert set(rows.index) == {"ped_3tvj", "cg_adk"}
    assert np.isnan(rows.loc["cg_adk", "rmse/sasa_mean"]) and np.isfinite(rows.loc["cg_adk", "rmse/rmsf_nor"])
    assert np.isfinite(rows.loc["ped_3tvj", "rmse/hbsb"])
    losses = result.losses.set_index(["group", "property"])
    assert losses.loc[("idr", "sasa_mean"), "n_proteins"] == 0 and np.isnan(losses.loc[("idr", "sasa_mean"), "rmse"])
    assert np.isfinite(losses.loc[("idr", "(weighted total)"), "rmse"])
    assert json.loads(store.index.set_index("name").loc["cg_adk", "provenance"])["input_kind"] == "calpha"
