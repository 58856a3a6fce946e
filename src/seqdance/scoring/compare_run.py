"""``seqdance compare`` as a run: one set of files per variant, a summary over all of them; resumable by content and
shardable through the one run protocol (:class:`seqdance.inference.sharded_run.ShardedRun`).

Output folder (docs/compare.md)::

    compare.json            the run: wild type, model, settings (a folder of another wild type or model is refused)
    wild_type.npz           the wild type's prediction (``predict``'s file: ``seqdance map`` reads it)
    <variant>.npz           wt.<p>, variant.<p>, delta.<p> per property (pair properties also pair_sum.<p>), the
                            alignment (``columns``) and metadata (variant sequence, mutant, description, content key)
    <variant>.csv           one row per alignment column: positions, residues, status, wild type / variant / Δ
    <variant>.top.csv       the most changed residues and residue pairs of each property
    <variant>.json          its content key and fields, the scalar scores and the family summaries; written last
    <variant>.profiles.png  with pictures (drawn by the caller's ``draw``), and <variant>.pairs.png with pair maps
    <variant>.delta_<p>.*   with a structure: the structure files of the caller's ``structure`` hook
    background.npz          with ``background``: Δ quantiles per residue of N random single substitutions elsewhere
    summary.csv             one row per variant: the scalar scores of ``score`` and the family summaries
    shards/                 manifests of a sharded run

Items are variants and units batches of variants of one length (:meth:`seqdance.scoring.compare.Comparer.plan`). A
variant's files are reused only when its JSON records the content key of the wild type, the variant's sequence,
the model fingerprint(s), the settings and the outputs asked for, and its files check out (the arrays of every
property with the wild type's length, the tables complete, the pictures present). ``summary.csv`` is written
from the JSON records when the run (every shard) is complete; its ``score`` column normalises over the run's
distinct variant sequences exactly as ``score`` does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from seqdance.errors import InputError
from seqdance.inference.fingerprint import module_fingerprint
from seqdance.inference.prediction import Prediction
from seqdance.inference.prediction_io import PredictionFileError, inspect_prediction_file, save_prediction, unique_stems
from seqdance.inference.sharded_run import (
    RunItem,
    RunLayout,
    RunReport,
    ShardedRun,
    Verdict,
    WorkUnit,
    csv_table_problem,
    merge_run,
    missing,
    read_record,
)
from seqdance.inference.sharding import Shard, content_key, input_cost, text_digest
from seqdance.inference.writer import BackgroundWriter
from seqdance.io_utils import atomic_path
from seqdance.schema import ESM2_MAX_RESIDUES, PROPERTY_BY_NAME, get_properties
from seqdance.scoring.combine import combined_change, geometric_mean
from seqdance.scoring.compare import (
    DEFAULT_THRESHOLD,
    DEFAULT_TOP,
    FAMILIES,
    Comparer,
    VariantComparison,
    iter_units,
    variant_name,
)
from seqdance.scoring.dynamics_score import DEFAULT_LOCAL_RADIUS, change_column
from seqdance.scoring.mutations import AnyVariant, Substitution, Variant
from seqdance.tokenizer import AMINO_ACIDS

RUN_RECORD = "compare.json"
SUMMARY_CSV = "summary.csv"
WILD_TYPE_NPZ = "wild_type.npz"
BACKGROUND_NPZ = "background.npz"
#: Quantiles of the background band (per residue, of Δ across the background variants).
BAND_QUANTILES = (0.05, 0.5, 0.95)
#: Summary columns before the scores.
SUMMARY_LEAD = ("variant", "mutant", "description", "kind", "n_mutations", "length")


@dataclass(frozen=True)
class CompareSettings:
    """Options that change a comparison's numbers (part of every variant's content key)."""

    properties: tuple[str, ...] | None = None
    region: str = "reference"
    local_radius: int = DEFAULT_LOCAL_RADIUS
    window: int = ESM2_MAX_RESIDUES
    offset: int = 1
    top: int = DEFAULT_TOP
    threshold: float = DEFAULT_THRESHOLD
    esm_pll: bool = False

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["properties"] = list(self.properties) if self.properties else "all"
        out["local_radius"] = self.local_radius if self.region == "local" else None
        return out

    @property
    def property_names(self) -> list[str]:
        return [p.name for p in get_properties(list(self.properties) if self.properties else None)]


@dataclass(frozen=True)
class CompareOutputs:
    """The files asked for beyond the arrays and tables: pictures, structure files, the background band."""

    plots: bool = False
    structure: str | None = None  # the structure's SHA-256 (with its property and chains), or None
    structure_property: str | None = None
    background: int = 0
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def picture_names(self, pairs: bool) -> list[str]:
        """The pictures of a variant: profiles, and pair maps when pair properties are compared."""
        return [f"{kind}.png" for kind in (("profiles", "pairs") if pairs else ("profiles",))] if self.plots else []

    def structure_names(self) -> list[str]:
        if self.structure is None:
            return []
        stem = f"delta_{self.structure_property}"
        return [f"{stem}.cif", f"{stem}.defattr", f"{stem}.pml", f"{stem}.cxc"]


@dataclass
class VariantFiles:
    """Where one variant's outputs go."""

    folder: Path
    stem: str
    pictures: list[str] = field(default_factory=list)
    structure: list[str] = field(default_factory=list)

    def path(self, suffix: str) -> Path:
        return self.folder / f"{self.stem}.{suffix}"

    @property
    def npz(self) -> Path:
        return self.path("npz")

    @property
    def csv(self) -> Path:
        return self.path("csv")

    @property
    def top(self) -> Path:
        return self.path("top.csv")

    @property
    def record(self) -> Path:
        return self.path("json")

    def extra(self) -> list[Path]:
        return [self.path(name) for name in (*self.pictures, *self.structure)]


