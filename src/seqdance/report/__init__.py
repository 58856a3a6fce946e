"""seqdance.report: one self-contained, interactive HTML page per run (predict, score), readable from disk.

A run's files are read into :class:`RunView` (:mod:`seqdance.report.sources`, one reader per kind of run);
each protein's panels (:mod:`seqdance.report.panels`: residue profiles, pair maps, saturation heat map) turn its
data into compact JSON that the page's JavaScript draws with plotly.js; :mod:`seqdance.report.page` writes the
page with the library and the data inlined. See docs/browser.md.
"""

from __future__ import annotations

from seqdance.lazy import lazy_exports

_LAZY = {
    "ProteinView": "seqdance.report.views",
    "ProteinEntry": "seqdance.report.views",
    "RunView": "seqdance.report.views",
    "ReportOptions": "seqdance.report.views",
    "read_run": "seqdance.report.sources",
    "register_run_reader": "seqdance.report.sources",
    "PANELS": "seqdance.report.panels",
    "register_panel": "seqdance.report.panels",
    "render_report": "seqdance.report.page",
    "write_report": "seqdance.report.page",
    "report_for_run": "seqdance.report.page",
}

__all__, __getattr__ = lazy_exports(__name__, _LAZY)
