/* seqdance report: the shell of the page (table of proteins, a protein's panels), shared by the saved report
   and the web app. Panels register a renderer per kind: SeqdanceReport.registerPanel(kind, fn(el, data, protein)). */
(function () {
  "use strict";
  const SR = (window.SeqdanceReport = window.SeqdanceReport || {});
  SR.renderers = SR.renderers || {};
  SR.plotConfig = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  SR.registerPanel = function (kind, render) {
    SR.renderers[kind] = render;
  };

  /* Numbers as printf's %g: `digits` significant digits, trailing zeros dropped. */
  SR.g = function (value, digits) {
    if (value === null || value === undefined || !isFinite(value)) return "–";
    const text = Number(value).toPrecision(digits || 4);
    if (text.indexOf("e") >= 0) return text.replace(/\.?0+e/, "e");
    return text.indexOf(".") >= 0 ? text.replace(/\.?0+$/, "") : text;
  };

  SR.escape = function (text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  };

  SR.bytes = function (b64) {
    const binary = atob(b64);
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out;
  };

  /* gzip + base64 text (the saved report's data and library) back to text. */
  SR.inflate = async function (b64) {
    if (typeof DecompressionStream === "undefined") {
      throw new Error("this browser cannot unpack the report (it needs DecompressionStream: Chrome 80+, Firefox 113+, Safari 16.4+)");
    }
    const stream = new Blob([SR.bytes(b64)]).stream().pipeThrough(new DecompressionStream("gzip"));
    return await new Response(stream).text();
  };

  /* A pair map of 8-bit codes back to rows of values (null where the code marks NaN). */
  SR.pairMatrix = function (spec) {
    const codes = SR.bytes(spec.codes);
    const n = spec.n, step = (spec.hi - spec.lo) / (spec.levels - 1);
    const rows = new Array(n);
    for (let i = 0; i < n; i++) {
      const row = new Array(n);
      for (let j = 0; j < n; j++) {
        const c = codes[i * n + j];
        row[j] = c === spec.nan_code ? null : spec.lo + c * step;
      }
      rows[i] = row;
    }
    return rows;
  };

  /* "M12" per residue ("M12 (chain 2)" when the sequence has several chains), numbered within each chain. */
  SR.residueLabels = function (sequence, chainLengths) {
    const letters = (sequence || "").replace(/:/g, "");
    const lengths = chainLengths && chainLengths.length ? chainLengths : [letters.length];
    const labels = [];
    let k = 0;
    lengths.forEach((len, c) => {
      for (let i = 1; i <= len; i++, k++) {
        labels.push((letters[k] || "?") + i + (lengths.length > 1 ? " (chain " + (c + 1) + ")" : ""));
      }
    });
    return labels;
  };

  /* Dashed lines between chains (plotly shapes on the x axis, and on y for maps). */
  SR.chainLines = function (chainLengths, axes) {
    const shapes = [];
    let edge = 0;
    (chainLengths || []).slice(0, -1).forEach((len) => {
      edge += len;
      (axes || ["x"]).forEach((axis) => {
        const line = { type: "line", line: { color: "#404040", width: 1, dash: "dash" } };
        if (axis === "x") Object.assign(line, { xref: "x", yref: "paper", x0: edge + 0.5, x1: edge + 0.5, y0: 0, y1: 1 });
        else Object.assign(line, { yref: "y", xref: "paper", y0: edge + 0.5, y1: edge + 0.5, x0: 0, x1: 1 });
        shapes.push(line);
      });
    });
    return shapes;
  };

  SR.showError = function (message) {
    const bar = document.getElementById("error");
    const text = String(message && message.message ? message.message : message).split("\n")[0];
    if (bar) {
      bar.textContent = text;
      bar.hidden = false;
    }
  };

  /* The sortable, searchable table of proteins; `onSelect(row)` when a row is clicked. */
  SR.renderTable = function (area, run, onSelect) {
    area.innerHTML = "";
    const search = document.createElement("input");
    search.type = "search";
    search.id = "protein-search";
    search.placeholder = "search proteins by id";
    const count = document.createElement("span");
    count.className = "count";
    const table = document.createElement("table");
    table.id = "protein-table";
    const head = table.createTHead().insertRow();
    const columns = ["id"].concat(run.columns);
    let sortKey = -1, ascending = true;
    columns.forEach((name, k) => {
      const th = document.createElement("th");
      th.textContent = name;
      th.title = "sort by " + name;
      th.addEventListener("click", () => {
        ascending = sortKey === k ? !ascending : true;
        sortKey = k;
        draw();
      });
      head.appendChild(th);
    });
    const body = table.createTBody();
    const value = (row, k) => (k === 0 ? row.id : row.values[k - 1]);
    function draw() {
      const needle = search.value.trim().toLowerCase();
      let rows = run.rows.filter((r) => !needle || r.id.toLowerCase().indexOf(needle) >= 0);
      if (sortKey >= 0) {
        rows = rows.slice().sort((a, b) => {
          const x = value(a, sortKey), y = value(b, sortKey);
          if (x === null || x === undefined) return 1;
          if (y === null || y === undefined) return -1;
          const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
          return ascending ? order : -order;
        });
      }
      body.innerHTML = "";
      rows.forEach((row) => {
        const tr = body.insertRow();
        tr.dataset.id = row.id;
        if (row.panel === null || row.panel === undefined) tr.className = "no-panels";
        if (SR.selectedId === row.id) tr.classList.add("selected");
        columns.forEach((_, k) => {
          const v = value(row, k);
          tr.insertCell().textContent = typeof v === "number" ? SR.g(v, 4) : v === null || v === undefined ? "–" : v;
        });
        tr.addEventListener("click", () => onSelect(row));
      });
      const noun = run.kind === "compare" ? "variant" : "protein";
      count.textContent = rows.length + " of " + run.rows.length + " " + noun + (run.rows.length === 1 ? "" : "s");
    }
    search.addEventListener("input", draw);
    area.appendChild(search);
    area.appendChild(count);
    const scroller = document.createElement("div");
    scroller.className = "table-scroll";
    scroller.appendChild(table);
    area.appendChild(scroller);
    SR.redrawTable = draw;
    draw();
  };

  /* One protein's panels into `area`. */
  SR.renderProtein = function (area, protein) {
    area.innerHTML = "";
    area.dataset.rendered = "false";
    const title = document.createElement("h2");
    const length = (protein.sequence || "").replace(/:/g, "").length;
    title.textContent = protein.id + (length ? " · " + length + " residues" : "") +
      (protein.chain_lengths && protein.chain_lengths.length > 1 ? " · " + protein.chain_lengths.length + " chains" : "");
    area.appendChild(title);
    (protein.notes || []).forEach((text) => area.appendChild(SR.note(text)));
    if (!protein.panels.length) area.appendChild(SR.note("Nothing to draw for this protein."));
    protein.panels.forEach((panel) => {
      const section = document.createElement("section");
      section.className = "panel";
      section.dataset.kind = panel.kind;
      const h = document.createElement("h3");
      h.textContent = panel.title;
      section.appendChild(h);
      (panel.notes || []).forEach((text) => section.appendChild(SR.note(text)));
      const body = document.createElement("div");
      body.className = "panel-body";
      section.appendChild(body);
      area.appendChild(section);
      const render = SR.renderers[panel.kind];
      if (!render) {
        section.appendChild(SR.note("This page has no renderer for panels of kind '" + panel.kind + "'."));
        return;
      }
      render(body, panel.data, protein);
    });
    area.dataset.rendered = "true";
  };

  SR.note = function (text) {
    const p = document.createElement("p");
    p.className = "note";
    p.textContent = text;
    return p;
  };

  /* The saved report: plotly.js and each protein's data are inlined, gzip'd and base64-encoded. */
  SR.loadPlotly = async function () {
    if (window.Plotly) return;
    const holder = document.getElementById("plotly-js");
    const script = document.createElement("script");
    script.textContent = await SR.inflate(holder.textContent.trim());
    document.head.appendChild(script);
    if (!window.Plotly) throw new Error("plotly.js did not load");
  };

  SR.embeddedProtein = async function (index) {
    SR.proteinCache = SR.proteinCache || {};
    if (!SR.proteinCache[index]) {
      const holder = document.getElementById("protein-" + index);
      SR.proteinCache[index] = JSON.parse(await SR.inflate(holder.textContent.trim()));
    }
    return SR.proteinCache[index];
  };

  SR.select = async function (row) {
    const area = document.getElementById("protein");
    SR.selectedId = row.id;
    if (SR.redrawTable) SR.redrawTable();
    if (row.panel === null || row.panel === undefined) {
      area.innerHTML = "";
      area.appendChild(SR.note(row.id + ": this report holds no panels for this protein (see the note at the top)."));
      return;
    }
    try {
      SR.renderProtein(area, await SR.embeddedProtein(row.panel));
    } catch (error) {
      SR.showError(error);
      throw error;
    }
  };

  SR.bootEmbedded = async function () {
    try {
      const run = JSON.parse(document.getElementById("seqdance-run").textContent);
      await SR.loadPlotly();
      SR.renderTable(document.getElementById("protein-list"), run, (row) => SR.select(row));
      const first = run.rows.find((r) => r.panel !== null && r.panel !== undefined);
      if (first) await SR.select(first);
      document.body.dataset.ready = "true";
    } catch (error) {
      SR.showError(error);
      throw error;
    }
  };
})();
