"""Prediction and embedding runs over a FASTA file: what ``seqdance predict`` and ``seqdance embed`` do.

Both run through the one run protocol (:class:`seqdance.inference.sharded_run.ShardedRun`): the run is planned
over all records (:func:`seqdance.inference.predict.plan_prediction_batches`; a unit is a batch, or one long
sequence with all its windows), a shard computes only its units, so the union of the shards is bitwise the
single-process result; a record's output is reused only when it checks out against the plan (its sequence,
model fingerprint and value-changing options through its content key, and its own arrays' shapes); a unit with
any record to compute is run whole and only the missing outputs are written, on a background thread
(:class:`seqdance.inference.writer.BackgroundWriter`), each atomically.

Layouts (:class:`PredictionLayout`, :class:`EmbeddingLayout`): ``predict`` writes ``OUTDIR/<id>.npz`` whatever
the shard and combines them into ``OUTDIR/residues.csv``; a shard's manifest goes to ``OUTDIR/shards/``.
``embed`` writes ``OUT.h5``; a shard writes ``OUT.h5.shards/shard-i-of-N.h5`` and its manifest there, and the
combination is ``OUT.h5`` (entries in FASTA order).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqdance.errors import InputError
from seqdance.inference.fingerprint import module_fingerprint
from seqdance.inference.predict import (
    DEFAULT_MAX_TOKENS_PER_BATCH,
    DEFAULT_WINDOW,
    PlannedBatch,
    PreparedSequence,
    iter_predictions,
    plan_prediction_batches,
    prepare_sequences,
)
from seqdance.inference.prediction import Prediction
from seqdance.inference.sharded_run import (
    RunItem,
    RunLayout,
    RunReport,
    ShardedRun,
    Verdict,
    WorkUnit,
    merge_run,
    missing,
    unreadable,
)
from seqdance.inference.sharding import Shard, content_key, records_digest, text_digest
from seqdance.inference.writer import BackgroundWriter
from seqdance.schema import PROPERTIES, PROPERTY_BY_NAME
from seqdance.tokenizer import Encoded

log = logging.getLogger(__name__)

RESIDUE_CSV = "residues.csv"
SHARDS_DIR = "shards"


@dataclass(frozen=True)
class RunOptions:
    """What a prediction run computes; all of it is part of a sharded run's identity."""

    pairs: bool = True
    embeddings: bool = False
    attentions: bool = False
    max_tokens_per_batch: int = DEFAULT_MAX_TOKENS_PER_BATCH
    window: int | None = DEFAULT_WINDOW
    window_overlap: int | None = None

    @property
    def overlap(self) -> int | None:
        if self.window is None:
            return None
        return self.window // 2 if self.window_overlap is None else self.window_overlap

    def value_options(self) -> str:
        """The options that change a record's values (a file made with others is recomputed)."""
        return json.dumps({"window": self.window, "window_overlap": self.overlap}, sort_keys=True)

    def as_dict(self) -> dict:
        return {"pairs": self.pairs, "embeddings": self.embeddings, "attentions": self.attentions,
                "max_tokens_per_batch": self.max_tokens_per_batch, "window": self.window,
                "window_overlap": self.overlap}


def _remove_stale_temporaries(folder: Path, names: Sequence[str]) -> None:
    """Temporary files a killed run of these outputs left (never another shard's: names are this shard's).

    ``atomic_path`` names them ``.<name>.<random>.tmp``; the folder is listed once.
    """
    mine = set(names)
    if not folder.is_dir():
        return
    for tmp in folder.glob(".*.tmp"):
        name = tmp.name[1:].rsplit(".", 2)[0]
        if name in mine:
            tmp.unlink(missing_ok=True)


def _plan_units(plan: Sequence[PlannedBatch], quadratic: bool) -> list[WorkUnit]:
    return [WorkUnit(unit.members, unit.cost(quadratic=quadratic)) for unit in plan]


def _nbytes(prediction: Prediction) -> int:
    total = sum(v.nbytes for v in prediction.values.values())
    for extra in (prediction.embedding, prediction.attention_maps):
        total += 0 if extra is None else extra.nbytes
    return total


def _prepared(ids: Sequence[str], sequences: Sequence[str] | None, encoded: Sequence[Encoded] | None,
              options: RunOptions) -> list[PreparedSequence]:
    return prepare_sequences(sequences, ids=ids, encoded=encoded, window=options.window,
                             window_overlap=options.window_overlap)


# --- predict ---------------------------------------------------------------------------------------------


def wanted_keys(options: RunOptions | Mapping[str, Any]) -> set[str]:
    """The arrays a prediction file of these options must hold."""
    if isinstance(options, Mapping):
        options = RunOptions(**options)
    wanted = {p.name for p in PROPERTIES if p.is_residue or options.pairs}
    wanted |= {"embedding"} if options.embeddings else set()
    wanted |= {"attention"} if options.attentions else set()
    return wanted


