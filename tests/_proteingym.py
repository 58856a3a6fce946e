"""ProteinGym's own scripts run as ProteinGym runs them, and ProteinGym-layout copies of the shared dev assays.

``performance_DMS_benchmarks.py`` reads a ``constants.json`` beside itself, which the proteingym wheel does not
ship: the script is copied into a folder with an empty one (no display names, no model details), loaded from
there and its ``main()`` run with ``sys.argv`` set, as ``python performance_DMS_benchmarks.py ...`` would. Its
bootstrap is given fewer resamples through the module attribute its ``main()`` calls, and numpy's global
generator is seeded before it (the script itself never seeds).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import json
import shutil
import sys
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd


def proteingym_folder() -> Path:
    spec = importlib.util.find_spec("proteingym")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def load_script(name: str, folder: Path) -> ModuleType:
    """A copy of ``proteingym/<name>.py`` in ``folder`` (with an empty ``constants.json``), loaded as a module."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(proteingym_folder() / f"{name}.py", folder / f"{name}.py")
    (folder / "constants.json").write_text(json.dumps({"model_details": {}, "model_references": {},
                                                       "clean_names": {}}))
    spec = importlib.util.spec_from_file_location(f"_pg_script_{name}_{abs(hash(folder))}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        spec.loader.exec_module(module)
    return module


def run_main(module: ModuleType, argv: list[str], *, bootstrap_samples: int | None = None, seed: int | None = None
             ) -> str:
    """Run a loaded script's ``main()`` with ``argv``; returns what it printed."""
    if bootstrap_samples is not None:
        original = module.compute_bootstrap_standard_error_functional_categories
        module.compute_bootstrap_standard_error_functional_categories = functools.partial(
            original, number_assay_reshuffle=bootstrap_samples)
    saved_argv, state = sys.argv, np.random.get_state()  # noqa: NPY002 - the script draws from the global one
    sys.argv = ["script", *argv]
    if seed is not None:
        np.random.seed(seed)  # noqa: NPY002
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module.main()
    finally:
        sys.argv = saved_argv
        np.random.set_state(state)  # noqa: NPY002
        if bootstrap_samples is not None:
            module.compute_bootstrap_standard_error_functional_categories = original
    return printed.getvalue()


def mutated(wild_type: str, mutant: str) -> str:
    sequence = list(wild_type)
    for token in mutant.split(":"):
        sequence[int(token[1:-1]) - 1] = token[-1]
    return "".join(sequence)


def dev_reference(shared_data: Path) -> pd.DataFrame:
    """The rows of ProteinGym's DMS_substitutions.csv whose DMS_id is a shared dev assay (38 of 49)."""
    reference = pd.read_csv(shared_data / "proteingym_reference" / "DMS_substitutions.csv")
    dev = shared_data / "proteingym_single_dev" / "mutant"
    return reference[[(dev / f"{d}.csv").is_file() for d in reference["DMS_id"]]].reset_index(drop=True)


def write_proteingym_assay(folder: Path, row: pd.Series, source: pd.DataFrame, *, with_bin: bool = True) -> Path:
    """One assay in ProteinGym's layout (mutant, mutated_sequence, DMS_score[, DMS_score_bin]) as ``DMS_filename``;
    ``source`` has ``mutant`` and ``score`` (the dev layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"mutant": source["mutant"].astype(str),
                          "mutated_sequence": [mutated(row["target_seq"], m) for m in source["mutant"]],
                          "DMS_score": source["score"].astype(float)})
    if with_bin:
        frame["DMS_score_bin"] = (frame["DMS_score"] >= float(row["DMS_binarization_cutoff"])).astype(int)
    path = folder / str(row["DMS_filename"])
    frame.to_csv(path, index=False)
    return path


def synthetic_scores(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Three score columns of known quality: good (noisy DMS_score), random, and ranks with heavy noise and ties."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    out["good"] = out["DMS_score"] + rng.normal(0.0, 1.0, len(out))
    out["random"] = rng.normal(0.0, 1.0, len(out))
    out["tied"] = np.round(out["DMS_score"].rank() / 50 + rng.normal(0.0, 3.0, len(out)))
    return out
