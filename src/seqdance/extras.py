"""Optional dependencies: which ``pip install "seqdance[EXTRA]"`` provides which package, and the error that says so.

The core install runs ``load_model``, ``predict``, ``embed``, ``score`` and the dataset and training commands;
features from trajectories and structures, structure colouring, probes and pictures need an extra. Those
packages are imported inside the functions that use them, never at module level on the core path, so a missing
one surfaces as a ``ModuleNotFoundError`` at the moment it is needed. This module turns that into a
:class:`MissingExtraError` (a :class:`~seqdance.errors.SeqdanceError`) whose one line names the command and the
install command; ``seqdance.cli.main`` checks a command's extras before it starts (:func:`command_requirements`),
and ``seqdance.lazy`` translates the public names of packages (``from seqdance.features import extract_md``).

The table below and ``[project.optional-dependencies]`` of ``pyproject.toml`` describe the same extras;
``tests/test_lean_install.py`` keeps them in step.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Iterable, Sequence

from seqdance.errors import SeqdanceError

#: Extra -> the importable top-level modules it provides (what seqdance imports, not distribution names).
EXTRAS: dict[str, tuple[str, ...]] = {
    "md": ("mdtraj", "numba", "gemmi"),  # features md (gemmi: mmCIF ensembles), dataset build of MD entries
    "nma": ("gemmi",),  # features nma, dataset build of NMA entries
    "structure": ("gemmi",),  # seqdance map: reading the PDB/mmCIF to colour
    "analysis": ("sklearn", "matplotlib"),  # probe (scikit-learn and its figures), analyze attention (heat maps)
    "plots": ("matplotlib", "plotly"),  # predict --plots, score --heatmap, evaluation figures; report, --report
    "app": ("fastapi", "uvicorn", "multipart", "orjson", "plotly", "gemmi"),  # seqdance serve
    "dask": ("dask", "distributed"),  # --scheduler: a Dask cluster
    "tpr": ("MDAnalysis",),  # GROMACS .tpr topologies
    "hydrogens": ("openmm",),  # --add-hydrogens
    "backmap": ("pypulchra",),  # --backmap pulchra (PULCHRA's C++ code)
    "tensorboard": ("tensorboard",),  # train with tensorboard: true
    # ProteinGym's own metric and bootstrap functions (benchmark-dms --reference-file tables, compare-dms); its
    # performance module needs scikit-learn, which the proteingym wheel does not declare
    "proteingym": ("proteingym", "sklearn"),
}

#: The extra named for a missing module when the command does not name its own.
MODULE_EXTRA: dict[str, str] = {
    "mdtraj": "md",
    "numba": "md",
    "gemmi": "nma",
    "sklearn": "analysis",
    "matplotlib": "plots",
    "plotly": "plots",
    "fastapi": "app",
    "uvicorn": "app",
    "multipart": "app",
    "orjson": "app",
    "distributed": "dask",
    "dask": "dask",
    "MDAnalysis": "tpr",
    "openmm": "hydrogens",
    "pypulchra": "backmap",
    "pulchra": "all",  # the pure-Python PULCHRA port, part of [all] only
    "tensorboard": "tensorboard",
    "proteingym": "proteingym",
}

#: Every optional top-level module seqdance may import (none of them is imported by the core path).
OPTIONAL_MODULES: frozenset[str] = frozenset(MODULE_EXTRA)

#: Commands (``seqdance A B`` as "A B") -> (extra, modules every run of it imports). Checked before the command
#: starts, so that a run stops at once instead of after its computation.
COMMAND_EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "features md": ("md", ("mdtraj", "numba")),
    "features nma": ("nma", ("gemmi",)),
    "map": ("structure", ("gemmi",)),
    "probe": ("analysis", ("sklearn", "matplotlib")),
    "analyze attention": ("analysis", ("matplotlib",)),
    "report": ("plots", ("plotly",)),
    "serve": ("app", ("fastapi", "uvicorn", "multipart", "orjson", "plotly")),
    "compare-dms": ("proteingym", ("proteingym", "sklearn")),
}

#: Options (argparse destinations) that ask for pictures -> the extra drawing them needs.
OPTION_EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "plots": ("plots", ("matplotlib",)),  # predict --plots
    "heatmap": ("plots", ("matplotlib",)),  # score --heatmap OUT.png
    "report": ("plots", ("plotly",)),  # predict/score/compare --report
    "structure": ("structure", ("gemmi",)),  # compare --structure (map's own --structure: its command needs gemmi)
}


class MissingExtraError(SeqdanceError, ModuleNotFoundError):
    """An optional package is not installed; the message names what needs it and the ``pip install`` to run.

    Also a ``ModuleNotFoundError`` (so ``except ImportError`` still catches it); ``extra`` and ``modules`` say what
    is missing.
    """

    def __init__(self, message: str, *, extra: str, modules: Sequence[str]) -> None:
        ModuleNotFoundError.__init__(self, message, name=modules[0] if modules else None)
        self.extra = extra
        self.modules = tuple(modules)

    def __str__(self) -> str:
        return str(self.msg)


def install_hint(extra: str) -> str:
    """The command that installs an extra into the current environment."""
    return f'pip install "seqdance[{extra}]"'


def is_installed(module: str) -> bool:
    """Whether a top-level module can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or half-removed installation counts as absent
        return False


