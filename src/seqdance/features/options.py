"""The feature options, defined once: their choices, and the option objects :class:`MdOptions` and
:class:`NmaOptions` from which the command-line flags, the dataset manifest's columns and the fingerprints of
feature files all derive.

Light on purpose (no numeric library): the command line builds its parsers from this module without importing
MDTraj or SciPy.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Literal, TypeVar

from seqdance.devices import DEVICE_HELP
from seqdance.errors import InputError
from seqdance.features.inputs.spec import InputSpec, InputSpecLike, as_specs

#: Interaction frequency definitions (docs/design.md#interaction-frequencies): atom-pair records per frame, as the
#: released data, or the fraction of frames with at least one contact (symmetric).
Frequency = Literal["reference", "fraction"]
FREQUENCIES: tuple[str, ...] = ("reference", "fraction")

#: What to do with a trajectory without hydrogens: fail, or skip the H-bond maps (masked).
MissingHydrogens = Literal["error", "skip"]
MISSING_HYDROGENS: tuple[str, ...] = ("error", "skip")

#: Which implementation computes SASA: "auto" = the compiled kernel on CPU, torch on a GPU device; "mdtraj" =
#: MDTraj's ``shrake_rupley`` called one frame at a time (the previous path, kept for comparison).
SasaEngine = Literal["auto", "numba", "torch", "mdtraj"]
SASA_ENGINES: tuple[str, ...] = ("auto", "numba", "torch", "mdtraj")

#: Normal-mode zero modes: remove exactly the rigid-body modes, or every eigenvalue < 1e-6 as the reference.
ZeroModes = Literal["rigid", "reference"]
ZERO_MODES: tuple[str, ...] = ("rigid", "reference")

#: A structure whose residues fall into separate pieces: fail, or analyse each piece on its own.
Disconnected = Literal["error", "split"]
DISCONNECTED: tuple[str, ...] = ("error", "split")

#: Per-chain conformational properties of docs/design.md#conformational-properties (seqdance.features.conformation), in
#: table order.
CONFORMATION_PROPERTIES: tuple[str, ...] = (
    "rg_mean", "rg_std", "ree_mean", "ree_std", "asphericity_mean", "asphericity_std", "scaled_rg", "nu", "r0",
)

#: Back-mapping engines for one-bead-per-residue traces (seqdance.features.inputs.backmapping): PULCHRA's C++ code
#: ("pulchra", PyPI pypulchra) or its pure-Python port ("pulchra-python", PyPI pulchra).
BackmapEngine = Literal["pulchra", "pulchra-python"]
BACKMAP_ENGINES: tuple[str, ...] = ("pulchra", "pulchra-python")

#: Which properties of back-mapped frames are kept: those back-mapping reproduces (docs/coarse_grained.md,
#: fidelity decision; the others are missing) or every property, as the reference computed them.
BackmapProperties = Literal["reproduced", "all"]
BACKMAP_PROPERTY_SETS: tuple[str, ...] = ("reproduced", "all")
#: Schema names of the MD properties back-mapped frames reproduce usefully (RMSF and the movement correlation come
#: from the trace itself); measured by benchmarks/bench_backmapping.py, decision in docs/coarse_grained.md.
BACKMAP_REPRODUCED: tuple[str, ...] = ("sasa_mean", "sasa_std", "rmsf_nor", "ss", "vdw", "hbbb", "corr")
#: Schema names of the MD properties a Cα trace defines by itself (docs/design.md#calpha-traces).
CALPHA_PROPERTIES: tuple[str, ...] = ("rmsf_nor", "corr")

#: Force fields for adding hydrogens (seqdance.features.inputs.hydrogens): Amber ff14SB, or "none" for Modeller's
#: force-field-free geometric placement (accepts any residue; loses many side-chain H-bonds).
HydrogenForceFieldName = Literal["amber14", "none"]
HYDROGEN_FORCEFIELDS: tuple[str, ...] = ("amber14", "none")
#: pH at which protonation states are chosen when hydrogens are added.
DEFAULT_HYDROGEN_PH = 7.0

#: What kind of input an MD feature set came from (MdFeatures["input_kind"]): an all-atom trajectory as given,
#: an all-atom trajectory given hydrogens here, a one-bead-per-residue (Cα) trace, such a trace back-mapped, or
#: the backbone (BB) beads of a Martini model (several beads per residue).
InputKind = Literal["all_atom", "all_atom_protonated", "calpha", "backmapped", "martini"]
INPUT_KINDS: tuple[str, ...] = ("all_atom", "all_atom_protonated", "calpha", "backmapped", "martini")
#: Input kinds read as a trace of one bead per residue (Cα properties only unless back-mapped).
TRACE_INPUT_KINDS: tuple[str, ...] = ("calpha", "martini")

#: Coordinates whose magnitude exceeds this (nm) are refused as absurd: no simulation box is 10 µm wide.
MAX_COORDINATE_NM = 1.0e4


# --- option objects ---------------------------------------------------------------------------------------------


class OptionError(InputError):
    """An option out of range, or options that contradict each other.

    The message names the options as the caller spelled them: keyword names in Python (``str(error)``), flags on
    the command line and columns in a manifest (:meth:`render`). ``template`` holds ``{name}`` placeholders.
    """

    def __init__(self, template: str, names: tuple[str, ...] = ()) -> None:
        super().__init__(template, names)
        self.template, self.names = template, tuple(names)

    def render(self, label: Callable[[str], str]) -> str:
        """The message with each option named by ``label(name)``."""
        return self.template.format(**{name: label(name) for name in self.names})

    def __str__(self) -> str:
        return self.render(lambda name: name)


def _shown(value: Any) -> str:
    """``repr(value)`` safe inside an :class:`OptionError` template."""
    return repr(value).replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class OptionInfo:
    """How one option appears outside Python: its help, whether it changes computed values (and so enters a
    fingerprint), its command-line flag and its column in a dataset manifest."""

    help: str
    #: "int", "float", "bool", "choice", "chains" (chain ids), "str" or "object" (Python only).
    kind: str
    #: Recorded in the fingerprint of a feature file: "always", "if_set" (only when not None) or "never".
    fingerprint: str = "always"
    #: A per-row column of the dataset manifest (same name as the option).
    manifest: bool = False
    #: Command-line flags, canonical first; () for an option the command line does not offer.
    flags: tuple[str, ...] = ()
    #: Old flags still accepted, with a warning.
    deprecated_flags: tuple[str, ...] = ()
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    metavar: str | None = None
    #: The command line's default when it differs from the Python default (``None``: the same).
    cli_default: Any = None
    #: What the value is, for messages ("pH for adding hydrogens").
    what: str | None = None


def _meta(help: str, kind: str, **info: Any) -> dict[str, OptionInfo]:
    """The field metadata of an option: its :class:`OptionInfo`."""
    return {"option": OptionInfo(help=help, kind=kind, **info)}


OptionsT = TypeVar("OptionsT", bound="_Options")


class _Options:
    """What :class:`MdOptions` and :class:`NmaOptions` share: typing, validation, and their outside views."""

    #: The feature kind whose fingerprints these options make.
    KIND: ClassVar[str]

    def __post_init__(self) -> None:
        for item in fields(self):  # type: ignore[arg-type]
            info = item.metadata["option"]
            object.__setattr__(self, item.name, _normalised(item.name, getattr(self, item.name), info,
                                                            optional=item.default is None))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`OptionError` naming the option when a value is out of range or options contradict."""
        for item in fields(self):  # type: ignore[arg-type]
            info: OptionInfo = item.metadata["option"]
            value = getattr(self, item.name)
            if value is None:
                continue
            if info.choices is not None and value not in info.choices:
                extra = " (or None)" if item.default is None else ""
                raise OptionError(f"{{{item.name}}} must be one of {info.choices}{extra}, got {_shown(value)}",
                                  (item.name,))
            low, high = info.minimum, info.maximum
            if (low is not None and value < low) or (high is not None and value > high):
                span = f"lie in [{low:g}, {high:g}]" if low is not None and high is not None else f"be at least {low:g}"
                what = f": {info.what}" if info.what else ""
                raise OptionError(f"{{{item.name}}}{what} must {span}, got {_shown(value)}", (item.name,))

    # --- the outside views --------------------------------------------------------------------------------

    @classmethod
    def option_fields(cls) -> list[tuple[str, Any, OptionInfo]]:
        """(name, Python default, :class:`OptionInfo`) of every option, in definition order."""
        return [(item.name, item.default, item.metadata["option"]) for item in fields(cls)]  # type: ignore[arg-type]

    @classmethod
    def manifest_columns(cls) -> tuple[str, ...]:
        """The dataset manifest's per-row columns of these options."""
        return tuple(name for name, _, info in cls.option_fields() if info.manifest)

    def fingerprint_options(self) -> dict[str, Any]:
        """The options that change computed values, as a feature file's fingerprint records them (JSON values;
        chain ids comma-joined)."""
        out: dict[str, Any] = {}
        for name, _, info in self.option_fields():
            value = getattr(self, name)
            if info.fingerprint == "never" or (info.fingerprint == "if_set" and value is None):
                continue
            out[name] = _json_value(value, info)
        return out

    def manifest_values(self) -> dict[str, Any]:
        """The manifest columns whose value differs from the default (JSON values): what a dataset store records
        as a protein's options, so that a column of defaults changes nothing."""
        defaults = type(self)()
        out: dict[str, Any] = {}
        for name in self.manifest_columns():
            value = getattr(self, name)
            if value != getattr(defaults, name):
                out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_args(cls: type[OptionsT], args: Any, base: OptionsT | None = None) -> OptionsT:
        """The options given on a command line (an ``argparse.Namespace``: one attribute per flagged option);
        errors name the flags."""
        values = {name: getattr(args, name) for name, _, info in cls.option_fields()
                  if info.flags and hasattr(args, name)}
        try:
            return replace(base, **values) if base is not None else cls(**values)
        except OptionError as exc:
            raise InputError(exc.render(cls.flag_of)) from None

    @classmethod
    def flag_of(cls, name: str) -> str:
        """The canonical command-line flag of option ``name``."""
        info = next(info for option, _, info in cls.option_fields() if option == name)
        return info.flags[0] if info.flags else name

    @classmethod
    def from_manifest_row(cls: type[OptionsT], row: Mapping[str, str], base: OptionsT | None = None) -> OptionsT:
        """The options one manifest row sets (text cells; empty: the default). Raises :class:`OptionError`
        naming the columns."""
        values: dict[str, Any] = {}
        for name, default, info in cls.option_fields():
            text = str(row.get(name) or "").strip()
            if info.manifest and text:
                values[name] = _parse_cell(name, text, default, info)
        return replace(base, **values) if base is not None else cls(**values)

    def replace(self: OptionsT, **changes: Any) -> OptionsT:
        """A copy with ``changes`` (validated)."""
        return replace(self, **changes)


