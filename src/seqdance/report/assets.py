"""The page's static parts: its script and style (``assets/``), the panels' renderers, and plotly.js taken from
the installed ``plotly`` Python package (the ``plots`` extra), never from the network."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from seqdance.errors import InputError
from seqdance.extras import require_extra
from seqdance.report.encode import gzip_base64


def asset(name: str) -> str:
    """Text of ``seqdance/report/assets/<name>``."""
    return (resources.files("seqdance.report") / "assets" / name).read_text(encoding="utf-8")


def _plotly_file():
    require_extra("plots", "the report (plotly.js comes with the plotly package)", ("plotly",))
    path = resources.files("plotly") / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise InputError("the installed plotly package has no package_data/plotly.min.js; reinstall it "
                                "(pip install --force-reinstall 'plotly>=5')")
    return path


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js (minified) as the installed plotly package ships it."""
    return _plotly_file().read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def plotly_js_packed() -> str:
    """plotly.js gzip'd and base64-encoded (a third of its size; the page unpacks it)."""
    return gzip_base64(plotly_js())


def plotly_version() -> str:
    found = re.search(r"plotly\.js v(\d+\.\d+\.\d+)", plotly_js()[:400])
    return found.group(1) if found else "unknown version"