def _array_problem(name: str, shape: tuple[int, ...], kind: str, n: int) -> str | None:
    """Why array ``name`` of a prediction of ``n`` residues has the wrong shape or type (None when it fits)."""
    if kind != "f":
        return f"its {name!r} is not floating point"
    prop = PROPERTY_BY_NAME.get(name)
    if prop is not None:
        want: tuple[int, ...] = (n, n) if prop.is_pair else ((n,) if prop.width == 1 else (n, prop.width))
        return None if shape == want else f"its {name!r} has shape {shape}, not {want}"
    if name == "embedding" and (len(shape) != 2 or shape[0] != n):
        return f"its 'embedding' has shape {shape}, not ({n}, d)"
    if name == "attention" and (len(shape) != 3 or shape[:2] != (n, n)):
        return f"its 'attention' has shape {shape}, not ({n}, {n}, maps)"
    return None


class PredictionLayout(RunLayout):
    """``OUTDIR/<id>.npz`` per record, combined into ``OUTDIR/residues.csv``."""

    command = "predict"
    unit_noun = ("batch", "batches")

    def __init__(self, target: str | os.PathLike[str], run: Mapping[str, Any], shard: Shard | None = None,
                 model_name: str | None = None) -> None:
        super().__init__(target, run, shard)
        self.model_name = model_name  # files of another model name are refused (None: not checked)
        self.wanted = wanted_keys(self.run["options"])

    def path(self, item: RunItem) -> Path:
        return self.target / f"{item.output}.npz"

    def begin(self, items: Sequence[RunItem], overwrite: bool) -> None:
        self.target.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(self.target, [f"{item.output}.npz" for item in items])
        if overwrite:
            self.model_name = None

    def check(self, items: Sequence[RunItem]) -> list[Verdict]:
        from seqdance.inference.prediction_io import PredictionFileError, inspect_prediction_file

        verdicts = []
        for item in items:
            path = self.path(item)
            if not path.exists():
                verdicts.append(missing(path))
                continue
            try:
                info = inspect_prediction_file(path)
            except PredictionFileError as exc:
                verdicts.append(unreadable(path, exc.reason))
                continue
            name = info.meta.get("model")
            if self.model_name is not None and name is not None and name != self.model_name:
                raise InputError(f"{path} was predicted with model {name!r}, not {self.model_name!r}; use another "
                                 "output directory or --overwrite")
            recorded = {"sequence": text_digest(info.meta["sequence"]), "model": info.meta.get("model_fingerprint"),
                        "options": info.meta.get("options")}
            verdicts.append(Verdict.judge(str(path), item, recorded, info.meta.get("content_key"),
                                          self._problem(info)))
        return verdicts

    def _problem(self, info) -> str | None:
        """The file's own content check: every wanted array, each of the shape its sequence implies."""
        n = info.n_residues
        if len(info.meta["sequence"].replace(":", "")) != n:
            return f"records {n} residues in its chains for a sequence of {len(info.meta['sequence'])} letters"
        absent = sorted(self.wanted - set(info.arrays))
        if absent:
            return f"lacks {', '.join(absent[:3])}{' ...' if len(absent) > 3 else ''} (predicted with fewer outputs)"
        for name in sorted(self.wanted):
            shape, dtype = info.arrays[name]
            problem = _array_problem(name, shape, dtype.kind, n)
            if problem:
                return problem
        return None

    def combine(self, items: Sequence[RunItem], failures: Mapping[str, str]) -> int:
        from seqdance.inference.prediction_io import write_residue_csv

        return write_residue_csv(self.target / RESIDUE_CSV, (self.path(item) for item in items
                                                             if item.id not in failures))


def prediction_content(sequence: str, fingerprint: str, value_options: str) -> dict[str, str]:
    """What a prediction file's content key is made of: its sequence, the model fingerprint, the value options."""
    return {"sequence": text_digest(sequence), "model": fingerprint, "options": value_options}


def prediction_metadata(sequence: str, fingerprint: str, value_options: str) -> dict[str, str]:
    """The metadata ``seqdance predict`` records in each ``.npz`` (anything writing one must record the same)."""
    return {"model_fingerprint": fingerprint, "options": value_options,
            "content_key": content_key(prediction_content(sequence, fingerprint, value_options))}