def _normalised(name: str, value: Any, info: OptionInfo, *, optional: bool) -> Any:
    """``value`` as the option's type (numpy scalars accepted); :class:`OptionError` naming ``name`` otherwise."""
    if value is None and (optional or info.kind == "object"):
        return None
    kind = info.kind
    if kind == "int":
        if isinstance(value, bool) or isinstance(value, str):
            raise OptionError(f"{{{name}}} must be an integer, got {_shown(value)}", (name,))
        try:
            return operator.index(value)
        except TypeError:
            raise OptionError(f"{{{name}}} must be an integer, got {_shown(value)}", (name,)) from None
    if kind == "float":
        if isinstance(value, (str, bool)):
            raise OptionError(f"{{{name}}} must be a number, got {_shown(value)}", (name,))
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise OptionError(f"{{{name}}} must be a number, got {_shown(value)}", (name,)) from None
        if not math.isfinite(number):
            raise OptionError(f"{{{name}}} must be a finite number, got {_shown(value)}", (name,))
        return number
    if kind == "bool":
        if isinstance(value, str) or value not in (True, False):
            raise OptionError(f"{{{name}}} must be True or False, got {_shown(value)}", (name,))
        return bool(value)
    if kind in ("choice", "str"):
        if not isinstance(value, str):
            raise OptionError(f"{{{name}}} must be a string, got {_shown(value)}", (name,))
        return value
    if kind == "chains":
        chains = value.replace(";", ",").split(",") if isinstance(value, str) else list(value)
        if not all(isinstance(c, str) for c in chains):
            raise OptionError(f"{{{name}}} must be chain ids such as 'A,B', got {_shown(value)}", (name,))
        cleaned = tuple(c.strip() for c in chains if c.strip())
        return cleaned or None
    return value


