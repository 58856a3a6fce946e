"""One protein of a build: its input files -> features -> stored targets, in whatever process runs it.

:func:`compute_entry` turns the protein's own problems (a :class:`~seqdance.errors.SeqdanceError`: a bad file, a
protein without hydrogens, a non-finite value) into a failed :class:`EntryResult` naming the error, so one protein
never stops a build. Anything else is a bug and propagates with its traceback (the builder reports one raised in
a worker process as a bug). :func:`compute_to_journal` is the local-worker variant that writes the journal entry
itself and returns only a small result.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqdance.errors import InputError, SeqdanceError
from seqdance.features.conformation import chains_from_arrays
from seqdance.features.options import MdOptions
from seqdance.store.hdf5 import check_finite_targets
from seqdance.store.journal import Journal
from seqdance.store.manifest import ManifestEntry
from seqdance.store.transforms import features_to_targets, rmsf_scale

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildSettings:
    """What a whole build shares (recorded in the store) — picklable, sent to every worker: the MD options every
    MD row starts from (its manifest columns change them), and the length limit."""

    md: MdOptions = field(default_factory=MdOptions)
    max_residues: int | None = None

    @property
    def frequency(self) -> str:
        return self.md.frequency

    @property
    def missing_hydrogens(self) -> str:
        return self.md.missing_hydrogens


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
    #: Failed by an unexpected exception in a worker process: a bug in seqdance, not a problem of the protein.
    bug: bool = False


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None), dict)) else str(value)


def _count_residues(spec: Any) -> int:
    """Protein residues in a topology (any format :func:`~seqdance.features.inputs.topology.load_topology` reads)."""
    from seqdance.features.inputs.topology import load_topology

    return sum(1 for r in load_topology(spec).topology.residues if r.is_protein)


def compute_entry(entry: ManifestEntry, settings: BuildSettings) -> EntryResult:
    """Features -> stored targets for one manifest entry; the protein's own problems become a failed result."""
    start = time.perf_counter()
    try:
        return _compute(entry, settings, start)
    except SeqdanceError as exc:  # a per-protein failure: reported, never stops the run
        message = f"{type(exc).__name__}: {exc}".strip()
        log.debug("%s failed: %s", entry.name, message)
        return EntryResult(entry.name, False, error=message, seconds=time.perf_counter() - start)


def _compute(entry: ManifestEntry, settings: BuildSettings, start: float) -> EntryResult:
    records = [spec.record(role) for role, spec in entry.inputs]  # each input hashed once, before reading it
    derived_from = None
    if entry.features is not None:
        features, derived_from = _read_feature_file(entry, settings)
    elif entry.kind == "nma":
        from seqdance.features.inputs.structures import read_calpha_structure
        from seqdance.features.nma.extract import extract_nma

        options = entry.nma_options()
        structure = read_calpha_structure(entry.inputs[0][1].path, chains=options.chains, model=options.model)
        if settings.max_residues and structure.n_residues > settings.max_residues:
            raise InputError(f"{structure.n_residues} residues, more than max_residues={settings.max_residues}")
        features = extract_nma(structure)
    else:
        from seqdance.features.md.extract import extract_md

        (_, topology), *trajectories = entry.inputs
        if settings.max_residues:
            n = _count_residues(topology)
            if n > settings.max_residues:
                raise InputError(f"{n} residues, more than max_residues={settings.max_residues}")
        features = extract_md(topology, [spec for _, spec in trajectories], entry.md_options(settings.md))
    residue, pair = features_to_targets(features, entry.kind, name=entry.name)  # type: ignore[arg-type]
    check_finite_targets(entry.name, residue, pair, entry.kind)
    provenance: dict[str, Any] = {
        "spec": entry.spec(),
        "inputs": records,
        "chain_lengths": _jsonable(features.get("chain_lengths", [])),
    }
    if entry.features is not None:  # what the feature file was computed from (its recorded fingerprint)
        provenance["derived_from"] = derived_from
    if entry.kind == "md":
        # input_kind and missing_properties: the properties masked for this protein (docs/design.md#missing-properties);
        # dataset check, the loss-weight statistics and training read them from here.
        provenance.update(frequency=settings.frequency, n_frames=int(features["n_frames"]),
                          scales=rmsf_scale(features), missing_hydrogens=settings.missing_hydrogens,
                          input_kind=str(features["input_kind"]),
                          missing_properties=list(features["missing_properties"]))
    else:
        skipped = features.get("skipped_residues", [])
        provenance.update(skipped_residues=[_skipped_text(s) for s in skipped],  # type: ignore[union-attr]
                          missing_properties=[])
    # docs/design.md#conformational-properties, per chain
    provenance["conformation"] = [c.as_dict() for c in chains_from_arrays(features)]
    return EntryResult(entry.name, True, str(features["sequence"]), residue, pair, provenance,
                       seconds=time.perf_counter() - start)


def _skipped_text(residue: Any) -> str:
    """A skipped residue as text, whether a SkippedResidue or a row read back from a feature file."""
    if isinstance(residue, np.void) and residue.dtype.names:
        from seqdance.features.inputs.structures import SkippedResidue

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
        except OSError as exc:  # the disk (full, read-only), not the protein: it fails, the next run retries it
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
