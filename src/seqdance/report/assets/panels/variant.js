/* How a variant changes the predicted dynamics: wild-type and variant profiles with Δ bars below (zero-centred,
   symmetric axis), Δ pair maps on a diverging scale centred at 0 with symmetric limits; mutated positions marked. */
SeqdanceReport.registerPanel("variant", function (el, data, protein) {
  "use strict";
  const SR = window.SeqdanceReport;
  const letters = (protein.sequence || "").replace(/:/g, "");
  const x = Array.from({ length: data.n }, (_, i) => i + data.offset);
  const labels = x.map((number, i) => (letters[i] || "?") + number);
  const marks = data.marks;
  /* Vertical marks on one x axis: substituted (red dashed), deleted (grey span), inserted (purple dotted). */
  function markShapes(xref, yref) {
    const shapes = [];
    marks.substituted.forEach((s) => shapes.push({ type: "line", xref: xref, yref: yref, x0: s, x1: s, y0: 0, y1: 1, line: { color: "#d62728", width: 1, dash: "dash" } }));
    marks.deleted.forEach((d) => shapes.push({ type: "rect", xref: xref, yref: yref, x0: d[0] - 0.5, x1: d[1] + 0.5, y0: 0, y1: 1, fillcolor: "rgba(150,150,150,0.4)", line: { width: 0 } }));
    marks.inserted.forEach((ins) => shapes.push({ type: "line", xref: xref, yref: yref, x0: ins[0], x1: ins[0], y0: 0, y1: 1, line: { color: "#6a51a3", width: 1, dash: "dot" } }));
    return shapes;
  }
  /* Blue (lower in the variant) - white (0) - red (higher), ColorBrewer RdBu. */
  const DIVERGING = [[0, "#2166ac"], [0.25, "#67a9cf"], [0.5, "#f7f7f7"], [0.75, "#ef8a62"], [1, "#b2182b"]];
  const maxAbs = (values) => values.reduce((m, v) => (v === null ? m : Math.max(m, Math.abs(v))), 0);
  if (data.profiles.length) {
    const rows = data.profiles.length * 2, gap = 0.03;
    const height = (1 - gap * (rows - 1)) / rows;
    const traces = [], shapes = [];
    const layout = { height: 150 * rows + 80, margin: { l: 80, r: 20, t: 20, b: 50 }, hovermode: "closest", showlegend: true,
      legend: { orientation: "h", y: 1.02, yanchor: "bottom", font: { size: 11 } } };
    const axisName = (id) => id.replace(/^([xy])/, "$1axis");
    data.profiles.forEach((p, k) => {
      const top = 1 - 2 * k * (height + gap);
      const last = k === data.profiles.length - 1;
      const yv = k === 0 ? "y" : "y" + (2 * k + 1), yd = "y" + (2 * k + 2);
      const xa = k === 0 ? "x" : "x" + (2 * k + 1), xd = "x" + (2 * k + 2);
      layout[axisName(yv)] = { domain: [top - height, top], title: { text: p.name, font: { size: 11 } }, anchor: xa };
      const limit = Math.max(maxAbs(p.delta), p.band ? Math.max(maxAbs(p.band[0]), maxAbs(p.band[1])) : 0) * 1.1 || 1e-3;
      layout[axisName(yd)] = { domain: [top - 2 * height - gap, top - height - gap], range: [-limit, limit], zeroline: true,
        title: { text: "Δ " + p.name, font: { size: 11 } }, anchor: xd };
      layout[axisName(xa)] = { anchor: yv, showticklabels: false, range: [data.offset - 0.5, data.n + data.offset - 0.5] };
      if (xa !== "x") layout[axisName(xa)].matches = "x";
      layout[axisName(xd)] = { anchor: yd, matches: "x", showticklabels: last };
      if (last) layout[axisName(xd)].title = { text: "wild-type residue number" };
      const custom = labels.map((label, i) => [label, p.wt[i], p.variant[i], p.delta[i]]);
      const hover = "<b>%{customdata[0]}</b><br>" + SR.escape(p.name) + ": wild type %{customdata[1]:.4~g}, variant %{customdata[2]:.4~g}<br>Δ = %{customdata[3]:.4~g} (" + SR.escape(p.unit) + ")<extra></extra>";
      traces.push({ type: "scatter", mode: "lines", x: x, y: p.wt, xaxis: xa, yaxis: yv, name: "wild type", legendgroup: "wt", showlegend: k === 0, line: { color: "#252525", width: 1.4, shape: "hvh" }, customdata: custom, hovertemplate: hover });
      traces.push({ type: "scatter", mode: "lines", x: x, y: p.variant, xaxis: xa, yaxis: yv, name: "variant", legendgroup: "variant", showlegend: k === 0, line: { color: "#e6550d", width: 1.4, shape: "hvh" }, customdata: custom, hovertemplate: hover });
      if (p.band) {
        traces.push({ type: "scatter", mode: "lines", x: x, y: p.band[0], xaxis: xd, yaxis: yd, line: { width: 0, shape: "hvh" }, hoverinfo: "skip", showlegend: false });
        traces.push({ type: "scatter", mode: "lines", x: x, y: p.band[1], xaxis: xd, yaxis: yd, fill: "tonexty", fillcolor: "rgba(150,150,150,0.35)", line: { width: 0, shape: "hvh" }, hoverinfo: "skip", name: "background 5–95 %", legendgroup: "band", showlegend: k === 0 });
      }
      traces.push({ type: "bar", x: x, y: p.delta, xaxis: xd, yaxis: yd, name: "Δ (variant − wild type)", legendgroup: "delta", showlegend: k === 0,
        marker: { color: p.delta.map((v) => (v !== null && v < 0 ? "#2171b5" : "#cb181d")) }, customdata: custom, hovertemplate: hover });
      shapes.push(...markShapes(xa, yv + " domain"), ...markShapes(xd, yd + " domain"));
    });
    layout.shapes = shapes;
    layout.bargap = 0.1;
    const plot = document.createElement("div");
    plot.className = "plot variant-profiles-plot";
    el.appendChild(plot);
    Plotly.newPlot(plot, traces, layout, SR.plotConfig);
  }
  if (data.maps.length) {
    const row = document.createElement("div");
    row.className = "pair-row";
    el.appendChild(row);
    data.maps.forEach((map) => {
      const figure = document.createElement("figure");
      const caption = document.createElement("figcaption");
      caption.textContent = map.title + " — colour limits ±" + SR.g(map.hi, 3) + " (white = 0)";
      const plot = document.createElement("div");
      plot.className = "plot variant-pair-plot";
      plot.dataset.map = map.name;
      figure.appendChild(caption);
      figure.appendChild(plot);
      row.appendChild(figure);
      const f = map.factor;
      const starts = Array.from({ length: map.n }, (_, k) => k * f + data.offset);
      const where = f > 1 ? "blocks at residues %{y} and %{x} (" + f + " × " + f + ")" : "residues %{y} and %{x}";
      const trace = { type: "heatmap", x: starts, y: starts, z: SR.pairMatrix(map), zmin: map.lo, zmax: map.hi, zmid: 0,
        colorscale: DIVERGING, hoverongaps: false, colorbar: { thickness: 10, len: 0.8, title: { text: "Δ", side: "right" } },
        hovertemplate: where + "<br>Δ " + SR.escape(map.name) + " = %{z:.3~g} (" + SR.escape(map.unit) + ")<extra></extra>" };
      const ticks = [];
      marks.substituted.forEach((s) => ticks.push({ type: "line", xref: "x", yref: "paper", x0: s, x1: s, y0: 1, y1: 1.03, line: { color: "#d62728", width: 2 } }));
      marks.inserted.forEach((ins) => ticks.push({ type: "line", xref: "x", yref: "paper", x0: ins[0], x1: ins[0], y0: 1, y1: 1.03, line: { color: "#6a51a3", width: 2 } }));
      const layout = { width: 440, height: 440, margin: { l: 50, r: 10, t: 30, b: 40 }, plot_bgcolor: "#bdbdbd", shapes: ticks,
        xaxis: { title: { text: "residue j" }, constrain: "domain" },
        yaxis: { title: { text: "residue i" }, autorange: "reversed", scaleanchor: "x", constrain: "domain" } };
      Plotly.newPlot(plot, [trace], layout, SR.plotConfig);
    });
  }
});
