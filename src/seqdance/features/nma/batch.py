"""Normal-mode features of many structures, resumably, in parallel worker processes: :func:`run_nma_batch`
(what ``seqdance features nma`` runs).

One ``OUTDIR/<stem>.npz`` per structure, written atomically; each records the fingerprint of its input file and
of the options that shape its values (:meth:`~seqdance.features.options.NmaOptions.fingerprint`). A re-run skips
a structure only when its output is intact and records the same input content and options: a changed structure
file or option, a truncated or damaged output is recomputed. A structure that cannot give features (a
:class:`~seqdance.errors.SeqdanceError`: unreadable, too small, disconnected, ...) is reported and listed in
``OUTDIR/nma_failures.tsv`` without stopping the others. Any other exception is a bug: in this process it stops
the batch with its traceback; in a worker process it fails that structure only, reported as a bug
(:attr:`NmaOutcome.bug`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from seqdance.errors import InputError, SeqdanceError
from seqdance.features.inputs.spec import MissingFileError
from seqdance.features.options import NmaOptions

log = logging.getLogger(__name__)

#: The list of failed structures a batch leaves in its output folder (none: the file is removed).
FAILURE_LOG = "nma_failures.tsv"


@dataclass(frozen=True)
class NmaJob:
    """One structure to compute (picklable: sent to a worker process)."""

    structure: str
    output: str
    options: NmaOptions = field(default_factory=NmaOptions)
    compress: bool = False
    fingerprint: str = ""  # JSON: recorded in the output
    csv: bool = False  # also write the per-residue table beside the output


@dataclass(frozen=True)
class NmaOutcome:
    """What became of one structure."""

    structure: str
    ok: bool
    message: str
    n_residues: int = 0
    seconds: float = 0.0
    #: Failed by an unexpected exception in a worker process: a bug in seqdance, not a problem of the structure.
    bug: bool = False


@dataclass
class NmaBatchReport:
    """What a batch did."""

    out_dir: Path
    total: int
    skipped: int
    outcomes: list[NmaOutcome]
    failure_log: Path | None

    @property
    def failures(self) -> list[NmaOutcome]:
        return sorted((o for o in self.outcomes if not o.ok), key=lambda o: o.structure)

    @property
    def computed(self) -> int:
        return sum(o.ok for o in self.outcomes)

    @property
    def bugs(self) -> list[NmaOutcome]:
        return [o for o in self.failures if o.bug]

    def summary(self) -> str:
        return (f"nma: {self.computed} computed, {self.skipped} already done, {len(self.failures)} failed "
                f"-> {self.out_dir}" + (f" (failures listed in {self.failure_log})" if self.failure_log else ""))


def collect_structures(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, plus the structure files inside given directories (sorted); missing paths raise."""
    from seqdance.features.inputs.structures import is_structure_file

    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and is_structure_file(p))
            if not inside:
                raise InputError(f"directory {path} contains no structure files (.pdb/.cif/.ent, optionally .gz)")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise MissingFileError(f"structure file not found: {path}")
    return list(dict.fromkeys(found))


def plan_outputs(structures: list[Path], out_dir: Path) -> dict[Path, Path]:
    """Output path per structure; two inputs with the same stem raise (they would overwrite each other)."""
    from seqdance.features.inputs.structures import structure_stem

    outputs: dict[Path, Path] = {}
    owner: dict[str, Path] = {}
    for path in structures:
        stem = structure_stem(path)
        if stem.lower() in owner:  # case-insensitive file systems (macOS, Windows) would merge them too
            raise InputError(f"{owner[stem.lower()]} and {path} would both write {out_dir / (stem + '.npz')}; "
                             "rename one")
        owner[stem.lower()] = path
        outputs[path] = out_dir / f"{stem}.npz"
    return outputs