class CompareLayout(RunLayout):
    """``<variant>.npz/.csv/.top.csv/.json`` (+ pictures, structure files) per variant, combined into
    ``summary.csv``."""

    command = "compare"
    unit_noun = ("batch", "batches")

    @property
    def outputs(self) -> CompareOutputs:
        return CompareOutputs(**self.run["outputs"])

    def files(self, item: RunItem) -> VariantFiles:
        pairs = any(PROPERTY_BY_NAME[p].is_pair for p in self.run["properties"])
        return VariantFiles(self.target, item.output, self.outputs.picture_names(pairs),
                            self.outputs.structure_names())

    def begin(self, items: Sequence[RunItem], overwrite: bool) -> None:
        self.target.mkdir(parents=True, exist_ok=True)
        path = self.target / RUN_RECORD
        if path.is_file() and not overwrite:
            recorded = read_record(path)
            if isinstance(recorded, dict):
                for key, what in (("wild_type_digest", "another wild type"), ("model_fingerprint", "another model")):
                    if recorded.get(key) != self.run["record"][key]:
                        raise InputError(f"{self.target} holds the comparisons of {what} ({path}); compare into "
                                         "another folder, or give --overwrite to replace them")
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.run["record"], indent=1, sort_keys=True) + "\n", encoding="utf-8")

    def check(self, items: Sequence[RunItem]) -> list[Verdict]:
        verdicts = []
        for item in items:
            files = self.files(item)
            if not files.record.is_file():
                verdicts.append(missing(files.record))
                continue
            recorded = read_record(files.record)
            if isinstance(recorded, Verdict):
                verdicts.append(recorded)
                continue
            problem, where = self._content_problem(item, files, recorded)
            verdicts.append(Verdict.judge(str(files.record), item, recorded, recorded.get("content_key"), problem,
                                          where))
        return verdicts

    def _content_problem(self, item: RunItem, files: VariantFiles, recorded: Mapping[str, Any]
                         ) -> tuple[str | None, str | None]:
        n = int(item.expect["n_residues"])
        try:
            info = inspect_prediction_file(files.npz)
        except PredictionFileError as exc:
            return ("is missing" if not files.npz.is_file() else f"is damaged ({exc.reason})"), str(files.npz)
        if info.meta.get("content_key") != item.key:
            return "records another content key", str(files.npz)
        for name in self.run["properties"]:
            shape = info.arrays.get(f"delta.{name}", ((),))[0]
            if not shape or shape[0] != n:
                return f"lacks delta.{name} for {n} residues", str(files.npz)
        problem = csv_table_problem(files.csv, int(recorded.get("n_rows", -1)))
        if problem:
            return problem, str(files.csv)
        problem = csv_table_problem(files.top, int(recorded.get("n_top", -1)))
        if problem:
            return problem, str(files.top)
        for path in files.extra():
            if not path.is_file() or path.stat().st_size == 0:
                return "is missing", str(path)
        return None, None

    def combine(self, items: Sequence[RunItem], failures: Mapping[str, str]) -> int:
        records = []
        for item in items:
            if item.id in failures:
                continue
            recorded = read_record(self.files(item).record)
            if isinstance(recorded, Verdict):
                raise InputError(f"{recorded.where} {recorded.why}")
            records.append(recorded)
        background = read_background(self.target / BACKGROUND_NPZ) if self.outputs.background else None
        table = summary_table(records, self.run["properties"], background)
        with atomic_path(self.target / SUMMARY_CSV) as tmp:
            table.to_csv(tmp, index=False)
        return len(table)


