"""One protein of a build: its input files -> features -> stored targets, in whatever process runs it.

:func:`compute_entry` never raises: a failure (a bad file, a protein without hydrogens, a bug) becomes a failed
:class:`EntryResult` naming the error, so one protein never stops a build. :func:`compute_to_journal` is the
local-worker variant that writes the journal entry itself and returns only a small result.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqdance.errors import InputError
from seqdance.features.conformation import chains_from_arrays
from seqdance.io_utils import sha256_file
from seqdance.store.hdf5 import check_finite_targets
from seqdance.store.journal import Journal
from seqdance.store.manifest import MD_INPUT_COLUMNS, ManifestEntry
from seqdance.store.transforms import features_to_targets, rmsf_scale

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class BuildSettings:
    """Options that shape computed values (recorded in the store) — picklable, sent to every worker."""

    frequency: str = "reference"
    max_residues: int | None = None
    missing_hydrogens: str = "error"
    chunk_frames: int = 100


@dataclass
class EntryResult:
    name: str
    ok: bool
    sequence: str = ""
    residue: np.ndarray | None = None
    pair: np.ndarray | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None), dict)) else str(value)


def _count_residues(path: Path) -> int | None:
    """Protein residues in a topology/structure, or None when MDTraj cannot read it cheaply."""
    try:
        import mdtraj

        top = mdtraj.load_topology(str(path))
    except Exception:
        return None
    return sum(1 for r in top.residues if r.is_protein)


def compute_entry(entry: ManifestEntry, settings: BuildSettings) -> EntryResult:
    """Features -> stored targets for one manifest entry; never raises (errors become a failed result)."""
    start = time.perf_counter()
    try:
        for role, path in entry.inputs:
            if not path.is_file():
                raise FileNotFoundError(f"{role} file not found: {path}")
        derived_from = None
        if entry.features is not None:
            features, derived_from = _read_feature_file(entry, settings)
        elif entry.kind == "nma":
            from seqdance.features.nma import extract_nma
            from seqdance.features.structure import read_calpha_structure

            structure = read_calpha_structure(
                entry.structure, chains=entry.options.get("chains"), model=entry.options.get("model", 0)
            )
            if settings.max_residues and structure.n_residues > settings.max_residues:
                raise InputError(f"{structure.n_residues} residues, more than max_residues={settings.max_residues}")
            features = extract_nma(structure)
        else:
            from seqdance.features import extract_md

            if settings.max_residues:
                n = _count_residues(entry.topology)  # type: ignore[arg-type]
                if n is not None and n > settings.max_residues:
                    raise InputError(f"{n} residues, more than max_residues={settings.max_residues}")
            features = extract_md(
                entry.topology,  # type: ignore[arg-type]
                [str(t) for t in entry.trajectories],
                frequency=settings.frequency,  # type: ignore[arg-type]
                stride=entry.options.get("stride", 1),
                start=entry.options.get("start", 0),
                stop=entry.options.get("stop"),
                chunk_frames=settings.chunk_frames,
                missing_hydrogens=settings.missing_hydrogens,  # type: ignore[arg-type]
                **{k: entry.options[k] for k in MD_INPUT_COLUMNS if k in entry.options},
            )
        residue, pair = features_to_targets(features, entry.kind, name=entry.name)  # type: ignore[arg-type]
        check_finite_targets(entry.name, residue, pair, entry.kind)
        provenance: dict[str, Any] = {
            "spec": entry.spec(),
            "inputs": [
                {"role": role, "path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size}
                for role, path in entry.inputs
            ],
            "chain_lengths": _jsonable(features.get("chain_lengths", [])),
        }
        if entry.features is not None:  # what the feature file was computed from (its recorded fingerprint)
            provenance["derived_from"] = derived_from
        if entry.kind == "md":
            # input_kind and missing_properties: the properties masked for this protein (DESIGN §3b); dataset
            # check, the loss-weight statistics and training read them from here.
            provenance.update(frequency=settings.frequency, n_frames=int(features["n_frames"]),
                              scales=rmsf_scale(features), missing_hydrogens=settings.missing_hydrogens,
                              input_kind=str(features["input_kind"]),
                              missing_properties=list(features["missing_properties"]))
            chains = chains_from_arrays(features)
        else:
            skipped = features.get("skipped_residues", [])
            provenance.update(skipped_residues=[_skipped_text(s) for s in skipped],  # type: ignore[union-attr]
                              missing_properties=[])
            chains = chains_from_arrays(features)
        provenance["conformation"] = [c.as_dict() for c in chains]  # DESIGN §10.3, per chain
        return EntryResult(entry.name, True, str(features["sequence"]), residue, pair, provenance,
                           seconds=time.perf_counter() - start)
    except Exception as exc:  # a per-protein failure: reported, never stops the run
        message = f"{type(exc).__name__}: {exc}".strip()
        log.debug("%s failed:\n%s", entry.name, traceback.format_exc())
        return EntryResult(entry.name, False, error=message, seconds=time.perf_counter() - start)


def _skipped_text(residue: Any) -> str:
    """A skipped residue as text, whether a SkippedResidue or a row read back from a feature file."""
    if isinstance(residue, np.void) and residue.dtype.names:
        from seqdance.features.structure import SkippedResidue

        chain, resseq, icode, resname, reason = residue.item()
        residue = SkippedResidue(str(chain), int(resseq), str(icode), str(resname), str(reason))
    return str(residue)


def _read_feature_file(entry: ManifestEntry, settings: BuildSettings) -> tuple[dict[str, Any], dict | None]:
    """The features of a ``features md|nma`` output named by the manifest, checked against the build's settings,
    and the fingerprint it recorded (None for files written before fingerprints)."""
    from seqdance.features.feature_files import load_feature_file
    from seqdance.schema import INTERACTION_NAMES

    path = entry.features
    assert path is not None
    kind, features, fingerprint = load_feature_file(path)
    if kind != entry.kind:
        raise InputError(f"{path} holds {kind.upper()} features but source {entry.source!r} is in group "
                         f"{entry.group!r}, which trains {entry.kind.upper()} targets")
    n = len(str(features["sequence"]).replace(":", ""))
    if settings.max_residues and n > settings.max_residues:
        raise InputError(f"{n} residues, more than max_residues={settings.max_residues}")
    if kind == "md":
        if features["frequency"] != settings.frequency:
            raise InputError(
                f"{path} has {features['frequency']!r} interaction frequencies but this build uses "
                f"{settings.frequency!r} (a store has one frequency mode): build with --frequency "
                f"{features['frequency']} or recompute the file with --frequency {settings.frequency}"
            )
        no_hbonds = [name for name in INTERACTION_NAMES if name.startswith("hb")
                     and np.isnan(np.asarray(features[name], dtype=np.float64)).all()]
        if no_hbonds and settings.missing_hydrogens == "error":
            raise InputError(f"{path} has no hydrogen-bond maps (computed without hydrogens); build with "
                             "--missing-hydrogens skip to store them masked")
    return features, fingerprint


def compute_to_journal(entry: ManifestEntry, settings: BuildSettings, directory: str) -> EntryResult:
    """Local-worker task: compute one protein and write its journal entry here, returning only a small result.

    Large results never travel through the pool's pipe, so a worker killed at any moment (OOM killer) cannot
    leave a half-sent message that would block the builder; the journal entry is complete or absent.
    """
    result = compute_entry(entry, settings)
    if result.ok:
        try:
            Journal(Path(directory)).write(index_record(entry, result), result.residue, result.pair)  # type: ignore[arg-type]
        except Exception as exc:
            return EntryResult(entry.name, False, error=f"journal write failed: {type(exc).__name__}: {exc}",
                               seconds=result.seconds)
        result.residue = result.pair = None
    return result


def index_record(entry: ManifestEntry, result: EntryResult) -> dict[str, Any]:
    """The index row a finished protein gets in the journal and then the store."""
    return {
        "name": entry.name, "sequence": result.sequence, "source": entry.source, "group": entry.group,
        "kind": entry.kind, "label": entry.label, "order": entry.row, "provenance": result.provenance,
    }