def process_structure(job: NmaJob) -> NmaOutcome:
    """Compute and save the features of one structure. The structure's own problems (a
    :class:`~seqdance.errors.SeqdanceError`) and a failed write become a failed outcome; anything else is a bug
    and propagates."""
    from seqdance.features.feature_files import save_nma_features, write_residue_csv
    from seqdance.features.nma.extract import extract_nma

    start = time.perf_counter()
    try:
        features = extract_nma(job.structure, job.options)
    except SeqdanceError as exc:
        message = str(exc) if str(exc).startswith(job.structure) else f"{job.structure}: {exc}"
        return NmaOutcome(job.structure, False, message, seconds=time.perf_counter() - start)
    try:
        save_nma_features(job.output, features, compress=job.compress,
                          fingerprint=json.loads(job.fingerprint) if job.fingerprint else None)
        if job.csv:
            write_residue_csv(Path(job.output).with_suffix(".csv"), features)
    except OSError as exc:  # the disk (full, read-only), not the structure: this one fails, the next run retries
        return NmaOutcome(job.structure, False, f"cannot write {job.output}: {exc}",
                          seconds=time.perf_counter() - start)
    n = len(features["nma_res1"])
    skipped = len(features["skipped_residues"])
    note = f"{n} residues" + (f", {skipped} without CA skipped" if skipped else "")
    return NmaOutcome(job.structure, True, note, n, time.perf_counter() - start)


def _crashed(job: NmaJob, message: str) -> NmaOutcome:
    """The outcome of a job the engine reports failed: its worker died, or it raised (a bug)."""
    from seqdance.parallel import WORKER_DIED

    if message == WORKER_DIED:
        return NmaOutcome(job.structure, False, f"worker failed: {message}")
    return NmaOutcome(job.structure, False, f"bug in seqdance (please report it): {message}", bug=True)


def _write_failure_log(out_dir: Path, failures: list[NmaOutcome]) -> Path | None:
    from seqdance.io_utils import atomic_path

    path = out_dir / FAILURE_LOG
    if not failures:
        path.unlink(missing_ok=True)
        return None
    with atomic_path(path) as tmp:
        lines = ["structure\terror"] + [f"{f.structure}\t{' '.join(f.message.split())}" for f in failures]
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_nma_batch(
    structures: Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    options: NmaOptions | None = None,
    *,
    workers: int | None = None,
    compress: bool = False,
    csv: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> NmaBatchReport:
    """Normal-mode features of every structure (files, or folders of structure files) into ``out_dir``.

    Up-to-date outputs are skipped unless ``overwrite``; ``workers`` processes (default: CPUs; 1 runs in this
    process) compute the rest, largest first; ``compress`` zips the ``.npz`` files; ``csv`` adds the per-residue
    table beside each. Failures are listed in ``out_dir/nma_failures.tsv`` (module docstring).
    """
    from seqdance.features.feature_files import is_complete_nma_file, is_up_to_date

    options = options or NmaOptions()
    if workers is not None and workers < 1:
        raise InputError(f"workers must be at least 1, got {workers}")
    found = collect_structures(structures)
    out = Path(out_dir)
    outputs = plan_outputs(found, out)
    out.mkdir(parents=True, exist_ok=True)
    fingerprints = {s: options.fingerprint(s) for s in found}
    todo = [s for s in found if overwrite or not is_complete_nma_file(outputs[s])
            or not is_up_to_date(outputs[s], fingerprints[s])
            or (csv and not outputs[s].with_suffix(".csv").exists())]
    todo.sort(key=lambda p: p.stat().st_size, reverse=True)  # large first: better load balance
    jobs = [NmaJob(str(s), str(outputs[s]), options, compress, json.dumps(fingerprints[s]), csv) for s in todo]
    n_workers = min(workers or os.cpu_count() or 1, max(1, len(jobs)))
    outcomes = _run_jobs(jobs, n_workers, progress) if jobs else []
    failures = sorted((o for o in outcomes if not o.ok), key=lambda o: o.structure)
    return NmaBatchReport(out, len(found), len(found) - len(todo), outcomes, _write_failure_log(out, failures))


def _run_jobs(jobs: list[NmaJob], workers: int, progress: bool) -> list[NmaOutcome]:
    """Every job through the shared engine: ``workers`` 1 runs in this process (a bug propagates), more use
    worker processes (one dead worker fails only its own structure; each worker's BLAS is single-threaded)."""
    from tqdm.auto import tqdm

    from seqdance.parallel import run_jobs

    outcomes: list[NmaOutcome] = []
    with tqdm(total=len(jobs), unit="structure", desc="features nma", disable=not progress) as bar:
        for _, outcome in run_jobs(process_structure, jobs, workers=0 if workers <= 1 else workers,
                                   on_failure=_crashed, raise_in_process=True):
            outcomes.append(outcome)
            bar.update()
    return outcomes
