"""Prediction and embedding runs over a FASTA file: resumable by content, shardable, merged to one result.

What ``seqdance predict`` and ``seqdance embed`` do, as library functions:

* The run is planned over all records (:func:`seqdance.inference.predict.plan_prediction_batches`); a shard
  (:mod:`seqdance.inference.sharding`) computes only its batches, so every sequence is computed in the same
  batch whatever the number of shards, and the union of the shards is bitwise the single-process result.
* A record's output is reused only when it holds the requested keys and its sequence, model fingerprint
  (:func:`seqdance.inference.fingerprint.module_fingerprint`) and value-changing options (window, overlap)
  match; otherwise it is recomputed. A batch with any record to compute is run whole (so that a resumed
  shard gives the same numbers as an uninterrupted one) and only the missing outputs are written.
* Outputs are written on a background thread (:class:`seqdance.inference.writer.BackgroundWriter`), each
  atomically; an interrupted run keeps every finished record.
* Layouts: ``predict`` writes ``OUTDIR/<id>.npz`` whatever the shard (no merge needed for them) and
  ``OUTDIR/residues.csv``; a shard also writes ``OUTDIR/shards/shard-i-of-N.json``. ``embed`` writes
  ``OUT.h5``; a shard writes ``OUT.h5.shards/shard-i-of-N.h5`` and its manifest there. The shard that
  finishes last writes the combined outputs (``residues.csv``, ``OUT.h5``); :func:`merge_predictions` and
  :func:`merge_embeddings` do it on demand and check that every shard belongs to the same run.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqdance.errors import InputError
from seqdance.inference.fingerprint import module_fingerprint
from seqdance.inference.predict import (
    DEFAULT_MAX_TOKENS_PER_BATCH,
    DEFAULT_WINDOW,
    PlannedBatch,
    iter_predictions,
    plan_prediction_batches,
)
from seqdance.inference.prediction import Prediction
from seqdance.inference.sharding import (
    Shard,
    ShardError,
    complete_run,
    content_key,
    merged_items,
    partition,
    records_digest,
    run_is_complete,
    write_manifest,
)
from seqdance.inference.writer import BackgroundWriter, Throughput
from seqdance.schema import PROPERTIES
from seqdance.tokenizer import decode, encode

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
                "max_tokens_per_batch": self.max_tokens_per_batch, "window": self.window, "window_overlap": self.overlap}


@dataclass
class RunReport:
    """What a run did: records in the run (or this shard), already done, computed and written."""

    n_records: int
    n_owned: int
    n_done: int
    n_written: int
    throughput: Throughput = field(default_factory=Throughput)
    merged: bool = False
    n_rows: int = 0  # residue-table rows / entries of the merged output, when it was written


def normalised_sequence(seq_id: str, sequence: str) -> str:
    """The sequence as predictions record it (upper case, chains joined by ':')."""
    return decode(encode(sequence, seq_id).ids)


def _shard_units(plan: list[PlannedBatch], ids: Sequence[str], shard: Shard | None, quadratic: bool) -> list[int]:
    if shard is None:
        return list(range(len(plan)))
    costs = [unit.cost(quadratic=quadratic) for unit in plan]
    keys = [ids[unit.members[0]] for unit in plan]
    return partition(costs, keys, shard.count)[shard.index]


def _remove_stale_temporaries(folder: Path, names: Sequence[str]) -> None:
    """Temporary files a killed run of these outputs left (never another shard's: names are this shard's).

    ``atomic_path`` names them ``.<name>.<random>.tmp``; the folder is listed once.
    """
    mine = set(names)
    for tmp in folder.glob(".*.tmp"):
        name = tmp.name[1:].rsplit(".", 2)[0]
        if name in mine:
            tmp.unlink(missing_ok=True)


def _run_units(
    model,
    sequences: list[str],
    ids: list[str],
    units: list[PlannedBatch],
    options: RunOptions,
    *,
    pending: set[int],
    write: Callable[[Prediction], None],
    sizes: Callable[[Prediction], int],
    throughput: Throughput,
    progress: bool | str,
    max_pending_bytes: int | None = None,
) -> int:
    """Run the units holding a pending record, hand each pending prediction to ``write`` on a background
    thread; returns the number written."""
    to_run = [unit for unit in units if pending.intersection(unit.members)]
    if not to_run:
        return 0
    written = 0
    kwargs = {} if max_pending_bytes is None else {"max_pending_bytes": max_pending_bytes}
    throughput.start()
    with BackgroundWriter(**kwargs) as writer:
        results = iter_predictions(
            model, sequences, ids=ids, pairs=options.pairs, embeddings=options.embeddings,
            attentions=options.attentions, max_tokens_per_batch=options.max_tokens_per_batch,
            window=options.window, window_overlap=options.window_overlap, progress=progress,
            batches=[list(unit.members) for unit in to_run],
        )
        for index, prediction in results:
            if index in pending:
                writer.submit(write, prediction, size=sizes(prediction))
                written += 1
    throughput.stop()
    throughput.add(sum(len(u.members) for u in to_run), sum(u.tokens for u in to_run))
    return written


def _nbytes(prediction: Prediction) -> int:
    total = sum(v.nbytes for v in prediction.values.values())
    for extra in (prediction.embedding, prediction.attention_maps):
        total += 0 if extra is None else extra.nbytes
    return total


# --- predict ---------------------------------------------------------------------------------------------


def wanted_keys(options: RunOptions) -> set[str]:
    wanted = {p.name for p in PROPERTIES if p.is_residue or options.pairs}
    wanted |= {"embedding"} if options.embeddings else set()
    wanted |= {"attention"} if options.attentions else set()
    return wanted


def prediction_file_state(path: Path, *, wanted: set[str], model: str, sequence: str, fingerprint: str,
                          options: str) -> bool:
    """Whether an existing prediction file can be reused: every wanted key, same sequence, model fingerprint and
    value options. A damaged file is recomputed; a file of another model name is refused (InputError), as
    mixing models in one folder is."""
    if not path.exists():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            found_model = str(data["model"]) if "model" in files else None
            meta = {k: str(data[k]) for k in ("sequence", "model_fingerprint", "options") if k in files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # truncated or damaged: recompute it
        log.warning("%s is not a readable prediction file (%s); recomputing it", path, exc)
        return False
    if found_model is not None and found_model != model:
        raise InputError(
            f"{path} was predicted with model {found_model!r}, not {model!r}; use another output directory "
            "or --overwrite"
        )
    return (
        wanted <= files
        and meta.get("sequence") == sequence
        and meta.get("model_fingerprint") == fingerprint
        and meta.get("options") == options
    )


def run_predictions(
    model,
    ids: Sequence[str],
    sequences: Sequence[str],
    out_dir: str | os.PathLike[str],
    stems: dict[str, str],
    *,
    model_name: str,
    options: RunOptions = RunOptions(),
    shard: Shard | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> RunReport:
    """Predict every record (or this shard's) into ``out_dir``; see the module docstring."""
    from seqdance.inference.prediction_io import save_prediction

    ids, sequences = list(ids), list(sequences)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    normalised = [normalised_sequence(i, s) for i, s in zip(ids, sequences)]
    fingerprint = module_fingerprint(model)
    value_options = options.value_options()
    quadratic = options.pairs or options.attentions
    plan = plan_prediction_batches(
        sequences, ids=ids, pairs=options.pairs, attentions=options.attentions,
        max_tokens_per_batch=options.max_tokens_per_batch, window=options.window,
        window_overlap=options.window_overlap,
    )
    units = [plan[u] for u in _shard_units(plan, ids, shard, quadratic)]
    owned = sorted(i for unit in units for i in unit.members)
    run = {"command": "predict", "records": records_digest(list(zip(ids, normalised))), "model": fingerprint,
           "options": options.as_dict(), "n_shards": shard.count if shard else 1}
    run_key = content_key(run)
    folder = out / SHARDS_DIR
    items = [(i, ids[i]) for i in owned]
    if shard is not None:
        write_manifest(folder, shard, command="predict", run_key=run_key, run=run, items=items, n_items=len(ids),
                       complete=False)
    _remove_stale_temporaries(out, [f"{stems[ids[i]]}.npz" for i in owned])
    wanted = wanted_keys(options)
    pending = {
        i for i in owned
        if overwrite or not prediction_file_state(out / f"{stems[ids[i]]}.npz", wanted=wanted, model=model_name,
                                                  sequence=normalised[i], fingerprint=fingerprint,
                                                  options=value_options)
    }
    metadata = {"model_fingerprint": fingerprint, "options": value_options}

    def write(prediction: Prediction) -> None:
        save_prediction(out / f"{stems[prediction.id]}.npz", prediction, model=model_name, metadata=metadata)

    report = RunReport(len(ids), len(owned), len(owned) - len(pending), 0)
    report.n_written = _run_units(model, sequences, ids, units, options, pending=pending, write=write,
                                  sizes=_nbytes, throughput=report.throughput, progress=progress)
    if shard is None:
        report.n_rows = _write_residue_table(out, [stems[i] for i in ids])
        report.merged = True
        return report
    write_manifest(folder, shard, command="predict", run_key=run_key, run=run, items=items, n_items=len(ids),
                   complete=True, extra={"stems": {ids[i]: stems[ids[i]] for i in owned}})
    if run_is_complete(folder, run_key, shard.count):
        report.n_rows = merge_predictions(out)
        report.merged = True
    return report


def _write_residue_table(out: Path, stems: Sequence[str]) -> int:
    from seqdance.inference.prediction_io import write_residue_csv

    return write_residue_csv(out / RESIDUE_CSV, (out / f"{stem}.npz" for stem in stems))


def merge_predictions(out_dir: str | os.PathLike[str]) -> int:
    """Check the shards of a prediction run in ``out_dir`` and write ``residues.csv``; returns its row count.

    Every shard must be finished and of the same run, and every record's file must come from that run's model
    and options (a ShardError names the first that does not).
    """
    out = Path(out_dir)
    manifests = complete_run(out / SHARDS_DIR, "predict")
    run = manifests[0]["run"]
    stems: dict[str, str] = {}
    for m in manifests:
        stems.update(m.get("stems", {}))
    ids = merged_items(manifests)
    options = RunOptions(**run["options"])
    value_options, wanted = options.value_options(), wanted_keys(options)
    for seq_id in ids:
        path = out / f"{stems[seq_id]}.npz"
        if not path.is_file():
            raise ShardError(f"{path} is missing although its shard finished; rerun that shard")
        with np.load(path, allow_pickle=False) as data:
            found = str(data["model_fingerprint"]) if "model_fingerprint" in data.files else None
            opts = str(data["options"]) if "options" in data.files else None
            complete = wanted <= set(data.files)
        if found != run["model"] or opts != value_options or not complete:
            raise ShardError(f"{path} comes from another run (another model, options or outputs than the shards' "
                             "manifests); rerun its shard")
    return _write_residue_table(out, [stems[i] for i in ids])


# --- embed -----------------------------------------------------------------------------------------------


def embedding_shards_folder(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".shards")


def run_embeddings(
    model,
    ids: Sequence[str],
    sequences: Sequence[str],
    path: str | os.PathLike[str],
    *,
    model_name: str,
    per_residue: bool = False,
    max_tokens_per_batch: int = DEFAULT_MAX_TOKENS_PER_BATCH,
    shard: Shard | None = None,
    overwrite: bool = False,
    progress: bool | str = False,
) -> RunReport:
    """Embed every record (or this shard's) into the HDF5 file ``path``; see the module docstring."""
    from seqdance.inference.embedding_store import EmbeddingWriter

    ids, sequences = list(ids), list(sequences)
    path = Path(path)
    options = RunOptions(pairs=False, embeddings=True, max_tokens_per_batch=max_tokens_per_batch)
    normalised = [normalised_sequence(i, s) for i, s in zip(ids, sequences)]
    fingerprint = module_fingerprint(model)
    plan = plan_prediction_batches(sequences, ids=ids, pairs=False, max_tokens_per_batch=max_tokens_per_batch,
                                   window=options.window, window_overlap=options.window_overlap)
    units = [plan[u] for u in _shard_units(plan, ids, shard, quadratic=False)]
    owned = sorted(i for unit in units for i in unit.members)
    run = {"command": "embed", "records": records_digest(list(zip(ids, normalised))), "model": fingerprint,
           "options": {**options.as_dict(), "per_residue": per_residue}, "model_name": model_name,
           "n_shards": shard.count if shard else 1}
    run_key = content_key(run)
    folder = embedding_shards_folder(path)
    items = [(i, ids[i]) for i in owned]
    if shard is None:
        target, also_done = path, ()
    else:
        folder.mkdir(parents=True, exist_ok=True)
        write_manifest(folder, shard, command="embed", run_key=run_key, run=run, items=items, n_items=len(ids),
                       complete=False)
        target, also_done = folder / f"{shard.name}.h5", (() if overwrite else (path,))
        if overwrite and path.exists():
            _check_model_name(path, model_name)
    writer = EmbeddingWriter(target, model=model_name, per_residue=per_residue, overwrite=overwrite,
                             fingerprint=fingerprint, options=options.value_options(), also_done=also_done)
    pending = {i for i in owned if not writer.is_done(ids[i], normalised[i])}
    report = RunReport(len(ids), len(owned), len(owned) - len(pending), 0)
    try:
        report.n_written = _run_units(model, sequences, ids, units, options, pending=pending, write=writer.add,
                                      sizes=_nbytes, throughput=report.throughput, progress=progress)
    finally:
        writer.flush()  # keep what is done, even when interrupted
    if shard is None:
        report.n_rows = writer.close(order=ids)
        report.merged = True
        return report
    writer.close(order=[ids[i] for i in owned])
    write_manifest(folder, shard, command="embed", run_key=run_key, run=run, items=items, n_items=len(ids),
                   complete=True)
    if run_is_complete(folder, run_key, shard.count):
        report.n_rows = merge_embeddings(path)
        report.merged = True
    return report


def _check_model_name(path: Path, model_name: str) -> None:
    import h5py

    with h5py.File(path, "r") as fh:
        found = fh.attrs.get("model")
    if found is not None and str(found) != model_name:
        raise InputError(f"{path} holds embeddings from model {str(found)!r}, not {model_name!r}; "
                         "write to another file")


def merge_embeddings(path: str | os.PathLike[str]) -> int:
    """Merge the finished shards of an embedding run (``OUT.h5.shards/``) into ``OUT.h5``; returns the entries.

    Entries already in ``OUT.h5`` from the same model are kept unless a shard recomputed them. The shard files
    stay (remove ``OUT.h5.shards/`` once you no longer need to rerun a shard).
    """
    from seqdance.inference.embedding_store import merge_embedding_files

    path = Path(path)
    folder = embedding_shards_folder(path)
    manifests = complete_run(folder, "embed")
    run = manifests[0]["run"]
    files = [folder / f"{Shard(int(m['shard']), int(m['n_shards'])).name}.h5" for m in manifests]
    files = [f for f in files if f.is_file()]
    if path.exists():
        _check_model_name(path, run["model_name"])
    sources = ([path] if path.exists() else []) + files
    ids = merged_items(manifests)
    total = merge_embedding_files(path, sources, order=ids, model=run["model_name"], fingerprint=run["model"])
    from seqdance.inference.embedding_store import read_embedding_index

    present = read_embedding_index(path)
    missing = [i for i in ids if not present.get(i, False) and (i not in present or run["options"]["per_residue"])]
    if missing:
        raise ShardError(f"{path}: {len(missing)} record(s) of the run have no embedding from its model "
                         f"(first: {missing[0]!r}); rerun the shard that owns it")
    return total
