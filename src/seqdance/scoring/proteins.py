"""Scoring many proteins in one run: a FASTA of wild types (saturation for each) or a mutation table keyed by
sequence id; one table per protein plus a combined table; resumable by content and shardable.

Output folder::

    proteins/<id>.csv    one row per variant of the protein: the input columns, n_mutations, score, change_*,
                         esm2_* (as ``seqdance score`` writes for one protein)
    proteins/<id>.json   what the table was computed from (its content key and fields), written after the table
    scores.csv           every protein's rows, with the protein ``id`` first; proteins in FASTA order
    invalid.csv          with --skip-invalid: id, row, mutant, reason of the rows left out
    shards/              manifests of a sharded run (:mod:`seqdance.inference.sharding`)

The run goes through the one run protocol (:class:`seqdance.inference.sharded_run.ShardedRun`; the layout is
:class:`ScoreLayout`): each protein is scored whole in one process (the combined score normalises over a
protein's variants), so a sharded run's tables are bitwise those of a single process. A protein's table is
reused only when its JSON records the content key of its wild type, input rows, model fingerprints and scoring
settings AND the table itself checks out: a header and one complete row per variant (a truncated, cut or empty
table is recomputed). Proteins are dealt to shards by their cost, variants × window tokens.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from seqdance.errors import InputError
from seqdance.inference.fingerprint import module_fingerprint
from seqdance.inference.prediction_io import unique_stems
from seqdance.inference.sharded_run import (
    RunItem,
    RunLayout,
    RunReport,
    ShardedRun,
    Verdict,
    WorkUnit,
    csv_with_record_verdict,
    merge_run,
)
from seqdance.inference.sharding import Shard, content_key, input_cost, text_digest
from seqdance.inference.writer import BackgroundWriter
from seqdance.io_utils import FastaRecord, atomic_path
from seqdance.schema import ESM2_MAX_RESIDUES, get_properties
from seqdance.scoring.dynamics_score import DEFAULT_LOCAL_RADIUS
from seqdance.scoring.mutations import (
    AnyVariant,
    InvalidMutant,
    MutantSet,
    check_wild_type,
    parse_mutants,
    saturation_mutants,
)
from seqdance.scoring.scorer import score_variants
from seqdance.scoring.windows import drop_unscorable

PROTEINS_DIR = "proteins"
COMBINED_CSV = "scores.csv"
INVALID_CSV = "invalid.csv"
ID_COLUMN = "id"


@dataclass(frozen=True)
class ProteinTask:
    """The variants of one wild type to score, with the input rows they came from."""

    id: str
    wild_type: str
    variants: list[AnyVariant]
    rows: pd.DataFrame  # input columns, one row per variant (index 0..n-1)

    def digest(self) -> str:
        """Hash of the wild type and the input rows (what the protein's table is computed from)."""
        text = self.wild_type + "\n" + self.rows.to_csv(index=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ScoreSettings:
    """Scoring options that change the numbers (part of every protein's content key)."""

    properties: tuple[str, ...] | None = None
    region: str = "reference"
    local_radius: int = DEFAULT_LOCAL_RADIUS
    window: int = ESM2_MAX_RESIDUES
    offset: int = 1
    esm_pll: bool = False

    def as_dict(self) -> dict:
        settings = {"properties": list(self.properties) if self.properties else "all", "region": self.region,
                    "local_radius": self.local_radius if self.region == "local" else None, "window": self.window,
                    "offset": self.offset}
        if self.esm_pll:  # only when set: the keys of earlier runs stay valid
            settings["esm_pll"] = True
        return settings


def variant_table(rows: pd.DataFrame, variants: Sequence[AnyVariant], scores: pd.DataFrame) -> pd.DataFrame:
    """Input rows + ``n_mutations`` + score columns; input columns that clash get the suffix ``_input``."""
    clashes = [c for c in rows.columns if c in scores.columns or c == "n_mutations"]
    rows = rows.rename(columns={c: f"{c}_input" for c in clashes}).reset_index(drop=True)
    rows.insert(min(1, len(rows.columns)), "n_mutations",
                [v.n_changes for v in variants])
    return pd.concat([rows, scores.reset_index(drop=True)], axis=1)


def wild_types(records: Sequence[FastaRecord], source: str) -> dict[str, str]:
    """id -> checked wild type (one chain, standard residues), in FASTA order."""
    return {r.id: check_wild_type(r.sequence, f"{source}:{r.id}") for r in records}


def saturation_tasks(records: Sequence[FastaRecord], source: str, *, offset: int = 1) -> list[ProteinTask]:
    """All single substitutions of every wild type."""
    tasks = []
    for seq_id, wt in wild_types(records, source).items():
        variants = saturation_mutants(wt, offset=offset)
        tasks.append(ProteinTask(seq_id, wt, variants, pd.DataFrame({"mutant": [v.mutant for v in variants]})))
    return tasks


@dataclass(frozen=True)
class InvalidRow:
    id: str
    row: int  # 1-based data row of the input table
    mutant: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row} ({self.id}): {self.mutant!r}: {self.reason}"


def table_tasks(
    records: Sequence[FastaRecord],
    table: pd.DataFrame,
    source: str,
    *,
    id_column: str,
    offset: int = 1,
    window: int = ESM2_MAX_RESIDUES,
) -> tuple[list[ProteinTask], list[InvalidRow]]:
    """The variants of each protein of a mutation table keyed by ``id_column``; invalid rows are collected.

    Rows whose id has no FASTA record are invalid. Proteins without rows are not scored. Proteins come in
    FASTA order; each protein's rows keep their input order.
    """
    if id_column not in table.columns:
        raise InputError(f"{source}: no sequence-id column {id_column!r} (columns: {list(table.columns)}); "
                         "name it with --id-column")
    wts = wild_types(records, source)
    ids = table[id_column].astype(str).str.strip()
    invalid: list[InvalidRow] = []
    tasks: list[ProteinTask] = []
    known = set(wts)
    for row, seq_id in enumerate(ids, start=1):
        if seq_id not in known:
            invalid.append(InvalidRow(seq_id, row, str(table["mutant"].iloc[row - 1]),
                                      f"no FASTA record with id {seq_id!r}"))
    rows_of = {seq_id: [] for seq_id in wts}
    for position, seq_id in enumerate(ids):
        if seq_id in rows_of:
            rows_of[seq_id].append(position)
    for seq_id, positions in rows_of.items():
        if not positions:
            continue
        sub = table.iloc[positions].drop(columns=[id_column]).reset_index(drop=True)
        sequences = sub["mutated_sequence"].tolist() if "mutated_sequence" in sub.columns else None
        checked: MutantSet = parse_mutants(sub["mutant"].tolist(), wts[seq_id], offset=offset,
                                           mutated_sequences=sequences, indels=True)
        checked = drop_unscorable(checked, len(wts[seq_id]), size=window)
        invalid += [_global(seq_id, positions, item) for item in checked.invalid]
        if checked.variants:
            tasks.append(ProteinTask(seq_id, wts[seq_id], list(checked.variants),
                                     sub.iloc[[r - 1 for r in checked.rows]].reset_index(drop=True)))
    invalid.sort(key=lambda item: item.row)
    return tasks, invalid


def _global(seq_id: str, positions: list[int], item: InvalidMutant) -> InvalidRow:
    return InvalidRow(seq_id, positions[item.row - 1] + 1, item.mutant, item.reason)


def protein_tasks(
    records: Sequence[FastaRecord],
    fasta: str,
    *,
    mutations: str | os.PathLike[str] | None,
    id_column: str = ID_COLUMN,
    offset: int = 1,
    window: int = ESM2_MAX_RESIDUES,
    skip_invalid: bool = False,
) -> tuple[list[ProteinTask], list[InvalidRow]]:
    """The proteins of a scoring run: every wild type's saturation scan (``mutations`` None) or the rows of a
    mutation table keyed by ``id_column``. Invalid rows stop here (the first five named) unless ``skip_invalid``;
    nothing left to score is an error."""
    if mutations is None:
        tasks, invalid = saturation_tasks(records, fasta, offset=offset), []
    else:
        from seqdance.scoring.mutations import read_mutations

        tasks, invalid = table_tasks(records, read_mutations(mutations), str(mutations), id_column=id_column,
                                     offset=offset, window=window)
        if invalid and not skip_invalid:
            listed = "; ".join(str(i) for i in invalid[:5]) + (f"; and {len(invalid) - 5} more"
                                                               if len(invalid) > 5 else "")
            raise InputError(f"{mutations}: {len(invalid)} invalid mutant(s): {listed} "
                             "(use --skip-invalid to score the rest)")
    if not tasks:
        raise InputError("no valid mutants to score")
    return tasks, invalid


def write_invalid(out_dir: str | os.PathLike[str], invalid: Sequence[InvalidRow]) -> Path:
    path = Path(out_dir) / INVALID_CSV
    frame = pd.DataFrame([{"id": i.id, "row": i.row, "mutant": i.mutant, "reason": i.reason} for i in invalid],
                         columns=["id", "row", "mutant", "reason"])
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


def _needs_pairs(settings: ScoreSettings) -> bool:
    return any(p.is_pair for p in get_properties(list(settings.properties) if settings.properties else None))


def task_cost(task: ProteinTask, settings: ScoreSettings, *, with_esm: bool) -> float:
    """Estimated compute of one protein: its variants × the cost of one window, plus the ESM2 passes."""
    tokens = min(len(task.wild_type), settings.window) + 2
    cost = (len(task.variants) + 1) * input_cost(tokens, quadratic=_needs_pairs(settings))
    if with_esm:
        sites = len({s.index for v in task.variants for s in v.substitutions})
        cost += (sites + 1) * input_cost(tokens, quadratic=False)
        if settings.esm_pll:  # one masked forward per position of every variant
            cost += (len(task.variants) + 1) * tokens * input_cost(tokens, quadratic=False)
    return cost


class ScoreLayout(RunLayout):
    """``proteins/<id>.csv`` + ``.json`` per protein, combined into ``scores.csv``."""

    command = "score"
    unit_noun = ("protein", "proteins")

    def paths(self, item: RunItem) -> tuple[Path, Path]:
        folder = self.target / PROTEINS_DIR
        return folder / f"{item.output}.csv", folder / f"{item.output}.json"

    def begin(self, items: Sequence[RunItem], overwrite: bool) -> None:
        (self.target / PROTEINS_DIR).mkdir(parents=True, exist_ok=True)

    def check(self, items: Sequence[RunItem]) -> list[Verdict]:
        return [csv_with_record_verdict(*self.paths(item), item, int(item.expect["n_variants"])) for item in items]

    def combine(self, items: Sequence[RunItem], failures: Mapping[str, str]) -> int:
        return write_combined(self.target, [item.id for item in items], {item.id: item.output for item in items})


def run_protein_scores(
    tasks: Sequence[ProteinTask],
    out_dir: str | os.PathLike[str],
    *,
    model: torch.nn.Module | None,
    esm_model: torch.nn.Module | None = None,
    settings: ScoreSettings = ScoreSettings(),
    batch_size: int | None = None,
    shard: Shard | None = None,
    overwrite: bool = False,
    progress: bool = False,
    report: Callable[[str], None] | None = None,
) -> RunReport:
    """Score every protein (or this shard's) into ``out_dir``; see the module docstring.

    The report's throughput counts variants. ``overwrite``: score every protein again, even those whose table
    checks out.
    """
    out = Path(out_dir)
    tasks = list(tasks)
    ids = [t.id for t in tasks]
    stems = unique_stems(ids)
    fingerprints = {"model": module_fingerprint(model) if model is not None else None,
                    "esm2": module_fingerprint(esm_model) if esm_model is not None else None}
    settings_key = content_key(settings.as_dict())
    items = [RunItem(k, t.id, stems[t.id], {"sequence": text_digest(t.wild_type), "inputs": t.digest(),
                                            "settings": settings_key, "n_variants": str(len(t.variants)),
                                            **fingerprints}) for k, t in enumerate(tasks)]
    units = [WorkUnit((k,), task_cost(t, settings, with_esm=esm_model is not None)) for k, t in enumerate(tasks)]
    run = {"proteins": content_key([(item.id, item.key) for item in items]), **fingerprints,
           "settings": settings.as_dict()}
    layout = ScoreLayout(out, run, shard)
    sharded = ShardedRun(layout, items, units, shard=shard, overwrite=overwrite)

    def compute(chosen: list[WorkUnit], pending: set[int]) -> None:
        todo = sorted(pending)
        iterator = todo
        if progress and len(todo) > 1:
            from tqdm.auto import tqdm

            iterator = tqdm(todo, desc="score", unit="protein")
        with BackgroundWriter() as writer:
            for i in iterator:
                task = tasks[i]
                scores = score_variants(
                    task.wild_type, task.variants, model=model, esm_model=esm_model,
                    properties=list(settings.properties) if settings.properties else None, region=settings.region,
                    local_radius=settings.local_radius, batch_size=batch_size, window=settings.window,
                    progress=progress and len(todo) == 1, esm_pll=settings.esm_pll,
                )
                table = variant_table(task.rows, task.variants, scores)
                writer.submit(_write_protein, layout.paths(items[i]), table,
                              {"id": task.id, "content_key": items[i].key, **items[i].expect})
                sharded.throughput.add(len(task.variants), len(task.variants) * (min(len(task.wild_type),
                                                                                      settings.window) + 2))
                if report is not None:
                    report(f"{task.id}: {len(task.variants)} variant(s) scored")

    return sharded.execute(compute)


def _write_protein(paths: tuple[Path, Path], table: pd.DataFrame, meta: dict) -> None:
    table_path, meta_path = paths
    with atomic_path(table_path) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(meta_path) as tmp:  # written last: a table without it is recomputed
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def write_combined(out_dir: str | os.PathLike[str], ids: Sequence[str], stems: dict[str, str]) -> int:
    """``scores.csv``: the per-protein tables in ``ids`` order, with the protein id first; returns its rows.

    The tables are copied field by field (no numbers are parsed and printed again), so every value is exactly
    the one in the protein's table.
    """
    out = Path(out_dir)
    rows = 0
    header: list[str] | None = None
    with atomic_path(out / COMBINED_CSV) as tmp, open(tmp, "w", encoding="utf-8", newline="") as dst:
        writer = csv.writer(dst, lineterminator="\n")
        for seq_id in ids:
            path = out / PROTEINS_DIR / f"{stems[seq_id]}.csv"
            with open(path, encoding="utf-8", newline="") as src:
                reader = csv.reader(src)
                columns = next(reader)
                if header is None:
                    header = columns
                    writer.writerow([ID_COLUMN] + [f"{c}_input" if c == ID_COLUMN else c for c in columns])
                elif columns != header:
                    raise InputError(f"{path} has other columns than the first protein's table; score the proteins "
                                     "of one run with the same input table and options")
                for fields in reader:
                    writer.writerow([seq_id, *fields])
                    rows += 1
        if header is None:
            writer.writerow([ID_COLUMN])
    return rows


def merge_protein_scores(out_dir: str | os.PathLike[str]) -> int:
    """Check the shards of a scoring run in ``out_dir`` and write ``scores.csv``; returns its row count."""
    return merge_run(ScoreLayout, out_dir).n_combined
