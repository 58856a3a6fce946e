"""The web app's page and its static files (served by name from a fixed table)."""

from __future__ import annotations

import html
import json
from functools import lru_cache
from importlib import resources

from seqdance.app.settings import AppSettings


def _app_asset(name: str) -> str:
    return (resources.files("seqdance.app") / "assets" / name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def app_assets() -> dict[str, tuple[str, str]]:
    """name -> (text, media type): the page's script and style, the report's, each panel's renderer, plotly.js."""
    from seqdance.report.assets import asset, plotly_js
    from seqdance.report.panels import PANELS, panel_script

    js, css = "text/javascript; charset=utf-8", "text/css; charset=utf-8"
    table = {"plotly.min.js": (plotly_js(), js), "report.js": (asset("report.js"), js),
             "report.css": (asset("report.css"), css), "app.js": (_app_asset("app.js"), js),
             "app.css": (_app_asset("app.css"), css)}
    for panel in PANELS:
        table[f"panel-{panel.kind}.js"] = (panel_script(panel), js)
    return table


def app_page(service, settings: AppSettings) -> str:
    """The page: the form, the job's status, then the report's table and panels for its result."""
    from seqdance import __version__
    from seqdance.display.structure_map import MAPPABLE_PROPERTIES
    from seqdance.report.panels import PANELS

    config = json.dumps({"mappable": list(MAPPABLE_PROPERTIES), "limits": settings.public()}).replace("</", "<\\/")
    panels = "\n".join(f'<script src="/assets/panel-{p.kind}.js"></script>' for p in PANELS)
    limits = (f"at most {settings.max_sequences} sequences and {settings.max_residues:,} residues per request; "
              f"scans of up to {settings.max_scan_residues:,} residues; uploads up to "
              f"{settings.max_upload_bytes / 1e6:g} MB")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>seqdance · {html.escape(service.name)}</title>
<link rel="stylesheet" href="/assets/report.css">
<link rel="stylesheet" href="/assets/app.css">
</head>
<body>
<header>
<h1>seqdance <span>· protein dynamics from sequence</span></h1>
<dl class="facts">
<dt>model</dt><dd>{html.escape(service.name)}</dd>
<dt>model fingerprint</dt><dd><code>{html.escape(service.fingerprint)}</code></dd>
<dt>device</dt><dd>{html.escape(service.device)}</dd>
<dt>seqdance</dt><dd>{html.escape(__version__)}</dd>
<dt>limits</dt><dd>{html.escape(limits)}</dd>
</dl>
</header>
<main>
<form id="job-form" class="card">
<label for="fasta">Sequences (FASTA: a line <code>&gt;id</code>, then the residues; chains of a complex joined by
<code>:</code>)</label>
<textarea id="fasta" name="fasta" rows="5" spellcheck="false"
placeholder="&gt;my_protein&#10;MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"></textarea>
<div class="row">
<label>or upload a FASTA file <input type="file" id="fasta-file" name="fasta_file"
accept=".fa,.fasta,.faa,.txt,.gz"></label>
</div>
<div class="row">
<label>task <select id="task" name="task">
<option value="predict">predict the 23 properties</option>
<option value="saturation">saturation scan (all single substitutions, one protein)</option>
<option value="variants">score listed variants (one protein)</option>
</select></label>
<label>properties <input id="properties" name="properties" placeholder="all 23 (or e.g. sasa_mean psi)"
size="30"></label>
</div>
<div class="row" id="mutants-row" hidden>
<label for="mutants">variants, one per line (e.g. <code>A23G</code>, <code>A23G:L45P</code>)</label>
<textarea id="mutants" name="mutants" rows="3" spellcheck="false"></textarea>
</div>
<button type="submit" id="run">Run</button>
<span id="status" class="status" aria-live="polite"></span>
</form>
<div id="error" class="error" role="alert" hidden></div>
<section id="result" class="card" hidden>
<h2>Downloads</h2>
<ul id="downloads"></ul>
<form id="structure-form">
<label>colour a structure by <select id="structure-property" name="property"></select></label>
<label>of <select id="structure-protein" name="protein"></select></label>
<label>upload PDB / mmCIF <input type="file" id="structure-file" name="structure"
accept=".pdb,.cif,.ent,.mmcif,.gz"></label>
<button type="submit" id="structure-run">Colour</button>
<span id="structure-status" class="status"></span>
</form>
</section>
<div id="protein-list" hidden></div>
<div id="protein"></div>
</main>
<footer>seqdance {html.escape(__version__)} · the page and the JSON API (<code>GET /api/health</code>,
<code>POST /api/predict</code>) are described in docs/browser.md</footer>
<script type="application/json" id="app-config">{config}</script>
<script src="/assets/plotly.min.js"></script>
<script src="/assets/report.js"></script>
{panels}
<script src="/assets/app.js"></script>
</body>
</html>
"""