def summary_table(records: Sequence[Mapping[str, Any]], properties: Sequence[str],
                  background: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """One row per variant: what it is, the scores of ``score`` (``score`` normalised over the distinct variant
    sequences, ``change_<property>``, ESM2 baselines), a background percentile, the family summaries."""
    columns = [change_column(p) for p in properties]
    changes = np.array([[r["changes"][c] for c in columns] for r in records], dtype=np.float64).reshape(-1,
                                                                                                          len(columns))
    first: dict[str, int] = {}
    for k, r in enumerate(records):
        first.setdefault(r["variant_digest"], k)
    combined = combined_change(changes[list(first.values())]) if records else np.zeros(0)
    position = {key: j for j, key in enumerate(first)}
    table = pd.DataFrame({name: [r["name" if name == "variant" else name] for r in records] for name in SUMMARY_LEAD})
    table["score"] = [-combined[position[r["variant_digest"]]] for r in records]
    for j, column in enumerate(columns):
        table[column] = changes[:, j]
    extra = [c for c in dict.fromkeys(c for r in records for c in r.get("scores", {}))]
    for column in extra:
        table[column] = [r.get("scores", {}).get(column, np.nan) for r in records]
    if background is not None and "changes" in background and len(records):
        reference = geometric_mean(background["changes"])
        mine = geometric_mean(changes)
        table["background_percentile"] = [100.0 * float(np.mean(reference <= value)) for value in mine]
    found = {c for r in records for c in r.get("families", {})}
    family_columns = [c for family in FAMILIES for c in (f"top_{family}", f"n_changed_{family}") if c in found]
    for column in family_columns:
        table[column] = [r.get("families", {}).get(column, "") for r in records]
    return table


# --- files of one variant ---


def comparison_arrays(comparison: VariantComparison, metadata: Mapping[str, str]) -> dict[str, np.ndarray]:
    """What a variant's ``.npz`` holds."""
    arrays: dict[str, np.ndarray] = {}
    for name in comparison.properties:
        arrays[f"wt.{name}"] = np.ascontiguousarray(comparison.wild_type_values[name], dtype=np.float32)
        arrays[f"variant.{name}"] = np.ascontiguousarray(comparison.variant_values[name], dtype=np.float32)
        arrays[f"delta.{name}"] = np.ascontiguousarray(comparison.delta[name], dtype=np.float32)
        if PROPERTY_BY_NAME[name].is_pair:
            arrays[f"pair_sum.{name}"] = comparison.pair_summary(name).astype(np.float32)
    arrays["columns"] = comparison.alignment.columns.astype(np.int64)
    arrays["id"] = np.asarray(comparison.name)
    arrays["sequence"] = np.asarray(comparison.wild_type)
    arrays["chain_lengths"] = np.asarray([len(comparison.wild_type)], dtype=np.int64)
    arrays["variant_sequence"] = np.asarray(comparison.sequence)
    arrays["mutant"] = np.asarray(comparison.mutant)
    arrays["description"] = np.asarray(comparison.description)
    arrays["offset"] = np.asarray(comparison.offset, dtype=np.int64)
    for key, value in metadata.items():
        arrays[key] = np.asarray(str(value))
    return arrays


def top_table(comparison: VariantComparison, k: int) -> pd.DataFrame:
    """The most changed residues and pairs of each property in one table (``kind`` residue or pair)."""
    residues = comparison.top_residues(k).rename(columns={"position": "position_i", "residue": "residue_i"})
    residues.insert(1, "kind", "residue")
    pairs = comparison.top_pairs(k)
    pairs.insert(1, "kind", "pair")
    pairs["magnitude"] = pairs["delta"].abs()
    columns = ["property", "kind", "rank", "position_i", "residue_i", "position_j", "residue_j", "magnitude",
               "wild_type", "variant", "delta"]
    frames = [f.reindex(columns=columns) for f in (residues, pairs) if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def write_variant(comparison: VariantComparison, files: VariantFiles, item: RunItem, top: int = DEFAULT_TOP,
                  threshold: float = DEFAULT_THRESHOLD,
                  draw: Callable[[VariantComparison, VariantFiles], None] | None = None,
                  structure: Callable[[VariantComparison, VariantFiles], None] | None = None) -> None:
    """Write one variant's files atomically, its JSON record last."""
    with atomic_path(files.npz) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **comparison_arrays(comparison, {"content_key": item.key,
                                                      "model_fingerprint": item.expect["model"]}))
    table = comparison.residue_table()
    with atomic_path(files.csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.7g")
    tops = top_table(comparison, top)
    with atomic_path(files.top) as tmp:
        tops.to_csv(tmp, index=False, float_format="%.7g")
    if draw is not None:
        draw(comparison, files)
    if structure is not None:
        structure(comparison, files)
    record = {
        "content_key": item.key, **item.expect, "name": comparison.name, "mutant": comparison.mutant,
        "description": comparison.description, "kind": comparison.kind,
        "n_mutations": comparison.alignment.n_events(), "length": len(comparison.sequence),
        "variant_digest": text_digest(comparison.sequence), "changes": comparison.changes,
        "scores": comparison.scores, "families": comparison.family_summary(threshold=threshold),
        "sites": [int(s) for s in comparison.sites], "n_rows": len(table), "n_top": len(tops),
    }
    with atomic_path(files.record) as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True, allow_nan=True) + "\n", encoding="utf-8")


