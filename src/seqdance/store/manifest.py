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
* optional: ``label`` (train/test; otherwise kept from an existing store, else ``train``);
* optional, the per-row options, one column per option of the same name, defined (with their defaults, choices
  and checks) by :class:`seqdance.features.options.MdOptions` and
  :class:`~seqdance.features.options.NmaOptions` (``manifest_columns()``): MD ``stride``, ``start``, ``stop``
  (frame selection), ``backmap`` (``pulchra`` / ``pulchra-python``: rebuild a one-bead-per-residue trace to all
  atoms; empty or ``none``: a one-bead trace gives its Cα properties only), ``backmap_properties``
  (``reproduced``, the default, or ``all``), ``add_hydrogens`` (yes/no: protonate an all-atom input without
  hydrogens), ``hydrogen_ph`` (default 7) and ``hydrogen_forcefield`` (``amber14``, the default, or ``none``)
  (docs/design.md#input-kinds, docs/coarse_grained.md); NMA ``chains`` (chain ids, e.g. ``A`` or ``A,B``) and ``model``
  (model index). Only values other than the defaults enter a protein's options (its spec), so adding a column of
  defaults recomputes nothing; changing a value recomputes that protein.

Paths may carry a selector (``domain.h5#320/0``, :class:`seqdance.features.inputs.spec.InputSpec`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from seqdance.errors import SeqdanceError
from seqdance.features.inputs.spec import InputSpec
from seqdance.features.options import MdOptions, NmaOptions, OptionError
from seqdance.schema import GROUP_KIND, source_group
from seqdance.shards import Shard
from seqdance.shards import parse_shard as _parse_shard
from seqdance.store.hdf5 import LABEL_WIDTH, check_name

_PATH_COLUMNS = ("structure", "topology", "trajectory", "features")
#: The per-row option columns of MD and NMA entries: the options of the same names.
MD_COLUMNS: tuple[str, ...] = MdOptions.manifest_columns()
NMA_COLUMNS: tuple[str, ...] = NmaOptions.manifest_columns()
_OPTION_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys((*MD_COLUMNS, *NMA_COLUMNS)))
KNOWN_COLUMNS = ("name", "source", "group", "label", *_PATH_COLUMNS, *_OPTION_COLUMNS)
#: Kind of each option column's value ("int", "bool", "choice", ...).
_COLUMN_KINDS: dict[str, str] = {name: info.kind for options in (MdOptions, NmaOptions)
                                 for name, _, info in options.option_fields() if info.manifest}
#: Text of a yes/no or choice column that means "not asked for".
_NO_VALUES = ("0", "no", "false", "n", "none")


def _given(column: str, text: str) -> bool:
    """Whether a row sets option ``column`` (a number or chain id always; a yes/no or choice unless "no"/"none")."""
    return bool(text) and (_COLUMN_KINDS[column] in ("int", "float", "chains") or text.lower() not in _NO_VALUES)


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
    #: The options this row sets that differ from the defaults (:meth:`MdOptions.manifest_values`; JSON values).
    options: dict[str, Any] = field(default_factory=dict)
    features: Path | None = None  # a feature file of `seqdance features md|nma`, used instead of computing

    @property
    def inputs(self) -> list[tuple[str, InputSpec]]:
        """(role, input) of every input file (a path may carry a ``#selector``)."""
        if self.features is not None:
            paths: list[tuple[str, Path | None]] = [("features", self.features)]
        elif self.kind == "nma":
            paths = [("structure", self.structure)] if self.structure else []
        else:
            paths = ([("topology", self.topology)] if self.topology else []) + [
                ("trajectory", t) for t in self.trajectories]
        return [(role, InputSpec.parse(path)) for role, path in paths if path is not None]

    def md_options(self, base: MdOptions | None = None) -> MdOptions:
        """This MD row's options over the build's (``base``: frequency, missing hydrogens, ...)."""
        return (base or MdOptions()).replace(**self.options)

    def nma_options(self, base: NmaOptions | None = None) -> NmaOptions:
        """This NMA row's options over ``base``."""
        return (base or NmaOptions()).replace(**self.options)

    def spec(self) -> dict[str, Any]:
        """What determines this protein's computed values (inputs and options); a change means recompute."""
        return {
            "kind": self.kind,
            "inputs": [[role, str(spec)] for role, spec in self.inputs],
            "options": {k: self.options[k] for k in sorted(self.options)},
        }


def same_spec(recorded: Any, current: dict[str, Any]) -> bool:
    """Whether a spec a store recorded equals ``current``, options at their default counted as not given (stores
    built before only non-default values were recorded may list ``stride: 1``)."""
    if not isinstance(recorded, dict):
        return False
    return _without_defaults(recorded) == _without_defaults(current)


def _without_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    options_class = NmaOptions if spec.get("kind") == "nma" else MdOptions
    defaults = {name: default for name, default, _ in options_class.option_fields()}
    options = {k: v for k, v in (spec.get("options") or {}).items() if k not in defaults or v != defaults[k]}
    return {**spec, "options": options}


class ManifestError(SeqdanceError, ValueError):
    """A manifest is malformed; the message names the file, row and column."""


def _clean(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value).strip()


def _resolve(base: Path, text: str) -> Path:
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else (base / path)


def _row_options(kind: str, rec: dict[str, str], where: str) -> dict[str, Any]:
    """The options a row sets (non-default values, JSON), checked by the options class; errors name the row and
    the columns."""
    options_class = MdOptions if kind == "md" else NmaOptions
    try:
        return options_class.from_manifest_row(rec).manifest_values()
    except OptionError as exc:
        raise ManifestError(f"{where}: {exc.render(lambda name: repr(name))}") from None


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
            given = [c for c in _OPTION_COLUMNS if _given(c, rec[c])]
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
        own = MD_COLUMNS if kind == "md" else NMA_COLUMNS
        given = [c for c in _OPTION_COLUMNS if c not in own and _given(c, rec[c])]
        if given:
            target = "NMA structures, not to MD" if kind == "md" else "MD inputs, not to a structure"
            raise ManifestError(f"{where}: {'/'.join(given)} apply to {target}")
        options = _row_options(kind, rec, where)
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
