"""Scoring many proteins in one run: a FASTA of wild types (saturation for each) or a mutation table keyed by
sequence id; one table per protein plus a combined table; resumable by content and shardable.

Output folder::

    proteins/<id>.csv    one row per variant of the protein: the input columns, n_mutations, score, change_*,
                         esm2_* (as ``seqdance score`` writes for one protein)
    proteins/<id>.json   what the table was computed from (its content key, the model fingerprints)
    scores.csv           every protein's rows, with the protein ``id`` first; proteins in FASTA order
    invalid.csv          with --skip-invalid: id, row, mutant, reason of the rows left out
    shards/              manifests of a sharded run (:mod:`seqdance.inference.sharding`)

Each protein is scored whole in one process (the combined score normalises over a protein's variants), so a
sharded run's tables are bitwise those of a single process. A protein's table is reused only when its content
key matches: wild type, its input rows, the dynamics and ESM2 model fingerprints and the scoring settings.
Proteins are dealt to shards by their cost, variants × window tokens.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from seqdance.inference.fingerprint import module_fingerprint
from seqdance.inference.prediction_io import unique_stems
from seqdance.inference.sharding import (
    Shard,
    ShardError,
    complete_run,
    content_key,
    input_cost,
    merged_items,
    partition,
    run_is_complete,
    write_manifest,
)
from seqdance.inference.writer import BackgroundWriter, Throughput
from seqdance.io_utils import FastaRecord, atomic_path
from seqdance.schema import ESM2_MAX_RESIDUES, get_properties
from seqdance.scoring.dynamics_score import DEFAULT_LOCAL_RADIUS
from seqdance.scoring.mutations import (
    InvalidMutant,
    MutantSet,
    Variant,
    check_wild_type,
    parse_mutants,
    saturation_mutants,
)
from seqdance.scoring.scorer import score_variants
from seqdance.scoring.windows import drop_unscorable

PROTEINS_DIR = "proteins"
COMBINED_CSV = "scores.csv"
INVALID_CSV = "invalid.csv"
SHARDS_DIR = "shards"
ID_COLUMN = "id"


@dataclass(frozen=True)
class ProteinTask:
    """The variants of one wild type to score, with the input rows they came from."""

    id: str
    wild_type: str
    variants: list[Variant]
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

    def as_dict(self) -> dict:
        return {"properties": list(self.properties) if self.properties else "all", "region": self.region,
                "local_radius": self.local_radius if self.region == "local" else None, "window": self.window,
                "offset": self.offset}


def variant_table(rows: pd.DataFrame, variants: Sequence[Variant], scores: pd.DataFrame) -> pd.DataFrame:
    """Input rows + ``n_mutations`` + score columns; input columns that clash get the suffix ``_input``."""
    clashes = [c for c in rows.columns if c in scores.columns or c == "n_mutations"]
    rows = rows.rename(columns={c: f"{c}_input" for c in clashes}).reset_index(drop=True)
    rows.insert(min(1, len(rows.columns)), "n_mutations",
                [sum(not s.is_synonymous for s in v.substitutions) for v in variants])
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
        raise ValueError(f"{source}: no sequence-id column {id_column!r} (columns: {list(table.columns)}); "
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
                                           mutated_sequences=sequences)
        checked = drop_unscorable(checked, len(wts[seq_id]), size=window)
        invalid += [_global(seq_id, positions, item) for item in checked.invalid]
        if checked.variants:
            tasks.append(ProteinTask(seq_id, wts[seq_id], list(checked.variants),
                                     sub.iloc[[r - 1 for r in checked.rows]].reset_index(drop=True)))
    invalid.sort(key=lambda item: item.row)
    return tasks, invalid


def _global(seq_id: str, positions: list[int], item: InvalidMutant) -> InvalidRow:
    return InvalidRow(seq_id, positions[item.row - 1] + 1, item.mutant, item.reason)


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
    return cost


@dataclass
class ScoreRunReport:
    n_proteins: int
    n_owned: int
    n_done: int
    n_scored: int
    n_variants: int = 0
    throughput: Throughput | None = None
    merged: bool = False
    n_rows: int = 0


def run_protein_scores(
    tasks: Sequence[ProteinTask],
    out_dir: str | os.PathLike[str],
    *,
    model: torch.nn.Module | None,
    esm_model: torch.nn.Module | None = None,
    settings: ScoreSettings = ScoreSettings(),
    batch_size: int | None = None,
    shard: Shard | None = None,
    progress: bool = False,
    report: Callable[[str], None] | None = None,
) -> ScoreRunReport:
    """Score every protein (or this shard's) into ``out_dir``; see the module docstring."""
    out = Path(out_dir)
    (out / PROTEINS_DIR).mkdir(parents=True, exist_ok=True)
    tasks = list(tasks)
    ids = [t.id for t in tasks]
    stems = unique_stems(ids)
    fingerprints = {"model": module_fingerprint(model) if model is not None else None,
                    "esm2": module_fingerprint(esm_model) if esm_model is not None else None}
    keys = [content_key({"protein": t.digest(), "settings": settings.as_dict(), **fingerprints}) for t in tasks]
    if shard is None:
        owned = list(range(len(tasks)))
    else:
        costs = [task_cost(t, settings, with_esm=esm_model is not None) for t in tasks]
        owned = partition(costs, ids, shard.count)[shard.index]
    run = {"command": "score", "proteins": content_key(list(zip(ids, keys))), **fingerprints,
           "settings": settings.as_dict(), "n_shards": shard.count if shard else 1}
    run_key = content_key(run)
    folder = out / SHARDS_DIR
    items = [(i, ids[i]) for i in owned]
    if shard is not None:
        write_manifest(folder, shard, command="score", run_key=run_key, run=run, items=items, n_items=len(tasks),
                       complete=False, extra={"stems": {ids[i]: stems[ids[i]] for i in owned}})
    pending = [i for i in owned if _stored_key(out, stems[ids[i]]) != keys[i]]
    result = ScoreRunReport(len(tasks), len(owned), len(owned) - len(pending), 0, throughput=Throughput())
    iterator = pending
    if progress and len(pending) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(pending, desc="proteins", unit="protein")
    result.throughput.start()
    with BackgroundWriter() as writer:
        for i in iterator:
            task = tasks[i]
            scores = score_variants(
                task.wild_type, task.variants, model=model, esm_model=esm_model,
                properties=list(settings.properties) if settings.properties else None, region=settings.region,
                local_radius=settings.local_radius, batch_size=batch_size, window=settings.window,
                progress=progress and len(pending) == 1,
            )
            table = variant_table(task.rows, task.variants, scores)
            writer.submit(_write_protein, out, stems[task.id], table,
                          {"id": task.id, "content_key": keys[i], "n_variants": len(task.variants), **fingerprints})
            result.n_scored += 1
            result.n_variants += len(task.variants)
            result.throughput.add(len(task.variants), len(task.variants) * (min(len(task.wild_type),
                                                                                 settings.window) + 2))
            if report is not None:
                report(f"{task.id}: {len(task.variants)} variant(s) scored")
    result.throughput.stop()
    if shard is None:
        result.n_rows = write_combined(out, ids, stems)
        result.merged = True
        return result
    write_manifest(folder, shard, command="score", run_key=run_key, run=run, items=items, n_items=len(tasks),
                   complete=True, extra={"stems": {ids[i]: stems[ids[i]] for i in owned},
                                         "content_keys": {ids[i]: keys[i] for i in owned}})
    if run_is_complete(folder, run_key, shard.count):
        result.n_rows = merge_protein_scores(out)
        result.merged = True
    return result


def _write_protein(out: Path, stem: str, table: pd.DataFrame, meta: dict) -> None:
    folder = out / PROTEINS_DIR
    with atomic_path(folder / f"{stem}.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(folder / f"{stem}.json") as tmp:  # written last: a table without it is recomputed
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _stored_key(out: Path, stem: str) -> str | None:
    meta = out / PROTEINS_DIR / f"{stem}.json"
    table = out / PROTEINS_DIR / f"{stem}.csv"
    if not meta.is_file() or not table.is_file():
        return None
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("content_key")
    except (OSError, ValueError):
        return None


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
                    raise ValueError(f"{path} has other columns than the first protein's table; score the proteins "
                                     "of one run with the same input table and options")
                for fields in reader:
                    writer.writerow([seq_id, *fields])
                    rows += 1
        if header is None:
            writer.writerow([ID_COLUMN])
    return rows


def merge_protein_scores(out_dir: str | os.PathLike[str]) -> int:
    """Check the shards of a scoring run in ``out_dir`` and write ``scores.csv``; returns its row count.

    Every shard must be finished and of the same run, and every protein's table must carry that run's content
    key (a ShardError names the first that does not).
    """
    out = Path(out_dir)
    manifests = complete_run(out / SHARDS_DIR, "score")
    stems: dict[str, str] = {}
    keys: dict[str, str] = {}
    for m in manifests:
        stems.update(m.get("stems", {}))
        keys.update(m.get("content_keys", {}))
    ids = merged_items(manifests)
    for seq_id in ids:
        if _stored_key(out, stems[seq_id]) != keys.get(seq_id):
            raise ShardError(f"{out / PROTEINS_DIR / (stems[seq_id] + '.csv')} is missing or comes from another run "
                             "(other inputs, model or settings than the shards' manifests); rerun its shard")
    return write_combined(out, ids, stems)