# --- background ---


def background_variants(wild_type: str, exclude: set[int], n: int, seed: int, *, offset: int = 1) -> list[Variant]:
    """``n`` seeded random single substitutions at positions outside ``exclude`` (0-based), distinct, each to one of
    the 19 other standard amino acids."""
    positions = [i for i in range(len(wild_type)) if i not in exclude]
    choices = [(i, aa) for i in positions for aa in AMINO_ACIDS if aa != wild_type[i]]
    if not choices:
        raise InputError("--background: every position of the wild type is mutated by a variant; no position is left")
    rng = np.random.default_rng(seed)
    spread = rng.permutation(len(positions))  # one substitution per position first, then more per position
    picked: list[tuple[int, str]] = []
    for k in range(min(n, len(choices))):
        if k < len(positions):
            i = positions[int(spread[k])]
            options = [aa for aa in AMINO_ACIDS if aa != wild_type[i]]
            picked.append((i, options[int(rng.integers(len(options)))]))
        else:
            rest = [c for c in choices if c not in set(picked)]
            picked.append(rest[int(rng.integers(len(rest)))])
    out = []
    for i, aa in picked:
        sub = Substitution(i, wild_type[i], aa)
        out.append(Variant(sub.label(offset), (sub,)))
    return out


def background_band(comparisons: Sequence[VariantComparison]) -> dict[str, np.ndarray]:
    """Per property, (3, n) quantiles (:data:`BAND_QUANTILES`) over the background variants of Δ (scalar residue
    properties), of the total variation (distributions) or of Σ_j |Δ_ij| (pair properties); and their changes."""
    band: dict[str, np.ndarray] = {}
    for name in comparisons[0].properties:
        prop = PROPERTY_BY_NAME[name]
        if prop.is_residue and prop.width == 1:
            stack = np.stack([np.asarray(c.delta[name], dtype=np.float64) for c in comparisons])
        else:
            stack = np.stack([c.magnitude(name) for c in comparisons])
        band[name] = np.quantile(stack, BAND_QUANTILES, axis=0)
    columns = [change_column(p) for p in comparisons[0].properties]
    band["changes"] = np.array([[c.changes[col] for col in columns] for c in comparisons], dtype=np.float64)
    return band