def missing_modules(modules: Iterable[str]) -> list[str]:
    """The modules of ``modules`` that are not installed, in order."""
    return [m for m in dict.fromkeys(modules) if not is_installed(m)]


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def missing_extra_error(what: str, extra: str, modules: Sequence[str]) -> MissingExtraError:
    """The one-line error for ``what`` (a command or function) needing ``modules`` of ``extra``."""
    packages = _and(list(modules))
    verb = "is" if len(modules) == 1 else "are"
    return MissingExtraError(f"{what} needs {packages}, which {verb} not installed: {install_hint(extra)}",
                             extra=extra, modules=modules)


def require_extra(extra: str, what: str, modules: Sequence[str] | None = None) -> None:
    """Raise :class:`MissingExtraError` unless the ``modules`` (default: every module of ``extra``) are installed."""
    wanted = EXTRAS[extra] if modules is None else tuple(modules)
    absent = missing_modules(wanted)
    if absent:
        raise missing_extra_error(what, extra, absent)


def from_module_not_found(exc: ModuleNotFoundError, what: str, extra: str | None = None) -> MissingExtraError | None:
    """The :class:`MissingExtraError` for a ``ModuleNotFoundError`` of an optional package, else ``None`` (a module
    seqdance does not declare as optional is missing: a broken installation or a bug, reported as such).

    ``extra``: the extra to name when it provides the missing module (a command's own extra), else the module's.
    """
    if isinstance(exc, MissingExtraError):
        return exc
    top = (exc.name or "").partition(".")[0]
    if top not in OPTIONAL_MODULES:
        return None
    chosen = extra if extra is not None and top in EXTRAS.get(extra, ()) else MODULE_EXTRA[top]
    return missing_extra_error(what, chosen, [top])


def command_name(args: argparse.Namespace) -> str:
    """``"features md"`` for ``seqdance features md ...`` (sub-commands record their name in ``<command>_command``)."""
    command = str(getattr(args, "command", "") or "")
    sub = getattr(args, f"{command}_command", None) if command else None
    return f"{command} {sub}" if sub else command


def command_requirements(args: argparse.Namespace) -> list[tuple[str, tuple[str, ...]]]:
    """(extra, modules) a parsed command line needs: its command's, and those of the picture options it sets."""
    needs = []
    command = command_name(args)
    if command in COMMAND_EXTRAS:
        needs.append(COMMAND_EXTRAS[command])
    for dest, need in OPTION_EXTRAS.items():
        if getattr(args, dest, None):
            needs.append(need)
    return needs


def check_command(args: argparse.Namespace) -> None:
    """Raise :class:`MissingExtraError` (naming the command and the extra) when a package the command line needs is
    not installed; called before the command runs."""
    command = command_name(args) or "this command"
    for extra, modules in command_requirements(args):
        absent = missing_modules(modules)
        if absent:
            option = next((f" --{d.replace('_', '-')}" for d, need in OPTION_EXTRAS.items()
                           if need == (extra, modules) and getattr(args, d, None)), "")
            raise missing_extra_error(f"{command}{option}", extra, absent)
