"""Fixtures and helpers for the dataset-store tests (and for other parts that need a real small store).

``small_real_store`` (session scope) builds a real store from ../shared/data with the project's own builder:
NMA of a subset of ``structures/bioemu_reference`` and ``proteingym_single_dev/af2_pdb`` (source
proteinflow_pdb -> group nma), MD of ``reference/md/3tvj_I`` (ATLAS -> md), ``md/mdcath_2hbaA00`` (mdCATH -> md,
every 25th frame) and two MDAnalysisTests ensembles labelled idr: adenylate kinase PSF/DCD (every 10th frame;
``idr:adk_demo``, a folded protein) and the 24-model NMR ensemble of the flexible 28-residue peptide
neopetrosiamide (``idr:neopetrosiamide_nmr``). The shared data hold no IDR simulation (no IDRome), so these two
stand in for the idr group. The store is then split by sequence identity. It yields the store path.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from seqdance.schema import properties_of_kind

DATA_ENV_HINT = "set SEQDANCE_SHARED_DATA"
#: NMA structures of the fixture store: the first few of each folder (sorted), small enough to build in seconds.
N_BIOEMU = 24
N_AF2 = 4
AF2_MAX_RESIDUES = 400


def synthetic_features(sequence: str, kind: str, seed: int = 0, *, frequency: str = "reference") -> dict:
    """Raw features with the shapes, ranges and NaN conventions of extract_md / extract_nma."""
    rng = np.random.default_rng(seed)
    residues = sequence.replace(":", "")
    n = len(residues)
    out: dict = {"sequence": sequence}
    for prop in properties_of_kind(kind):  # type: ignore[arg-type]
        key = prop.raw_key
        if prop.level == "residue":
            if prop.activation == "softmax":
                values = rng.dirichlet(np.ones(prop.width), size=n)
                if prop.name == "chi":
                    values[[i for i, a in enumerate(residues) if a in "GA"]] = np.nan
                elif prop.name == "phi":
                    values[0] = np.nan
                elif prop.name == "psi":
                    values[-1] = np.nan
            else:
                values = rng.gamma(2.0, 0.3, size=n) + 1e-3
            out[key] = values
        elif prop.activation == "signed_sigmoid":
            basis = rng.normal(size=(n, 6))
            cov = basis @ basis.T + np.eye(n) * 0.1
            d = np.sqrt(np.diag(cov))
            out[key] = cov / d[:, None] / d[None, :]
        else:
            values = rng.random((n, n)) * (rng.random((n, n)) < 0.2) * (3.0 if frequency == "reference" else 1.0)
            if frequency == "fraction":
                values = np.minimum(values, values.T)
            np.fill_diagonal(values, 0.0)
            out[key] = values
    if kind == "md":
        out["n_frames"] = 10
        out["frequency"] = frequency
    return out


def pdb_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.pdb"))


def count_calpha(path: Path) -> int:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return sum(1 for line in fh if line.startswith("ATOM") and line[12:16].strip() == "CA")


def write_manifest(path: Path, rows: Sequence[dict]) -> Path:
    columns = ["name", "source", "structure", "topology", "trajectory", "stride", "label"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def nma_rows(shared: Path, n_bioemu: int | None, n_af2: int | None, af2_max_residues: int | None = None) -> list[dict]:
    """Manifest rows for NMA structures of the shared data (``None`` = all of a folder)."""
    rows = []
    root = shared / "structures" / "bioemu_reference"
    bioemu = pdb_files(root)
    for path in bioemu[:n_bioemu] if n_bioemu is not None else bioemu:
        tail = path.relative_to(root).with_suffix("").parts[-3:]  # folder names make stems unique
        rows.append({"name": "bioemu_" + "_".join(tail), "source": "proteinflow_pdb", "structure": str(path)})
    af2 = pdb_files(shared / "proteingym_single_dev" / "af2_pdb")
    if af2_max_residues is not None:
        af2 = [p for p in af2 if count_calpha(p) <= af2_max_residues]
    for path in af2[:n_af2] if n_af2 is not None else af2:
        rows.append({"name": f"af2_{path.stem}", "source": "proteinflow_pdb", "structure": str(path)})
    return rows


def md_rows(shared: Path) -> list[dict]:
    """Manifest rows for the MD systems of the shared data and MDAnalysisTests (those present)."""
    rows = []
    ref = shared / "reference" / "md"
    if (ref / "3tvj_I.pdb").exists():
        rows.append({"name": "3tvj_I", "source": "ATLAS", "topology": str(ref / "3tvj_I.pdb"),
                     "trajectory": str(ref / "3tvj_I_10frames.dcd")})
    mdcath = shared / "md" / "mdcath_2hbaA00"
    if (mdcath / "2hbaA00.pdb").exists():
        rows.append({"name": "mdcath_2hbaA00", "source": "mdCATH", "topology": str(mdcath / "2hbaA00.pdb"),
                     "trajectory": str(mdcath / "2hbaA00_320_0.xtc"), "stride": 25})
    try:
        from MDAnalysisTests.datafiles import DCD, PSF
    except ImportError:
        return rows
    rows.append({"name": "adk_psf_dcd", "source": "idr:adk_demo", "topology": PSF, "trajectory": DCD, "stride": 10})
    try:
        from MDAnalysisTests.datafiles import PDB_multiframe
    except ImportError:
        return rows
    # 24-model NMR ensemble of the flexible 28-residue peptide neopetrosiamide: topology and frames in one file
    rows.append({"name": "neopetrosiamide_nmr", "source": "idr:neopetrosiamide_nmr", "topology": PDB_multiframe,
                 "trajectory": PDB_multiframe})
    return rows


@pytest.fixture(scope="session")
def small_real_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a small real store (NMA + MD, three source groups, split by identity); see the module doc."""
    from seqdance.store.builder import build_store
    from seqdance.store.split import split_store

    rows = nma_rows(shared_data, N_BIOEMU, N_AF2, AF2_MAX_RESIDUES) + md_rows(shared_data)
    if not rows:
        pytest.skip(f"no structures or trajectories in {shared_data} ({DATA_ENV_HINT})")
    folder = tmp_path_factory.mktemp("small_real_store")
    manifest = write_manifest(folder / "manifest.csv", rows)
    store = folder / "small_real.h5"
    report = build_store(manifest, store, workers=2)
    if report.failed:
        raise RuntimeError(f"small_real_store: {report.failed} protein(s) failed: {report.failures}")
    split_store(store, seed=0, clusters_out=folder / "clusters.tsv")
    return store


@pytest.fixture(scope="session")
def md_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small store for the attention analysis: 3tvj_I (ATLAS), mdCATH 2hbaA00 and the neopetrosiamide NMR
    ensemble (idr) labelled test, two NMA structures labelled train (built in-process, ~10 s)."""
    from seqdance.store.builder import build_store

    rows = [r for r in md_rows(shared_data) if r["name"] != "adk_psf_dcd"] + nma_rows(shared_data, 2, 0)
    if len([r for r in rows if r.get("topology")]) < 2:
        pytest.skip(f"shared MD data absent ({DATA_ENV_HINT})")
    for row in rows:
        row["label"] = "test" if row.get("topology") else "train"
    folder = tmp_path_factory.mktemp("md_store")
    store = folder / "md.h5"
    report = build_store(write_manifest(folder / "manifest.csv", rows), store, workers=0)
    if report.failed:
        raise RuntimeError(f"md_store: {report.failed} protein(s) failed: {report.failures}")
    return store
