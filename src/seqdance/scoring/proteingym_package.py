"""ProteinGym's own code, from the ``proteingym`` package on PyPI (tested with version 1.3).

seqdance computes ProteinGym's metrics with ProteinGym's functions instead of restating them:
``calc_ndcg``, ``calc_toprecall``, ``standardization`` and ``compute_bootstrap_standard_error_functional_categories``
of ``proteingym/performance_DMS_benchmarks.py``. What that file does only inside its ``main()`` (the per-assay loop,
the aggregation, the tables) cannot be imported and is restated in :mod:`seqdance.scoring.proteingym_performance`,
tested against running that ``main()`` on the same files.

**How it is imported.** ``import proteingym`` fails with proteingym 1.3: its ``__init__.py`` runs
``from proteingym import utils``, a module the wheel does not ship. The metric module itself needs only pandas,
numpy, scipy and scikit-learn (which the wheel does not declare; the ``proteingym`` extra installs it). So the
package is located with :func:`importlib.util.find_spec` (which does not run its ``__init__``) and
``performance_DMS_benchmarks.py`` is executed from its file under a private module name. Its module-level
``warnings.simplefilter("ignore", FutureWarning)`` is confined to the load by ``warnings.catch_warnings``, so
importing it changes no warning filter of the caller's.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import warnings
from pathlib import Path
from types import ModuleType

from seqdance.errors import SeqdanceError
from seqdance.extras import require_extra

#: The version of the ``proteingym`` package these functions were tested with.
TESTED_VERSION = "1.3"
#: The file of the package that holds the zero-shot DMS metrics.
PERFORMANCE_FILE = "performance_DMS_benchmarks.py"
#: Names seqdance takes from that file.
USED_FUNCTIONS: tuple[str, ...] = (
    "calc_ndcg", "calc_toprecall", "standardization", "compute_bootstrap_standard_error_functional_categories",
)


class ProteinGymPackageError(SeqdanceError, ImportError):
    """The installed ``proteingym`` package does not hold the functions seqdance uses."""


def package_folder() -> Path:
    """The folder of the installed ``proteingym`` package (its ``__init__`` is not run)."""
    require_extra("proteingym", "ProteinGym's metrics")
    spec = importlib.util.find_spec("proteingym")
    if spec is None or not spec.submodule_search_locations:
        raise ProteinGymPackageError("the proteingym package is installed but is not a package folder")
    return Path(next(iter(spec.submodule_search_locations)))


def version() -> str:
    """The installed ``proteingym`` version (``"unknown"`` when its metadata is absent)."""
    try:
        return importlib.metadata.version("proteingym")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def performance_module() -> ModuleType:
    """``proteingym/performance_DMS_benchmarks.py``, loaded from its file (see the module docstring)."""
    path = package_folder() / PERFORMANCE_FILE
    if not path.is_file():
        raise ProteinGymPackageError(f"proteingym {version()} has no {PERFORMANCE_FILE} (seqdance was tested with "
                                     f"{TESTED_VERSION}): pip install \"proteingym=={TESTED_VERSION}\"")
    spec = importlib.util.spec_from_file_location("seqdance._proteingym_performance_DMS_benchmarks", path)
    if spec is None or spec.loader is None:
        raise ProteinGymPackageError(f"{path}: cannot be loaded as a module")
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        spec.loader.exec_module(module)
    absent = [name for name in USED_FUNCTIONS if not callable(getattr(module, name, None))]
    if absent:
        raise ProteinGymPackageError(f"{path} lacks {', '.join(absent)} (proteingym {version()}; seqdance was "
                                     f"tested with {TESTED_VERSION})")
    return module
