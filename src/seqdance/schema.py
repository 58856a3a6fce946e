"""The property schema: the single source of truth for the 23 dynamic properties.

Every other module (feature extraction, dataset store, model heads, loss, scoring, plots) takes property
names, channel positions, activations, target transforms and source groups from here. docs/design.md#property-schema.

Two channel layouts exist for each level:

* the **model** layout: residue output has 50 channels, pair output 13 (all properties);
* the **store** layout of the released dataset: a protein carries either the MD block (residue 0-46,
  pair 0-9) or the NMA block (residue 47-49 → stored 0-2, pair 10-12 → stored 0-2).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from seqdance.errors import InputError

Level = Literal["residue", "pair"]
Activation = Literal["softplus", "sigmoid", "softmax", "signed_sigmoid"]
FeatureKind = Literal["md", "nma"]
TargetTransform = Literal["none", "cube_root", "max_normalise"]

#: Torch Softplus parameters of the reference heads.
SOFTPLUS_BETA = 1.0
SOFTPLUS_THRESHOLD = 2.0

#: Ångström per nanometre: MD coordinates are in nm (MDTraj), structures, mdCATH coordinates and contact criteria
#: in Å. Every conversion multiplies or divides by this.
ANGSTROM_PER_NM = 10.0

#: Fill value for masked entries in stored targets (special tokens, padding, undefined angles, linkers).
MASK_VALUE = -1.0

#: Tokens an ESM2 encoder was trained on at most (its context), and the residues that fit between <cls> and
#: <eos>. Prediction windows, mutation-scoring windows and evaluation crops default to these
#: (docs/design.md#crops, #attention-metrics).
ESM2_MAX_TOKENS = 1024
ESM2_MAX_RESIDUES = ESM2_MAX_TOKENS - 2

#: DSSP 8-class order of the ``ss`` channels. ``coil`` collects MDTraj's ' ' (loop/irregular) code.
SS_CLASSES: tuple[str, ...] = ("B", "E", "H", "I", "G", "S", "T", "coil")
#: MDTraj ``compute_dssp(simplified=False)`` codes in the same order.
SS_DSSP_CODES: tuple[str, ...] = ("B", "E", "H", "I", "G", "S", "T", " ")
#: Suffix of properties stored divided by the protein's own maximum; their raw values drop it (``rmsf``).
_NORMALISED_SUFFIX = "_nor"
#: Dihedral histograms: 12 bins of 30° over [-180°, 180°).
ANGLE_BINS = 12
ANGLE_RANGE_DEG: tuple[float, float] = (-180.0, 180.0)


@dataclass(frozen=True)
class Property:
    """One predicted dynamic property."""

    name: str
    level: Level
    start: int  # first channel in the model output tensor of its level
    width: int  # number of channels
    activation: Activation
    kind: FeatureKind  # which feature family produces it (and so which source groups train it)
    transform: TargetTransform  # raw feature -> stored target
    description: str
    labels: tuple[str, ...] = ()  # names of the channels of a multi-channel property

    @property
    def channels(self) -> slice:
        """Channels in the model output tensor of this property's level."""
        return slice(self.start, self.start + self.width)

    @property
    def raw_key(self) -> str:
        """Key of this property in a raw feature dict (``extract_md`` / ``extract_nma``): the name, except that a
        max-normalised property is returned raw under its name without ``_nor`` (``rmsf_nor`` -> ``rmsf``)."""
        if self.transform == "max_normalise":
            return self.name.removesuffix(_NORMALISED_SUFFIX)
        return self.name

    @property
    def store_offset(self) -> int:
        """Channel offset of this property's kind block in the model layout."""
        return _KIND_OFFSETS[(self.level, self.kind)]

    @property
    def store_channels(self) -> slice:
        """Channels in the stored target tensor (the released dataset layout) of its kind."""
        return slice(self.start - self.store_offset, self.start - self.store_offset + self.width)

    @property
    def is_residue(self) -> bool:
        return self.level == "residue"

    @property
    def is_pair(self) -> bool:
        return self.level == "pair"


def _angle_labels(prefix: str) -> tuple[str, ...]:
    lo, hi = ANGLE_RANGE_DEG
    step = (hi - lo) / ANGLE_BINS
    return tuple(f"{prefix}[{lo + i * step:.0f},{lo + (i + 1) * step:.0f})" for i in range(ANGLE_BINS))


_INTERACTIONS: tuple[tuple[str, str], ...] = (
    ("vdw", "van der Waals contact frequency"),
    ("hbbb", "backbone-backbone hydrogen bond frequency"),
    ("hbsb", "side chain-backbone hydrogen bond frequency"),
    ("hbss", "side chain-side chain hydrogen bond frequency"),
    ("hp", "hydrophobic contact frequency"),
    ("sb", "salt bridge frequency"),
    ("pc", "pi-cation interaction frequency"),
    ("ps", "pi-stacking frequency"),
    ("ts", "T-stacking frequency"),
)