def _json_value(value: Any, info: OptionInfo) -> Any:
    if info.kind == "chains":
        return None if value is None else ",".join(value)
    if info.kind == "object":
        return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else repr(value)
    return value


_TRUE = ("1", "yes", "true", "y")
_FALSE = ("0", "no", "false", "n")


def _parse_cell(name: str, text: str, default: Any, info: OptionInfo) -> Any:
    """One manifest cell as the option's value."""
    kind = info.kind
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise OptionError(f"{{{name}}} must be an integer, got {_shown(text)}", (name,)) from None
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise OptionError(f"{{{name}}} must be a number, got {_shown(text)}", (name,)) from None
    if kind == "bool":
        if text.lower() not in _TRUE + _FALSE:
            raise OptionError(f"{{{name}}} must be yes or no, got {_shown(text)}", (name,))
        return text.lower() in _TRUE
    if kind == "choice":
        if default is None and text.lower() == "none":
            return None
        return text.lower()
    return text


@dataclass(frozen=True)
class MdOptions(_Options):
    """Options of :func:`~seqdance.features.extract_md` (and ``features md``, the manifest's MD columns, the
    MD builds of ``dataset build``). Those that change values enter a feature file's fingerprint
    (:meth:`fingerprint`); ``chunk_frames``, ``sasa``, ``device`` and ``threads`` only change speed and memory.
    """

    KIND: ClassVar[str] = "md"

    frequency: Frequency = field(default="reference", metadata=_meta(
        "interaction frequency: 'reference' = atom-pair records per frame, asymmetric (as the released data); "
        "'fraction' = fraction of frames with a contact, symmetric (default: reference)",
        "choice", flags=("--frequency",), choices=FREQUENCIES))
    stride: int = field(default=1, metadata=_meta(
        "use every N-th frame (default 1)", "int", manifest=True, flags=("--stride",), minimum=1))
    start: int = field(default=0, metadata=_meta(
        "first frame of each trajectory (0-based, default 0)", "int", manifest=True, flags=("--start",), minimum=0))
    stop: int | None = field(default=None, metadata=_meta(
        "frame index to stop before (default: end)", "int", manifest=True, flags=("--stop",), minimum=1))
    missing_hydrogens: MissingHydrogens = field(default="error", metadata=_meta(
        "without hydrogens (and without --add-hydrogens): 'error' (default) or 'skip' = H-bond maps missing (NaN)",
        "choice", flags=("--missing-hydrogens",), choices=MISSING_HYDROGENS))
    add_hydrogens: bool = field(default=False, metadata=_meta(
        "add hydrogens (OpenMM) to an all-atom input that has none (PED conformers, X-ray ensembles), so that "
        "H-bonds can be computed; an input with hydrogens is used as it is",
        "bool", manifest=True, flags=("--add-hydrogens",)))
    hydrogen_ph: float = field(default=DEFAULT_HYDROGEN_PH, metadata=_meta(
        f"pH for the protonation states of added hydrogens (default {DEFAULT_HYDROGEN_PH:g})",
        "float", manifest=True, flags=("--hydrogen-ph",), metavar="PH", minimum=0.0, maximum=14.0,
        what="pH for adding hydrogens"))
    hydrogen_forcefield: HydrogenForceFieldName = field(default="amber14", metadata=_meta(
        "force field placing added hydrogens: amber14 (default, ff14SB) or none (geometric, any residue; loses "
        "many side-chain H-bonds)", "choice", manifest=True, flags=("--hydrogen-forcefield",),
        choices=HYDROGEN_FORCEFIELDS))
    backmap: BackmapEngine | None = field(default=None, metadata=_meta(
        "rebuild all-atom frames from a one-bead-per-residue trace with PULCHRA (C++ 'pulchra' or the pure-Python "
        "port 'pulchra-python'), add hydrogens and relax; RMSF and correlation still come from the trace",
        "choice", manifest=True, flags=("--backmap",), choices=BACKMAP_ENGINES))
    backmap_properties: BackmapProperties = field(default="reproduced", metadata=_meta(
        "with --backmap: 'reproduced' (default) keeps the properties back-mapping reproduces (SASA, DSSP, vdW, "
        "backbone H-bonds) and leaves the others missing; 'all' computes every property from the rebuilt frames, "
        "as the reference did", "choice", manifest=True, flags=("--backmap-properties",),
        choices=BACKMAP_PROPERTY_SETS))
    #: Custom contact criteria (``seqdance.features.md.contact_geometry.ContactCriteria``; None: GetContacts'
    #: defaults). Python only; recorded in fingerprints when set.
    criteria: Any = field(default=None, metadata=_meta("contact criteria (Python only)", "object",
                                                       fingerprint="if_set"))
    chunk_frames: int = field(default=100, metadata=_meta(
        "frames held in memory at once (default 100)", "int", fingerprint="never", flags=("--chunk-frames",),
        minimum=1))
    sasa: SasaEngine = field(default="auto", metadata=_meta(
        "SASA implementation (same numbers): 'auto' (default) = compiled kernel on CPU, torch on a GPU --device; "
        "'mdtraj' = MDTraj's shrake_rupley one frame per call (previous path)",
        "choice", fingerprint="never", flags=("--sasa",), choices=SASA_ENGINES))
    device: str | None = field(default=None, metadata=_meta(  # where the SASA runs
        DEVICE_HELP, "str", fingerprint="never", flags=("--device",), cli_default="auto", metavar="DEVICE"))
    threads: int | None = field(default=None, metadata=_meta(
        "CPU threads computing SASA frames in parallel (default: all cores)",
        "int", fingerprint="never", flags=("--threads",), minimum=1))

    def validate(self) -> None:
        """:class:`OptionError` for a value out of range or options that contradict each other."""
        super().validate()
        if self.stop is not None and self.stop <= self.start:
            raise OptionError(f"{{stop}} ({self.stop}) must be greater than {{start}} ({self.start})",
                              ("stop", "start"))
        if self.backmap is None and self.backmap_properties != "reproduced":
            raise OptionError("{backmap_properties} applies to back-mapped frames; give {backmap} too",
                              ("backmap_properties", "backmap"))
        protonates = self.add_hydrogens or self.backmap is not None
        if not protonates and (self.hydrogen_ph != DEFAULT_HYDROGEN_PH or self.hydrogen_forcefield != "amber14"):
            raise OptionError("{hydrogen_ph}/{hydrogen_forcefield} apply when hydrogens are added; set "
                              "{add_hydrogens} (or {backmap}) too",
                              ("hydrogen_ph", "hydrogen_forcefield", "add_hydrogens", "backmap"))
        if self.backmap is not None and self.hydrogen_forcefield == "none":
            raise OptionError("back-mapped frames are relaxed with a force field (every atom but Cα, to remove the "
                              "clashes PULCHRA leaves); {hydrogen_forcefield} cannot be 'none' with {backmap}",
                              ("hydrogen_forcefield", "backmap"))

    def fingerprint(self, topology: InputSpecLike,
                    trajectories: InputSpecLike | Sequence[InputSpecLike] | None = None) -> dict[str, Any]:
        """The fingerprint ``features md`` records for these inputs and options (inputs hashed now)."""
        inputs = [("topology", topology)] + [("trajectory", t) for t in as_specs(trajectories)]
        return feature_fingerprint(self.KIND, inputs, self.fingerprint_options())