def run_predictions(
    model,
    ids: Sequence[str],
    sequences: Sequence[str] | None,
    out_dir: str | os.PathLike[str],
    stems: dict[str, str],
    *,
    model_name: str,
    options: RunOptions = RunOptions(),
    shard: Shard | None = None,
    overwrite: bool = False,
    progress: bool = False,
    encoded: Sequence[Encoded] | None = None,
) -> RunReport:
    """Predict every record (or this shard's) into ``out_dir``; see the module docstring.

    ``encoded``: the records already tokenised (then ``sequences`` may be None): each is tokenised once.
    """
    from seqdance.inference.prediction_io import save_prediction

    ids = list(ids)
    prepared = _prepared(ids, sequences, encoded, options)
    fingerprint = module_fingerprint(model)
    value_options = options.value_options()
    quadratic = options.pairs or options.attentions
    plan = plan_prediction_batches(prepared=prepared, pairs=options.pairs, attentions=options.attentions,
                                   max_tokens_per_batch=options.max_tokens_per_batch)
    run = {"records": records_digest([(job.id, job.sequence) for job in prepared]), "model": fingerprint,
           "options": options.as_dict()}
    items = [RunItem(job.index, job.id, stems[job.id], prediction_content(job.sequence, fingerprint, value_options))
             for job in prepared]
    layout = PredictionLayout(out_dir, run, shard, model_name=model_name)
    sharded = ShardedRun(layout, items, _plan_units(plan, quadratic), shard=shard, overwrite=overwrite)
    tokens = {unit.members: unit.tokens for unit in plan}

    def write(prediction: Prediction, item: RunItem) -> None:
        save_prediction(layout.path(item), prediction, model=model_name,
                        metadata={"model_fingerprint": fingerprint, "options": value_options,
                                  "content_key": item.key})

    def compute(units: list[WorkUnit], pending: set[int]) -> None:
        with BackgroundWriter() as writer:
            results = iter_predictions(
                model, None, pairs=options.pairs, embeddings=options.embeddings, attentions=options.attentions,
                max_tokens_per_batch=options.max_tokens_per_batch, progress=progress,
                batches=[list(unit.items) for unit in units], prepared=prepared,
            )
            for index, prediction in results:
                if index in pending:
                    writer.submit(write, prediction, items[index], size=_nbytes(prediction))
        sharded.throughput.add(sum(len(u.items) for u in units), sum(tokens[u.items] for u in units))

    return sharded.execute(compute)


def merge_predictions(out_dir: str | os.PathLike[str]) -> int:
    """Check the shards of a prediction run in ``out_dir`` and write ``residues.csv``; returns its row count."""
    return merge_run(PredictionLayout, out_dir).n_combined


# --- embed -----------------------------------------------------------------------------------------------


def embedding_shards_folder(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".shards")


class EmbeddingLayout(RunLayout):
    """``OUT.h5`` (entries in input order); a shard writes ``OUT.h5.shards/shard-i-of-N.h5``."""

    command = "embed"
    unit_noun = ("batch", "batches")

    def __init__(self, target: str | os.PathLike[str], run: Mapping[str, Any], shard: Shard | None = None) -> None:
        super().__init__(target, run, shard)
        self.per_residue = bool(self.run["options"]["per_residue"])
        self.writer = None

    @classmethod
    def manifest_folder(cls, target: str | os.PathLike[str]) -> Path:
        return embedding_shards_folder(target)

    def shard_file(self, shard: Shard) -> Path:
        return self.manifest_folder(self.target) / f"{shard.name}.h5"

    def begin(self, items: Sequence[RunItem], overwrite: bool) -> None:
        from seqdance.inference.embedding_store import EmbeddingWriter

        model = self.run["model_name"]
        if self.shard is None:
            target, also_done = self.target, ()
        else:
            self.manifest_folder(self.target).mkdir(parents=True, exist_ok=True)
            target, also_done = self.shard_file(self.shard), (() if overwrite else (self.target,))
            if overwrite and self.target.exists():
                _check_model_name(self.target, model)
        self.writer = EmbeddingWriter(target, model=model, per_residue=self.per_residue, overwrite=overwrite,
                                      fingerprint=self.run["model"], options=self.run["value_options"],
                                      also_done=also_done, damaged="recompute")

    def _merge_entries(self) -> dict[str, Any]:
        """id -> newest entry over ``OUT.h5`` and the shard files (a merge: unreadable files are named)."""
        from seqdance.inference.embedding_store import read_entries

        count = int(self.run["n_shards"])
        sources = [self.target] if self.target.exists() else []
        sources += [f for f in (self.shard_file(Shard(i, count)) for i in range(count)) if f.is_file()]
        found: dict[str, Any] = {}
        for source in sources:
            for entry in read_entries(source).values():
                found[entry.id] = entry
        return found

    def check(self, items: Sequence[RunItem]) -> list[Verdict]:
        entries = None if self.writer is not None else self._merge_entries()
        verdicts = []
        for item in items:
            entry = self.writer.entry(item.id) if self.writer is not None else entries.get(item.id)
            if entry is None:
                verdicts.append(missing(f"{self.target}: the entry of {item.id!r}"))
                continue
            recorded = {"sequence": text_digest(entry.sequence), "model": entry.fingerprint, "options": entry.options}
            verdicts.append(Verdict.judge(f"{entry.source}: the entry {entry.key!r}", item, recorded, entry.content,
                                          entry.problem(self.per_residue)))
        return verdicts

    def end(self, items: Sequence[RunItem], finished: bool) -> None:
        if self.writer is None:
            return
        self.writer.flush()  # keep what is done, even when interrupted
        if finished:  # fold the parts into OUT.h5 (a shard: into its shard file)
            self.writer.close(order=[item.id for item in items])

    def combine(self, items: Sequence[RunItem], failures: Mapping[str, str]) -> int:
        from seqdance.inference.embedding_store import merge_embedding_files, read_entries

        if self.shard is None and self.writer is not None:  # one process: end() wrote OUT.h5 already
            return len(read_entries(self.target))
        chosen = self._merge_entries()
        keep = {(chosen[item.id].source, chosen[item.id].key) for item in items if item.id in chosen}
        count = int(self.run["n_shards"])
        sources = ([self.target] if self.target.exists() else []) + [
            f for f in (self.shard_file(Shard(i, count)) for i in range(count)) if f.is_file()]
        if self.target.exists():  # entries of other records the file already held (same model) are kept
            _check_model_name(self.target, self.run["model_name"])
            ours = {item.id for item in items}
            keep |= {(self.target, e.key) for e in read_entries(self.target).values() if e.id not in ours}
        return merge_embedding_files(self.target, sources, order=[item.id for item in items],
                                     model=self.run["model_name"], fingerprint=self.run["model"], keep=keep)