_NMA_RANGES = ("low", "mid", "high")

PROPERTIES: tuple[Property, ...] = (
    Property("sasa_mean", "residue", 0, 1, "softplus", "md", "none",
             "mean solvent-accessible surface area over frames (nm², Shrake-Rupley)"),
    Property("sasa_std", "residue", 1, 1, "softplus", "md", "none",
             "standard deviation of the SASA over frames (nm²)"),
    Property("rmsf_nor", "residue", 2, 1, "sigmoid", "md", "max_normalise",
             "Cα RMSF after superposition divided by the protein's maximum, in (0, 1]"),
    Property("ss", "residue", 3, 8, "softmax", "md", "none",
             "fraction of frames in each DSSP 8-class state", SS_CLASSES),
    Property("chi", "residue", 11, 12, "softmax", "md", "none",
             "chi1 histogram over frames (12 bins of 30°)", _angle_labels("chi")),
    Property("phi", "residue", 23, 12, "softmax", "md", "none",
             "phi histogram over frames (12 bins of 30°)", _angle_labels("phi")),
    Property("psi", "residue", 35, 12, "softmax", "md", "none",
             "psi histogram over frames (12 bins of 30°)", _angle_labels("psi")),
    *(
        Property(f"nma_res{i + 1}", "residue", 47 + i, 1, "softplus", "nma", "none",
                 f"GNM mean-square fluctuation, {rng}-frequency modes")
        for i, rng in enumerate(_NMA_RANGES)
    ),
    *(
        Property(name, "pair", i, 1, "softplus", "md", "cube_root", f"{text} (stored as cube root)")
        for i, (name, text) in enumerate(_INTERACTIONS)
    ),
    Property("corr", "pair", 9, 1, "signed_sigmoid", "md", "none", "Cα movement correlation over the trajectory"),
    *(
        Property(f"nma_pair{i + 1}", "pair", 10 + i, 1, "signed_sigmoid", "nma", "none",
                 f"ANM movement correlation, {rng}-frequency modes")
        for i, rng in enumerate(_NMA_RANGES)
    ),
)

PROPERTY_BY_NAME: dict[str, Property] = {p.name: p for p in PROPERTIES}
PROPERTY_NAMES: tuple[str, ...] = tuple(p.name for p in PROPERTIES)
RESIDUE_PROPERTIES: tuple[Property, ...] = tuple(p for p in PROPERTIES if p.is_residue)
PAIR_PROPERTIES: tuple[Property, ...] = tuple(p for p in PROPERTIES if p.is_pair)
INTERACTION_NAMES: tuple[str, ...] = tuple(name for name, _ in _INTERACTIONS)

N_RESIDUE_CHANNELS = sum(p.width for p in RESIDUE_PROPERTIES)  # 50
N_PAIR_CHANNELS = sum(p.width for p in PAIR_PROPERTIES)  # 13


def _block(level: Level, kind: FeatureKind) -> tuple[int, int]:
    members = [p for p in PROPERTIES if p.level == level and p.kind == kind]
    start = min(p.start for p in members)
    stop = max(p.start + p.width for p in members)
    return start, stop


_KIND_OFFSETS: dict[tuple[str, str], int] = {
    (level, kind): _block(level, kind)[0] for level in ("residue", "pair") for kind in ("md", "nma")
}


def kind_channels(level: Level, kind: FeatureKind) -> slice:
    """Model-layout channels of one kind block (e.g. residue/md = 0:47, pair/nma = 10:13)."""
    start, stop = _block(level, kind)
    return slice(start, stop)


def stored_width(level: Level, kind: FeatureKind) -> int:
    """Number of channels a stored target tensor of this level and kind has (47, 3, 10 or 3)."""
    block = kind_channels(level, kind)
    return block.stop - block.start


def kind_of_stored_width(level: Level, width: int) -> FeatureKind:
    """Infer md/nma from the channel count of a stored tensor; raise on an unknown width."""
    for kind in ("md", "nma"):
        if stored_width(level, kind) == width:
            return kind  # type: ignore[return-value]
    raise InputError(
        f"a stored {level} tensor has {width} channels; expected {stored_width(level, 'md')} (MD) "
        f"or {stored_width(level, 'nma')} (NMA)"
    )


def properties_of_kind(kind: FeatureKind, level: Level | None = None) -> tuple[Property, ...]:
    return tuple(p for p in PROPERTIES if p.kind == kind and (level is None or p.level == level))


def get_properties(names: Iterable[str] | None = None) -> tuple[Property, ...]:
    """Resolve property names (in schema order); ``None`` means all. Unknown names raise a ValueError."""
    if names is None:
        return PROPERTIES
    wanted = list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in PROPERTY_BY_NAME]
    if unknown:
        raise InputError(f"unknown property name(s) {unknown}; known: {', '.join(PROPERTY_NAMES)}")
    return tuple(p for p in PROPERTIES if p.name in wanted)


