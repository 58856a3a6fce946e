"""The heavy work of the web app, run by its one worker: predictions and mutation scores of checked inputs, each
answered from the cache when the same content was computed before; and what a finished job offers (the report's
panel data, NPZ / CSV downloads, a structure coloured by a predicted property).

Values are those of the command line: a sequence is predicted alone with ``seqdance.predict``'s defaults (as
``seqdance predict`` does for a FASTA file of one record), its NPZ holds the same arrays and metadata, the residue
table has the columns of ``residues.csv`` and the score table those of ``seqdance score -o OUT.csv``.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from seqdance.app.cache import ResultCache, content_key
from seqdance.app.inputs import Record, scrub, server_file, shown_name, structure_suffix
from seqdance.app.jobs import Job
from seqdance.app.settings import AppSettings
from seqdance.errors import InputError
from seqdance.inference.prediction import Prediction
from seqdance.report.views import ProteinEntry, ProteinView, RunView, residue_summary, score_summary

#: Variants scored per step of a scan (the page's progress advances step by step).
SCAN_STEPS = 10


@dataclass
class Download:
    label: str
    make: Callable[[], bytes]
    media_type: str


@dataclass
class JobResult:
    """A finished job: its proteins (as the report shows them) and the files it offers, by name."""

    kind: str
    proteins: list[ProteinView]
    files: dict[str, Download] = field(default_factory=dict)

    def run_view(self, model: str, fingerprint: str) -> RunView:
        entries = []
        for view in self.proteins:
            summary: dict[str, Any] = {}
            if view.prediction is not None:
                from seqdance.inference.prediction_io import residue_table

                summary.update(residue_summary(residue_table(view.id, view.sequence or "", dict(view.prediction))))
            if view.scores is not None:
                summary.update(score_summary(view.scores))
            entries.append(ProteinEntry(view.id, summary, (lambda v=view: v)))
        return RunView(self.kind, "this server", entries, model=model, model_fingerprint=fingerprint)


class ModelService:
    """The loaded model, its name and fingerprint, and the cache of its results."""

    def __init__(self, model, *, name: str, device: str, settings: AppSettings) -> None:
        from seqdance.inference.fingerprint import module_fingerprint
        from seqdance.inference.runs import RunOptions

        self.model = model
        self.name = name
        self.device = device
        self.settings = settings
        self.fingerprint = module_fingerprint(model)
        self.value_options = RunOptions().value_options()  # what `seqdance predict` records in each .npz
        self.cache = ResultCache(settings.cache_bytes)

    # --- predictions -----------------------------------------------------------------------------------------

    def _prediction_key(self, sequence: str, pairs: bool) -> str:
        return content_key(kind="prediction", model=self.fingerprint, sequence=sequence, pairs=pairs,
                           options=self.value_options)

    def cached_prediction(self, record: Record, pairs: bool = True) -> Prediction | None:
        """The cached prediction of this sequence (one with pairs also answers a residue-only request)."""
        for with_pairs in (True,) if pairs else (False, True):
            found = self.cache.get(self._prediction_key(record.sequence, with_pairs))
            if found is not None:
                return dataclasses.replace(found, id=record.id)
        return None

    def predict(self, records: Sequence[Record], job: Job | None = None, *, pairs: bool = True) -> list[Prediction]:
        """Each record predicted alone (or taken from the cache), in order."""
        from seqdance.inference.predict import predict

        out: list[Prediction] = []
        for k, record in enumerate(records):
            found = self.cached_prediction(record, pairs)
            if found is None:
                found = predict(self.model, [record.sequence], ids=[record.id], pairs=pairs)[0]
                size = sum(np.asarray(v).nbytes for v in found.values.values()) + 1024
                self.cache.put(self._prediction_key(record.sequence, pairs), found, size)
            out.append(found)
            if job is not None:
                job.report((k + 1) / len(records), f"predicted {k + 1} of {len(records)} sequence(s)")
        return out

    # --- mutation scores -------------------------------------------------------------------------------------

    def score(self, record: Record, mutants: Sequence[str] | None, properties: Sequence[str] | None,
              job: Job | None = None) -> pd.DataFrame:
        """The score table of ``seqdance score`` for listed ``mutants`` (None: saturation) of one wild type."""
        from seqdance.scoring.mutations import check_wild_type, parse_mutants, saturation_mutants
        from seqdance.scoring.proteins import variant_table

        wild_type = check_wild_type(record.sequence, f"sequence {record.id!r}")
        if len(wild_type) > self.settings.max_scan_residues:
            raise InputError(f"sequence {record.id!r} has {len(wild_type):,} residues; this server scores variants of "
                             f"at most {self.settings.max_scan_residues:,} (--max-scan-residues)")
        if mutants is None:
            variants = saturation_mutants(wild_type)
            rows = pd.DataFrame({"mutant": [v.mutant for v in variants]})
        else:
            checked = parse_mutants(mutants, wild_type)
            if checked.invalid:
                first = checked.invalid[0]
                more = f" (and {len(checked.invalid) - 1} more)" if len(checked.invalid) > 1 else ""
                raise InputError(f"variant {first.mutant!r} of {record.id!r}: {first.reason}{more}")
            variants = checked.variants
            rows = pd.DataFrame({"mutant": [v.mutant for v in variants]})
        key = content_key(kind="scores", model=self.fingerprint, wild_type=wild_type,
                          mutants=[v.mutant for v in variants], properties=list(properties or []))
        scores = self.cache.get(key)
        if scores is None:
            scores = self._score(wild_type, variants, properties, job)
            self.cache.put(key, scores, int(scores.memory_usage(deep=True).sum()))
        return variant_table(rows, variants, scores)

    def _score(self, wild_type: str, variants, properties, job: Job | None) -> pd.DataFrame:
        """The columns of :func:`seqdance.scoring.scorer.score_variants` (dynamics only), computed in steps so
        that the page can show progress."""
        from seqdance.scoring.dynamics_score import score_dynamics
        from seqdance.scoring.scorer import SCORE_COLUMN, check_finite_scores, combined_scores

        step = max(1, math.ceil(len(variants) / SCAN_STEPS))
        parts = []
        for lo in range(0, len(variants), step):
            parts.append(score_dynamics(self.model, wild_type, variants[lo:lo + step], properties=properties))
            if job is not None:
                done = min(len(variants), lo + step)
                job.report(done / len(variants), f"scored {done:,} of {len(variants):,} variant(s)")
        changes = pd.concat(parts, ignore_index=True)
        check_finite_scores(changes, variants, "the dynamics model")
        table = pd.DataFrame({SCORE_COLUMN: combined_scores(changes, variants)})
        for column in changes.columns:
            table[column] = changes[column].to_numpy()
        return table

    # --- what a job offers -----------------------------------------------------------------------------------

    def npz_bytes(self, prediction: Prediction) -> bytes:
        """The ``.npz`` that ``seqdance predict`` writes for this prediction."""
        from seqdance.inference.prediction_io import prediction_arrays
        from seqdance.inference.runs import prediction_metadata

        buffer = io.BytesIO()
        np.savez(buffer, **prediction_arrays(prediction, model=self.name, metadata=prediction_metadata(
            prediction.sequence, self.fingerprint, self.value_options)))
        return buffer.getvalue()

    def result(self, kind: str, predictions: Sequence[Prediction], scores: dict[str, pd.DataFrame]) -> JobResult:
        from seqdance.inference.prediction_io import RESIDUE_TABLE_COLUMNS, residue_table, unique_stems

        views = [ProteinView(p.id, p.sequence, p.chain_lengths, prediction=p, scores=scores.get(p.id))
                 for p in predictions]
        result = JobResult(kind, views)
        stems = unique_stems(p.id for p in predictions)
        for p in predictions:
            result.files[f"{stems[p.id]}.npz"] = Download(f"{p.id}: predictions (.npz)",
                                                         (lambda p=p: self.npz_bytes(p)), "application/octet-stream")

        def residues() -> bytes:
            text = io.StringIO()
            text.write(",".join(RESIDUE_TABLE_COLUMNS) + "\n")
            for p in predictions:
                residue_table(p.id, p.sequence, dict(p)).to_csv(text, header=False, index=False, float_format="%.6g")
            return text.getvalue().encode("utf-8")

        result.files["residues.csv"] = Download("per-residue table (residues.csv)", residues, "text/csv")
        for seq_id, table in scores.items():
            result.files[f"{stems[seq_id]}.scores.csv"] = Download(
                f"{seq_id}: mutation scores (.csv)", (lambda t=table: t.to_csv(index=False).encode("utf-8")),
                "text/csv")
        return result

    def map_structure(self, result: JobResult, protein_id: str, property_name: str, data: bytes,
                      upload_name: str | None) -> list[str]:
        """Colour an uploaded structure by a predicted property (``seqdance map``); adds the PDB/mmCIF and the
        ChimeraX attribute file to the job's downloads and returns their names."""
        from seqdance.display.structure_map import MAPPABLE_PROPERTIES, map_property
        from seqdance.inference.prediction_io import safe_stem

        view = next((v for v in result.proteins if v.id == protein_id), None)
        if view is None or view.prediction is None:
            raise InputError(f"this job has no prediction of {protein_id!r}")
        if property_name not in MAPPABLE_PROPERTIES:
            raise InputError(f"unknown property name {property_name!r} for a structure; choose one of "
                             f"{', '.join(MAPPABLE_PROPERTIES)}")
        if len(data) > self.settings.max_upload_bytes:
            raise InputError(f"{shown_name(upload_name, 'the structure')}: {len(data):,} bytes; this server takes at "
                             f"most {self.settings.max_upload_bytes:,} per upload (--max-upload-mb)")
        suffix = structure_suffix(upload_name)
        shown = shown_name(upload_name, "the structure")
        out_suffix = ".cif" if "cif" in suffix else ".pdb"
        with server_file(data, suffix) as path:
            output = path.with_name("coloured" + out_suffix)
            try:
                mapped = map_property(np.asarray(view.prediction[property_name], dtype=np.float64), view.sequence,
                                      view.chain_lengths, path, output, property_name=property_name)
            except InputError as exc:
                raise InputError(scrub(str(exc), path, shown)) from None
            structure = output.read_bytes()
            attributes = mapped.attribute_file.read_bytes()
        stem = f"{safe_stem(protein_id)}.{property_name}"
        names = [f"{stem}{out_suffix}", f"{stem}.defattr"]
        result.files[names[0]] = Download(f"{protein_id}: structure with {property_name} as B-factors",
                                          (lambda: structure), "chemical/x-pdb" if out_suffix == ".pdb"
                                          else "chemical/x-cif")
        result.files[names[1]] = Download(f"{protein_id}: ChimeraX attribute file ({property_name})",
                                          (lambda: attributes), "text/plain")
        return names
