"""``seqdance features nma``: normal-mode features of many structures, in parallel worker processes.

One ``OUTDIR/<stem>.npz`` per structure, written atomically; each records the SHA-256 of its input file and the
options that shape its values. A re-run skips a structure only when its output is intact and records the same
input content and options: a changed structure file or option, a truncated or damaged output is recomputed. A
structure that fails is reported (and listed in ``OUTDIR/nma_failures.tsv``) without stopping the others.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from seqdance.cli.options import int_at_least
from seqdance.errors import InputError
from seqdance.features.options import DISCONNECTED, ZERO_MODES

FAILURE_LOG = "nma_failures.tsv"


@dataclass(frozen=True)
class NmaJob:
    structure: str
    output: str
    chains: str | None
    model: int
    zero_modes: str
    disconnected: str
    float32: bool
    compress: bool
    fingerprint: str = ""  # JSON (seqdance.features.feature_files): recorded in the output
    csv: bool = False  # also write the per-residue table beside the output


@dataclass(frozen=True)
class NmaOutcome:
    structure: str
    ok: bool
    message: str
    n_residues: int = 0
    seconds: float = 0.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "nma",
        help="normal-mode features (GNM fluctuations, ANM correlations) from PDB/mmCIF structures",
        description=(
            "Compute nma_res1..3 (GNM fluctuations) and nma_pair1..3 (ANM correlations) in the low / mid / high "
            "frequency ranges for each structure (docs/features_nma.md). Writes OUTDIR/<stem>.npz per structure; existing "
            "complete outputs are skipped (resumable)."
        ),
    )
    parser.add_argument(
        "structures", nargs="+", metavar="STRUCTURE",
        help="PDB/mmCIF files (plain or .gz), or directories whose structure files are all processed",
    )
    parser.add_argument("-o", "--out-dir", required=True, type=Path, metavar="OUTDIR", help="output folder")
    parser.add_argument("--chains", default=None, help="comma-separated chain ids to use, e.g. A,B (default: all)")
    parser.add_argument("--model", type=int_at_least(0), default=0, help="model index for multi-model files (0-based)")
    parser.add_argument(
        "--workers", type=int_at_least(1), default=None,
        help="parallel worker processes (default: number of CPUs; 1 runs in this process)",
    )
    parser.add_argument(
        "--zero-modes", choices=ZERO_MODES, default="rigid",
        help="'rigid': remove exactly the rigid-body modes (default); 'reference': drop eigenvalues < 1e-6 "
        "like ProDy/the reference (also drops genuine soft modes of floppy models)",
    )
    parser.add_argument(
        "--disconnected", choices=DISCONNECTED, default="error",
        help="structures whose residues fall into separate pieces (no Cα pair within 15 Å between them): fail "
        "(default) or analyse each piece on its own, with zero correlation between pieces",
    )
    parser.add_argument("--float32", action="store_true", help="store the features as float32 (half the size)")
    parser.add_argument("--compress", action="store_true", help="zip-compress the .npz outputs")
    parser.add_argument("--csv", action="store_true",
                        help="also write OUTDIR/<stem>.csv per structure (nma_res1..3 per residue)")
    parser.add_argument("--overwrite", action="store_true",
                        help="recompute structures whose output is up to date (same file contents and options)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def collect_structures(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, plus the structure files inside given directories (sorted); missing paths raise."""
    from seqdance.features.structure import is_structure_file

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
            raise FileNotFoundError(f"structure file not found: {path}")
    return list(dict.fromkeys(found))


