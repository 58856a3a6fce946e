"""Batch runs (``dataset build``, ``features nma``) record only a protein's own problems (a SeqdanceError) as its
failure; anything else is a bug: in this process it propagates with its traceback, in a worker process it fails
that job alone and is reported as a bug (exit status 70)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import require

from seqdance.errors import InputError
from seqdance.features.nma.batch import NmaJob, _run_jobs
from seqdance.store.builder import BuildReport, build_store


@pytest.fixture()
def manifest(shared_data: Path, tmp_path: Path) -> Path:
    structures = sorted((shared_data / "structures" / "bioemu_reference").rglob("*.pdb"))[:2]
    if len(structures) < 2:
        pytest.skip("shared structures absent")
    path = tmp_path / "m.csv"
    pd.DataFrame({"name": ["a", "b"], "source": "proteinflow_pdb",
                  "structure": [str(p) for p in structures]}).to_csv(path, index=False)
    return path


def test_a_bug_in_this_process_propagates_and_a_user_error_is_recorded(manifest: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import seqdance.store.compute as compute

    real = compute._compute

    def failing(kind):
        def run(entry, settings, start):
            if entry.name == "b":
                raise kind("something went wrong")
            return real(entry, settings, start)
        return run

    monkeypatch.setattr(compute, "_compute", failing(InputError))
    report = build_store(manifest, tmp_path / "user.h5", workers=0)
    assert (report.computed, report.failed, report.bugs) == (1, 1, 0)
    assert report.failures[0]["error"] == "InputError: something went wrong"
    monkeypatch.setattr(compute, "_compute", failing(KeyError))
    with pytest.raises(KeyError, match="something went wrong"):
        build_store(manifest, tmp_path / "bug.h5", workers=0)


def test_a_bug_in_a_worker_fails_only_its_job_and_is_reported_as_a_bug(shared_data: Path, tmp_path: Path) -> None:
    structure = str(require(shared_data / "reference" / "nma" / "2g3r.pdb"))
    good = NmaJob(structure, str(tmp_path / "good.npz"))
    broken = NmaJob(structure, str(tmp_path / "broken.npz"), options="not options")  # type: ignore[arg-type]
    outcomes = {Path(o.structure).name + str(o.ok): o for o in _run_jobs([good, broken], workers=2, progress=False)}
    assert outcomes["2g3r.pdbTrue"].n_residues > 0
    bug = outcomes["2g3r.pdbFalse"]
    assert bug.bug and bug.message.startswith("bug in seqdance (please report it): TypeError")
    with pytest.raises(TypeError):  # in this process: the traceback, not a failure record
        _run_jobs([broken], workers=1, progress=False)


def test_dataset_build_exits_70_when_a_worker_hit_a_bug(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import seqdance.store.builder as builder
    from seqdance.cli.main import main

    report = BuildReport(store=tmp_path / "s.h5", total=2, computed=1, failed=1, bugs=1,
                         failures=[{"name": "b", "error": "bug in seqdance (please report it): KeyError: 'x'"}])
    monkeypatch.setattr(builder, "build_store", lambda *args, **kwargs: report)
    assert main(["dataset", "build", "m.csv", "-o", str(tmp_path / "s.h5"), "-q"]) == 70
    err = capsys.readouterr().err
    assert "1 protein failed by an unexpected error" in err and "please report it" in err
