"""Public names of a package imported on first use, so that ``import seqdance.<package>`` stays light.

Each package ``__init__`` maps its public names to the modules that define them and hands the map to
:func:`lazy_exports`, which gives back ``__all__`` and the module-level ``__getattr__`` (PEP 562). A name
whose module needs an optional package that is not installed raises
:class:`~seqdance.extras.MissingExtraError`, naming the extra.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from seqdance.extras import MissingExtraError, from_module_not_found, missing_extra_error


def lazy_exports(package: str, names: Mapping[str, str]) -> tuple[list[str], Callable[[str], Any]]:
    """(``__all__``, ``__getattr__``) for ``package`` whose public ``names`` map to their defining modules."""
    table = dict(names)

    def __getattr__(name: str) -> Any:
        if name in table:
            try:
                module = importlib.import_module(table[name])
            except MissingExtraError as exc:  # raised by the module's package: name the public name asked for
                raise missing_extra_error(f"{package}.{name}", exc.extra, exc.modules) from exc
            except ModuleNotFoundError as exc:
                missing = from_module_not_found(exc, f"{package}.{name}")
                if missing is None:
                    raise
                raise missing from exc
            return getattr(module, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return sorted(table), __getattr__