@dataclass(frozen=True)
class NmaOptions(_Options):
    """Options of :func:`~seqdance.features.extract_nma` (and ``features nma``, the manifest's NMA columns)."""

    KIND: ClassVar[str] = "nma"

    chains: tuple[str, ...] | None = field(default=None, metadata=_meta(
        "comma-separated chain ids to use, e.g. A,B (default: all)", "chains", manifest=True, flags=("--chains",)))
    model: int = field(default=0, metadata=_meta(
        "model index for multi-model files (0-based, default 0)", "int", manifest=True, flags=("--model-index",),
        deprecated_flags=("--model",), minimum=0, metavar="N"))
    zero_modes: ZeroModes = field(default="rigid", metadata=_meta(
        "'rigid': remove exactly the rigid-body modes (default); 'reference': drop eigenvalues < 1e-6 like "
        "ProDy/the reference (also drops genuine soft modes of floppy models)",
        "choice", flags=("--zero-modes",), choices=ZERO_MODES))
    disconnected: Disconnected = field(default="error", metadata=_meta(
        "structures whose residues fall into separate pieces (no Cα pair within 15 Å between them): fail "
        "(default) or analyse each piece on its own, with zero correlation between pieces",
        "choice", flags=("--disconnected",), choices=DISCONNECTED))
    float32: bool = field(default=False, metadata=_meta(
        "give (and store) the features as float32: half the size", "bool", flags=("--float32",)))

    def fingerprint(self, structure: InputSpecLike) -> dict[str, Any]:
        """The fingerprint ``features nma`` records for this structure and these options (input hashed now)."""
        return feature_fingerprint(self.KIND, [("structure", structure)], self.fingerprint_options())


def feature_fingerprint(kind: str, inputs: Sequence[tuple[str, InputSpecLike]],
                        options: Mapping[str, Any]) -> dict[str, Any]:
    """The fingerprint of a feature file made from ``inputs`` ((role, path or :class:`InputSpec`) pairs) with
    ``options`` (:meth:`MdOptions.fingerprint_options`): each input's record and the options, sorted."""
    return {
        "kind": kind,
        "inputs": [InputSpec.parse(spec).record(role) for role, spec in inputs],
        "options": {key: options[key] for key in sorted(options)},
    }


def md_options(options: MdOptions | None = None, **keywords: Any) -> MdOptions:
    """``options`` with ``keywords`` changed (keywords alone build new options): how ``extract_md(...,
    frequency=...)`` keyword calls become :class:`MdOptions`."""
    return replace(options, **keywords) if options is not None else MdOptions(**keywords)


def nma_options(options: NmaOptions | None = None, **keywords: Any) -> NmaOptions:
    """The same for :class:`NmaOptions`."""
    return replace(options, **keywords) if options is not None else NmaOptions(**keywords)
