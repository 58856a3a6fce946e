"""seqdance.app: the local web app of ``seqdance serve`` (FastAPI on uvicorn, the ``app`` extra).

The model loads once; one worker thread runs the heavy jobs (prediction, saturation scans, listed variants) from a
bounded queue (:mod:`seqdance.app.jobs`), answers repeated work from a content-keyed cache of bounded size
(:mod:`seqdance.app.cache`), and the page draws results with the report's panels. See docs/browser.md.
"""

from __future__ import annotations

from seqdance.lazy import lazy_exports

_LAZY = {
    "AppSettings": "seqdance.app.settings",
    "create_app": "seqdance.app.server",
    "JobQueue": "seqdance.app.jobs",
    "ResultCache": "seqdance.app.cache",
}

__all__, __getattr__ = lazy_exports(__name__, _LAZY)
