"""The report page: one HTML file holding plotly.js, the page's script, and each protein's panel data.

Everything is inlined (no network, no file beside it): plotly.js and each protein's JSON are gzip'd and
base64-encoded, and the browser unpacks them (``DecompressionStream``), which keeps a 10-protein report of
~300 residues near 3 MB. The header names the run, the model and its fingerprint, the seqdance version, the date
and the command that wrote the page.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqdance.errors import InputError
from seqdance.io_utils import atomic_path
from seqdance.report import compare as _compare  # noqa: F401 - registers the compare run reader and variant panel
from seqdance.report.assets import asset, plotly_js_packed, plotly_version
from seqdance.report.encode import gzip_base64
from seqdance.report.panels import PANELS, panel_script, protein_payload
from seqdance.report.sources import read_run
from seqdance.report.views import ProteinView, ReportOptions, RunView

#: Page contents by default (a frozen value, shared).
DEFAULT_OPTIONS = ReportOptions()


def command_line(argv: Sequence[str] | None = None) -> str:
    """``seqdance`` and its arguments (``argv``; default: this process's), shell-quoted."""
    return shlex.join(["seqdance", *(sys.argv[1:] if argv is None else argv)])


def _json_for_script(value: Any) -> str:
    """JSON that can sit inside a <script> element (no '</' sequence ends it early)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")


def chosen_entries(run: RunView, options: ReportOptions) -> list[int]:
    """Indices of the proteins whose panels the page holds."""
    with_data = [k for k, e in enumerate(run.proteins) if e.load is not None]
    if options.ids is None:
        return with_data[: options.max_proteins]
    index = {e.id: k for k, e in enumerate(run.proteins)}
    unknown = [i for i in options.ids if i not in index]
    if unknown:
        shown = ", ".join(repr(i) for i in unknown[:5])
        raise InputError(f"{run.source}: no protein {shown} in this run (its ids: "
                         f"{', '.join(e.id for e in run.proteins[:5])}{', ...' if len(run.proteins) > 5 else ''})")
    return [index[i] for i in dict.fromkeys(options.ids) if run.proteins[index[i]].load is not None]


def page_data(
    run: RunView,
    *,
    options: ReportOptions = DEFAULT_OPTIONS,
    views: dict[int, ProteinView] | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """The table of proteins, the panel data of the chosen proteins and the page's notes (``views``: proteins
    already loaded, by entry index). The saved report and the web app draw the same data."""
    chosen = chosen_entries(run, options)
    loaded = dict(views or {})
    payloads: list[dict[str, Any]] = []
    fingerprints: set[str] = set()
    indices = chosen
    if progress and len(chosen) > 1:
        from tqdm.auto import tqdm

        indices = tqdm(chosen, desc="report", unit="protein")
    panel_of: dict[int, int] = {}
    for k in indices:
        view = loaded.pop(k, None) or run.proteins[k].load()
        meta = view.extra.get("metadata", {})
        if meta.get("model_fingerprint"):
            fingerprints.add(meta["model_fingerprint"])
        panel_of[k] = len(payloads)
        payloads.append(protein_payload(view, options))
    notes = list(run.notes)
    if len(fingerprints) > 1:
        notes.append(f"The proteins shown come from {len(fingerprints)} different models (fingerprints "
                     f"{', '.join(sorted(f[:12] for f in fingerprints))}).")
    with_data = sum(e.load is not None for e in run.proteins)
    if len(chosen) < with_data:
        notes.append(f"Panels are included for {len(chosen)} of the {with_data} proteins (the first "
                     f"{options.max_proteins}, or those named: seqdance report --max-proteins, --ids); the table "
                     "lists all.")
    columns: list[str] = []
    for entry in run.proteins:
        columns.extend(c for c in entry.summary if c not in columns)
    table = {"kind": run.kind, "columns": columns,
             "rows": [{"id": e.id, "values": [e.summary.get(c) for c in columns], "panel": panel_of.get(k)}
                      for k, e in enumerate(run.proteins)]}
    return table, payloads, notes


def render_report(
    run: RunView,
    *,
    options: ReportOptions = DEFAULT_OPTIONS,
    command: str | None = None,
    views: dict[int, ProteinView] | None = None,
    progress: bool = False,
) -> str:
    """The HTML of the report of ``run``."""
    table, payloads, notes = page_data(run, options=options, views=views, progress=progress)
    packed = [gzip_base64(_json_for_script(p)) for p in payloads]
    return _page(run, facts(run, command), notes, table, packed)


def facts(run: RunView, command: str | None) -> list[tuple[str, str]]:
    """What the header says about a run (label, text)."""
    from seqdance import __version__

    facts = [("run", f"{run.kind} · {run.source}"),
             ("model", run.model or "not recorded in the run's files"),
             ("model fingerprint", run.model_fingerprint or "not recorded in the run's files")]
    facts += list(run.details.items())
    facts += [("seqdance", __version__),
              ("date", _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
              ("command", command or "(not given)")]
    return facts


def _page(run: RunView, fact_rows: list[tuple[str, str]], notes: list[str], table: dict, payloads: list[str]) -> str:
    fact_html = "".join(
        f"<dt>{html.escape(k)}</dt><dd>"
        f"{'<code>' + html.escape(v) + '</code>' if k in ('command', 'model fingerprint') else html.escape(v)}</dd>"
        for k, v in fact_rows)
    note_html = ("<ul class='notes'>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>") if notes else ""
    blobs = "".join(f'<script type="text/plain" id="protein-{k}">{p}</script>\n' for k, p in enumerate(payloads))
    scripts = "\n".join(f"<script>\n{panel_script(panel)}\n</script>" for panel in PANELS)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<meta name="generator" content="seqdance report">
<title>seqdance report · {html.escape(run.kind)} · {html.escape(Path(run.source).name)}</title>
<style>
{asset("report.css")}
</style>
</head>
<body>
<header>
<h1>seqdance report <span>· {html.escape(run.kind)} run</span></h1>
<dl class="facts">{fact_html}</dl>
{note_html}
</header>
<main>
<div id="error" class="error" role="alert" hidden></div>
<div id="protein-list"><p class="note">Loading… (this page needs JavaScript)</p></div>
<div id="protein"></div>
</main>
<footer>Made by seqdance with plotly.js {html.escape(plotly_version())} (inlined; this file needs no network).</footer>
<script type="application/json" id="seqdance-run">{_json_for_script(table)}</script>
{blobs}<script type="text/plain" id="plotly-js">{plotly_js_packed()}</script>
<script>
{asset("report.js")}
</script>
{scripts}
<script>SeqdanceReport.bootEmbedded();</script>
</body>
</html>
"""


