"""Shared test fixtures: where the real test data lives."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# benchmarks/ holds the straightforward reference formulations that tests compare against.
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))


def _shared_data_dir() -> Path:
    env = os.environ.get("SEQDANCE_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


SHARED_DATA = _shared_data_dir()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or $SEQDANCE_SHARED_DATA); tests needing it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (set SEQDANCE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: tiny models gain nothing from more, which only contend on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def require(path: Path) -> Path:
    """Skip the calling test when a data file is absent, naming it."""
    if not path.exists():
        pytest.skip(f"test data file absent: {path}")
    return path

from _browser import browser, browser_downloads  # noqa: E402, F401
from _store_fixtures import md_store, small_real_store  # noqa: E402, F401