def plan_outputs(structures: list[Path], out_dir: Path) -> dict[Path, Path]:
    """Output path per structure; two inputs with the same stem raise (they would overwrite each other)."""
    from seqdance.features.structure import structure_stem

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
    """Compute and save the features of one structure; every failure becomes an outcome, never an exception."""
    import json

    import numpy as np

    from seqdance.features.feature_files import write_residue_csv
    from seqdance.features.nma import extract_nma, save_nma_features

    start = time.perf_counter()
    try:
        features = extract_nma(
            job.structure, chains=job.chains, model=job.model,
            zero_modes=job.zero_modes, disconnected=job.disconnected,  # type: ignore[arg-type]
        )
        save_nma_features(
            job.output, features, dtype=np.float32 if job.float32 else np.float64, compress=job.compress,
            fingerprint=json.loads(job.fingerprint) if job.fingerprint else None,
        )
        if job.csv:
            write_residue_csv(Path(job.output).with_suffix(".csv"), features)
    except (ValueError, OSError) as exc:
        return NmaOutcome(job.structure, False, str(exc), seconds=time.perf_counter() - start)
    except (MemoryError, np.linalg.LinAlgError, RuntimeError) as exc:
        return NmaOutcome(job.structure, False, f"{job.structure}: {type(exc).__name__}: {exc}")
    n = len(features["nma_res1"])  # type: ignore[arg-type]
    skipped = len(features["skipped_residues"])  # type: ignore[arg-type]
    note = f"{n} residues" + (f", {skipped} without CA skipped" if skipped else "")
    return NmaOutcome(job.structure, True, note, n, time.perf_counter() - start)


def _crashed(job: NmaJob, message: str) -> NmaOutcome:
    return NmaOutcome(job.structure, False, f"worker failed: {message}")


def _run_jobs(jobs: list[NmaJob], workers: int, progress: bool) -> list[NmaOutcome]:
    """Every job through the shared engine: ``workers`` 1 runs in this process, more use worker processes
    (one dead worker fails only its own structure; each worker's BLAS is single-threaded by default)."""
    from tqdm.auto import tqdm

    from seqdance.parallel import run_jobs

    outcomes: list[NmaOutcome] = []
    with tqdm(total=len(jobs), unit="structure", desc="features nma", disable=not progress) as bar:
        for _, outcome in run_jobs(process_structure, jobs, workers=0 if workers <= 1 else workers,
                                   on_failure=_crashed):
            outcomes.append(outcome)
            bar.update()
    return outcomes


def _write_failure_log(out_dir: Path, failures: list[NmaOutcome]) -> Path | None:
    from seqdance.io_utils import atomic_path

    log = out_dir / FAILURE_LOG
    if not failures:
        log.unlink(missing_ok=True)
        return None
    with atomic_path(log) as tmp:
        lines = ["structure\terror"] + [f"{f.structure}\t{' '.join(f.message.split())}" for f in failures]
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return log


def nma_options(args: argparse.Namespace) -> dict:
    """The options that change the computed values (what each output's fingerprint records)."""
    return {"chains": args.chains, "model": args.model, "zero_modes": args.zero_modes,
            "disconnected": args.disconnected, "float32": args.float32}


def run(args: argparse.Namespace) -> int:
    import json

    from seqdance.features.feature_files import feature_fingerprint, is_up_to_date
    from seqdance.features.nma import is_complete_nma_file

    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    if args.model < 0:
        raise InputError(f"--model must be 0 or more, got {args.model}")
    structures = collect_structures(args.structures)
    outputs = plan_outputs(structures, args.out_dir)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    fingerprints = {s: feature_fingerprint("nma", [("structure", s)], nma_options(args)) for s in structures}
    todo = [s for s in structures if args.overwrite or not is_complete_nma_file(outputs[s])
            or not is_up_to_date(outputs[s], fingerprints[s])
            or (args.csv and not outputs[s].with_suffix(".csv").exists())]
    todo.sort(key=lambda p: p.stat().st_size, reverse=True)  # large first: better load balance
    jobs = [
        NmaJob(str(s), str(outputs[s]), args.chains, args.model, args.zero_modes, args.disconnected,
               args.float32, args.compress, json.dumps(fingerprints[s]), args.csv)
        for s in todo
    ]
    workers = min(args.workers or os.cpu_count() or 1, max(1, len(jobs)))
    outcomes = _run_jobs(jobs, workers, progress=not args.quiet) if jobs else []
    failures = sorted((o for o in outcomes if not o.ok), key=lambda o: o.structure)
    for failure in failures:
        text = failure.message if failure.message.startswith(failure.structure) else (
            f"{failure.structure}: {failure.message}")
        print(f"FAILED {text}", file=sys.stderr)
    log = _write_failure_log(args.out_dir, failures)
    done = len(outcomes) - len(failures)
    print(
        f"nma: {done} computed, {len(structures) - len(todo)} already done, {len(failures)} failed "
        f"-> {args.out_dir}" + (f" (failures listed in {log})" if log else ""),
        file=sys.stderr,
    )
    return 1 if failures else 0