def read_background(path: Path, key: str | None = None) -> dict[str, np.ndarray] | None:
    """The band of ``background.npz`` (None when absent, unreadable or, given ``key``, of another run)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if key is not None and ("content_key" not in data.files or str(data["content_key"]) != key):
                return None
            return {name: data[name] for name in data.files if name != "content_key"}
    except (OSError, ValueError, KeyError):
        return None


def ensure_background(comparer: Comparer, out: Path, n: int, seed: int, exclude: set[int], key: str) -> dict:
    """The background band of this run: read from ``background.npz`` when it records ``key``, else computed (each
    shard computes the same numbers) and written."""
    path = out / BACKGROUND_NPZ
    found = read_background(path, key)
    if found is not None:
        return found
    variants = background_variants(comparer.wild_type, exclude, n, seed, offset=comparer.offset)
    names = [v.mutant for v in variants]
    comparisons: list[VariantComparison] = []
    for _, done in iter_units(comparer, variants, names):
        comparisons.extend(done)
    band = background_band(comparisons)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, content_key=np.asarray(key), variants=np.asarray(names), **band)
    return band


# --- the run ---


def run_compare(
    wild_type: str,
    variants: Sequence[AnyVariant],
    out_dir: str | os.PathLike[str],
    *,
    model: torch.nn.Module,
    model_name: str,
    esm_model: torch.nn.Module | None = None,
    names: Sequence[str] | None = None,
    settings: CompareSettings = CompareSettings(),
    outputs: CompareOutputs = CompareOutputs(),
    batch_size: int | None = None,
    draw: Callable[[VariantComparison, VariantFiles, Mapping[str, np.ndarray] | None], None] | None = None,
    structure: Callable[[VariantComparison, VariantFiles], None] | None = None,
    shard: Shard | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> RunReport:
    """Compare every variant (or this shard's) with the wild type into ``out_dir``; see the module docstring.

    ``draw(comparison, files, band)`` draws a variant's pictures (``band``: the background band or None);
    ``structure(comparison, files)`` writes its structure files. Both run on the writer thread.
    """
    out = Path(out_dir)
    names = list(names) if names is not None else [variant_name(v, settings.offset) for v in variants]
    stems = unique_stems(names)
    n = len(wild_type)
    fingerprints = {"model": module_fingerprint(model)}
    if esm_model is not None:
        fingerprints["esm2"] = module_fingerprint(esm_model)
    settings_key = content_key(settings.as_dict())
    outputs_key = content_key(outputs.as_dict())
    wt_digest = text_digest(wild_type)
    items = [RunItem(k, name, stems[name], {"sequence": wt_digest, "variant": text_digest(v.apply(wild_type)),
                                            "settings": settings_key, "outputs": outputs_key,
                                            "n_residues": str(n), **fingerprints})
             for k, (name, v) in enumerate(zip(names, variants))]
    comparer = Comparer(model, wild_type, properties=list(settings.properties) if settings.properties else None,
                        region=settings.region, local_radius=settings.local_radius, window=settings.window,
                        batch_size=batch_size, offset=settings.offset, esm_model=esm_model, esm_pll=settings.esm_pll)
    plan = comparer.plan(variants)
    pairs = comparer.need_pairs
    units = [WorkUnit(tuple(unit), _unit_cost(comparer, [variants[k] for k in unit], pairs)) for unit in plan]
    properties = settings.property_names
    record = {"wild_type": wild_type, "wild_type_digest": wt_digest, "length": n, "model": model_name,
              "model_fingerprint": fingerprints["model"], "esm2_fingerprint": fingerprints.get("esm2"),
              "settings": settings.as_dict(), "outputs": outputs.as_dict(), "properties": properties}
    run = {"variants": content_key([(item.id, item.key) for item in items]), **fingerprints,
           "settings": settings.as_dict(), "outputs": outputs.as_dict(), "properties": properties, "record": record}
    layout = CompareLayout(out, run, shard)
    sharded = ShardedRun(layout, items, units, shard=shard, overwrite=overwrite)

    def compute(chosen: list[WorkUnit], pending: set[int]) -> None:
        band = None
        if outputs.background:
            exclude = {s for v in variants for s in v.indices}
            key = content_key({"sequence": wt_digest, **fingerprints, "settings": settings_key,
                               "n": outputs.background, "seed": outputs.seed, "exclude": sorted(exclude)})
            band = ensure_background(comparer, out, outputs.background, outputs.seed, exclude, key)
        if not (out / WILD_TYPE_NPZ).is_file() or overwrite:
            values = comparer.wild_type_values()
            save_prediction(out / WILD_TYPE_NPZ, Prediction("wild_type", wild_type, (n,), dict(values)),
                            model=model_name, metadata={"model_fingerprint": fingerprints["model"]})
        drawer = (lambda comparison, files: draw(comparison, files, band)) if draw is not None else None
        todo = [list(unit.items) for unit in chosen]  # a unit holding a pending variant runs whole (same numbers)
        with BackgroundWriter() as writer:
            for unit, comparisons in iter_units(comparer, variants, names, units=todo, progress=progress):
                for k, comparison in zip(unit, comparisons):
                    if k not in pending:
                        continue
                    files = layout.files(items[k])
                    size = sum(np.asarray(v).nbytes for v in comparison.variant_values.values()) * 3
                    writer.submit(write_variant, comparison, files, items[k], settings.top, settings.threshold,
                                  drawer, structure, size=size)
                written = [c for k, c in zip(unit, comparisons) if k in pending]
                sharded.throughput.add(len(written), sum(len(c.sequence) + 2 for c in written))

    return sharded.execute(compute)


def _unit_cost(comparer: Comparer, variants: Sequence[AnyVariant], pairs: bool) -> float:
    if not variants or all(v.is_synonymous for v in variants):
        return 0.0
    tokens = min(max(len(v.apply(comparer.wild_type)) for v in variants), comparer.window) + 2
    cost = len(variants) * input_cost(tokens, quadratic=pairs)
    if not comparer.fits(variants[0]):  # windows of predict, plus the site window of score
        cost *= 2 * max(1, -(-len(comparer.wild_type) // comparer.window))
    return cost


def merge_compare(out_dir: str | os.PathLike[str]) -> int:
    """Check the shards of a compare run in ``out_dir`` and write ``summary.csv``; returns its row count."""
    return merge_run(CompareLayout, out_dir).n_combined


__all__ = [
    "BACKGROUND_NPZ",
    "FAMILIES",
    "RUN_RECORD",
    "SUMMARY_CSV",
    "WILD_TYPE_NPZ",
    "CompareLayout",
    "CompareOutputs",
    "CompareSettings",
    "VariantFiles",
    "background_variants",
    "merge_compare",
    "run_compare",
    "summary_table",
]