def _check_model_name(path: Path, model_name: str) -> None:
    from seqdance.inference.embedding_store import file_model

    found = file_model(path)
    if found is not None and found != model_name:
        raise InputError(f"{path} holds embeddings from model {found!r}, not {model_name!r}; "
                         "write to another file")


def run_embeddings(
    model,
    ids: Sequence[str],
    sequences: Sequence[str] | None,
    path: str | os.PathLike[str],
    *,
    model_name: str,
    per_residue: bool = False,
    max_tokens_per_batch: int = DEFAULT_MAX_TOKENS_PER_BATCH,
    shard: Shard | None = None,
    overwrite: bool = False,
    progress: bool | str = False,
    encoded: Sequence[Encoded] | None = None,
) -> RunReport:
    """Embed every record (or this shard's) into the HDF5 file ``path``; see the module docstring.

    Embeddings come from :func:`seqdance.inference.embeddings.iter_embeddings`, the path ``probe`` uses too.
    """
    from seqdance.inference.embeddings import iter_embeddings, window_options

    ids = list(ids)
    options = RunOptions(pairs=False, embeddings=True, max_tokens_per_batch=max_tokens_per_batch)
    prepared = _prepared(ids, sequences, encoded, options)
    fingerprint = module_fingerprint(model)
    value_options = window_options(options.window, options.window_overlap)
    plan = plan_prediction_batches(prepared=prepared, pairs=False, max_tokens_per_batch=max_tokens_per_batch)
    run = {"records": records_digest([(job.id, job.sequence) for job in prepared]), "model": fingerprint,
           "options": {**options.as_dict(), "per_residue": per_residue}, "model_name": model_name,
           "value_options": value_options}
    items = [RunItem(job.index, job.id, job.id, {"sequence": text_digest(job.sequence), "model": fingerprint,
                                                 "options": value_options}) for job in prepared]
    layout = EmbeddingLayout(path, run, shard)
    sharded = ShardedRun(layout, items, _plan_units(plan, False), shard=shard, overwrite=overwrite)
    tokens = {unit.members: unit.tokens for unit in plan}

    def compute(units: list[WorkUnit], pending: set[int]) -> None:
        for index, embedding in iter_embeddings(model, prepared=prepared, batches=[list(u.items) for u in units],
                                                max_tokens_per_batch=max_tokens_per_batch, progress=progress):
            if index in pending:
                layout.writer.add(embedding)
        sharded.throughput.add(sum(len(u.items) for u in units), sum(tokens[u.items] for u in units))

    return sharded.execute(compute)


def merge_embeddings(path: str | os.PathLike[str]) -> int:
    """Merge the finished shards of an embedding run (``OUT.h5.shards/``) into ``OUT.h5``; returns the entries.

    Entries already in ``OUT.h5`` from the same model are kept unless a shard recomputed them. The shard files
    stay (remove ``OUT.h5.shards/`` once you no longer need to rerun a shard).
    """
    return merge_run(EmbeddingLayout, path).n_combined

