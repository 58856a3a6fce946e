"""The build manifest: one CSV row per protein, naming its inputs and data source.

Columns (header required, order free):

* ``name`` — unique protein id (becomes the dataset prefix ``{name}_res_feature``);
* ``source`` — data source label (ATLAS, GPCRmd, PED, mdCATH, IDRome, proteinflow_pdb, proteinflow_sabdab, or
  ``group:label`` such as ``md:my_sims`` / ``idr:cg_runs``), mapped to a source group by
  :func:`seqdance.schema.source_group`; an optional ``group`` column (md | idr | nma) labels user sources instead;
* ``structure`` (NMA) **or** ``topology`` + ``trajectory`` (MD; several trajectories of one system, pooled,
  separated by ``;``; an empty ``trajectory`` uses the topology file's own frames: a multi-model PDB/mmCIF
  ensemble such as PED's) **or** ``features``: an ``.npz`` already written by ``seqdance features md`` /
  ``features nma`` (used as is, nothing recomputed; its kind must be the source group's). Relative paths are
  relative to the manifest's folder;
* optional: ``label`` (train/test; otherwise kept from an existing store, else ``train``), ``stride``, ``start``,
  ``stop`` (MD frame selection), ``chains`` (NMA chain ids, e.g. ``A`` or ``A,B``), ``model`` (NMA model index);
* optional, MD inputs that are not all-atom trajectories with hydrogens (DESIGN §3b, docs/coarse_grained.md):
  ``backmap`` (``pulchra`` / ``pulchra-python``: rebuild a one-bead-per-residue trace to all atoms; empty or
  ``none``: a one-bead trace gives its Cα properties only), ``backmap_properties`` (``reproduced``, the default,
  or ``all``), ``add_hydrogens`` (yes/no: protonate an all-atom input without hydrogens), ``hydrogen_ph``
  (default 7) and ``hydrogen_forcefield`` (``amber14``, the default, or ``none``). Only values other than the
  defaults enter a protein's options, so adding a column of defaults recomputes nothing; changing a value
  recomputes that protein.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from seqdance.errors import SeqdanceError
from seqdance.features.options import (
    BACKMAP_ENGINES,
    BACKMAP_PROPERTY_SETS,
    DEFAULT_HYDROGEN_PH,
    HYDROGEN_FORCEFIELDS,
)
from seqdance.schema import GROUP_KIND, source_group
from seqdance.shards import Shard
from seqdance.shards import parse_shard as _parse_shard
from seqdance.store.hdf5 import LABEL_WIDTH, check_name

_PATH_COLUMNS = ("structure", "topology", "trajectory", "features")
_INT_COLUMNS = ("stride", "start", "stop", "model")
#: Per-row input options of MD entries (back-mapping, hydrogens), as extract_md's keyword arguments.
MD_INPUT_COLUMNS = ("backmap", "backmap_properties", "add_hydrogens", "hydrogen_ph", "hydrogen_forcefield")
KNOWN_COLUMNS = ("name", "source", "group", "label", *_PATH_COLUMNS, *_INT_COLUMNS, "chains", *MD_INPUT_COLUMNS)
_TRUE = ("1", "yes", "true", "y")
_FALSE = ("", "0", "no", "false", "n")
#: Values of an MD input column that mean "not asked for".
_NO_VALUES = (*_FALSE, "none")


@dataclass(frozen=True)
class ManifestEntry:
    """One protein to build."""

    row: int  # 0-based data row in the manifest (its build order)
    name: str
    source: str
    group: str
    kind: str  # md | nma
    label: str | None  # explicit label, or None
    structure: Path | None = None
    topology: Path | None = None
    trajectories: tuple[Path, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)  # stride/start/stop + MD_INPUT_COLUMNS (MD), chains/model (NMA)
    features: Path | None = None  # a feature file of `seqdance features md|nma`, used instead of computing

    @property
    def inputs(self) -> list[tuple[str, Path]]:
        """(role, path) of every input file."""
        if self.features is not None:
            return [("features", self.features)]
        if self.kind == "nma":
            return [("structure", self.structure)] if self.structure else []
        files: list[tuple[str, Path]] = [("topology", self.topology)] if self.topology else []
        return files + [("trajectory", t) for t in self.trajectories]

    def spec(self) -> dict[str, Any]:
        """What determines this protein's computed values (inputs and options); a change means recompute."""
        return {
            "kind": self.kind,
            "inputs": [[role, str(path)] for role, path in self.inputs],
            "options": {k: self.options[k] for k in sorted(self.options)},
        }


