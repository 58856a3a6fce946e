"""benchmarks/gpu_suite.sh is ready for a GPU: it skips cleanly without CUDA and its dry run executes every section."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO_ROOT, SHARED_DATA

SCRIPT = REPO_ROOT / "benchmarks" / "gpu_suite.sh"
SECTIONS = ("prediction", "scoring", "training", "SASA")


def _run(*args: str, timeout: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable, SEQDANCE_SHARED_DATA=str(SHARED_DATA))
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_script_parses_and_rejects_unknown_options():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    bad = _run("--fast", timeout=60)
    assert bad.returncode == 2 and "usage" in bad.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the suite runs for real (minutes)")
def test_without_cuda_every_section_is_skipped_with_a_reason():
    done = _run(timeout=120)
    assert done.returncode == 0, done.stderr
    for name in SECTIONS:
        assert f"{name}: skipped (no CUDA)" in done.stdout
    assert "CUDA is not available" in done.stdout


@pytest.mark.slow
def test_dry_run_executes_every_section_on_cpu():
    done = _run("--dry-run", timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in SECTIONS:
        assert f"{name}: ok" in done.stdout
    assert "seqdance, residue only" in done.stdout  # prediction table
    assert "(c) seqdance, sasa_mean + psi" in done.stdout  # scoring table
    assert "probe loss" in done.stdout  # training table
    assert "bit-identical to the CPU kernel: True" in done.stdout or "skipped:" in done.stdout