# --- source groups (docs/design.md#source-groups) -------------------------------------------------------------------

SourceGroup = Literal["md", "idr", "nma"]

#: Source group -> feature kind it trains.
GROUP_KIND: dict[str, FeatureKind] = {"md": "md", "idr": "md", "nma": "nma"}
SOURCE_GROUPS: tuple[str, ...] = tuple(GROUP_KIND)

#: Dataset source labels of the released data and the group each belongs to. The released training script
#: forgot mdCATH in the high-resolution MD group; it is included here (docs/design.md#source-groups).
KNOWN_SOURCES: dict[str, str] = {
    "ATLAS": "md",
    "GPCRmd": "md",
    "PED": "md",
    "mdCATH": "md",
    "IDRome": "idr",
    "proteinflow_pdb": "nma",
    "proteinflow_sabdab": "nma",
}


def source_group(source: str, *, explicit: str | None = None) -> str:
    """Group of a dataset source label.

    Known labels map by :data:`KNOWN_SOURCES` (case-insensitive). Any other label needs ``explicit``
    (one of :data:`SOURCE_GROUPS`), or may itself be written ``group:label`` (e.g. ``md:my_sims``).
    """
    if explicit is not None:
        if explicit not in GROUP_KIND:
            raise InputError(f"source group {explicit!r} for source {source!r} is not one of {SOURCE_GROUPS}")
        return explicit
    lowered = {k.lower(): v for k, v in KNOWN_SOURCES.items()}
    if source.lower() in lowered:
        return lowered[source.lower()]
    prefix, sep, _ = source.partition(":")
    if sep and prefix in GROUP_KIND:
        return prefix
    raise InputError(
        f"unknown data source {source!r}: use one of {sorted(KNOWN_SOURCES)}, or write it as "
        f"'<group>:{source}' with group one of {SOURCE_GROUPS}"
    )


def group_properties(group: str) -> tuple[Property, ...]:
    """The properties a source group trains (MD groups: residue 0-46 and pair 0-9; NMA: the six NMA ones)."""
    if group not in GROUP_KIND:
        raise InputError(f"unknown source group {group!r}; expected one of {SOURCE_GROUPS}")
    return properties_of_kind(GROUP_KIND[group])


def as_channel_list(props: Sequence[Property], level: Level) -> list[int]:
    """Model-layout channel indices of the given properties at one level, in order."""
    out: list[int] = []
    for p in props:
        if p.level == level:
            out.extend(range(p.start, p.start + p.width))
    return out


def property_of_channel(level: Level, channel: int, kind: FeatureKind | None = None) -> Property:
    """The property a channel belongs to: a model-layout channel (``kind`` None) or a stored channel of ``kind``."""
    offset = 0 if kind is None else _KIND_OFFSETS[(level, kind)]
    for prop in PROPERTIES:
        if (prop.level == level and (kind is None or prop.kind == kind)
                and prop.start <= channel + offset < prop.start + prop.width):
            return prop
    raise InputError(f"no {level} property at channel {channel}" + (f" of the {kind} block" if kind else ""))


def nonfinite_summary(values: Any, level: Level, kind: FeatureKind | None = None, *, limit: int = 3) -> str | None:
    """``None`` when every value of ``values`` (channels last: model layout, or stored layout of ``kind``) is
    finite; otherwise which properties hold NaN/infinite values, how many and where the first one is (token
    index, or token pair), e.g. ``"rmsf_nor: 2 NaN/inf value(s), first at token 7"``."""
    import numpy as np

    arr = np.asarray(values)
    bad = ~np.isfinite(arr)
    if not bad.any():
        return None
    per_channel = bad.reshape(-1, arr.shape[-1]).sum(axis=0)
    counts: dict[str, int] = {}
    first: dict[str, tuple[int, ...]] = {}
    for channel in np.flatnonzero(per_channel):
        prop = property_of_channel(level, int(channel), kind)
        counts[prop.name] = counts.get(prop.name, 0) + int(per_channel[channel])
        where = tuple(int(v) for v in np.argwhere(bad[..., channel])[0])
        first[prop.name] = min(first.get(prop.name, where), where)
    parts = []
    for name, count in list(counts.items())[:limit]:
        pos = first[name]
        at = f"token {pos[0]}" if len(pos) == 1 else f"token pair ({', '.join(map(str, pos))})"
        parts.append(f"{name}: {count} NaN/inf value(s), first at {at}")
    if len(counts) > limit:
        parts.append(f"and {len(counts) - limit} more propert{'y' if len(counts) - limit == 1 else 'ies'}")
    return "; ".join(parts)