class ManifestError(SeqdanceError, ValueError):
    """A manifest is malformed; the message names the file, row and column."""


def _clean(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()


def _resolve(base: Path, text: str) -> Path:
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else (base / path)


def md_input_options(rec: dict[str, str], where: str) -> dict[str, Any]:
    """The back-mapping and hydrogen options of one row (``MD_INPUT_COLUMNS``), defaults left out."""
    out: dict[str, Any] = {}
    backmap = rec["backmap"].lower()
    if backmap not in ("", "none"):
        if backmap not in BACKMAP_ENGINES:
            raise ManifestError(f"{where}: column 'backmap' must be one of {BACKMAP_ENGINES} or empty, got {rec['backmap']!r}")
        out["backmap"] = backmap
    properties = rec["backmap_properties"].lower()
    if properties not in ("", "reproduced"):
        if properties not in BACKMAP_PROPERTY_SETS:
            raise ManifestError(f"{where}: column 'backmap_properties' must be one of {BACKMAP_PROPERTY_SETS}, got "
                                f"{rec['backmap_properties']!r}")
        if "backmap" not in out:
            raise ManifestError(f"{where}: 'backmap_properties' applies to back-mapped frames; give 'backmap' too")
        out["backmap_properties"] = properties
    flag = rec["add_hydrogens"].lower()
    if flag not in _TRUE + _FALSE:
        raise ManifestError(f"{where}: column 'add_hydrogens' must be yes or no, got {rec['add_hydrogens']!r}")
    if flag in _TRUE:
        out["add_hydrogens"] = True
    protonates = "backmap" in out or out.get("add_hydrogens", False)
    if rec["hydrogen_ph"]:
        try:
            ph = float(rec["hydrogen_ph"])
        except ValueError:
            raise ManifestError(f"{where}: column 'hydrogen_ph' must be a number, got {rec['hydrogen_ph']!r}") from None
        if not 0.0 <= ph <= 14.0:
            raise ManifestError(f"{where}: column 'hydrogen_ph' must lie in [0, 14], got {ph:g}")
        if ph != DEFAULT_HYDROGEN_PH:
            out["hydrogen_ph"] = ph
    forcefield = rec["hydrogen_forcefield"].lower()
    if forcefield not in ("", "amber14"):
        if forcefield not in HYDROGEN_FORCEFIELDS:
            raise ManifestError(f"{where}: column 'hydrogen_forcefield' must be one of {HYDROGEN_FORCEFIELDS}, got "
                                f"{rec['hydrogen_forcefield']!r}")
        out["hydrogen_forcefield"] = forcefield
    if not protonates and ("hydrogen_ph" in out or "hydrogen_forcefield" in out):
        raise ManifestError(f"{where}: 'hydrogen_ph'/'hydrogen_forcefield' apply when hydrogens are added; set "
                            "'add_hydrogens' (or 'backmap') too")
    return out


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestEntry]:
    """Parse and validate a manifest CSV (structure of every row; file existence is checked at build time,
    where a missing file is a per-protein failure)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not a readable CSV ({exc})") from None
    df.columns = [c.strip() for c in df.columns]
    for col in ("name", "source"):
        if col not in df.columns:
            raise ManifestError(f"{path}: the manifest needs a {col!r} column (columns: {list(df.columns)})")
    if not any(c in df.columns for c in ("structure", "topology", "features")):
        raise ManifestError(f"{path}: the manifest needs a 'structure' column (NMA), 'topology' + 'trajectory' (MD) "
                            "or 'features' (feature files of 'seqdance features md|nma')")
    base = path.resolve().parent
    entries: list[ManifestEntry] = []
    seen: dict[str, int] = {}
    folded: dict[str, str] = {}
    for k, raw in enumerate(df.to_dict("records")):
        line = k + 2  # header is line 1
        where = f"{path}: row {line}"
        rec = {c: _clean(raw.get(c)) for c in KNOWN_COLUMNS}
        name = rec["name"]
        try:
            check_name(name)
        except ValueError as exc:
            raise ManifestError(f"{where}: {exc}") from None
        where = f"{path}: row {line} ({name})"
        if name in seen:
            raise ManifestError(f"{where}: duplicate name (first on row {seen[name]})")
        if name.lower() in folded:
            raise ManifestError(f"{where}: the name differs only in case from {folded[name.lower()]!r}; their "
                                "build files would collide on case-insensitive file systems; rename one")
        seen[name] = line
        folded[name.lower()] = name
        if not rec["source"]:
            raise ManifestError(f"{where}: empty 'source'")
        try:
            group = source_group(rec["source"], explicit=rec["group"] or None)
        except ValueError as exc:
            raise ManifestError(f"{where}: {exc}") from None
        label = rec["label"] or None
        if label is not None and len(label.encode("utf-8")) > LABEL_WIDTH:
            raise ManifestError(f"{where}: label {label!r} is longer than {LABEL_WIDTH} bytes")
        has_structure = bool(rec["structure"])
        has_md = bool(rec["topology"] or rec["trajectory"])
        if rec["features"]:
            if has_structure or has_md:
                raise ManifestError(f"{where}: give 'features' (a feature file) or the files to compute it from, "
                                    "not both")
            given = [c for c in (*_INT_COLUMNS, "chains") if rec[c]]
            given += [c for c in MD_INPUT_COLUMNS if rec[c] and rec[c].lower() not in _NO_VALUES]
            if given:
                raise ManifestError(f"{where}: {', '.join(given)} cannot apply to a feature file (they were chosen "
                                    "when it was computed)")
            entries.append(ManifestEntry(k, name, rec["source"], group, GROUP_KIND[group], label,
                                         features=_resolve(base, rec["features"])))
            continue
        if has_structure == has_md:
            raise ManifestError(f"{where}: give either 'structure' (NMA) or 'topology' + 'trajectory' (MD) (or a "
                                f"'features' file), not "
                                f"{'both' if has_structure else 'neither'}")
        kind = "nma" if has_structure else "md"
        if GROUP_KIND[group] != kind:
            need = "'structure'" if GROUP_KIND[group] == "nma" else "'topology' + 'trajectory'"
            raise ManifestError(f"{where}: source {rec['source']!r} is in group {group!r}, which is built from {need}")
        options: dict[str, Any] = {}
        for col in _INT_COLUMNS:
            if rec[col]:
                try:
                    options[col] = int(rec[col])
                except ValueError:
                    raise ManifestError(f"{where}: column {col!r} must be an integer, got {rec[col]!r}") from None
        if options.get("stride", 1) < 1:
            raise ManifestError(f"{where}: stride must be at least 1")
        if kind == "nma" and any(c in options for c in ("stride", "start", "stop")):
            raise ManifestError(f"{where}: stride/start/stop apply to MD trajectories, not to a structure")
        if kind == "md" and ("model" in options or rec["chains"]):
            raise ManifestError(f"{where}: chains/model apply to NMA structures, not to MD")
        given = [c for c in MD_INPUT_COLUMNS if rec[c] and rec[c].lower() not in _NO_VALUES]
        if kind == "nma" and given:
            raise ManifestError(f"{where}: {'/'.join(given)} apply to MD inputs, not to a structure")
        if kind == "md":
            options.update(md_input_options(rec, where))
        if rec["chains"]:
            options["chains"] = [c.strip() for c in rec["chains"].replace(";", ",").split(",") if c.strip()]
        if kind == "nma":
            entries.append(ManifestEntry(k, name, rec["source"], group, kind, label,
                                         structure=_resolve(base, rec["structure"]), options=options))
            continue
        if not rec["topology"]:
            raise ManifestError(f"{where}: MD entries need a 'topology' (and a 'trajectory', unless the topology "
                                "file's own models are the frames)")
        trajectories = tuple(_resolve(base, t.strip()) for t in rec["trajectory"].split(";") if t.strip())
        entries.append(ManifestEntry(k, name, rec["source"], group, kind, label,
                                     topology=_resolve(base, rec["topology"]), trajectories=trajectories,
                                     options=options))
    return entries


def shard_of(name: str, n_shards: int) -> int:
    """Shard (0-based) a protein belongs to: stable under reordering of the manifest (SHA-256 of the name)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % n_shards


def parse_shard(text: str) -> Shard:
    """``"i/N"`` (0 ≤ i < N) -> ``(i, N)``: :func:`seqdance.shards.parse_shard`, the one parser of ``--shard``."""
    return _parse_shard(text)