def write_report(
    run_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    options: ReportOptions = DEFAULT_OPTIONS,
    command: str | None = None,
    model: str | None = None,
    model_fingerprint: str | None = None,
    progress: bool = False,
) -> Path:
    """Read the run at ``run_path`` and write its report to ``output`` (atomically); ``model`` and
    ``model_fingerprint`` fill in what the run's files do not record (a single score table)."""
    run = read_run(run_path)
    run.model = run.model or model
    run.model_fingerprint = run.model_fingerprint or model_fingerprint
    text = render_report(run, options=options, command=command, progress=progress)
    target = Path(output)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def report_for_run(
    run_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    model: str | None = None,
    model_fingerprint: str | None = None,
    quiet: bool = False,
    command: str | None = None,
) -> Path:
    """What ``seqdance predict --report`` (and ``score``'s) writes: the report of the run it just wrote, beside its
    outputs (``OUTDIR/report.html`` for a folder, ``OUT.html`` beside a table), recording this process's command
    line."""
    source = Path(run_path)
    target = Path(output) if output else (source / "report.html" if source.is_dir() else source.with_suffix(".html"))
    path = write_report(source, target, command=command or command_line(), model=model,
                        model_fingerprint=model_fingerprint, progress=not quiet)
    print(f"wrote the report {path} ({path.stat().st_size / 1e6:.1f} MB; open it in a browser)", file=sys.stderr)
    return path
